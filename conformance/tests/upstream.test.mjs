// Upstream webhooks with the official client: the chat backend of examples/upstream (plain
// Node.js) receives the hub's events as Azure SignalR's serverless mode sends them, verifies
// their signatures, answers invocations and broadcasts through the REST API; its connect hook
// refuses banned users. Also on two nodes sharing a Redis.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { HttpTransportType } from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import * as msgpack from "@msgpack/msgpack";

import { startBackend } from "../../examples/upstream/backend.mjs";
import {
    DEFAULT_WAIT_MS,
    buildConnection,
    connect,
    received,
    startGateway,
    startRedis,
    stopAllClients,
    waitFor,
    waitReady,
} from "./harness.mjs";

const KEY = "upstream-conformance-key";

function upstreamArgs(backend) {
    const api = `http://127.0.0.1:${backend.port}/api/{hub}/{category}/{event}`;
    return [
        "--access-key", KEY,
        "--upstream", `url=${api};hub=chat;category=connections;event=connect`,
        "--upstream", `url=${api};hub=chat`,
    ];
}

/** Resolves once `condition()` holds, polling, or fails at the deadline. */
async function eventually(condition, what) {
    const poll = async () => {
        while (!condition()) {
            await new Promise((resolve) => setTimeout(resolve, 10));
        }
    };
    await waitFor(poll(), DEFAULT_WAIT_MS, what);
}

describe("one node with the example chat backend", () => {
    let backend;
    let gateway;

    before(async () => {
        backend = await startBackend({ gatewayUrl: "", accessKey: KEY, msgpack });
        gateway = await startGateway(upstreamArgs(backend));
        backend.gatewayUrl = gateway.url;
    });
    after(async () => {
        await stopAllClients();
        await gateway?.stop();
        await backend?.stop();
    });

    for (const [name, transport] of [
        ["WebSockets", HttpTransportType.WebSockets],
        ["ServerSentEvents", HttpTransportType.ServerSentEvents],
        ["LongPolling", HttpTransportType.LongPolling],
    ]) {
        test(`SendMessage is validated and stored by the backend and broadcast to everyone (${name})`, async () => {
            const reader = await connect(gateway.url, { path: "/hubs/chat?user=reader", name: "reader" });
            const messages = received(reader, "newMessage");
            const writer = await connect(gateway.url, { path: "/hubs/chat?user=writer", transport, name: "writer" });
            const text = `hello over ${name}`;
            const { id } = await writer.invoke("SendMessage", text);
            assert.ok(id >= 1);
            const [message] = await messages.nth(1);
            assert.deepEqual(message, { id, user: "writer", text });
            await assert.rejects(writer.invoke("SendMessage", ""), /A message must be 1 to 500 characters/);
            const history = await writer.invoke("History");
            assert.ok(history.some((stored) => stored.id === id && stored.text === text));
            assert.equal(backend.badSignatures, 0, "every request carried a valid signature");
        });
    }

    test("MessagePack clients reach the backend too", async () => {
        const client = await connect(gateway.url, { path: "/hubs/chat?user=packer", protocol: new MessagePackHubProtocol() });
        const { id } = await client.invoke("SendMessage", "packed");
        const history = await client.invoke("History");
        assert.deepEqual(history.find((stored) => stored.id === id), { id, user: "packer", text: "packed" });
    });

    test("the connect hook refuses a banned user: start() fails with its status", async () => {
        const banned = buildConnection(gateway.url, { path: "/hubs/chat?banned=1" });
        await assert.rejects(waitFor(banned.start(), DEFAULT_WAIT_MS, "start() to fail"), /403/);
        const skipping = buildConnection(gateway.url, {
            path: "/hubs/chat?banned=1",
            skipNegotiation: true,
            transport: HttpTransportType.WebSockets,
        });
        await assert.rejects(waitFor(skipping.start(), DEFAULT_WAIT_MS, "start() to fail"));
    });

    test("connected comes before the first message, and disconnected follows stop()", async () => {
        const client = await connect(gateway.url, { path: "/hubs/chat?user=leaver" });
        const connectionId = client.connectionId;
        await client.invoke("History");
        await client.stop();
        await eventually(
            () => backend.events.some((e) => e.connectionId === connectionId && e.event === "disconnected"),
            "the disconnected event",
        );
        const events = backend.events.filter((e) => e.connectionId === connectionId).map((e) => e.event);
        assert.deepEqual(events, ["connect", "connected", "History", "disconnected"]);
    });
});

describe("two nodes on one Redis with the example chat backend", () => {
    let redis;
    let backend;
    const nodes = [];

    before(async () => {
        redis = await startRedis();
        backend = await startBackend({ gatewayUrl: "", accessKey: KEY });
        for (const id of ["node-a", "node-b"]) {
            const node = await startGateway([
                "--backplane", "redis", "--redis-url", redis.url, "--node-id", id, ...upstreamArgs(backend),
            ]);
            await waitReady(node);
            nodes.push(node);
        }
        backend.gatewayUrl = nodes[0].url;
    });
    after(async () => {
        await stopAllClients();
        for (const node of nodes) {
            await node.stop();
        }
        await backend?.stop();
        redis?.stop();
    });

    test("the node holding the connection calls the backend; its REST broadcast reaches both nodes", async () => {
        const onA = await connect(nodes[0].url, { path: "/hubs/chat?user=ann", name: "ann" });
        const onB = await connect(nodes[1].url, { path: "/hubs/chat?user=bo", name: "bo" });
        const atA = received(onA, "newMessage");
        const atB = received(onB, "newMessage");
        const { id } = await onB.invoke("SendMessage", "from node b");
        const call = backend.events.find((e) => e.event === "SendMessage" && e.connectionId === onB.connectionId);
        assert.ok(call.connectionId.startsWith("node-b."), `the call came from node b (${call.connectionId})`);
        assert.deepEqual((await atA.nth(1))[0], { id, user: "bo", text: "from node b" });
        assert.deepEqual((await atB.nth(1))[0], { id, user: "bo", text: "from node b" });
    });
});
