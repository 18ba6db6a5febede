// Stateless nodes (`--cluster-secret`) behind balancers without affinity: three gateways on
// one Redis, behind a plain round-robin TCP balancer and a plain round-robin HTTP balancer
// (tests/balancers.mjs: no sticky sessions, no routing by token). The official client, with
// its default flow (negotiate, then the transport), works on WebSockets, Server-Sent Events
// and long polling, in JSON and MessagePack: echo, groups, users and sends to a connection id;
// server and upload streams of the functional-test hub; and a node SIGKILLed under its clients,
// which reconnect through the balancer and work again.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { HubConnectionState, Subject } from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

import {
    buildConnection,
    collect,
    connect,
    DEFAULT_WAIT_MS,
    nowSeconds,
    received,
    signHs256,
    startGateway,
    startRedis,
    stopAllClients,
    trackReconnects,
    TRANSPORTS,
    waitFor,
    waitReady,
} from "./harness.mjs";
import { startHttpBalancer, startTcpBalancer } from "./balancers.mjs";

const JWT_SECRET = "stateless-conformance-jwt-secret";
const CLUSTER_SECRET = "stateless-conformance-cluster-secret";

function tokenFor(user) {
    return signHs256({ sub: user, iat: nowSeconds(), exp: nowSeconds() + 3600 }, JWT_SECRET);
}

function clientOptions(user, transport, protocol, extra = {}) {
    return {
        name: user,
        transport,
        protocol: protocol === "messagepack" ? new MessagePackHubProtocol() : undefined,
        accessTokenFactory: () => tokenFor(user),
        ...extra,
    };
}

describe("stateless nodes behind balancers without affinity", () => {
    let redis;
    const nodes = [];
    const balancers = {};

    before(async () => {
        redis = await startRedis();
        for (let i = 0; i < 3; i++) {
            const node = await startGateway([
                "--backplane", "redis", "--redis-url", redis.url, "--node-id", `sl${i}`,
                "--cluster-secret", CLUSTER_SECRET, "--jwt-secret", JWT_SECRET,
            ]);
            await waitReady(node);
            nodes.push(node);
        }
        const urls = nodes.map((node) => node.url);
        balancers.tcp = await startTcpBalancer(urls);
        balancers.http = await startHttpBalancer(urls);
    });

    afterEach(async (t) => {
        if (t.passed === false) {
            nodes.forEach((node, i) => node.dumpLogs(`node ${i}, test failed`));
        }
        await stopAllClients();
    });

    after(async () => {
        await Promise.all(Object.values(balancers).map((balancer) => balancer.close()));
        await Promise.all(nodes.map((node) => node.stop()));
        redis?.stop();
    });

    for (const balancer of ["tcp", "http"]) {
        for (const [name, transport] of Object.entries(TRANSPORTS)) {
            // Server-Sent Events carry text only, so MessagePack is not offered on them.
            for (const protocol of name === "ServerSentEvents" ? ["json"] : ["json", "messagepack"]) {
                test(`${balancer} balancer, ${name}, ${protocol}: echo, groups, users and connection ids`, async () => {
                    const url = balancers[balancer].url;
                    const tag = `${balancer}-${name}-${protocol}`;
                    const alice = await connect(url, clientOptions(`alice-${tag}`, transport, protocol));
                    const bob = await connect(url, clientOptions(`bob-${tag}`, transport, protocol));
                    assert.equal(await alice.invoke("Echo", "hi"), "hi");

                    const viaGroup = received(alice, "g");
                    const viaUser = received(alice, "u");
                    const viaId = received(alice, "c");
                    await alice.invoke("JoinGroup", `room-${tag}`);
                    await bob.invoke("SendToGroup", `room-${tag}`, "g", "to the group");
                    await bob.invoke("SendToUser", `alice-${tag}`, "u", "to alice");
                    await bob.invoke("SendToConnection", alice.connectionId, "c", "to the id");
                    assert.deepEqual(await viaGroup.nth(1), ["to the group"]);
                    assert.deepEqual(await viaUser.nth(1), ["to alice"]);
                    assert.deepEqual(await viaId.nth(1), ["to the id"]);
                    assert.equal(viaGroup.count + viaUser.count + viaId.count, 3, "each arrived once");
                });
            }
        }
    }

    test("the balancers spread requests over every node", () => {
        for (const [kind, balancer] of Object.entries(balancers)) {
            assert.ok(balancer.sent.every((count) => count > 0), `${kind}: ${balancer.sent}`);
        }
    });
});

/** Three nodes of `binaryVariable` on `redis`, stateless, behind both balancers. */
async function startCluster(redis, prefix, binaryVariable = "HUBGATE_BIN") {
    const nodes = [];
    for (let i = 0; i < 3; i++) {
        const node = await startGateway([
            "--backplane", "redis", "--redis-url", redis.url, "--node-id", `${prefix}${i}`,
            "--cluster-secret", CLUSTER_SECRET, "--jwt-secret", JWT_SECRET,
        ], binaryVariable);
        await waitReady(node);
        nodes.push(node);
    }
    const urls = nodes.map((node) => node.url);
    return { nodes, tcp: await startTcpBalancer(urls), http: await startHttpBalancer(urls) };
}

async function stopCluster(cluster, redis) {
    if (cluster) {
        await Promise.all([cluster.tcp.close(), cluster.http.close()]);
        await Promise.all(cluster.nodes.map((node) => node.stop()));
    }
    redis?.stop();
}

describe("streams of the functional-test hub on stateless nodes", () => {
    let redis;
    let cluster;

    before(async () => {
        redis = await startRedis();
        cluster = await startCluster(redis, "st", "HUBGATE_TESTHUB_BIN");
    });

    afterEach(async (t) => {
        if (t.passed === false) {
            cluster.nodes.forEach((node, i) => node.dumpLogs(`testhub node ${i}, test failed`));
        }
        await stopAllClients();
    });

    after(() => stopCluster(cluster, redis));

    for (const balancer of ["tcp", "http"]) {
        for (const [name, transport] of Object.entries(TRANSPORTS)) {
            for (const protocol of name === "ServerSentEvents" ? ["json"] : ["json", "messagepack"]) {
                test(`${balancer} balancer, ${name}, ${protocol}: a server stream and an upload stream`, async () => {
                    const options = clientOptions(`streamer-${balancer}-${name}-${protocol}`, transport, protocol);
                    const connection = await connect(cluster[balancer].url, { ...options, path: "/testhub" });
                    assert.deepEqual(await collect(connection.stream("Stream")), ["a", "b", "c"]);
                    const parts = new Subject();
                    const concatenated = connection.invoke("StreamingConcat", parts);
                    for (const part of ["across ", "the ", "cluster"]) {
                        parts.next(part);
                    }
                    parts.complete();
                    assert.equal(await waitFor(concatenated, DEFAULT_WAIT_MS, "StreamingConcat"), "across the cluster");
                });
            }
        }
    }
});

describe("a stateless node SIGKILLed under its clients", () => {
    const GROUP = "survivors";
    let redis;
    let cluster;

    before(async () => {
        redis = await startRedis();
        cluster = await startCluster(redis, "kill");
    });

    afterEach(async (t) => {
        if (t.passed === false) {
            cluster.nodes.forEach((node, i) => node.dumpLogs(`node ${i}, test failed`));
        }
        await stopAllClients();
    });

    after(() => stopCluster(cluster, redis));

    test("its clients reconnect through the balancer and receive group messages again", async () => {
        // Two members per transport through the HTTP balancer, each rejoining the group when it
        // reconnects; the sender talks to node 0 directly, and node 2 is killed.
        const members = [];
        for (const [name, transport] of Object.entries(TRANSPORTS)) {
            for (let n = 0; n < 2; n++) {
                const user = `member-${name}-${n}`;
                const connection = buildConnection(cluster.http.url, {
                    ...clientOptions(user, transport, "json"),
                    configure: (builder) => builder.withAutomaticReconnect([0, 100, 250, 500, 1000, 1000, 1000, 1000]),
                });
                const member = { name: user, connection, closed: [], reconnections: 0, rejoinFailures: [],
                    news: received(connection, "news") };
                trackReconnects(connection, member, GROUP);
                await waitFor(connection.start(), DEFAULT_WAIT_MS, `${user} to connect`);
                await waitFor(connection.invoke("JoinGroup", GROUP), DEFAULT_WAIT_MS, `${user} to join`);
                members.push(member);
            }
        }
        const sender = await connect(cluster.nodes[0].url, clientOptions("sender", TRANSPORTS.WebSockets, "json"));
        await sender.invoke("SendToGroup", GROUP, "news", "before");
        for (const member of members) {
            assert.deepEqual(await member.news.nth(1), ["before"], `${member.name} got the message before the kill`);
        }

        const victim = cluster.nodes[2];
        victim.child.kill("SIGKILL");
        await waitFor(() => victim.exited(), DEFAULT_WAIT_MS, "node 2 to die");
        // Clients held by node 2 lose their connection; so may clients held elsewhere whose
        // request was in flight through node 2 (forwarded). Each reconnects and rejoins.
        await waitFor(() => members.some((m) => m.reconnections > 0), 15_000, "a member of the killed node to reconnect");

        // Probe until every member has received a group message sent after the kill: the
        // members still reconnecting receive a later probe.
        const seen = () => members.every((m) => m.news.messages.some(([text]) => text.startsWith("after-")));
        let probe = 0;
        const deadline = Date.now() + 20_000;
        while (!seen()) {
            assert.ok(Date.now() < deadline, `members without a message after the kill: ${
                members.filter((m) => !m.news.messages.some(([text]) => text.startsWith("after-"))).map((m) => m.name)}`);
            await sender.invoke("SendToGroup", GROUP, "news", `after-${probe++}`);
            await waitFor(() => seen(), 250, "a probe to arrive").catch(() => {});
        }
        for (const member of members) {
            assert.deepEqual(member.closed, [], `${member.name}: onclose never fired`);
            assert.deepEqual(member.rejoinFailures, [], `${member.name}: rejoining did not fail`);
            assert.equal(member.connection.state, HubConnectionState.Connected, member.name);
            const afterKill = member.news.messages.map(([text]) => text).filter((text) => text.startsWith("after-"));
            assert.equal(new Set(afterKill).size, afterKill.length, `${member.name}: no probe twice`);
        }
    });
});
