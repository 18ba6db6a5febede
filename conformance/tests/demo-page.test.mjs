// The demo chat page (`GET /`, gateway/assets/demo) in a real browser: headless Chromium driven
// by playwright-core. Two gateway nodes share a Redis backplane; page A is opened on node A's
// `/`, page B on node B's `/`; both join the same room, and each page shows the other's
// message, with the sender's name and node. Screenshots of both pages are saved in
// conformance/artifacts/ (gitignored) and their paths printed.
//
// Chromium is Debian's `chromium` package (scripts/test-all installs it); HUBGATE_CHROMIUM
// overrides its path.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { DEFAULT_WAIT_MS, startGateway, startRedis, waitReady } from "./harness.mjs";

const CHROMIUM = process.env.HUBGATE_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = resolve(dirname(fileURLToPath(import.meta.url)), "../artifacts");
const ROOM = "demo-room";

describe("the demo page at / in headless Chromium, two nodes on Redis", () => {
    let redis;
    let browser;
    const nodes = [];
    const pages = [];
    /** Uncaught exceptions and console errors, per page. */
    const problems = new Map();

    before(async () => {
        redis = await startRedis();
        for (const id of ["node-a", "node-b"]) {
            nodes.push(await startGateway(["--backplane", "redis", "--redis-url", redis.url, "--node-id", id]));
        }
        await Promise.all(nodes.map(waitReady));
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            // Chromium's sandbox cannot start as root (CI containers); the page is our own.
            args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
        });
    });

    afterEach((t) => {
        if (!t.passed) {
            for (const node of nodes) {
                node.dumpLogs(`test failed: ${t.name}`);
            }
        }
    });

    after(async () => {
        await browser?.close();
        await Promise.all(nodes.map((node) => node.stop()));
        redis?.stop();
    });

    /** Opens the demo page on `node`, joins ROOM as `name` and waits until the page says so. */
    async function openAndJoin(node, name) {
        const page = await browser.newPage({ viewport: { width: 760, height: 640 } });
        const seen = [];
        problems.set(name, seen);
        page.on("pageerror", (error) => seen.push(`uncaught: ${error.message}`));
        page.on("console", (message) => message.type() === "error" && seen.push(`console: ${message.text()}`));
        page.setDefaultTimeout(DEFAULT_WAIT_MS);
        await page.goto(`${node.url}/`);
        await page.locator("#join:enabled").waitFor();
        await page.fill("#name", name);
        await page.fill("#room", ROOM);
        await page.click("#join");
        await page.locator("#messages li.notice", { hasText: `You joined “${ROOM}”` }).waitFor();
        pages.push(page);
        return page;
    }

    /** Sends `text` from `page` and waits until its input is cleared (the call completed). */
    async function say(page, text) {
        await page.fill("#text", text);
        await page.click("#send");
        await page.waitForFunction(() => document.getElementById("text").value === "");
    }

    test("page A on node A and page B on node B join one room and see each other's messages", { timeout: 30_000 }, async () => {
        const [nodeA, nodeB] = nodes;
        const pageA = await openAndJoin(nodeA, "alice");
        const pageB = await openAndJoin(nodeB, "bob");
        assert.equal(await pageA.textContent("#node"), "node-a", "page A learnt its node from its connection id");
        assert.equal(await pageB.textContent("#node"), "node-b");

        await say(pageA, "hello from A");
        const onB = pageB.locator("#messages li.message", { hasText: "hello from A" });
        await onB.waitFor();
        assert.equal(await onB.textContent(), "alice @node-a: hello from A", "sender and node shown");

        await say(pageB, "hi from B");
        const onA = pageA.locator("#messages li.message", { hasText: "hi from B" });
        await onA.waitFor();
        assert.equal(await onA.textContent(), "bob @node-b: hi from B");

        // Each page also got its own message (SendToGroup includes the sender), in order.
        const lines = async (page) => page.locator("#messages li.message").allTextContents();
        const expected = ["alice @node-a: hello from A", "bob @node-b: hi from B"];
        assert.deepEqual(await lines(pageA), expected);
        assert.deepEqual(await lines(pageB), expected);

        mkdirSync(ARTIFACTS, { recursive: true });
        for (const [page, file] of [[pageB, "demo-page.png"], [pageA, "demo-page-node-a.png"]]) {
            const path = resolve(ARTIFACTS, file);
            await page.screenshot({ path, fullPage: true });
            console.log(`screenshot: ${path}`);
        }
        for (const [name, seen] of problems) {
            assert.deepEqual(seen, [], `${name}'s page had no errors`);
        }
    });
});
