// Hub method errors: the exact texts the official server sends, which the JS client surfaces as
// the rejected invoke's Error message; a failed invocation never ends the connection
// (PROTOCOL.md §3.5).

import assert from "node:assert/strict";
import { test } from "node:test";

import { HubConnectionState } from "@microsoft/signalr";

import { DEFAULT_WAIT_MS, connect, useGateway, waitFor } from "./harness.mjs";

const gw = useGateway();

/** Invokes, expects a rejection with exactly `message`, then checks the connection still works. */
async function assertInvokeFails(connection, message, method, ...args) {
    const call = `invoke(${[method, ...args].map((a) => JSON.stringify(a)).join(", ")})`;
    await assert.rejects(
        waitFor(connection.invoke(method, ...args), DEFAULT_WAIT_MS, call),
        (error) => {
            assert.ok(error instanceof Error, `${call} must reject with an Error`);
            assert.equal(error.message, message, `${call} error text`);
            return true;
        },
    );
    assert.equal(connection.state, HubConnectionState.Connected, `still connected after ${call}`);
    assert.equal(await connection.invoke("Echo", "still works"), "still works", `Echo after ${call}`);
}

test("an unknown method fails with: Unknown hub method 'NoSuchMethod'", async () => {
    const connection = await connect(gw.url);

    await assertInvokeFails(connection, "Unknown hub method 'NoSuchMethod'", "NoSuchMethod");
});

test("Echo with no arguments fails with: Failed to invoke 'Echo' due to an error on the server.", async () => {
    const connection = await connect(gw.url);

    await assertInvokeFails(connection, "Failed to invoke 'Echo' due to an error on the server.", "Echo");
});

test("Echo with two arguments fails with: Failed to invoke 'Echo' due to an error on the server.", async () => {
    const connection = await connect(gw.url);

    await assertInvokeFails(connection, "Failed to invoke 'Echo' due to an error on the server.", "Echo", 1, 2);
});

test("JoinGroup('') fails with a HubException: group name must not be empty", async () => {
    const connection = await connect(gw.url);

    await assertInvokeFails(
        connection,
        "An unexpected error occurred invoking 'JoinGroup' on the server. HubException: group name must not be empty",
        "JoinGroup",
        "",
    );
});

test("several failures in a row leave the connection usable", async () => {
    const connection = await connect(gw.url);

    await assertInvokeFails(connection, "Unknown hub method 'NoSuchMethod'", "NoSuchMethod");
    await assertInvokeFails(connection, "Failed to invoke 'Echo' due to an error on the server.", "Echo");
    await assertInvokeFails(connection, "Unknown hub method 'AlsoMissing'", "AlsoMissing", 1, "two");
    assert.equal(await connection.invoke("GetConnectionId"), connection.connectionId);
});
