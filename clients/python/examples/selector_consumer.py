#!/usr/bin/env python3
"""Consume only the messages a JMS selector matches.

    STOMP_URL='failover:(tcp://127.0.0.1:61613)' python selector_consumer.py [DESTINATION] [SELECTOR]
    # STOMP_LOGIN=app STOMP_PASSCODE=...  log in (unset: anonymously, as `make run` allows)

The selector (default `priority > 5`) is SQL92-like, over the message's headers; `priority`
reads as the MESSAGE shows it. To have something to select from, the script first sends ten
messages with priority 0 to 9, then subscribes with the selector and prints what arrives:
priorities 6 to 9, highest first (a queue delivers higher priorities first). The others stay
in the queue for a consumer that wants them.
"""

import queue
import sys

from stompbox_client import Client
from stompbox_client.url import credentials_from_env, from_env


def main():
    destination = sys.argv[1] if len(sys.argv) > 1 else "/queue/example.selector"
    selector = sys.argv[2] if len(sys.argv) > 2 else "priority > 5"
    with Client(from_env(), **credentials_from_env()) as client:
        for p in range(10):
            client.send(destination, f"priority {p}", headers={"priority": str(p)})
        inbox = queue.Queue()
        client.subscribe(destination, inbox.put, ack="client-individual", selector=selector)
        while True:
            try:
                message = inbox.get(timeout=1)
            except queue.Empty:
                break
            print(f"selected {message.body!r} priority={message.headers.get('priority')}",
                  flush=True)
            message.ack()


if __name__ == "__main__":
    main()
