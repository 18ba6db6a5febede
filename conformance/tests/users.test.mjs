// Authentication with HS256 bearer tokens (the client's accessTokenFactory) and sends addressed
// to a user, i.e. to every connection whose token's `sub` is that user.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { HubConnectionState } from "@microsoft/signalr";

import {
    DEFAULT_WAIT_MS,
    buildConnection,
    connect,
    nowSeconds,
    received,
    roundTrip,
    signHs256,
    useGateway,
    waitFor,
} from "./harness.mjs";

const SECRET = "test-secret";

function tokenFor(sub, { secret = SECRET, expiresIn = 3600 } = {}) {
    const now = nowSeconds();
    return signHs256({ sub, iat: now, exp: now + expiresIn }, secret);
}

/** The rejection of start() for a client that negotiates with this token factory. */
async function startFailure(url, accessTokenFactory) {
    const connection = buildConnection(url, accessTokenFactory ? { accessTokenFactory } : {});
    let failure;
    await assert.rejects(
        waitFor(connection.start(), DEFAULT_WAIT_MS, "start() to fail"),
        (error) => {
            failure = error;
            return true;
        },
    );
    assert.equal(connection.state, HubConnectionState.Disconnected);
    return failure;
}

describe("with --jwt-secret", () => {
    const gw = useGateway(["--jwt-secret", SECRET]);

    test("SendToUser reaches every connection of that user and nobody else", async () => {
        const alice1 = await connect(gw.url, { name: "alice#1", accessTokenFactory: () => tokenFor("alice") });
        const alice2 = await connect(gw.url, { name: "alice#2", accessTokenFactory: () => tokenFor("alice") });
        const bob = await connect(gw.url, { name: "bob", accessTokenFactory: () => tokenFor("bob") });
        const atAlice1 = received(alice1, "note");
        const atAlice2 = received(alice2, "note");
        const atBob = received(bob, "note");

        await bob.invoke("SendToUser", "alice", "note", "hi");

        assert.deepEqual(await atAlice1.nth(1), ["hi"]);
        assert.deepEqual(await atAlice2.nth(1), ["hi"]);
        await roundTrip(bob, "a round trip on bob");
        assert.deepEqual(atBob.messages, [], "bob must not receive a note sent to alice");
    });

    test("a user can send to itself: SendToUser to the caller's own user reaches all its connections", async () => {
        const alice1 = await connect(gw.url, { name: "alice#1", accessTokenFactory: () => tokenFor("alice") });
        const alice2 = await connect(gw.url, { name: "alice#2", accessTokenFactory: () => tokenFor("alice") });
        const atAlice1 = received(alice1, "self");
        const atAlice2 = received(alice2, "self");

        await alice1.invoke("SendToUser", "alice", "self", 1);

        assert.deepEqual(await atAlice1.nth(1), [1]);
        assert.deepEqual(await atAlice2.nth(1), [1]);
    });

    test("a client without a token is refused: start() fails with 'Unauthorized: Status code '401''", async () => {
        const error = await startFailure(gw.url, undefined);

        assert.equal(error.message, "Failed to complete negotiation with the server: Error: Unauthorized: Status code '401'");
    });

    test("a token signed with another secret is refused with 401", async () => {
        const error = await startFailure(gw.url, () => tokenFor("mallory", { secret: "wrong-secret" }));

        assert.match(error.message, /^Failed to complete negotiation with the server: Error: .*Status code '401'$/);
    });

    test("an expired token is refused with 401", async () => {
        const error = await startFailure(gw.url, () => tokenFor("alice", { expiresIn: -3600 }));

        assert.match(error.message, /^Failed to complete negotiation with the server: Error: .*Status code '401'$/);
    });

    test("negotiate answers 401 to a request without a valid bearer token", async () => {
        const plain = await waitFor(
            fetch(`${gw.url}/hubs/chat/negotiate?negotiateVersion=1`, { method: "POST" }),
            DEFAULT_WAIT_MS,
            "POST negotiate without a token",
        );
        assert.equal(plain.status, 401);
        await plain.arrayBuffer();

        const forged = await waitFor(
            fetch(`${gw.url}/hubs/chat/negotiate?negotiateVersion=1`, {
                method: "POST",
                headers: { Authorization: `Bearer ${tokenFor("alice", { secret: "wrong-secret" })}` },
            }),
            DEFAULT_WAIT_MS,
            "POST negotiate with a forged token",
        );
        assert.equal(forged.status, 401);
        await forged.arrayBuffer();
    });
});

describe("with --jwt-secret and --allow-anonymous", () => {
    const gw = useGateway(["--jwt-secret", "s", "--allow-anonymous"]);

    test("a client without a token connects", async () => {
        const connection = await connect(gw.url);

        assert.equal(connection.state, HubConnectionState.Connected);
        assert.equal(await connection.invoke("Echo", "anonymous"), "anonymous");
    });

    test("a client with a valid token connects and is reachable by user", async () => {
        const carol = await connect(gw.url, { name: "carol", accessTokenFactory: () => tokenFor("carol", { secret: "s" }) });
        const anonymous = await connect(gw.url, { name: "anonymous" });
        const atCarol = received(carol, "note");

        await anonymous.invoke("SendToUser", "carol", "note", "hello carol");

        assert.deepEqual(await atCarol.nth(1), ["hello carol"]);
    });

    test("a bad token is still refused with 401", async () => {
        const error = await startFailure(gw.url, () => tokenFor("carol", { secret: "not-s" }));

        assert.match(error.message, /Status code '401'$/);
    });
});
