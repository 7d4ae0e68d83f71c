#!/usr/bin/env python3
"""Receive messages and ACK each one individually (ack mode client-individual).

    STOMP_URL='failover:(tcp://127.0.0.1:61613)' python consumer.py [DESTINATION] [COUNT]
    # STOMP_LOGIN=app STOMP_PASSCODE=...  log in (unset: anonymously, as `make run` allows)

Stops after COUNT messages, or after 5 s without one. A message is ACKed only after it was
handled (printed, here): if this process dies first, the broker gives it to another consumer,
marked redelivered. activemq.prefetchSize=10 caps how many unACKed messages the broker pushes
to us at a time.
"""

import queue
import sys

from stompbox_client import Client
from stompbox_client.url import credentials_from_env, from_env


def main():
    destination = sys.argv[1] if len(sys.argv) > 1 else "/queue/example"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    inbox = queue.Queue()
    with Client(from_env(), **credentials_from_env()) as client:
        # The callback runs on the client's dispatcher thread; hand messages to this one.
        client.subscribe(destination, inbox.put, ack="client-individual", prefetch=10)
        for _ in range(count):
            try:
                message = inbox.get(timeout=5)
            except queue.Empty:
                print("no message for 5 s, stopping", flush=True)
                break
            print(f"received {message.body!r} message-id={message.message_id}", flush=True)
            message.ack()


if __name__ == "__main__":
    main()
