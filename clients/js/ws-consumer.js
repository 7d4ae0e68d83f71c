#!/usr/bin/env node
'use strict';
// Receive messages over STOMP over WebSocket (@stomp/stompjs + ws), ACKing each one.
//
//   STOMP_WS_URL=ws://127.0.0.1:61614/stomp node ws-consumer.js [DESTINATION] [COUNT]
//   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
//
// The subscription is made in onConnect, so after a dropped connection (a broker restart)
// stompjs reconnects and the consumer subscribes again by itself; what it had not ACKed
// comes back to it with redelivered:true.

const { createClient, wsUrl } = require('./ws-client');

const destination = process.argv[2] || '/queue/example';
const count = Number(process.argv[3] || '10');

const client = createClient(wsUrl());
let received = 0;

client.onConnect = (frame) => {
  up = true;
  console.error(`connected (STOMP ${frame.headers.version}); subscribing to ${destination}`);
  client.subscribe(destination, (message) => {
    const h = message.headers;
    console.log(`${h['message-id']} ${h.redelivered === 'true' ? '(redelivered) ' : ''}${message.body}`);
    message.ack(); // ACK (1.2: its `id` header) for this message only
    if (++received === count) client.deactivate();
  }, { ack: 'client-individual', 'activemq.prefetchSize': '10' });
};
let up = false;
client.onWebSocketClose = () => {
  // Failed reconnect attempts close too, and so does deactivate(): say it once, on a loss.
  if (up && client.active) console.error('connection lost; reconnecting');
  up = false;
};

client.activate();
