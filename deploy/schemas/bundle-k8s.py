#!/usr/bin/env python3
"""Writes standalone Kubernetes JSON schemas for the kinds deploy/k8s uses.

Input: the `v1.30.0-local-strict` schemas shipped in the PyPI package kubernetes-validate
(Apache-2.0, generated from the Kubernetes OpenAPI document), where each kind's file refers to
one shared `_definitions.json`. Output: one file per kind in this folder with only the
definitions it reaches, refs rewritten to `#/$defs/...`, so a validator needs no resolver.

    pip download --no-deps kubernetes-validate==1.30.0 && unzip kubernetes_validate-*.whl
    python3 deploy/schemas/bundle-k8s.py kubernetes_validate/kubernetes-json-schema/v1.30.0-local-strict
"""
import json
import os
import re
import sys

KINDS = [
    "configmap-v1",
    "deployment-apps-v1",
    "horizontalpodautoscaler-autoscaling-v2",
    "ingress-networking-v1",
    "poddisruptionbudget-policy-v1",
    "secret-v1",
    "service-v1",
]
REF = re.compile(r'"\$ref": "(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')


def main(source):
    with open(os.path.join(source, "_definitions.json")) as f:
        definitions = json.load(f)["$defs"]
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kubernetes-v1.30.0")
    os.makedirs(out_dir, exist_ok=True)
    for kind in KINDS:
        with open(os.path.join(source, kind + ".json")) as f:
            text = f.read()
        schema = json.loads(text.replace('"/api/_definitions.json#/$defs/', '"#/$defs/'))
        schema.pop("$id", None)
        needed, queue = {}, REF.findall(text)
        while queue:
            name = queue.pop()
            if name in needed:
                continue
            needed[name] = definitions[name]
            queue.extend(REF.findall(json.dumps(definitions[name])))
        schema["$defs"] = dict(sorted(needed.items()))
        with open(os.path.join(out_dir, kind + ".json"), "w") as f:
            json.dump(schema, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
