// The multi-version client suite: one set of tests, run by every official JavaScript client
// version in clients.mjs on every transport × protocol it supports, against the real gateway
// binary (HUBGATE_BIN). Each tests/client-versions-*.test.mjs file calls `defineClientSuite`
// for one version, so node's test runner runs the versions in parallel processes.
//
// Per version and transport × protocol:
//   - start; Echo of a Unicode string, a nested object, binary and a 100 KB value (on a gateway
//     started with a raised --max-message-size); an unknown method's error text; stop;
//   - the relay hub's sends to all / others / a group / one connection;
//   - automatic reconnect after the gateway process restarts on the same port (3.0+: exactly one
//     reconnect, to the new process); 1.1 has no automatic reconnect: the test pins that the
//     connection closes and start() connects again (in a child process, restart-without-reconnect.mjs,
//     because of a 1.1 client bug described there);
// and, for versions with stateful reconnect (8.0+) on WebSockets: a TCP proxy between client and
// gateway cuts the live connection while messages flow both ways; the client resumes the same
// connection and every numbered message arrives exactly once, in order.
//
// Nothing sleeps to synchronise: every wait is for an observable condition with a deadline.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { DEFAULT_WAIT_MS, freePort, startGateway, waitFor } from "../tests/harness.mjs";
import { combinations } from "./clients.mjs";
import { Clients, collect, connectionIdOf, loadClient, roundTrip, startGatewayOnPort, startProxy } from "./support.mjs";

/**
 * Runs `node versions/<script> ...args` and resolves with the JSON it printed on its last
 * stdout line; fails with its stderr if it exits non-zero or not within 30 s.
 */
function runChild(script, args) {
    const child = spawn(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), ...args], {
        stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
        stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
        stderr += chunk;
    });
    const done = new Promise((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", (code, signal) => {
            if (code === 0) {
                resolve(JSON.parse(stdout.trim().split("\n").at(-1)));
            } else {
                reject(new Error(`${script} ${args.join(" ")} exited with ${code ?? signal}:\n${stderr}`));
            }
        });
    });
    return waitFor(done, 30_000, `${script} ${args.join(" ")}`).finally(() => child.kill("SIGKILL"));
}

/** A value large enough to need a raised --max-message-size (the default is 32 KiB). */
const LARGE_VALUE = "hubgate-100KB-".repeat(Math.ceil(102_400 / 14)).slice(0, 102_400);
const RAISED_MAX_MESSAGE_SIZE = String(1024 * 1024);
/** Messages numbered 1..N each way in the stateful-reconnect test. */
const NUMBERED = 300;
const TEST_TIMEOUT_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// The suite

/**
 * Registers the whole suite for client version `key` in the calling test file.
 */
export function defineClientSuite(key) {
    const client = loadClient(key);
    const { row } = client;
    const title = `${row.label} ${row.version} (+ ${row.msgpackLabel} ${row.msgpackVersion})`;

    describe(title, () => {
        const gateway = { plain: undefined, large: undefined };
        before(async () => {
            [gateway.plain, gateway.large] = await Promise.all([
                startGateway(),
                startGateway(["--max-message-size", RAISED_MAX_MESSAGE_SIZE]),
            ]);
        });
        after(async () => {
            await Promise.all([gateway.plain?.stop(), gateway.large?.stop()]);
        });

        /** Runs `body(clients)` with this test's clients, stopping them afterwards. */
        const withClients = (transport, protocol, body) => async () => {
            const clients = new Clients(client, transport, protocol);
            let failed = true;
            try {
                await body(clients);
                failed = false;
            } finally {
                if (failed) {
                    for (const gw of [gateway.plain, gateway.large]) {
                        gw?.dumpLogs("client-versions test failed");
                    }
                    for (const gw of clients.gateways) {
                        process.stderr.write(`\n----- gateway ${gw.url} (restart test) -----\n${gw.logs().join("\n")}\n-----\n`);
                    }
                    clients.dumpLogs();
                }
                await clients.dispose();
                await Promise.all(clients.gateways.map((gw) => gw.stop()));
            }
        };

        for (const { transport, protocol } of combinations()) {
            describe(`${transport} ${protocol === "json" ? "JSON" : "MessagePack"}`, () => {
                const hub = (what) => `${gateway.plain.url}/hubs/v${row.key.replace(".", "-")}-${transport}-${protocol}-${what}`;

                test("start, Echo (Unicode, nested, binary), an unknown method's error, stop", { timeout: TEST_TIMEOUT_MS }, withClients(transport, protocol, async (clients) => {
                    const closes = [];
                    const connection = clients.build(hub("echo"));
                    connection.onclose((error) => closes.push(error));
                    await waitFor(connection.start(), DEFAULT_WAIT_MS, "start()");
                    assert.ok(clients.isConnected(connection), `state after start(): ${connection.state}`);
                    await connectionIdOf(connection);

                    const unicode = "héllo, 世界 🚀 \u00e9\u0301 \u001e \u0000 end";
                    assert.equal(await connection.invoke("Echo", unicode), unicode, "Unicode string");

                    const nested = { a: [1, 2, { b: null, c: [true, false, "x"] }], s: "ü", n: -1.5, deep: { e: { f: { g: [[], {}] } } } };
                    assert.deepEqual(await connection.invoke("Echo", nested), nested, "nested object");

                    const bytes = new Uint8Array([0, 1, 2, 127, 128, 254, 255]);
                    const echoedBytes = await connection.invoke("Echo", bytes);
                    if (protocol === "messagepack") {
                        // MessagePack carries binary as `bin`: the client gets the bytes back.
                        assert.equal(echoedBytes?.constructor?.name, row.msgpackBinary, `binary echoed as ${JSON.stringify(echoedBytes)}`);
                        assert.deepEqual([...echoedBytes], [...bytes], "binary");
                    } else {
                        // JSON has no binary type: the client serialises a Uint8Array as an object
                        // of index keys, and that object comes back.
                        assert.deepEqual(echoedBytes, JSON.parse(JSON.stringify(bytes)), "binary (as JSON)");
                    }

                    await assert.rejects(connection.invoke("NoSuchMethod", 1), (error) => {
                        assert.equal(error.message, "Unknown hub method 'NoSuchMethod'");
                        return true;
                    });
                    assert.equal(await connection.invoke("Echo", "still connected"), "still connected");

                    await waitFor(connection.stop(), DEFAULT_WAIT_MS, "stop()");
                    assert.ok(clients.isDisconnected(connection), `state after stop(): ${connection.state}`);
                    await waitFor(() => closes.length === 1, DEFAULT_WAIT_MS, "onclose after stop()");
                    assert.equal(closes[0], undefined, `stop() closes without an error, got ${closes[0]}`);
                }));

                test("Echo of a 100 KB value (gateway with --max-message-size raised)", { timeout: TEST_TIMEOUT_MS }, withClients(transport, protocol, async (clients) => {
                    const connection = await clients.connect(`${gateway.large.url}/hubs/large`);
                    const echoed = await waitFor(connection.invoke("Echo", LARGE_VALUE), 10_000, "Echo of 100 KB");
                    assert.equal(echoed.length, LARGE_VALUE.length);
                    assert.ok(echoed === LARGE_VALUE, "the 100 KB value came back changed");
                    const bigObject = { items: Array.from({ length: 1000 }, (_, i) => ({ i, text: `item ${i} ✓` })), tail: LARGE_VALUE.slice(0, 50_000) };
                    assert.deepEqual(await waitFor(connection.invoke("Echo", bigObject), 10_000, "Echo of a large object"), bigObject);
                }));

                test("sends to all, others, a group and one connection reach exactly their recipients", { timeout: TEST_TIMEOUT_MS }, withClients(transport, protocol, async (clients) => {
                    const url = hub("relay");
                    const [a, b, c] = await Promise.all(["a", "b", "c"].map((name) => clients.connect(url, { name })));
                    const targets = ["all", "others", "group", "direct"];
                    const got = {};
                    for (const [name, connection] of Object.entries({ a, b, c })) {
                        got[name] = Object.fromEntries(targets.map((target) => [target, collect(connection, target)]));
                    }
                    const settle = () => Promise.all([a, b, c].map(roundTrip));

                    await a.invoke("SendToAll", "all", "to everyone", { n: 1 });
                    await settle();
                    for (const name of ["a", "b", "c"]) {
                        assert.deepEqual(got[name].all, [["to everyone", { n: 1 }]], `SendToAll at ${name}`);
                    }

                    await a.invoke("SendToOthers", "others", "not to a");
                    await settle();
                    assert.deepEqual(got.a.others, [], "SendToOthers reached the caller");
                    assert.deepEqual(got.b.others, [["not to a"]], "SendToOthers at b");
                    assert.deepEqual(got.c.others, [["not to a"]], "SendToOthers at c");

                    await b.invoke("JoinGroup", "room");
                    await c.invoke("JoinGroup", "room");
                    await a.invoke("SendToGroup", "room", "group", "first");
                    await c.invoke("LeaveGroup", "room");
                    await a.invoke("SendToGroup", "room", "group", "second");
                    await settle();
                    assert.deepEqual(got.a.group, [], "a is not in the group");
                    assert.deepEqual(got.b.group, [["first"], ["second"]], "group member b");
                    assert.deepEqual(got.c.group, [["first"]], "c left the group after the first send");

                    const bId = await connectionIdOf(b);
                    await a.invoke("SendToConnection", bId, "direct", "only b", 42);
                    await settle();
                    assert.deepEqual(got.a.direct, [], "SendToConnection reached the caller");
                    assert.deepEqual(got.b.direct, [["only b", 42]], "SendToConnection at b");
                    assert.deepEqual(got.c.direct, [], "SendToConnection reached c");
                }));

                if (row.automaticReconnect) {
                    test("withAutomaticReconnect: reconnects after the gateway restarts on the same port", { timeout: TEST_TIMEOUT_MS }, withClients(transport, protocol, async (clients) => {
                        const port = await freePort();
                        const first = await startGatewayOnPort(port, ["--node-id", "first"]);
                        clients.gateways.push(first);
                        const events = [];
                        // Retry every 100 ms for up to 15 s.
                        const connection = clients.build(`${first.url}/hubs/restart`, { reconnectDelays: Array(150).fill(100) });
                        connection.onreconnecting((error) => events.push({ reconnecting: error?.message ?? null }));
                        connection.onreconnected((id) => events.push({ reconnected: id }));
                        connection.onclose((error) => events.push({ closed: error?.message ?? null }));
                        await waitFor(connection.start(), DEFAULT_WAIT_MS, "start()");
                        const firstId = await connectionIdOf(connection);
                        assert.ok(firstId.startsWith("first"), `connection id ${firstId} should name node 'first'`);

                        const exit = await first.stop();
                        assert.deepEqual(exit, { code: 0, signal: null }, "the first gateway should exit cleanly on SIGTERM");
                        await waitFor(() => events.length > 0, DEFAULT_WAIT_MS, "onreconnecting after the gateway stopped");
                        assert.ok("reconnecting" in events[0], `the first event after the restart: ${JSON.stringify(events)}`);
                        assert.ok(!clients.isConnected(connection), `state while the gateway is down: ${connection.state}`);

                        clients.gateways.push(await startGatewayOnPort(port, ["--node-id", "second"]));
                        await waitFor(() => events.some((event) => "reconnected" in event || "closed" in event), 20_000, "onreconnected after the gateway restarted");
                        const secondId = await connectionIdOf(connection);
                        assert.ok(secondId.startsWith("second"), `reconnected connection id ${secondId} should name node 'second'`);
                        // One reconnect, to the new process: the stopping one admits no one.
                        assert.deepEqual(events, [{ reconnecting: events[0].reconnecting }, { reconnected: secondId }], "reconnect events");
                        assert.equal(await connection.invoke("Echo", "after restart"), "after restart");
                    }));
                } else {
                    test("no automatic reconnect in this version: the connection closes when the gateway restarts, start() connects again", { timeout: TEST_TIMEOUT_MS }, async () => {
                        assert.equal(typeof new client.signalr.HubConnectionBuilder().withAutomaticReconnect, "undefined", "this version has withAutomaticReconnect");
                        const outcome = await runChild("restart-without-reconnect.mjs", [row.key, transport, protocol]);
                        assert.ok(outcome.firstId.startsWith("first"), `connection id ${outcome.firstId} should name node 'first'`);
                        assert.deepEqual(outcome.exit, { code: 0, signal: null }, "the first gateway should exit cleanly on SIGTERM");
                        assert.equal(outcome.closes.length, 1, `onclose once: ${JSON.stringify(outcome.closes)}`);
                        // The server's Close has no error. The 1.1 SSE transport may see the end of
                        // the event stream that follows the Close before it has finished handling
                        // the Close, and report that end as "Error occurred" (a client race).
                        const closeErrors = transport === "ServerSentEvents" ? [null, "Error occurred"] : [null];
                        assert.ok(closeErrors.includes(outcome.closes[0]), `onclose error: ${JSON.stringify(outcome.closes[0])}`);
                        assert.equal(outcome.disconnected, true, "Disconnected after the gateway stopped");
                        assert.ok(outcome.secondId.startsWith("second"), `connection id after start() again ${outcome.secondId} should name node 'second'`);
                        assert.equal(outcome.echo, "after restart");
                        // The 1.1 client bug (see restart-without-reconnect.mjs): on long polling its
                        // DELETE after the server's Close may fail unhandled. Nothing else may.
                        const allowed = transport === "LongPolling" ? /^(socket hang up|connect ECONNREFUSED .*|read ECONNRESET) \((ECONNRESET|ECONNREFUSED)\)$/ : /^$/;
                        for (const rejection of outcome.unhandled) {
                            assert.match(rejection, allowed, "an unhandled rejection in the client");
                        }
                    });
                }

                if (row.statefulReconnect && transport === "WebSockets") {
                    test("withStatefulReconnect: a cut TCP connection resumes the same connection; nothing lost, repeated or reordered", { timeout: TEST_TIMEOUT_MS }, withClients(transport, protocol, async (clients) => {
                        const proxy = await startProxy(gateway.plain.port);
                        try {
                            const url = (via) => `${via}/hubs/v${row.key.replace(".", "-")}-${protocol}-stateful`;
                            const events = [];
                            const resumer = await clients.connect(url(proxy.url), { name: "resumer (via the proxy)", stateful: true, reconnectDelays: Array(50).fill(100) });
                            resumer.onreconnecting(() => events.push("reconnecting"));
                            resumer.onreconnected(() => events.push("reconnected"));
                            resumer.onclose(() => events.push("closed"));
                            const peer = await clients.connect(url(gateway.plain.url), { name: "peer (direct)" });
                            const resumerId = await connectionIdOf(resumer);
                            const peerId = await connectionIdOf(peer);
                            const toResumer = collect(resumer, "n");
                            const toPeer = collect(peer, "m");
                            const half = NUMBERED / 2;
                            const numbers = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

                            // Both ways at once: 1..half in flight, then the cut, then the rest.
                            const calls = [];
                            const call = (promise) => calls.push(promise.then(() => null, (error) => error));
                            for (const i of numbers(1, half)) {
                                call(peer.invoke("SendToConnection", resumerId, "n", i));
                                call(resumer.send("SendToConnection", peerId, "m", i));
                            }
                            await waitFor(() => toResumer.length > 0, DEFAULT_WAIT_MS, "the first numbered message at the resumer");
                            // The WebSocket, and possibly the negotiate request's idle keep-alive connection.
                            assert.ok(proxy.cut() >= 1, "a live connection through the proxy to cut");
                            for (const i of numbers(half + 1, NUMBERED)) {
                                call(peer.invoke("SendToConnection", resumerId, "n", i));
                                call(resumer.send("SendToConnection", peerId, "m", i));
                            }
                            const failures = (await waitFor(Promise.all(calls), 15_000, "every send to complete")).filter(Boolean);
                            assert.deepEqual(failures.map(String), [], "every send completes without an error");
                            await waitFor(() => toResumer.length >= NUMBERED && toPeer.length >= NUMBERED, 15_000,
                                `${NUMBERED} numbered messages each way`)
                                .catch((e) => {
                                    throw new Error(`${e.message}; resumer has ${toResumer.length}, peer has ${toPeer.length}`);
                                });
                            await roundTrip(resumer);
                            await roundTrip(peer);

                            assert.ok(proxy.accepted >= 2, `the client should have reconnected through the proxy (connections accepted: ${proxy.accepted})`);
                            assert.equal(await connectionIdOf(resumer), resumerId, "stateful reconnect resumes the same connection");
                            assert.deepEqual(events, [], "a stateful reconnect is invisible to the app (no onreconnecting / onclose)");
                            assert.deepEqual(toResumer.map(([n]) => n), numbers(1, NUMBERED), "server → resumer: 1..N exactly once, in order");
                            assert.deepEqual(toPeer.map(([n]) => n), numbers(1, NUMBERED), "resumer → peer: 1..N exactly once, in order");
                        } finally {
                            await clients.dispose();
                            await proxy.close();
                        }
                    }));
                }
            });
        }
    });
}
