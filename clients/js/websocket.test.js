'use strict';
// STOMP over WebSocket from Node: @stomp/stompjs over the `ws` package (ws-client.js)
// against stompbox's WebSocket listener, with stompit over TCP on the other side of each
// exchange, so each transport reads what the other wrote.
//
// The first tests use the broker clients/run-smoke.sh started (STOMP_PORT and STOMP_WS_URL).
// The restart test starts a broker of its own on fixed free ports (STOMPBOX_BIN), kills it
// with SIGKILL and starts it again on the same ports and data dir: stompjs must reconnect by
// itself, subscribe again in onConnect and get what the store kept.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { test, after } = require('node:test');

const { createClient, receipt } = require('./ws-client');
const { SmokeClient, fresh, withDeadline, TIMEOUT_MS } = require('./smoke-client');

const BROKER = process.env.STOMPBOX_BIN || path.join(__dirname, '..', '..', 'target', 'debug', 'stompbox');

function sharedWsUrl() {
  const url = process.env.STOMP_WS_URL;
  if (!url) {
    throw new Error('set STOMP_WS_URL to a running stompbox\'s WebSocket URL, e.g. '
      + 'ws://127.0.0.1:61614/stomp (clients/run-smoke.sh sets it)');
  }
  return url;
}

/** Polls `check` until it returns a truthy value; fails saying `what` after TIMEOUT_MS. */
async function until(check, what) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${TIMEOUT_MS} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

let receipts = 0;
const nextReceiptId = () => `r-${process.pid}-${++receipts}`;

/**
 * A stompjs client over ws, with what it received. Subscriptions are remembered and made
 * again in onConnect, as an application does, so they survive a reconnect.
 */
class WsPeer {
  constructor(url) {
    this.messages = [];
    this.connects = 0;
    this.closes = 0;
    this.errors = [];
    this.subscriptions = [];
    this.client = createClient(url, {
      reconnectDelay: 200,
      onConnect: (frame) => {
        this.connects += 1;
        this.version = frame.headers.version;
        for (const s of this.subscriptions) this._subscribe(s.destination, s.headers);
      },
      onWebSocketClose: () => { this.closes += 1; },
      onStompError: (frame) => this.errors.push(`${frame.headers.message}: ${frame.body}`),
    });
    this.client.activate();
  }

  /** Waits for the next CONNECTED (the first, or the one after `connects` so far). */
  connected(after = 0) {
    return until(() => this.connects > after, `stompjs CONNECTED #${after + 1} over WebSocket`);
  }

  /** SUBSCRIBE with a receipt, so the subscription exists when this resolves. */
  async subscribe(destination, headers = {}) {
    this.subscriptions.push({ destination, headers });
    const id = nextReceiptId();
    const got = receipt(this.client, id);
    this._subscribe(destination, { ...headers, receipt: id });
    await withDeadline(got, TIMEOUT_MS, `RECEIPT for SUBSCRIBE ${destination}`);
  }

  _subscribe(destination, headers) {
    this.client.subscribe(destination, (message) => this.messages.push(message), headers);
  }

  /** SEND (`params` as stompjs publish takes them) and wait for its RECEIPT. */
  async publish(params) {
    const id = nextReceiptId();
    const got = receipt(this.client, id);
    this.client.publish({ ...params, headers: { ...params.headers, receipt: id } });
    await withDeadline(got, TIMEOUT_MS, `RECEIPT for SEND to ${params.destination}`);
  }

  /** Waits until `n` messages for `destination` have arrived; returns them. */
  received(destination, n) {
    return until(() => {
      const got = this.messages.filter((m) => m.headers.destination === destination);
      return got.length >= n && got;
    }, `${n} MESSAGE(s) on ${destination} over WebSocket (have ${this.messages.length} in all)`);
  }

  close() {
    return this.client.deactivate();
  }
}

const opened = [];
async function open(make) {
  const c = await make();
  opened.push(c);
  return c;
}
after(() => Promise.allSettled(opened.map((c) => c.close())));

test('stompjs over WebSocket and stompit over TCP see each other\'s messages', async () => {
  const ws = await open(() => new WsPeer(sharedWsUrl()));
  await ws.connected();
  assert.equal(ws.version, '1.2', 'stompjs offers 1.2 and stompbox picks it');
  const tcp = await open(() => SmokeClient.open('1.2'));

  // WebSocket → TCP: each SEND receipted, received in order.
  const toTcp = fresh('queue', 'ws-to-tcp');
  await tcp.subscribe(toTcp, 'sub-ws', 'client-individual');
  for (let i = 0; i < 10; i++) {
    await ws.publish({ destination: toTcp, body: `from ws ${i}`, headers: { 'content-type': 'text/plain' } });
  }
  for (let i = 0; i < 10; i++) {
    const msg = await tcp.nextMessage(`from ws ${i}`);
    assert.equal(msg.body, `from ws ${i}`);
    assert.equal(msg.headers.destination, toTcp);
    tcp.ack(msg);
  }

  // TCP → WebSocket, a queue and a topic.
  const toWs = fresh('queue', 'tcp-to-ws');
  const topic = fresh('topic', 'tcp-to-ws');
  await ws.subscribe(toWs);
  await ws.subscribe(topic);
  for (let i = 0; i < 10; i++) await tcp.send(toWs, `from tcp ${i}`);
  await tcp.send(topic, 'news');
  const got = await ws.received(toWs, 10);
  assert.deepEqual(got.map((m) => m.body), Array.from({ length: 10 }, (_, i) => `from tcp ${i}`));
  assert.equal(new Set(got.map((m) => m.headers['message-id'])).size, 10, 'message-ids are distinct');
  assert.equal((await ws.received(topic, 1))[0].body, 'news');
  assert.deepEqual(ws.errors, []);
});

test('client-individual ACK over WebSocket: only the unacked message comes back', async () => {
  const queue = fresh('queue', 'ws-ack');
  const tcp = await open(() => SmokeClient.open('1.2'));
  for (const body of ['m0', 'm1', 'm2']) await tcp.send(queue, body, { persistent: 'true' });

  const ws = await open(() => new WsPeer(sharedWsUrl()));
  await ws.connected();
  await ws.subscribe(queue, { ack: 'client-individual' });
  const got = await ws.received(queue, 3);
  assert.deepEqual(got.map((m) => m.body), ['m0', 'm1', 'm2']);
  got[0].ack();
  // The RECEIPT of an ACK comes once its delete, and every earlier ACK's, is committed.
  const id = nextReceiptId();
  const acked = receipt(ws.client, id);
  got[2].ack({ receipt: id });
  await withDeadline(acked, TIMEOUT_MS, 'RECEIPT for ACK');
  await ws.close(); // DISCONNECT: m1, unacked, goes back to the queue

  // m1 is ahead of the sentinel; m0 and m2 would be too if their ACKs had been lost.
  await tcp.send(queue, 'sentinel');
  await tcp.subscribe(queue, 'sub-after', 'client-individual');
  const again = await tcp.nextMessage('m1 again');
  assert.equal(again.body, 'm1');
  assert.equal(again.headers.redelivered, 'true');
  tcp.ack(again);
  const sentinel = await tcp.nextMessage('sentinel');
  assert.equal(sentinel.body, 'sentinel');
  tcp.ack(sentinel);
});

test('a binary body (with NULs, not UTF-8) round trips between WebSocket and TCP', async () => {
  const bytes = Uint8Array.from({ length: 512 }, (_, i) => (i * 7) % 256); // 0x00 and 0xff included
  const ws = await open(() => new WsPeer(sharedWsUrl()));
  await ws.connected();
  const tcp = await open(() => SmokeClient.open('1.2'));
  const headers = { 'content-type': 'application/octet-stream' };

  // stompjs adds content-length to a binaryBody; the broker keeps the bytes as they are.
  const toTcp = fresh('queue', 'ws-binary');
  await tcp.subscribe(toTcp, 'sub-bin', 'client-individual');
  await ws.publish({ destination: toTcp, binaryBody: bytes, headers });
  const msg = await tcp.nextMessage('binary body over TCP');
  assert.equal(Number(msg.headers['content-length']), bytes.length); // stompit parses it
  assert.deepEqual(new Uint8Array(msg.bytes), bytes);
  tcp.ack(msg);

  // Back: the broker sends a body that is not UTF-8 as a binary WebSocket message.
  const toWs = fresh('queue', 'tcp-binary');
  await ws.subscribe(toWs);
  await tcp.send(toWs, Buffer.from(bytes), { ...headers, 'content-length': String(bytes.length) });
  const [back] = await ws.received(toWs, 1);
  assert.equal(back.headers['content-length'], String(bytes.length));
  assert.deepEqual(back.binaryBody, bytes);
});

// --- a broker of our own, restarted on the same ports -------------------------------------

/** `n` distinct free loopback ports, all held at once so they differ, then released. */
async function freePorts(n) {
  const servers = [];
  for (let i = 0; i < n; i++) {
    const s = net.createServer();
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    servers.push(s);
  }
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** Starts the broker with `args`; resolves once it prints its listening line. */
async function startBroker(args, logPath) {
  assert.ok(fs.existsSync(BROKER), `no broker binary at ${BROKER}: run \`cargo build\` or set STOMPBOX_BIN`);
  const log = fs.openSync(logPath, 'a');
  const child = spawn(BROKER, args, { stdio: ['ignore', 'pipe', log] });
  fs.closeSync(log);
  const lines = readline.createInterface({ input: child.stdout });
  const ready = new Promise((resolve, reject) => {
    lines.on('line', (line) => { if (line.startsWith('stompbox listening ')) resolve(line); });
    child.on('exit', (code, signal) => reject(new Error(
      `broker exited (${code ?? signal}) before listening:\n${fs.readFileSync(logPath, 'utf8').slice(-3000)}`)));
  });
  const line = await withDeadline(ready, 30000, 'the broker\'s "stompbox listening" line');
  return { child, line };
}

async function kill9(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

test('stompjs reconnects by itself after kill -9 and restart, and gets the persistent messages', { timeout: 120000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompbox-ws-restart-'));
  const [stompPort, adminPort, wsPort] = await freePorts(3);
  const args = ['serve', '--bind', `127.0.0.1:${stompPort}`, '--admin-bind', `127.0.0.1:${adminPort}`,
    '--ws-bind', `127.0.0.1:${wsPort}`, '--data-dir', path.join(dir, 'data')];
  const logPath = path.join(dir, 'broker.log');
  let broker = await startBroker(args, logPath);
  t.after(async () => {
    await kill9(broker.child);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  assert.match(broker.line, new RegExp(` ws=127\\.0\\.0\\.1:${wsPort}( |$)`));

  const queue = fresh('queue', 'ws-restart');
  const ws = new WsPeer(`ws://127.0.0.1:${wsPort}/stomp`);
  t.after(() => ws.close());
  await ws.connected();
  await ws.subscribe(queue, { ack: 'client-individual' });
  const tcp = await SmokeClient.open('1.2', { port: stompPort });
  // acked: taken and ACKed (with a RECEIPT) before the kill, so gone for good. before: taken
  // but not ACKed when the broker dies, so the store still has it.
  await tcp.send(queue, 'acked', { persistent: 'true' });
  await tcp.send(queue, 'before', { persistent: 'true' });
  await tcp.close();
  const first = await ws.received(queue, 2);
  assert.deepEqual(first.map((m) => m.body), ['acked', 'before']);
  const id = nextReceiptId();
  const acked = receipt(ws.client, id);
  first[0].ack({ receipt: id });
  await withDeadline(acked, TIMEOUT_MS, 'RECEIPT for ACK');

  const { connects, closes } = ws;
  await kill9(broker.child);
  await until(() => ws.closes > closes, 'stompjs to see its WebSocket close');
  ws.messages = [];
  broker = await startBroker(args, logPath);

  // No help from the test: stompjs retries every reconnectDelay and onConnect subscribes.
  await ws.connected(connects);
  const again = await ws.received(queue, 1);
  assert.equal(again[0].body, 'before', 'the unacked persistent message survives the kill');
  again[0].ack();
  const producer = await SmokeClient.open('1.2', { port: stompPort });
  t.after(() => producer.close());
  await producer.send(queue, 'after', { persistent: 'true' });
  const all = await ws.received(queue, 2);
  // Anything still stored (an ACKed message coming back) would be ahead of `after`.
  assert.deepEqual(all.map((m) => m.body), ['before', 'after']);
  all[1].ack();
  assert.deepEqual(ws.errors, []);
});
