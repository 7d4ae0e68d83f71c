#!/usr/bin/env python3
"""The soak's growth criterion, its figures, its plot and docs/soak.md.

Growth criterion (`growth`): the load phase is cut into quarters; the first is warm-up
(caches, allocator arenas, SQLite's page cache and WAL reach their working size) and is not
judged. For each metric, the peak of the last quarter must not exceed the peak of the second
quarter by more than a margin: `q4_peak <= q2_peak * (1 + rel) + abs`. Peaks of equally long
windows carry the same noise (a consumer away, a checkpoint not yet run), so a bounded process
passes, while anything that grows with time or traffic shows up as the distance between two
windows half the run apart. Queue depth is also compared on average (consumers keep up).

Run alone, it redraws the plot and the doc from a finished run:
    python3 scripts/soak/report.py --summary target/soak/summary.json \
        --csv target/soak/soak.csv --doc docs/soak.md
"""

import argparse
import csv
import json
import os
import shutil
import sys

MIB = 1024 * 1024

# metric, column(s) summed, unit, scale (column units per unit), rel, abs (in unit), how
GROWTH = [
    ("RSS", ("rss_kib",), "MiB", 1024, 0.10, 8, "peak"),
    ("open fds", ("fds",), "fds", 1, 0.10, 16, "peak"),
    ("threads", ("threads",), "threads", 1, 0.0, 4, "peak"),
    ("store (db + wal)", ("db_bytes", "wal_bytes"), "MiB", MIB, 0.10, 8, "peak"),
    ("queue depth (waiting + unacked)", ("depth_total",), "messages", 1, 0.5, 1000, "peak"),
    ("queue depth (waiting + unacked)", ("depth_total",), "messages", 1, 0.5, 200, "mean"),
]


def value(row, cols, scale):
    return sum(float(row[c]) for c in cols) / scale


def load_rows(rows):
    return [r for r in rows if r["phase"] == "load"]


def slope_per_hour(rows, cols, scale):
    """Least-squares slope over the second half of the load, in units per hour."""
    half = rows[len(rows) // 2:]
    if len(half) < 2:
        return 0.0
    xs = [float(r["t_s"]) / 3600 for r in half]
    ys = [value(r, cols, scale) for r in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def growth(rows):
    """The criterion above, one dict per check."""
    rows = load_rows(rows)
    n = len(rows)
    q2, q4 = rows[n // 4:n // 2], rows[3 * n // 4:]
    out = []
    for metric, cols, unit, scale, rel, slack, how in GROWTH:
        if not q2 or not q4:
            out.append({"metric": metric, "how": how, "unit": unit, "ok": False,
                        "q2_peak": None, "q4_peak": None, "bound": None,
                        "why": "too few samples"})
            continue
        agg = max if how == "peak" else (lambda v: sum(v) / len(v))
        a = agg([value(r, cols, scale) for r in q2])
        b = agg([value(r, cols, scale) for r in q4])
        bound = a * (1 + rel) + slack
        out.append({"metric": metric if how == "peak" else f"{metric}, mean", "how": how,
                    "unit": unit, "rel": rel, "abs": slack, "q2_peak": round(a, 1),
                    "q4_peak": round(b, 1), "bound": round(bound, 1), "ok": b <= bound,
                    "slope_per_hour": round(slope_per_hour(rows, cols, scale), 2)})
    return out


def figures(rows):
    """Start, peak, end of load and after the drain, for the plotted columns."""
    load = load_rows(rows)
    if not load:
        return {}
    out = {}
    for col in ("rss_kib", "hwm_kib", "fds", "threads", "connections", "db_bytes", "wal_bytes",
                "depth_total"):
        vals = [float(r[col]) for r in rows]
        out[col] = {"start": float(load[0][col]), "peak": max(vals),
                    "end_of_load": float(load[-1][col]), "after_drain": float(rows[-1][col])}
    return out


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot(rows, path):
    """Five panels over minutes: RSS, fds/connections, store files, depths, message rates.
    Returns False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib unavailable; no plot", file=sys.stderr)
        return False
    t = [float(r["t_s"]) / 60 for r in rows]
    load = load_rows(rows)
    n = len(load)
    col = lambda c, s=1: [float(r[c]) / s for r in rows]  # noqa: E731
    fig, ax = plt.subplots(5, 1, figsize=(10, 13), sharex=True)
    ax[0].plot(t, col("rss_kib", 1024), label="RSS")
    ax[0].set_ylabel("MiB")
    ax[1].plot(t, col("fds"), label="open fds")
    ax[1].plot(t, col("connections"), label="client connections", alpha=0.7)
    ax[1].plot(t, col("threads"), label="threads", alpha=0.7)
    ax[2].plot(t, col("db_bytes", 1024 * 1024), label="stompbox.db")
    ax[2].plot(t, col("wal_bytes", 1024 * 1024), label="stompbox.db-wal")
    ax[2].set_ylabel("MiB")
    for c, label in (("depth_work", "/queue/soak.work"), ("depth_tx", "/queue/soak.tx"),
                     ("depth_durable", "durable subscription"), ("unacked", "unacked (all)"),
                     ("depth_dlq", "DLQ")):
        ax[3].plot(t, col(c), label=label, linewidth=0.8)
    ax[3].set_ylabel("messages")
    for c, label in (("sent", "sent"), ("received", "received (deliveries)")):
        v = col(c)
        rate = [0.0] + [(v[i] - v[i - 1]) / max(1e-9, (t[i] - t[i - 1]) * 60)
                        for i in range(1, len(v))]
        ax[4].plot(t, rate, label=label, linewidth=0.6)
    ax[4].set_ylabel("messages/s")
    ax[4].set_xlabel("minutes")
    checks = {c["metric"]: c for c in growth(rows)}
    for a, metric in ((ax[0], "RSS"), (ax[1], "open fds"), (ax[2], "store (db + wal)"),
                      (ax[3], "queue depth (waiting + unacked)")):
        if n >= 4:
            q1 = float(load[n // 4]["t_s"]) / 60
            q2 = float(load[n // 2]["t_s"]) / 60
            q3 = float(load[3 * n // 4]["t_s"]) / 60
            a.axvspan(t[0], q1, color="0.9", label="warm-up (not judged)")
            c = checks.get(metric)
            if c and c["bound"] is not None and metric != "store (db + wal)":
                a.hlines(c["bound"], q3, float(load[-1]["t_s"]) / 60, colors="red",
                         linestyles="dashed", label="growth bound (last quarter)")
                a.axvspan(q1, q2, color="tab:green", alpha=0.06, label="second quarter")
    for a in ax:
        if len(load) < len(rows):
            a.axvline(float(load[-1]["t_s"]) / 60, color="0.4", linestyle=":",
                      label="producers stop, drain")
        a.legend(loc="upper left", fontsize=7)
        a.grid(alpha=0.3)
    ax[0].set_title("stompbox soak: broker process and store over time")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def fmt_int(v):
    return f"{int(round(v)):,}"


def mib(kib):
    return f"{kib / 1024:.1f}"


def write(summary, csv_path, doc):
    """The plot beside the CSV and, with `doc`, docs/soak.md (+ .png, .csv beside it)."""
    rows = read_csv(csv_path)
    png = os.path.splitext(csv_path)[0] + ".png"
    have_plot = plot(rows, png)
    if not doc:
        return
    base = os.path.splitext(doc)[0]
    shutil.copy(csv_path, base + ".csv")
    if have_plot:
        shutil.copy(png, base + ".png")
    with open(doc, "w") as f:
        f.write(markdown(summary, os.path.basename(base), have_plot))


def markdown(s, name, have_plot):
    fig = s.get("figures", {})
    streams = s.get("streams", {})
    conns = s.get("connections", {})
    verdict = "**passed**" if not s.get("failures") else "**FAILED**: " + "; ".join(
        s["failures"])
    lines = [
        "# Soak test",
        "",
        "<!-- Written by scripts/soak/report.py from the last `make soak`; edit the script,",
        "     not this file. -->",
        "",
        "`make soak` (default 30 minutes; `make soak SOAK_MINUTES=5` for a short one) builds",
        "the release broker, starts it on loopback ports chosen by the OS with a temp data dir",
        "and its own config, runs a mixed workload with reconnects against it, samples the",
        "broker every second, then stops the producers, drains everything and checks what",
        "every client was promised. It exits 1, naming each reason, on any loss, phantom or",
        "unbounded growth. Code: `scripts/soak/` (`soak.py` runs it, `workload.py` is the",
        "clients and the ledger, `wire.py` a raw STOMP client, `report.py` the criterion and",
        "this page). It is not part of `make test`: the growth criterion needs minutes of",
        "load to mean anything, and it measures a release build.",
        "",
        "## Workload",
        "",
        "One thread per client role; each opens connection after connection (about half of",
        "them offer heart-beats). About 200 persistent messages/s (36 of them in",
        "transactions) plus 100 non-persistent; `SOAK_RATE=2` in make (`--rate`) doubles them.",
        "",
        "| client | what it does | how its connections end |",
        "|---|---|---|",
        "| 2 queue producers | persistent SENDs to `/queue/soak.work`, 40/s each, a receipt "
        "on each (up to 20 unconfirmed) | every 5-30 s: DISCONNECT, or (40%) FIN or RST "
        "without it |",
        "| 1 queue producer | the same at 60/s without receipts, except on every 50th SEND "
        "(that RECEIPT confirms all earlier ones) | same |",
        "| transaction producer | 8/s: BEGIN, 1-8 persistent SENDs to `/queue/soak.tx`, "
        "COMMIT with a receipt; every 5th ABORTed; 2% of COMMITs are followed at once by an "
        "abrupt close (in doubt) | same |",
        "| durable topic producer | 30/s persistent to `/topic/soak.durable`, receipt each "
        "| every 10-60 s, 30% abrupt |",
        "| non-persistent topic producer | 100/s to `/topic/soak.np`, no receipts | same |",
        "| 2 client-individual consumers of `soak.work` | prefetch 50; ACK each (every 10th "
        "with a receipt), NACK 1%, never ACK 1% | every 5-20 s, 70% FIN or RST |",
        "| client (cumulative) consumer of `soak.work` | prefetch 100, one ACK per 20 "
        "messages or 0.3 s | same |",
        "| auto-ack consumer of `soak.work` | default prefetch (1000) | every 10-30 s, always "
        "DISCONNECT (an auto-ack client that drops its socket loses what was in it, by "
        "design) |",
        "| transactional consumer of `soak.tx` | client-individual, prefetch 100, ACKs in "
        "transactions of up to 10; every 5th ABORTed (then ACKed again, or left to the end of "
        "the connection); some left open when the connection drops | every 5-20 s, 70% "
        "abrupt |",
        "| durable subscriber | `client-id` + `activemq.subscriptionName` on "
        "`/topic/soak.durable`, client-individual like above | present 10-40 s, then away "
        "5-20 s; 50% abrupt |",
        "| 2 non-persistent subscribers | auto ack on `/topic/soak.np` | every 5-30 s, 50% "
        "abrupt |",
        "| churn | every 0.05-0.4 s: a bare TCP connect, a half-sent CONNECT, CONNECT + "
        "DISCONNECT, subscriptions dropped with the socket, an idle heart-beating connection, "
        "or a transaction of persistent SENDs left open by an abrupt close | mixed |",
        "",
        "## What it checks",
        "",
        "- **Loss**: every message a RECEIPT confirmed (its own, a later SEND's on the same",
        "  connection, its DISCONNECT's, or its transaction's COMMIT) was received at least",
        "  once (or sits in the DLQ, counted separately), for the queue, the transactional",
        "  queue and the durable subscription.",
        "- **Phantoms**: nothing received that was never sent; nothing from a transaction",
        "  that was ABORTed or never committed; transactions in doubt all or nothing; bodies",
        "  intact; a message seen again by a client carries `redelivered:true`; a",
        "  non-persistent subscription sees each message once and in its producer's order.",
        "- **Clean run**: no connection ended or refused by the broker (other than a",
        "  client-id still held for an instant after an abrupt close, retried and counted),",
        "  the store empty after the drain, and exit 0 on SIGTERM.",
        "- **Bounded growth**: the load phase is cut into quarters. The first is warm-up",
        "  and not judged. For each metric the peak of the last quarter must stay within a",
        "  margin of the peak of the second: `last_peak <= second_peak * (1 + rel) + abs`.",
        "  Peaks of equally long windows carry the same noise (a consumer away, a checkpoint",
        "  not yet run), so a bounded process passes, while anything that grows with time or",
        "  traffic shows as the distance between two windows half the run apart: in 30",
        "  minutes, an RSS leak of about 10 KiB/s (8 MiB + 10% over 15 minutes) fails. Queue",
        "  depth is also compared on average (consumers keep up). The slope of a",
        "  least-squares line over the second half is reported beside each, for information.",
        "",
        "| metric | rel | abs |",
        "|---|---|---|",
    ]
    for metric, _cols, unit, _scale, rel, slack, how in GROWTH:
        label = metric if how == "peak" else f"{metric}, mean over the quarter"
        lines.append(f"| {label} | {rel:.0%} | {slack} {unit} |")
    lines += [
        "",
        "## Last run",
        "",
        f"{s.get('started', '?')}, revision {s.get('revision', '?')}, "
        f"{s.get('minutes')} minutes of load ({s.get('load_s')} s) then a drain of "
        f"{s.get('drain_s', '?')} s; {s.get('cores')} shards, rate ×{s.get('rate')}; load "
        f"average {s.get('load_start')} at the start, {s.get('load_end')} at the end (other "
        f"builds share the 2 cores). Verdict: {verdict}.",
        "",
    ]
    if have_plot:
        lines += [f"![soak plot]({name}.png)", ""]
    lines += [f"Every sample: [`{name}.csv`]({name}.csv).", ""]
    if fig:
        lines += ["| broker | start | peak | end of load | after drain |", "|---|---|---|---|---|"]

        def row(label, col, f=fmt_int):
            v = fig.get(col)
            if v:
                lines.append(f"| {label} | {f(v['start'])} | {f(v['peak'])} | "
                             f"{f(v['end_of_load'])} | {f(v['after_drain'])} |")
        row("RSS (MiB)", "rss_kib", mib)
        row("open fds", "fds")
        row("threads", "threads")
        row("client connections", "connections")
        row("stompbox.db (MiB)", "db_bytes", lambda b: f"{b / MIB:.1f}")
        row("stompbox.db-wal (MiB)", "wal_bytes", lambda b: f"{b / MIB:.1f}")
        row("queue depth, waiting + unacked", "depth_total")
        lines.append("")
    if streams:
        lines += ["| stream | sent | confirmed | received (distinct) | deliveries | duplicates "
                  "| lost | phantom | dead-lettered |", "|---|---|---|---|---|---|---|---|---|"]
        for name_, v in streams.items():
            lines.append(f"| {name_} | {fmt_int(v['sent'])} | {fmt_int(v['confirmed'])} | "
                         f"{fmt_int(v['received_distinct'])} | {fmt_int(v['deliveries'])} | "
                         f"{fmt_int(v['duplicates'])} | {v['lost']} | {v['phantom']} | "
                         f"{v['dead_lettered']} |")
        lines.append("")
        tx = streams.get("tx", {})
        np_ = streams.get("np", {})
        lines += [
            f"- Unconfirmed messages (connection dropped before their RECEIPT): "
            + ", ".join(f"{k} {fmt_int(v['unconfirmed'])} ({fmt_int(v['unconfirmed_received'])}"
                        f" of them arrived)" for k, v in streams.items() if k != "np") + ".",
            f"- Transactions: {fmt_int(tx.get('aborted', 0))} messages of aborted or never "
            f"committed transactions, {tx.get('aborted_visible', 0)} of them delivered; "
            f"{tx.get('in_doubt_tx', 0)} transactions in doubt: {tx.get('in_doubt_kept', 0)} "
            f"kept whole, {tx.get('in_doubt_dropped', 0)} dropped whole, "
            f"{tx.get('in_doubt_half', 0)} half applied.",
            f"- Duplicates are redeliveries after a NACK or of messages unacked when a "
            f"connection dropped; without `redelivered:true`: "
            + ", ".join(f"{k} {v['unflagged_duplicates']}" for k, v in streams.items()
                        if k != "np") + ".",
            f"- Non-persistent topic: {np_.get('session_duplicates', 0)} duplicates within a "
            f"subscription, {np_.get('out_of_order', 0)} out of order (subscribers come and "
            f"go, so they miss messages by design).",
            "",
        ]
    if conns:
        lines += [
            f"Connections opened: {fmt_int(conns['opened'])} ("
            f"{fmt_int(conns['opened'] - conns['per_actor'].get('churn', 0))} by the "
            f"{len(conns['per_actor']) - 1} long-lived clients, each connection after its "
            f"first a reconnect; the rest by the churn client); ended with DISCONNECT "
            f"{fmt_int(conns['graceful'])}, with a FIN and no DISCONNECT "
            f"{fmt_int(conns['abrupt_fin'])}, with an RST {fmt_int(conns['abrupt_rst'])}; "
            f"client-id still held at reconnect (retried): {conns['client_id_busy_retries']}; "
            f"ended or refused by the broker unexpectedly: {conns['unexpected']}.",
            "",
        ]
    checks = s.get("growth", [])
    if checks:
        lines += ["| growth check | second quarter | last quarter | bound | slope, 2nd half "
                  "(per hour) | |", "|---|---|---|---|---|---|"]
        for c in checks:
            lines.append(f"| {c['metric']} ({c['unit']}) | {c['q2_peak']} | {c['q4_peak']} | "
                         f"{c['bound']} | {c.get('slope_per_hour', '')} | "
                         f"{'ok' if c['ok'] else '**FAIL**'} |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="redraw the soak plot and doc from a finished run")
    ap.add_argument("--summary", default="target/soak/summary.json")
    ap.add_argument("--csv", default="target/soak/soak.csv")
    ap.add_argument("--doc", default="")
    args = ap.parse_args()
    with open(args.summary) as f:
        summary = json.load(f)
    write(summary, args.csv, args.doc)


if __name__ == "__main__":
    main()
