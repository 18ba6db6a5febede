// Message order across a cluster: one sender, 1,000 messages numbered 1..1000 fired as fast as
// the official client can (every call in flight at once, not awaited one by one), relayed by
// two gateway nodes sharing one real redis-server. Every receiver must get exactly 1..1000, in
// ascending order: none lost, none duplicated, none overtaken.
//
// For every transport (WebSockets, Server-Sent Events, long polling) and protocol (JSON;
// MessagePack where the transport carries binary), with `invoke` and with `send`, a sender on
// node 1 relays
// - through SendToGroup to a group with a member on node 1 and a member on node 2,
// - through SendToConnection to a connection on node 2, and to one on node 1.
// Each stream ends with a marker sent after all 1,000 have arrived; the receiver's list up to
// the marker must be exactly 1..1000.
//
// The nodes run with the default --max-parallel-invocations (a connection's calls must run one
// at a time unless the operator says otherwise, as the official server does), and a second
// cluster runs with --max-parallel-invocations 16: there, too, the relay hub's sends must keep
// the sender's order.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { HttpTransportType } from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

import { DEFAULT_WAIT_MS, buildConnection, startGateway, startRedis, waitFor, waitReady } from "./harness.mjs";

const MESSAGES = 1_000;
/** How long 1,000 messages may take to arrive at every receiver (long polling is the slowest). */
const DELIVERY_MS = 20_000;
const END = "end";

const TRANSPORTS = [
    ["WebSockets", HttpTransportType.WebSockets, ["json", "messagepack"]],
    ["ServerSentEvents", HttpTransportType.ServerSentEvents, ["json"]],
    ["LongPolling", HttpTransportType.LongPolling, ["json", "messagepack"]],
];

/** One redis-server and two gateway nodes on it, each started with `extraArgs`. */
async function startCluster(extraArgs) {
    const redis = await startRedis();
    const nodes = [];
    try {
        for (const id of ["node1", "node2"]) {
            nodes.push(await startGateway([
                "--backplane", "redis",
                "--redis-url", redis.url,
                "--node-id", id,
                ...extraArgs,
            ]));
        }
        await Promise.all(nodes.map(waitReady));
    } catch (e) {
        await Promise.all(nodes.map((node) => node.stop()));
        redis.stop();
        throw e;
    }
    return {
        redis,
        nodes,
        async stop() {
            await Promise.all(nodes.map((node) => node.stop()));
            redis.stop();
        },
    };
}

/** What a receiver got on one client method: numbers and the end marker, in arrival order. */
function collect(connection, target) {
    const values = [];
    connection.on(target, (value) => values.push(value));
    return values;
}

/** Counts of what is wrong with `values` (the arrivals before the end marker) against 1..MESSAGES. */
function analyse(values) {
    const seen = new Map();
    let outOfOrder = 0;
    let highest = 0;
    const examples = [];
    for (const [index, value] of values.entries()) {
        seen.set(value, (seen.get(value) ?? 0) + 1);
        if (value < highest) {
            outOfOrder += 1;
            if (examples.length < 5) {
                examples.push(`#${value} at position ${index + 1}, after #${highest}`);
            }
        }
        highest = Math.max(highest, value);
    }
    let lost = 0;
    for (let n = 1; n <= MESSAGES; n++) {
        if (!seen.has(n)) {
            lost += 1;
        }
    }
    const duplicated = [...seen.values()].reduce((sum, count) => sum + Math.max(0, count - 1), 0);
    const foreign = [...seen.keys()].filter((v) => !(Number.isInteger(v) && v >= 1 && v <= MESSAGES));
    return { received: values.length, lost, duplicated, outOfOrder, foreign, examples };
}

function distinctNumbers(values) {
    return new Set(values.filter((v) => typeof v === "number")).size;
}

/**
 * One case: a sender on node 1 and receivers on both nodes, all with `transport` and
 * `protocol`; three streams of 1..MESSAGES (group, connection on node 2, connection on node 1),
 * each sent with `mode` ("invoke" or "send") and checked at every receiver.
 */
async function orderCase(t, cluster, { transport, protocol, mode, hub }) {
    const [node1, node2] = cluster.nodes;
    const connections = [];
    const open = async (node, name) => {
        const connection = buildConnection(node.url, {
            hub,
            name,
            transport,
            protocol: protocol === "messagepack" ? new MessagePackHubProtocol() : undefined,
            // The harness records every frame's content; 3,000+ frames per client would only
            // cost CPU here.
            logMessageContent: false,
        });
        connections.push(connection);
        const streams = { group: collect(connection, "group"), direct: collect(connection, "direct") };
        await waitFor(connection.start(), DEFAULT_WAIT_MS, `${name} (${hub}) to connect to ${node.url}`);
        const id = await waitFor(connection.invoke("GetConnectionId"), DEFAULT_WAIT_MS, `${name}'s connection id`);
        assert.equal(id.slice(0, id.lastIndexOf(".")), node === node1 ? "node1" : "node2", `${name} is on its node`);
        return { name, connection, id, streams };
    };
    const failures = [];
    try {
        const sender = await open(node1, "sender");
        const near = await open(node1, "receiver-node1");
        const far = await open(node2, "receiver-node2");
        const group = `${hub}-room`;
        for (const member of [near, far]) {
            await waitFor(member.connection.invoke("JoinGroup", group), DEFAULT_WAIT_MS, `${member.name} to join ${group}`);
        }

        const streams = [
            { title: `SendToGroup (members on node1 and node2)`, method: "SendToGroup", address: group, target: "group", receivers: [near, far] },
            { title: `SendToConnection to node2`, method: "SendToConnection", address: far.id, target: "direct", receivers: [far] },
            { title: `SendToConnection to node1`, method: "SendToConnection", address: near.id, target: "direct", receivers: [near] },
        ];
        for (const stream of streams) {
            const before = new Map(stream.receivers.map((r) => [r, r.streams[stream.target].length]));
            const arrivals = (r) => r.streams[stream.target].slice(before.get(r));

            const calls = [];
            for (let n = 1; n <= MESSAGES; n++) {
                calls.push(sender.connection[mode](stream.method, stream.address, stream.target, n));
            }
            await waitFor(Promise.all(calls), DELIVERY_MS, `the sender's ${MESSAGES} ${mode} calls of ${stream.method} to complete`);

            // Every number has arrived (or the deadline passed: then the report says what is lost).
            await waitFor(() => stream.receivers.every((r) => distinctNumbers(arrivals(r)) >= MESSAGES), DELIVERY_MS,
                `${MESSAGES} distinct messages at every receiver`).catch(() => {});
            // Then the marker: anything arriving after all 1,000 (a duplicate) lands before it.
            await waitFor(sender.connection.invoke(stream.method, stream.address, stream.target, END), DEFAULT_WAIT_MS,
                `the end marker's ${stream.method}`);
            await waitFor(() => stream.receivers.every((r) => arrivals(r).includes(END)), DEFAULT_WAIT_MS,
                "the end marker at every receiver").catch(() => {});

            for (const receiver of stream.receivers) {
                const got = arrivals(receiver);
                const end = got.indexOf(END);
                const report = analyse(end === -1 ? got : got.slice(0, end));
                const ok = end !== -1 && report.received === MESSAGES && report.lost === 0 && report.duplicated === 0 &&
                    report.outOfOrder === 0 && report.foreign.length === 0 && got.length === end + 1;
                const line = `${stream.title} → ${receiver.name}: received ${report.received}, lost ${report.lost}, ` +
                    `duplicated ${report.duplicated}, out of order ${report.outOfOrder}` +
                    `${end === -1 ? ", end marker missing" : ""}` +
                    `${report.examples.length ? ` (e.g. ${report.examples.join("; ")})` : ""}`;
                t.diagnostic(line);
                if (!ok) {
                    failures.push(line);
                }
            }
        }
    } finally {
        await Promise.all(connections.map((c) => waitFor(c.stop(), DEFAULT_WAIT_MS, "a client to stop").catch(() => {})));
    }
    assert.deepEqual(failures, [], `every receiver gets 1..${MESSAGES} in order, nothing lost or duplicated`);
}

function cases() {
    const list = [];
    for (const [transportName, transport, protocols] of TRANSPORTS) {
        for (const protocol of protocols) {
            for (const mode of ["invoke", "send"]) {
                list.push({ transportName, transport, protocol, mode });
            }
        }
    }
    return list;
}

function clusterSuite(title, extraArgs, selected, hubPrefix) {
    describe(title, { concurrency: true }, () => {
        let cluster;
        before(async () => {
            cluster = await startCluster(extraArgs);
        });
        afterEach(() => {
            for (const node of cluster?.nodes ?? []) {
                if (node.exited()) {
                    node.dumpLogs("a node exited");
                    throw new Error(`gateway ${node.url} exited during the test`);
                }
            }
        });
        after(async () => {
            await cluster?.stop();
        });
        for (const { transportName, transport, protocol, mode } of selected) {
            const hub = `${hubPrefix}-${transportName}-${protocol}-${mode}`.toLowerCase();
            test(`${transportName} ${protocol}, ${mode}: ${MESSAGES} messages to a group and to connections arrive in order`, async (t) => {
                await orderCase(t, cluster, { transport, protocol, mode, hub });
            });
        }
    });
}

clusterSuite("two nodes on Redis, default settings", [], cases(), "order");

clusterSuite(
    "two nodes on Redis, --max-parallel-invocations 16: relay sends still keep the sender's order",
    ["--max-parallel-invocations", "16"],
    cases(),
    "order16",
);
