// The shipped deployment, run for real: the hubgate image built from deploy/Dockerfile and the
// cluster of docker-compose.yml (Redis, three gateways, nginx, Prometheus) brought up by a
// Compose implementation on podman. Everything reaches the cluster only through the ports it
// publishes on the host: nginx (LB_PORT) for the official @microsoft/signalr client and the
// REST API, Prometheus (PROMETHEUS_PORT) for its HTTP API.
//
// Run by deploy/podman/test-compose.sh, which builds the images and sets HUBGATE_IMAGE,
// REDIS_IMAGE, NGINX_IMAGE, PROMETHEUS_IMAGE and COMPOSE_BIN. Needs conformance/node_modules
// (npm ci in conformance/).
//
// Healthchecks: podman schedules them with systemd timers; where podman runs without systemd
// (containers, CI sandboxes) nothing runs them, so this test runs each container's configured
// check with `podman healthcheck run` until the engine reports the container healthy.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import net from "node:net";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { after, afterEach, before, describe, test } from "node:test";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CONFORMANCE = join(REPO, "conformance");
const require = createRequire(join(CONFORMANCE, "package.json"));
const { HttpTransportType, HubConnectionState } = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
const { buildConnection, logOf, received, shiftRoundRobin, signHs256, trackReconnects, waitFor } =
    await import(pathToFileURL(join(CONFORMANCE, "tests/harness.mjs")).href);

const PROJECT = process.env.HUBGATE_COMPOSE_PROJECT ?? "hubgate-compose-test";
const COMPOSE_BIN = process.env.COMPOSE_BIN ?? "podman-compose";
const IMAGE = process.env.HUBGATE_IMAGE;
const NODES = ["gateway-1", "gateway-2", "gateway-3"];
const SERVICES = ["redis", ...NODES, "lb", "prometheus"];
const WITH_HEALTHCHECK = ["redis", ...NODES, "lb"];
const HUB = "cluster";
const GROUP = "compose-room";
const ACCESS_KEY = "compose-test-access-key";
const WAIT_MS = 15_000;
const TRANSPORTS = {
    WebSockets: HttpTransportType.WebSockets,
    ServerSentEvents: HttpTransportType.ServerSentEvents,
    LongPolling: HttpTransportType.LongPolling,
};
const PROTOCOLS = { json: () => undefined, messagepack: () => new MessagePackHubProtocol() };
/** Server-Sent Events carry text only: the client refuses MessagePack on them (SignalR's rule). */
const combinationExists = (transport, protocol) => !(transport === "ServerSentEvents" && protocol === "messagepack");
const COMBINATIONS = Object.keys(TRANSPORTS).flatMap((t) => Object.keys(PROTOCOLS).filter((p) => combinationExists(t, p)));

/** Runs a command with a deadline; resolves with {code, stdout, stderr}, never rejects. */
function run(file, args, { ms = 60_000, env } = {}) {
    return new Promise((resolveRun) => {
        execFile(file, args, { cwd: REPO, env: env ?? process.env, timeout: ms, killSignal: "SIGKILL", maxBuffer: 64 << 20 },
            (error, stdout, stderr) => {
                const code = error ? (error.killed ? `killed after ${ms} ms` : error.code ?? 1) : 0;
                resolveRun({ code, stdout: String(stdout), stderr: String(stderr) });
            });
    });
}

/** Like `run`, failing with the output unless the command exits 0. */
async function must(file, args, options) {
    const result = await run(file, args, options);
    assert.equal(result.code, 0, `${file} ${args.join(" ")}: exit ${result.code}\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
}

const podman = (args, options) => must("podman", args, options);

function portIsFree(port) {
    return new Promise((resolvePort) => {
        const server = net.createServer();
        server.once("error", () => resolvePort(false));
        server.listen(port, "127.0.0.1", () => server.close(() => resolvePort(true)));
    });
}

/** A free port below the ephemeral range that port-0 listeners of parallel tests draw from. */
async function freePort(taken) {
    for (let attempt = 0; attempt < 100; attempt++) {
        const port = 20_000 + Math.floor(Math.random() * 12_000);
        if (!taken.has(port) && await portIsFree(port)) {
            taken.add(port);
            return port;
        }
    }
    throw new Error("no free port found");
}

/** Polls `probe` (async, returns a truthy value when done) until it succeeds or `ms` pass. */
async function until(probe, ms, what) {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
        try {
            const value = await probe();
            if (value) {
                return value;
            }
        } catch (error) {
            last = error;
        }
        if (Date.now() > deadline) {
            throw new Error(`Timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
        }
        await new Promise((r) => setTimeout(r, 250));
    }
}

describe("docker-compose.yml on podman: the image, healthchecks, every transport through nginx without affinity, Prometheus, a killed node, down", () => {
    const env = { ...process.env };
    const members = [];
    let composeUp = { stdout: "", stderr: "" };
    let containers = {};

    const compose = (args, ms = 180_000) => run(COMPOSE_BIN, ["-p", PROJECT, ...args], { ms, env });
    const lbUrl = () => `http://127.0.0.1:${env.LB_PORT}`;

    /** The container of a compose service, by the labels podman-compose sets. */
    async function containerOf(service) {
        const names = (await podman(["ps", "-a", "--filter", `label=io.podman.compose.project=${PROJECT}`,
            "--filter", `label=com.docker.compose.service=${service}`, "--format", "{{.Names}}"])).trim().split("\n").filter(Boolean);
        assert.equal(names.length, 1, `one container for ${service}: ${names}`);
        return names[0];
    }

    async function healthOf(container) {
        const [state] = JSON.parse(await podman(["inspect", "--type", "container", container]));
        return (state.State.Health ?? state.State.Healthcheck)?.Status;
    }

    /** Runs the container's own healthcheck until the engine reports it healthy. */
    async function becomeHealthy(container, ms = 90_000) {
        await until(async () => {
            await run("podman", ["healthcheck", "run", container], { ms: 10_000 });
            return (await healthOf(container)) === "healthy";
        }, ms, `${container} to turn healthy (last: ${await healthOf(container).catch((e) => e.message)})`);
    }

    async function promQuery(query) {
        const response = await fetch(`http://127.0.0.1:${env.PROMETHEUS_PORT}/api/v1/query?query=${encodeURIComponent(query)}`);
        const body = await response.json();
        assert.equal(body.status, "success", JSON.stringify(body));
        return body.data.result;
    }

    /** A REST API call through nginx, signed with the access key for this URL. */
    function rest(method, path, body) {
        const url = `${lbUrl()}${path}`;
        const now = Math.floor(Date.now() / 1000);
        const token = signHs256({ aud: url, iat: now, exp: now + 300 }, ACCESS_KEY);
        return fetch(`${url}?api-version=2022-06-01`, {
            method,
            headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
            body: body ? JSON.stringify(body) : undefined,
        });
    }

    async function startMember(name, transport, protocol) {
        const connection = buildConnection(lbUrl(), {
            hub: HUB,
            name,
            transport,
            protocol,
            configure: (builder) => builder.withAutomaticReconnect([0, 250, 500, 1000, 1000, 1000, 2000, 2000, 2000, 5000, 5000]),
        });
        const member = { name, connection, closed: [], reconnections: 0, rejoinFailures: [], news: received(connection, "news") };
        trackReconnects(connection, member, GROUP);
        await waitFor(connection.start(), WAIT_MS, `${name} to connect through nginx`);
        await waitFor(connection.invoke("JoinGroup", GROUP), WAIT_MS, `${name} to join ${GROUP}`);
        member.id = async () => waitFor(connection.invoke("GetConnectionId"), WAIT_MS, `${name}'s connection id`);
        // The holder, from the connection directory in Redis ("node-id address"): with no
        // affinity the node that negotiated (the id's prefix) is often not the one holding it.
        member.node = async () => {
            const id = await member.id();
            const holder = (await podman(["exec", containers.redis, "redis-cli", "GET", `hubgate:directory:conn:${id}`])).trim().split(" ")[0];
            assert.ok(holder, `${name}'s connection ${id} is in the directory`);
            return holder;
        };
        return member;
    }

    async function projectLeftovers() {
        const filter = `label=io.podman.compose.project=${PROJECT}`;
        const list = async (args) => (await podman(args)).trim().split("\n").filter(Boolean);
        return {
            containers: await list(["ps", "-a", "--filter", filter, "--format", "{{.Names}}"]),
            pods: await list(["pod", "ps", "--filter", `name=${PROJECT}`, "--format", "{{.Name}}"]),
            networks: (await list(["network", "ls", "--format", "{{.Name}}"])).filter((n) => n.startsWith(`${PROJECT}_`)),
            volumes: await list(["volume", "ls", "--filter", filter, "--format", "{{.Name}}"]),
        };
    }

    before(async () => {
        for (const name of ["HUBGATE_IMAGE", "REDIS_IMAGE", "NGINX_IMAGE", "PROMETHEUS_IMAGE"]) {
            assert.ok(process.env[name], `${name} is not set (deploy/podman/test-compose.sh sets it)`);
        }
        const taken = new Set();
        Object.assign(env, {
            LB_PORT: String(await freePort(taken)),
            PROMETHEUS_PORT: String(await freePort(taken)),
            GRAFANA_PORT: String(await freePort(taken)),
            HUBGATE_ACCESS_KEY: ACCESS_KEY,
            HUBGATE_JWT_SECRET: "compose-test-jwt-secret",
        });
        // A run that died half-way leaves its project behind.
        await compose(["down", "-t", "5"]);
        composeUp = await compose(["up", "-d", ...SERVICES]);
        assert.equal(composeUp.code, 0, `compose up failed:\n${composeUp.stdout}\n${composeUp.stderr}`);
        for (const service of SERVICES) {
            containers[service] = await containerOf(service);
        }
    });

    afterEach(async (t) => {
        if (!t.passed) {
            process.stderr.write(`\n----- compose up -----\n${composeUp.stdout}\n${composeUp.stderr}\n`);
            for (const [service, container] of Object.entries(containers)) {
                const logs = await run("podman", ["logs", "--tail", "30", container], { ms: 10_000 });
                process.stderr.write(`\n----- ${service} (${container}) -----\n${logs.stdout}${logs.stderr}\n`);
            }
            for (const member of members) {
                process.stderr.write(`\n----- client ${member.name} -----\n${logOf(member.connection).slice(-15).join("\n")}\n`);
            }
        }
    });

    after(async () => {
        await Promise.all(members.map((m) => waitFor(m.connection.stop().catch(() => {}), WAIT_MS, "a client to stop").catch(() => {})));
        await compose(["down", "-t", "5"]);
    });

    test("the image: runs as uid 10001, with a read-only root filesystem, and its HEALTHCHECK passes", async () => {
        const [image] = JSON.parse(await podman(["image", "inspect", IMAGE]));
        assert.equal(image.Config.User, "10001:10001");
        assert.deepEqual(image.Config.Entrypoint, ["gateway"]);

        const name = `${PROJECT}-image-check`;
        await run("podman", ["rm", "-f", name]);
        await podman(["run", "-d", "--name", name, "--read-only", "--network", "none", IMAGE, "--allow-anonymous"]);
        try {
            await becomeHealthy(name, 30_000);
            const [state] = JSON.parse(await podman(["inspect", "--type", "container", name]));
            assert.equal(state.State.Running, true, "still running");
            assert.equal(state.HostConfig.ReadonlyRootfs, true);
            assert.equal((await podman(["exec", name, "id", "-u"])).trim(), "10001");
            assert.equal((await podman(["exec", name, "bash", "-c", "cat /proc/1/status"])).match(/^Uid:\s+(\d+)/m)?.[1], "10001",
                "the gateway process runs as 10001");
            // TLS to Redis (rediss://) verifies against Debian's CA bundle (copied without openssl).
            const bundle = await run("podman", ["exec", name, "grep", "-c", "BEGIN CERTIFICATE", "/etc/ssl/certs/ca-certificates.crt"]);
            assert.ok(bundle.code === 0 && Number(bundle.stdout) > 100, `the CA bundle: ${bundle.stdout}${bundle.stderr}`);
            const write = await run("podman", ["exec", name, "touch", "/usr/local/bin/x"]);
            assert.notEqual(write.code, 0, "the root filesystem refuses writes");
        } finally {
            await run("podman", ["rm", "-f", "-t", "2", name]);
        }
        // Issue 21's target; docs/operations.md reports the measured size.
        assert.ok(image.Size < 100_000_000, `image size ${image.Size} bytes is under 100 MB`);
    });

    test("healthchecks turn healthy: redis, the three gateways (/readyz: connected to Redis), nginx", async () => {
        for (const service of WITH_HEALTHCHECK) {
            await becomeHealthy(containers[service]);
        }
        const lb = await fetch(`${lbUrl()}/lb-health`);
        assert.equal(lb.status, 200);
        const health = await rest("HEAD", "/api/health");
        assert.equal(health.status, 200, "the REST API's health through nginx");
    });

    test("every transport × protocol through nginx, one group across the nodes, the REST API", async () => {
        // Negotiate goes round robin (per nginx worker), so a few clients per transport and
        // protocol land on all three nodes; bounded at 24 per combination.
        const combos = [];
        for (const [protocolName, protocol] of Object.entries(PROTOCOLS)) {
            for (const [transportName, transport] of Object.entries(TRANSPORTS)) {
                if (!combinationExists(transportName, protocolName)) {
                    continue;
                }
                const combo = { name: `${transportName}/${protocolName}`, members: [], nodes: [] };
                while (new Set(combo.nodes).size < NODES.length && combo.members.length < 24) {
                    const member = await startMember(`${transportName}-${protocolName}-${combo.members.length + 1}`, transport, protocol());
                    member.combo = combo.name;
                    members.push(member);
                    combo.members.push(member);
                    const node = await member.node();
                    // A client start makes the same number of requests each time, so round
                    // robin could land every claim on one node: one to three more requests
                    // shift its phase.
                    if (combo.nodes.includes(node)) {
                        await shiftRoundRobin(lbUrl());
                    }
                    combo.nodes.push(node);
                }
                assert.deepEqual(new Set(combo.nodes), new Set(NODES), `${combo.name}: clients on every node (${combo.nodes})`);
                combos.push(combo);
            }
        }

        // nginx balances round robin without affinity: some connections were negotiated on one
        // node and are held by another, and receive like all the others below.
        const ids = await Promise.all(members.map((m) => m.id()));
        const holders = combos.flatMap((combo) => combo.nodes);
        const crossed = members.filter((_, i) => ids[i].slice(0, ids[i].lastIndexOf(".")) !== holders[i]);
        assert.ok(crossed.length > 0, `a connection negotiated on one node and held by another (${ids} on ${holders})`);

        // A send from one client of each combination reaches every client on every node.
        const senders = combos.map((combo) => combo.members[0]);
        for (const [n, sender] of senders.entries()) {
            await waitFor(sender.connection.invoke("SendToGroup", GROUP, "news", `client-${n}`), WAIT_MS, `${sender.name}'s group send`);
        }
        const expected = senders.map((_, n) => `client-${n}`).sort();
        for (const member of members) {
            await member.news.nth(senders.length, WAIT_MS);
            assert.deepEqual(member.news.messages.map(([text]) => text).sort(), expected, `${member.name} got every group message`);
        }

        // The REST API through nginx: the group's connections on every node, then a group send.
        // Presence is eventually consistent (reports reach Redis through each node's writer, and
        // a node's presence client may still be reconnecting right after the cluster started), so
        // the listing is polled until it names every member, with a deadline.
        const want = (await Promise.all(members.map((m) => m.id()))).sort();
        let lastListing = "";
        await until(async () => {
            const listed = await rest("GET", `/api/hubs/${HUB}/groups/${GROUP}/connections`);
            lastListing = `${listed.status} ${await listed.clone().text()}`;
            if (listed.status !== 200) {
                return false;
            }
            const ids = (await listed.json()).value.map((c) => c.connectionId).sort();
            return JSON.stringify(ids) === JSON.stringify(want);
        }, WAIT_MS, "the group's connections listed on every node").catch((error) => {
            throw new Error(`${error.message}; last answer: ${lastListing}`);
        });
        const sent = await rest("POST", `/api/hubs/${HUB}/groups/${GROUP}/:send`, { target: "news", arguments: ["from-rest"] });
        assert.equal(sent.status, 202, await sent.text());
        for (const member of members) {
            assert.deepEqual(await member.news.nth(senders.length + 1, WAIT_MS), ["from-rest"], `${member.name} got the REST send`);
        }
    });

    test("Prometheus scrapes /metrics of every node", async () => {
        const targets = NODES.map((node) => `${node}:9464`).sort();
        let seen = {};
        await until(async () => {
            const up = await promQuery('up{job="hubgate"}');
            seen = Object.fromEntries(up.map((s) => [s.metric.instance, s.value[1]]));
            return targets.every((target) => seen[target] === "1");
        }, 60_000, "Prometheus to report up == 1 for every gateway").catch((error) => {
            throw new Error(`${error.message}; last seen ${JSON.stringify(seen)}`);
        });
        assert.deepEqual(Object.keys(seen).sort(), targets);
        // The scraped series are the gateways' own: every node reports its connections.
        const connections = await until(async () => {
            const result = await promQuery('sum(hubgate_connections{job="hubgate"})');
            return result.length === 1 && Number(result[0].value[1]) === members.length ? result : undefined;
        }, 60_000, `Prometheus to count ${members.length} connections`);
        assert.equal(Number(connections[0].value[1]), members.length);
    });

    test("podman kill of a gateway: its clients reconnect through nginx and receive again", async () => {
        assert.ok(members.length > 0, "the clients of the transport test are connected");
        const victim = "gateway-2";
        const placement = await Promise.all(members.map((m) => m.node()));
        const moved = members.filter((_, i) => placement[i] === victim);
        assert.equal(new Set(moved.map((m) => m.combo)).size, COMBINATIONS.length, "clients of every combination on the victim");
        const before = new Map(moved.map((m) => [m, m.reconnections]));

        const startedAt = async () => JSON.parse(await podman(["inspect", "--type", "container", containers[victim]]))[0].State;
        const first = await startedAt();
        assert.equal(first.Running, true, `${victim} runs before the kill`);
        await podman(["kill", containers[victim]]);
        // Down, or already restarted by its restart policy (unless-stopped).
        await until(async () => {
            const state = await startedAt();
            return !state.Running || state.StartedAt !== first.StartedAt;
        }, WAIT_MS, `${victim} to die`);
        await waitFor(() => moved.every((m) => m.reconnections > before.get(m) || m.rejoinFailures.length > 0 || m.closed.length > 0),
            60_000, `${victim}'s clients to reconnect through nginx and rejoin`);
        for (const member of moved) {
            assert.deepEqual(member.closed, [], `${member.name}: onclose never fired`);
            assert.deepEqual(member.rejoinFailures, [], `${member.name}: rejoining did not fail`);
            assert.equal(member.connection.state, HubConnectionState.Connected);
        }

        const counts = members.map((m) => m.news.count);
        const sender = members.find((m) => !moved.includes(m));
        await waitFor(sender.connection.invoke("SendToGroup", GROUP, "news", "after-kill"), WAIT_MS, "a group send after the kill");
        for (const [i, member] of members.entries()) {
            assert.deepEqual(await member.news.nth(counts[i] + 1, WAIT_MS), ["after-kill"], `${member.name} got the message after the kill`);
        }
    });

    test("compose down leaves no container, pod, network or volume of the project", async () => {
        await Promise.all(members.map((m) => waitFor(m.connection.stop(), WAIT_MS, `${m.name} to stop`)));
        assert.deepEqual((await projectLeftovers()).containers.length, SERVICES.length, "the project's containers before down");
        const down = await compose(["down", "-t", "20"]);
        assert.equal(down.code, 0, `compose down:\n${down.stdout}\n${down.stderr}`);
        assert.deepEqual(await projectLeftovers(), { containers: [], pods: [], networks: [], volumes: [] });
    });
});
