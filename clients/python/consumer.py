#!/usr/bin/env python3
"""Receive messages from stompbox over STOMP 1.2 and ACK each one (client-individual).

    STOMP_HOST=127.0.0.1 STOMP_PORT=61613 python consumer.py [DESTINATION] [COUNT]

Stops after COUNT messages, or after 5 s without one. Messages received but not ACKed are
given to another consumer when this connection closes.
"""

import os
import queue
import sys

import stomp

HOST = os.environ.get("STOMP_HOST", "127.0.0.1")
PORT = int(os.environ.get("STOMP_PORT", "61613"))


class Inbox(stomp.ConnectionListener):
    def __init__(self):
        self.frames = queue.Queue()

    def on_message(self, frame):
        self.frames.put(frame)

    def on_error(self, frame):
        print(f"ERROR {frame.headers.get('message')}: {frame.body}", file=sys.stderr)


def main():
    destination = sys.argv[1] if len(sys.argv) > 1 else "/queue/example"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10

    conn = stomp.Connection12([(HOST, PORT)], heartbeats=(10000, 10000))
    inbox = Inbox()
    conn.set_listener("inbox", inbox)
    conn.connect(wait=True)
    # activemq.prefetchSize caps how many unACKed messages the broker pushes to us.
    conn.subscribe(destination, id="example", ack="client-individual",
                   headers={"activemq.prefetchSize": "10"})
    try:
        for _ in range(count):
            try:
                frame = inbox.frames.get(timeout=5)
            except queue.Empty:
                print("no message for 5 s, stopping")
                break
            print(f"received {frame.body!r} message-id={frame.headers['message-id']}")
            # STOMP 1.2 ACKs name the MESSAGE's `ack` header, not its message-id.
            conn.ack(frame.headers["ack"])
    finally:
        conn.disconnect()


if __name__ == "__main__":
    main()
