// Keep-alive: an idle client with the official client's defaults (serverTimeoutInMilliseconds
// 30 s, keepAliveIntervalInMilliseconds 15 s) stays connected, because the server pings it
// when it has written nothing for 15 s (PROTOCOL.md §5).
//
// This file takes ~36 s; `npm test` runs test files in parallel (--test-concurrency), so it
// overlaps with the others instead of adding to the suite's wall time.

import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";

import { HubConnectionState } from "@microsoft/signalr";

import { connect, problemsOf, useGateway, wireOf } from "./harness.mjs";

const gw = useGateway();

const IDLE_MS = 35_000;
const PING = 6;

test("an idle client stays connected for 35 s with default timeouts, kept alive by server pings", { timeout: IDLE_MS + 20_000 }, async () => {
    const connection = await connect(gw.url);
    const closes = [];
    connection.onclose((error) => closes.push(error ?? "closed without error"));
    const wire = wireOf(connection);
    const start = wire.received.length;

    // Idling is the subject of this test: nothing is sent by the test for 35 s, longer than the
    // client's 30 s server timeout.
    await delay(IDLE_MS);

    assert.deepEqual(closes, [], "onclose must not fire");
    assert.equal(connection.state, HubConnectionState.Connected);
    const pings = wire.received.slice(start).filter((m) => m.type === PING).length;
    assert.ok(pings >= 2, `the server should ping every 15 s of silence: ${pings} Ping(s) in ${IDLE_MS / 1000} s`);
    assert.equal(await connection.invoke("Echo", "still here"), "still here");
    assert.deepEqual(problemsOf(connection), []);
});
