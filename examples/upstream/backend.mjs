// A chat backend for hubgate's upstream webhooks, in plain Node.js (no framework, no packages
// required). hubgate sends it every event of the `chat` hub, as Azure SignalR Service's
// serverless mode does; it answers invocations and broadcasts through hubgate's REST API.
//
//   connections/connect       the blocking connect hook: refuse `?banned=1`, name the user
//   connections/connected     remembered (a real app might greet or load state)
//   connections/disconnected  forgotten
//   messages/SendMessage      validated, stored, broadcast to everyone as `newMessage`
//   messages/History          the stored messages
//
// Every request is checked against X-ASRS-Signature (HMAC-SHA256 of the connection id with the
// access key) before anything else. MessagePack clients work when a MessagePack codec is given
// (`@msgpack/msgpack`, which the runnable main imports if it is installed); without one their
// calls are answered 415.

import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const RECORD_SEPARATOR = "\u001e";
const COMPLETION = 3;
const MAX_TEXT = 500;

/** The HS256 JWT hubgate's REST API accepts: `aud` is the request URL without its query. */
function restToken(url, accessKey) {
    const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const audience = url.split("?")[0];
    const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ aud: audience, exp: Math.floor(Date.now() / 1000) + 300 })}`;
    return `${body}.${createHmac("sha256", accessKey).update(body).digest("base64url")}`;
}

/** Whether one of the `sha256=<hex>` entries is the HMAC of the connection id with our key. */
function signedByGateway(headers, accessKey) {
    const connectionId = headers["x-asrs-connection-id"] ?? "";
    const expected = Buffer.from(`sha256=${createHmac("sha256", accessKey).update(connectionId).digest("hex")}`);
    return (headers["x-asrs-signature"] ?? "").split(",").some((entry) => {
        const given = Buffer.from(entry.trim());
        return given.length === expected.length && timingSafeEqual(given, expected);
    });
}

async function readBody(request) {
    const chunks = [];
    for await (const chunk of request) {
        chunks.push(chunk);
    }
    return Buffer.concat(chunks);
}

/**
 * Starts the backend. `gatewayUrl` is where its REST calls go; `accessKey` is the gateway's
 * `--access-key`; `msgpack` an object with `encode` and `decode` (e.g. `@msgpack/msgpack`).
 * Resolves to `{url, port, events, messages, badSignatures, stop()}`.
 */
export async function startBackend({ port = 0, gatewayUrl, accessKey, msgpack = null }) {
    const messages = [];
    const events = [];
    let badSignatures = 0;

    async function broadcast(hub, target, args) {
        const url = `${backend.gatewayUrl}/api/hubs/${encodeURIComponent(hub)}/:send?api-version=2022-06-01`;
        const response = await fetch(url, {
            method: "POST",
            headers: { authorization: `Bearer ${restToken(url, accessKey)}`, "content-type": "application/json" },
            body: JSON.stringify({ target, arguments: args }),
        });
        if (!response.ok) {
            throw new Error(`broadcast failed: ${response.status}`);
        }
    }

    /** The invocation in the body, and how to encode the Completion answering it. */
    function readInvocation(body, contentType) {
        if (contentType === "application/x-msgpack") {
            // [type, headers, invocationId, target, arguments, streamIds?]
            const [, , invocationId, target, args] = msgpack.decode(body);
            const frame = (completion) => {
                const kind = completion.error !== undefined ? 1 : completion.result !== undefined ? 3 : 2;
                const payload = msgpack.encode(kind === 1 ? [COMPLETION, {}, invocationId, 1, completion.error]
                    : kind === 3 ? [COMPLETION, {}, invocationId, 3, completion.result]
                    : [COMPLETION, {}, invocationId, 2]);
                const length = [];
                for (let size = payload.length; ; size >>= 7) {
                    length.push(size > 0x7f ? (size & 0x7f) | 0x80 : size);
                    if (size <= 0x7f) break;
                }
                return Buffer.concat([Buffer.from(length), Buffer.from(payload)]);
            };
            return { invocationId, target, args, frame };
        }
        const { invocationId, target, arguments: args } = JSON.parse(body.toString("utf8"));
        const frame = (completion) => JSON.stringify({ type: COMPLETION, invocationId, ...completion }) + RECORD_SEPARATOR;
        return { invocationId, target, args, frame };
    }

    async function onMessage(hub, request, headers, body) {
        const contentType = headers["content-type"];
        if (contentType === "application/x-msgpack" && !msgpack) {
            return { status: 415 };
        }
        const { invocationId, target, args, frame } = readInvocation(body, contentType);
        const answer = (completion) => (invocationId === undefined || invocationId === null
            ? { status: 204 }
            : { status: 200, body: frame(completion), type: contentType });
        switch (target) {
            case "SendMessage": {
                const [text] = args;
                if (typeof text !== "string" || text.length === 0 || text.length > MAX_TEXT) {
                    return answer({ error: `A message must be 1 to ${MAX_TEXT} characters.` });
                }
                const message = { id: messages.length + 1, user: headers["x-asrs-user-id"] ?? "anonymous", text };
                messages.push(message);
                await broadcast(hub, "newMessage", [message]);
                return answer({ result: { id: message.id } });
            }
            case "History":
                return answer({ result: messages.slice(-50) });
            default:
                return answer({ error: `Unknown method '${target}'.` });
        }
    }

    function onConnect(body) {
        const { query = {} } = JSON.parse(body.toString("utf8") || "{}");
        if (query.banned) {
            return { status: 403, body: "You are banned from this chat." };
        }
        const user = query.user?.[0];
        return { status: 200, body: JSON.stringify({ userId: user, groups: ["everyone"] }), type: "application/json" };
    }

    const server = createServer(async (request, response) => {
        try {
            const headers = request.headers;
            const body = await readBody(request);
            if (!signedByGateway(headers, accessKey)) {
                badSignatures += 1;
                response.writeHead(401).end();
                return;
            }
            const hub = headers["x-asrs-hub"];
            const category = headers["x-asrs-category"];
            const event = headers["x-asrs-event"];
            events.push({ category, event, connectionId: headers["x-asrs-connection-id"], userId: headers["x-asrs-user-id"], body: body.toString("utf8") });
            let reply = { status: 200 };
            if (category === "messages") {
                reply = await onMessage(hub, request, headers, body);
            } else if (event === "connect") {
                reply = onConnect(body);
            }
            response.writeHead(reply.status, reply.type ? { "content-type": reply.type } : {});
            response.end(reply.body);
        } catch (error) {
            response.writeHead(500).end(String(error));
        }
    });
    await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
    const backend = {
        port: server.address().port,
        url: `http://127.0.0.1:${server.address().port}`,
        gatewayUrl,
        events,
        messages,
        get badSignatures() {
            return badSignatures;
        },
        stop: () => new Promise((resolve) => server.close(resolve)),
    };
    return backend;
}

// Run directly: node examples/upstream/backend.mjs (see README.md beside this file).
if (import.meta.url === `file://${process.argv[1]}`) {
    const gatewayUrl = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";
    const accessKey = process.env.ACCESS_KEY ?? "change-me";
    const msgpack = await import("@msgpack/msgpack").catch(() => null);
    const backend = await startBackend({ port: Number(process.env.PORT ?? 3000), gatewayUrl, accessKey, msgpack });
    console.log(`chat backend on ${backend.url}, sending to ${gatewayUrl}`);
}
