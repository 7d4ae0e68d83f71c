// End-to-end test of the web console (src/admin/console.html) in headless Chromium.
//
// Starts target/debug/stompbox on port 0 with a temp data dir, opens the console that its admin
// endpoint serves at GET /, sends messages to a queue over a raw STOMP connection from node,
// and checks what an operator sees: the queue row and its depth, the connection, browsing the
// waiting messages page by page, and Purge (confirm dialog accepted) leaving depth 0 while the
// delivered, unacked message stays. Writes a screenshot to $CONSOLE_SCREENSHOT or
// /tmp/console.png.
//
// Run: `make test-console` (installs Chromium and playwright-core first), or
// `node --test tests/console/` after `make console-deps` and `cargo build`.
// Where Chromium is missing (`make console-deps` could not install it) the test fails saying
// so, as does any other missing piece (no broker binary, no playwright-core, a browser that
// will not start): a test that cannot run is never reported as passed.

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { startBroker, stopBroker, Stomp, waitText, waitCount, loadPlaywright, launch, WAIT_MS }
  from "./harness.mjs";

const SCREENSHOT = process.env.CONSOLE_SCREENSHOT || "/tmp/console.png";

test("console shows a broker's bridges: linked, forwarding, then failing when the peer goes", { timeout: 180_000 }, async () => {
  const chromium = await loadPlaywright();
  const queue = `/queue/console-net-${process.pid}`;
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "stompbox-chromium-"));
  const clients = [];
  let a;
  let b;
  let context;
  try {
    b = await startBroker('broker_name = "b"\n');
    a = await startBroker('broker_name = "a"\n\n[[network]]\nname = "to-b"\n' +
      `uri = "static:(tcp://${b.stomp})?initialReconnectDelay=100&maxReconnectDelay=500"\n` +
      `static_included = ["${queue}"]\ndemand = false\n`);
    context = await launch(chromium, userDataDir);
    const page = context.pages()[0] ?? await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(`http://${a.admin}/`);
    const row = `tr[data-bridge="to-b tcp://${b.stomp}"]`;
    await waitText(page, `${row} [data-field=state]`, "linked");
    assert.equal(await page.isVisible("#network"), true);
    await waitText(page, `${row} [data-field=peer_name]`, "b");
    await waitText(page, `${row} [data-field=routes]`, queue);
    await waitText(page, "#net-summary", "1 of 1 bridges linked");

    // Five persistent messages into a: the bridge forwards them to b, which stores them.
    const producer = await Stomp.connect(a.stomp);
    clients.push(producer);
    for (let i = 0; i < 5; i++) {
      const headers = { destination: queue, persistent: "true" };
      if (i === 4) headers.receipt = "last";
      producer.send("SEND", headers, `message ${i}`);
    }
    await producer.expect("RECEIPT");
    await waitText(page, `${row} [data-field=forwarded]`, "5");
    await waitText(page, `${row} [data-field=in_flight]`, "0");
    await waitText(page, `${row} [data-field=backlog]`, "0");

    // The peer goes: the bridge waits to link again, says why, and the next message waits here.
    await stopBroker(b);
    b = null;
    await page.waitForFunction((s) => ["waiting", "connecting"].includes(document.querySelector(s)?.textContent),
      `${row} [data-field=state]`, { timeout: WAIT_MS, polling: 100 });
    await page.waitForFunction((s) => (document.querySelector(s)?.textContent ?? "") !== "",
      `${row} [data-field=last_error]`, { timeout: WAIT_MS, polling: 100 });
    producer.send("SEND", { destination: queue, persistent: "true", receipt: "stranded" }, "waits");
    await producer.expect("RECEIPT");
    await waitText(page, "#net-summary", "0 of 1 bridges linked");
    await waitText(page, `${row} [data-field=backlog]`, "1");
    await waitText(page, `${row} [data-field=routes]`, queue);
    await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-network.png"), fullPage: true });
    assert.deepEqual(pageErrors, [], "no script errors on the page");
  } catch (e) {
    for (const broker of [a, b]) {
      if (broker) console.error(`--- broker log (tail) ---\n${broker.logTail?.() ?? ""}`);
    }
    throw e;
  } finally {
    for (const c of clients) c.close();
    if (context) await context.close().catch(() => {});
    for (const broker of [a, b]) if (broker) await stopBroker(broker);
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
});

test("console shows a queue, browses it page by page and purges it", { timeout: 180_000 }, async (t) => {
  const chromium = await loadPlaywright();
  const queue = `/queue/console-${process.pid}`;
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "stompbox-chromium-"));
  const clients = [];
  let broker;
  let context;
  try {
    broker = await startBroker();
    context = await launch(chromium, userDataDir);
    const page = context.pages()[0] ?? await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));

    await page.goto(`http://${broker.admin}/`);
    assert.equal(await page.title(), "stompbox");
    await waitText(page, "#role", "master");
    await waitText(page, "#epoch", "1");
    assert.equal(await page.isVisible("#network"), false, "no bridges, no network section");

    // 25 persistent messages; the receipt on the last one means all are in.
    const producer = await Stomp.connect(broker.stomp, { "client-id": "console-producer" });
    clients.push(producer);
    for (let i = 0; i < 25; i++) {
      const headers = { destination: queue, persistent: "true", "content-type": "text/plain", "x-seq": i };
      if (i === 24) headers.receipt = "last";
      producer.send("SEND", headers, `message ${i}`);
    }
    assert.equal((await producer.expect("RECEIPT")).headers["receipt-id"], "last");
    // A topic subscriber, so the page shows more than one kind of destination.
    const listener = await Stomp.connect(broker.stomp, { "client-id": "console-listener" });
    clients.push(listener);
    listener.send("SUBSCRIBE", { destination: "/topic/console-events", id: "t", receipt: "sub-t" });
    await listener.expect("RECEIPT");

    const row = `tr[data-destination="${queue}"]`;
    await waitText(page, `${row} [data-field=depth]`, "25");
    await waitText(page, `${row} [data-field=consumers]`, "0");
    await waitText(page, `${row} [data-field=enqueued]`, "25");
    await waitText(page, `${row} [data-field=kind]`, "queue");
    await waitText(page, 'tr[data-destination="/topic/console-events"] [data-field=consumers]', "1");
    // Both connections, with their client-ids and subscription counts.
    await waitCount(page, "#connections tbody tr", 2);
    const connections = await page.$$eval("#connections tbody tr", (rows) => rows.map((r) =>
      Object.fromEntries([...r.querySelectorAll("[data-field]")].map((td) => [td.dataset.field, td.textContent]))));
    const byClient = Object.fromEntries(connections.map((c) => [c.client_id, c]));
    assert.equal(byClient["console-producer"]?.version, "1.2");
    assert.equal(byClient["console-producer"]?.subscriptions, "0");
    assert.equal(byClient["console-listener"]?.subscriptions, "1");
    assert.match(byClient["console-listener"]?.peer ?? "", /^127\.0\.0\.1:\d+$/);

    // Browse: the first page holds messages 0..19 in order, the next 20..24.
    await page.click(`${row} [data-action=browse]`);
    await waitCount(page, "#messages tbody tr", 20);
    assert.equal(await page.isVisible("#browse"), true);
    assert.equal(await page.textContent("#messages tbody tr:first-child td.body"), "message 0");
    const headers = await page.textContent("#messages tbody tr:first-child td.headers");
    assert.match(headers, /content-type: text\/plain/);
    assert.match(headers, /x-seq: 0/);
    await page.click("#next");
    await waitCount(page, "#messages tbody tr", 5);
    assert.equal(await page.textContent("#messages tbody tr:first-child td.body"), "message 20");
    assert.equal(await page.isDisabled("#next"), true);
    await page.click("#prev");
    await waitCount(page, "#messages tbody tr", 20);

    // A consumer takes one message and holds it unacked (prefetch 1, client ack).
    const consumer = await Stomp.connect(broker.stomp, { "client-id": "console-consumer" });
    clients.push(consumer);
    consumer.send("SUBSCRIBE", { destination: queue, id: "q", ack: "client-individual", "activemq.prefetchSize": "1" });
    assert.equal((await consumer.expect("MESSAGE")).body, "message 0");
    await waitText(page, `${row} [data-field=depth]`, "24");
    await waitText(page, `${row} [data-field=unacked]`, "1");
    await waitText(page, `${row} [data-field=consumers]`, "1");
    await waitCount(page, "#messages tbody tr", 20);
    assert.equal(await page.textContent("#messages tbody tr:first-child td.body"), "message 1");
    await waitCount(page, "#connections tbody tr", 3);
    await page.waitForFunction((s) => /^\d+\.\d$/.test(document.querySelector(s)?.textContent ?? ""),
      `${row} [data-field=in_rate]`, { timeout: WAIT_MS });

    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Purge, accepting the confirm dialog: the waiting messages go, the unacked one stays.
    const dialogs = [];
    page.once("dialog", (d) => { dialogs.push(d.message()); d.accept(); });
    await page.click(`${row} [data-action=purge]`);
    await waitText(page, `${row} [data-field=depth]`, "0");
    assert.equal(dialogs.length, 1, "purge asks for confirmation");
    assert.match(dialogs[0], new RegExp(`24 waiting messages of ${queue}`));
    await waitText(page, "#notice", `Purged 24 messages from ${queue}.`);
    await waitText(page, `${row} [data-field=unacked]`, "1");
    await waitCount(page, "#messages tbody tr", 0);
    assert.equal(await page.isVisible("#messages-empty"), true);

    // Dismissing the dialog purges nothing.
    producer.send("SEND", { destination: queue, receipt: "again" }, "after purge");
    await producer.expect("RECEIPT");
    await waitText(page, `${row} [data-field=depth]`, "1");
    page.once("dialog", (d) => d.dismiss());
    await page.click(`${row} [data-action=purge]`);
    await new Promise((r) => setTimeout(r, 1500));
    await waitText(page, `${row} [data-field=depth]`, "1");

    assert.deepEqual(pageErrors, [], "no script errors on the page");
  } catch (e) {
    if (broker) console.error(`--- broker log (tail) ---\n${broker.logTail?.() ?? ""}`);
    throw e;
  } finally {
    for (const c of clients) c.close();
    if (context) await context.close().catch(() => {});
    if (broker) await stopBroker(broker);
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
});
