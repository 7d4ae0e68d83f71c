#!/usr/bin/env node
'use strict';
// Send messages over STOMP over WebSocket (@stomp/stompjs + ws), waiting for a RECEIPT for
// each one.
//
//   STOMP_WS_URL=ws://127.0.0.1:61614/stomp node ws-producer.js [DESTINATION] [COUNT]
//   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
//
// Messages are persistent, so a receipted one survives a broker restart. If the connection
// drops, stompjs connects again every reconnectDelay; a SEND whose RECEIPT had not come is
// sent again on the new connection (a possible duplicate, never a loss).

const { createClient, receipt, wsUrl } = require('./ws-client');

const destination = process.argv[2] || '/queue/example';
const count = Number(process.argv[3] || '10');

/** One connection's life: `ready` when CONNECTED, `lost` when its WebSocket closes. */
function connection() {
  const c = { up: false };
  c.ready = new Promise((resolve) => { c.markUp = () => { c.up = true; resolve(); }; });
  c.lost = new Promise((resolve) => { c.markLost = resolve; });
  return c;
}

const client = createClient(wsUrl());
let current = connection();
client.onConnect = () => current.markUp();
client.onWebSocketClose = () => {
  // Failed reconnect attempts close too, and so does deactivate(): neither is a loss.
  if (!current.up || !client.active) return;
  console.error('connection lost; reconnecting');
  current.markLost();
  current = connection();
};

async function send(i) {
  for (;;) {
    const conn = current;
    await conn.ready;
    const id = `send-${i}`;
    const taken = receipt(client, id).then(() => true);
    client.publish({
      destination,
      body: `hello ${i}`,
      headers: { receipt: id, persistent: 'true', 'content-type': 'text/plain' },
    });
    if (await Promise.race([taken, conn.lost.then(() => false)])) return;
  }
}

(async () => {
  client.activate();
  for (let i = 0; i < count; i++) {
    await send(i);
    console.log(`sent ${i} to ${destination}`);
  }
  await client.deactivate();
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
