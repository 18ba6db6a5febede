// Keep-alive: an idle client with the official client's defaults (serverTimeoutInMilliseconds
// 30 s, keepAliveIntervalInMilliseconds 15 s) stays connected on every transport: over
// WebSockets and Server-Sent Events because the server pings it when it has written nothing
// for 15 s; over long polling, which never pings, because the polls themselves keep it alive
// and the server does not time a silent long-polling client out (PROTOCOL.md §5).
//
// This file takes ~36 s; `npm test` runs test files in parallel (--test-concurrency), so it
// overlaps with the others instead of adding to the suite's wall time.

import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";

import { HttpTransportType, HubConnectionState } from "@microsoft/signalr";

import { connect, problemsOf, useGateway, wireOf } from "./harness.mjs";

const gw = useGateway();

const IDLE_MS = 35_000;
const PING = 6;

/** Connects on `transport` and records what happens to the connection while it idles. */
async function idleClient(transport) {
    const connection = await connect(gw.url, { transport, name: HttpTransportType[transport] });
    const closes = [];
    connection.onclose((error) => closes.push(error ?? "closed without error"));
    const wire = wireOf(connection);
    return { connection, closes, wire, start: wire.received.length };
}

test("idle clients stay connected for 35 s with default timeouts on every transport", { timeout: IDLE_MS + 20_000 }, async () => {
    const websocket = await idleClient(HttpTransportType.WebSockets);
    const events = await idleClient(HttpTransportType.ServerSentEvents);
    const polling = await idleClient(HttpTransportType.LongPolling);

    // Idling is the subject of this test: nothing is sent by the test for 35 s, longer than the
    // client's 30 s server timeout.
    await delay(IDLE_MS);

    for (const [name, idle, pinged] of [["WebSockets", websocket, true], ["ServerSentEvents", events, true], ["LongPolling", polling, false]]) {
        const { connection, closes, wire, start } = idle;
        assert.deepEqual(closes, [], `${name}: onclose must not fire`);
        assert.equal(connection.state, HubConnectionState.Connected, name);
        const pings = wire.received.slice(start).filter((m) => m.type === PING).length;
        if (pinged) {
            assert.ok(pings >= 2, `${name}: the server should ping every 15 s of silence: ${pings} Ping(s) in ${IDLE_MS / 1000} s`);
        } else {
            assert.equal(pings, 0, `${name}: no pings over long polling`);
        }
        assert.equal(await connection.invoke("Echo", "still here"), "still here", name);
        assert.deepEqual(problemsOf(connection), [], name);
    }
});
