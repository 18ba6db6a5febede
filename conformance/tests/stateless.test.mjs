// Stateless nodes (`--cluster-secret`) behind balancers without affinity: three gateways on
// one Redis, behind a plain round-robin TCP balancer and a plain round-robin HTTP balancer
// (tests/balancers.mjs: no sticky sessions, no routing by token). The official client, with
// its default flow (negotiate, then the transport), works on WebSockets, Server-Sent Events
// and long polling, in JSON and MessagePack: echo, groups, users and sends to a connection id.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { HttpTransportType } from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

import {

    connect,

    nowSeconds,
    received,
    signHs256,
    startGateway,
    startRedis,
    stopAllClients,

    waitReady,
} from "./harness.mjs";
import { startHttpBalancer, startTcpBalancer } from "./balancers.mjs";

const JWT_SECRET = "stateless-conformance-jwt-secret";
const CLUSTER_SECRET = "stateless-conformance-cluster-secret";
const TRANSPORTS = {
    WebSockets: HttpTransportType.WebSockets,
    ServerSentEvents: HttpTransportType.ServerSentEvents,
    LongPolling: HttpTransportType.LongPolling,
};

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
