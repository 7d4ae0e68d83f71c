'use strict';
// The CONNECT login and passcode of the examples and tests: STOMP_LOGIN and STOMP_PASSCODE
// from the environment. A passcode belongs in the environment or a secret store, never in
// source. clients/run-smoke.sh sets both (its broker refuses anonymous CONNECTs); with
// STOMP_LOGIN unset the examples connect anonymously, which the loopback broker of `make run`
// allows.

/**
 * `{ login, passcode }` to spread into stompit's `connectHeaders` (and ConnectFailover's
 * `connect.connectHeaders`) or @stomp/stompjs's `connectHeaders`; `{}` when STOMP_LOGIN is
 * unset or empty.
 */
function credentials(env = process.env) {
  if (!env.STOMP_LOGIN) return {};
  return { login: env.STOMP_LOGIN, passcode: env.STOMP_PASSCODE || '' };
}

module.exports = { credentials };
