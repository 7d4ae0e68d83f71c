#!/usr/bin/env python3
"""The soak run behind `make soak` (docs/soak.md): a release broker on loopback with a temp
data dir, the mixed workload of workload.py with reconnects for `--minutes`, a sample of the
broker every second, then a full drain and the checks.

Exits 0 when nothing was lost, nothing appeared that was not sent (or was aborted), no
connection was ended or refused by the broker unexpectedly, the broker stopped cleanly, and
nothing grew without bound (report.py: `growth`); 1 otherwise, naming each reason. Writes the
samples (CSV), a summary (JSON), the plot and, with --doc, docs/soak.md.

Standard library only, except the plot (matplotlib, skipped with a warning when missing).
"""

import argparse
import csv
import ctypes
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402
import workload as w  # noqa: E402

START_TIMEOUT_S = 30
# How long the drain may take after the producers stopped: consumers run at several times the
# producers' rate, so this is only reached when something is stuck.
DRAIN_TIMEOUT_S = 300
STOP_TIMEOUT_S = 20
SOAK_QUEUES = {(w.WORK, ""), (w.TX, ""), (w.DURABLE, f"{w.DURABLE_CLIENT_ID}:{w.DURABLE_NAME}"),
               (w.DLQ, "")}

COLUMNS = ["t_s", "phase", "rss_kib", "hwm_kib", "fds", "threads", "connections", "db_bytes",
           "wal_bytes", "depth_work", "depth_tx", "depth_durable", "depth_dlq", "unacked",
           "depth_total", "sent", "received", "conns_opened"]


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


class Broker:
    """`stompbox serve` on 127.0.0.1 port 0 (STOMP and admin) with its own config and data dir
    under `work`; the ports come from the lines it prints on stdout."""

    def __init__(self, binary, work, cores):
        self.data = os.path.join(work, "data")
        os.makedirs(self.data)
        self.config = os.path.join(work, "stompbox.toml")
        with open(self.config, "w") as f:
            f.write(f'''# Written by scripts/soak/soak.py: defaults, except what a soak needs.
bind = "127.0.0.1:0"
data_dir = "{self.data}"
cores = {cores}
durability = "fsync"

[admin]
bind = "127.0.0.1:0"

[websocket]
bind = "127.0.0.1:0"
''')
        self.log_path = os.path.join(work, "broker.log")
        self.lines = []
        self.stomp = self.admin = None
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", self.config], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=open(self.log_path, "wb"), env=env,
            preexec_fn=die_with_parent)
        self.pid = self.proc.pid
        ready = threading.Event()

        def read_stdout():
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                self.lines.append(line)
                for key, attr in (("stompbox listening stomp=", "stomp"),
                                  ("stompbox admin http=", "admin")):
                    if line.startswith(key):
                        host, _, port = line[len(key):].split()[0].rpartition(":")
                        setattr(self, attr, (host, int(port)))
                if self.stomp and self.admin:
                    ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(START_TIMEOUT_S):
            self.kill()
            raise SystemExit(f"soak: the broker did not print its addresses within "
                             f"{START_TIMEOUT_S} s; log: {self.tail()}")

    def alive(self):
        return self.proc.poll() is None

    def get(self, path):
        url = f"http://{self.admin[0]}:{self.admin[1]}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read()

    def stop(self):
        """SIGTERM, and the exit code (None if it had to be killed)."""
        if not self.alive():
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def die_with_parent():
    """In the child: SIGKILL when the soak process dies, however it dies (prctl
    PR_SET_PDEATHSIG), so no broker outlives a killed soak."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


class Sampler(threading.Thread):
    """Once a second: the broker's RSS, fds, threads, connections, store file sizes and queue
    depths, and the clients' counters."""

    def __init__(self, broker, ledger, actors):
        super().__init__(name="sampler", daemon=True)
        self.broker = broker
        self.ledger = ledger
        self.actors = actors
        self.rows = []
        self.phase = "load"
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.errors = []

    def run(self):
        n = 0
        while not self.stop.is_set():
            try:
                self.rows.append(self.sample())
            except Exception as e:  # noqa: BLE001 - counted; a dead broker is caught by main
                self.errors.append(f"{time.monotonic() - self.t0:.0f}s: {e}")
            n += 1
            left = self.t0 + n - time.monotonic()
            if left > 0:
                self.stop.wait(left)

    def sample(self):
        pid = self.broker.pid
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()[0] if v.split() else ""
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        db = os.path.join(self.broker.data, "stompbox.db")
        row = dict.fromkeys(COLUMNS, 0)
        row.update(t_s=round(time.monotonic() - self.t0, 2), phase=self.phase,
                   rss_kib=int(status["VmRSS"]), hwm_kib=int(status["VmHWM"]), fds=fds,
                   threads=int(status["Threads"]), db_bytes=file_size(db),
                   wal_bytes=file_size(db + "-wal"))
        for line in self.broker.get("/metrics").decode().splitlines():
            if line.startswith("stompbox_connections "):
                row["connections"] = int(float(line.split()[1]))
        for d in json.loads(self.broker.get("/api/destinations")):
            if (d["destination"], d["subscription"]) not in SOAK_QUEUES:
                continue
            key = {w.WORK: "depth_work", w.TX: "depth_tx", w.DURABLE: "depth_durable",
                   w.DLQ: "depth_dlq"}[d["destination"]]
            row[key] += d["depth"]
            row["unacked"] += d["unacked"]
            row["depth_total"] += d["depth"] + d["unacked"]
        row["sent"] = self.ledger.sent_count
        row["received"] = self.ledger.recv_count
        row["conns_opened"] = sum(a.stats.opened for a in self.actors)
        return row


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def build_actors(ctl, ledger, rate):
    """The workload at `rate` times the base rates: about 200 persistent messages/s and 100
    non-persistent (docs/soak.md lists who does what)."""
    r = rate
    return [
        w.QueueProducer("wp1", ctl, ledger, 40 * r, "each"),
        w.QueueProducer("wp2", ctl, ledger, 40 * r, "each"),
        w.QueueProducer("wp3", ctl, ledger, 60 * r, "checkpoint"),
        w.TxProducer("tp1", ctl, ledger, 8 * r),
        w.TopicProducer("dp1", ctl, ledger, 30 * r, w.DURABLE),
        w.TopicProducer("np1", ctl, ledger, 100 * r, w.NP),
        w.IndividualConsumer("wc1", ctl, ledger, w.WORK),
        w.IndividualConsumer("wc2", ctl, ledger, w.WORK),
        w.CumulativeConsumer("wc3", ctl, ledger, w.WORK),
        w.AutoConsumer("wc4", ctl, ledger, w.WORK),
        w.TxConsumer("tc1", ctl, ledger, w.TX),
        w.DurableSubscriber("dc1", ctl, ledger, w.DURABLE),
        w.NpSubscriber("nc1", ctl, ledger, w.NP),
        w.NpSubscriber("nc2", ctl, ledger, w.NP),
        w.Churn("churn", ctl, ledger),
    ]


def create_durable_subscription(addr):
    """The durable subscription exists before anything is published to its topic."""
    conn = w.Conn(addr, {"client-id": w.DURABLE_CLIENT_ID})
    conn.frame("SUBSCRIBE", {"destination": w.DURABLE, "id": "s", "ack": "client-individual",
                             "activemq.subscriptionName": w.DURABLE_NAME})
    if not conn.disconnect("created"):
        raise SystemExit("soak: could not create the durable subscription")


def watch(broker, actors, seconds, what):
    """Sleeps `seconds`, checking every second that the broker and every actor live. Returns
    a failure text or None."""
    end = time.monotonic() + seconds
    next_note = time.monotonic() + 60
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        if not broker.alive():
            return f"the broker exited during {what} (code {broker.proc.returncode})"
        for a in actors:
            if a.failure:
                return f"client {a.name} failed during {what}: {a.failure}"
        if time.monotonic() >= next_note:
            next_note += 60
            left = end - time.monotonic()
            if left >= 1:
                log(f"{what}: {left / 60:.1f} min left")
    return None


def drain(broker, ledger, actors):
    """Waits until every confirmed message arrived and the soak queues hold nothing (waiting
    or unacked). Returns a failure text or None."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        bad = watch(broker, actors, 1, "the drain")
        if bad:
            return bad
        missing = sum(ledger.missing(s) for s in ("work", "tx", "durable"))
        held = 0
        for d in json.loads(broker.get("/api/destinations")):
            if (d["destination"], d["subscription"]) in SOAK_QUEUES and d["destination"] != w.DLQ:
                held += d["depth"] + d["unacked"]
        if missing == 0 and held == 0:
            return None
    return f"the drain did not finish in {DRAIN_TIMEOUT_S} s ({missing} confirmed messages " \
           f"not received, {held} messages still held by the broker)"


def residual(data_dir):
    """What the store still holds (queue_depths), read-only while the broker runs."""
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'stompbox.db')}?mode=ro", uri=True)
    try:
        return [list(r) for r in db.execute(
            "SELECT destination, subscription, messages FROM queue_depths WHERE messages > 0")]
    finally:
        db.close()


def verdict(ledger, actors, summary):
    """The loss and phantom checks; fills `summary["streams"]` and returns failure texts."""
    failures = []
    streams = {}
    sent_any = set()
    for s in w.STREAMS:
        sent_any |= ledger.confirmed[s] | ledger.unconfirmed[s]
    sent_any |= ledger.aborted
    for s in w.STREAMS:
        got = ledger.received[s]
        confirmed = ledger.confirmed[s]
        dead = {i for i, dest in ledger.dead.items() if w.STREAM_OF.get(dest) == s}
        lost = confirmed - got.keys() - dead
        phantom = got.keys() - sent_any
        info = {
            "sent": len(confirmed) + len(ledger.unconfirmed[s]) + (
                len(ledger.aborted) if s == "tx" else 0),
            "confirmed": len(confirmed),
            "unconfirmed": len(ledger.unconfirmed[s]),
            "unconfirmed_received": len(ledger.unconfirmed[s] & got.keys()),
            "received_distinct": len(got),
            "deliveries": sum(got.values()),
            "duplicates": sum(got.values()) - len(got),
            "unflagged_duplicates": ledger.unflagged_dups[s],
            "dead_lettered": len(dead),
            "lost": len(lost),
            "phantom": len(phantom),
        }
        if lost:
            failures.append(f"{s}: {len(lost)} confirmed messages never received, e.g. "
                            f"{sorted(lost)[:5]}")
        if phantom:
            failures.append(f"{s}: {len(phantom)} messages received that were never sent, "
                            f"e.g. {sorted(phantom)[:5]}")
        if s == "tx":
            visible = ledger.aborted & got.keys()
            whole = dropped = half = 0
            for ids in ledger.in_doubt:
                n = sum(1 for i in ids if i in got)
                if n == len(ids):
                    whole += 1
                elif n == 0:
                    dropped += 1
                else:
                    half += 1
            info.update(aborted=len(ledger.aborted), aborted_visible=len(visible),
                        in_doubt_tx=len(ledger.in_doubt), in_doubt_kept=whole,
                        in_doubt_dropped=dropped, in_doubt_half=half)
            if visible:
                failures.append(f"tx: {len(visible)} messages of aborted or never committed "
                                f"transactions were delivered, e.g. {sorted(visible)[:5]}")
            if half:
                failures.append(f"tx: {half} transactions half applied")
        if s != "np" and ledger.unflagged_dups[s]:
            failures.append(f"{s}: {ledger.unflagged_dups[s]} messages delivered again "
                            f"without redelivered:true")
        streams[s] = info
    # Every np subscriber gets its own copy: only a second copy to one subscription counts.
    streams["np"].update(duplicates=ledger.np_session_dups, session_duplicates=ledger.np_session_dups,
                         out_of_order=ledger.np_out_of_order)
    if ledger.np_session_dups:
        failures.append(f"np: {ledger.np_session_dups} messages delivered twice to one "
                        f"subscription")
    if ledger.np_out_of_order:
        failures.append(f"np: {ledger.np_out_of_order} messages out of their producer's order")
    if ledger.corrupt:
        failures.append(f"{len(ledger.corrupt)} messages with a wrong body or no soak-id, e.g. "
                        f"{ledger.corrupt[:3]}")
    if ledger.wrong_stream:
        failures.append(f"{len(ledger.wrong_stream)} messages from another destination, e.g. "
                        f"{ledger.wrong_stream[:3]}")
    unexpected = [u for a in actors for u in a.stats.unexpected]
    if unexpected:
        failures.append(f"{len(unexpected)} connections ended or refused by the broker "
                        f"unexpectedly, e.g. {unexpected[:5]}")
    summary["streams"] = streams
    summary["connections"] = {
        "opened": sum(a.stats.opened for a in actors),
        "graceful": sum(a.stats.graceful for a in actors),
        "abrupt_fin": sum(a.stats.fin for a in actors),
        "abrupt_rst": sum(a.stats.rst for a in actors),
        "client_id_busy_retries": sum(a.stats.client_id_busy for a in actors),
        "unexpected": len(unexpected),
        "per_actor": {a.name: a.stats.opened for a in actors},
    }
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/stompbox")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=1.0, help="multiplies every client's rate")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", default="soak")
    ap.add_argument("--out", default="target/soak", help="CSV, summary, plot and broker log")
    ap.add_argument("--doc", default="", help="also write this Markdown report (+ .png, .csv)")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="stompbox-soak-")
    broker = None
    keep = False
    try:
        broker = Broker(args.bin, work, args.cores)
        log(f"broker pid {broker.pid}: stomp {broker.stomp[0]}:{broker.stomp[1]}, admin "
            f"{broker.admin[0]}:{broker.admin[1]}, data {broker.data}")
        summary, failures = run(args, broker)
        code = broker.stop()
        summary["broker_exit"] = code
        if code != 0:
            failures.append(f"the broker did not exit 0 on SIGTERM (code {code})")
        summary["failures"] = failures
        shutil.copy(broker.log_path, os.path.join(args.out, "broker.log"))
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        report.write(summary, os.path.join(args.out, "soak.csv"), args.doc)
        if failures:
            keep = True
            log("FAILED:")
            for f in failures:
                log(f"  - {f}")
            log(f"data dir kept for a post-mortem: {work}; broker log: {args.out}/broker.log")
            return 1
        log("passed")
        return 0
    finally:
        if broker is not None:
            broker.kill()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, broker):
    ledger = w.Ledger()
    ctl = w.Control(broker.stomp, args.seed)
    actors = build_actors(ctl, ledger, args.rate)
    summary = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "minutes": args.minutes, "rate": args.rate, "cores": args.cores, "seed": args.seed,
        "revision": git_revision(), "load_start": loadavg(),
        "config": open(broker.config).read(),
    }
    failures = []
    create_durable_subscription(broker.stomp)
    sampler = Sampler(broker, ledger, actors)
    sampler.start()
    for a in actors:
        a.start()
    log(f"load for {args.minutes} min ({len(actors)} clients)")
    t_load = time.monotonic()
    bad = watch(broker, actors, args.minutes * 60, "the load")
    summary["load_s"] = round(time.monotonic() - t_load, 1)
    if not bad:
        log("stopping the producers")
        ctl.stop_producers.set()
        for a in actors:
            if a.producer:
                a.join(60)
                if a.is_alive():
                    bad = f"producer {a.name} did not stop within 60 s"
        sampler.phase = "drain"
        ctl.drain.set()
        log("draining")
        t_drain = time.monotonic()
        bad = bad or drain(broker, ledger, actors)
        summary["drain_s"] = round(time.monotonic() - t_drain, 1)
    ctl.stop_consumers.set()
    for a in actors:
        a.join(30)
    sampler.stop.set()
    sampler.join(5)
    if bad:
        failures.append(bad)
    for a in actors:
        if a.failure and (not bad or a.failure not in bad):
            failures.append(f"client {a.name} failed: {a.failure}")
    if broker.alive():
        # Anything left (and the DLQ) by a consumer that ACKs each, then what the store holds.
        for dest, conn_headers, sub_headers in (
                (w.WORK, None, None), (w.TX, None, None),
                (w.DURABLE, {"client-id": w.DURABLE_CLIENT_ID},
                 {"activemq.subscriptionName": w.DURABLE_NAME}),
                (w.DLQ, None, None)):
            summary.setdefault("sweep", {})[dest] = w.sweep(
                broker.stomp, ledger, dest, conn_headers, sub_headers)
        summary["residual"] = residual(broker.data)
        if summary["residual"]:
            failures.append(f"the store still holds messages after the drain: "
                            f"{summary['residual']}")
    failures += verdict(ledger, actors, summary)
    summary["sampler_errors"] = sampler.errors[:20]
    if len(sampler.errors) > 5:
        failures.append(f"{len(sampler.errors)} samples failed, e.g. {sampler.errors[:3]}")
    summary["load_end"] = loadavg()
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary["totals"] = {"sent": ledger.sent_count, "received": ledger.recv_count}
    rows = sampler.rows
    csv_path = os.path.join(args.out, "soak.csv")
    with open(csv_path, "w", newline="") as f:
        out = csv.DictWriter(f, COLUMNS)
        out.writeheader()
        out.writerows(rows)
    summary["figures"] = report.figures(rows)
    checks = report.growth(rows)
    summary["growth"] = checks
    for c in checks:
        if not c["ok"]:
            failures.append(f"unbounded growth of {c['metric']}: peak {c['q4_peak']} "
                            f"{c['unit']} in the last quarter > bound {c['bound']} "
                            f"(second quarter's peak {c['q2_peak']})")
    return summary, failures


def git_revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml",
                                "Cargo.lock"]).returncode != 0
        return rev + (" + uncommitted src changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
