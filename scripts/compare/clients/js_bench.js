#!/usr/bin/env node
'use strict';
// Node clients' throughput and latency for scripts/bench.sh: one producer connection and one
// consumer connection (auto ack) in this one process, to one queue, with either
//   --client stompit   STOMP over TCP (stompit), --port is the broker's STOMP port, or
//   --client stompjs   STOMP over WebSocket (@stomp/stompjs over ws), --port is the broker's
//                      WebSocket port (ws://HOST:PORT/, subprotocols v12/v11/v10.stomp).
//
//   node scripts/compare/clients/js_bench.js --client stompit --port 61613 --count 20000 \
//       [--mode throughput|persistent|latency] [--size 256] [--broker-pid PID]
//
// The same contract as py_bench.py (read its docstring): the modes, the timed window (first
// SEND until the consumer has the last message) and the one JSON line with msg/s, this
// process's CPU seconds (process.cpuUsage: user + sys, every thread) and the broker's.
//
// Node's writes do not block, so the producer waits as a blocking socket would: stompit
// queues whole frames and writes one at a time, so at most 256 frames may wait for their
// write to be flushed; with ws, the producer waits for 'drain' whenever the socket's buffer
// is over its high-water mark. Loaded from clients/js/node_modules (make clients-deps).

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');

const CLIENTS_JS = path.join(__dirname, '../../../clients/js');
const clientsRequire = createRequire(path.join(CLIENTS_JS, 'package.json'));
// stompit: frames queued for the socket before the producer waits (see the top).
const STOMPIT_WINDOW = 256;

function parseArgs(argv) {
  const opts = {
    client: 'stompit', host: '127.0.0.1', port: 0, destination: '/queue/bench.clients.js',
    count: 20000, size: 256, mode: 'throughput', brokerPid: 0, login: undefined,
    passcode: undefined, timeout: 30,
  };
  const names = {
    '--client': 'client', '--host': 'host', '--port': 'port', '--destination': 'destination',
    '--count': 'count', '--size': 'size', '--mode': 'mode', '--broker-pid': 'brokerPid',
    '--login': 'login', '--passcode': 'passcode', '--timeout': 'timeout',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) throw new Error(`js_bench.js: bad argument ${argv[i]}`);
    opts[key] = typeof opts[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!opts.port) throw new Error('js_bench.js: --port is required');
  if (!['stompit', 'stompjs'].includes(opts.client)) throw new Error('--client stompit|stompjs');
  if (!['throughput', 'persistent', 'latency'].includes(opts.mode)) throw new Error('--mode');
  return opts;
}

function version(pkg) {
  const file = path.join(CLIENTS_JS, 'node_modules', pkg, 'package.json');
  return JSON.parse(fs.readFileSync(file, 'utf8')).version;
}

/** stompit over TCP: connect, send (returns a promise when the producer should wait),
 * sendWithReceipt, subscribe, disconnect. */
class Stompit {
  static describe() {
    return { client: `stompit ${version('stompit')} (Node ${process.versions.node})`,
      transport: 'tcp' };
  }

  static connect(opts) {
    const stompit = clientsRequire('stompit');
    const connectHeaders = { host: 'localhost', 'accept-version': '1.2', 'heart-beat': '0,0' };
    if (opts.login !== undefined) {
      Object.assign(connectHeaders, { login: opts.login, passcode: opts.passcode });
    }
    return new Promise((resolve, reject) => {
      stompit.connect({ host: opts.host, port: opts.port, connectHeaders }, (err, client) => {
        if (err) {
          reject(err);
          return;
        }
        // stompit turns Nagle off only with outgoing heart-beats; without, a frame written in
        // three pieces (headers, body, NUL) waits for the broker's delayed ACK (~40 ms) when
        // the producer waits for a RECEIPT. ws and the stomp gem turn it off by default.
        client.getTransportSocket().setNoDelay(true);
        resolve(new Stompit(client));
      });
    });
  }

  constructor(client) {
    this.client = client;
    this.inflight = 0;
    this.wake = null;
    this.failed = new Promise((_, reject) => client.on('error', reject));
    this.failed.catch(() => {});
  }

  send(headers, body) {
    const frame = this.client.send(headers);
    this.inflight++;
    frame.end(body, () => {
      this.inflight--;
      if (this.wake && this.inflight <= STOMPIT_WINDOW / 2) {
        const wake = this.wake;
        this.wake = null;
        wake();
      }
    });
    if (this.inflight < STOMPIT_WINDOW) return null;
    return new Promise((resolve) => { this.wake = resolve; });
  }

  sendWithReceipt(headers, body) {
    return new Promise((resolve) => this.client.send(headers, { onReceipt: resolve }).end(body));
  }

  /** Resolves once the broker has the subscription: a RECEIPT on a frame sent after it. */
  subscribe(destination, onMessage) {
    this.client.subscribe({ destination, id: '1', ack: 'auto' }, (err, message) => {
      if (err) return;
      message.readString('utf-8', (e) => { if (!e) onMessage(message.headers); });
    });
    this.client.sendFrame('BEGIN', { transaction: 'subscribed' }).end();
    return new Promise((resolve) => {
      this.client.sendFrame('ABORT', { transaction: 'subscribed' }, { onReceipt: resolve }).end();
    });
  }

  disconnect() {
    return new Promise((resolve) => this.client.disconnect(() => resolve()));
  }
}

/** @stomp/stompjs over a ws WebSocket: the same five operations. */
class StompJs {
  static describe() {
    return { client: `@stomp/stompjs ${version('@stomp/stompjs')} over ws ${version('ws')}`
      + ` (Node ${process.versions.node})`, transport: 'ws' };
  }

  static connect(opts) {
    const { Client } = clientsRequire('@stomp/stompjs');
    const WebSocket = clientsRequire('ws');
    const url = `ws://${opts.host}:${opts.port}/`;
    return new Promise((resolve, reject) => {
      const client = new Client({
        // No permessage-deflate: stompbox does not offer it, and it would cost CPU here.
        webSocketFactory: () => new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp'],
          { perMessageDeflate: false }),
        connectHeaders: opts.login === undefined ? { host: 'localhost' }
          : { host: 'localhost', login: opts.login, passcode: opts.passcode },
        heartbeatIncoming: 0,
        heartbeatOutgoing: 0,
        reconnectDelay: 0,
        debug: () => {},
      });
      const wrapper = new StompJs(client);
      client.onConnect = () => resolve(wrapper);
      client.onStompError = (frame) => {
        const err = new Error(`ERROR frame: ${frame.headers.message}`);
        wrapper.fail(err);
        reject(err);
      };
      client.onWebSocketError = () => {
        const err = new Error(`WebSocket error on ${url}`);
        wrapper.fail(err);
        reject(err);
      };
      client.onWebSocketClose = (ev) => wrapper.fail(new Error(`WebSocket closed (${ev.code})`));
      client.activate();
    });
  }

  constructor(client) {
    this.client = client;
    this.nextReceipt = 1;
    this.failed = new Promise((_, reject) => { this.fail = reject; });
    this.failed.catch(() => {});
  }

  send(headers, body) {
    const { destination, ...rest } = headers;
    this.client.publish({ destination, headers: rest, body });
    // ws writes straight to the net.Socket (no permessage-deflate queue).
    const socket = this.client.webSocket._socket;
    if (!socket.writableNeedDrain) return null;
    return new Promise((resolve) => socket.once('drain', resolve));
  }

  sendWithReceipt(headers, body) {
    const receipt = `r${this.nextReceipt++}`;
    return new Promise((resolve) => {
      this.client.watchForReceipt(receipt, () => resolve());
      const { destination, ...rest } = headers;
      this.client.publish({ destination, headers: { ...rest, receipt }, body });
    });
  }

  subscribe(destination, onMessage) {
    return new Promise((resolve) => {
      this.client.watchForReceipt('sub', () => resolve());
      this.client.subscribe(destination, (message) => onMessage(message.headers),
        { id: '1', ack: 'auto', receipt: 'sub' });
    });
  }

  async disconnect() {
    this.client.onWebSocketClose = () => {};
    await this.client.deactivate();
  }
}

/** utime + stime of PID in seconds from /proc/PID/stat; null without a PID. */
function brokerCpuS(pid, clkTck) {
  if (!pid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'ascii');
    // After the command's closing parenthesis, field 3 (state) is index 0: utime is field
    // 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 1).trim().split(/\s+/);
    return (Number(fields[11]) + Number(fields[12])) / clkTck;
  } catch {
    return null;
  }
}

function withTimeout(promise, seconds, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${seconds} s`)),
      seconds * 1000);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

async function run(opts, Impl) {
  let clkTck = 100;
  try {
    clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'ascii' }).trim()) || 100;
  } catch { /* keep 100, Linux's USER_HZ */ }
  const consumerConn = await Impl.connect(opts);
  const producer = await Impl.connect(opts);
  const latency = opts.mode === 'latency';
  const rttsNs = [];
  let received = 0;
  let arrived = null; // resolves when the message in flight (latency) or the last arrives
  let arrivedResolve = null;
  let lastAt = Date.now();
  const expectArrival = () => {
    arrived = new Promise((resolve) => { arrivedResolve = resolve; });
  };
  expectArrival();
  await withTimeout(consumerConn.subscribe(opts.destination, (headers) => {
    if (latency) rttsNs.push(process.hrtime.bigint() - BigInt(headers.ts));
    received++;
    lastAt = Date.now();
    if (latency || received >= opts.count) arrivedResolve();
  }), opts.timeout, 'RECEIPT for SUBSCRIBE');
  const failed = Promise.race([consumerConn.failed, producer.failed]);

  const body = 'x'.repeat(opts.size);
  const dest = opts.destination;
  const cpu0 = process.cpuUsage();
  const broker0 = brokerCpuS(opts.brokerPid, clkTck);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < opts.count; i++) {
    if (opts.mode === 'throughput') {
      const wait = producer.send({ destination: dest }, body);
      if (wait) await Promise.race([wait, failed]);
    } else if (opts.mode === 'persistent') {
      await Promise.race([withTimeout(producer.sendWithReceipt(
        { destination: dest, persistent: 'true' }, body), opts.timeout, `RECEIPT ${i}`), failed]);
    } else {
      expectArrival();
      producer.send({ destination: dest, ts: String(process.hrtime.bigint()) }, body);
      await Promise.race([withTimeout(arrived, opts.timeout, `message ${i}`), failed]);
    }
  }
  const sendS = Number(process.hrtime.bigint() - t0) / 1e9;
  // Wait for the last message while messages keep arriving.
  for (;;) {
    if (received >= opts.count) break;
    const tick = new Promise((resolve) => setTimeout(resolve, 500));
    await Promise.race([arrived, tick, failed]);
    if (received < opts.count && Date.now() - lastAt > opts.timeout * 1000) break;
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const broker1 = brokerCpuS(opts.brokerPid, clkTck);
  await Promise.race([Promise.all([producer.disconnect(), consumerConn.disconnect()]),
    new Promise((resolve) => setTimeout(resolve, 2000))]);
  if (received < opts.count) {
    throw new Error(`received ${received} of ${opts.count}: nothing arrived for ${opts.timeout} s`);
  }
  const res = {
    received, wall_s: round(wall, 4), send_s: round(sendS, 4),
    msg_per_s: round(received / wall, 1), client_user_s: round(cpu.user / 1e6, 3),
    client_sys_s: round(cpu.system / 1e6, 3),
    client_cpu_s: round((cpu.user + cpu.system) / 1e6, 3),
    broker_cpu_s: broker0 === null || broker1 === null ? null : round(broker1 - broker0, 3),
  };
  if (rttsNs.length) {
    const us = rttsNs.map((ns) => Number(ns) / 1000).sort((a, b) => a - b);
    res.latency_p50_us = round(us[Math.floor(us.length / 2)], 1);
    res.latency_p99_us = round(us[Math.min(us.length - 1, Math.floor(us.length * 0.99))], 1);
  }
  return res;
}

function round(v, digits) {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const Impl = opts.client === 'stompjs' ? StompJs : Stompit;
  const out = { ...Impl.describe(), mode: opts.mode, count: opts.count, size: opts.size };
  try {
    Object.assign(out, await run(opts, Impl));
  } catch (e) {
    out.failed = `${e.name}: ${e.message}`;
    console.log(JSON.stringify(out));
    process.exit(1);
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

main();
