'use strict';
// Plumbing for the stompit smoke tests: one connection per STOMP version, with promises for
// receipts and a queue of received MESSAGE frames (headers + body already read).
//
// Every wait has a deadline and says what it was waiting for when the deadline passes.

const crypto = require('node:crypto');
const stompit = require('stompit');

const { credentials } = require('./credentials');

const HOST = process.env.STOMP_HOST || '127.0.0.1';
// Milliseconds to wait for any one thing the broker owes us (a receipt, a message).
const TIMEOUT_MS = Number(process.env.STOMP_SMOKE_TIMEOUT || '10') * 1000;

function port() {
  const value = process.env.STOMP_PORT;
  if (!value) {
    throw new Error('set STOMP_PORT to the port of a running stompbox (see clients/run-smoke.sh)');
  }
  return Number(value);
}

/** A destination nobody else uses, e.g. /queue/smoke-js-queue-1f2e... */
function fresh(kind, name) {
  return `/${kind}/smoke-js-${name}-${crypto.randomBytes(6).toString('hex')}`;
}

/** client-individual is a 1.1 addition; 1.0 only knows auto and client, and acking every
 * message in client mode acknowledges exactly that message and the ones before it. */
function ackMode(version) {
  return version === '1.0' ? 'client' : 'client-individual';
}

function describe(msg) {
  return `MESSAGE ${JSON.stringify(msg.headers)} body=${JSON.stringify(msg.body)}`;
}

function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** One stompit connection of a given STOMP version plus what the broker sent on it. */
class SmokeClient {
  /**
   * `options.port`: another broker's STOMP port than STOMP_PORT's; `options.auth`: its
   * `{ login, passcode }` (default STOMP_LOGIN / STOMP_PASSCODE, the user clients/run-smoke.sh
   * made: its broker refuses anonymous CONNECTs).
   */
  static async open(version, options = {}) {
    const c = new SmokeClient(version, options.port, options.auth);
    await c._connect();
    return c;
  }

  constructor(version, brokerPort = port(), auth = credentials()) {
    this.version = version;
    this.port = brokerPort;
    this.auth = auth;
    this.client = null;
    this.error = null;
    this._messages = [];
    this._waiters = [];
    this._pendingReceipts = new Set();
    this._closed = false;
  }

  _connect() {
    const connectHeaders = { host: 'localhost', 'accept-version': this.version, ...this.auth };
    const connected = new Promise((resolve, reject) => {
      stompit.connect({ host: HOST, port: this.port, connectHeaders }, (err, client) => {
        if (err) {
          reject(err);
          return;
        }
        // stompit destroys the connection on an ERROR frame; remember why for later waits.
        client.on('error', (e) => this._fail(e));
        resolve(client);
      });
    });
    return withDeadline(connected, TIMEOUT_MS, 'CONNECTED').then((client) => {
      this.client = client;
      this.connected = client.headers;
      const got = client.headers.version || '1.0';
      if (got !== this.version) {
        throw new Error(`asked for STOMP ${this.version}, CONNECTED said ${JSON.stringify(client.headers)}`);
      }
    });
  }

  _fail(err) {
    const detail = err.longMessage ? `${err.message}: ${err.longMessage}` : err.message;
    this.error = new Error(`connection failed: ${detail}`);
    for (const w of this._waiters.splice(0)) w.reject(this.error);
    for (const reject of this._pendingReceipts) reject(this.error);
    this._pendingReceipts.clear();
  }

  /** Send `command` with a receipt; resolves when the RECEIPT arrives. */
  withReceipt(command, headers, body, what) {
    if (this.error) return Promise.reject(this.error);
    let failed;
    const receipt = new Promise((resolve, reject) => {
      // An ERROR frame ends the connection; _fail rejects every receipt still pending.
      failed = (e) => reject(new Error(`${what}: ${e.message}`));
      this._pendingReceipts.add(failed);
      const frame = this.client.sendFrame(command, headers, { onReceipt: resolve });
      if (body !== undefined) frame.write(body);
      frame.end();
    });
    return withDeadline(receipt, TIMEOUT_MS, `RECEIPT for ${what}`)
      .finally(() => this._pendingReceipts.delete(failed));
  }

  /** SEND with a receipt. */
  send(destination, body, headers = {}) {
    return this.withReceipt('SEND', { ...headers, destination }, body, `SEND ${body}`);
  }

  /** SUBSCRIBE and wait for its receipt, so the subscription exists before anyone sends. */
  subscribe(destination, id, ack) {
    // subscribe() cannot ask for a receipt, so register the listener and send the frame
    // ourselves; both are public stompit API.
    this.client.setImplicitSubscription(id, ack, (err, message) => this._onMessage(err, message));
    return this.withReceipt('SUBSCRIBE', { destination, id, ack }, undefined, `SUBSCRIBE ${destination}`);
  }

  _onMessage(err, message) {
    if (err) {
      this._fail(err);
      return;
    }
    // stompit streams frames: the next frame is parsed only once this body is read. Read it
    // as bytes, so a binary body (websocket.test.js) arrives intact; `body` is its UTF-8 text.
    const chunks = [];
    message.on('readable', () => {
      for (let chunk; (chunk = message.read()) !== null;) chunks.push(chunk);
    });
    message.on('error', (readErr) => this._fail(readErr));
    message.on('end', () => {
      const bytes = Buffer.concat(chunks);
      const msg = { headers: message.headers, body: bytes.toString('utf8'), bytes, frame: message };
      const waiter = this._waiters.shift();
      if (waiter) waiter.resolve(msg);
      else this._messages.push(msg);
    });
  }

  /** The next MESSAGE, or reject saying `what` we were waiting for. */
  nextMessage(what, timeoutMs = TIMEOUT_MS) {
    if (this._messages.length) return Promise.resolve(this._messages.shift());
    if (this.error) return Promise.reject(this.error);
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      this._waiters.push(waiter);
    });
    return withDeadline(p, timeoutMs, `MESSAGE ${what}`).catch((e) => {
      const i = this._waiters.indexOf(waiter);
      if (i >= 0) this._waiters.splice(i, 1);
      throw e;
    });
  }

  /** No MESSAGE arrives for `quietMs` (catches duplicates and redeliveries). */
  async assertQuiet(quietMs = 300) {
    let extra = null;
    try {
      extra = await this.nextMessage('nothing', quietMs);
    } catch (e) {
      if (this.error) throw this.error;
      return;
    }
    throw new Error(`unexpected extra ${describe(extra)}`);
  }

  /** ACK in the form each version wants (stompit sends message-id, subscription and id). */
  ack(msg) {
    this.client.ack(msg.frame);
  }

  /** DISCONNECT; stompit asks for a receipt and closes once it arrives. */
  close() {
    if (this._closed) return Promise.resolve();
    this._closed = true;
    if (!this.client || this.error) {
      if (this.client) this.client.destroy();
      return Promise.resolve();
    }
    const done = new Promise((resolve) => this.client.disconnect(() => resolve()));
    return withDeadline(done, TIMEOUT_MS, 'DISCONNECT receipt').catch((e) => {
      this.client.destroy();
      throw e;
    });
  }
}

module.exports = { SmokeClient, fresh, ackMode, describe, withDeadline, HOST, TIMEOUT_MS };
