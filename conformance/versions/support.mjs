// Shared parts of the multi-version client suite (driver.mjs) and its child processes: loading
// one client version, building its connections, a gateway on a fixed port that can be
// restarted where clients expect it, and a TCP proxy that can cut live connections.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import net from "node:net";
import { resolve as resolvePath } from "node:path";
import { createInterface } from "node:readline";

import { DEFAULT_WAIT_MS, waitFor } from "../tests/harness.mjs";
import { clientVersion } from "./clients.mjs";

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Loading one client version

/**
 * Loads client version `key` (clients.mjs) and checks the installed packages are the versions
 * the table names (package.json pins them; this catches a table that drifted from it).
 */
export function loadClient(key) {
    const row = clientVersion(key);
    const signalr = require(row.module);
    const msgpack = require(row.msgpackModule);
    const installed = require(`${row.module}/package.json`);
    const installedMsgpack = require(`${row.msgpackModule}/package.json`);
    assert.equal(`${installed.name}@${installed.version}`, `${row.label}@${row.version}`, `${row.module} is not the client the table names`);
    assert.equal(
        `${installedMsgpack.name}@${installedMsgpack.version}`,
        `${row.msgpackLabel}@${row.msgpackVersion}`,
        `${row.msgpackModule} is not the MessagePack package the table names`,
    );
    // The MessagePack package must use its own client version, not the suite's main one.
    const msgpackCore = createRequire(require.resolve(row.msgpackModule)).resolve(
        row.label === "@aspnet/signalr" ? "@aspnet/signalr/package.json" : "@microsoft/signalr/package.json",
    );
    assert.equal(require(msgpackCore).version, row.version, `${row.msgpackModule} resolves ${msgpackCore}, not ${row.label}@${row.version}`);
    return { row, signalr, msgpack };
}

// ---------------------------------------------------------------------------------------------
// Clients

/** An ILogger (the interface is the same in every version) keeping recent lines for failure reports. */
class KeptLog {
    constructor(name) {
        this.name = name;
        this.lines = [];
    }

    log(level, message) {
        this.lines.push(`${["Trace", "Debug", "Information", "Warning", "Error", "Critical"][level] ?? level}: ${message}`);
        if (this.lines.length > 150) {
            this.lines.shift();
        }
    }
}

/**
 * The connections one test built: `connect` builds and starts them, `dispose` stops them all
 * (and prints their logs when the test failed).
 */
export class Clients {
    constructor(client, transport, protocol) {
        this.client = client;
        this.transport = transport;
        this.protocol = protocol;
        this.open = [];
        this.built = [];
        /** Gateways the test started itself, whose logs a failure report shows. */
        this.gateways = [];
    }

    /**
     * Builds a HubConnection to `url` with this test's transport and protocol.
     * `reconnectDelays` turns on withAutomaticReconnect(delays), `stateful` withStatefulReconnect().
     */
    build(url, { name = `client${this.open.length + 1}`, reconnectDelays, stateful = false } = {}) {
        const { signalr, msgpack } = this.client;
        const log = new KeptLog(name);
        let builder = new signalr.HubConnectionBuilder()
            .withUrl(url, { transport: signalr.HttpTransportType[this.transport] })
            .configureLogging(log);
        if (this.protocol === "messagepack") {
            builder = builder.withHubProtocol(new msgpack.MessagePackHubProtocol());
        }
        if (reconnectDelays) {
            builder = builder.withAutomaticReconnect(reconnectDelays);
        }
        if (stateful) {
            builder = builder.withStatefulReconnect();
        }
        const connection = builder.build();
        this.open.push({ connection, log });
        this.built.push({ connection, log });
        return connection;
    }

    async connect(url, options = {}) {
        const connection = this.build(url, options);
        await waitFor(connection.start(), DEFAULT_WAIT_MS, `${options.name ?? "a client"} to connect to ${url}`);
        return connection;
    }

    isConnected(connection) {
        return connection.state === this.client.signalr.HubConnectionState.Connected;
    }

    isDisconnected(connection) {
        return connection.state === this.client.signalr.HubConnectionState.Disconnected;
    }

    /** Prints every client's recent log lines (for a failed test). */
    dumpLogs() {
        for (const { log } of this.built) {
            process.stderr.write(`\n----- client '${log.name}' (last ${log.lines.length} log lines) -----\n${log.lines.join("\n")}\n-----\n`);
        }
    }

    /** Stops every connection built so far (their logs stay for `dumpLogs`). */
    async dispose() {
        const open = this.open;
        this.open = [];
        await Promise.all(open.map(({ connection }) =>
            waitFor(Promise.resolve(connection.stop()).catch(() => {}), DEFAULT_WAIT_MS, "a client to stop").catch(() => {})));
    }
}

/** Collects every invocation of client method `target` on `connection`: argument lists, in order. */
export function collect(connection, target) {
    const messages = [];
    // A block, not an expression: from 8.0 on a handler's return value is a client result.
    connection.on(target, (...args) => {
        messages.push(args);
    });
    return messages;
}

export async function connectionIdOf(connection) {
    const id = await waitFor(connection.invoke("GetConnectionId"), DEFAULT_WAIT_MS, "GetConnectionId");
    assert.equal(typeof id, "string");
    assert.ok(id.length > 0, "GetConnectionId returned an empty id");
    return id;
}

/** Once this returns, everything the server queued for `connection` before it has arrived. */
export async function roundTrip(connection) {
    const token = `barrier-${Math.random().toString(36).slice(2)}`;
    assert.equal(await waitFor(connection.invoke("Echo", token), DEFAULT_WAIT_MS, "an Echo round trip"), token);
}

// ---------------------------------------------------------------------------------------------
// A gateway on a fixed port (restart tests) and a TCP proxy that can cut connections

const fixedPortGateways = new Set();
process.on("exit", () => {
    for (const child of fixedPortGateways) {
        child.kill("SIGKILL");
    }
});

/**
 * Starts the gateway (HUBGATE_BIN) listening on 127.0.0.1:`port`, so it can be restarted where
 * clients expect it (the harness's startGateway always picks a fresh port). Resolves once it
 * printed its `listening on` line, within 10 s.
 */
export async function startGatewayOnPort(port, extraArgs = []) {
    const bin = process.env.HUBGATE_BIN;
    assert.ok(bin, "HUBGATE_BIN is not set (see tests/harness.mjs)");
    const env = {};
    for (const [key, value] of Object.entries(process.env)) {
        if (!key.startsWith("HUBGATE_") || key === "HUBGATE_LOG" || key === "HUBGATE_LOG_FORMAT") {
            env[key] = value;
        }
    }
    env.NO_COLOR = "1";
    const args = ["--listen", `127.0.0.1:${port}`, ...extraArgs];
    const child = spawn(resolvePath(bin), args, { env, stdio: ["ignore", "pipe", "pipe"] });
    fixedPortGateways.add(child);
    const lines = [];
    const keep = (line) => {
        lines.push(line);
        if (lines.length > 200) {
            lines.shift();
        }
    };
    createInterface({ input: child.stderr }).on("line", keep);
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => {
        fixedPortGateways.delete(child);
        resolve({ code, signal });
    }));
    let exitInfo = null;
    exited.then((info) => {
        exitInfo = info;
    });
    const listening = new Promise((resolve) => {
        createInterface({ input: child.stdout }).on("line", (line) => {
            if (line.trim() === `listening on http://127.0.0.1:${port}`) {
                resolve();
            } else {
                keep(`(stdout) ${line}`);
            }
        });
    });
    const gateway = {
        url: `http://127.0.0.1:${port}`,
        logs: () => lines,
        async stop() {
            if (exitInfo === null) {
                child.kill("SIGTERM");
                const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
                await exited;
                clearTimeout(timer);
            }
            return exitInfo;
        },
    };
    try {
        await waitFor(Promise.race([
            listening,
            exited.then((info) => {
                throw new Error(`gateway ${args.join(" ")} exited (${JSON.stringify(info)}) before listening:\n${lines.join("\n")}`);
            }),
        ]), 10_000, `the gateway to listen on 127.0.0.1:${port}`);
    } catch (e) {
        await gateway.stop();
        throw e;
    }
    return gateway;
}

/**
 * A TCP proxy on a free loopback port forwarding to 127.0.0.1:`targetPort`. `cut()` resets
 * every live connection in both directions at once (whatever is in flight is lost), as a
 * network failure does; new connections are forwarded as before.
 */
export async function startProxy(targetPort) {
    const live = new Set();
    let accepted = 0;
    const server = net.createServer((downstream) => {
        accepted += 1;
        const upstream = net.connect(targetPort, "127.0.0.1");
        const pair = { downstream, upstream };
        live.add(pair);
        const drop = () => {
            live.delete(pair);
            downstream.destroy();
            upstream.destroy();
        };
        downstream.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        downstream.pipe(upstream);
        upstream.pipe(downstream);
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        url: `http://127.0.0.1:${server.address().port}`,
        get accepted() {
            return accepted;
        },
        get liveCount() {
            return live.size;
        },
        cut() {
            const pairs = [...live];
            live.clear();
            for (const { downstream, upstream } of pairs) {
                downstream.resetAndDestroy();
                upstream.resetAndDestroy();
            }
            return pairs.length;
        },
        close() {
            for (const { downstream, upstream } of live) {
                downstream.destroy();
                upstream.destroy();
            }
            return new Promise((resolve) => server.close(resolve));
        },
    };
}

