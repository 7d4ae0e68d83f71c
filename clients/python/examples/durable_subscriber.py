#!/usr/bin/env python3
"""A durable topic subscription keeps what is published while its subscriber is away.

    STOMP_URL='failover:(tcp://127.0.0.1:61613)' python durable_subscriber.py [TOPIC] [CLIENT_ID]
    # STOMP_LOGIN=app STOMP_PASSCODE=...  log in (unset: anonymously, as `make run` allows)

The broker keeps a durable subscription under the CONNECT `client-id` plus the SUBSCRIBE
`activemq.subscriptionName`. The script subscribes, goes away, publishes three messages while
away, comes back with the same client-id and name, receives them, and finally deletes the
subscription (UNSUBSCRIBE with the name); without that the broker would keep collecting
messages for it.
"""

import queue
import sys
import uuid

from stompbox_client import Client
from stompbox_client.url import credentials_from_env, from_env


def main():
    topic = sys.argv[1] if len(sys.argv) > 1 else "/topic/example.news"
    client_id = sys.argv[2] if len(sys.argv) > 2 else f"durable-example-{uuid.uuid4().hex[:8]}"
    url = from_env()
    auth = credentials_from_env()
    name = "news-reader"

    with Client(url, **auth, client_id=client_id) as subscriber:
        subscriber.subscribe(topic, lambda m: None, ack="client-individual", durable_name=name)
    print(f"subscribed as {client_id}/{name}, then went away", flush=True)

    with Client(url, **auth) as publisher:
        for i in range(3):
            publisher.send(topic, f"news {i}", headers={"persistent": "true"})
    print("published 3 messages while the subscriber was away", flush=True)

    inbox = queue.Queue()
    with Client(url, **auth, client_id=client_id) as subscriber:
        sub = subscriber.subscribe(topic, inbox.put, ack="client-individual", durable_name=name)
        for _ in range(3):
            message = inbox.get(timeout=10)
            print(f"received while away: {message.body!r}", flush=True)
            message.ack()
        sub.unsubscribe(delete_durable=True)
    print("deleted the durable subscription", flush=True)


if __name__ == "__main__":
    main()
