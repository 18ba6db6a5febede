#!/usr/bin/env node
// What forwarding costs on stateless nodes (docs/benchmarks.md "Forwarding between stateless
// nodes"): two nodes with --cluster-secret on one redis-server. Node A holds every connection;
// each round trip (an Echo invocation POSTed, its completion received) is measured with
// every request sent to A itself ("local") or to B, which forwards it to A ("forwarded"):
//
//   long polling  the POST and the poll that brings the completion;
//   SSE           the POST, and the event stream itself, opened through B.
//
// The rounds alternate local and forwarded, so both see the same machine noise.
//
//   node loadtest/scripts/forwarding-bench.mjs [ROUND_TRIPS] [ROUNDS]
//
// Needs `cargo build --release -p gateway` (or GATEWAY=path) and redis-server on the PATH.
// Prints one line per round and configuration, then the means as Markdown table rows.

import { spawn } from "node:child_process";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

const trips = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 3);
const root = fileURLToPath(new URL("../..", import.meta.url));
const gatewayBinary = process.env.GATEWAY ?? `${process.env.CARGO_TARGET_DIR ?? `${root}target`}/release/gateway`;
const RS = "\x1e";
const children = [];
process.on("exit", () => children.forEach((child) => child.kill("SIGKILL")));

function freePort() {
    return new Promise((resolve) => {
        const server = net.createServer().listen(0, "127.0.0.1", () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
    });
}

/** Starts `command`; resolves with the first stdout match of `pattern` (its first group). */
function start(command, args, pattern) {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    return new Promise((resolve, reject) => {
        let seen = "";
        const timer = setTimeout(() => reject(new Error(`${command} did not start`)), 10_000);
        child.stdout.on("data", (chunk) => {
            seen += chunk;
            const found = pattern.exec(seen);
            if (found) {
                clearTimeout(timer);
                resolve(found[1]);
            }
        });
    });
}

async function startCluster() {
    const redisPort = await freePort();
    await start("redis-server", ["--port", String(redisPort), "--save", "", "--appendonly", "no"], /(Ready to accept)/);
    const nodes = [];
    for (const id of ["a", "b"]) {
        const args = ["--listen", "127.0.0.1:0", "--log", "warn", "--node-id", id, "--backplane", "redis",
            "--redis-url", `redis://127.0.0.1:${redisPort}`, "--cluster-secret", "forwarding-bench-cluster-secret"];
        nodes.push(await start(gatewayBinary, args, /listening on (http:\/\/[0-9.:]+)/));
    }
    return nodes;
}

async function negotiate(node) {
    const answer = await fetch(`${node}/hubs/bench/negotiate?negotiateVersion=1`, { method: "POST" });
    return (await answer.json()).connectionToken;
}

const invocation = (n) => JSON.stringify({ type: 1, invocationId: String(n), target: "Echo", arguments: ["x"] }) + RS;
const handshake = JSON.stringify({ protocol: "json", version: 1 }) + RS;

async function post(url, body) {
    const answer = await fetch(url, { method: "POST", body });
    await answer.arrayBuffer();
    if (answer.status !== 200) {
        throw new Error(`POST ${url}: ${answer.status}`);
    }
}

/** Records of a text-framed payload that are completions. */
function completions(text) {
    return text.split(RS).filter((record) => record.length > 0).map((record) => JSON.parse(record))
        .filter((message) => message.type === 3);
}

/** Long polling: the connection claimed on `holder`, every request sent to `via`. */
async function longPolling(holder, via) {
    const token = await negotiate(holder);
    const url = (node) => `${node}/hubs/bench?id=${encodeURIComponent(token)}`;
    await (await fetch(url(holder))).arrayBuffer(); // the first poll claims it on the holder
    await post(url(via), handshake);
    await (await fetch(url(via))).arrayBuffer(); // the handshake answer
    const times = [];
    for (let n = 0; n < trips; n++) {
        const began = performance.now();
        await post(url(via), invocation(n));
        for (;;) {
            const poll = await fetch(url(via));
            if (completions(await poll.text()).some((message) => message.invocationId === String(n))) {
                break;
            }
        }
        times.push(performance.now() - began);
    }
    await fetch(url(holder), { method: "DELETE" });
    return times;
}

/** Server-Sent Events: claimed on `holder` by the handshake POST, the stream and POSTs via `via`. */
async function serverSentEvents(holder, via) {
    const token = await negotiate(holder);
    const url = (node) => `${node}/hubs/bench?id=${encodeURIComponent(token)}`;
    await post(url(holder), handshake);
    const controller = new AbortController();
    const stream = await fetch(url(via), { headers: { accept: "text/event-stream" }, signal: controller.signal });
    const reader = stream.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    const nextCompletion = async () => {
        for (;;) {
            const events = buffered.split("\n\n");
            buffered = events.pop();
            for (const event of events) {
                const data = event.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
                const done = completions(data);
                if (done.length > 0) {
                    return done[0];
                }
            }
            const { value, done } = await reader.read();
            if (done) {
                throw new Error("the event stream ended");
            }
            // Events end with a blank line; the gateway ends lines with CRLF.
            buffered = (buffered + decoder.decode(value, { stream: true })).replaceAll("\r\n", "\n");
        }
    };
    const times = [];
    for (let n = 0; n < trips; n++) {
        const began = performance.now();
        await post(url(via), invocation(n));
        const completion = await nextCompletion();
        if (completion.invocationId !== String(n)) {
            throw new Error(`completion ${completion.invocationId} for invocation ${n}`);
        }
        times.push(performance.now() - began);
    }
    controller.abort();
    return times;
}

function summary(times) {
    const sorted = [...times].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    return { p50: at(0.5), p99: at(0.99), mean: times.reduce((a, b) => a + b, 0) / times.length };
}

const [a, b] = await startCluster();
const results = {};
for (let round = 1; round <= rounds; round++) {
    for (const [transport, run] of [["long polling", longPolling], ["SSE", serverSentEvents]]) {
        for (const [where, via] of [["local", a], ["forwarded", b]]) {
            const key = `${transport}, ${where}`;
            const { p50, p99, mean } = summary(await run(a, via));
            (results[key] ??= []).push({ p50, p99, mean });
            console.log(`round ${round}  ${key.padEnd(24)} p50 ${p50.toFixed(3)} ms  p99 ${p99.toFixed(3)} ms  mean ${mean.toFixed(3)} ms`);
        }
    }
}
console.log(`\nmean over ${rounds} rounds of ${trips} round trips each:`);
for (const [key, list] of Object.entries(results)) {
    const avg = (field) => (list.reduce((sum, r) => sum + r[field], 0) / list.length).toFixed(3);
    console.log(`| ${key} | ${avg("p50")} | ${avg("p99")} | ${avg("mean")} |`);
}
process.exit(0);
