// The native local cluster, end to end: `deploy/local-cluster.sh up` (its own state dir and
// free ports) starts redis-server, three gateways on the Redis backplane, nginx and Prometheus;
// official clients reach the gateways only through nginx's one URL, on WebSockets, Server-Sent
// Events and long polling, each with negotiation. nginx balances round robin with no affinity
// (deploy/local/nginx.conf.template): the gateways share a cluster secret, so the negotiate, the
// connect and every later request of a connection may land on different nodes. Which node holds
// a connection is asked of Redis (the connection directory), never inferred from the id. A group
// message crosses nodes on every transport; SIGKILL on one gateway makes its clients reconnect
// through nginx to the survivors; Prometheus reports the nodes; `down` leaves no process and no
// port behind.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, afterEach, before, describe, test } from "node:test";

import { HubConnectionState } from "@microsoft/signalr";

import { DEFAULT_WAIT_MS, TRANSPORTS, buildConnection, logOf, received, shiftRoundRobin, trackReconnects, waitFor } from "./harness.mjs";

const execFileAsync = promisify(execFile);
const SCRIPT = join(resolve(dirname(fileURLToPath(import.meta.url)), "../.."), "deploy/local-cluster.sh");
const NODES = ["gw1", "gw2", "gw3"];
const GROUP = "cluster-room";

function portIsFree(port) {
    return new Promise((resolvePort) => {
        const server = net.createServer();
        server.once("error", () => resolvePort(false));
        server.listen(port, "127.0.0.1", () => server.close(() => resolvePort(true)));
    });
}

/** `count` consecutive free ports. */
async function freePorts(count, taken) {
    for (let attempt = 0; attempt < 50; attempt++) {
        // Below the ephemeral range (32768-60999 on Linux) that port-0 listeners of other
        // tests running in parallel draw from.
        const base = 20_000 + Math.floor(Math.random() * 12_000);
        const ports = Array.from({ length: count }, (_, i) => base + i);
        if (ports.some((p) => taken.has(p))) {
            continue;
        }
        const free = await Promise.all(ports.map(portIsFree));
        if (free.every(Boolean)) {
            ports.forEach((p) => taken.add(p));
            return ports;
        }
    }
    throw new Error(`no ${count} consecutive free ports found`);
}

/**
 * Our environment minus the gateway's HUBGATE_* settings (as the harness does), so that a
 * developer's shell cannot change what the gateways run with; HUBGATE_BIN and the log settings
 * pass.
 */
function scriptEnvironment(env) {
    const kept = Object.entries(process.env).filter(([key]) =>
        !key.startsWith("HUBGATE_") || ["HUBGATE_BIN", "HUBGATE_LOG", "HUBGATE_LOG_FORMAT"].includes(key));
    return { ...Object.fromEntries(kept), ...env };
}

/** Runs the script with `command`; resolves with its exit code and output. */
function cluster(env, command, ms = 60_000) {
    const child = spawn("bash", [SCRIPT, command], { env: scriptEnvironment(env), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const done = new Promise((resolveRun) => child.once("exit", (code) => resolveRun({ code, output })));
    return waitFor(done, ms, `local-cluster.sh ${command}`);
}

/** The pid recorded in the state dir for a component (`gw1`, `nginx`, ...). */
function pidOf(state, name) {
    return Number(readFileSync(join(state, "run", `${name}.pid`), "utf8").split(" ")[0]);
}

/** Whether `pid` runs; a zombie (exited, not yet reaped by init) does not count. */
function isRunning(pid) {
    try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
    } catch {
        return false;
    }
}

async function promQuery(port, query) {
    const response = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(query)}`);
    const body = await response.json();
    assert.equal(body.status, "success", JSON.stringify(body));
    return body.data.result;
}

/**
 * The node holding `connectionId`, from the connection directory in Redis
 * (`hubgate:directory:conn:<id>` = "node-id address"), asked with redis-cli (installed with
 * redis-server).
 */
async function holderOf(redisPort, connectionId) {
    const { stdout } = await execFileAsync("redis-cli", ["-p", String(redisPort), "GET", `hubgate:directory:conn:${connectionId}`]);
    return stdout.trim().split(" ")[0] || null;
}

/** A client that rejoins GROUP whenever it reconnects, as an application would. */
async function startMember(url, redisPort, name, transport) {
    const connection = buildConnection(url, {
        hub: "cluster",
        name,
        transport,
        configure: (builder) => builder.withAutomaticReconnect([0, 100, 250, 500, 1000, 1000, 1000]),
    });
    const member = { name, connection, closed: [], reconnections: 0, rejoinFailures: [], news: received(connection, "news") };
    trackReconnects(connection, member, GROUP);
    await waitFor(connection.start(), DEFAULT_WAIT_MS, `${name} to connect through nginx`);
    await waitFor(connection.invoke("JoinGroup", GROUP), DEFAULT_WAIT_MS, `${name} to join ${GROUP}`);
    member.node = async () => {
        const id = await waitFor(connection.invoke("GetConnectionId"), DEFAULT_WAIT_MS, `${name}'s connection id`);
        const holder = await holderOf(redisPort, id);
        assert.ok(holder, `${name}'s connection ${id} is in the directory`);
        return holder;
    };
    return member;
}

describe("deploy/local-cluster.sh: redis, three gateways, nginx round robin without affinity, Prometheus", () => {
    const state = mkdtempSync(join(tmpdir(), "hubgate-cluster-"));
    const env = {};
    const ports = [];
    const members = [];
    let pids = {};
    let upOutput = "";

    before(async () => {
        if (!process.env.HUBGATE_BIN) {
            throw new Error("HUBGATE_BIN is not set (scripts/test-all sets it to the debug gateway)");
        }
        const taken = new Set();
        const [lb, redis, prometheus] = await freePorts(3, taken);
        const gateways = await freePorts(NODES.length, taken);
        const admins = await freePorts(NODES.length, taken);
        Object.assign(env, {
            HUBGATE_CLUSTER_DIR: state,
            GATEWAYS: String(NODES.length),
            LB_PORT: String(lb),
            REDIS_PORT: String(redis),
            PROMETHEUS_PORT: String(prometheus),
            GATEWAY_PORT: String(gateways[0]),
            ADMIN_PORT: String(admins[0]),
        });
        ports.push(lb, redis, prometheus, ...gateways, ...admins);
        const up = await cluster(env, "up");
        upOutput = up.output;
        assert.equal(up.code, 0, `up failed:\n${up.output}`);
        pids = Object.fromEntries(["redis", ...NODES, "nginx", "prometheus"].map((name) => [name, pidOf(state, name)]));
    });

    afterEach((t) => {
        if (!t.passed) {
            process.stderr.write(`\n----- local-cluster.sh up -----\n${upOutput}\n`);
            for (const member of members) {
                process.stderr.write(`\n----- client ${member.name} -----\n${logOf(member.connection).slice(-30).join("\n")}\n`);
            }
        }
    });

    after(async () => {
        await Promise.all(members.map((m) => m.connection.stop().catch(() => {})));
        await cluster(env, "down").catch(() => {});
        rmSync(state, { recursive: true, force: true });
    });

    test("up twice says it is already up; status shows every process ready", async () => {
        const again = await cluster(env, "up");
        assert.equal(again.code, 0, again.output);
        assert.match(again.output, /already up/);
        const status = await cluster(env, "status");
        assert.equal(status.code, 0, status.output);
        for (const name of ["redis", ...NODES, "nginx", "prometheus"]) {
            assert.match(status.output, new RegExp(`^${name} +pid ${pids[name]} `, "m"), status.output);
        }
    });

    test("every transport through nginx, a group across nodes, SIGKILL on a node, Prometheus sees it", async () => {
        const lbUrl = `http://127.0.0.1:${env.LB_PORT}`;
        // nginx balances every request round robin, so a few clients per transport land on all
        // three nodes (bounded at 24 per transport).
        const placement = [];
        for (const [name, transport] of Object.entries(TRANSPORTS)) {
            const nodes = [];
            while (new Set(nodes).size < NODES.length && nodes.length < 24) {
                const member = await startMember(lbUrl, env.REDIS_PORT, `${name}-${nodes.length + 1}`, transport);
                member.transport = name;
                members.push(member);
                const node = await member.node();
                // A client start makes the same number of requests each time, so round robin
                // could land every claim on one node: one to three more requests shift its phase.
                if (nodes.includes(node)) {
                    await shiftRoundRobin(lbUrl);
                }
                nodes.push(node);
            }
            assert.deepEqual(new Set(nodes), new Set(NODES), `${name}: clients on every node (${nodes})`);
            placement.push(...nodes);
        }
        // No affinity: some connections were negotiated on one node (the id's prefix) and are
        // held by another.
        const ids = await Promise.all(members.map((m) => m.connection.invoke("GetConnectionId")));
        const crossed = ids.filter((id, i) => id.slice(0, id.lastIndexOf(".")) !== placement[i]);
        assert.ok(crossed.length > 0, `a connection negotiated on one node and held by another (${ids} on ${placement})`);

        // One send from each node reaches every client.
        const senders = NODES.map((node) => members[placement.indexOf(node)]);
        for (const [n, sender] of senders.entries()) {
            await waitFor(sender.connection.invoke("SendToGroup", GROUP, "news", `before-${n}`), DEFAULT_WAIT_MS,
                `${sender.name}'s group send`);
        }
        for (const member of members) {
            await member.news.nth(3);
            assert.deepEqual(member.news.messages.map(([text]) => text).sort(), ["before-0", "before-1", "before-2"],
                `${member.name} got every group message`);
        }

        const victim = "gw2";
        const moved = members.filter((_, i) => placement[i] === victim);
        const stayed = members.filter((_, i) => placement[i] !== victim);
        assert.deepEqual(new Set(moved.map((m) => m.transport)), new Set(Object.keys(TRANSPORTS)), "clients of every transport on the victim");
        process.kill(pids[victim], "SIGKILL");
        await waitFor(() => !isRunning(pids[victim]), DEFAULT_WAIT_MS, `${victim} to die`);

        await waitFor(() => moved.every((m) => m.reconnections >= 1 || m.rejoinFailures.length > 0 || m.closed.length > 0),
            15_000, `${victim}'s clients to reconnect through nginx and rejoin`);
        for (const member of moved) {
            assert.deepEqual(member.closed, [], `${member.name}: onclose never fired`);
            assert.deepEqual(member.rejoinFailures, [], `${member.name}: rejoining did not fail`);
            assert.equal(member.connection.state, HubConnectionState.Connected);
            assert.notEqual(await member.node(), victim, `${member.name} is on a surviving node`);
        }

        const before = members.map((m) => m.news.count);
        await waitFor(stayed[0].connection.invoke("SendToGroup", GROUP, "news", "after"), DEFAULT_WAIT_MS, "a group send after the kill");
        for (const [i, member] of members.entries()) {
            assert.deepEqual(await member.news.nth(before[i] + 1), ["after"], `${member.name} got the message after the kill`);
            assert.deepEqual(member.closed, [], `${member.name}: onclose never fired`);
        }

        // Prometheus scrapes each admin port every second: the survivors hold all
        // connections, the killed node's target is down.
        const survivors = NODES.filter((n) => n !== victim);
        let seen = {};
        await waitFor((async () => {
            for (;;) {
                const up = await promQuery(env.PROMETHEUS_PORT, 'up{job="hubgate"}');
                const connections = await promQuery(env.PROMETHEUS_PORT, 'sum by (node) (hubgate_connections{job="hubgate"})');
                seen = {
                    up: Object.fromEntries(up.map((s) => [s.metric.node, s.value[1]])),
                    connections: Object.fromEntries(connections.map((s) => [s.metric.node, Number(s.value[1])])),
                };
                const total = survivors.reduce((sum, n) => sum + (seen.connections[n] ?? 0), 0);
                if (survivors.every((n) => seen.up[n] === "1") && (seen.up[victim] ?? "0") === "0" && total === members.length) {
                    return;
                }
                await new Promise((r) => setTimeout(r, 200));
            }
        })(), 15_000, "Prometheus to show the survivors up with all connections and the killed node down")
            .catch((error) => {
                throw new Error(`${error.message}; last seen ${JSON.stringify(seen)}`);
            });
    });

    test("down stops every process it started and frees every port", async () => {
        await Promise.all(members.map((m) => m.connection.stop().catch(() => {})));
        const down = await cluster(env, "down");
        assert.equal(down.code, 0, down.output);
        for (const [name, pid] of Object.entries(pids)) {
            assert.equal(isRunning(pid), false, `${name} (pid ${pid}) is gone`);
        }
        for (const port of ports) {
            assert.equal(await portIsFree(port), true, `port ${port} is free`);
        }
        const status = await cluster(env, "status");
        assert.equal(status.code, 3, status.output);
    });
});
