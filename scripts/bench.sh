#!/usr/bin/env bash
# The stompbox scenario set: starts a release broker on a free loopback port with a temp data
# dir, runs `stompbox bench` scenarios against it, and prints one table with ratios against
# the raw SQLite commit rate measured in the same run on the same disk. The broker is stopped
# (SIGTERM, then SIGKILL after a grace period) on every exit path.
#
# Environment:
#   BENCH_FILL=1000000   messages for the persistent 1 KiB fill + drain scenario
#   BENCH_SECONDS=5      length of each timed scenario
#   BENCH_IDLE=2000      idle connections for the RSS-per-connection scenario (0 skips it)
#   BENCH_OUT=target/bench-results.jsonl   where the raw JSON lines go
#   CARGO=cargo
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_FILL=${BENCH_FILL:-1000000}
BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_IDLE=${BENCH_IDLE:-2000}
BENCH_OUT=${BENCH_OUT:-target/bench-results.jsonl}
CARGO=${CARGO:-cargo}
BIN=${CARGO_TARGET_DIR:-target}/release/stompbox

"$CARGO" build --release --quiet
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stompbox-bench.XXXXXX")
BROKER_PID=
ADDR=
# Idle connections need file descriptors; raise the soft limit if we may.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# True while PID runs (a zombie, exited but not yet reaped, does not count).
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

stop_broker() {
    if [ -n "$BROKER_PID" ] && alive "$BROKER_PID"; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do
            alive "$BROKER_PID" || break
            sleep 0.1
        done
        if alive "$BROKER_PID"; then
            echo "bench.sh: broker $BROKER_PID ignored SIGTERM; killing it" >&2
            kill -KILL "$BROKER_PID" 2>/dev/null || true
        fi
    fi
    [ -z "$BROKER_PID" ] || wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}

cleanup() {
    trap - EXIT
    stop_broker
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a broker with a fresh data dir; sets BROKER_PID, ADDR and STARTUP_MS.
start_broker() {
    local name=$1 data="$WORK/$1" out="$WORK/$1.out"
    mkdir -p "$data"
    local t0
    t0=$(date +%s%N)
    BROKER_LOG="$WORK/$name.log"
    "$BIN" serve --bind 127.0.0.1:0 --admin-bind 127.0.0.1:0 --data-dir "$data" \
        >"$out" 2>"$BROKER_LOG" &
    BROKER_PID=$!
    ADDR=
    for _ in $(seq 1 1000); do
        # The file appears only once the child has set up its redirection.
        ADDR=$(sed -n 's/^stompbox listening stomp=\([^ ]*\).*/\1/p' "$out" 2>/dev/null || true)
        [ -n "$ADDR" ] && break
        alive "$BROKER_PID" || { cat "$BROKER_LOG" >&2; exit 1; }
        sleep 0.01
    done
    [ -n "$ADDR" ] || { echo "bench.sh: broker did not start" >&2; exit 1; }
    STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}

# /proc/PID/status field in KiB.
proc_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$BROKER_PID/status"; }

# Value of a key in a flat one-line JSON object.
j() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }

# Runs one bench scenario, records its JSON and echoes it.
bench() {
    local label=$1
    shift
    echo "bench.sh: $label" >&2
    local line
    line=$("$BIN" bench --url "tcp://$ADDR" --json --no-progress "$@" 2>>"$WORK/bench.log") || {
        echo "bench.sh: scenario '$label' failed:" >&2
        tail -20 "$WORK/bench.log" >&2
        echo "bench.sh: broker log ($BROKER_LOG):" >&2
        tail -20 "$BROKER_LOG" >&2
        exit 1
    }
    printf '{"scenario":"%s",%s\n' "$label" "${line#\{}" >>"$BENCH_OUT"
    echo "$line"
}

# fmt NUMBER DIGITS
fmt() { awk -v v="$1" -v d="$2" 'BEGIN { if (v == "" || v == "null") print "-"; else printf "%.*f", d, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }
ms() { awk -v v="$1" 'BEGIN { if (v == "" || v == "null") print "-"; else printf "%.2f", v / 1000 }'; }

mkdir -p "$(dirname "$BENCH_OUT")"
: >"$BENCH_OUT"
ROWS=()
row() { ROWS+=("$(printf '%-34s %12s %9s %9s %9s %10s  %s' "$@")"); }

# ---- broker 1: throughput and latency scenarios ------------------------------------------
start_broker broker1
IDLE_RSS_KIB=$(proc_kib VmRSS)
FIRST_STARTUP_MS=$STARTUP_MS
S=$BENCH_SECONDS

base=$(bench "sqlite baseline" --mode sqlite --sqlite-baseline "$WORK/sqlite" \
    --sqlite-duration "${S}s" --size 256)
SQLITE=$(j "$base" sqlite_commits_per_s)
row "sqlite commit (WAL, sync=FULL)" "$(fmt "$SQLITE" 0)" "-" "-" "-" "1.00x" "commits/s, 256 B rows"

p1=$(bench "persistent queue, 1 sync producer" --destination /queue/bench.p1 \
    --persistent --send sync --producers 1 --consumers 1 --duration "${S}s")
P1=$(j "$p1" produced_per_s)
row "queue persistent 1 sync producer" "$(fmt "$P1" 0)" "$(fmt "$(j "$p1" produced_mb_per_s)" 2)" \
    "$(ms "$(j "$p1" confirm_p50_us)")" "$(ms "$(j "$p1" confirm_p99_us)")" "$(ratio "$P1" "$SQLITE")" \
    "receipt round trip; lost $(j "$p1" lost) dup $(j "$p1" duplicated)"

p8=$(bench "persistent queue, 8 sync producers" --destination /queue/bench.p8 \
    --persistent --send sync --producers 8 --consumers 1 --duration "${S}s")
P8=$(j "$p8" produced_per_s)
row "queue persistent 8 sync producers" "$(fmt "$P8" 0)" "$(fmt "$(j "$p8" produced_mb_per_s)" 2)" \
    "$(ms "$(j "$p8" confirm_p50_us)")" "$(ms "$(j "$p8" confirm_p99_us)")" "$(ratio "$P8" "$SQLITE")" \
    "$(ratio "$P8" "$P1") of 1 producer (group commit); lost $(j "$p8" lost) dup $(j "$p8" duplicated)"

# The disk's fsync rate drifts (other I/O on the host); measure again to show by how much.
again=$(bench "sqlite baseline again" --mode sqlite --sqlite-baseline "$WORK/sqlite" \
    --sqlite-duration "${S}s" --size 256)
row "sqlite commit, measured again" "$(fmt "$(j "$again" sqlite_commits_per_s)" 0)" "-" "-" "-" \
    "$(ratio "$(j "$again" sqlite_commits_per_s)" "$SQLITE")" "drift of the baseline during the run"

np=$(bench "non-persistent queue 1->1 async 256 B" --destination /queue/bench.np \
    --producers 1 --consumers 1 --size 256 --duration "${S}s")
row "queue 1->1 async 256 B" "$(fmt "$(j "$np" consumed_per_s)" 0)" \
    "$(fmt "$(j "$np" consumed_mb_per_s)" 2)" "$(ms "$(j "$np" latency_p50_us)")" \
    "$(ms "$(j "$np" latency_p99_us)")" "$(ratio "$(j "$np" consumed_per_s)" "$SQLITE")" \
    "consumed; produced $(fmt "$(j "$np" produced_per_s)" 0)/s; lost $(j "$np" lost) dup $(j "$np" duplicated)"

tp=$(bench "topic fan-out 1->8 async 256 B" --destination /topic/bench.fanout \
    --producers 1 --consumers 8 --size 256 --duration "${S}s")
row "topic 1->8 async 256 B" "$(fmt "$(j "$tp" consumed_per_s)" 0)" \
    "$(fmt "$(j "$tp" consumed_mb_per_s)" 2)" "$(ms "$(j "$tp" latency_p50_us)")" \
    "$(ms "$(j "$tp" latency_p99_us)")" "$(ratio "$(j "$tp" consumed_per_s)" "$SQLITE")" \
    "deliveries; produced $(fmt "$(j "$tp" produced_per_s)" 0)/s; lost $(j "$tp" lost) dup $(j "$tp" duplicated)"

lt=$(bench "latency at 2,000 msg/s" --destination /queue/bench.latency \
    --producers 1 --consumers 1 --size 256 --rate 2000 --duration "${S}s")
row "queue at 2,000 msg/s 256 B" "$(fmt "$(j "$lt" consumed_per_s)" 0)" \
    "$(fmt "$(j "$lt" consumed_mb_per_s)" 2)" "$(ms "$(j "$lt" latency_p50_us)")" \
    "$(ms "$(j "$lt" latency_p99_us)")" "-" \
    "p99.9 $(ms "$(j "$lt" latency_p999_us)") ms, max $(ms "$(j "$lt" latency_max_us)") ms"

if [ "$BENCH_IDLE" -gt 0 ]; then
    echo "bench.sh: $BENCH_IDLE idle connections" >&2
    before=$(proc_kib VmRSS)
    "$BIN" bench --url "tcp://$ADDR" --mode idle --idle-conns "$BENCH_IDLE" --threads 1 \
        --duration 3s --no-progress >"$WORK/idle.out" 2>"$WORK/idle.err" &
    IDLE_PID=$!
    for _ in $(seq 1 600); do
        grep -qs "idle connections open" "$WORK/idle.err" && break
        alive "$IDLE_PID" || break
        sleep 0.05
    done
    sleep 0.5
    with=$(proc_kib VmRSS)
    wait "$IDLE_PID" 2>/dev/null || true
    if grep -q "idle connections open" "$WORK/idle.err"; then
        per=$(awk -v a="$with" -v b="$before" -v n="$BENCH_IDLE" 'BEGIN { printf "%.1f", (a - b) / n }')
        row "$BENCH_IDLE idle connections" "-" "-" "-" "-" "-" \
            "$per KiB per connection (RSS $((before / 1024)) -> $((with / 1024)) MiB)"
    else
        row "$BENCH_IDLE idle connections" "-" "-" "-" "-" "-" "failed: $(tail -1 "$WORK/idle.err")"
    fi
fi
stop_broker

# ---- broker 2 (fresh): fill and drain, with the broker's peak RSS --------------------------
start_broker broker2
t0=$(date +%s%N)
fill=$(bench "fill $BENCH_FILL persistent 1 KiB" --destination /queue/bench.fill --mode fill \
    --persistent --size 1024 --producers 2 --count "$BENCH_FILL")
FILL_S=$(awk -v n="$(date +%s%N)" -v t="$t0" 'BEGIN { printf "%.1f", (n - t) / 1e9 }')
FILL_RSS=$(proc_kib VmRSS)
FILL_HWM=$(proc_kib VmHWM)
row "fill $BENCH_FILL persistent 1 KiB" "$(fmt "$(j "$fill" produced_per_s)" 0)" \
    "$(fmt "$(j "$fill" produced_mb_per_s)" 2)" "-" "-" \
    "$(ratio "$(j "$fill" produced_per_s)" "$SQLITE")" \
    "${FILL_S} s; broker RSS $((FILL_RSS / 1024)) MiB, peak $((FILL_HWM / 1024)) MiB"
t0=$(date +%s%N)
drain=$(bench "drain $BENCH_FILL" --destination /queue/bench.fill --mode drain \
    --consumers 1 --ack client --prefetch 1000 --count "$BENCH_FILL" --drain-timeout 30s)
DRAIN_S=$(awk -v n="$(date +%s%N)" -v t="$t0" 'BEGIN { printf "%.1f", (n - t) / 1e9 }')
DRAIN_HWM=$(proc_kib VmHWM)
row "drain $BENCH_FILL persistent 1 KiB" "$(fmt "$(j "$drain" consumed_per_s)" 0)" \
    "$(fmt "$(j "$drain" consumed_mb_per_s)" 2)" "-" "-" \
    "$(ratio "$(j "$drain" consumed_per_s)" "$SQLITE")" \
    "${DRAIN_S} s; peak RSS $((DRAIN_HWM / 1024)) MiB; lost $(j "$drain" lost) dup $(j "$drain" duplicated)"
stop_broker

# ---- the table ----------------------------------------------------------------------------
echo
echo "stompbox $("$BIN" --version | awk '{print $2}') on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ);" \
    "idle RSS $((IDLE_RSS_KIB / 1024)) MiB, ready in ${FIRST_STARTUP_MS} ms"
printf '%-34s %12s %9s %9s %9s %10s  %s\n' scenario "msg/s" "MB/s" "p50 ms" "p99 ms" "vs sqlite" notes
printf '%s\n' "${ROWS[@]}"
echo "raw results: $BENCH_OUT"
