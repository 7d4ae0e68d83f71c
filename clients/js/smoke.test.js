'use strict';
// Smoke test: stompit against a running stompbox on STOMP_HOST (default 127.0.0.1) and
// STOMP_PORT. `clients/run-smoke.sh js` starts a broker and runs `node --test clients/js/`.
//
// Each scenario runs once per STOMP version. 1.0 has no client-individual ack mode, so its
// consumers use `client` and still ACK every message.

const assert = require('node:assert/strict');
const { describe: suite, test, afterEach } = require('node:test');

const { SmokeClient, fresh, ackMode, describe } = require('./smoke-client');

const COUNT = 100;
const VERSIONS = ['1.0', '1.1', '1.2'];

let opened = [];

async function client(version) {
  const c = await SmokeClient.open(version);
  opened.push(c);
  return c;
}

afterEach(async () => {
  const closing = opened;
  opened = [];
  // A failing close must not hide the test's own failure.
  await Promise.allSettled(closing.map((c) => c.close()));
});

/** Receive `bodies` in order, checking headers and ACKing each one individually. */
async function consumeInOrder(consumer, bodies, destination, subId) {
  const seenIds = new Set();
  for (const expected of bodies) {
    const msg = await consumer.nextMessage(`${JSON.stringify(expected)} on ${destination}`);
    const h = msg.headers;
    assert.equal(msg.body, expected, `out of order or wrong body: ${describe(msg)}`);
    assert.equal(h.destination, destination);
    assert.ok(!seenIds.has(h['message-id']), `message-id reused: ${h['message-id']}`);
    seenIds.add(h['message-id']);
    if (consumer.version !== '1.0') assert.equal(h.subscription, subId, describe(msg));
    if (consumer.version === '1.2') {
      assert.ok('ack' in h, `1.2 MESSAGE without ack header in client-individual mode: ${describe(msg)}`);
    }
    consumer.ack(msg);
  }
}

for (const version of VERSIONS) {
  suite(`STOMP ${version}`, () => {
    test('queue delivers each message once, in order', async () => {
      const destination = fresh('queue', `queue-${version}`);
      const bodies = Array.from({ length: COUNT }, (_, i) => `queue message ${String(i).padStart(3, '0')}`);

      const producer = await client(version);
      await Promise.all(bodies.map((body, i) => producer.send(destination, body, { seq: String(i) })));

      const consumer = await client(version);
      await consumer.subscribe(destination, 'sub-queue', ackMode(version));
      await consumeInOrder(consumer, bodies, destination, 'sub-queue');
      await consumer.assertQuiet();
      await consumer.close(); // waits for the DISCONNECT receipt: all 100 ACKs were read

      // The ACKed messages are gone: a new consumer's first message is a fresh sentinel.
      const again = await client(version);
      await again.subscribe(destination, 'sub-again', ackMode(version));
      await producer.send(destination, 'sentinel');
      const msg = await again.nextMessage('the sentinel');
      assert.equal(msg.body, 'sentinel', `ACKed message redelivered: ${describe(msg)}`);
      again.ack(msg);
      await again.assertQuiet();
    });

    test('topic fans out to both subscribers', async () => {
      const destination = fresh('topic', `topic-${version}`);
      const bodies = Array.from({ length: COUNT }, (_, i) => `topic message ${String(i).padStart(3, '0')}`);

      const subscribers = [await client(version), await client(version)];
      for (const [n, sub] of subscribers.entries()) {
        await sub.subscribe(destination, `sub-topic-${n}`, ackMode(version));
      }

      const producer = await client(version);
      await Promise.all(bodies.map((body) => producer.send(destination, body)));
      await producer.send(destination, 'sentinel');

      await Promise.all(subscribers.map(async (sub, n) => {
        await consumeInOrder(sub, [...bodies, 'sentinel'], destination, `sub-topic-${n}`);
        await sub.assertQuiet();
      }));
    });

    test('aborted transaction is dropped, committed one delivered', async () => {
      const destination = fresh('queue', `tx-${version}`);
      const consumer = await client(version);
      await consumer.subscribe(destination, 'sub-tx', ackMode(version));

      const producer = await client(version);
      const sendIn = (tx, body) => {
        const frame = producer.client.send({ destination, transaction: tx });
        frame.write(body);
        frame.end();
      };
      producer.client.begin('tx-aborted');
      sendIn('tx-aborted', 'aborted 1');
      sendIn('tx-aborted', 'aborted 2');
      await producer.withReceipt('ABORT', { transaction: 'tx-aborted' }, undefined, 'ABORT');

      producer.client.begin('tx-committed');
      sendIn('tx-committed', 'committed');
      await producer.withReceipt('COMMIT', { transaction: 'tx-committed' }, undefined, 'COMMIT');

      // Sent after the COMMIT's receipt, so it must arrive after the committed message; if
      // an aborted message leaked, it shows up in place of "committed".
      await producer.send(destination, 'sentinel');

      await consumeInOrder(consumer, ['committed', 'sentinel'], destination, 'sub-tx');
      await consumer.assertQuiet();
    });
  });
}
