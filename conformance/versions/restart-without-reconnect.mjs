// Child process of the multi-version suite (driver.mjs) for client versions without automatic
// reconnect (@aspnet/signalr 1.1): connects, restarts the gateway on the same port, and checks
// that the connection closes and a second start() connects to the new process.
//
//   node versions/restart-without-reconnect.mjs <version key> <transport> <json|messagepack>
//
// It runs in its own process because of a 1.1 client bug: when the server's Close arrives on
// long polling, the client calls its own stop() without handling the promise, and stop() sends
// a DELETE to a server that is going away; when that DELETE fails ("socket hang up",
// ECONNREFUSED) the rejection is unhandled, which ends a Node process by default. Like an app
// using 1.1 on Node must, this process handles `unhandledRejection`; it reports every one it saw
// so the test can pin exactly this one. Prints one JSON line with the outcome and exits 0, or
// prints the error and the logs and exits 1.

import { freePort, waitFor, DEFAULT_WAIT_MS } from "../tests/harness.mjs";
import { Clients, connectionIdOf, loadClient, startGatewayOnPort } from "./support.mjs";

const unhandled = [];
process.on("unhandledRejection", (error) => {
    unhandled.push(error instanceof Error ? `${error.message} (${error.code ?? "no code"})` : String(error));
});

const [key, transport, protocol] = process.argv.slice(2);
const client = loadClient(key);
const clients = new Clients(client, transport, protocol);

try {
    const port = await freePort();
    clients.gateways.push(await startGatewayOnPort(port, ["--node-id", "first"]));
    const closes = [];
    const connection = clients.build(`http://127.0.0.1:${port}/hubs/restart`);
    connection.onclose((error) => closes.push(error?.message ?? null));
    await waitFor(connection.start(), DEFAULT_WAIT_MS, "start()");
    const firstId = await connectionIdOf(connection);

    const exit = await clients.gateways[0].stop();
    await waitFor(() => closes.length > 0, DEFAULT_WAIT_MS, "onclose after the gateway stopped");
    const disconnected = clients.isDisconnected(connection);
    const closedByRestart = [...closes];

    clients.gateways.push(await startGatewayOnPort(port, ["--node-id", "second"]));
    await waitFor(connection.start(), DEFAULT_WAIT_MS, "start() again");
    const secondId = await connectionIdOf(connection);
    const echo = await connection.invoke("Echo", "after restart");
    await clients.dispose();
    await Promise.all(clients.gateways.map((gateway) => gateway.stop()));
    process.stdout.write(`${JSON.stringify({ firstId, exit, closes: closedByRestart, disconnected, secondId, echo, unhandled })}\n`);
    process.exit(0);
} catch (error) {
    process.stderr.write(`${error.stack}\n`);
    for (const gateway of clients.gateways) {
        process.stderr.write(`----- gateway ${gateway.url} -----\n${gateway.logs().join("\n")}\n`);
    }
    clients.dumpLogs();
    await clients.dispose();
    await Promise.all(clients.gateways.map((gateway) => gateway.stop()));
    process.exit(1);
}
