// Browsers on another origin, in a real browser: headless Chromium (driven by playwright-core)
// opens a page served from one origin, and the page's official @microsoft/signalr browser
// bundle connects to a gateway on another origin over each transport, calls Echo and receives
// its own SendToAll. The gateway lists the page's origin in --cors-allowed-origins; a page from
// an origin it does not list (the same page server reached as `localhost` instead of
// `127.0.0.1`: another origin) fails on every transport, and the gateway's log says why.
// A gateway with `*` admits every origin, for clients that send no credentials.
//
// Chromium is Debian's `chromium` package (scripts/test-all installs it); HUBGATE_CHROMIUM
// overrides its path.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";

import { chromium } from "playwright-core";

import { DEFAULT_WAIT_MS, startGateway, waitFor } from "./harness.mjs";

const CHROMIUM = process.env.HUBGATE_CHROMIUM ?? "/usr/bin/chromium";
const TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"];

// The browser bundle of the client the other tests use from Node.
const require = createRequire(import.meta.url);
const BUNDLE = readFileSync(join(dirname(require.resolve("@microsoft/signalr/package.json")), "dist/browser/signalr.js"));

// `tryConnect(hubUrl, transport, options)` connects, calls Echo, sends itself a SendToAll and
// reports what came back, or the error that stopped it. Every wait has a deadline.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>hubgate CORS test page</title>
<script src="/signalr.js"></script>
<script>
window.tryConnect = async (url, transport, options = {}) => {
    const connection = new signalR.HubConnectionBuilder()
        .withUrl(url, { transport: signalR.HttpTransportType[transport], ...options })
        .configureLogging(signalR.LogLevel.None)
        .build();
    let pinged;
    const ping = new Promise((resolve) => { pinged = resolve; });
    connection.on("ping", (value) => pinged(value));
    const deadline = (what) => new Promise((_, reject) =>
        setTimeout(() => reject(new Error("timed out waiting for " + what)), ${DEFAULT_WAIT_MS}));
    try {
        await connection.start();
        const echoed = await connection.invoke("Echo", "hello from " + location.origin);
        await connection.invoke("SendToAll", "ping", transport);
        const broadcast = await Promise.race([ping, deadline("the SendToAll")]);
        return { ok: true, echoed, broadcast };
    } catch (error) {
        return { ok: false, error: String(error && error.message || error) };
    } finally {
        await connection.stop().catch(() => {});
    }
};
</script>
<p>hubgate CORS test page</p>
`;

/** An HTTP server on a free loopback port serving PAGE at `/` and the client bundle. */
async function startPageServer() {
    const server = createServer((request, response) => {
        if (request.url === "/signalr.js") {
            response.writeHead(200, { "Content-Type": "text/javascript" }).end(BUNDLE);
        } else if (request.url === "/") {
            response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(PAGE);
        } else {
            response.writeHead(404).end();
        }
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { port: server.address().port, close: () => new Promise((resolve) => server.close(resolve)) };
}

describe("browsers on another origin (--cors-allowed-origins), in headless Chromium", () => {
    let pages;
    let browser;
    let allowed; // origin of the pages the gateway lists
    let foreign; // the same server under another host name: another origin
    let listing; // gateway listing `allowed`
    let star; // gateway with `*`

    before(async () => {
        pages = await startPageServer();
        allowed = `http://127.0.0.1:${pages.port}`;
        foreign = `http://localhost:${pages.port}`;
        listing = await startGateway(["--cors-allowed-origins", allowed]);
        star = await startGateway(["--cors-allowed-origins", "*"]);
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            // Chromium's sandbox cannot start as root (CI containers); the pages are our own.
            args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
        });
    });

    afterEach((t) => {
        if (!t.passed) {
            listing?.dumpLogs(`test failed: ${t.name}`);
            star?.dumpLogs(`test failed: ${t.name}`);
        }
    });

    after(async () => {
        await browser?.close();
        await Promise.all([listing?.stop(), star?.stop()]);
        await pages?.close();
    });

    /** Opens the test page at `origin` and runs `tryConnect` in it for each case. */
    async function fromPage(origin, cases) {
        const page = await browser.newPage();
        try {
            await page.goto(`${origin}/`);
            const results = [];
            for (const [url, transport, options] of cases) {
                results.push(await page.evaluate(([u, t, o]) => window.tryConnect(u, t, o), [url, transport, options ?? {}]));
            }
            return results;
        } finally {
            await page.close();
        }
    }

    test("a page from a listed origin connects over every transport, and calls and receives", { timeout: 30_000 }, async () => {
        assert.notEqual(new URL(listing.url).origin, allowed, "the page and the gateway are on different origins");
        const cases = TRANSPORTS.map((transport) => [`${listing.url}/hubs/cors-${transport}`, transport]);
        cases.push([`${listing.url}/hubs/cors-skip`, "WebSockets", { skipNegotiation: true }]);
        const results = await fromPage(allowed, cases);
        for (const [index, [, transport, options]] of cases.entries()) {
            const what = `${transport}${options ? " without negotiate" : ""}`;
            assert.deepEqual(results[index], { ok: true, echoed: `hello from ${allowed}`, broadcast: transport }, what);
        }
    });

    test("a page from an origin not listed fails on every transport, and the gateway's log says why", { timeout: 30_000 }, async () => {
        const cases = TRANSPORTS.map((transport) => [`${listing.url}/hubs/cors-foreign-${transport}`, transport]);
        // Without negotiate nothing but the WebSocket origin check stands in the way.
        cases.push([`${listing.url}/hubs/cors-foreign-skip`, "WebSockets", { skipNegotiation: true }]);
        const results = await fromPage(foreign, cases);
        for (const [index, [, transport, options]] of cases.entries()) {
            const what = `${transport}${options ? " without negotiate" : ""}`;
            assert.equal(results[index].ok, false, `${what} from ${foreign}: ${JSON.stringify(results[index])}`);
        }
        const reason = `origin ${foreign} is not in --cors-allowed-origins`;
        const logged = (prefix) => listing.logs().some((line) => line.includes(prefix) && line.includes(reason));
        await waitFor(() => logged("WebSocket upgrade refused with 403"), DEFAULT_WAIT_MS, `the gateway to log the refused WebSocket ("${reason}")`);
        await waitFor(() => logged("cross-origin request answered without CORS headers"), DEFAULT_WAIT_MS, `the gateway to log the negotiate it gave no CORS headers ("${reason}")`);
        const metrics = await (await fetch(`${listing.url}/metrics`)).text();
        assert.match(metrics, /^hubgate_connections_refused_total\{reason="origin"\} [1-9]/m, "the refusal is counted");
    });

    test("with * a page from any origin connects over every transport when it sends no credentials", { timeout: 30_000 }, async () => {
        const cases = TRANSPORTS.map((transport) => [`${star.url}/hubs/cors-star-${transport}`, transport, { withCredentials: false }]);
        const results = await fromPage(foreign, cases);
        for (const [index, [, transport]] of cases.entries()) {
            assert.deepEqual(results[index], { ok: true, echoed: `hello from ${foreign}`, broadcast: transport }, transport);
        }
    });
});
