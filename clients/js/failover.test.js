'use strict';
// Failover test: stompit's ConnectFailover against a master/standby pair (clients/pair.sh,
// which reads STOMPBOX_BIN). The master is killed with SIGKILL while FailoverProducer streams
// persistent receipted SENDs; the producer reconnects to the standby, which has taken over
// the shared store, and resends what had no RECEIPT. Every message must then be on the
// standby's queue, and only a resent message may be there twice.

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { test } = require('node:test');

const { FailoverProducer } = require('./failover-producer');
const { SmokeClient, fresh, HOST, TIMEOUT_MS } = require('./smoke-client');

const PAIR = path.join(__dirname, '..', 'pair.sh');
const COUNT = 2000;
// Receipted SENDs before the master is killed.
const KILL_AFTER = 500;

/**
 * Starts a pair in a fresh temp dir; returns pair.env (numbers, and the user both brokers let
 * in as strings: STOMP_LOGIN, STOMP_PASSCODE) and a stop function.
 */
function startPair() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stompbox-pair-js-'));
  const dir = path.join(tmp, 'pair');
  const stop = () => {
    try {
      execFileSync(PAIR, ['stop', dir], { stdio: 'ignore' });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  };
  try {
    execFileSync(PAIR, ['start', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    stop();
    throw new Error(`clients/pair.sh start failed: ${e.stderr || e.message}`);
  }
  const env = {};
  for (const line of fs.readFileSync(path.join(dir, 'pair.env'), 'utf8').trim().split('\n')) {
    const [key, value] = line.split(/=(.*)/);
    env[key] = key.startsWith('STOMP_') ? value : Number(value);
  }
  return { env, stop };
}

test('kill -9 of the master under receipted persistent SENDs loses no message', { timeout: 60000 }, async (t) => {
  const { env, stop } = startPair();
  t.after(stop);
  const destination = fresh('queue', 'failover');
  const uri = `failover:(stomp://${HOST}:${env.A_PORT},stomp://${HOST}:${env.B_PORT})`
    + '?initialReconnectDelay=20&maxReconnectDelay=1000&maxReconnects=50&randomize=false';
  // ConnectFailover sends these on every server's CONNECT, so the reconnect logs in too.
  const auth = { login: env.STOMP_LOGIN, passcode: env.STOMP_PASSCODE };
  const connectHeaders = { host: 'localhost', 'accept-version': '1.2', ...auth };
  const producer = new FailoverProducer(uri, { connectHeaders, window: 20, timeoutMs: TIMEOUT_MS });
  t.after(() => producer.close());
  await producer.start();

  let killedAfter = null;
  for (let i = 0; i < COUNT; i++) {
    await producer.publish(destination, i, `failover message ${i}`);
    if (killedAfter === null && producer.stats.receipted >= KILL_AFTER) {
      killedAfter = producer.stats.receipted;
      process.kill(env.A_PID, 'SIGKILL');
    }
  }
  await producer.flush();
  await producer.publish(destination, 'sentinel', 'sentinel');
  await producer.flush();
  const stats = { ...producer.stats };
  assert.ok(killedAfter !== null && killedAfter < COUNT, 'the master was killed only after the last SEND');
  assert.ok(stats.connects >= 2, `never reconnected: ${JSON.stringify(stats)}`);
  assert.equal(stats.receipted, COUNT + 1);

  // Everything sent before the sentinel is ahead of it on the queue, so reading up to it reads
  // all; what follows would be a stray copy.
  const consumer = await SmokeClient.open('1.2', { port: env.B_PORT, auth });
  t.after(() => consumer.close());
  await consumer.subscribe(destination, 'sub-failover', 'client-individual');
  const copies = new Map();
  const marked = new Map();
  for (;;) {
    const msg = await consumer.nextMessage(`message ${copies.size} of ${COUNT} on the standby`);
    consumer.ack(msg);
    if (msg.body === 'sentinel') break;
    const seq = Number(msg.headers.seq);
    copies.set(seq, (copies.get(seq) || 0) + 1);
    if (msg.headers['stompbox-resent'] === 'true') marked.set(seq, (marked.get(seq) || 0) + 1);
  }
  await consumer.assertQuiet();

  const missing = [];
  for (let seq = 0; seq < COUNT; seq++) if (!copies.has(seq)) missing.push(seq);
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} receipted but never received`);
  // At most one unmarked copy (the first write), and no more copies than SENDs written.
  const extra = [...copies].filter(([seq, n]) => n - (marked.get(seq) || 0) > 1 || n > producer.writes.get(seq));
  assert.deepEqual(extra, [], 'copies beyond what was resent ([seq, copies])');
  const received = [...copies.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`js failover (STOMP 1.2, ConnectFailover URI): killed the master after ${killedAfter} receipts; `
    + `sent ${COUNT}, SEND frames ${stats.frames}, resent ${stats.resent}, receipted ${stats.receipted - 1}, `
    + `received ${received}, duplicates ${received - copies.size}, connections ${stats.connects}`);
});
