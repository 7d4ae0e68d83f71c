'use strict';
// A @stomp/stompjs client over the `ws` package, for Node: Node 20 has no global WebSocket,
// so stompjs gets a factory that makes one. Used by ws-producer.js, ws-consumer.js and
// websocket.test.js.
//
// The URL comes from STOMP_WS_URL (default ws://127.0.0.1:61614/stomp, what `make run`
// listens on); clients/run-smoke.sh sets it to the broker it started. The CONNECT carries
// STOMP_LOGIN / STOMP_PASSCODE when set (credentials.js).

const { Client } = require('@stomp/stompjs');
const WebSocket = require('ws');

const { credentials } = require('./credentials');

const DEFAULT_WS_URL = 'ws://127.0.0.1:61614/stomp';
// What a browser's stompjs offers; stompbox picks the highest (docs/transports.md).
const SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];

function wsUrl() {
  return process.env.STOMP_WS_URL || DEFAULT_WS_URL;
}

/**
 * A stompjs Client for `url`, not yet active: set onConnect (subscribe there, so every
 * reconnect subscribes again), then call activate(). `options` are stompjs Client options
 * and override the defaults below.
 */
function createClient(url = wsUrl(), options = {}) {
  return new Client({
    webSocketFactory: () => new WebSocket(url, SUBPROTOCOLS),
    // Sent on every CONNECT, reconnects included.
    connectHeaders: credentials(),
    // After a drop, try again every 500 ms until deactivate(); stompjs calls onConnect again.
    reconnectDelay: 500,
    // Both ways every 10 s: the broker closes a silent client after 10 s × 1.5, and stompjs
    // closes the WebSocket when the broker has been silent for about twice that.
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    onStompError: (frame) => console.error(`ERROR ${frame.headers.message}: ${frame.body}`),
    onWebSocketError: () => {}, // onWebSocketClose follows, and stompjs reconnects
    ...options,
  });
}

/** Resolves with the RECEIPT frame for `receiptId`; call before sending the frame. */
function receipt(client, receiptId) {
  return new Promise((resolve) => client.watchForReceipt(receiptId, resolve));
}

module.exports = { createClient, receipt, wsUrl, SUBPROTOCOLS, DEFAULT_WS_URL };
