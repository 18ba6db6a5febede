// Two plain round-robin load balancers for tests of stateless nodes, with no affinity and no
// routing by token: what a Kubernetes Service (TCP) or a cloud HTTP balancer does.
//
// - `startTcpBalancer`: each new TCP connection goes to the next upstream.
// - `startHttpBalancer`: each HTTP request goes to the next upstream (bodies are buffered
//   first, so a refused upstream can be skipped); WebSocket upgrades are piped as raw bytes.
//
// Both skip an upstream that refuses the connection (as balancers do with a dead backend) and
// count where they sent traffic, so tests can check that requests really were spread.

import http from "node:http";
import net from "node:net";

/** Tries the upstreams in turn from the next one; resolves with a connected socket. */
function connectNext(balancer) {
    return new Promise((resolve, reject) => {
        let tries = 0;
        const attempt = () => {
            const index = balancer.next++ % balancer.upstreams.length;
            const { host, port } = balancer.upstreams[index];
            const socket = net.connect({ host, port });
            socket.once("connect", () => {
                socket.removeAllListeners("error");
                balancer.sent[index] += 1;
                resolve(socket);
            });
            socket.once("error", (error) => {
                if (++tries < balancer.upstreams.length) {
                    attempt();
                } else {
                    reject(error);
                }
            });
        };
        attempt();
    });
}

/** A connected upstream for `client`'s bytes; `null` (and `client` closed) when none answers. */
async function upstreamFor(balancer, client) {
    client.on("error", () => {});
    try {
        return await connectNext(balancer);
    } catch {
        client.destroy();
        return null;
    }
}

/** Pipes two sockets into each other; either closing closes both. */
function splice(client, upstream) {
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
}

function listen(server) {
    return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

function track(server) {
    const sockets = new Set();
    server.on("connection", (socket) => {
        sockets.add(socket);
        socket.once("close", () => sockets.delete(socket));
    });
    return sockets;
}

function parse(url) {
    const { hostname, port } = new URL(url);
    return { host: hostname, port: Number(port) };
}

/** A TCP balancer in front of `urls` (base URLs of the nodes). */
export async function startTcpBalancer(urls) {
    const balancer = { upstreams: urls.map(parse), next: 0, sent: urls.map(() => 0) };
    const server = net.createServer(async (client) => {
        client.pause();
        const upstream = await upstreamFor(balancer, client);
        if (upstream) {
            splice(client, upstream);
            client.resume();
        }
    });
    const sockets = track(server);
    const port = await listen(server);
    return {
        url: `http://127.0.0.1:${port}`,
        sent: balancer.sent,
        close: () => closeAll(server, sockets),
    };
}

/** An HTTP balancer in front of `urls`, choosing an upstream per request. */
export async function startHttpBalancer(urls) {
    const balancer = { upstreams: urls.map(parse), next: 0, sent: urls.map(() => 0) };
    const agent = new http.Agent({ keepAlive: true });
    const server = http.createServer(async (request, response) => {
        const chunks = [];
        for await (const chunk of request) {
            chunks.push(chunk);
        }
        const body = Buffer.concat(chunks);
        let tries = 0;
        const attempt = () => {
            const index = balancer.next++ % balancer.upstreams.length;
            const { host, port } = balancer.upstreams[index];
            const headers = { ...request.headers, host: `${host}:${port}` };
            delete headers.connection;
            const proxied = http.request({ host, port, method: request.method, path: request.url, headers, agent }, (answer) => {
                balancer.sent[index] += 1;
                response.writeHead(answer.statusCode, answer.headers);
                answer.pipe(response);
                response.once("close", () => answer.destroy());
                // An upstream that dies mid-answer (a killed node under an event stream or a
                // poll) cuts the client's answer too, as a real balancer does; `pipe` alone
                // would leave the client waiting on a stream that never ends.
                answer.once("close", () => {
                    if (!answer.complete) {
                        response.destroy();
                    }
                });
            });
            proxied.once("error", (error) => {
                if (!response.headersSent && error.code === "ECONNREFUSED" && ++tries < balancer.upstreams.length) {
                    attempt();
                } else if (!response.headersSent) {
                    response.writeHead(502).end();
                } else {
                    response.destroy();
                }
            });
            response.once("close", () => proxied.destroy());
            proxied.end(body);
        };
        attempt();
    });
    server.on("upgrade", async (request, client, head) => {
        const upstream = await upstreamFor(balancer, client);
        if (!upstream) {
            return;
        }
        const lines = [`${request.method} ${request.url} HTTP/1.1`];
        for (let i = 0; i < request.rawHeaders.length; i += 2) {
            lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
        }
        upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
        upstream.write(head);
        splice(client, upstream);
    });
    const sockets = track(server);
    const port = await listen(server);
    return {
        url: `http://127.0.0.1:${port}`,
        sent: balancer.sent,
        close: () => {
            agent.destroy();
            return closeAll(server, sockets);
        },
    };
}

function closeAll(server, sockets) {
    for (const socket of sockets) {
        socket.destroy();
    }
    return new Promise((resolve) => server.close(() => resolve()));
}
