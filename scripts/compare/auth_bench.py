#!/usr/bin/env python3
"""What authentication costs a connecting client (docs/security.md), for `make bench`.

Starts its own stompbox (the binary given) with USERS users whose argon2id hashes come from
`stompbox passwd` (the broker's own parameters), anonymous access on, and measures with
THREADS client threads, each connection a fresh TCP connection that sends CONNECT and waits
for CONNECTED, then closes:

- anonymous: CONNECT without login (no password check at all): the baseline;
- cold: each of the USERS users connects once, right after start: one argon2 check each,
  on the broker's verifier threads;
- warm: the same users connect again, ROUNDS times each: answered from the verified-
  credentials memo, no argon2;
- wrong: connections with a wrong passcode (a full check each, then refused), from one
  address with the back-off raised out of the way, so the figure is the check's cost.

Prints one JSON object: connections per second of each phase and the broker's CPU seconds
over each (from /proc/PID/stat).

    auth_bench.py BINARY [--users 32] [--rounds 20] [--threads 8]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

CONNECTED = b"CONNECTED"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(addr, login=None, passcode=None):
    """One CONNECT on a fresh connection; True when CONNECTED came back."""
    headers = "accept-version:1.2\nhost:localhost\nheart-beat:0,0\n"
    if login is not None:
        headers += f"login:{login}\npasscode:{passcode}\n"
    with socket.create_connection(addr, timeout=30) as s:
        s.sendall(f"CONNECT\n{headers}\n\0".encode())
        got = b""
        while b"\0" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got.startswith(CONNECTED)


def timed(pid, threads, jobs):
    """Runs `jobs` (callables returning bool) on `threads` threads: (per second, cpu, ok)."""
    lock = threading.Lock()
    todo = list(jobs)
    results = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                job = todo.pop()
            ok = job()
            with lock:
                results.append(ok)

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - t0
    return len(results) / elapsed, cpu_seconds(pid) - cpu0, sum(results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()

    hashes = []
    for i in range(args.users):
        out = subprocess.run([args.binary, "passwd"], input=f"pw-{i}\n", capture_output=True,
                             text=True, check=True)
        hashes.append(out.stdout.strip())
    work = tempfile.mkdtemp(prefix="stompbox-auth-bench-")
    config = os.path.join(work, "stompbox.toml")
    with open(config, "w") as f:
        f.write("[security]\nanonymous = true\nfailures_before_backoff = 1000000000\nusers = [\n")
        for i, h in enumerate(hashes):
            f.write(f'  {{ login = "u{i}", password_hash = "{h}" }},\n')
        f.write("]\n")
    broker = subprocess.Popen(
        [args.binary, "serve", "--config", config, "--bind", "127.0.0.1:0", "--admin-bind",
         "127.0.0.1:0", "--ws-bind", "127.0.0.1:0", "--data-dir", os.path.join(work, "data")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        while not line.startswith("stompbox listening"):
            line = broker.stdout.readline()
            if not line:
                sys.exit("auth_bench: the broker exited before listening")
        host, port = line.split("stomp=")[1].split()[0].rsplit(":", 1)
        addr = (host, int(port))
        n_anon = args.users * args.rounds
        # Warm-up, not reported: the first connections pay for allocations and page faults.
        timed(broker.pid, args.threads, [lambda: connect(addr)] * n_anon)
        anon = timed(broker.pid, args.threads, [lambda: connect(addr)] * n_anon)
        cold = timed(broker.pid, args.threads,
                     [lambda i=i: connect(addr, f"u{i}", f"pw-{i}") for i in range(args.users)])
        warm = timed(broker.pid, args.threads,
                     [lambda i=i: connect(addr, f"u{i % args.users}", f"pw-{i % args.users}")
                      for i in range(n_anon)])
        wrong = timed(broker.pid, args.threads,
                      [lambda i=i: connect(addr, f"u{i}", "not-it") for i in range(args.users)])
        for name, (_, _, ok), expect in (("anonymous", anon, n_anon), ("cold", cold, args.users),
                                         ("warm", warm, n_anon), ("wrong", wrong, 0)):
            if ok != expect:
                sys.exit(f"auth_bench: {name}: {ok} connections accepted, expected {expect}")
        print(json.dumps({
            "users": args.users, "threads": args.threads, "cores": os.cpu_count(),
            "anonymous_per_s": round(anon[0], 1), "anonymous_cpu_ms": round(anon[1] / n_anon * 1000, 3),
            "cold_per_s": round(cold[0], 1), "cold_cpu_ms": round(cold[1] / args.users * 1000, 2),
            "warm_per_s": round(warm[0], 1), "warm_cpu_ms": round(warm[1] / n_anon * 1000, 3),
            "wrong_per_s": round(wrong[0], 1), "wrong_cpu_ms": round(wrong[1] / args.users * 1000, 2),
        }))
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
