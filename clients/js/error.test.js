'use strict';
// stompit 1.0.0 and the broker's ERROR frames. stompit's ERROR handler reads the body of an
// ERROR whose content-type is exactly `text/plain` (and under 4 KiB) and then calls
// `this.destroy(error)` where `this` is the frame stream, which nobody listens to: an
// uncaught exception that kills the Node process. stompbox's ERROR frames say
// `text/plain;charset=utf-8` (see clients/js/README.md), which takes stompit's other branch: the
// client emits 'error', as an application expects.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const stompit = require('stompit');

const { credentials } = require('./credentials');

const host = process.env.STOMP_HOST || '127.0.0.1';
const port = Number(process.env.STOMP_PORT || 61613);

for (const version of ['1.0', '1.1', '1.2']) {
  test(`STOMP ${version}: an ERROR reaches stompit as the client's error event`, { timeout: 20000 }, async () => {
    const error = await new Promise((resolve, reject) => {
      const options = { host, port, connectHeaders: { host: '/', 'accept-version': version, ...credentials() } };
      stompit.connect(options, (err, client) => {
        if (err) {
          reject(err);
          return;
        }
        client.on('error', resolve);
        // Not a destination the broker knows how to name: refused with an ERROR.
        const frame = client.send({ destination: '/nowhere/at-all' });
        frame.end('where to?');
      });
    });
    assert.ok(error instanceof Error, String(error));
    assert.match(error.message, /destination/i);
  });
}
