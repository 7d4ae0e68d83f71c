#!/usr/bin/env node
'use strict';
// Send messages to stompbox over STOMP 1.2 and wait for a RECEIPT for each one.
//
//   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 node producer.js [DESTINATION] [COUNT]
//   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
//
// A RECEIPT means the broker has taken the message; without one a producer cannot know
// which SEND failed.

const stompit = require('stompit');

const { credentials } = require('./credentials');

const host = process.env.STOMP_HOST || '127.0.0.1';
const port = Number(process.env.STOMP_PORT || '61613');
const destination = process.argv[2] || '/queue/example';
const count = Number(process.argv[3] || '10');

const connectOptions = {
  host,
  port,
  // login and passcode from STOMP_LOGIN / STOMP_PASSCODE (none: anonymous).
  connectHeaders: { host: 'localhost', 'accept-version': '1.2', ...credentials() },
};

stompit.connect(connectOptions, async (err, client) => {
  if (err) {
    // A refused login: err.message is the ERROR's `authentication failed`.
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
