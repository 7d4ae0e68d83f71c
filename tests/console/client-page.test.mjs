// End-to-end test of the web client page (clients/js/browser/index.html, served by the admin
// endpoint at GET /client/) in headless Chromium: STOMP over WebSocket from a real browser.
//
// Starts a broker on ports it picks that refuses anonymous CONNECTs and knows one user, opens
// http://ADMIN/client/?ws=ws://WS/stomp, logs in with a wrong passcode (refused, shown, not
// retried), then with the right one, subscribes, and checks both directions against a raw
// STOMP client over TCP. Then kills the
// broker (SIGKILL) and starts it again on the same ports and data dir: the page must show
// "reconnecting", then "connected" again by itself, subscribe again, and show a message sent
// after the restart. The WebSocket handshake is watched through the DevTools protocol, to
// check the Origin policy lets the page in: it is served from the admin port of 127.0.0.1,
// and the WebSocket listener on 127.0.0.1 admits its own host on any port
// (docs/transports.md). Writes a screenshot to $CONSOLE_SCREENSHOT with -client before .png
// (default /tmp/console-client.png).
//
// Run as console.test.mjs is: `make test-console`, or `node --test tests/console/`. Where
// Chromium is missing the test fails saying so.

import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { startBroker, stopBroker, killBroker, passwordHash, Stomp, waitText, waitCount, loadPlaywright,
  launch, WAIT_MS } from "./harness.mjs";

const SCREENSHOT = (process.env.CONSOLE_SCREENSHOT || "/tmp/console.png").replace(/\.png$/, "-client.png");

// The one user of the broker; made up for this run.
const LOGIN = "app";
const PASSCODE = `page-${crypto.randomBytes(12).toString("hex")}`;
const AUTH = { login: LOGIN, passcode: PASSCODE };
// Longer than the page's RECONNECT_MS (1 s): a retry of a refused login would show in it.
const RETRY_WINDOW_MS = 2500;

// The received list's cell `field` of the row of message `id`.
const cell = (id, field) => `#messages tbody tr[data-message-id="${id}"] td[data-field=${field}]`;

test("web client page talks STOMP over WebSocket and reconnects after a broker restart", { timeout: 180_000 }, async () => {
  const chromium = await loadPlaywright();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "stompbox-chromium-"));
  const clients = [];
  let broker;
  let context;
  try {
    broker = await startBroker("[security]\nanonymous = false\n" +
      `users = [{ login = "${LOGIN}", password_hash = '${passwordHash(PASSCODE)}', groups = ["app"] }]\n`);
    assert.ok(broker.ws, "the listening line names the WebSocket listener (ws=…)");
    const wsUrl = `ws://${broker.ws}/stomp`;
    context = await launch(chromium, userDataDir);
    const page = context.pages()[0] ?? await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));

    // Every WebSocket handshake the page makes: the request's Origin, the answer's status.
    const handshakes = new Map();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    cdp.on("Network.webSocketWillSendHandshakeRequest", ({ requestId, request }) =>
      handshakes.set(requestId, { origin: request.headers.Origin ?? request.headers.origin }));
    cdp.on("Network.webSocketHandshakeResponseReceived", ({ requestId, response }) => {
      const h = handshakes.get(requestId) ?? {};
      const headers = Object.fromEntries(Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v]));
      handshakes.set(requestId, { ...h, status: response.status, protocol: headers["sec-websocket-protocol"] });
    });

    await page.goto(`http://${broker.admin}/client/?ws=${encodeURIComponent(wsUrl)}`);
    assert.equal(await page.title(), "stompbox web client");
    assert.equal(await page.inputValue("#url"), wsUrl, "?ws= sets the URL");
    await waitText(page, "#status", "disconnected");

    // A wrong passcode: the broker's ERROR shows, and the page stops instead of retrying.
    await page.fill("#login", LOGIN);
    await page.fill("#passcode", `${PASSCODE}-wrong`);
    await page.click("#connect");
    await page.waitForFunction(() => /ERROR authentication failed/.test(document.querySelector("#last-error").textContent),
      null, { timeout: WAIT_MS, polling: 100 });
    await waitText(page, "#status", "disconnected");
    assert.equal(await page.isEnabled("#connect"), true, "Connect can be pressed again");
    const refused = handshakes.size;
    await page.waitForTimeout(RETRY_WINDOW_MS);
    assert.equal(handshakes.size, refused, "a refused login is not retried");
    assert.doesNotMatch(await page.textContent("#last-error"), new RegExp(PASSCODE), "the passcode is not shown");

    await page.fill("#passcode", PASSCODE);
    await page.click("#connect");
    await waitText(page, "#status", "connected");
    assert.match(await page.textContent("#session"), /^STOMP 1\.2 · /);
    // The refused login's handshake, then this one's: the WebSocket itself was never refused.
    const accepted = [...handshakes.values()].filter((h) => h.status === 101);
    assert.equal(accepted.length, 2, `two accepted handshakes: ${JSON.stringify([...handshakes.values()])}`);
    assert.equal(accepted[1].origin, `http://${broker.admin}`, "the page's origin is the admin endpoint's");
    assert.equal(accepted[1].protocol, "v12.stomp");

    // Node → page: a TCP producer's message shows up in the list.
    await page.fill("#sub-destination", "/queue/browser");
    await page.click("#subscribe");
    await waitCount(page, '#subscriptions li[data-destination="/queue/browser"]', 1);
    const producer = await Stomp.connect(broker.stomp, AUTH);
    clients.push(producer);
    producer.send("SEND", { destination: "/queue/browser", "content-type": "text/plain", receipt: "p1" },
      "hello from node");
    await producer.expect("RECEIPT");
    await waitCount(page, "#messages tbody tr", 1);
    const firstId = await page.getAttribute("#messages tbody tr", "data-message-id");
    assert.ok(firstId, "the row carries the message-id");
    await waitText(page, cell(firstId, "body"), "hello from node");
    await waitText(page, cell(firstId, "destination"), "/queue/browser");
    await waitText(page, cell(firstId, "message-id"), firstId);
    await waitText(page, "#message-count", "1 message");

    // Page → node: the page's SEND reaches a TCP consumer, and its RECEIPT comes back.
    const consumer = await Stomp.connect(broker.stomp, AUTH);
    clients.push(consumer);
    consumer.send("SUBSCRIBE", { destination: "/queue/from-browser", id: "c", ack: "auto", receipt: "s1" });
    await consumer.expect("RECEIPT");
    await page.fill("#send-destination", "/queue/from-browser");
    await page.fill("#send-body", "hello from chromium");
    await page.check("#send-persistent");
    await page.click("#send");
    const fromPage = await consumer.expect("MESSAGE");
    assert.equal(fromPage.body, "hello from chromium");
    assert.equal(fromPage.headers.destination, "/queue/from-browser");
    await waitText(page, "#send-result", "sent 1 · 1 receipted");

    // kill -9 and the same broker back on the same ports: the page reconnects by itself, logging
    // in again (the restarted broker has the same config).
    await killBroker(broker);
    await waitText(page, "#status", "reconnecting");
    await page.waitForFunction(() => /closed \(code \d+/.test(document.querySelector("#last-error").textContent),
      null, { timeout: WAIT_MS, polling: 100 });
    for (const c of clients.splice(0)) c.close();
    broker = await startBroker(null, { restart: broker });
    await waitText(page, "#status", "connected");
    const afterRestart = [...handshakes.values()].filter((h) => h.status === 101);
    assert.equal(afterRestart.length, 3, "one more accepted handshake");
    assert.equal(afterRestart[2].origin, `http://${broker.admin}`);

    // The subscription was made again on the new connection.
    const again = await Stomp.connect(broker.stomp, AUTH);
    clients.push(again);
    again.send("SEND", { destination: "/queue/browser", receipt: "p2" }, "after the restart");
    await again.expect("RECEIPT");
    await waitCount(page, "#messages tbody tr", 2);
    const newestId = await page.getAttribute("#messages tbody tr:first-child", "data-message-id");
    await waitText(page, cell(newestId, "body"), "after the restart");
    await waitText(page, "#message-count", "2 messages");

    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Disconnect stops for good.
    await page.click("#disconnect");
    await waitText(page, "#status", "disconnected");
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
