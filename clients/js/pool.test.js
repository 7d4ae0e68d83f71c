'use strict';
// pool.js: many concurrent SENDs share a stompit ChannelPool of three connections; each
// message arrives once. Runs against the broker on STOMP_HOST/STOMP_PORT
// (`clients/run-smoke.sh js`).

const assert = require('node:assert/strict');
const { test } = require('node:test');

const { credentials } = require('./credentials');
const { createPool, sendReceipted } = require('./pool');
const { SmokeClient, fresh, HOST } = require('./smoke-client');

const SIZE = 3;
const COUNT = 300;

test(`${COUNT} concurrent SENDs through a pool of ${SIZE} connections arrive once each`, { timeout: 60000 }, async (t) => {
  const destination = fresh('queue', 'pool');
  const consumer = await SmokeClient.open('1.2');
  t.after(() => consumer.close());
  await consumer.subscribe(destination, 'sub-pool', 'client-individual');

  const connectHeaders = { host: 'localhost', 'accept-version': '1.2', ...credentials() };
  const servers = [{ host: HOST, port: Number(process.env.STOMP_PORT) }];
  const pool = createPool(servers, { size: SIZE, connectHeaders });
  t.after(() => pool.close());
  const bodies = Array.from({ length: COUNT }, (_, i) => `pooled ${i}`);
  // All at once: the pool lends each of its channels to one SEND at a time, the rest wait.
  await Promise.all(bodies.map((body) => sendReceipted(pool, { destination }, body)));
  assert.ok(pool.connects <= SIZE, `the pool made ${pool.connects} connections (size ${SIZE})`);

  const got = [];
  for (let n = 0; n < COUNT; n++) {
    const msg = await consumer.nextMessage(`message ${n} of ${COUNT} from the pool`);
    consumer.ack(msg);
    got.push(msg.body);
  }
  assert.deepEqual([...got].sort(), [...bodies].sort());
  await consumer.assertQuiet();
});
