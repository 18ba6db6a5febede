// A node leaving a cluster, as in a rolling deploy: three gateway processes share one real
// redis-server behind a small round-robin TCP load balancer (defined here), and official
// clients with withAutomaticReconnect() reach them through its one URL over WebSockets
// (skipNegotiation, so no sticky routing is needed). One node gets SIGTERM; its clients get a
// Close that allows reconnecting, reconnect to the survivors through the balancer, rejoin their
// group in onreconnected as an application would, and keep receiving group and user messages
// sent through the other nodes. Nothing surfaces as an error on any client.
//
// The same runs over long polling with negotiation, behind an HTTP balancer that is sticky per
// connection: it learns each connection token from negotiate and sends every request carrying
// that token (`?id=`) to the node that issued it, as affinity cookies do in production.

import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, afterEach, before, describe, test } from "node:test";

import { HttpTransportType, HubConnectionState } from "@microsoft/signalr";

import { DEFAULT_WAIT_MS, buildConnection, logOf, nowSeconds, problemsOf, received, signHs256, startGateway, startRedis, trackReconnects, waitFor, waitReady, wireOf } from "./harness.mjs";

const SECRET = "rolling-shutdown-secret";
const GROUP = "room";
const CLIENTS = 6;
const NODES = 3;
/** Long enough for the balancer's health checks (every 50 ms) to see a draining node. */
const DRAIN_DELAY = "500ms";

function tokenFor(user) {
    const now = nowSeconds();
    return signHs256({ sub: user, iat: now, exp: now + 3600 }, SECRET);
}

/**
 * Readiness of each backend port as a balancer sees it: `GET /readyz` every 50 ms, as a real
 * balancer polls readiness.
 */
function healthChecks(backends) {
    const ready = new Map(backends.map((backend) => [backend, true]));
    const timer = setInterval(() => {
        for (const backend of backends) {
            fetch(`http://127.0.0.1:${backend}/readyz`)
                .then((response) => ready.set(backend, response.status === 200))
                .catch(() => ready.set(backend, false));
        }
    }, 50);
    let next = 0;
    return {
        /** Every backend, ready ones first, starting from the next in round-robin order. */
        nextOrder() {
            const start = next++;
            const order = backends.map((_, i) => backends[(start + i) % backends.length]);
            return [...order.filter((b) => ready.get(b)), ...order.filter((b) => !ready.get(b))];
        },
        stop: () => clearInterval(timer),
    };
}

/**
 * A round-robin TCP load balancer: each incoming connection is piped to the next backend that
 * passed its last health check and accepts the TCP connection; a backend that refuses is
 * skipped.
 */
async function startTcpBalancer(backends) {
    const health = healthChecks(backends);
    const sockets = new Set();

    function connectUpstream(candidates) {
        return new Promise((resolve, reject) => {
            const [port, ...rest] = candidates;
            if (port === undefined) {
                reject(new Error("no backend accepted the connection"));
                return;
            }
            const upstream = net.connect(port, "127.0.0.1");
            upstream.once("connect", () => resolve(upstream));
            upstream.once("error", () => connectUpstream(rest).then(resolve, reject));
        });
    }

    const server = net.createServer((downstream) => {
        sockets.add(downstream);
        downstream.pause();
        connectUpstream(health.nextOrder()).then((upstream) => {
            sockets.add(upstream);
            upstream.on("error", () => downstream.destroy());
            downstream.on("error", () => upstream.destroy());
            upstream.on("close", () => downstream.destroy());
            downstream.on("close", () => upstream.destroy());
            downstream.pipe(upstream);
            upstream.pipe(downstream);
            downstream.resume();
        }, () => downstream.destroy());
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        url: `http://127.0.0.1:${server.address().port}`,
        async stop() {
            health.stop();
            for (const socket of sockets) {
                socket.destroy();
            }
            await new Promise((resolve) => server.close(resolve));
        },
    };
}

/**
 * An HTTP balancer with per-connection affinity: negotiate goes round robin to a ready backend
 * (skipping refusals) and the balancer notes the connection token it returns; any request with
 * `?id=<token>` goes to that token's backend (502 if it is gone).
 */
async function startStickyBalancer(backends) {
    const health = healthChecks(backends);
    const owners = new Map();

    function relay(request, body, candidates, response) {
        const [port, ...rest] = candidates;
        if (port === undefined) {
            response.writeHead(502).end();
            return;
        }
        const headers = { ...request.headers, "content-length": String(body.length) };
        const upstream = http.request({ host: "127.0.0.1", port, method: request.method, path: request.url, headers });
        upstream.once("error", () => {
            if (!response.headersSent) {
                relay(request, body, rest, response);
            } else {
                response.destroy();
            }
        });
        upstream.once("response", async (answer) => {
            if (request.url.includes("/negotiate")) {
                const chunks = [];
                for await (const chunk of answer) {
                    chunks.push(chunk);
                }
                const text = Buffer.concat(chunks);
                try {
                    const negotiated = JSON.parse(text.toString());
                    owners.set(negotiated.connectionToken ?? negotiated.connectionId, port);
                } catch {
                    // not a negotiate answer; nothing to learn
                }
                response.writeHead(answer.statusCode, answer.headers).end(text);
                return;
            }
            response.writeHead(answer.statusCode, answer.headers);
            answer.pipe(response);
        });
        upstream.end(body);
    }

    const server = http.createServer(async (request, response) => {
        const chunks = [];
        for await (const chunk of request) {
            chunks.push(chunk);
        }
        const token = new URL(request.url, "http://balancer").searchParams.get("id");
        const candidates = token !== null && owners.has(token) ? [owners.get(token)] : health.nextOrder();
        relay(request, Buffer.concat(chunks), candidates, response);
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        url: `http://127.0.0.1:${server.address().port}`,
        async stop() {
            health.stop();
            server.closeAllConnections();
            await new Promise((resolve) => server.close(resolve));
        },
    };
}

/** A client of user `user` through the balancer that rejoins GROUP whenever it reconnects. */
async function startMember(url, user, transportOptions) {
    const connection = buildConnection(url, {
        hub: "rolling",
        name: user,
        ...transportOptions,
        accessTokenFactory: () => tokenFor(user),
        configure: (builder) => builder.withAutomaticReconnect([0, 100, 250, 500, 1000]),
    });
    const member = {
        user,
        connection,
        closed: [],
        reconnections: 0,
        rejoinFailures: [],
        group: received(connection, "groupNews"),
        direct: received(connection, "directNews"),
    };
    trackReconnects(connection, member, GROUP);
    await waitFor(connection.start(), DEFAULT_WAIT_MS, `${user} to connect`);
    await waitFor(connection.invoke("JoinGroup", GROUP), DEFAULT_WAIT_MS, `${user} to join ${GROUP}`);
    // Connection ids are `<node id>.<random>`.
    member.nodeId = async () => {
        const id = await connection.invoke("GetConnectionId");
        return id.slice(0, id.lastIndexOf("."));
    };
    return member;
}

/**
 * The scenario, with clients using `transportOptions` behind the balancer `startBalancer`
 * starts.
 */
function rollingShutdown(title, startBalancer, transportOptions) {
    describe(title, () => {
        let redis;
        let balancer;
        const members = [];
        const nodes = [];

        before(async () => {
            redis = await startRedis();
            for (let i = 0; i < NODES; i++) {
                nodes.push(await startGateway([
                    "--backplane", "redis",
                    "--redis-url", redis.url,
                    "--node-id", `node${i}`,
                    "--jwt-secret", SECRET,
                    "--drain-delay", DRAIN_DELAY,
                    "--shutdown-timeout", "5s",
                    "--presence-heartbeat-interval", "1s",
                    "--presence-node-ttl", "3s",
                ]));
            }
            await Promise.all(nodes.map(waitReady));
            balancer = await startBalancer(nodes.map((node) => node.port));
        });

        afterEach((t) => {
            if (!t.passed) {
                for (const node of nodes) {
                    node.dumpLogs(`test failed: ${t.name}`);
                }
                for (const member of members) {
                    process.stderr.write(`\n----- client ${member.user} -----\n${logOf(member.connection).join("\n")}\n`);
                }
            }
        });

        after(async () => {
            await Promise.all(members.map((m) => m.connection.stop().catch(() => {})));
            await balancer?.stop();
            await Promise.all(nodes.map((node) => node.stop()));
            redis?.stop();
        });

        test("SIGTERM on one node: its clients reconnect to the others and keep receiving group and user messages, without errors", async () => {
            for (let i = 0; i < CLIENTS; i++) {
                members.push(await startMember(balancer.url, `user${i}`, transportOptions));
            }
            const placement = await Promise.all(members.map((m) => m.nodeId()));
            assert.deepEqual(new Set(placement), new Set(["node0", "node1", "node2"]), "round robin spreads clients");
            const leaving = nodes[1];
            const moved = members.filter((_, i) => placement[i] === "node1");
            const stayed = members.filter((_, i) => placement[i] !== "node1");

            const exited = new Promise((resolve) => leaving.child.once("exit", (code, signal) => resolve({ code, signal })));
            leaving.child.kill("SIGTERM");
            assert.deepEqual(await waitFor(exited, 10_000, "node1 to exit"), { code: 0, signal: null }, "exit status 0");

            await waitFor(() => moved.every((m) => m.reconnections >= 1 || m.rejoinFailures.length > 0), 10_000,
                "node1's clients to reconnect and rejoin");
            for (const member of moved) {
                const closes = wireOf(member.connection).received.filter((message) => message.type === 7);
                assert.deepEqual(closes, [{ type: 7, allowReconnect: true }], `${member.user} got a reconnectable Close`);
                assert.equal(member.connection.state, HubConnectionState.Connected);
                assert.notEqual(await member.nodeId(), "node1", `${member.user} is now on a surviving node`);
            }

            // Messages sent through the surviving nodes reach everyone, the moved clients included.
            const sender = stayed[0];
            await waitFor(sender.connection.invoke("SendToGroup", GROUP, "groupNews", "after"), DEFAULT_WAIT_MS, "a group send");
            for (const member of members) {
                assert.deepEqual(await member.group.nth(1), ["after"], `${member.user} gets the group message`);
            }
            for (const member of moved) {
                const via = stayed[stayed.length - 1];
                await waitFor(via.connection.invoke("SendToUser", member.user, "directNews", `to ${member.user}`),
                    DEFAULT_WAIT_MS, `a send to ${member.user}`);
                assert.deepEqual(await member.direct.nth(1), [`to ${member.user}`], `${member.user} gets its user message`);
            }

            for (const member of members) {
                assert.deepEqual(member.closed, [], `${member.user}: onclose never fired`);
                assert.deepEqual(member.rejoinFailures, [], `${member.user}: rejoining did not fail`);
                const errors = problemsOf(member.connection).filter((p) => p.level === "Error" || p.level === "Critical");
                assert.deepEqual(errors, [], `${member.user}: the client logged no error`);
            }
        });
    });
}

rollingShutdown("WebSockets without negotiation, three nodes on Redis behind a round-robin TCP balancer",
    startTcpBalancer, { skipNegotiation: true, transport: HttpTransportType.WebSockets });

rollingShutdown("long polling with negotiation, three nodes on Redis behind a sticky HTTP balancer",
    startStickyBalancer, { transport: HttpTransportType.LongPolling });
