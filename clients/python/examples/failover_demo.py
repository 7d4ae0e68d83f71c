#!/usr/bin/env python3
"""Keep sending through a fail-over: kill the master and watch the client move on.

    clients/pair.sh start /tmp/pair                      # or your own two brokers
    set -a; . /tmp/pair/pair.env; set +a                 # ports, pids, STOMP_LOGIN/_PASSCODE
    STOMP_URL="failover:(tcp://127.0.0.1:$A_PORT,tcp://127.0.0.1:$B_PORT)?randomize=false" \\
        python failover_demo.py [DESTINATION] [COUNT] [INTERVAL_S]
    kill -9 $A_PID                                       # in another terminal, meanwhile

Sends COUNT persistent messages (default 100), one every INTERVAL_S (0.1), each waiting for
its RECEIPT, and prints every (re)connect. Messages in flight when the master dies are sent
again to the new one with `stompbox-resent:true`; none whose send returned is lost.
"""

import logging
import sys
import time

from stompbox_client import Client
from stompbox_client.url import credentials_from_env, from_env


def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    destination = sys.argv[1] if len(sys.argv) > 1 else "/queue/example.failover"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1

    def on_connect(host_and_port):
        print(f"connected to {host_and_port[0]}:{host_and_port[1]}", flush=True)

    with Client(from_env(), **credentials_from_env(), on_connect=on_connect) as client:
        for i in range(count):
            client.send(destination, f"tick {i}", headers={"persistent": "true"})
            print(f"receipted {i}", flush=True)
            time.sleep(interval)
        print(f"done: {count} receipted, {client.connects - 1} reconnect(s), "
              f"{client.resends} resent", flush=True)


if __name__ == "__main__":
    main()
