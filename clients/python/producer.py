#!/usr/bin/env python3
"""Send messages to stompbox over STOMP 1.2 and wait for a RECEIPT for each one.

    STOMP_HOST=127.0.0.1 STOMP_PORT=61613 python producer.py [DESTINATION] [COUNT]

A RECEIPT means the broker has taken the message; without one a producer cannot know which
SEND failed.
"""

import os
import sys
import threading

import stomp

HOST = os.environ.get("STOMP_HOST", "127.0.0.1")
PORT = int(os.environ.get("STOMP_PORT", "61613"))


class Receipts(stomp.ConnectionListener):
    def __init__(self):
        self.cond = threading.Condition()
        self.seen = set()

    def on_receipt(self, frame):
        with self.cond:
            self.seen.add(frame.headers["receipt-id"])
            self.cond.notify_all()

    def on_error(self, frame):
        print(f"ERROR {frame.headers.get('message')}: {frame.body}", file=sys.stderr)

    def wait(self, receipt_id, timeout=10.0):
        with self.cond:
            if not self.cond.wait_for(lambda: receipt_id in self.seen, timeout):
                raise TimeoutError(f"no RECEIPT for {receipt_id}")


def main():
    destination = sys.argv[1] if len(sys.argv) > 1 else "/queue/example"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10

    conn = stomp.Connection12([(HOST, PORT)])
    receipts = Receipts()
    conn.set_listener("receipts", receipts)
    conn.connect(wait=True)
    try:
        for i in range(count):
            rid = f"send-{i}"
            conn.send(destination, f"hello {i}", content_type="text/plain", receipt=rid)
            receipts.wait(rid)
            print(f"sent {i} to {destination}")
    finally:
        conn.disconnect()


if __name__ == "__main__":
    main()
