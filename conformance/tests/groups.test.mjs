// Groups and targeted sends through the relay hub: who receives an Invocation and who does not.
//
// "X did not receive it" is checked after the intended recipients received theirs AND a round
// trip on X completed, so anything the server had queued for X has arrived by then.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { connect, received, roundTrip, useGateway } from "./harness.mjs";

const gw = useGateway();

let hubNumber = 0;
/** Three fresh clients A, B and C on a hub of their own, so hub-wide sends stay in the test. */
let A;
let B;
let C;

beforeEach(async () => {
    hubNumber += 1;
    const hub = `groups-${hubNumber}`;
    [A, B, C] = await Promise.all(["A", "B", "C"].map((name) => connect(gw.url, { hub, name })));
});

async function assertNothingReceived(clients) {
    for (const [name, { connection, inbox }] of Object.entries(clients)) {
        await roundTrip(connection, `a round trip on ${name}`);
        assert.deepEqual(inbox.messages, [], `${name} must not receive this message`);
    }
}

test("SendToGroup reaches every member of the group and nobody else", async () => {
    const atA = received(A, "msg");
    const atB = received(B, "msg");
    const atC = received(C, "msg");
    await A.invoke("JoinGroup", "room");
    await B.invoke("JoinGroup", "room");

    await C.invoke("SendToGroup", "room", "msg", "hello", 42);

    assert.deepEqual(await atA.nth(1), ["hello", 42]);
    assert.deepEqual(await atB.nth(1), ["hello", 42]);
    await assertNothingReceived({ C: { connection: C, inbox: atC } });
    await roundTrip(A);
    await roundTrip(B);
    assert.equal(atA.count, 1, "A receives the group message once");
    assert.equal(atB.count, 1, "B receives the group message once");
});

test("SendToOthersInGroup reaches the other members, not the caller", async () => {
    const atA = received(A, "msg");
    const atB = received(B, "msg");
    const atC = received(C, "msg");
    await A.invoke("JoinGroup", "room");
    await B.invoke("JoinGroup", "room");

    await A.invoke("SendToOthersInGroup", "room", "msg", "from A");

    assert.deepEqual(await atB.nth(1), ["from A"]);
    await assertNothingReceived({ A: { connection: A, inbox: atA }, C: { connection: C, inbox: atC } });
});

test("after LeaveGroup a member no longer receives the group's messages", async () => {
    const atA = received(A, "msg");
    const atB = received(B, "msg");
    await A.invoke("JoinGroup", "room");
    await B.invoke("JoinGroup", "room");
    await C.invoke("SendToGroup", "room", "msg", "before leaving");
    assert.deepEqual(await atB.nth(1), ["before leaving"]);
    assert.deepEqual(await atA.nth(1), ["before leaving"]);

    await B.invoke("LeaveGroup", "room");
    await C.invoke("SendToGroup", "room", "msg", "after leaving");

    assert.deepEqual(await atA.nth(2), ["after leaving"]);
    await roundTrip(B, "a round trip on B");
    assert.deepEqual(atB.messages, [["before leaving"]], "B must not receive messages sent after it left");
});

test("group names may hold any Unicode text: 'salle-é-🎉'", async () => {
    const atA = received(A, "unicode");
    const atB = received(B, "unicode");
    await A.invoke("JoinGroup", "salle-é-🎉");
    await B.invoke("JoinGroup", "salle-e-🎉");

    await C.invoke("SendToGroup", "salle-é-🎉", "unicode", "é");

    assert.deepEqual(await atA.nth(1), ["é"]);
    await assertNothingReceived({ B: { connection: B, inbox: atB } });
});

test("a group named '*' is an ordinary group, not a wildcard", async () => {
    const atA = received(A, "star");
    const atB = received(B, "star");
    await A.invoke("JoinGroup", "*");
    await B.invoke("JoinGroup", "not-star");

    await C.invoke("SendToGroup", "*", "star", "to the star group");

    assert.deepEqual(await atA.nth(1), ["to the star group"]);
    await assertNothingReceived({ B: { connection: B, inbox: atB } });
});

test("group names are case-sensitive", async () => {
    const atA = received(A, "cased");
    const atB = received(B, "cased");
    await A.invoke("JoinGroup", "Room");
    await B.invoke("JoinGroup", "room");

    await C.invoke("SendToGroup", "Room", "cased", "capital R");

    assert.deepEqual(await atA.nth(1), ["capital R"]);
    await assertNothingReceived({ B: { connection: B, inbox: atB } });
});

test("SendToOthers reaches every other connection of the hub, not the caller", async () => {
    const atA = received(A, "t");
    const atB = received(B, "t");
    const atC = received(C, "t");

    await A.invoke("SendToOthers", "t", 1);

    assert.deepEqual(await atB.nth(1), [1]);
    assert.deepEqual(await atC.nth(1), [1]);
    await assertNothingReceived({ A: { connection: A, inbox: atA } });
});

test("SendToAll reaches every connection of the hub, the caller included", async () => {
    const inboxes = [A, B, C].map((connection) => received(connection, "everyone"));

    await B.invoke("SendToAll", "everyone", "hi", { n: 1 });

    for (const inbox of inboxes) {
        assert.deepEqual(await inbox.nth(1), ["hi", { n: 1 }]);
    }
});

test("SendToConnection reaches only that connection", async () => {
    const atA = received(A, "direct");
    const atB = received(B, "direct");
    const atC = received(C, "direct");

    await A.invoke("SendToConnection", B.connectionId, "direct", "x");

    assert.deepEqual(await atB.nth(1), ["x"]);
    await assertNothingReceived({ A: { connection: A, inbox: atA }, C: { connection: C, inbox: atC } });
});

test("hub-wide sends stay within their hub", async () => {
    const elsewhere = await connect(gw.url, { hub: `groups-other-${hubNumber}`, name: "other hub" });
    const atOther = received(elsewhere, "t");
    const atB = received(B, "t");
    await elsewhere.invoke("JoinGroup", "room");
    await B.invoke("JoinGroup", "room");

    await A.invoke("SendToAll", "t", "all");
    await A.invoke("SendToGroup", "room", "t", "group");

    assert.deepEqual(await atB.nth(2), ["group"]);
    assert.deepEqual(atB.messages, [["all"], ["group"]]);
    await assertNothingReceived({ "a client of another hub": { connection: elsewhere, inbox: atOther } });
});
