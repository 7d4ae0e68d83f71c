#!/usr/bin/env python3
"""stomp.py throughput and latency for scripts/bench.sh: one producer connection and one
consumer connection (auto ack) in this one process, to one queue.

    .venv/bin/python scripts/compare/clients/py_bench.py --port 61613 --count 20000 \
        [--mode throughput|persistent|latency] [--size 256] [--broker-pid PID]

Modes: throughput sends COUNT non-persistent messages as fast as the socket takes them;
persistent sends each with persistent:true and a receipt header and waits for the RECEIPT
before the next; latency sends one message, waits until the consumer has it, then sends the
next (the round trip send → receive, on one clock). The timed window runs from the first SEND
(the subscription is confirmed by a receipt before it) until the consumer has the last
message. Prints one JSON line: msg/s over that window, this process's CPU seconds (user + sys,
every thread) over it and, with --broker-pid, the broker's (/proc/PID/stat). The same
contract as rb_bench.rb and js_bench.js; scripts/bench.sh records the line as it is.
"""

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from importlib import metadata

import stomp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--destination", default="/queue/bench.clients.py")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--mode", choices=("throughput", "persistent", "latency"),
                    default="throughput")
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--login")
    ap.add_argument("--passcode")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="give up when no message arrived for this many seconds")
    args = ap.parse_args()
    out = {"client": f"stomp.py {metadata.version('stomp.py')}"
                     f" (Python {platform.python_version()})",
           "transport": "tcp", "mode": args.mode, "count": args.count, "size": args.size}
    try:
        out.update(run(args))
    except Exception as e:  # one JSON line either way: bench.sh records the failure
        out["failed"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out))
        sys.exit(1)
    print(json.dumps(out))


class Consumer(stomp.ConnectionListener):
    """Counts MESSAGE frames; in latency mode also takes the send → receive time."""

    def __init__(self, count, latency):
        self.count = count
        self.latency = latency
        self.received = 0
        self.rtts_ns = []
        self.last_at = time.monotonic()
        self.done = threading.Event()
        self.got = threading.Event()  # latency mode: the message in flight arrived
        self.receipts = {}
        self.error = None

    def on_message(self, frame):
        if self.latency:
            self.rtts_ns.append(time.perf_counter_ns() - int(frame.headers["ts"]))
        self.received += 1
        self.last_at = time.monotonic()
        if self.latency:
            self.got.set()
        if self.received >= self.count:
            self.done.set()

    def on_receipt(self, frame):
        ev = self.receipts.get(frame.headers.get("receipt-id"))
        if ev:
            ev.set()

    def on_error(self, frame):
        self.error = f"ERROR frame: {frame.headers.get('message')}"
        self.done.set()
        self.got.set()
        for ev in self.receipts.values():
            ev.set()


def connect(args, listener):
    conn = stomp.Connection([(args.host, args.port)], heartbeats=(0, 0),
                            reconnect_attempts_max=1)
    conn.set_listener("", listener)
    conn.connect(args.login, args.passcode, wait=True, headers={"host": "localhost"})
    return conn


def wait_receipt(listener, rid, timeout):
    ev = listener.receipts[rid]
    if not ev.wait(timeout) or listener.error:
        raise RuntimeError(listener.error or f"no RECEIPT for {rid} within {timeout} s")
    del listener.receipts[rid]


def run(args):
    consumer = Consumer(args.count, args.mode == "latency")
    producer = Consumer(0, False)  # only sees RECEIPTs and ERRORs
    cconn = connect(args, consumer)
    pconn = connect(args, producer)
    consumer.receipts["sub"] = threading.Event()
    cconn.subscribe(args.destination, id="1", ack="auto", headers={"receipt": "sub"})
    wait_receipt(consumer, "sub", args.timeout)

    body = "x" * args.size
    headers = {"persistent": "true"} if args.mode == "persistent" else {}
    cpu0, broker0 = cpu_s(), broker_cpu_s(args.broker_pid)
    t0 = time.monotonic()
    for i in range(args.count):
        if args.mode == "throughput":
            pconn.send(args.destination, body, headers=headers)
        elif args.mode == "persistent":
            rid = str(i)
            producer.receipts[rid] = threading.Event()
            pconn.send(args.destination, body, headers={**headers, "receipt": rid})
            wait_receipt(producer, rid, args.timeout)
        else:
            consumer.got.clear()
            pconn.send(args.destination, body, headers={"ts": str(time.perf_counter_ns())})
            if not consumer.got.wait(args.timeout):
                raise RuntimeError(f"message {i} not received within {args.timeout} s")
        if consumer.error or producer.error:
            raise RuntimeError(consumer.error or producer.error)
    sent_s = time.monotonic() - t0
    while not consumer.done.wait(0.5):
        if time.monotonic() - consumer.last_at > args.timeout:
            break
    wall = time.monotonic() - t0
    cpu1, broker1 = cpu_s(), broker_cpu_s(args.broker_pid)
    for c in (pconn, cconn):
        c.disconnect()
    if consumer.error:
        raise RuntimeError(consumer.error)
    if consumer.received < args.count:
        raise RuntimeError(f"received {consumer.received} of {args.count}: nothing arrived for"
                           f" {args.timeout} s")
    res = {"received": consumer.received, "wall_s": round(wall, 4),
           "send_s": round(sent_s, 4), "msg_per_s": round(consumer.received / wall, 1),
           "client_user_s": round(cpu1[0] - cpu0[0], 3),
           "client_sys_s": round(cpu1[1] - cpu0[1], 3),
           "client_cpu_s": round(sum(cpu1) - sum(cpu0), 3),
           "broker_cpu_s": None if broker0 is None or broker1 is None
           else round(broker1 - broker0, 3)}
    if consumer.rtts_ns:
        rtts = sorted(consumer.rtts_ns)
        res["latency_p50_us"] = round(rtts[len(rtts) // 2] / 1000, 1)
        res["latency_p99_us"] = round(rtts[min(len(rtts) - 1, len(rtts) * 99 // 100)] / 1000, 1)
    return res


def cpu_s():
    """(user, sys) seconds of this process, every thread."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime, r.ru_stime)


def broker_cpu_s(pid):
    """utime + stime of PID in seconds from /proc/PID/stat; None without a PID."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command's closing parenthesis, field 3 (state) is index 0: utime is field
    # 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
