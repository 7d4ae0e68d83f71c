#!/usr/bin/env python3
"""Request/reply over a temporary queue: a responder and a requester in one process.

    STOMP_URL='failover:(tcp://127.0.0.1:61613)' python request_reply.py [SERVICE_QUEUE] [COUNT]
    # STOMP_LOGIN=app STOMP_PASSCODE=...  log in (unset: anonymously, as `make run` allows)

The requester subscribes to /temp-queue/replies (a queue only its connection can read, gone
when it closes) and sends each request with `reply-to:/temp-queue/replies` and a
`correlation-id`. The broker rewrites that reply-to to a /remote-temp-queue/ID:... name that
anyone may send to; the responder sends its reply there, echoing the correlation-id.
"""

import queue
import sys

from stompbox_client import Client
from stompbox_client.url import credentials_from_env, from_env


def serve(responder, service):
    def on_request(message):
        reply = message.body.upper()
        responder.send(message.headers["reply-to"], reply,
                       headers={"correlation-id": message.headers.get("correlation-id", "")})
        message.ack()

    responder.subscribe(service, on_request, ack="client-individual")


def main():
    service = sys.argv[1] if len(sys.argv) > 1 else "/queue/example.service"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    url = from_env()
    auth = credentials_from_env()
    with Client(url, **auth) as responder, Client(url, **auth) as requester:
        serve(responder, service)
        replies = queue.Queue()
        requester.subscribe("/temp-queue/replies", replies.put)
        for i in range(count):
            requester.send(service, f"request {i}",
                           headers={"reply-to": "/temp-queue/replies",
                                    "correlation-id": f"req-{i}"})
            reply = replies.get(timeout=10)
            print(f"reply to req-{i}: {reply.body!r} "
                  f"correlation-id={reply.headers.get('correlation-id')}", flush=True)


if __name__ == "__main__":
    main()
