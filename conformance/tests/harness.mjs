// Test harness for the hubgate conformance suite.
//
// It runs the real `gateway` binary (path in HUBGATE_BIN) as a child process on a free
// loopback port and drives it with the official, unmodified @microsoft/signalr client.
//
// Rules the helpers follow:
// - every wait has a deadline and names what it waits for; nothing sleeps to synchronise;
// - gateway logs (stderr) are kept in memory (last 200 lines) and printed only when a test
//   fails, or streamed live when HUBGATE_TEST_LOGS=1;
// - every client built here is stopped after each test, every gateway after its file/suite.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { accessSync, constants as fsConstants, statSync } from "node:fs";
import net from "node:net";
import { resolve as resolvePath } from "node:path";
import { createInterface } from "node:readline";
import { after, afterEach, before } from "node:test";

import {
    HttpTransportType,
    HubConnectionBuilder,
    HubConnectionState,
    LogLevel,
} from "@microsoft/signalr";

/** The three transports by the names negotiate uses. */
export const TRANSPORTS = {
    WebSockets: HttpTransportType.WebSockets,
    ServerSentEvents: HttpTransportType.ServerSentEvents,
    LongPolling: HttpTransportType.LongPolling,
};

/** How long a test waits for something that should happen promptly. */
export const DEFAULT_WAIT_MS = 5_000;

const STARTUP_DEADLINE_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const LOG_LINES_KEPT = 200;
const LISTENING_LINE = /^listening on (https?:\/\/127\.0\.0\.1:(\d+))\s*$/;

const liveLogs = process.env.HUBGATE_TEST_LOGS === "1";

// ---------------------------------------------------------------------------------------------
// Gateway process

/** Gateways started by this process, killed synchronously if the test process exits. */
const runningGateways = new Set();
process.on("exit", () => {
    for (const gateway of runningGateways) {
        try {
            gateway.child.kill("SIGKILL");
        } catch {
            // already gone
        }
    }
});

function gatewayBinary(variable = "HUBGATE_BIN") {
    if (!process.env[variable]) {
        throw new Error(
            "HUBGATE_BIN is not set. Build the gateway and point HUBGATE_BIN at it, e.g.\n" +
            "  (cd .. && CARGO_TARGET_DIR=/var/tmp/hubgate-target cargo build -p gateway)\n" +
            "  HUBGATE_BIN=/var/tmp/hubgate-target/debug/gateway npm test",
        );
    }
    const bin = resolvePath(process.env[variable]);
    try {
        if (!statSync(bin).isFile()) {
            throw new Error("not a regular file");
        }
        accessSync(bin, fsConstants.X_OK);
    } catch (e) {
        throw new Error(`${variable}=${bin} is not an executable file (${e.message}). Build the gateway first.`);
    }
    return bin;
}

/**
 * The environment the gateway runs with: ours, minus the gateway's own HUBGATE_* settings, so
 * that a developer's shell cannot change what a test configured with flags. HUBGATE_LOG and
 * HUBGATE_LOG_FORMAT pass through (they only change logging).
 */
function gatewayEnvironment() {
    const env = {};
    for (const [key, value] of Object.entries(process.env)) {
        if (key.startsWith("HUBGATE_") && key !== "HUBGATE_LOG" && key !== "HUBGATE_LOG_FORMAT") {
            continue;
        }
        env[key] = value;
    }
    env.RUST_BACKTRACE ??= "1";
    if (!(liveLogs && process.stderr.isTTY)) {
        // Logs kept for failure reports read better without colour codes.
        env.NO_COLOR = "1";
    }
    return env;
}

/**
 * Starts the gateway with `--listen 127.0.0.1:0` plus `extraArgs` and waits (at most 10 s) for
 * its one stdout line `listening on http://127.0.0.1:PORT` (`https://` with --tls-cert).
 *
 * @param {string[]} extraArgs e.g. ["--jwt-secret", "s"]
 * @returns {Promise<{url: string, port: number, args: string[], logs: () => string[],
 *   dumpLogs: (why: string) => void, exited: () => boolean, stop: () => Promise<void>}>}
 */
export async function startGateway(extraArgs = [], binaryVariable = "HUBGATE_BIN") {
    const bin = gatewayBinary(binaryVariable);
    const args = ["--listen", "127.0.0.1:0", ...extraArgs];
    const child = spawn(bin, args, {
        env: gatewayEnvironment(),
        stdio: ["ignore", "pipe", "pipe"],
    });

    const logLines = [];
    const keep = (line) => {
        logLines.push(line);
        if (logLines.length > LOG_LINES_KEPT) {
            logLines.shift();
        }
        if (liveLogs) {
            process.stderr.write(`[gateway ${child.pid}] ${line}\n`);
        }
    };

    let exitInfo = null;
    const exitPromise = new Promise((resolve) => {
        child.once("exit", (code, signal) => {
            exitInfo = { code, signal };
            runningGateways.delete(gateway);
            resolve(exitInfo);
        });
    });
    let spawnError = null;
    child.once("error", (e) => {
        spawnError = e;
        keep(`(spawn error: ${e.message})`);
    });

    createInterface({ input: child.stderr }).on("line", keep);

    let listeningUrl = null;
    let announceListening;
    const listening = new Promise((resolve) => {
        announceListening = resolve;
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
        const match = LISTENING_LINE.exec(line);
        if (listeningUrl === null && match) {
            listeningUrl = match[1];
            announceListening(match[1]);
        } else {
            keep(`(stdout) ${line}`);
        }
    });

    const gateway = {
        child,
        args,
        url: undefined,
        port: undefined,
        logs: () => [...logLines],
        exited: () => exitInfo !== null,
        dumpLogs(why) {
            const status = exitInfo ? ` (exited: code ${exitInfo.code}, signal ${exitInfo.signal})` : "";
            process.stderr.write(
                `\n----- gateway ${args.join(" ")}: last ${logLines.length} log lines (${why})${status} -----\n` +
                logLines.join("\n") +
                "\n----- end of gateway log -----\n",
            );
        },
        async stop() {
            if (exitInfo === null) {
                child.kill("SIGTERM");
                const killTimer = setTimeout(() => {
                    keep("(harness: no exit 3 s after SIGTERM, sending SIGKILL)");
                    child.kill("SIGKILL");
                }, STOP_GRACE_MS);
                await exitPromise;
                clearTimeout(killTimer);
            }
        },
    };
    runningGateways.add(gateway);

    const failure = (what) => new Error(
        `gateway ${bin} ${args.join(" ")} ${what}\n--- its last log lines ---\n${logLines.join("\n")}`,
    );
    let deadline;
    try {
        const url = await Promise.race([
            listening,
            exitPromise.then((info) => {
                throw failure(
                    `exited before printing 'listening on ...' (code ${info.code}, signal ${info.signal}` +
                    `${spawnError ? `, ${spawnError.message}` : ""})`,
                );
            }),
            new Promise((_, reject) => {
                deadline = setTimeout(
                    () => reject(failure(`did not print 'listening on http://127.0.0.1:PORT' within ${STARTUP_DEADLINE_MS} ms`)),
                    STARTUP_DEADLINE_MS,
                );
            }),
        ]);
        gateway.url = url;
        gateway.port = Number(new URL(url).port);
        return gateway;
    } catch (e) {
        await gateway.stop();
        throw e;
    } finally {
        clearTimeout(deadline);
    }
}

/**
 * Registers hooks in the current file or `describe` suite: one gateway started before its tests
 * (with `extraArgs`) and stopped after them; the clients a test built are stopped after that
 * test; when a test fails the gateway's and clients' recent logs are printed.
 *
 * @returns {{url: string, gateway: object}} filled in once the `before` hook ran
 */
export function useGateway(extraArgs = [], binaryVariable = "HUBGATE_BIN") {
    const handle = { url: undefined, gateway: undefined };
    before(async () => {
        handle.gateway = await startGateway(extraArgs, binaryVariable);
        handle.url = handle.gateway.url;
    });
    afterEach(async (t) => {
        if (!t.passed) {
            handle.gateway?.dumpLogs(`test failed: ${t.name}`);
            dumpClientLogs(`test failed: ${t.name}`);
        }
        await stopAllClients();
        if (handle.gateway?.exited()) {
            throw new Error(`the gateway exited during test '${t.name}'`);
        }
    });
    after(async () => {
        await stopAllClients();
        await handle.gateway?.stop();
    });
    return handle;
}

/**
 * Like `useGateway`, for the test-hub example (`gateway/examples/testhub.rs`, path in
 * HUBGATE_TESTHUB_BIN): the official functional-test hub at `/testhub`.
 */
export function useTestHub(extraArgs = []) {
    return useGateway(extraArgs, "HUBGATE_TESTHUB_BIN");
}

// ---------------------------------------------------------------------------------------------
// Clients

/** Everything the client library logged, and every hub message it sent or received. */
class RecordingLogger {
    constructor(name) {
        this.name = name;
        /** Log entries at Warning or above: [{level, message}]. */
        this.problems = [];
        /** Recent log lines of any level, for failure reports. */
        this.recent = [];
        /** Hub messages received, parsed from the transport's trace log, in arrival order. */
        this.received = [];
        /** Hub messages sent, parsed the same way. */
        this.sent = [];
    }

    log(level, message) {
        this.recent.push(`${LogLevel[level]}: ${message}`);
        if (this.recent.length > LOG_LINES_KEPT) {
            this.recent.shift();
        }
        if (level >= LogLevel.Warning) {
            this.problems.push({ level: LogLevel[level], message });
        }
        if (level === LogLevel.Trace) {
            const frame = /^\((?:WebSockets|SSE|LongPolling) transport\) (data received|sending data)\. String data of length (\d+)\. Content: '/.exec(message);
            if (frame) {
                const text = message.slice(frame[0].length, frame[0].length + Number(frame[2]));
                const list = frame[1] === "data received" ? this.received : this.sent;
                for (const record of text.split("\x1e")) {
                    if (record.length > 0) {
                        list.push(parseRecord(record));
                    }
                }
            }
        }
    }
}

function parseRecord(record) {
    try {
        return JSON.parse(record);
    } catch {
        return { unparseable: record };
    }
}

/** Clients built since the last cleanup, with their loggers. */
const openClients = new Map();

/**
 * Builds (does not start) a HubConnection for `url + '/hubs/' + hub` with the official client.
 * The client logs at Trace level with message content into a recorder (see `wireOf`,
 * `problemsOf`); nothing is printed unless a test fails.
 *
 * @param {string} url gateway base URL, e.g. http://127.0.0.1:1234
 * @param {object} [options] IHttpConnectionOptions (accessTokenFactory, skipNegotiation,
 *   transport, ...) plus `hub` (default "chat") and `name` (used in failure reports)
 */
export function buildConnection(url, options = {}) {
    const {
        hub = "chat",
        path = `/hubs/${hub}`,
        protocol,
        configure = (builder) => builder,
        name = `client${openClients.size + 1}`,
        ...httpOptions
    } = options;
    const logger = new RecordingLogger(name);
    let builder = new HubConnectionBuilder()
        .withUrl(`${url}${path}`, { logMessageContent: true, ...httpOptions })
        .configureLogging(logger);
    if (protocol) {
        builder = builder.withHubProtocol(protocol);
    }
    const connection = configure(builder).build();
    openClients.set(connection, logger);
    loggers.set(connection, logger);
    return connection;
}

/** Builds and starts a connection (see `buildConnection`); resolves once it is Connected. */
export async function connect(url, options = {}) {
    const connection = buildConnection(url, options);
    await waitFor(connection.start(), DEFAULT_WAIT_MS, `${options.name ?? "client"} to connect to ${url}${options.path ?? `/hubs/${options.hub ?? "chat"}`}`);
    return connection;
}

const loggers = new WeakMap();

function loggerOf(connection) {
    const logger = loggers.get(connection);
    if (!logger) {
        throw new Error("this connection was not built by the harness");
    }
    return logger;
}

/**
 * Sends one to three requests through a round-robin balancer at `url` (answered by whichever
 * node), so that the next client start lands on nodes in another order: a start makes the same
 * number of requests each time, and without this its claims could keep landing on one node.
 */
export async function shiftRoundRobin(url) {
    const requests = 1 + Math.floor(Math.random() * 3);
    for (let i = 0; i < requests; i++) {
        await fetch(`${url}/healthz`).then((answer) => answer.arrayBuffer()).catch(() => {});
    }
}

/**
 * The hub messages a connection exchanged, as parsed JSON objects in order:
 * `{received: [...], sent: [...]}` (arrays keep growing; slice them to look at a window).
 */
export function wireOf(connection) {
    const { received, sent } = loggerOf(connection);
    return { received, sent };
}

/** The client library's recent log lines, `Level: message` (the last 200). */
export function logOf(connection) {
    return loggerOf(connection).recent;
}

/** Everything the client library logged at Warning level or above: [{level, message}]. */
export function problemsOf(connection) {
    return loggerOf(connection).problems;
}

function dumpClientLogs(why) {
    for (const logger of openClients.values()) {
        process.stderr.write(
            `\n----- client '${logger.name}': last ${logger.recent.length} log lines (${why}) -----\n` +
            logger.recent.join("\n") +
            "\n----- end of client log -----\n",
        );
    }
}

export async function stopAllClients() {
    const clients = [...openClients.keys()];
    openClients.clear();
    await Promise.all(clients.map(async (connection) => {
        if (connection.state !== HubConnectionState.Disconnected) {
            await waitFor(connection.stop().catch(() => {}), DEFAULT_WAIT_MS, "a client to stop")
                .catch(() => {});
        }
    }));
}

// ---------------------------------------------------------------------------------------------
// Waiting

/**
 * Waits for a promise to settle, or for a predicate to become true (checked every 10 ms),
 * failing with "Timed out after N ms waiting for <what>" at the deadline.
 *
 * @template T
 * @param {Promise<T> | (() => boolean)} condition
 * @param {number} ms deadline
 * @param {string} what what is awaited, for the error message
 * @returns {Promise<T | undefined>}
 */
export function waitFor(condition, ms, what) {
    let timer;
    let poller;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    let awaited;
    if (typeof condition === "function") {
        awaited = new Promise((resolve, reject) => {
            const check = () => {
                try {
                    if (condition()) {
                        resolve(undefined);
                        return true;
                    }
                } catch (e) {
                    reject(e);
                    return true;
                }
                return false;
            };
            if (!check()) {
                poller = setInterval(() => {
                    if (check()) {
                        clearInterval(poller);
                    }
                }, 10);
            }
        });
    } else {
        awaited = Promise.resolve(condition);
    }
    return Promise.race([awaited, timeout]).finally(() => {
        clearTimeout(timer);
        clearInterval(poller);
    });
}

/**
 * Collects every Invocation of client method `target` that `connection` receives.
 *
 * - `messages`: the argument lists received so far, in order (e.g. `[["hello", 42]]`);
 * - `nth(n, ms?)`: resolves with the n-th (1-based) argument list once it has arrived, or fails
 *   at the deadline.
 */
export function received(connection, target) {
    const messages = [];
    const waiters = [];
    connection.on(target, (...args) => {
        messages.push(args);
        for (const waiter of [...waiters]) {
            if (messages.length >= waiter.n) {
                waiters.splice(waiters.indexOf(waiter), 1);
                waiter.resolve(messages[waiter.n - 1]);
            }
        }
    });
    return {
        messages,
        get count() {
            return messages.length;
        },
        nth(n, ms = DEFAULT_WAIT_MS) {
            if (messages.length >= n) {
                return Promise.resolve(messages[n - 1]);
            }
            const arrived = new Promise((resolve) => waiters.push({ n, resolve }));
            return waitFor(arrived, ms, `message #${n} for client method '${target}'`);
        },
    };
}

/**
 * A round trip to the server on `connection`: once it returns, every message the server queued
 * for this connection before handling the Echo has been delivered to the client.
 */
export async function roundTrip(connection, what = "an Echo round trip") {
    const token = `barrier-${Math.random().toString(36).slice(2)}`;
    const echoed = await waitFor(connection.invoke("Echo", token), DEFAULT_WAIT_MS, what);
    if (echoed !== token) {
        throw new Error(`Echo round trip returned ${JSON.stringify(echoed)} instead of ${JSON.stringify(token)}`);
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

function base64url(data) {
    return Buffer.from(data).toString("base64url");
}

/** A compact JWT signed with HS256 over `payload` using `secret`. */
export function signHs256(payload, secret) {
    const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
    const body = base64url(JSON.stringify(payload));
    const signature = createHmac("sha256", secret).update(`${header}.${body}`).digest("base64url");
    return `${header}.${body}.${signature}`;
}

/** Seconds since the epoch, as JWT `iat`/`exp` use. */
export function nowSeconds() {
    return Math.floor(Date.now() / 1000);
}

// ---------------------------------------------------------------------------------------------
// Redis and multi-node clusters

/** A free loopback TCP port (closed again; the caller binds it soon after). */
export async function freePort() {
    const server = net.createServer();
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address();
    await new Promise((resolve) => server.close(resolve));
    return port;
}

/** A redis-server on a free port, without persistence; resolves once it accepts commands. */
export async function startRedis() {
    const port = await freePort();
    const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
        stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const ready = new Promise((resolve, reject) => {
        child.stdout.on("data", (chunk) => {
            output += chunk;
            if (output.includes("Ready to accept connections")) {
                resolve();
            }
        });
        child.once("exit", (code) => reject(new Error(`redis-server exited (${code}):\n${output}`)));
        child.once("error", reject);
    });
    await waitFor(ready, 10_000, `redis-server to listen on ${port}`);
    return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill("SIGKILL") };
}

/** Resolves once `gateway` answers `GET /readyz` with 200 (its backplane is connected), within 10 s. */
export async function waitReady(gateway) {
    const isReady = async () => {
        for (;;) {
            const response = await fetch(`${gateway.url}/readyz`).catch(() => null);
            if (response?.status === 200) {
                return;
            }
            await new Promise((resolve) => setTimeout(resolve, 20));
        }
    };
    await waitFor(isReady(), 10_000, `${gateway.url}/readyz to answer 200`);
}

/**
 * Records how `connection` ends and reconnects into `member` (`closed`, `reconnections`,
 * `rejoinFailures`), re-joining `group` after every automatic reconnect as a real app does in
 * `onreconnected`.
 */
export function trackReconnects(connection, member, group) {
    connection.onclose((error) => member.closed.push(error ?? "closed"));
    connection.onreconnected(async () => {
        try {
            await connection.invoke("JoinGroup", group);
            member.reconnections += 1;
        } catch (error) {
            member.rejoinFailures.push(error);
        }
    });
}

/** Collects a stream's items; resolves on completion, rejects on error. */
export function collect(stream) {
    return new Promise((resolve, reject) => {
        const items = [];
        stream.subscribe({ next: (item) => items.push(item), complete: () => resolve(items), error: reject });
    });
}
