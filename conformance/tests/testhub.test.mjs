// The official client's own functional tests, against the test hub
// (gateway/examples/testhub.rs), on every transport and hub protocol: WebSockets, Server-Sent
// Events and long polling × JSON and MessagePack (MessagePack not on SSE). PROTOCOL.md §7, §8.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { HttpTransportType, HubConnectionState, Subject } from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

import { DEFAULT_WAIT_MS, buildConnection, collect, connect, logOf, problemsOf, received, useTestHub, waitFor } from "./harness.mjs";

const hub = useTestHub();

const MATRIX = [
    { transport: HttpTransportType.WebSockets, name: "WebSockets", protocol: "json" },
    { transport: HttpTransportType.WebSockets, name: "WebSockets", protocol: "messagepack" },
    { transport: HttpTransportType.ServerSentEvents, name: "ServerSentEvents", protocol: "json" },
    { transport: HttpTransportType.LongPolling, name: "LongPolling", protocol: "json" },
    { transport: HttpTransportType.LongPolling, name: "LongPolling", protocol: "messagepack" },
];

function hubProtocol(name) {
    return name === "messagepack" ? new MessagePackHubProtocol() : undefined;
}

/** Resolves with the error `onclose` reports (undefined for a clean close). */
function closed(connection) {
    return new Promise((resolve) => connection.onclose((error) => resolve(error)));
}

async function clientResult(url, connectionId) {
    const response = await fetch(`${url}/clientresult/${connectionId}`);
    assert.equal(response.status, 200);
    return response.text();
}

for (const { transport, name, protocol } of MATRIX) {
    describe(`${name} + ${protocol}`, () => {
        const open = (options = {}) =>
            connect(hub.url, { path: "/testhub", transport, protocol: hubProtocol(protocol), ...options });

        test("invokes Echo with Unicode, then stops with a clean close", async () => {
            const connection = await open();
            const onClose = closed(connection);
            assert.equal(await connection.invoke("Echo", "你好，世界！"), "你好，世界！");
            await connection.stop();
            assert.equal(await waitFor(onClose, DEFAULT_WAIT_MS, "onclose"), undefined);
            assert.deepEqual(problemsOf(connection).filter((p) => p.level !== "Warning"), []);
        });

        test("reports its transport and the connection id the client knows", async () => {
            const connection = await open();
            assert.equal(await connection.invoke("GetActiveTransportName"), name);
            assert.equal(await connection.invoke("GetCallerConnectionId"), connection.connectionId);
        });

        test("send resolves and server calls reach handlers whatever their case", async () => {
            const connection = await open();
            const messages = received(connection, "mEsSaGe");
            const objects = received(connection, "CustomObject");
            await connection.send("Echo", "fire and forget");
            await connection.invoke("InvokeWithString", "hello");
            assert.deepEqual(await messages.nth(1), ["hello"]);
            await connection.send("SendCustomObject", { Name: "test", Value: 42 });
            const [object] = await objects.nth(1);
            assert.equal(object.Name, "test");
            assert.equal(Number(object.Value), 42);
        });

        test("streams a, b, c then completes; an empty stream just completes", async () => {
            const connection = await open();
            assert.deepEqual(await collect(connection.stream("Stream")), ["a", "b", "c"]);
            assert.deepEqual(await collect(connection.stream("EmptyStream")), []);
        });

        test("disposing an infinite stream cancels it on the server", async () => {
            const connection = await open();
            const canceled = received(connection, "StreamCanceled");
            let first;
            const gotItem = new Promise((resolve) => (first = resolve));
            const subscription = connection.stream("InfiniteStream").subscribe({
                next: () => first(),
                complete: () => {},
                error: () => {},
            });
            await waitFor(gotItem, DEFAULT_WAIT_MS, "a first item");
            subscription.dispose();
            await canceled.nth(1);
        });

        test("exact error texts for throwing methods and mismatched invocation kinds", async () => {
            const connection = await open();
            await assert.rejects(connection.invoke("ThrowException", "An error occurred."), {
                message: "An unexpected error occurred invoking 'ThrowException' on the server. InvalidOperationException: An error occurred.",
            });
            await assert.rejects(connection.invoke("EmptyStream"), {
                message: "The client attempted to invoke the streaming 'EmptyStream' method with a non-streaming invocation.",
            });
            await assert.rejects(connection.invoke("Stream"), {
                message: "The client attempted to invoke the streaming 'Stream' method with a non-streaming invocation.",
            });
            await assert.rejects(collect(connection.stream("StreamThrowException", "An error occurred.")), {
                message: "An unexpected error occurred invoking 'StreamThrowException' on the server. InvalidOperationException: An error occurred.",
            });
            await assert.rejects(collect(connection.stream("Echo", "42")), {
                message: "The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation.",
            });
            assert.equal(await connection.invoke("Echo", "still connected"), "still connected");
        });

        test("can be stopped and started again, keeping its handlers", async () => {
            const connection = buildConnection(hub.url, { path: "/testhub", transport, protocol: hubProtocol(protocol) });
            const messages = received(connection, "message");
            await connection.start();
            await connection.stop();
            await connection.start();
            await connection.invoke("InvokeWithString", "again");
            assert.deepEqual(await messages.nth(1), ["again"]);
        });

        test("complex objects round-trip and come back as expected", async () => {
            const connection = await open();
            if (protocol === "json") {
                const object = {
                    String: "hello world",
                    IntArray: [1, 2, 3],
                    ByteArray: "aGVsbG8=",
                    Guid: "00010203-0405-0607-0706-050403020100",
                    DateTime: "2002-04-01T10:20:15Z",
                };
                assert.deepEqual(await connection.invoke("EchoComplexObject", object), object);
                assert.deepEqual(await connection.invoke("SendComplexObject"), {
                    String: "hello world",
                    IntArray: [1, 2, 3],
                    ByteArray: "AQID",
                    Guid: "00010203-0405-0607-0706-050403020100",
                    DateTime: "2000-01-01T00:00:00Z",
                });
            } else {
                const object = {
                    String: "hello world",
                    IntArray: [1, 2, 3],
                    ByteArray: new Uint8Array([0x68, 0x65, 0x6c, 0x6c, 0x6f]),
                    Guid: "00010203-0405-0607-0706-050403020100",
                    DateTime: new Date(Date.UTC(2002, 3, 1, 10, 20, 15)),
                };
                assert.deepEqual(await connection.invoke("EchoComplexObject", object), object);
                assert.deepEqual(await connection.invoke("SendComplexObject"), {
                    String: "hello world",
                    IntArray: [1, 2, 3],
                    ByteArray: new Uint8Array([1, 2, 3]),
                    Guid: "00010203-0405-0607-0706-050403020100",
                    DateTime: new Date(Date.UTC(2000, 0, 1)),
                });
            }
        });

        test("upload streams are concatenated, and a failing upload fails the call", async () => {
            const connection = await open();
            const parts = new Subject();
            const result = connection.invoke("StreamingConcat", parts);
            for (const part of ["Hello ", "world", "!"]) {
                parts.next(part);
            }
            parts.complete();
            assert.equal(await result, "Hello world!");

            const failing = new Subject();
            const failed = connection.invoke("StreamingConcat", failing);
            failing.next("partial");
            failing.error(new Error("Something bad"));
            await assert.rejects(failed, {
                message: "An unexpected error occurred invoking 'StreamingConcat' on the server. HubException: Something bad",
            });
        });

        test("client results: a value, a thrown error, and no handler", async () => {
            const connection = await open();
            connection.on("Result", () => 10);
            assert.equal(await clientResult(hub.url, connection.connectionId), "10");

            const throwing = await open();
            throwing.on("Result", () => {
                throw new Error("from callback");
            });
            assert.equal(await clientResult(hub.url, throwing.connectionId), "Error: from callback");

            const silent = await open();
            assert.equal(await clientResult(hub.url, silent.connectionId), "Client didn't provide a result.");
        });

        test("headers of the starting request reach the hub, user headers included", async () => {
            const connection = await open({ headers: { "X-HEADER": "VALUE" } });
            assert.equal(await connection.invoke("GetHeader", "X-HEADER"), "VALUE");
            const agent = await connection.invoke("GetHeader", "User-Agent");
            assert.match(agent, /^Microsoft SignalR\//);
        });
    });
}

describe("transport selection", () => {
    test("without WebSockets, JSON picks Server-Sent Events and MessagePack long polling", async () => {
        const json = await connect(hub.url, { path: "/testhub-nowebsockets" });
        assert.equal(await json.invoke("GetActiveTransportName"), "ServerSentEvents");
        const binary = await connect(hub.url, { path: "/testhub-nowebsockets", protocol: new MessagePackHubProtocol() });
        assert.equal(await binary.invoke("GetActiveTransportName"), "LongPolling");
    });

    test("when WebSockets cannot start, the client falls back to the next transport", async () => {
        class BrokenWebSocket {
            constructor() {
                throw new Error("WebSockets are unavailable here");
            }
        }
        const json = await connect(hub.url, { path: "/testhub", WebSocket: BrokenWebSocket });
        assert.equal(await json.invoke("GetActiveTransportName"), "ServerSentEvents");
        const binary = await connect(hub.url, {
            path: "/testhub",
            WebSocket: BrokenWebSocket,
            protocol: new MessagePackHubProtocol(),
        });
        assert.equal(await binary.invoke("GetActiveTransportName"), "LongPolling");
    });

    test("long polling stop sends DELETE and closes cleanly", async () => {
        const connection = await connect(hub.url, { path: "/testhub", transport: HttpTransportType.LongPolling });
        const onClose = closed(connection);
        await connection.stop();
        assert.equal(await waitFor(onClose, DEFAULT_WAIT_MS, "onclose"), undefined);
        assert.equal(connection.state, HubConnectionState.Disconnected);
        const log = logOf(connection);
        assert.ok(log.some((line) => line.includes("sending DELETE request")), "a DELETE was sent");
        assert.ok(log.some((line) => line.includes("DELETE request accepted")), `the DELETE was accepted:\n${log.join("\n")}`);
    });
});

describe("connection lifecycle", () => {
    test("connectionId is null before start, the server's id while connected, null after stop", async () => {
        const connection = buildConnection(hub.url, { path: "/testhub" });
        assert.equal(connection.connectionId, null);
        await connection.start();
        assert.equal(await connection.invoke("GetCallerConnectionId"), connection.connectionId);
        await connection.stop();
        assert.equal(connection.connectionId, null);
    });

    test("skipNegotiation over WebSockets works and leaves connectionId unknown", async () => {
        const connection = await connect(hub.url, {
            path: "/testhub",
            transport: HttpTransportType.WebSockets,
            skipNegotiation: true,
        });
        assert.equal(connection.connectionId ?? null, null);
        assert.equal(await connection.invoke("Echo", "direct"), "direct");
    });

    test("a negotiate redirect is followed and the hub sees the hop count", async () => {
        const connection = await connect(hub.url, { path: "/redirect" });
        assert.equal(await connection.invoke("GetNumRedirects"), 1);
        assert.equal(await connection.invoke("GetCallerConnectionId"), connection.connectionId);
    });

    test("cookies set by negotiate are sent on later requests; expired ones are not", async () => {
        for (const transport of [HttpTransportType.LongPolling, HttpTransportType.ServerSentEvents, HttpTransportType.WebSockets]) {
            const connection = await connect(hub.url, { path: "/testhub", transport });
            assert.equal(await connection.invoke("GetCookie", "testCookie"), "testValue", `transport ${transport}`);
            assert.equal(await connection.invoke("GetCookie", "testCookie2"), "testValue2");
            assert.equal(await connection.invoke("GetCookie", "expiredCookie"), null);
        }
    });

    test("automatic reconnect after a server timeout gets a new connection id", async () => {
        for (const transport of [HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents]) {
            const connection = await connect(hub.url, {
                path: "/testhub",
                transport,
                configure: (builder) => builder.withAutomaticReconnect([0]),
            });
            const firstId = connection.connectionId;
            const reconnected = new Promise((resolve) => connection.onreconnected((id) => resolve(id)));
            connection.onreconnecting(() => {
                connection.serverTimeoutInMilliseconds = 30_000;
            });
            // The shorter timeout starts with the next message from the server.
            connection.serverTimeoutInMilliseconds = 1;
            connection.invoke("Echo", "starts the timer").catch(() => {});
            const newId = await waitFor(reconnected, DEFAULT_WAIT_MS, "onreconnected");
            assert.notEqual(newId, firstId);
            assert.equal(newId, connection.connectionId);
            assert.equal(await connection.invoke("GetCallerConnectionId"), newId);
            assert.equal(await connection.invoke("Echo", "after reconnect"), "after reconnect");
        }
    });

    test("stateful reconnect resumes the same connection after the socket drops", async () => {
        const connection = await connect(hub.url, {
            path: "/testhub",
            transport: HttpTransportType.WebSockets,
            configure: (builder) => builder.withStatefulReconnect(),
        });
        const id = connection.connectionId;
        const messages = received(connection, "message");
        await connection.invoke("InvokeWithString", "before");
        assert.deepEqual(await messages.nth(1), ["before"]);
        // Drop the socket without a close handshake, as a network failure would.
        const socket = connection.connection.transport._webSocket;
        assert.ok(socket && typeof socket.terminate === "function", "the Node WebSocket is reachable");
        socket.terminate();
        // Calls made while the socket is down are buffered and sent once it is back.
        await waitFor(connection.invoke("InvokeWithString", "during"), DEFAULT_WAIT_MS, "a call across the drop");
        assert.deepEqual(await messages.nth(2), ["during"]);
        const sameId = await waitFor(connection.invoke("GetCallerConnectionId"), DEFAULT_WAIT_MS, "the caller's id");
        assert.equal(sameId, id, "the same connection resumed");
        assert.equal(connection.state, HubConnectionState.Connected);
        assert.equal(messages.count, 2, "no duplicates");
    });
});

describe("with token authentication", () => {
    const secured = useTestHub(["--jwt-secret", "conformance-secret", "--allow-anonymous"]);

    test("a redirect's access token identifies the client on every transport", async () => {
        for (const transport of [HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling]) {
            const connection = await connect(secured.url, { path: "/redirect-with-token", transport });
            assert.equal(await connection.invoke("GetUser"), "redirected-user", `transport ${HttpTransportType[transport]}`);
        }
        const anonymous = await connect(secured.url, { path: "/testhub" });
        assert.equal(await anonymous.invoke("GetUser"), null);
    });
});
