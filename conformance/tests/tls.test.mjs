// TLS on the gateway (--tls-cert, --tls-key) with the official client: a test CA made with the
// openssl command line issues the gateway's certificate for 127.0.0.1 and localhost; a client
// that trusts the CA (NODE_EXTRA_CA_CERTS) works over https:// and wss:// on every transport,
// and one that does not is refused. The clients run in child Node processes because Node reads
// NODE_EXTRA_CA_CERTS only when it starts.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { startGateway } from "./harness.mjs";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const CLIENT_DEADLINE_MS = 30_000;

const dir = mkdtempSync(join(tmpdir(), "hubgate-tls-"));
const file = (name) => join(dir, name);
let gateway;

/** A CA, and a certificate it signs for localhost and 127.0.0.1 (EC P-256, valid two days). */
async function makeCertificates() {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    await run("openssl", [
        "req", "-x509", ...ec, "-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", "2",
        "-subj", "/CN=hubgate conformance CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    await run("openssl", ["req", ...ec, "-keyout", file("server.key"), "-out", file("server.csr"), "-subj", "/CN=localhost"]);
    writeFileSync(
        file("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" +
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    await run("openssl", [
        "x509", "-req", "-in", file("server.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"),
        "-CAcreateserial", "-out", file("server.pem"), "-days", "2", "-extfile", file("server.ext"),
    ]);
}

/** Runs tls-client.mjs for `transports`; its JSON lines, and whether it exited 0. */
async function client(url, transports, trustedCa) {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    if (trustedCa) {
        env.NODE_EXTRA_CA_CERTS = trustedCa;
    }
    const args = [join(here, "tls-client.mjs"), url, ...transports];
    try {
        const { stdout } = await run(process.execPath, args, { env, timeout: CLIENT_DEADLINE_MS });
        return { ok: true, results: stdout.trim().split("\n").map((line) => JSON.parse(line)) };
    } catch (error) {
        if (error.killed) {
            throw new Error(`the client did not finish within ${CLIENT_DEADLINE_MS} ms`);
        }
        const lines = (error.stdout ?? "").trim().split("\n").filter(Boolean);
        return { ok: false, results: lines.map((line) => JSON.parse(line)), stderr: error.stderr };
    }
}

before(async () => {
    await makeCertificates();
    gateway = await startGateway(["--tls-cert", file("server.pem"), "--tls-key", file("server.key")]);
});

after(async () => {
    await gateway?.stop();
    rmSync(dir, { recursive: true, force: true });
});

test("the gateway announces an https:// address", () => {
    assert.match(gateway.url, /^https:\/\/127\.0\.0\.1:\d+$/);
});

test("a client trusting the test CA connects over WebSockets, SSE and long polling on https/wss", async () => {
    const transports = ["WebSockets", "ServerSentEvents", "LongPolling"];
    const { ok, results, stderr } = await client(`${gateway.url}/hubs/tls`, transports, file("ca.pem"));
    assert.ok(ok, `client failed: ${JSON.stringify(results)} ${stderr ?? ""}`);
    assert.deepEqual(
        results,
        transports.map((transport) => ({
            transport,
            echo: `over ${transport}`,
            broadcast: `to all over ${transport}`,
        })),
    );
});

test("a client without the test CA is refused, for not trusting the certificate", async () => {
    const transports = ["fetch", "WebSockets", "ServerSentEvents", "LongPolling"];
    const { ok, results } = await client(`${gateway.url}/hubs/tls`, transports, null);
    assert.equal(ok, false);
    assert.deepEqual(results.map((result) => result.transport), transports);
    for (const result of results) {
        assert.ok("error" in result, `${result.transport} connected without trusting the CA: ${JSON.stringify(result)}`);
    }
    // Node names the reason: nothing it trusts signed the certificate.
    assert.match(results[0].code, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT_IN_CHAIN/, JSON.stringify(results[0]));
});

test("the same client trusting the CA sees the negotiate answer", async () => {
    const { ok, results } = await client(`${gateway.url}/hubs/tls`, ["fetch"], file("ca.pem"));
    assert.ok(ok, JSON.stringify(results));
    assert.deepEqual(results, [{ transport: "fetch", status: 200 }]);
});
