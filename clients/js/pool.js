#!/usr/bin/env node
'use strict';
// A few long-lived connections shared by many concurrent senders: stompit's ChannelPool.
//
//   STOMP_HOST=127.0.0.1 STOMP_PORT=61613 node pool.js [DESTINATION] [COUNT] [SIZE]
//   (STOMP_LOGIN / STOMP_PASSCODE log in; unset: anonymously, as `make run` allows)
//
// A CONNECT costs a round trip (and, behind a load balancer, a new backend connection), and
// the broker counts connections against its limits; one per message is wasteful.
//
// How stompit 1.0.0's pool works (lib/ChannelPool.js, lib/Channel.js): `pool.channel(cb)`
// lends a Channel, one connection made through a ConnectFailover, to one borrower at a time.
// The channel goes back to the pool when everything sent on it has its RECEIPT ('idle'), so
// a borrower must send at least once. With every channel lent, a request waits up to
// `requestChannelTimeout` ms, or fails at once when that is null (stompit's default). A
// channel keeps each SEND until its RECEIPT and writes it again after a reconnect.
// minChannels = maxChannels keeps the connections open; with fewer minChannels the pool closes
// each excess channel as soon as it is idle (freeExcessTimeout null), i.e. a burst reconnects.

const stompit = require('stompit');

const { credentials } = require('./credentials');

/**
 * A pool of `size` connections to `servers` (stompit connect options, or a `failover:(…)`
 * URI). `connectHeaders` go on every CONNECT (login and passcode among them); `pool.connects`
 * counts the CONNECTs it made.
 */
function createPool(servers, { size = 3, connectHeaders, requestTimeoutMs = 10000, failover = {} } = {}) {
  const connectFailover = new stompit.ConnectFailover(servers, {
    randomize: false,
    ...failover,
    connect: { connectHeaders: connectHeaders || { host: 'localhost', 'accept-version': '1.2' } },
  });
  const pool = new stompit.ChannelPool(connectFailover, {
    minChannels: size,
    maxChannels: size,
    requestChannelTimeout: requestTimeoutMs,
  });
  pool.connects = 0;
  connectFailover.on('connect', () => {
    pool.connects += 1;
  });
  return pool;
}

/** SEND on a pooled connection; resolves on the RECEIPT. */
function sendReceipted(pool, headers, body) {
  return new Promise((resolve, reject) => {
    pool.channel((err, channel) => {
      if (err) {
        reject(err);
        return;
      }
      // Channel.send asks for a receipt and calls back when it arrives (or with the error
      // that ended the channel).
      channel.send(headers, body, (sendErr) => (sendErr ? reject(sendErr) : resolve()));
    });
  });
}

module.exports = { createPool, sendReceipted };

if (require.main === module) {
  const host = process.env.STOMP_HOST || '127.0.0.1';
  const port = Number(process.env.STOMP_PORT || '61613');
  const [destination = '/queue/example', count = '100', size = '3'] = process.argv.slice(2);
  const connectHeaders = { host: 'localhost', 'accept-version': '1.2', ...credentials() };
  const pool = createPool([{ host, port }], { size: Number(size), connectHeaders });
  const sends = Array.from({ length: Number(count) },
    (_, i) => sendReceipted(pool, { destination, 'content-type': 'text/plain' }, `pooled ${i}`));
  Promise.all(sends).then(() => {
    console.log(`sent ${count} to ${destination} over ${pool.connects} connection(s)`);
    pool.close();
  }, (e) => {
    console.error(e.message);
    process.exit(1);
  });
}
