// Load for scripts/soak: the official @microsoft/signalr client against two hubgate nodes.
// Steady clients (half on each node, all in group "steady") count every broadcast, group send
// and REST send exactly once; churners connect, join and leave random groups and disconnect.
// Writes one latency line per minute to LAT_CSV and a JSON summary to stdout at the end.
// Env: NODE_A, NODE_B (http://host:port), ACCESS_KEY, DURATION_S, LAT_CSV.
import { createHmac } from "node:crypto";
import { appendFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

// The official client as the conformance suite installs it (conformance/node_modules).
const require = createRequire(new URL("../conformance/package.json", import.meta.url));
const { HubConnectionBuilder, LogLevel, HttpTransportType } = require("@microsoft/signalr");

const nodes = [process.env.NODE_A, process.env.NODE_B];
const key = process.env.ACCESS_KEY;
const duration = Number(process.env.DURATION_S ?? 1800) * 1000;
const latCsv = process.env.LAT_CSV;
const STEADY = 40;
const CHURNERS = 20;
const started = Date.now();

const b64url = (b) => Buffer.from(b).toString("base64url");
function accessToken(url) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ aud: url, exp: Math.floor(Date.now() / 1000) + 60 }));
  const sig = createHmac("sha256", key).update(`${header}.${body}`).digest("base64url");
  return `${header}.${body}.${sig}`;
}

function build(node, transport) {
  return new HubConnectionBuilder()
    .withUrl(`${node}/hubs/chat`, { transport })
    .configureLogging(LogLevel.None)
    .build();
}

const kinds = ["bcast", "grp", "rest"];
const sent = { bcast: 0, grp: 0, rest: 0 };
const failedSends = { bcast: 0, grp: 0, rest: 0 };
let latencies = [];
const steady = [];
for (let i = 0; i < STEADY; i++) {
  const transport = [HttpTransportType.WebSockets, HttpTransportType.ServerSentEvents, HttpTransportType.LongPolling][i % 3];
  const connection = build(nodes[i % 2], transport);
  const seen = { bcast: new Set(), grp: new Set(), rest: new Set() };
  let dups = 0;
  for (const kind of kinds) {
    connection.on(kind, (seq, at) => {
      if (seen[kind].has(seq)) dups++;
      seen[kind].add(seq);
      latencies.push(Date.now() - at);
    });
  }
  await connection.start();
  await connection.invoke("JoinGroup", "steady");
  steady.push({ connection, seen, dupsRef: () => dups, closed: false });
  connection.onclose(() => { steady[i].closed = true; });
}
const publisherA = build(nodes[0], HttpTransportType.WebSockets);
const publisherB = build(nodes[1], HttpTransportType.WebSockets);
await publisherA.start();
await publisherB.start();

let churnCycles = 0;
let churnErrors = 0;
let running = true;
async function churner(index) {
  while (running) {
    const connection = build(nodes[(index + churnCycles) % 2], HttpTransportType.WebSockets);
    try {
      await connection.start();
      const groups = Array.from({ length: 3 }, () => `g${Math.floor(Math.random() * 50)}`);
      for (const g of groups) await connection.invoke("JoinGroup", g);
      await connection.invoke("SendToGroup", groups[0], "churn", "x");
      await new Promise((r) => setTimeout(r, 500 + Math.random() * 2000));
      await connection.invoke("LeaveGroup", groups[1]);
      await connection.stop();
      churnCycles++;
    } catch {
      churnErrors++;
      try { await connection.stop(); } catch {}
    }
  }
}
const churners = Array.from({ length: CHURNERS }, (_, i) => churner(i));

async function restSend(seq) {
  const url = `${nodes[seq % 2]}/api/hubs/chat/groups/steady/:send`;
  const response = await fetch(`${url}?api-version=2022-06-01`, {
    method: "POST",
    headers: { authorization: `Bearer ${accessToken(url)}`, "content-type": "application/json" },
    body: JSON.stringify({ target: "rest", arguments: [seq, Date.now()] }),
  });
  if (response.status !== 202) throw new Error(`REST ${response.status}`);
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] : 0;
}
let minute = 0;
writeFileSync(latCsv, "minute,deliveries,p50_ms,p99_ms,max_ms\n");
const reporter = setInterval(() => {
  const sorted = latencies.sort((a, b) => a - b);
  appendFileSync(latCsv, `${++minute},${sorted.length},${pct(sorted, 50)},${pct(sorted, 99)},${sorted.at(-1) ?? 0}\n`);
  latencies = [];
}, 60_000);

// 20 broadcasts/s from node A, 10 group sends/s from node B, 5 REST sends/s alternating nodes.
let tick = 0;
while (Date.now() - started < duration) {
  const jobs = [];
  const at = Date.now();
  jobs.push(publisherA.invoke("SendToAll", "bcast", sent.bcast++, at).catch(() => failedSends.bcast++));
  if (tick % 2 === 0) jobs.push(publisherB.invoke("SendToGroup", "steady", "grp", sent.grp++, at).catch(() => failedSends.grp++));
  if (tick % 4 === 0) jobs.push(restSend(sent.rest++).catch(() => failedSends.rest++));
  await Promise.all(jobs);
  tick++;
  await new Promise((r) => setTimeout(r, Math.max(0, 50 - (Date.now() - at))));
}
running = false;
await Promise.all(churners);
// Let the last sends arrive (bounded), then count.
const drainUntil = Date.now() + 10_000;
const complete = () => steady.every((s) => kinds.every((k) => s.seen[k].size >= sent[k] - failedSends[k]));
while (!complete() && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 100));
clearInterval(reporter);
let lost = 0;
let dups = 0;
for (const s of steady) {
  for (const k of kinds) lost += sent[k] - failedSends[k] - s.seen[k].size;
  dups += s.dupsRef();
}
const summary = {
  duration_s: Math.round((Date.now() - started) / 1000),
  steady_clients: STEADY,
  sent,
  failed_sends: failedSends,
  expected_deliveries: STEADY * kinds.reduce((n, k) => n + sent[k] - failedSends[k], 0),
  lost,
  duplicates: dups,
  steady_closed: steady.filter((s) => s.closed).length,
  churn_cycles: churnCycles,
  churn_errors: churnErrors,
};
console.log(JSON.stringify(summary));
for (const s of steady) await s.connection.stop();
await publisherA.stop();
await publisherB.stop();
process.exit(lost === 0 && dups === 0 ? 0 : 1);
