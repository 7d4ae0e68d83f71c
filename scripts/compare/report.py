#!/usr/bin/env python3
"""Turns the raw results of scripts/bench.sh (one JSON object a line) into the side-by-side
table on stdout and, when asked, docs/benchmarks.md and its plot.

The table has one row per scenario and, for each other broker, the ratio that says how many
times better stompbox is: stompbox/other for throughput, other/stompbox for times, latency and
memory (so > 1 always means stompbox is ahead). Needs only the standard library, except the
plot (matplotlib).
"""

import argparse
import json
import os
import platform
import subprocess
import statistics
import sys
from collections import defaultdict

NAMES = {"stompbox": "stompbox", "activemq": "ActiveMQ", "rabbitmq": "RabbitMQ"}
HIGHER, LOWER, NONE = "higher", "lower", "none"


def get(rec, field, scale=1.0):
    if rec is None or rec.get("failed") or rec.get(field) is None:
        return None
    return rec[field] * scale


def values(by, key, field, scale=1.0):
    """The field over every successful run of a scenario."""
    vals = [get(r, field, scale) for r in by.get("runs", {}).get(key, [])]
    return [v for v in vals if v is not None]


def med(by, key, field, scale=1.0):
    """Median over the runs of a scenario (most run once; the non-persistent ones repeat)."""
    vals = values(by, key, field, scale)
    return statistics.median(vals) if vals else None


def peak_mib(by):
    recs = (by.get("fill"), by.get("drain"))
    vals = [r.get("hwm_kib") for r in recs if r and not r.get("failed")]
    vals = [v for v in vals if v is not None]
    return max(vals) / 1024 if vals else None


def startup_ms(by):
    vals = [r["startup_ms"] for r in by.get("start_all", []) if r.get("startup_ms") is not None]
    return min(vals) if vals else None


def failed_in(by, *keys):
    for k in keys:
        r = by.get(k)
        if r is not None and r.get("failed"):
            return r["failed"]
    return None


# (label, unit, which-is-better, value(by-scenario dict), scenario keys that can fail, plot group)
ROWS = [
    ("queue 1→1 async 256 B, non-persistent", "msg/s", HIGHER,
     lambda by: med(by, "np", "consumed_per_s"), ("np",), "throughput"),
    ("topic fan-out 1→8 async 256 B", "deliveries/s", HIGHER,
     lambda by: med(by, "topic", "consumed_per_s"), ("topic",), "throughput"),
    ("queue at 2,000 msg/s: latency p50", "ms", LOWER,
     lambda by: med(by, "latency", "latency_p50_us", 1e-3), ("latency",), "latency"),
    ("queue at 2,000 msg/s: latency p99", "ms", LOWER,
     lambda by: med(by, "latency", "latency_p99_us", 1e-3), ("latency",), "latency"),
    ("queue persistent, 1 sync producer", "msg/s", HIGHER,
     lambda by: med(by, "p1", "produced_per_s"), ("p1",), "throughput"),
    ("queue persistent, 8 sync producers", "msg/s", HIGHER,
     lambda by: med(by, "p8", "produced_per_s"), ("p8",), "throughput"),
    ("queue persistent, 64 sync producers", "msg/s", HIGHER,
     lambda by: med(by, "p64", "produced_per_s"), ("p64",), "throughput"),
    ("fill {fill} persistent 1 KiB (2 async producers)", "s", LOWER,
     lambda by: get(by.get("fill"), "wall_s"), ("fill",), None),
    ("drain {fill} (1 consumer, client ack)", "s", LOWER,
     lambda by: get(by.get("drain"), "wall_s"), ("drain",), None),
    ("peak RSS during fill + drain", "MiB", LOWER, peak_mib, ("fill", "drain"), "memory"),
    ("{idle} idle connections: RSS per connection", "KiB", LOWER,
     lambda by: get(by.get("idle_conns"), "per_conn_kib"), ("idle_conns",), "memory"),
    ("idle RSS (2 s after start)", "MiB", LOWER,
     lambda by: get(by.get("idle_rss"), "rss_kib", 1 / 1024), ("idle_rss",), "memory"),
    ("startup until the STOMP port accepts (best of 2)", "ms", LOWER, startup_ms, (), "startup"),
    ("raw SQLite commit rate, just before this broker", "commits/s", NONE,
     lambda by: get(by.get("sqlite"), "sqlite_commits_per_s"), ("sqlite",), None),
]

# Fill and drain rates for the plot (msg/s from the wall time).
PLOT_EXTRA = [
    ("fill 1 KiB\npersistent", lambda by, n: n / by["fill"]["wall_s"]
     if by.get("fill") and not by["fill"].get("failed") else None),
    ("drain 1 KiB\npersistent", lambda by, n: n / by["drain"]["wall_s"]
     if by.get("drain") and not by["drain"].get("failed") else None),
]

DETAIL_KEYS = ["np", "topic", "latency", "p1", "p8", "p64", "relaxed1", "relaxed8",
               "relaxed64", "npsync1", "npsync8", "npsync64", "fill", "drain", "fill_big",
               "drain_big"]
DETAIL_LABELS = {
    "np": "queue 1→1 async", "topic": "topic 1→8", "latency": "queue @2,000/s",
    "p1": "persistent 1 sync", "p8": "persistent 8 sync", "p64": "persistent 64 sync",
    "relaxed1": "persistent 1 sync, relaxed", "relaxed8": "persistent 8 sync, relaxed",
    "relaxed64": "persistent 64 sync, relaxed", "npsync1": "non-persistent 1 sync", "npsync8": "non-persistent 8 sync",
    "npsync64": "non-persistent 64 sync", "fill": "fill", "drain": "drain", "fill_big": "fill (issue 14)",
    "drain_big": "drain (issue 14)",
}


def fmt(v, unit):
    if v is None:
        return "—"
    if unit in ("msg/s", "deliveries/s", "commits/s"):
        return f"{v:,.0f}"
    if unit == "ms":
        return f"{v:.3f}" if v < 1 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"
    if unit in ("s", "MiB", "KiB"):
        return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"
    return f"{v}"


def ratio(sb, other, better):
    if better == NONE or sb is None or other is None or sb == 0 or other == 0:
        return None
    return sb / other if better == HIGHER else other / sb


def fmt_ratio(r):
    if r is None:
        return "—"
    return f"{r:.1f}×" if r < 100 else f"{r:.0f}×"


def load(path):
    by = defaultdict(dict)
    meta, order = {}, []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        rec = json.loads(line)
        b, s = rec["broker"], rec["scenario"]
        if b == "meta":
            meta = rec
            continue
        if b not in order and b != "-":
            order.append(b)
        if s == "start":
            by[b].setdefault("start_all", []).append(rec)
        by[b].setdefault("runs", {}).setdefault(s, []).append(rec)
        by[b][s] = rec
    return by, meta, order


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(meta):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": sh("nproc") or str(os.cpu_count()),
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()}",
        "memory": mem,
        "disk": meta.get("disk", "?"),
    }


def build(by, order, meta):
    """Rows as (label, unit, better, {broker: value}, {broker: failure}) for present brokers."""
    present = [b for b in order if "version" in by[b]]
    rows = []
    for label, unit, better, value, keys, _ in ROWS:
        label = label.format(fill=f"{meta.get('fill', 0):,}", idle=f"{meta.get('idle', 0):,}")
        vals, fails = {}, {}
        for b in present:
            vals[b] = value(by[b])
            if vals[b] is None:
                fails[b] = failed_in(by[b], *keys) or (
                    "did not start" if any(r.get("failed") for r in by[b].get("start_all", []))
                    else None)
        rows.append((label, unit, better, vals, fails))
    return present, rows


def text_table(present, rows):
    others = [b for b in present if b != "stompbox"]
    head = ["scenario", "unit"]
    for b in present:
        head.append(NAMES.get(b, b))
        if b != "stompbox" and "stompbox" in present:
            head.append(f"× vs {NAMES.get(b, b)}")
    out = [head]
    for label, unit, better, vals, fails in rows:
        line = [label, unit]
        for b in present:
            v = vals.get(b)
            line.append(fmt(v, unit) if v is not None or not fails.get(b) else "FAILED")
            if b in others and "stompbox" in present:
                line.append(fmt_ratio(ratio(vals.get("stompbox"), v, better)))
        out.append(line)
    return out


def main_ran(table):
    """Whether any scenario of the main table ran (not so with BENCH_CLIENTS_ONLY or
    BENCH_NET_ONLY): a value or a failure in a row."""
    return any(any(c not in ("—", "") for c in r[2:]) for r in table[1:]
               if not r[0].startswith("startup"))


def render_text(table):
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for n, r in enumerate(table):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_md(table):
    lines = ["| " + " | ".join(table[0]) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(table[0]) - 2)) + "|"]
    for r in table[1:]:
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def targets(by, present, rows):
    """Issue 5's targets: (text, met or None when not measurable, the numbers)."""
    val = {label: vals for label, _, _, vals, _ in rows}

    def find(prefix):
        for label, vals in val.items():
            if label.startswith(prefix):
                return vals
        return {}

    out = []

    def vs(prefix, other, need, what):
        vals = find(prefix)
        better = HIGHER
        sb, o = vals.get("stompbox"), vals.get(other)
        r = ratio(sb, o, better)
        name = NAMES[other]
        if other not in present:
            out.append((f"{what} ≥ {need}× {name}", None, f"{name} not run"))
        elif r is None:
            out.append((f"{what} ≥ {need}× {name}", None, "not measured (a run failed)"))
        else:
            out.append((f"{what} ≥ {need}× {name}", r >= need,
                        f"{r:.2f}× ({sb:,.0f} vs {o:,.0f} msg/s)"))

    vs("queue 1→1", "activemq", 5, "non-persistent queue throughput")
    vs("queue 1→1", "rabbitmq", 3, "non-persistent queue throughput")
    vs("topic fan-out", "activemq", 5, "topic fan-out")
    vs("queue persistent, 8", "activemq", 2, "persistent, 8 sync producers")

    def absolute(prefix, what, limit, unit, convert=lambda v: v, shown=None):
        v = find(prefix).get("stompbox")
        if v is None:
            out.append((what, None, "not measured"))
            return
        c = convert(v)
        out.append((what, c < limit, shown(v) if shown else f"{c:.3g} {unit}"))

    absolute("queue at 2,000 msg/s: latency p99", "p99 latency at 2,000 msg/s < 1 ms", 1.0, "ms",
             shown=lambda v: f"{v:.3f} ms")
    absolute("idle RSS", "idle RSS < 15 MB", 15.0, "MB", convert=lambda mib: mib * 1048576 / 1e6,
             shown=lambda mib: f"{mib * 1048576 / 1e6:.1f} MB ({mib:.1f} MiB)")
    absolute("{}".format(next((lbl for lbl in val if "idle connections" in lbl), "?")),
             "< 20 KiB per idle connection", 20.0, "KiB", shown=lambda v: f"{v:.1f} KiB")
    absolute("startup", "ready to accept in < 100 ms", 100.0, "ms", shown=lambda v: f"{v:.0f} ms")
    return out


def persistence_targets(by, present, meta):
    """Issue 14's targets, each against the raw SQLite baseline measured just before
    stompbox in the same run (`sqlite`), or against ActiveMQ in the same run."""
    sb = by.get("stompbox", {})
    base = sb.get("sqlite")
    out = []

    def against(what, need, value, ref, shown, ceiling=None):
        if value is None or ref is None or ref <= 0:
            out.append((what, None, "not measured"))
            return
        r = value / ref
        text = f"{r:.2f}× ({shown(value, ref)})"
        # The same producers without the disk (non-persistent, receipted): the most this
        # machine lets sync producers do whatever the store does.
        for key, label in ((f"relaxed{ceiling}", "durability relaxed (no fsync)"),
                           (f"npsync{ceiling}", "without the disk at all")):
            c = med(sb, key, "produced_per_s") if ceiling else None
            if c:
                text += f"; {label} {c / ref:.2f}× ({c:,.0f} msg/s)"
        out.append((what, r >= need, text))

    raw1 = get(base, "sqlite_commits_per_s")
    against("1 sync persistent producer ≥ 0.8× raw single-row commits", 0.8,
            med(sb, "p1", "produced_per_s"), raw1,
            lambda v, r: f"{v:,.0f} msg/s vs {r:,.0f} commits/s", 1)
    against("8 sync producers ≥ 0.6× raw rows/s at 8 rows per commit", 0.6,
            med(sb, "p8", "produced_per_s"), get(base, "sqlite_rows_per_s_8"),
            lambda v, r: f"{v:,.0f} msg/s vs {r:,.0f} rows/s", 8)
    if "activemq" in present:
        against("8 sync producers ≥ 10× ActiveMQ", 10, med(sb, "p8", "produced_per_s"),
                med(by["activemq"], "p8", "produced_per_s"),
                lambda v, r: f"{v:,.0f} vs {r:,.0f} msg/s")
    against("64 sync producers ≥ 0.5× raw rows/s at 64 rows per commit", 0.5,
            med(sb, "p64", "produced_per_s"), get(base, "sqlite_rows_per_s_64"),
            lambda v, r: f"{v:,.0f} msg/s vs {r:,.0f} rows/s", 64)
    p99, raw_p99 = get(sb.get("p1"), "confirm_p99_us"), get(base, "sqlite_commit_p99_us")
    if p99 is None or not raw_p99:
        out.append(("receipt p99, 1 sync producer ≤ 2× raw commit p99", None, "not measured"))
    else:
        out.append(("receipt p99, 1 sync producer ≤ 2× raw commit p99", p99 <= 2 * raw_p99,
                    f"{p99 / raw_p99:.2f}× ({p99:,.0f} vs {raw_p99:,.0f} µs)"))
    n = meta.get("fill_big") or 0
    for key, what in (("fill_big", "fill"), ("drain_big", "drain")):
        wall = get(sb.get(key), "wall_s")
        label = f"{what} {n:,} persistent 1 KiB ≥ 100k msg/s"
        if not n or not wall:
            out.append((label, None, "not measured"))
        else:
            out.append((label, n / wall >= 100_000, f"{n / wall:,.0f} msg/s ({wall:.1f} s)"))
    hwm = [get(sb.get(k), "hwm_kib") for k in ("fill_big", "drain_big")]
    hwm = [v for v in hwm if v is not None]
    out.append((f"peak RSS during that fill + drain < 100 MiB", (max(hwm) / 1024 < 100)
                if hwm else None, f"{max(hwm) / 1024:.1f} MiB" if hwm else "not measured"))
    runs = values(sb, "np", "consumed_per_s")
    amq = med(by.get("activemq", {}), "np", "consumed_per_s")
    if "activemq" in present and runs and amq:
        worst = min(runs)
        out.append(("non-persistent queue 1→1 ≥ 10× ActiveMQ in every run", worst >= 10 * amq,
                    f"slowest of {len(runs)} runs {worst / amq:.1f}× ({worst:,.0f} vs "
                    f"{amq:,.0f} msg/s, ActiveMQ's median)"))
    return out


def render_targets(ts, md):
    lines = []
    for what, met, numbers in ts:
        mark = "met" if met else ("not met" if met is False else "n/a")
        lines.append(f"| {what} | {numbers} | **{mark}** |" if md else
                     f"  {mark:8} {what}: {numbers}")
    if md:
        lines = ["| target | this run | |", "|---|---|---|"] + lines
    return "\n".join(lines)


SPREAD = [("queue 1→1 non-persistent", "np", "consumed_per_s", 1.0, "msg/s"),
          ("topic 1→8", "topic", "consumed_per_s", 1.0, "deliveries/s"),
          ("latency p99 at 2,000 msg/s", "latency", "latency_p99_us", 1e-3, "ms")]


def spread(by, present):
    """min – max over the repeated runs, one line per scenario."""
    lines = []
    for label, key, field, scale, unit in SPREAD:
        parts = []
        for b in present:
            vals = values(by[b], key, field, scale)
            if len(vals) > 1:
                parts.append(f"{NAMES.get(b, b)} {fmt(min(vals), unit)} – {fmt(max(vals), unit)}")
        if parts:
            lines.append(f"{label} ({unit}): " + "; ".join(parts))
    return lines


def anomalies(by, present):
    """Lost, duplicated and errored messages, and failures, one line each."""
    notes = []
    for b in present:
        for key, r in ((k, r) for k, rs in by[b].get("runs", {}).items() for r in rs
                       if k != "start"):
            name = NAMES.get(b, b)
            if len(by[b]["runs"][key]) > 1:
                key = f"{key} run {r.get('run')}"
            if r.get("failed") and key != "start":
                notes.append(f"{name} {key}: FAILED: {r['failed']}")
                continue
            if key.split()[0] not in DETAIL_KEYS and not key.startswith("warmup"):
                continue
            lost = r.get("lost") or 0 if not key.startswith("fill") else 0
            dup, err = r.get("duplicated") or 0, r.get("errors") or 0
            if lost or dup or err:
                first = f"; first error: {r.get('first_error')}" if r.get("first_error") else ""
                notes.append(f"{name} {key}: lost {lost}, duplicated {dup}, errors {err}{first}")
        for r in by[b].get("start_all", []):
            if r.get("failed"):
                notes.append(f"{NAMES.get(b, b)} start {r.get('instance')}: {r['failed']}")
    return notes


def details_md(by, present):
    cols = ["broker", "scenario", "produced/s", "consumed/s", "MB/s in", "p50 ms", "p99 ms",
            "p99.9 ms", "max ms", "receipt p50 ms", "receipt p99 ms", "lost", "dup", "wall s",
            "RSS after MiB", "peak RSS MiB"]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(cols) - 2)) + "|"]

    def ms(r, f):
        v = r.get(f)
        return "—" if v is None else f"{v / 1000:,.3f}" if v < 1000 else f"{v / 1000:,.1f}"

    def num(v, d=0):
        return "—" if v is None else f"{v:,.{d}f}"

    runs = [(b, key, r, len(by[b].get("runs", {}).get(key, [])))
            for b in present for key in DETAIL_KEYS for r in by[b].get("runs", {}).get(key, [])]
    for b, key, r, n in runs:
        label = DETAIL_LABELS[key] + (f" (run {r.get('run')})" if n > 1 else "")
        if r.get("failed"):
            lines.append(f"| {NAMES.get(b, b)} | {label} | FAILED: {r['failed']} |"
                         + " |" * (len(cols) - 3))
            continue
        lines.append("| " + " | ".join([
            NAMES.get(b, b), label, num(r.get("produced_per_s")),
            num(r.get("consumed_per_s")), num(r.get("produced_mb_per_s"), 2),
            ms(r, "latency_p50_us"), ms(r, "latency_p99_us"), ms(r, "latency_p999_us"),
            ms(r, "latency_max_us"), ms(r, "confirm_p50_us"), ms(r, "confirm_p99_us"),
            num(r.get("lost") if key != "fill" else None), num(r.get("duplicated")),
            num(r.get("wall_s"), 1),
            num(r["rss_kib"] / 1024 if r.get("rss_kib") else None, 1),
            num(r["hwm_kib"] / 1024 if r.get("hwm_kib") else None, 1)]) + " |")
    return "\n".join(lines)


def plot(by, present, rows, meta, mach, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"stompbox": "#d9622b", "activemq": "#4c72b0", "rabbitmq": "#55a868"}
    fill = meta.get("fill", 0)
    groups = {"throughput": [], "latency": [], "memory": [], "startup": []}
    for (label, unit, _better, vals, _f), spec in zip(rows, ROWS):
        if spec[5]:
            groups[spec[5]].append((label, unit, vals))
    for name, f in PLOT_EXTRA:
        groups["throughput"].append((name, "msg/s", {b: f(by[b], fill) for b in present}))

    panels = [
        ("throughput", "Throughput (msg/s, log scale; higher is better)"),
        ("latency", "Latency at 2,000 msg/s (ms, log scale; lower is better)"),
        ("memory", "Memory (log scale; lower is better)"),
        ("startup", "Startup until the STOMP port accepts (ms, log scale)"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(15, 9.5),
                             gridspec_kw={"width_ratios": [2.2, 1], "height_ratios": [1, 1]})
    for ax, (group, title) in zip(axes.flat, panels):
        items = groups[group]
        width = 0.8 / max(len(present), 1)
        for i, b in enumerate(present):
            xs, ys = [], []
            for j, (_label, _unit, vals) in enumerate(items):
                v = vals.get(b)
                if v is not None and v > 0:
                    xs.append(j + (i - (len(present) - 1) / 2) * width)
                    ys.append(v)
            bars = ax.bar(xs, ys, width * 0.95, label=NAMES.get(b, b), color=colours.get(b))
            for rect, v in zip(bars, ys):
                txt = f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"
                ax.annotate(txt, (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                            ha="center", va="bottom", fontsize=7, rotation=90,
                            xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(items)))
        ax.set_xticklabels([short_label(label, unit) for label, unit, _ in items], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.25)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{' vs '.join(NAMES.get(b, b) for b in present)} over STOMP, one run on"
                 f" {meta.get('started', '?')[:10]}: {mach['nproc']} cores ({mach['cpu']}),"
                 f" {mach['kernel']}; brokers and load generator share the cores",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def short_label(label, unit):
    table = {
        "queue 1→1 async 256 B, non-persistent": "queue 1→1\nnon-persistent",
        "topic fan-out 1→8 async 256 B": "topic 1→8\n(deliveries)",
        "queue persistent, 1 sync producer": "persistent\n1 sync producer",
        "queue persistent, 8 sync producers": "persistent\n8 sync producers",
        "queue at 2,000 msg/s: latency p50": "p50",
        "queue at 2,000 msg/s: latency p99": "p99",
        "peak RSS during fill + drain": "peak RSS\nfill + drain (MiB)",
        "idle RSS (2 s after start)": "idle RSS (MiB)",
        "startup until the STOMP port accepts (best of 2)": "startup",
    }
    if label in table:
        return table[label]
    if "idle connections" in label:
        return "per idle\nconnection (KiB)"
    return label


def commands_md(by, present, work):
    """Every command of the run per broker, in order, with the temp dir shown as $WORK."""
    lines = []
    for b in present:
        starts = [r for r in by[b].get("start_all", []) if r.get("cmd")]
        cmds = []
        if starts:
            if starts[0].get("setup"):
                cmds.append(starts[0]["setup"])
            cmds.append(starts[0]["cmd"] + " &")
        cmds += [r.get("cmd") for k, r in by[b].items()
                 if isinstance(r, dict) and k not in ("start", "version") and r.get("cmd")]
        if not cmds:
            continue
        lines.append(f"**{NAMES.get(b, b)}**\n\n```sh")
        lines += [c.replace(work, "$WORK") if work else c for c in cmds]
        lines.append("```\n")
    return "\n".join(lines)


def config_md(configs, work):
    out = []
    for name, lang in (("activemq.xml", "xml"), ("rabbitmq.conf", "ini")):
        p = os.path.join(configs or "", name)
        if configs and os.path.exists(p):
            text = open(p, encoding="utf-8").read().rstrip().replace(work or "$WORK", "$WORK")
            out.append(f"`{name}` (generated, as used for fill + drain):\n\n```{lang}\n"
                       f"{text}\n```\n")
    return "\n".join(out)


NOTES = """\
## What differs between the brokers

- **Same client, same scenarios.** Every figure comes from `stompbox bench` (STOMP 1.2, one TCP
  connection per producer and consumer, sequence numbers and send timestamps in headers),
  pointed at each broker in turn; RabbitMQ also gets `--login guest --passcode guest`. Each
  broker runs alone: one broker's scenarios, then the next's.
- **Configuration is each broker's default**, started by the script on loopback with a temp
  dir. stompbox: built-in defaults, one shard per core, SQLite (WAL) store. ActiveMQ 5.17
  (Debian `activemq`): a generated `activemq.xml` with KahaDB in the temp dir, default memory
  limits and JMX off (as Debian ships it), heap `-Xms64M -Xmx1G` (upstream `bin/env`); the
  throughput scenarios use the blocking `stomp://` connector (a thread per connection, the
  distribution's default) and the idle connections the `stomp+nio://` one (a selector pool,
  what ActiveMQ recommends for many connections). RabbitMQ 3.10 (Debian `rabbitmq-server`):
  `rabbitmq_stomp` enabled, `/queue/NAME` declares a durable classic queue, `/topic/NAME`
  binds an exclusive queue per subscriber to `amq.topic`; default memory and disk alarms.
- **Persistence means different things.** `persistent:true` is sent in the persistent
  scenarios (ActiveMQ's STOMP defaults to non-persistent without it). stompbox commits a
  persistent message to SQLite (group commit, `synchronous=FULL`) before it dispatches it and
  before the RECEIPT, always. ActiveMQ's KahaDB stores and dispatches at the same time
  (`concurrentStoreAndDispatchQueues`, on by default) and may drop the store write of a message
  that was acknowledged first; otherwise its receipt follows the journal fsync. RabbitMQ's
  receipt is a publisher confirm, which it may issue without an fsync when a consumer has
  already received and acknowledged the message. The 1- and 8-producer scenarios have a
  consumer that keeps up, so ActiveMQ and RabbitMQ may touch the disk less there than stompbox;
  fill (no consumer) makes every broker store every message.
- **Non-persistent, flat out** figures count what the consumers received over the whole run,
  including the backlog drained after the producers stop; brokers that take messages faster
  than they deliver them show a backlog as high latency in the details table. Latency
  (p50/p99) is only meaningful in the fixed-rate scenario.
- **Warm-up.** Each broker gets a non-persistent queue run and a topic run ({seconds} s each)
  after the memory measurements and before the timed scenarios, so the JVM has compiled its
  hot paths; they are not reported. ActiveMQ's figures still vary the most from run to run.
- **Memory** is VmRSS (and VmHWM for the peak) from `/proc/PID/status` of the broker process:
  the `java` process for ActiveMQ, `beam.smp` for RabbitMQ. Idle RSS is read 2 s after the
  port accepts; RSS per idle connection is (RSS with N connected, idle connections − RSS before)
  / N, measured on a fresh broker before any load. Fill + drain run on another fresh broker.
- **Startup** is from launching the process (the `java` command, the `rabbitmq-server`
  script, the `stompbox` binary) until a TCP connect to the STOMP port succeeds, polled every
  ~5 ms from bash; best of the two starts each broker gets. RabbitMQ's epmd and plugin set-up
  are done before the clock starts.

## Caveats

- **Two cores for everything.** Broker, load generator (2 client threads by default) and the
  rest of the machine share the cores, so the client's own cost is in every figure and
  multi-threaded brokers cannot spread out. Absolute numbers would be higher on a bigger
  machine; the ratios are the point.
- **fsync variance.** The persistent scenarios are bounded by the disk's fsync rate, which on
  this virtual disk drifts by tens of percent within minutes. The raw SQLite commit rate
  (WAL, `synchronous=FULL`, one row per commit) measured just before each broker's run is in
  the table, and once more at the end below it; compare the persistent rows with it.
- **One run, short scenarios** ({seconds} s each). Expect ±10–20 % between runs for the
  non-persistent figures and more for the persistent ones; ratios far from the target lines
  are safe to read, ratios near them are not.
- **stompbox's flat-out queue figure is its least stable.** Its single consumer is the
  bottleneck: produced equals consumed, the queue sits at its memory limit (about 40,000
  messages of 256 B) with the producer parked by flow control, hence the p50 of tens and p99
  of hundreds of milliseconds in that scenario. Between runs on this machine it has ranged
  from about 130,000 to 600,000 msg/s, which is why the non-persistent scenarios run
  {repeat} times and the table shows the median.
- **ActiveMQ drains slowly** in the drain scenario (a client-ack consumer with prefetch 1000
  acking every 500 messages, reading a 200,000-message backlog back from KahaDB): about
  4,000 msg/s in our runs, against its ~20,000 msg/s fill.
- **Defaults, not tuning.** None of the brokers is tuned (no larger prefetch, no ActiveMQ
  `producerWindowSize` or `optimizeAcknowledge`, no RabbitMQ lazy queues or quorum queues).
"""


NET_KINDS = [("np", "non-persistent"), ("p", "persistent")]
NET_HOPS = [(0, "one broker (sent and consumed on a)"), (1, "one bridge (a → b)"),
            (2, "two hops (a → b → c)")]


NET_SETS = [("net", "each broker on a core of its own"), ("netshared", "brokers sharing every core")]


def network_table(by):
    """Network-of-brokers rows: both sets (pinned, shared), ratios to one broker of the set."""
    sb = by.get("stompbox", {})
    if not any(k.startswith("net") for k in sb):
        return None
    out = [["network of brokers (stompbox)", "unit", "consumed", "× one broker", "lost", "dup"]]
    for prefix, sname in NET_SETS:
        for kind, kname in NET_KINDS:
            base = get(sb.get(f"{prefix}_{kind}_0"), "consumed_per_s")
            for hop, hname in NET_HOPS:
                rec = sb.get(f"{prefix}_{kind}_{hop}")
                if rec is None:
                    continue
                label = f"{kname} 256 B, {hname}; {sname}"
                if rec.get("failed"):
                    out.append([label, "msg/s", "FAILED", "—", "—", "—"])
                    continue
                v = get(rec, "consumed_per_s")
                r = v / base if v and base else None
                out.append([label, "msg/s", fmt(v, "msg/s"), "—" if r is None else f"{r:.2f}×",
                            f"{rec.get('lost', 0):,}", f"{rec.get('duplicated', 0):,}"])
            out += backlog_rows(sb, prefix, sname, kind, kname)
    return out


def backlog_rows(sb, prefix, sname, kind, kname):
    """The bridge alone: what one broker accepted (a fill of a while b was down) and the rate at
    which the bridge a → b then forwarded that backlog, with no client running."""
    fill, rec = sb.get(f"{prefix}_{kind}_fill"), sb.get(f"{prefix}_{kind}_backlog")
    if fill is None and rec is None:
        return []
    rows = []
    accepted = None if fill is None or fill.get("failed") else get(fill, "produced_per_s")
    label = f"{kname} 256 B, accepted by a alone (b down); {sname}"
    rows.append([label, "msg/s", "FAILED" if accepted is None else fmt(accepted, "msg/s"),
                 "1.00×" if accepted else "—", "—", "—"])
    label = f"{kname} 256 B, that backlog forwarded a → b (no client running); {sname}"
    if rec is None or rec.get("failed"):
        rows.append([label, "msg/s", "FAILED", "—", "—", "—"])
        return rows
    v = get(rec, "forwarded_per_s")
    r = v / accepted if v and accepted else None
    short = max(0, rec.get("expected", 0) - rec.get("forwarded", 0))
    rows.append([label, "msg/s", fmt(v, "msg/s"), "—" if r is None else f"{r:.2f}×",
                 f"{short:,}", "—"])
    return rows


def half_target(by, label, base_of, rate_of):
    """A ratio goal over both kinds (pinned set): rate_of(kind) / base_of(kind) >= 0.5, each a
    (scenario key, field) read from the stompbox results."""
    sb = by.get("stompbox", {})
    parts, met = [], True
    for kind, kname in NET_KINDS:
        base = get(sb.get(base_of(kind)[0]), base_of(kind)[1])
        rate = get(sb.get(rate_of(kind)[0]), rate_of(kind)[1])
        if not base or not rate:
            return None
        parts.append(f"{kname} {rate / base:.2f}×")
        met = met and rate / base >= 0.5
    return (label, met, "; ".join(parts))


def network_target(by):
    """Issue 11's target: a bridge forwards at >= 50 % of what one broker does, each broker
    with the same CPU (the pinned set, as on separate hosts)."""
    return half_target(by, "one bridge forwards ≥ 0.5× one broker's throughput (a core each)",
                       lambda k: (f"net_{k}_0", "consumed_per_s"),
                       lambda k: (f"net_{k}_1", "consumed_per_s"))


def backlog_target(by):
    """The same goal for the bridge alone: a backlog forwarded at >= 50 % of the rate one broker
    accepted it (pinned set)."""
    return half_target(by, "one bridge forwards a backlog at ≥ 0.5× what one broker accepts"
                       " (a core each)",
                       lambda k: (f"net_{k}_fill", "produced_per_s"),
                       lambda k: (f"net_{k}_backlog", "forwarded_per_s"))


# Real clients (scripts/compare/clients/; keys cl_CLIENT_MODE): (key, name, transport).
CL_CLIENTS = [("sb", "stompbox bench (Rust)", "TCP"), ("py", "stomp.py", "TCP"),
              ("rb", "stomp gem", "TCP"), ("js", "stompit", "TCP"),
              ("jsws", "@stomp/stompjs over ws", "WebSocket")]
CL_MODES = [("np", "non-persistent"), ("p", "persistent, RECEIPT per SEND")]


def cl_runs(by_b, key):
    return [r for r in by_b.get("runs", {}).get(key, []) if not r.get("failed")]


def cl_rate(r):
    """msg/s: the client scripts' msg_per_s, `stompbox bench`'s consumed_per_s."""
    return r.get("msg_per_s", r.get("consumed_per_s"))


def cl_per_100k(r, field):
    n = r.get("received", r.get("consumed"))
    v = r.get(field)
    return v / n * 1e5 if v is not None and n else None


def cl_busy(r):
    """The client's CPU time over the timed window (messages ÷ msg/s): 1.0 is one core."""
    n, rate, cpu = r.get("received", r.get("consumed")), cl_rate(r), r.get("client_cpu_s")
    return cpu / (n / rate) if n and rate and cpu is not None else None


def cl_med(by_b, key, f):
    vals = [v for v in (f(r) for r in cl_runs(by_b, key)) if v is not None]
    return statistics.median(vals) if vals else None


def cl_failed(by_b, key):
    fails = [r["failed"] for r in by_b.get("runs", {}).get(key, []) if r.get("failed")]
    return fails[0] if fails and not cl_runs(by_b, key) else None


def cl_brokers(by, present):
    return [b for b in present if any(k.startswith("cl_") for k in by[b].get("runs", {}))]


def cl_cell(by_b, key, f, unit):
    v = cl_med(by_b, key, f)
    if v is None:
        return "FAILED" if cl_failed(by_b, key) else "—"
    if unit == "cpu":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if unit == "cores":
        return f"{v:.2f}"
    if unit == "us":
        return fmt(v / 1000, "ms")
    return fmt(v, unit)


def clients_tables(by, present):
    """Three tables for the real clients, or None when none ran: throughput with the CPU
    split per broker; round-trip latency; WebSocket against TCP on stompbox."""
    brokers = cl_brokers(by, present)
    if not brokers:
        return None
    sb = "stompbox" in brokers
    others = [b for b in brokers if b != "stompbox"]
    head = ["client", "transport", "messages"]
    for b in brokers:
        head.append(f"{NAMES.get(b, b)} msg/s")
    if sb:
        head += [f"× vs {NAMES.get(b, b)}" for b in others]
    for b in brokers:
        head += [f"{NAMES.get(b, b)} CPU s/100k: client", "broker", "client cores"]
    thr = [head]
    for mode, mname in CL_MODES:
        for c, cname, transport in CL_CLIENTS:
            key = f"cl_{c}_{mode}"
            if not any(by[b].get("runs", {}).get(key) for b in brokers):
                continue
            row = [cname, transport, mname]
            for b in brokers:
                row.append(cl_cell(by[b], key, cl_rate, "msg/s"))
            if sb:
                for b in others:
                    row.append(fmt_ratio(ratio(cl_med(by["stompbox"], key, cl_rate),
                                               cl_med(by[b], key, cl_rate), HIGHER)))
            for b in brokers:
                row.append(cl_cell(by[b], key, lambda r: cl_per_100k(r, "client_cpu_s"), "cpu"))
                row.append(cl_cell(by[b], key, lambda r: cl_per_100k(r, "broker_cpu_s"), "cpu"))
                row.append(cl_cell(by[b], key, cl_busy, "cores"))
            thr.append(row)

    head = ["client", "transport", "how"]
    for b in brokers:
        head += [f"{NAMES.get(b, b)} p50 ms", "p99 ms"]
    if sb:
        head += [f"p50 × vs {NAMES.get(b, b)}" for b in others]
    lat = [head]
    for c, cname, transport in CL_CLIENTS:
        key = f"cl_{c}_lat"
        if not any(by[b].get("runs", {}).get(key) for b in brokers):
            continue
        how = "1,000 msg/s, fixed rate" if c == "sb" else "one in flight (ping-pong)"
        row = [cname, transport, how]
        for b in brokers:
            row.append(cl_cell(by[b], key, lambda r: r.get("latency_p50_us"), "us"))
            row.append(cl_cell(by[b], key, lambda r: r.get("latency_p99_us"), "us"))
        if sb:
            for b in others:
                row.append(fmt_ratio(ratio(cl_med(by["stompbox"], key,
                                                  lambda r: r.get("latency_p50_us")),
                                           cl_med(by[b], key, lambda r: r.get("latency_p50_us")),
                                           LOWER)))
        lat.append(row)

    ws = None
    s = by.get("stompbox", {})
    if sb and cl_runs(s, "cl_jsws_np"):
        ws = [["stompbox", "unit", "stompjs over WebSocket", "stompit over TCP", "WS ÷ TCP",
               "stompbox bench over TCP"]]
        items = [("non-persistent throughput", "msg/s", "np", cl_rate),
                 ("persistent, RECEIPT per SEND", "msg/s", "p", cl_rate),
                 ("round trip p50", "ms", "lat", lambda r: r.get("latency_p50_us")),
                 ("round trip p99", "ms", "lat", lambda r: r.get("latency_p99_us")),
                 ("client CPU per 100k non-persistent", "s", "np",
                  lambda r: cl_per_100k(r, "client_cpu_s")),
                 ("broker CPU per 100k non-persistent", "s", "np",
                  lambda r: cl_per_100k(r, "broker_cpu_s"))]
        for label, unit, mode, f in items:
            scale = 1e-3 if unit == "ms" else 1.0
            vals = [cl_med(s, f"cl_{c}_{mode}", f) for c in ("jsws", "js", "sb")]
            vals = [None if v is None else v * scale for v in vals]
            r = vals[0] / vals[1] if vals[0] and vals[1] else None
            cells = [fmt(v, unit) if unit != "s" or v is None else f"{v:.2f}" for v in vals]
            ws.append([label, unit, cells[0], cells[1], "—" if r is None else f"{r:.2f}",
                       cells[2] + (" (fixed 1,000 msg/s)" if mode == "lat" and vals[2] else "")])
    return thr, lat, ws


def clients_versions(by, present):
    seen = {}
    for b in cl_brokers(by, present):
        for key, runs in by[b].get("runs", {}).items():
            for r in runs:
                if key.startswith("cl_") and r.get("client"):
                    seen.setdefault(r["client"], None)
    return list(seen)


def clients_skips(by, present):
    out = []
    for b in present:
        for key, what in (("cl_unavailable", "no real-client scenarios"),
                          ("cl_ws_unavailable", "no WebSocket client scenarios")):
            r = by[b].get(key)
            if r:
                out.append(f"{NAMES.get(b, b)}: {what}: {r.get('reason')}")
    return out


CLIENT_NOTES = """\
How to read these tables. Each figure is the median of {repeat} runs. One client process
runs one producer connection and one consumer connection (auto ack) on one queue, 256 B
bodies, heart-beats off; the same scripts run against every broker, one broker after the
other, on the first broker instance after its timed scenarios (so ActiveMQ's JVM is warm).
Non-persistent: {n:,} messages sent flat out (the producer waits only when its socket's
buffer is full). Persistent: {p:,} messages with `persistent:true` and a `receipt` header,
the producer waiting for each RECEIPT. msg/s is messages received by the consumer over the
time from the first SEND to the last message received. **CPU s/100k** is CPU time (user +
sys) per 100,000 messages: *client* is the client process (getrusage, `Process.times`,
`process.cpuUsage`: every thread) and *broker* the broker process (`/proc/PID/stat`: the
`java` process for ActiveMQ), both over that same window, read by the client script itself;
for `stompbox bench` both are read by bench.sh around the whole process. *Client cores* is
the client's CPU time divided by that window: 1.00 is one core kept busy. Python and Ruby
run their own code on one core at a time (GIL, GVL) and Node runs JavaScript on one thread;
their garbage collector and I/O threads can take it a little past 1.00. When the client's
CPU per message is many times the broker's and the client keeps about a core busy, the
client library is the bottleneck: a faster broker changes the msg/s little, and the ratio
between brokers in the top table is far below the `stompbox bench` one. The broker column then says what each broker spends per message for
the same client. stompit gets `setNoDelay(true)` on its socket (it sets it itself only with
heart-beats; without, each receipted SEND waits ~40 ms for a delayed ACK); the stomp gem and
ws disable Nagle by default, and stomp.py writes each frame in one call. The persistent rows
are bound by the disk's fsync rate more than by either side (compare the raw SQLite commit
rate measured before each broker), and the broker column there includes that work.

Round trips: one message in flight: the producer sends the next message once the consumer
has the previous one, so p50/p99 is the unloaded send → receive time on one clock, client
libraries included. `stompbox bench` has no such mode: its row is send → receive at a fixed
1,000 msg/s (its own clock in a header), which is also unloaded at that rate.

WebSocket against TCP: @stomp/stompjs speaks only WebSocket and stompit only TCP, so the
third table compares two different Node libraries on the same broker and machine; the
difference is the transport *and* the library. `stompbox bench` (Rust, TCP) is the broker's
own figure for the same scenario.
"""


def auth_lines(by):
    """The authentication-cost rows (scripts/compare/auth_bench.py), or []."""
    a = by.get("stompbox", {}).get("auth")
    if not a or a.get("failed"):
        return []
    anon = a["anonymous_per_s"]
    return [
        ("CONNECT without login (no check): the baseline", a["anonymous_per_s"],
         a["anonymous_cpu_ms"], 1.0),
        (f"first CONNECT of each of {a['users']} users (one argon2id check each)",
         a["cold_per_s"], a["cold_cpu_ms"], a["cold_per_s"] / anon),
        ("the same users again (verified credentials remembered)", a["warm_per_s"],
         a["warm_cpu_ms"], a["warm_per_s"] / anon),
        ("wrong passcode (a full check, then refused)", a["wrong_per_s"], a["wrong_cpu_ms"],
         a["wrong_per_s"] / anon),
    ]


def auth_md(by):
    lines = auth_lines(by)
    if not lines:
        return []
    a = by["stompbox"]["auth"]
    out = ["## Authentication cost (stompbox)", "",
           f"Connections a second with {a['threads']} client threads, each a new TCP connection"
           " sending CONNECT and waiting for CONNECTED; broker CPU per connection from"
           " /proc/PID/stat; argon2id m=19456 KiB, t=2, p=1 (docs/security.md). The checks run on"
           f" the broker's verifier threads (one per core, {a['cores']} here), never on a shard"
           " thread.", "",
           "| CONNECT | connections/s | broker CPU ms each | × baseline |",
           "|---|---:|---:|---:|"]
    out += [f"| {name} | {per_s:,.1f} | {cpu:.3f} | {ratio:.3f}× |"
            for name, per_s, cpu, ratio in lines]
    return out + [""]


def write_doc(path, plot_path, by, meta, order, present, table, ts, notes, configs):
    mach = machine(meta)
    versions = [by[b]["version"]["version"] for b in order if "version" in by[b]]
    skipped = [f"{NAMES.get(b, b)} ({by[b]['unavailable'].get('reason')})"
               for b in order if "unavailable" in by[b]]
    sq_end = get(by.get("-", {}).get("sqlite_end"), "sqlite_commits_per_s")
    doc = [
        "# Benchmarks: stompbox, ActiveMQ and RabbitMQ side by side",
        "",
        "Generated by `make bench` (`scripts/bench.sh`, `scripts/compare/`); edit those, not this"
        " file. Every broker was started by the script on this machine and measured with the"
        " same `stompbox bench` client in one run (the real-client section: with the same client"
        " scripts).",
        "",
        f"- **Date:** {meta.get('started', '?')} to {meta.get('finished', '?')} (UTC)",
        f"- **Machine:** {mach['nproc']} cores (`nproc`), {mach['cpu']}, {mach['memory']} RAM,"
        f" {mach['kernel']}; temp dirs on `{mach['disk']}`; load average (1, 5, 15 min)"
        f" {meta.get('load_start', '?')} at the start, {meta.get('load_end', '?')} at the end",
        "- **Brokers:** " + "; ".join(versions),
    ]
    if skipped:
        doc.append("- **Skipped:** " + "; ".join(skipped))
    doc += [
        f"- **Settings:** BENCH_SECONDS={meta.get('seconds')} BENCH_REPEAT={meta.get('repeat')}"
        f" BENCH_FILL={meta.get('fill')} BENCH_IDLE={meta.get('idle')}"
        + (f" BENCH_CLIENTS_N={meta.get('clients_n')} BENCH_CLIENTS_P={meta.get('clients_p')}"
           f" BENCH_CLIENTS_LAT={meta.get('clients_lat')}"
           f" BENCH_CLIENTS_REPEAT={meta.get('clients_repeat')}" if meta.get("clients") else "")
        + (" BENCH_CLIENTS_ONLY=1" if meta.get("clients_only") else ""),
        "",
    ]
    main = main_ran(table)
    if main:
        doc += [
            "## Results",
            "",
            "`×` columns: how many times better stompbox is than that broker: stompbox/other for"
            " throughput (msg/s), other/stompbox for times, latency and memory; above 1 means"
            " stompbox is ahead.",
            "",
            render_md(table),
            "",
        ]
    if sq_end is not None:
        doc += [f"Raw SQLite commit rate measured again at the end of the run: {sq_end:,.0f}"
                " commits/s.", ""]
    spreads = spread(by, present)
    if spreads:
        doc += [f"The non-persistent scenarios ran {meta.get('repeat')} times each, in rounds; the"
                " table shows the median. Range over the runs:", ""]
        doc += [f"- {line}" for line in spreads] + [""]
    if plot_path:
        doc += ["![throughput, latency, memory and startup per broker]"
                f"({os.path.basename(plot_path)})", ""]
    if main:
        doc += ["## Issue 5 targets", "", render_targets(ts, md=True), ""]
        doc += ["## Issue 14 targets: persistent messaging", "",
                "Ratios to the raw SQLite baseline measured just before stompbox in this run"
                " (single-row commits, and commits of 8 and 64 rows: `stompbox bench --mode"
                " sqlite`), or to ActiveMQ in this run. Next to the sync producer targets, the"
                " same producers on a stompbox with `durability = \"relaxed\"` (no fsync per"
                " commit) and without the disk at all (non-persistent, still receipted): how"
                " much of each target this machine allows whatever the store does."
                " docs/perf/README.md says where a persistent SEND's time goes and which"
                " levers were tried.", "",
                render_targets(persistence_targets(by, present, meta), md=True), ""]
    net = network_table(by)
    if net:
        doc += ["## Network of brokers", "",
                "One producer sends to broker a; one consumer takes the messages on a itself,"
                " on b (one static bridge) or on c (two hops), counted until the last arrived;"
                " `×` is the ratio to the one-broker figure of this run (docs/network.md). The"
                " backlog rows time the bridge alone: a is filled while b is down (what one broker"
                " accepts), then b starts and the bridge forwards the backlog with no client"
                " running; `×` is the ratio to that fill, and the lost column counts what was"
                " not forwarded.", "",
                render_md(net), ""]
        nt = [t for t in (network_target(by), backlog_target(by)) if t]
        if nt:
            doc += [render_targets(nt, md=True), ""]
    cl = clients_tables(by, present)
    if cl:
        thr, lat, ws = cl
        doc += ["## Real clients: stomp.py, the stomp gem, stompit, @stomp/stompjs", "",
                "Client libraries: " + "; ".join(clients_versions(by, present)) + ".", "",
                "### Throughput and where the CPU goes", "",
                "`×`: stompbox msg/s ÷ the other broker's, same client.", "",
                render_md(thr), "", "### Round-trip latency", "", render_md(lat), ""]
        if ws:
            doc += ["### WebSocket against TCP (stompbox)", "", render_md(ws), ""]
        doc += [f"- {line}" for line in clients_skips(by, present)]
        doc += ["", CLIENT_NOTES.format(repeat=meta.get("clients_repeat", "?"),
                                        n=meta.get("clients_n", 0), p=meta.get("clients_p", 0)),
                ""]
    doc += auth_md(by)
    if notes:
        doc += ["## Lost, duplicated, failed", ""] + [f"- {n}" for n in notes] + [""]
    doc += ["## Details", "",
            "Every measured scenario: latency is send timestamp to receipt by the consumer;"
            " receipt is the SEND → RECEIPT round trip of sync producers; RSS after is the"
            " broker's VmRSS when the scenario ended; peak is VmHWM since the broker started.",
            "", details_md(by, present), "",
            NOTES.format(seconds=meta.get("seconds"), repeat=meta.get("repeat")),
            "## How it was run", "",
            "```sh\nmake bench    # cargo bench --bench codec, then scripts/bench.sh\n```", "",
            "`scripts/bench.sh` installs the brokers with `apt-get install -y activemq"
            " rabbitmq-server` when they are missing (and matplotlib into `.venv` for the plot),"
            " then ran these commands (`$WORK` is the run's temp dir; ports change per run):",
            "",
            commands_md(by, present, meta.get("work")),
            config_md(configs, meta.get("work")),
            ]
    text = "\n".join(doc).rstrip() + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", required=True)
    ap.add_argument("--doc")
    ap.add_argument("--plot")
    ap.add_argument("--configs")
    args = ap.parse_args()

    by, meta, order = load(args.results)
    present, rows = build(by, order, meta)
    table = text_table(present, rows)
    ts = targets(by, present, rows)
    notes = anomalies(by, present)
    mach = machine(meta)

    print()
    print(f"{' vs '.join(NAMES.get(b, b) for b in present)}, {meta.get('started', '?')}:"
          f" {mach['nproc']} cores"
          f" ({mach['cpu']}), {mach['kernel']}")
    for b in order:
        if "version" in by[b]:
            print(f"  {by[b]['version']['version']}")
        elif "unavailable" in by[b]:
            print(f"  {NAMES.get(b, b)}: skipped ({by[b]['unavailable'].get('reason')})")
    print("× = how many times better stompbox is (throughput: stompbox/other; time, latency,"
          " memory: other/stompbox)")
    if main_ran(table):
        print()
        print(render_text(table))
    sq_end = get(by.get("-", {}).get("sqlite_end"), "sqlite_commits_per_s")
    if sq_end is not None:
        print(f"raw SQLite commit rate at the end of the run: {sq_end:,.0f} commits/s")
    spreads = spread(by, present)
    if spreads:
        print(f"median of {meta.get('repeat')} runs; range over the runs:")
        for line in spreads:
            print(f"  {line}")
    if main_ran(table):
        print()
        print("issue 5 targets:")
        print(render_targets(ts, md=False))
    net = network_table(by)
    if net:
        print()
        print(render_text(net))
        nt = [t for t in (network_target(by), backlog_target(by)) if t]
        if nt:
            print(render_targets(nt, md=False))
    cl = clients_tables(by, present)
    if cl:
        thr, lat, ws = cl
        print()
        print("real clients (median of runs; CPU s/100k: client process / broker process):")
        for v in clients_versions(by, present):
            print(f"  {v}")
        print(render_text(thr))
        print()
        print(render_text(lat))
        if ws:
            print()
            print(render_text(ws))
        for line in clients_skips(by, present):
            print(f"  {line}")
    auth = auth_lines(by)
    if auth:
        print()
        print("authentication cost (connections/s, broker CPU ms each, × baseline):")
        for name, per_s, cpu, ratio in auth:
            print(f"  {name}: {per_s:,.1f}/s, {cpu:.3f} ms, {ratio:.3f}×")
    if notes:
        print()
        print("lost, duplicated, failed:")
        for n in notes:
            print(f"  {n}")

    plot_path = None
    if args.plot and main_ran(table):
        try:
            plot(by, present, rows, meta, mach, args.plot)
            plot_path = args.plot
            print(f"plot: {args.plot}")
        except Exception as e:  # the table matters more than the picture
            print(f"report.py: no plot ({e})", file=sys.stderr)
    if args.doc:
        write_doc(args.doc, plot_path, by, meta, order, present, table, ts, notes, args.configs)
        print(f"report: {args.doc}")


if __name__ == "__main__":
    main()
