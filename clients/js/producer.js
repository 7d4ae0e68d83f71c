#!/usr/bin/env node
'use strict';
// Send messages to stompbox over STOMP 1.2 and wait for a RECEIPT for each one.
//
//   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 node producer.js [DESTINATION] [COUNT]
//
// A RECEIPT means the broker has taken the message; without one a producer cannot know
// which SEND failed.

const stompit = require('stompit');

const host = process.env.STOMP_HOST || '127.0.0.1';
const port = Number(process.env.STOMP_PORT || '61613');
const destination = process.argv[2] || '/queue/example';
const count = Number(process.argv[3] || '10');

const connectOptions = {
  host,
  port,
  connectHeaders: { host: 'localhost', 'accept-version': '1.2' },
};

stompit.connect(connectOptions, async (err, client) => {
  if (err) {
    console.error(`connect error: ${err.message}`);
    process.exit(1);
  }
  client.on('error', (e) => {
    console.error(`ERROR ${e.message} ${e.longMessage || ''}`);
    process.exit(1);
  });
  for (let i = 0; i < count; i++) {
    await new Promise((resolve) => {
      // onReceipt makes stompit add a receipt header and call us back on the RECEIPT.
      const frame = client.send({ destination, 'content-type': 'text/plain' }, { onReceipt: resolve });
      frame.end(`hello ${i}`);
    });
    console.log(`sent ${i} to ${destination}`);
  }
  client.disconnect();
});
