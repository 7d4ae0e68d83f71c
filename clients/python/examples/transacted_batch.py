#!/usr/bin/env python3
"""Send batches in transactions: all of a batch is delivered, or none of it.

    STOMP_URL='failover:(tcp://127.0.0.1:61613)' python transacted_batch.py [DESTINATION] [BATCH]
    # STOMP_LOGIN=app STOMP_PASSCODE=...  log in (unset: anonymously, as `make run` allows)

The first batch fails halfway (an exception inside the `with` block): it is ABORTed and none
of its messages is delivered. The second is COMMITted, and the client waits for the COMMIT's
RECEIPT. If the connection fails during a transaction, the broker drops it and the client
raises TransactionLost: run the batch again.
"""

import sys

from stompbox_client import Client
from stompbox_client.url import credentials_from_env, from_env


def send_batch(client, destination, batch, label, fail_after=None):
    with client.transaction() as tx:
        for i in range(batch):
            if i == fail_after:
                raise RuntimeError(f"{label} failed after {i} messages")
            tx.send(destination, f"{label} message {i}", headers={"persistent": "true"})


def main():
    destination = sys.argv[1] if len(sys.argv) > 1 else "/queue/example.batch"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with Client(from_env(), **credentials_from_env()) as client:
        try:
            send_batch(client, destination, batch, "batch 1", fail_after=batch // 2)
        except RuntimeError as e:
            print(f"aborted: {e}", flush=True)
        send_batch(client, destination, batch, "batch 2")
        print(f"committed batch 2: {batch} messages to {destination}", flush=True)


if __name__ == "__main__":
    main()
