#!/usr/bin/env node
'use strict';
// Send persistent messages through stompit's ConnectFailover, each with a RECEIPT, and resend
// those whose RECEIPT was lost when the connection moved to another broker.
//
//   node failover-producer.js FAILOVER_URI [DESTINATION] [COUNT]
//   STOMP_LOGIN=app STOMP_PASSCODE=... node clients/js/failover-producer.js \
//     'failover:(stomp://127.0.0.1:61616,stomp://127.0.0.1:61617)?initialReconnectDelay=20&maxReconnectDelay=1000&maxReconnects=50&randomize=false' \
//     /queue/orders 1000
//
// What stompit 1.0.0 does by itself (lib/ConnectFailover.js, lib/Channel.js):
// - ConnectFailover.connect(cb) calls cb(null, client, reconnect, server) once per connection.
//   It does not watch the connection: the application listens for the client's 'error' (a
//   dropped socket is one) and calls reconnect(), which moves to the next server.
// - Before each attempt it waits initialReconnectDelay × (reconnectDelayExponent^n − 1) ms,
//   capped at maxReconnectDelay, where n is that server's failed connects in a row: the first
//   try of each server is immediate. useExponentialBackOff=false waits initialReconnectDelay
//   (0 the first time).
// - maxReconnects is per server: a server that failed that many times in a row is dropped;
//   when none is left, cb gets the error. -1 (the default) retries forever.
// - randomize (default true) shuffles the servers after the first, and only when there are
//   more than two.
// - stompit.Channel keeps each SEND until its RECEIPT and writes it again, unchanged, on the
//   next connection. This class does the same by hand so that it can mark the second write
//   `stompbox-resent:true`: a consumer can then tell a possible duplicate from a bug.

const { EventEmitter } = require('node:events');
const stompit = require('stompit');

const { credentials } = require('./credentials');

class FailoverProducer extends EventEmitter {
  /**
   * `servers`: a `failover:(…)?…` URI or an array of stompit connect options. `options`:
   * ConnectFailover's (initialReconnectDelay, maxReconnectDelay, useExponentialBackOff,
   * maxReconnects, randomize), plus `connectHeaders` for every server's CONNECT, reconnects
   * included (login and passcode go here; ConnectFailover also takes them from a URI's
   * `stomp://login:passcode@host:port`), `window` (SENDs waiting for their RECEIPT at a time,
   * 20) and `timeoutMs` (no RECEIPT for that long fails, 30 s). A server that refuses the
   * login (ERROR `authentication failed`) is dropped from the list at once; with none left,
   * start() rejects (with that ERROR's error when there was one server).
   */
  constructor(servers, options = {}) {
    super();
    const { connectHeaders, window = 20, timeoutMs = 30000, ...failoverOptions } = options;
    this.failover = new stompit.ConnectFailover(servers, {
      ...failoverOptions,
      connect: { connectHeaders: connectHeaders || { host: 'localhost', 'accept-version': '1.2' } },
    });
    this.failover.on('error', (e, server) => {
      this.stats.connectFailures += 1;
      this.emit('connect-failed', e, server);
    });
    this.window = window;
    this.timeoutMs = timeoutMs;
    this.client = null;
    this.error = null;
    this.pending = new Map(); // key -> { destination, body, headers, writes }
    this.writes = new Map(); // key -> SEND frames written, kept after the RECEIPT
    this.stats = { sent: 0, frames: 0, resent: 0, receipted: 0, connects: 0, connectFailures: 0 };
    this._wakers = [];
  }

  /** Connects to the first server that answers; resolves once connected. */
  start() {
    return new Promise((resolve, reject) => {
      this._connector = this.failover.connect((err, client, reconnect, server) => {
        if (err) {
          this._fail(err); // every server failed maxReconnects times in a row
          reject(err);
          return;
        }
        this.stats.connects += 1;
        client.on('error', (e) => {
          if (this.client !== client) return;
          this.client = null;
          // An ERROR frame (bad destination, …) would come back after every resend: give up.
          if (e.isApplicationError && e.isApplicationError()) {
            this._fail(e);
            return;
          }
          this.emit('disconnected', e);
          reconnect();
        });
        this.client = client;
        this.emit('connected', server.serverProperties.remoteAddress.transportPath);
        // Whatever had no RECEIPT on the old connection may or may not have been taken.
        for (const key of this.pending.keys()) this._write(key);
        resolve();
      });
    });
  }

  /**
   * Sends `body` persistently once fewer than `window` SENDs wait for their RECEIPT. `key`
   * names the message (a `seq` header); its RECEIPT may come after this resolves.
   */
  async publish(destination, key, body, headers = {}) {
    await this._until(() => this.pending.size < this.window);
    this.stats.sent += 1;
    this.pending.set(key, { destination, body, headers: { ...headers, seq: String(key) }, writes: 0 });
    if (this.client) this._write(key);
  }

  /** Resolves once every SEND has its RECEIPT. */
  flush() {
    return this._until(() => this.pending.size === 0);
  }

  /** DISCONNECT (waiting for its RECEIPT), or stop connecting. */
  close() {
    if (this._connector) this._connector.abort();
    const client = this.client;
    this.client = null;
    if (!client) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        client.destroy();
        resolve();
      }, 5000);
      client.disconnect(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  _write(key) {
    const entry = this.pending.get(key);
    const headers = { ...entry.headers, destination: entry.destination, persistent: 'true' };
    if (entry.writes > 0) {
      headers['stompbox-resent'] = 'true';
      this.stats.resent += 1;
    }
    entry.writes += 1;
    this.writes.set(key, (this.writes.get(key) || 0) + 1);
    this.stats.frames += 1;
    // onReceipt belongs to this client: after a reconnect only the new write can answer.
    const frame = this.client.send(headers, { onReceipt: () => this._receipted(key) });
    frame.end(entry.body);
  }

  _receipted(key) {
    if (!this.pending.delete(key)) return;
    this.stats.receipted += 1;
    this._wake();
  }

  _fail(err) {
    this.error = err;
    this._wake();
  }

  _wake() {
    for (const wake of this._wakers.splice(0)) wake();
  }

  /** Resolves when `ready()`; rejects on a fatal error or `timeoutMs` without a RECEIPT. */
  async _until(ready) {
    let receipted = this.stats.receipted;
    let since = Date.now();
    while (!ready()) {
      if (this.error) throw this.error;
      if (this.stats.receipted !== receipted) {
        receipted = this.stats.receipted;
        since = Date.now();
      }
      const left = this.timeoutMs - (Date.now() - since);
      if (left <= 0) {
        throw new Error(`no RECEIPT for ${this.timeoutMs} ms; ${this.pending.size} SEND(s) waiting`);
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this._wakers.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (this.error) throw this.error;
  }
}

module.exports = { FailoverProducer };

if (require.main === module) {
  const [uri, destination = '/queue/example', count = '100'] = process.argv.slice(2);
  if (!uri) {
    console.error('usage: failover-producer.js FAILOVER_URI [DESTINATION] [COUNT]');
    process.exit(2);
  }
  // The passcode comes from the environment, not the URI: a command line shows in `ps`.
  const connectHeaders = { host: 'localhost', 'accept-version': '1.2', ...credentials() };
  const producer = new FailoverProducer(uri, { connectHeaders });
  producer.on('connected', (address) => console.error(`failover: connected to ${address}`));
  producer.on('disconnected', (e) => console.error(`failover: connection lost: ${e.message}`));
  producer.on('connect-failed', (e) => console.error(`failover: connect failed: ${e.message}`));
  (async () => {
    await producer.start();
    for (let i = 0; i < Number(count); i++) await producer.publish(destination, i, `message ${i}`);
    await producer.flush();
    const s = producer.stats;
    console.log(`sent ${s.sent} to ${destination}: ${s.receipted} receipted, ${s.frames} SEND frames, `
      + `${s.resent} resent over ${s.connects} connection(s)`);
    await producer.close();
  })().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
