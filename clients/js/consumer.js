#!/usr/bin/env node
'use strict';
// Receive messages from stompbox over STOMP 1.2 and ACK each one (client-individual).
//
//   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 node consumer.js [DESTINATION] [COUNT]
//   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
//
// Stops after COUNT messages, or after 5 s without one. Messages received but not ACKed are
// given to another consumer when this connection closes.

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
  connectHeaders: {
    host: 'localhost', 'accept-version': '1.2', 'heart-beat': '0,10000', ...credentials(),
  },
};

stompit.connect(connectOptions, (err, client) => {
  if (err) {
    // A refused login: err.message is the ERROR's `authentication failed`.
    console.error(`connect error: ${err.message}`);
    process.exit(1);
  }
  let received = 0;
  let idle;
  const stop = (why) => {
    clearTimeout(idle);
    if (why) console.log(why);
    client.disconnect();
  };
  const restartIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => stop('no message for 5 s, stopping'), 5000);
  };

  const headers = {
    destination,
    ack: 'client-individual',
    // Caps how many unACKed messages the broker pushes to this subscription.
    'activemq.prefetchSize': '10',
  };
  client.subscribe(headers, (subErr, message) => {
    if (subErr) {
      console.error(`subscription error: ${subErr.message} ${subErr.longMessage || ''}`);
      process.exit(1);
    }
    // Read the body before the next MESSAGE can be parsed: stompit streams frames.
    message.readString('utf-8', (readErr, body) => {
      if (readErr) throw readErr;
      console.log(`received ${JSON.stringify(body)} message-id=${message.headers['message-id']}`);
      client.ack(message); // stompit sends the 1.2 `id` (from the MESSAGE's ack header)
      received += 1;
      if (received >= count) stop();
      else restartIdle();
    });
  });
  restartIdle();
});
