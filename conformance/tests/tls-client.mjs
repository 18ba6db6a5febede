// A client run in its own Node process by tls.test.mjs, so that NODE_EXTRA_CA_CERTS (read
// once, when Node starts) decides which CAs it trusts. For each transport named on the command
// line it connects the official client to the relay hub at URL, invokes Echo and SendToAll,
// and prints one JSON line: {transport, echo, broadcast} or {transport, error}. The name
// `fetch` instead POSTs to the hub's negotiate with Node's fetch and prints {transport, status}
// or {transport, error, code}: the TLS error code that a refused connection's cause carries.
//
//   node tls-client.mjs https://127.0.0.1:PORT/hubs/tls WebSockets ServerSentEvents LongPolling

import { HttpTransportType, HubConnectionBuilder, LogLevel } from "@microsoft/signalr";

const [url, ...transports] = process.argv.slice(2);
const WAIT_MS = 5_000;

async function probe() {
    try {
        const response = await fetch(`${url}/negotiate?negotiateVersion=1`, { method: "POST" });
        return { transport: "fetch", status: response.status };
    } catch (error) {
        return { transport: "fetch", error: String(error.message), code: error.cause?.code ?? null };
    }
}

async function run(transport) {
    if (transport === "fetch") {
        return probe();
    }
    const connection = new HubConnectionBuilder()
        .withUrl(url, { transport: HttpTransportType[transport] })
        .configureLogging(LogLevel.None)
        .build();
    try {
        await connection.start();
        const echo = await connection.invoke("Echo", `over ${transport}`);
        const broadcast = new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no broadcast within ${WAIT_MS} ms`)), WAIT_MS);
            connection.on("tls-message", (text) => {
                clearTimeout(timer);
                resolve(text);
            });
        });
        await connection.invoke("SendToAll", "tls-message", `to all over ${transport}`);
        return { transport, echo, broadcast: await broadcast };
    } catch (error) {
        return { transport, error: String(error?.message ?? error) };
    } finally {
        await connection.stop();
    }
}

let failed = false;
for (const transport of transports) {
    const result = await run(transport);
    failed ||= "error" in result;
    process.stdout.write(`${JSON.stringify(result)}\n`);
}
process.exit(failed ? 1 : 0);
