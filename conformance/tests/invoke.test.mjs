// Invoking hub methods with the official client: results, void methods, non-blocking sends,
// case-insensitive method names (PROTOCOL.md §3.3, §3.5).

import assert from "node:assert/strict";
import { test } from "node:test";

import { HubConnectionState } from "@microsoft/signalr";

import { connect, problemsOf, received, useGateway, wireOf } from "./harness.mjs";

const gw = useGateway();

const COMPLETION = 3;
const PING = 6;

test("Echo returns a Unicode string unchanged", async () => {
    const connection = await connect(gw.url);
    const text = "你好，世界！ 🚀";

    assert.equal(await connection.invoke("Echo", text), text);
});

test("Echo returns a nested object unchanged", async () => {
    const connection = await connect(gw.url);
    const value = { a: [1, 2, { b: null }], s: "x" };

    assert.deepEqual(await connection.invoke("Echo", value), value);
});

test("Echo returns null, numbers, booleans and arrays unchanged", async () => {
    const connection = await connect(gw.url);

    for (const value of [null, 0, -1.5, 9007199254740991, true, false, "", [], [null, "a", 1]]) {
        assert.deepEqual(await connection.invoke("Echo", value), value, `Echo(${JSON.stringify(value)})`);
    }
});

test("send('SendToAll', 'ping', 1) resolves without a result and reaches the caller too", async () => {
    const connection = await connect(gw.url, { hub: "invoke-send-to-all" });
    const pings = received(connection, "ping");

    assert.equal(await connection.send("SendToAll", "ping", 1), undefined);

    assert.deepEqual(await pings.nth(1), [1]);
});

test("invoking a void method (SendToAll) completes without a result", async () => {
    const connection = await connect(gw.url, { hub: "invoke-void" });
    const pings = received(connection, "ping");
    const wire = wireOf(connection);
    const start = wire.received.length;

    assert.equal(await connection.invoke("SendToAll", "ping", 2), undefined);

    const completions = wire.received.slice(start).filter((m) => m.type === COMPLETION);
    assert.equal(completions.length, 1, `one Completion expected, got ${JSON.stringify(completions)}`);
    assert.equal("result" in completions[0], false, `a void method's Completion has no 'result': ${JSON.stringify(completions[0])}`);
    assert.equal("error" in completions[0], false, `unexpected error: ${JSON.stringify(completions[0])}`);
    assert.deepEqual(await pings.nth(1), [2]);
});

test("send (no invocation id) gets nothing back from the server, not even a Completion", async () => {
    const connection = await connect(gw.url);
    const wire = wireOf(connection);
    const start = wire.received.length;

    assert.equal(await connection.send("Echo", "x"), undefined);
    assert.equal(await connection.invoke("Echo", "after"), "after");

    const messages = wire.received.slice(start).filter((m) => m.type !== PING);
    assert.equal(messages.length, 1, `only the Completion of Echo('after') was expected, got ${JSON.stringify(messages)}`);
    assert.equal(messages[0].type, COMPLETION);
    assert.equal(messages[0].result, "after");
    assert.deepEqual(problemsOf(connection), []);
    assert.equal(connection.state, HubConnectionState.Connected);
});

test("method names are case-insensitive: invoke('echo', 1) calls Echo", async () => {
    const connection = await connect(gw.url);

    assert.equal(await connection.invoke("echo", 1), 1);
    assert.equal(await connection.invoke("ECHO", "loud"), "loud");
    assert.equal(await connection.invoke("getconnectionid"), connection.connectionId);
});

test("concurrent invocations each get their own result", async () => {
    const connection = await connect(gw.url);
    const values = Array.from({ length: 50 }, (_, i) => `value-${i}`);

    const results = await Promise.all(values.map((v) => connection.invoke("Echo", v)));

    assert.deepEqual(results, values);
});
