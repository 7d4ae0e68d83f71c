#!/usr/bin/env python3
"""Send COUNT persistent messages and wait for the broker's RECEIPT for each one.

    STOMP_URL='failover:(tcp://127.0.0.1:61613)' python producer.py [DESTINATION] [COUNT]
    # STOMP_LOGIN=app STOMP_PASSCODE=...  log in (unset: anonymously, as `make run` allows)

(or STOMP_HOST / STOMP_PORT). A RECEIPT for a `persistent:true` SEND means stompbox has the
message on disk; if the connection drops first, the client reconnects and sends it again.
"""

import sys

from stompbox_client import Client
from stompbox_client.url import credentials_from_env, from_env


def main():
    destination = sys.argv[1] if len(sys.argv) > 1 else "/queue/example"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with Client(from_env(), **credentials_from_env()) as client:
        for i in range(count):
            client.send(destination, f"hello {i}",
                        headers={"persistent": "true", "content-type": "text/plain"})
            print(f"sent {i} to {destination}", flush=True)


if __name__ == "__main__":
    main()
