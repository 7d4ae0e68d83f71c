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

// clients/run-smoke.sh's broker refuses anonymous CONNECTs, so every other test here shows the
// clients log in. A wrong passcode: the ERROR `authentication failed` reaches stompit.connect's
// callback as an application error, and ConnectFailover (which would retry a dead server for
// ever, maxReconnects -1) drops the server at once and gives up with it: no hang.
test('a wrong passcode fails the connect with authentication failed', { timeout: 20000 }, async () => {
  const auth = credentials();
  assert.ok(auth.login, 'set STOMP_LOGIN / STOMP_PASSCODE to a user of the broker (run-smoke.sh does)');
  const wrong = { ...auth, passcode: `${auth.passcode}-wrong` };
  const connectHeaders = { host: '/', 'accept-version': '1.2', ...wrong };

  const { error, application } = await new Promise((resolve, reject) => {
    stompit.connect({ host, port, connectHeaders }, (err, client) => {
      if (err) {
        // Asked now: stompit's socket 'error' handler later re-marks the same object as a
        // transport error when the broker closes the connection.
        resolve({ error: err, application: err.isApplicationError() });
        return;
      }
      client.destroy();
      reject(new Error('CONNECTED with a wrong passcode'));
    });
  });
  assert.equal(error.message, 'authentication failed');
  assert.ok(application, 'an ERROR frame, not a transport failure');
  assert.ok(!`${error.message} ${error.longMessage || ''}`.includes(wrong.passcode), 'the passcode was shown');

  const failover = new stompit.ConnectFailover(`failover:(stomp://${host}:${port})?maxReconnects=-1`,
    { connect: { connectHeaders } });
  const attempts = [];
  failover.on('error', (e) => attempts.push(e.message));
  const given = await new Promise((resolve, reject) => {
    failover.connect((err, client) => {
      if (err) {
        resolve(err);
        return;
      }
      client.destroy();
      reject(new Error('ConnectFailover CONNECTED with a wrong passcode'));
    });
  });
  assert.equal(given.message, 'authentication failed');
  assert.deepEqual(attempts, ['authentication failed'], 'one attempt, not retried');

  // One refusal each is far from the broker's per-address back-off: the right passcode works.
  const ok = await new Promise((resolve, reject) => {
    const options = { host, port, connectHeaders: { ...connectHeaders, ...auth } };
    stompit.connect(options, (err, client) => (err ? reject(err) : resolve(client)));
  });
  await new Promise((resolve) => ok.disconnect(resolve));
});
