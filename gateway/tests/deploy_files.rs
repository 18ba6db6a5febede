//! Static checks of the deployment files: docker-compose.yml, deploy/Dockerfile, deploy/compose
//! and the kustomize base in deploy/k8s. No Docker engine or cluster is needed: the files are
//! parsed, validated against the vendored schemas in deploy/schemas, and compared with the
//! options the gateway really has (`gateway::config::command()`), so a renamed variable, a port
//! that drifted or a grace period shorter than the drain fails here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::config::{self, Config};
use serde_json::Value;

/// Time the shutdown spends after the connections' deadline: presence removal and backplane
/// close, up to 2 s each (README "Health and shutdown").
const BACKPLANE_CLOSE: Duration = Duration::from_secs(4);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every document of a YAML file as JSON, merge keys (`<<: *anchor`) applied.
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let mut value: serde_yaml::Value =
            serde::Deserialize::deserialize(document).unwrap_or_else(|error| panic!("{relative}: {error}"));
        value.apply_merge().unwrap_or_else(|error| panic!("{relative}: {error}"));
        if !value.is_null() {
            documents.push(serde_json::to_value(value).unwrap_or_else(|error| panic!("{relative}: {error}")));
        }
    }
    documents
}

fn compose() -> Value {
    yaml_documents("docker-compose.yml").remove(0)
}

/// The gateway services of docker-compose.yml: those whose entrypoint is the image's (gateway),
/// with the image as Compose expands it with HUBGATE_IMAGE unset.
fn compose_gateways(compose: &Value) -> BTreeMap<String, Value> {
    let services = compose["services"].as_object().expect("services");
    let gateways: BTreeMap<_, _> = services
        .iter()
        .filter(|(_, service)| {
            service["image"].as_str().map(interpolate).as_deref() == Some("hubgate:local")
                && service.get("entrypoint").is_none()
        })
        .map(|(name, service)| (name.clone(), service.clone()))
        .collect();
    assert_eq!(gateways.len(), 3, "three gateway nodes: {:?}", gateways.keys());
    gateways
}

/// `${NAME:-default}` as Compose expands it with NAME unset, `$$` as one `$`; panics on a bare
/// `$NAME` (Compose would expand it too, usually by mistake: a shell variable in a command).
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').unwrap_or_else(|| panic!("no closing brace in {text}"));
            out.push_str(inner[..end].split_once(":-").map_or("", |(_, default)| default));
            rest = &inner[end + 1..];
        } else {
            panic!("a bare $ in {text:?}: write $$ for a literal $, ${{NAME:-default}} for a variable");
        }
    }
    out.push_str(rest);
    out
}

/// Every string in a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(map) => map.iter().for_each(|(key, item)| {
            out.push(key.clone());
            strings(item, out);
        }),
        _ => {}
    }
}

/// A service's `environment` (map form) with defaults interpolated.
fn compose_env(service: &Value) -> HashMap<String, String> {
    let env = service["environment"].as_object().expect("environment as a map");
    env.iter().map(|(key, value)| (key.clone(), interpolate(&scalar(value)))).collect()
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Every Kubernetes object under deploy/k8s, with the file it came from.
fn k8s_objects() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    files.sort();
    let objects: Vec<_> = files
        .iter()
        .flat_map(|file| {
            let relative = format!("deploy/k8s/{file}");
            yaml_documents(&relative).into_iter().map(move |object| (relative.clone(), object))
        })
        .collect();
    assert!(objects.len() >= 8, "{} objects", objects.len());
    objects
}

fn k8s_object(kind: &str, name: &str) -> Value {
    k8s_objects()
        .into_iter()
        .map(|(_, object)| object)
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

/// The gateway container of the hubgate Deployment.
fn k8s_gateway_container() -> Value {
    k8s_object("Deployment", "hubgate")["spec"]["template"]["spec"]["containers"][0].clone()
}

/// The pod IP the downward API gives the example pod (`status.podIP`).
const POD_IP: &str = "10.1.2.3";

/// The name the downward API gives the example pod (`metadata.name`).
const POD_NAME: &str = "hubgate-7d9f8b6c4-x2k9p";

/// The environment a pod of the Deployment gets, as the kubelet builds it: the `envFrom`
/// sources in order (ConfigMap, then the example Secret), then the container's `env` entries,
/// which win, each resolved (`secretKeyRef` from the example Secret, `fieldRef` from the
/// downward API, `$(NAME)` from the variables defined before it).
fn k8s_env() -> HashMap<String, String> {
    let container = k8s_gateway_container();
    let mut env = HashMap::new();
    for source in container["envFrom"].as_array().expect("envFrom") {
        let (kind, field, reference) = match (source.get("configMapRef"), source.get("secretRef")) {
            (Some(reference), None) => ("ConfigMap", "data", reference),
            (None, Some(reference)) => ("Secret", "stringData", reference),
            _ => panic!("an envFrom source of another kind: {source}"),
        };
        let object = k8s_object(kind, reference["name"].as_str().expect("envFrom name"));
        for (key, value) in object[field].as_object().expect("string data") {
            env.insert(key.clone(), scalar(value));
        }
    }
    for entry in container["env"].as_array().expect("env") {
        let name = scalar(&entry["name"]);
        let value = if let Some(value) = entry.get("value") {
            expand_k8s(&scalar(value), &env)
        } else if let Some(secret) = entry["valueFrom"].get("secretKeyRef") {
            let object = k8s_object("Secret", secret["name"].as_str().expect("secretKeyRef name"));
            let key = scalar(&secret["key"]);
            scalar(object["stringData"].get(&key).unwrap_or_else(|| panic!("{name}: no key {key} in the Secret")))
        } else if let Some(field) = entry["valueFrom"].get("fieldRef") {
            match field["fieldPath"].as_str() {
                Some("metadata.name") => POD_NAME.to_string(),
                Some("status.podIP") => POD_IP.to_string(),
                other => panic!("{name}: fieldRef {other:?} not modelled here"),
            }
        } else {
            panic!("{name}: an env entry of another kind: {entry}")
        };
        env.insert(name, value);
    }
    env
}

/// `$(NAME)` in a container's `env` value as the kubelet expands it: only names defined
/// before (a reference to a later or unknown one would stay literal, always a mistake here).
fn expand_k8s(text: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let inner = &rest[start + 2..];
        let end = inner.find(')').unwrap_or_else(|| panic!("no closing parenthesis in {text}"));
        let name = &inner[..end];
        out.push_str(defined.get(name).unwrap_or_else(|| panic!("{text}: $({name}) is not defined before it")));
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Loads the gateway configuration from `env` exactly as the binary would.
fn load(env: &HashMap<String, String>, what: &str) -> Config {
    match config::load(["gateway"], env) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("{what}: the gateway refuses these settings: {error}"),
    }
}

fn port(address: &str) -> u16 {
    address.parse::<SocketAddr>().unwrap_or_else(|error| panic!("{address}: {error}")).port()
}

fn duration(text: &str) -> Duration {
    config::parse_duration(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn validate(schema_file: &str, instance: &Value, what: &str) {
    let schema: Value = serde_json::from_str(&read(&format!("deploy/schemas/{schema_file}")))
        .unwrap_or_else(|error| panic!("{schema_file}: {error}"));
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|error| panic!("{schema_file}: {error}"));
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|error| format!("  {}: {error}", error.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not match {schema_file}:\n{}", errors.join("\n"));
}

#[test]
fn docker_compose_matches_the_compose_specification() {
    validate("compose-spec.json", &compose(), "docker-compose.yml");
}

#[test]
fn compose_dollar_signs_are_escaped_or_defaulted() {
    let mut all = Vec::new();
    strings(&compose(), &mut all);
    let expanded: Vec<String> = all.iter().filter(|text| text.contains('$')).map(|text| interpolate(text)).collect();
    assert!(expanded.iter().any(|text| text.contains("$status")), "the healthchecks' shell variable: {expanded:?}");
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_schemas() {
    for (file, object) in k8s_objects() {
        let kind = object["kind"].as_str().expect("kind").to_lowercase();
        let api_version = object["apiVersion"].as_str().expect("apiVersion");
        let schema = match api_version.split_once('/') {
            Some((group, version)) => format!("{kind}-{}-{version}", group.split('.').next().expect("group")),
            None => format!("{kind}-{api_version}"),
        };
        let what = format!("{file} ({} {})", object["kind"], object["metadata"]["name"]);
        validate(&format!("kubernetes-v1.30.0/{schema}.json"), &object, &what);
    }
}

#[test]
fn every_hubgate_variable_is_one_the_gateway_reads() {
    let known: BTreeSet<String> = config::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
        .collect();
    assert!(known.contains("HUBGATE_ADMIN_LISTEN") && known.contains("HUBGATE_REDIS_URL"));

    let mut used: Vec<(String, String)> = Vec::new();
    let compose = compose();
    for (name, service) in compose["services"].as_object().expect("services") {
        if let Some(env) = service["environment"].as_object() {
            used.extend(env.keys().map(|key| (format!("docker-compose.yml {name}"), key.clone())));
        }
    }
    used.extend(k8s_env().into_keys().map(|key| ("deploy/k8s pod environment".to_string(), key)));
    for (file, object) in k8s_objects() {
        for container in object["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten() {
            for env in container["env"].as_array().into_iter().flatten() {
                used.push((file.clone(), env["name"].as_str().expect("env name").to_string()));
            }
        }
    }
    for line in read("deploy/Dockerfile").lines() {
        let pairs = line.split_whitespace().filter_map(|word| word.split_once('='));
        used.extend(pairs.map(|(key, _)| ("deploy/Dockerfile".to_string(), key.to_string())));
    }

    let hubgate: Vec<_> = used.iter().filter(|(_, key)| key.starts_with("HUBGATE_")).collect();
    assert!(hubgate.len() > 20, "{hubgate:?}");
    let unknown: Vec<_> = hubgate.iter().filter(|(_, key)| !known.contains(key)).collect();
    assert!(unknown.is_empty(), "variables the gateway does not read: {unknown:?}");
}

#[test]
fn the_settings_in_compose_and_kubernetes_load() {
    let compose = compose();
    for (name, service) in compose_gateways(&compose) {
        let config = load(&compose_env(&service), &format!("docker-compose.yml {name}"));
        assert_eq!(config.backplane, config::BackplaneKind::Redis, "{name}");
        assert_eq!(config.redis_urls, ["redis://redis:6379"], "{name}");
    }
    let config = load(&k8s_env(), "deploy/k8s ConfigMap + secret.example.yaml");
    assert_eq!(config.backplane, config::BackplaneKind::Redis);
}

#[test]
fn compose_ports_agree_with_the_listen_settings() {
    let compose = compose();
    let services = &compose["services"];
    let gateways = compose_gateways(&compose);
    let nginx = read("deploy/compose/nginx.conf");
    let prometheus = yaml_documents("deploy/compose/prometheus.yml").remove(0);
    let targets: BTreeSet<String> = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(scalar)
        .collect();

    let mut expected_targets = BTreeSet::new();
    for (name, service) in &gateways {
        let env = compose_env(service);
        let (listen, admin) = (port(&env["HUBGATE_LISTEN"]), port(&env["HUBGATE_ADMIN_LISTEN"]));
        expected_targets.insert(format!("{name}:{admin}"));
        assert!(nginx.contains(&format!("server {name}:{listen}")), "nginx upstream for {name}:{listen}");
        let probe =
            service["healthcheck"]["test"].as_array().expect("healthcheck").iter().map(scalar).collect::<Vec<_>>();
        assert!(probe.join(" ").contains(&format!("/dev/tcp/127.0.0.1/{admin}")), "{name} healthcheck: {probe:?}");
        for (_, other) in services.as_object().expect("services").iter().filter(|(other, _)| *other != name) {
            for url in other["command"].as_array().into_iter().flatten().map(scalar) {
                if url.contains(&format!("//{name}:")) {
                    assert!(url.starts_with(&format!("http://{name}:{listen}/")), "{url}");
                }
            }
        }
    }
    assert_eq!(targets, expected_targets, "Prometheus scrapes every node's admin port");

    let lb_ports: Vec<String> = services["lb"]["ports"].as_array().expect("lb ports").iter().map(scalar).collect();
    let lb_port = lb_ports[0].rsplit(':').next().expect("container port");
    assert!(nginx.contains(&format!("listen {lb_port};")), "nginx listens on the published port {lb_port}");
}

#[test]
fn kubernetes_ports_and_probes_agree_with_the_listen_settings() {
    let env = k8s_env();
    let (listen, admin) = (port(&env["HUBGATE_LISTEN"]), port(&env["HUBGATE_ADMIN_LISTEN"]));
    let container = k8s_gateway_container();
    let ports: HashMap<String, u64> = container["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .map(|port| (scalar(&port["name"]), port["containerPort"].as_u64().expect("containerPort")))
        .collect();
    assert_eq!(ports.get("http"), Some(&u64::from(listen)), "{ports:?}");
    assert_eq!(ports.get("admin"), Some(&u64::from(admin)), "{ports:?}");

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = &get["port"];
        assert!(*port == "admin" || port.as_u64() == Some(u64::from(admin)), "{probe} on the admin port: {port}");
    }

    let service = k8s_object("Service", "hubgate");
    let mut service_ports = BTreeSet::new();
    for port in service["spec"]["ports"].as_array().expect("service ports") {
        let target = scalar(&port["targetPort"]);
        assert!(ports.contains_key(&target), "Service targetPort {target} is a container port name");
        service_ports.insert(scalar(&port["name"]));
    }
    let ingress = k8s_object("Ingress", "hubgate");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "hubgate");
    assert!(service_ports.contains(&scalar(&backend["port"]["name"])), "Ingress backend port {backend}");
}

#[test]
fn referenced_files_exist() {
    let root = root();
    let compose = compose();
    let mut referenced = Vec::new();
    for (name, service) in compose["services"].as_object().expect("services") {
        if let Some(build) = service.get("build") {
            let context = root.join(scalar(&build["context"]));
            referenced.push((format!("{name} build"), context.join(scalar(&build["dockerfile"]))));
        }
        for volume in service["volumes"].as_array().into_iter().flatten().map(scalar) {
            let source = volume.split(':').next().expect("a volume source");
            assert!(source.starts_with("./"), "{name}: only bind mounts of repository files: {volume}");
            referenced.push((format!("{name} volume"), root.join(source)));
        }
    }
    let kustomization = yaml_documents("deploy/k8s/kustomization.yaml").remove(0);
    for resource in kustomization["resources"].as_array().expect("resources").iter().map(scalar) {
        referenced.push(("kustomization resource".into(), root.join("deploy/k8s").join(resource)));
    }
    for line in read("deploy/Dockerfile").lines().filter(|line| line.starts_with("COPY ") && !line.contains("--from")) {
        for source in line.split_whitespace().skip(1).collect::<Vec<_>>().split_last().expect("COPY args").1 {
            referenced.push(("Dockerfile COPY".into(), root.join(source)));
        }
    }
    let missing: Vec<_> = referenced.iter().filter(|(_, path)| !path.exists()).collect();
    assert!(missing.is_empty(), "missing files: {missing:?}");

    // Grafana loads dashboards from the folder its provider names: the dashboard JSON must be
    // mounted there.
    let provider = yaml_documents("deploy/compose/grafana/provisioning/dashboards/hubgate.yml").remove(0);
    let folder = scalar(&provider["providers"][0]["options"]["path"]);
    let mounts: Vec<String> =
        compose["services"]["grafana"]["volumes"].as_array().expect("volumes").iter().map(scalar).collect();
    assert!(
        mounts
            .iter()
            .any(|mount| mount.starts_with("./deploy/grafana/hubgate.json:") && mount.contains(&format!(":{folder}/"))),
        "the dashboard is mounted into {folder}: {mounts:?}"
    );
    let datasource = yaml_documents("deploy/compose/grafana/provisioning/datasources/prometheus.yml").remove(0);
    assert_eq!(datasource["datasources"][0]["url"], "http://prometheus:9090");
}

#[test]
fn grace_periods_outlast_drain_and_shutdown() {
    let config = load(&k8s_env(), "deploy/k8s");
    let pod = &k8s_object("Deployment", "hubgate")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"].as_array().expect("a preStop sleep");
    assert_eq!(pre_stop[0], "sleep");
    let pre_stop = Duration::from_secs(scalar(&pre_stop[1]).parse().expect("seconds"));
    let grace =
        Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds"));
    let needed = pre_stop + config.drain_delay + config.shutdown_timeout + BACKPLANE_CLOSE;
    assert!(config.drain_delay > Duration::ZERO, "a drain delay lets endpoints go first");
    assert!(grace > needed, "terminationGracePeriodSeconds {grace:?} must exceed {needed:?}");

    let compose = compose();
    for (name, service) in compose_gateways(&compose) {
        let config = load(&compose_env(&service), &name);
        let grace = duration(&scalar(&service["stop_grace_period"]));
        let needed = config.drain_delay + config.shutdown_timeout + BACKPLANE_CLOSE;
        assert!(grace > needed, "{name}: stop_grace_period {grace:?} must exceed {needed:?}");
    }
}

/// The values of an nginx directive, e.g. `proxy_read_timeout 120s;` → `["120s"]`.
fn nginx_directive(conf: &str, name: &str) -> Vec<String> {
    conf.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter_map(|line| line.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
        .map(|rest| rest.trim().trim_end_matches(';').trim().to_string())
        .collect()
}

#[test]
fn nginx_passes_websockets_and_outlasts_the_keep_alive() {
    let nginx = read("deploy/compose/nginx.conf");
    let compose = compose();
    let (_, gateway) = compose_gateways(&compose).pop_first().expect("a gateway");
    let config = load(&compose_env(&gateway), "docker-compose.yml");

    assert_eq!(nginx_directive(&nginx, "proxy_http_version"), ["1.1"]);
    let headers = nginx_directive(&nginx, "proxy_set_header");
    assert!(headers.iter().any(|header| header == "Upgrade $http_upgrade"), "{headers:?}");
    assert!(headers.iter().any(|header| header == "Connection $connection_upgrade"), "{headers:?}");
    assert!(nginx.contains("map $http_upgrade $connection_upgrade"), "the Connection header map");
    assert_eq!(nginx_directive(&nginx, "proxy_buffering"), ["off"], "SSE needs unbuffered responses");
    let hosts = headers.iter().filter(|header| header.starts_with("Host ")).collect::<Vec<_>>();
    assert_eq!(hosts, ["Host $http_host"], "the Host with its port (the REST API's audience)");

    // Quiet connections exchange a ping every keep-alive interval and long polls wait up to the
    // poll timeout: nginx must wait longer than both (and than the client timeout).
    let longest = config.client_timeout.max(config.poll_timeout).max(config.keep_alive_interval);
    for directive in ["proxy_read_timeout", "proxy_send_timeout"] {
        let values = nginx_directive(&nginx, directive);
        assert_eq!(values.len(), 1, "{directive}: {values:?}");
        assert!(duration(&values[0]) > longest, "{directive} {} must exceed {longest:?}", values[0]);
    }

    let ingress = k8s_object("Ingress", "hubgate");
    let annotations = &ingress["metadata"]["annotations"];
    let k8s = load(&k8s_env(), "deploy/k8s");
    let longest = k8s.client_timeout.max(k8s.poll_timeout);
    for annotation in ["proxy-read-timeout", "proxy-send-timeout"] {
        let seconds: u64 =
            scalar(&annotations[format!("nginx.ingress.kubernetes.io/{annotation}")]).parse().expect("seconds");
        assert!(Duration::from_secs(seconds) > longest, "Ingress {annotation}");
    }
}

/// The configuration nginx runs: every line with its comment removed.
fn nginx_active(conf: &str) -> String {
    conf.lines().map(|line| line.split('#').next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The optional routing by token, uncommented: the commented lines after the empty comment
/// line that ends the prose of the block starting with `# OPTIONAL` (placeholders left out).
fn nginx_optional_block(conf: &str) -> String {
    let block: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("# OPTIONAL"))
        // A template's placeholders (`@NODE_MAP@`) stand for commented lines.
        .take_while(|line| line.starts_with('#') || line.starts_with('@'))
        .filter(|line| !line.starts_with('@'))
        .collect();
    assert!(!block.is_empty(), "no `# OPTIONAL` block (the routing by token, commented out)");
    block
        .iter()
        .skip_while(|line| **line != "#")
        .skip(1)
        .map(|line| line.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `{ ... }` body of the first block whose header is `header`, e.g. `upstream hubgate`.
fn nginx_block<'a>(conf: &'a str, header: &str) -> Option<&'a str> {
    let start = conf.find(&format!("{header} {{"))? + header.len() + 2;
    let end = conf[start..].find('}')?;
    Some(&conf[start..start + end])
}

/// The entries of a block (`server a:1 weight=2;` → `["server a:1 weight=2"]`).
fn nginx_entries(block: &str) -> Vec<String> {
    block
        .split(';')
        .map(|entry| entry.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|entry| !entry.is_empty())
        .collect()
}

/// The node a token's part before the first dot names, as the optional map's regex
/// `^(?<node>[^.]+)\.` extracts it (checked below to be exactly that regex).
fn node_of(token: &str) -> Option<&str> {
    token.split_once('.').map(|(node, _)| node).filter(|node| !node.is_empty())
}

#[test]
fn balancing_needs_no_affinity() {
    let compose = compose();
    let gateways = compose_gateways(&compose);

    // Every compose node: stateless, with the same cluster secret, and an advertise URL naming
    // its own service (the Compose network's DNS name) and listen port.
    let mut secrets = BTreeSet::new();
    let mut node_ids = Vec::new();
    for (name, service) in &gateways {
        let env = compose_env(service);
        let config = load(&env, &format!("docker-compose.yml {name}"));
        let secret = config.cluster_secret.clone().unwrap_or_else(|| panic!("{name}: no HUBGATE_CLUSTER_SECRET"));
        secrets.insert(secret);
        let raw = service["environment"]["HUBGATE_CLUSTER_SECRET"].as_str().expect("the secret as a string");
        assert!(raw.starts_with("${HUBGATE_CLUSTER_SECRET:-"), "{name}: overridable like the other secrets: {raw}");
        let advertise = config.advertise_url.clone().unwrap_or_else(|| panic!("{name}: no HUBGATE_ADVERTISE_URL"));
        assert_eq!(advertise, format!("http://{name}:{}", config.listen.port()), "{name}");
        assert!(config.listen.ip().is_unspecified(), "{name}: listens on all addresses, so it must advertise");
        node_ids.push(config.node_id.clone().expect("a fixed node id"));
    }
    assert_eq!(secrets.len(), 1, "one cluster secret for every node");

    // nginx: round robin over every node; nothing routes by the token unless the optional
    // block is uncommented.
    let nginx = read("deploy/compose/nginx.conf");
    let active = nginx_active(&nginx);
    for marker in ["$arg_id", "$hubgate_upstream", "ip_hash", "hash ", "sticky"] {
        assert!(!active.contains(marker), "nginx routes by {marker} by default");
    }
    let passes = nginx_directive(&nginx, "proxy_pass");
    assert!(!passes.is_empty() && passes.iter().all(|pass| pass == "http://hubgate"), "{passes:?}");
    let upstream = nginx_entries(nginx_block(&active, "upstream hubgate").expect("upstream hubgate"));
    for name in gateways.keys() {
        assert!(
            upstream.iter().any(|entry| entry.starts_with(&format!("server {name}:")) && !entry.contains("backup")),
            "{name} in the round robin: {upstream:?}"
        );
    }

    // The optional routing by token, once uncommented: the node before the FIRST dot (a signed
    // token `{node}.{payload}.{tag}` has two), every node mapped to its own upstream with the
    // others as backups, and anything else round robin.
    let optional = nginx_optional_block(&nginx);
    let map = nginx_entries(nginx_block(&optional, "map $arg_id $hubgate_id_node").expect("the map of ?id="));
    assert_eq!(map, [r#""~^(?<node>[^.]+)\." $node"#, r#"default """#], "{optional}");
    let signed = format!("{}.eyJjIjoiYWJjIn0.c2lnbmF0dXJl", node_ids[1]);
    assert_eq!(node_of(&signed), Some(node_ids[1].as_str()));
    let upstreams = nginx_entries(nginx_block(&optional, "map $hubgate_id_node $hubgate_upstream").expect("map"));
    let mut expected: Vec<String> = node_ids.iter().map(|id| format!("{id} {id}")).collect();
    expected.push("default hubgate".into());
    assert_eq!(upstreams, expected);
    for (id, name) in node_ids.iter().zip(gateways.keys()) {
        let servers = nginx_entries(nginx_block(&optional, &format!("upstream {id}")).expect("a per-node upstream"));
        let port = port(&compose_env(&gateways[name])["HUBGATE_LISTEN"]);
        assert_eq!(servers[0], format!("server {name}:{port}"), "{id}'s own node first");
        let backups: BTreeSet<&str> = servers[1..]
            .iter()
            .map(|server| server.strip_suffix(" backup").unwrap_or_else(|| panic!("{id}: {server} is not a backup")))
            .collect();
        let others: BTreeSet<String> =
            gateways.keys().filter(|other| *other != name).map(|other| format!("server {other}:{port}")).collect();
        assert_eq!(backups, others.iter().map(String::as_str).collect(), "{id}: the other nodes as backups");
    }

    // The local cluster's template and script: round robin, the same optional map, and
    // stateless gateways.
    let template = read("deploy/local/nginx.conf.template");
    let active = nginx_active(&template);
    assert!(!active.contains("$arg_id") && !active.contains("$hubgate_upstream"), "the local nginx routes by token");
    let passes = nginx_directive(&template, "proxy_pass");
    assert!(!passes.is_empty() && passes.iter().all(|pass| pass == "http://hubgate"), "{passes:?}");
    assert!(nginx_optional_block(&template).contains(r#""~^(?<node>[^.]+)\." $node;"#), "the first-dot map");
    // The placeholders of the optional upstreams and map sit inside the commented block, and
    // local-cluster.sh fills them with commented lines.
    let lines: Vec<&str> = template.lines().map(str::trim).collect();
    for placeholder in ["@NODE_UPSTREAMS@", "@NODE_MAP@"] {
        let at = lines.iter().position(|line| *line == placeholder).expect(placeholder);
        assert!(lines[at - 1].starts_with('#') && lines[at + 1].starts_with('#'), "{placeholder} is commented around");
    }
    let script = read("deploy/local-cluster.sh");
    assert!(script.contains(r#"node_map+="    #"#) && script.contains(r#"node_upstreams+="    # upstream"#));
    assert!(
        script.contains("--advertise-url \"http://127.0.0.1:$(node_port \"$i\")\""),
        "each gateway advertises its port"
    );
    assert!(script.contains("HUBGATE_CLUSTER_SECRET=$cluster_secret spawn"), "the gateways share a cluster secret");

    // Kubernetes: stateless pods (the secret from the Secret, the advertise URL from the pod
    // IP), and no affinity in the Service or the Ingress.
    let env = k8s_env();
    let config = load(&env, "deploy/k8s pod environment");
    assert!(config.cluster_secret.is_some(), "the pods get HUBGATE_CLUSTER_SECRET");
    assert_eq!(config.advertise_url, Some(format!("http://{POD_IP}:{}", config.listen.port())));
    let container = k8s_gateway_container();
    let entry = |name: &str| {
        container["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|entry| entry["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the container's env"))
            .clone()
    };
    let secret_ref = &entry("HUBGATE_CLUSTER_SECRET")["valueFrom"]["secretKeyRef"];
    assert_eq!(secret_ref["name"], "hubgate", "from the hubgate Secret");
    assert_ne!(secret_ref["optional"], true, "a pod without the secret must not start");
    assert_eq!(entry("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");

    let service = k8s_object("Service", "hubgate");
    let affinity = service["spec"].get("sessionAffinity");
    assert!(affinity.is_none() || affinity == Some(&Value::from("None")), "Service sessionAffinity: {affinity:?}");
    assert!(service["spec"].get("sessionAffinityConfig").is_none());
    let ingress = k8s_object("Ingress", "hubgate");
    let annotations: Vec<&String> =
        ingress["metadata"]["annotations"].as_object().expect("annotations").keys().collect();
    let sticky: Vec<_> = annotations
        .iter()
        .filter(|key| key.contains("affinity") || key.contains("session-cookie") || key.contains("upstream-hash-by"))
        .collect();
    assert!(sticky.is_empty(), "Ingress affinity annotations: {sticky:?}");
}

#[test]
fn the_dockerfile_probes_the_admin_port_and_runs_unprivileged() {
    let dockerfile = read("deploy/Dockerfile");
    // Join continuation lines so each instruction is one line.
    let joined = dockerfile.replace("\\\n", " ");
    let instructions: Vec<&str> = joined.lines().map(str::trim).filter(|line| !line.starts_with('#')).collect();
    let instruction = |name: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter_map(|line| line.strip_prefix(name).filter(|rest| rest.starts_with(' ')).map(str::trim))
            .collect()
    };

    let env: HashMap<String, String> = instruction("ENV")
        .iter()
        .flat_map(|line| line.split_whitespace())
        .filter_map(|pair| pair.split_once('=').map(|(key, value)| (key.to_string(), value.to_string())))
        .collect();
    let config = load(&env, "deploy/Dockerfile ENV");
    let admin = config.admin_listen.expect("HUBGATE_ADMIN_LISTEN in the image").port();
    let exposed: BTreeSet<u16> = instruction("EXPOSE")
        .iter()
        .flat_map(|line| line.split_whitespace())
        .map(|port| port.parse().expect("a port"))
        .collect();
    assert_eq!(exposed, BTreeSet::from([config.listen.port(), admin]));

    let healthcheck = instruction("HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1, "one HEALTHCHECK");
    assert!(healthcheck[0].contains(&format!("/dev/tcp/127.0.0.1/{admin}")), "{}", healthcheck[0]);
    assert!(healthcheck[0].contains("GET /healthz "), "{}", healthcheck[0]);

    let users = instruction("USER");
    let user = users.last().expect("a USER instruction").split(':').next().expect("a user");
    assert!(!["root", "0"].contains(&user.trim()), "the image runs as {user}");
    let container = k8s_gateway_container();
    let run_as =
        k8s_object("Deployment", "hubgate")["spec"]["template"]["spec"]["securityContext"]["runAsUser"].clone();
    assert_eq!(
        run_as.as_u64().map(|uid| uid.to_string()).as_deref(),
        Some(user.trim()),
        "k8s runs as the image's user"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);

    assert_eq!(instruction("ENTRYPOINT"), [r#"["gateway"]"#]);
    assert!(dockerfile.contains("-p gateway -p loadtest"), "both binaries are built");
}
