// Negotiation: the official client's negotiate/connect sequence, and the negotiate endpoint's
// HTTP contract as seen with plain fetch (PROTOCOL.md §0, §1).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";

import { HttpTransportType, HubConnectionState } from "@microsoft/signalr";

import { DEFAULT_WAIT_MS, connect, received, roundTrip, useGateway, waitFor } from "./harness.mjs";

const gw = useGateway();

const WEBSOCKETS_TEXT_AND_BINARY = { transport: "WebSockets", transferFormats: ["Text", "Binary"] };

function negotiate(path, init = { method: "POST" }) {
    return waitFor(fetch(`${gw.url}${path}`, init), DEFAULT_WAIT_MS, `${init.method} ${path}`);
}

describe("the official client", () => {
    test("negotiates by default, and its connectionId is the id the hub sees", async () => {
        const connection = await connect(gw.url);

        assert.equal(connection.state, HubConnectionState.Connected);
        assert.equal(typeof connection.connectionId, "string");
        assert.notEqual(connection.connectionId, "");
        assert.equal(await connection.invoke("GetConnectionId"), connection.connectionId);
    });

    test("connects with skipNegotiation over WebSockets: no connectionId, hub methods work", async () => {
        const connection = await connect(gw.url, {
            skipNegotiation: true,
            transport: HttpTransportType.WebSockets,
        });

        assert.equal(connection.state, HubConnectionState.Connected);
        assert.equal(connection.connectionId, null);
        assert.equal(await connection.invoke("Echo", "skipped negotiation"), "skipped negotiation");
    });
});

describe("POST /hubs/chat/negotiate", () => {
    test("with negotiateVersion=1 answers 200 JSON with version 1, an id, a different token and WebSockets", async () => {
        const response = await negotiate("/hubs/chat/negotiate?negotiateVersion=1");

        assert.equal(response.status, 200);
        assert.match(response.headers.get("content-type") ?? "", /^application\/json\b/);
        const body = await response.json();
        assert.equal(body.negotiateVersion, 1);
        assert.equal(typeof body.connectionId, "string");
        assert.notEqual(body.connectionId, "");
        assert.equal(typeof body.connectionToken, "string");
        assert.notEqual(body.connectionToken, "");
        assert.notEqual(body.connectionToken, body.connectionId, "the connection token must not be the public connection id");
        assert.ok(Array.isArray(body.availableTransports), "availableTransports is an array");
        assert.ok(
            body.availableTransports.some((t) => isDeepStrictEqual(t, WEBSOCKETS_TEXT_AND_BINARY)),
            `availableTransports ${JSON.stringify(body.availableTransports)} must contain ${JSON.stringify(WEBSOCKETS_TEXT_AND_BINARY)}`,
        );
    });

    test("gives each negotiation a fresh connection id and token", async () => {
        const first = await (await negotiate("/hubs/chat/negotiate?negotiateVersion=1")).json();
        const second = await (await negotiate("/hubs/chat/negotiate?negotiateVersion=1")).json();

        assert.notEqual(first.connectionId, second.connectionId);
        assert.notEqual(first.connectionToken, second.connectionToken);
    });

    test("without negotiateVersion answers version 0 and no connectionToken", async () => {
        const response = await negotiate("/hubs/chat/negotiate");

        assert.equal(response.status, 200);
        const body = await response.json();
        assert.equal(body.negotiateVersion, 0);
        assert.equal(typeof body.connectionId, "string");
        assert.notEqual(body.connectionId, "");
        assert.equal("connectionToken" in body, false, `version 0 must not carry a connectionToken: ${JSON.stringify(body)}`);
    });
});

test("GET /hubs/chat/negotiate is 405 Method Not Allowed", async () => {
    const response = await negotiate("/hubs/chat/negotiate?negotiateVersion=1", { method: "GET" });

    assert.equal(response.status, 405);
    await response.arrayBuffer();
});

test("hub names are case-insensitive: /hubs/CHAT is the same hub as /hubs/chat", async () => {
    const member = await connect(gw.url, { hub: "chat", name: "member at /hubs/chat" });
    const sender = await connect(gw.url, { hub: "CHAT", name: "sender at /hubs/CHAT" });
    const memberGot = received(member, "caseCheck");
    await member.invoke("JoinGroup", "case-insensitive-hub");

    await sender.invoke("SendToGroup", "case-insensitive-hub", "caseCheck", "same hub");

    assert.deepEqual(await memberGot.nth(1), ["same hub"]);
    assert.equal(await sender.invoke("Echo", "upper-case path works"), "upper-case path works");
    await roundTrip(member);
    assert.equal(memberGot.count, 1);
});
