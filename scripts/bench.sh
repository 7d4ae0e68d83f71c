#!/usr/bin/env bash
# The scenario set, side by side: the release stompbox and, when they are installed or can be
# (Debian's `activemq` and `rabbitmq-server`), ActiveMQ and RabbitMQ, each started by us on
# loopback with a temp dir (drivers in scripts/compare/) and measured one after another with the
# same `stompbox bench` client. Prints one table with ratios and writes docs/benchmarks.md and
# docs/benchmarks.png (scripts/compare/report.py; matplotlib is installed into .venv when
# missing). A broker that cannot be installed or started is reported and skipped; every broker
# process we start is stopped on every exit path. Exits 1 if a stompbox scenario failed.
#
# Per broker: start (time until the STOMP port accepts), idle RSS, RSS per idle connection, a
# warm-up (a queue and a topic run, not reported: lets the JVM compile its hot paths), the
# timed throughput and latency scenarios, stop; then a fresh start for fill + drain. The raw
# SQLite commit rate on this disk is measured before each broker and once more at the end,
# since fsync rates drift. For stompbox also, as references for issue 14's persistent
# targets: the 1/8/64 sync producer scenarios without the disk (non-persistent, receipted)
# and on a broker with `durability = "relaxed"` (no fsync per commit).
#
# Network of brokers (stompbox only): three brokers a → b → c with static bridges
# (network_ttl 2): a forwards /queue/bench.hop1.> and /queue/bench.hop2.> to b, b forwards
# /queue/bench.hop2.> to c. One producer sends to a; one consumer takes the messages on a
# itself from /queue/bench.hop0.* (bridged nowhere: the single-broker figure of this run), on
# b from /queue/bench.hop1.* (one bridge) or on c from /queue/bench.hop2.* (two hops). Each
# destination is bridged only up to its consumer's broker, so no bridge competes with it. The
# table gives each as a ratio to the single-broker figure. The set runs twice: first with each
# broker pinned to a core of its own (taskset; a and c share core 0 on a 2-core box), as
# brokers on separate hosts run, which is what the issue's goal compares (scenario keys
# net_*); then with every broker free to use every core (netshared_*), where the bridged
# brokers share the cores that the single broker had to itself.
# Each set also times the bridge alone (net_backlog): b is stopped, a is filled with messages
# for b (the fill's rate is what one broker accepts), b is started again and the bridge a → b
# forwards the backlog with no client running, timed from a's /api/network. The network
# brokers allow 256 MiB per destination in memory, so the non-persistent backlog fits.
#
# Real clients (stompbox and ActiveMQ; BENCH_CLIENTS_BROKERS): on the first instance, after
# the timed scenarios (the JVM is warm), one producer and one consumer (auto ack) in one
# client process send 256 B messages to a queue of their own, with the client libraries
# applications use (scripts/compare/clients/): stomp.py (py_bench.py), the stomp gem
# (rb_bench.rb), stompit over TCP and @stomp/stompjs over WebSocket (js_bench.js), next to
# `stompbox bench` itself (Rust) with the same counts. Each prints msg/s and its own CPU
# seconds and reads the broker's from /proc/PID/stat over the same window, so the report can
# say which side was the bottleneck. Per client: BENCH_CLIENTS_N non-persistent messages
# flat out; BENCH_CLIENTS_P persistent ones, each sent with a receipt that the producer waits
# for; BENCH_CLIENTS_LAT round trips, one message in flight (`stompbox bench`: the same count
# at a fixed 1,000 msg/s, as it has no round-trip mode). The WebSocket client runs where the
# broker has a WebSocket listener (stompbox's; Debian's ActiveMQ has none). The client
# libraries are installed with `make clients-deps` (.venv, Debian ruby-stomp, npm ci).
#
# Environment:
#   BENCH_BROKERS="stompbox activemq rabbitmq"   which brokers, in this order
#   BENCH_SECONDS=5      length of each timed scenario
#   BENCH_REPEAT=3       runs of the non-persistent scenarios (queue, topic, latency), in
#                        rounds; the table shows the median (they vary run to run: see the docs)
#   BENCH_FILL=200000    messages for the persistent 1 KiB fill + drain scenario
#   BENCH_FILL_BIG=1000000  messages for stompbox's own fill + drain of issue 14 (a fresh
#                        broker; its peak RSS and rates are the targets; 0 skips it)
#   BENCH_IDLE=2000      idle connections for the RSS-per-connection scenario (0 skips it)
#   BENCH_NET=50000      messages per non-persistent network-of-brokers scenario (0 skips them)
#   BENCH_NET_P=10000    messages per persistent network-of-brokers scenario
#   BENCH_NET_ONLY=      1: only the network-of-brokers scenarios (no other broker, no baselines)
#   BENCH_CLIENTS=1      0: no real-client scenarios
#   BENCH_CLIENTS_ONLY=  1: per broker only a warm-up and the real-client scenarios
#   BENCH_AUTH=1         0 skips the authentication-cost scenario (stompbox only:
#                        scripts/compare/auth_bench.py, connections/s with and without
#                        argon2id checks; docs/security.md)
#   BENCH_AUTH_ONLY=     1: only that scenario
#   BENCH_CLIENTS_BROKERS="stompbox activemq"   which of BENCH_BROKERS the clients run against
#   BENCH_CLIENTS_N=20000   non-persistent messages per real-client run
#   BENCH_CLIENTS_P=2000    persistent receipted messages per real-client run (0 skips them)
#   BENCH_CLIENTS_LAT=2000  round trips per real-client latency run (0 skips them)
#   BENCH_CLIENTS_REPEAT=3  rounds of the real-client runs; the table shows the median
#   BENCH_OUT=target/bench-results.jsonl   raw results, one JSON object a line
#   BENCH_DOC=docs/benchmarks.md           the report (plot: same name, .png); empty: table only
#   CARGO=cargo          (CARGO_TARGET_DIR: where the release stompbox is built and run from)
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_BROKERS=${BENCH_BROKERS:-stompbox activemq rabbitmq}
BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_FILL=${BENCH_FILL:-200000}
BENCH_FILL_BIG=${BENCH_FILL_BIG:-1000000}
BENCH_IDLE=${BENCH_IDLE:-2000}
BENCH_NET=${BENCH_NET:-50000}
BENCH_NET_P=${BENCH_NET_P:-10000}
BENCH_NET_ONLY=${BENCH_NET_ONLY:-}
BENCH_CLIENTS=${BENCH_CLIENTS:-1}
BENCH_CLIENTS_ONLY=${BENCH_CLIENTS_ONLY:-}
BENCH_AUTH=${BENCH_AUTH:-1}
BENCH_AUTH_ONLY=${BENCH_AUTH_ONLY:-}
BENCH_CLIENTS_BROKERS=${BENCH_CLIENTS_BROKERS:-stompbox activemq}
BENCH_CLIENTS_N=${BENCH_CLIENTS_N:-20000}
BENCH_CLIENTS_P=${BENCH_CLIENTS_P:-2000}
BENCH_CLIENTS_LAT=${BENCH_CLIENTS_LAT:-2000}
BENCH_CLIENTS_REPEAT=${BENCH_CLIENTS_REPEAT:-3}
BENCH_OUT=${BENCH_OUT:-target/bench-results.jsonl}
BENCH_DOC=${BENCH_DOC-docs/benchmarks.md}
CARGO=${CARGO:-cargo}
BIN=${CARGO_TARGET_DIR:-target}/release/stompbox
S=$BENCH_SECONDS

# shellcheck source=compare/lib.sh
. scripts/compare/lib.sh
for b in $BENCH_BROKERS; do
    if [ ! -f "scripts/compare/$b.sh" ]; then
        echo "bench.sh: no driver scripts/compare/$b.sh" >&2
        exit 2
    fi
    # shellcheck disable=SC1090
    . "scripts/compare/$b.sh"
done

"$CARGO" build --release --quiet
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stompbox-bench.XXXXXX")
LOGS=$(dirname "$BENCH_OUT")/bench-logs
CURRENT=      # the driver whose broker may be running
BPID=         # the running broker's process (RSS is read from it)
RUN=1         # which run of a repeated scenario bench() is recording
IDLE_PID=     # the idle-connections client, while it runs
NET_PIDS=()   # the network scenarios' brokers, while they run
SB_FAILED=0
# Idle connections need file descriptors (brokers inherit this too); raise the soft limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cleanup() {
    trap - EXIT
    stop_pid "$IDLE_PID" 5
    stop_network
    if [ -n "$CURRENT" ]; then
        "${CURRENT}_stop"
        cp "$BROKER_LOG" "$LOGS/$CURRENT-interrupted.log" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# record BROKER SCENARIO FIELD...: appends {"broker":..,"scenario":..,FIELD,...} to BENCH_OUT.
record() {
    local b=$1 s=$2
    shift 2
    local IFS=,
    printf '{"broker":"%s","scenario":"%s"%s}\n' "$b" "$s" "${*:+,$*}" >>"$BENCH_OUT"
}

# The plot needs matplotlib; the table does not. Install it first so a failure shows early.
PY=python3
[ -z "$BENCH_DOC" ] || PY=$(bash scripts/plot-python.sh bench.sh)

mkdir -p "$(dirname "$BENCH_OUT")" "$LOGS"
: >"$BENCH_OUT"
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench.sh: load average at start: $LOAD_START (other work skews the figures)" >&2

# bench BROKER KEY LABEL TIMEOUT_S ARGS...: runs one `stompbox bench` scenario against the
# running broker (STOMP_PORT, BPID) and records its JSON with the wall time and the broker's RSS
# after it; on failure records why and returns 1.
bench() {
    local b=$1 key=$2 label=$3 limit=$4
    shift 4
    local args=(bench --url "tcp://127.0.0.1:$STOMP_PORT" "${BROKER_AUTH[@]}" --json --no-progress
        "$@")
    echo "bench.sh: $b: $label" >&2
    if ! alive "$BPID"; then
        record "$b" "$key" "\"run\":$RUN" "\"failed\":\"broker exited before this scenario\""
        [ "$b" != stompbox ] || SB_FAILED=1
        return 1
    fi
    local line rc=0 t0 wall cpu0 cpu1
    cpu0=$(proc_cpu_s "$BPID")
    t0=$(now_us)
    times >"$WORK/times0"
    line=$(timeout -k 5 "$limit" "$BIN" "${args[@]}" 2>"$WORK/bench.err") || rc=$?
    times >"$WORK/times1"
    wall=$(awk -v a="$(now_us)" -v b="$t0" 'BEGIN { printf "%.3f", (a - b) / 1e6 }')
    cpu1=$(proc_cpu_s "$BPID")
    local cmd
    cmd=$(json_str "$(quote "$BIN" "${args[@]}")")
    if [ "$rc" -ne 0 ] || [ "${line:0:1}" != "{" ]; then
        local why="exit $rc"
        [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || why="timed out after ${limit}s"
        alive "$BPID" || why="$why; the broker exited"
        why="$why: $(grep -v '^\s*$' "$WORK/bench.err" | tail -1 || true)"
        echo "bench.sh: $b: scenario '$label' failed ($why)" >&2
        tail -5 "$WORK/bench.err" >&2
        echo "bench.sh: last lines of the broker log ($BROKER_LOG):" >&2
        tail -10 "$BROKER_LOG" >&2 || true
        record "$b" "$key" "\"run\":$RUN" "\"cmd\":$cmd" "\"failed\":$(json_str "$why")"
        [ "$b" != stompbox ] || SB_FAILED=1
        return 1
    fi
    local rss hwm
    rss=$(proc_kib "$BPID" VmRSS)
    hwm=$(proc_kib "$BPID" VmHWM)
    # CPU seconds of the load generator (this process, every thread) and of the broker while
    # it ran, start-up included.
    local client_cpu broker_cpu=null
    client_cpu=$(awk -v a="$(times_s "$WORK/times1")" -v b="$(times_s "$WORK/times0")" \
        'BEGIN { printf "%.3f", a - b }')
    [ -z "$cpu0" ] || [ -z "$cpu1" ] ||
        broker_cpu=$(awk -v a="$cpu1" -v b="$cpu0" 'BEGIN { printf "%.2f", a - b }')
    line=${line#\{}
    record "$b" "$key" "\"run\":$RUN" "\"cmd\":$cmd" "\"wall_s\":$wall" "\"rss_kib\":${rss:-null}" \
        "\"hwm_kib\":${hwm:-null}" "\"client_cpu_s\":$client_cpu" "\"broker_cpu_s\":$broker_cpu" \
        "${line%\}}"
}

# start_instance BROKER N: prepares and starts the broker, waits for its STOMP port, records
# the startup time; sets BPID. Returns 1 (recorded, broker stopped) if it does not start.
start_instance() {
    local b=$1 n=$2 dir="$WORK/$1-$2"
    mkdir -p "$dir"
    CURRENT=$b
    echo "bench.sh: $b: start $n" >&2
    if ! "${b}_prepare" "$dir"; then
        record "$b" start "\"instance\":$n" "\"failed\":\"set-up failed\""
        "${b}_stop"
        CURRENT=
        return 1
    fi
    local t0 t1 rc=0
    t0=$(now_us)
    "${b}_start" "$dir"
    wait_port "$STOMP_PORT" "$LAUNCH_PID" 120 || rc=$?
    t1=$(now_us)
    if [ "$rc" -ne 0 ]; then
        local why="did not accept on its STOMP port within 120 s"
        [ "$rc" -ne 1 ] || why="exited before its STOMP port accepted"
        echo "bench.sh: $b $why; skipping it. Last lines of $BROKER_LOG:" >&2
        tail -20 "$BROKER_LOG" >&2 || true
        record "$b" start "\"instance\":$n" "\"failed\":$(json_str "$why")"
        stop_instance "$b" "$n"
        return 1
    fi
    BPID=$("${b}_pid")
    record "$b" start "\"instance\":$n" "\"startup_ms\":$(((t1 - t0) / 1000))" \
        "\"pid\":${BPID:-null}" "\"setup\":$(json_str "$BROKER_SETUP")" \
        "\"cmd\":$(json_str "$BROKER_CMD")"
    if [ -z "$BPID" ]; then
        echo "bench.sh: $b: no broker process found to measure" >&2
        stop_instance "$b" "$n"
        return 1
    fi
}

stop_instance() {
    local b=$1 n=$2
    "${b}_stop"
    CURRENT=
    cp "$BROKER_LOG" "$LOGS/$b-$n.log" 2>/dev/null || true
    # Keep the generated configs for the docs.
    cp "$WORK/$b-$n"/conf/activemq.xml "$LOGS/activemq.xml" 2>/dev/null || true
    cp "$WORK/$b-$n"/rabbitmq.conf "$LOGS/rabbitmq.conf" 2>/dev/null || true
}

# idle_conns BROKER: RSS growth per idle connection (connected, no subscriptions).
idle_conns() {
    local b=$1 before with n
    [ "$BENCH_IDLE" -gt 0 ] || return 0
    echo "bench.sh: $b: $BENCH_IDLE idle connections" >&2
    before=$(proc_kib "$BPID" VmRSS)
    local args=(bench --url "tcp://127.0.0.1:$IDLE_PORT" "${BROKER_AUTH[@]}" --mode idle
        --idle-conns "$BENCH_IDLE" --threads 1 --duration 4s --no-progress)
    "$BIN" "${args[@]}" >"$WORK/idle.out" 2>"$WORK/idle.err" &
    IDLE_PID=$!
    for _ in $(seq 1 1200); do
        grep -qs "idle connections open" "$WORK/idle.err" && break
        alive "$IDLE_PID" || break
        sleep 0.1
    done
    local exited=
    alive "$IDLE_PID" || { wait "$IDLE_PID" && exited="exit 0" || exited="exit $?"; }
    sleep 1 # let the broker settle (JVM and Erlang VM allocate lazily)
    with=$(proc_kib "$BPID" VmRSS)
    stop_pid "$IDLE_PID" 15
    IDLE_PID=
    cp "$WORK/idle.err" "$LOGS/$b-idle.err"
    n=$(sed -n 's/.*: \([0-9]*\) idle connections open.*/\1/p' "$WORK/idle.err")
    local cmd
    cmd=$(json_str "$(quote "$BIN" "${args[@]}")")
    if [ -n "$n" ] && [ -n "$with" ]; then
        record "$b" idle_conns "\"cmd\":$cmd" "\"conns\":$n" "\"before_kib\":$before" \
            "\"with_kib\":$with" "\"per_conn_kib\":$(awk -v a="$with" -v b="$before" -v n="$n" \
            'BEGIN { printf "%.2f", (a - b) / n }')"
    else
        local why
        why="client ${exited:-killed while connecting}: $(grep -v '^\s*$' "$WORK/idle.err" |
            tail -1 || true)"
        echo "bench.sh: $b: idle connections failed: $why" >&2
        record "$b" idle_conns "\"cmd\":$cmd" "\"failed\":$(json_str "$why")"
        [ "$b" != stompbox ] || SB_FAILED=1
    fi
}

sqlite_baseline() {
    local who=$1 key=$2
    echo "bench.sh: raw SQLite commit rate ($key)" >&2
    local line args=(bench --mode sqlite --sqlite-baseline "$WORK/sqlite" --sqlite-duration "${S}s"
        --size 256 --json --no-progress)
    local cmd
    cmd=$(json_str "$(quote "$BIN" "${args[@]}")")
    line=$("$BIN" "${args[@]}" 2>"$WORK/sqlite.err") || {
        record "$who" "$key" "\"cmd\":$cmd" "\"failed\":$(json_str "$(tail -1 "$WORK/sqlite.err")")"
        return 0
    }
    line=${line#\{}
    record "$who" "$key" "\"cmd\":$cmd" "${line%\}}"
}

# client_bench BROKER KEY LABEL COMMAND...: runs one client script of scripts/compare/clients/
# against the running broker (BPID, whose CPU it reads) and records its JSON line; on failure
# records why and returns 1.
client_bench() {
    local b=$1 key=$2 label=$3
    shift 3
    local args=("$@" "${BROKER_AUTH[@]}" --broker-pid "$BPID")
    echo "bench.sh: $b: $label" >&2
    if ! alive "$BPID"; then
        record "$b" "$key" "\"run\":$RUN" "\"failed\":\"broker exited before this scenario\""
        [ "$b" != stompbox ] || SB_FAILED=1
        return 1
    fi
    local line rc=0 cmd
    cmd=$(json_str "$(quote "${args[@]}")")
    line=$(timeout -k 5 300 "${args[@]}" 2>"$WORK/client.err") || rc=$?
    cp "$WORK/client.err" "$LOGS/$b-$key.err"
    if [ "${line:0:1}" != "{" ]; then
        local why="exit $rc"
        [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || why="timed out after 300 s"
        alive "$BPID" || why="$why; the broker exited"
        why="$why: $(grep -v '^\s*$' "$WORK/client.err" | tail -1 || true)"
        line="{\"failed\":$(json_str "$why")}"
    fi
    case $line in *'"failed"'*)
        echo "bench.sh: $b: '$label' failed: $line" >&2
        tail -5 "$WORK/client.err" >&2
        [ "$b" != stompbox ] || SB_FAILED=1
        rc=1
        ;;
    esac
    line=${line#\{}
    record "$b" "$key" "\"run\":$RUN" "\"cmd\":$cmd" "${line%\}}"
    [ "$rc" -eq 0 ]
}

# Installs the client libraries once (make clients-deps); false, having said why, if that
# failed.
CLIENTS_STATE=
clients_ready() {
    if [ -z "$CLIENTS_STATE" ]; then
        echo "bench.sh: client libraries: make clients-deps" >&2
        if make --no-print-directory clients-deps >"$LOGS/clients-deps.log" 2>&1; then
            CLIENTS_STATE=ok
        else
            CLIENTS_STATE="make clients-deps failed: $(tail -1 "$LOGS/clients-deps.log")"
            echo "bench.sh: $CLIENTS_STATE; no real-client scenarios" >&2
        fi
    fi
    [ "$CLIENTS_STATE" = ok ]
}

# The real-client scenarios (see the top of this file) against the running broker, in
# BENCH_CLIENTS_REPEAT rounds. Keys cl_CLIENT_MODE: CLIENT sb (stompbox bench), py, rb, js
# (stompit, TCP), jsws (@stomp/stompjs, WebSocket); MODE np, p (persistent, receipted), lat.
run_clients() {
    local b=$1 limit=$((S * 10 + 60))
    [ "$BENCH_CLIENTS" != 0 ] || return 0
    case " $BENCH_CLIENTS_BROKERS " in *" $b "*) ;; *) return 0 ;; esac
    if ! clients_ready; then
        record "$b" cl_unavailable "\"reason\":$(json_str "$CLIENTS_STATE")"
        return 0
    fi
    local dir=scripts/compare/clients py=.venv/bin/python ws=1
    if [ -z "$WS_PORT" ]; then
        ws=
        record "$b" cl_ws_unavailable "\"reason\":$(json_str "$WS_NONE")"
        echo "bench.sh: $b: no WebSocket client scenarios: $WS_NONE" >&2
    elif ! wait_port "$WS_PORT" "$BPID" 10; then
        ws=
        record "$b" cl_ws_unavailable "\"reason\":\"the WebSocket port did not accept\""
        [ "$b" != stompbox ] || SB_FAILED=1
    fi
    local n=$BENCH_CLIENTS_N p=$BENCH_CLIENTS_P lat=$BENCH_CLIENTS_LAT mode modes=(np) c
    [ "$p" -le 0 ] || modes+=(p)
    [ "$lat" -le 0 ] || modes+=(lat)
    for ((RUN = 1; RUN <= BENCH_CLIENTS_REPEAT; RUN++)); do
        for mode in "${modes[@]}"; do
            local count=$n flag=throughput sbflags=() what="non-persistent 256 B"
            case $mode in
            p)
                count=$p flag=persistent sbflags=(--persistent --send sync)
                what="persistent 256 B, receipt per SEND"
                ;;
            lat)
                count=$lat flag=latency sbflags=(--rate 1000)
                what="round trips, 256 B"
                ;;
            esac
            local of="$count $what (run $RUN of $BENCH_CLIENTS_REPEAT)" q="/queue/bench.cl.$RUN"
            if [ "$mode" = lat ]; then
                of="$count messages at 1,000 msg/s, 256 B (run $RUN of $BENCH_CLIENTS_REPEAT)"
            fi
            bench "$b" "cl_sb_$mode" "stompbox bench (TCP): $of" "$limit" \
                --destination "$q.sb.$mode" --producers 1 --consumers 1 --size 256 \
                --count "$count" "${sbflags[@]}" || true
            of="$count $what (run $RUN of $BENCH_CLIENTS_REPEAT)"
            local common=(--port "$STOMP_PORT" --count "$count" --size 256 --mode "$flag")
            client_bench "$b" "cl_py_$mode" "stomp.py (TCP): $of" \
                "$py" "$dir/py_bench.py" "${common[@]}" --destination "$q.py.$mode" || true
            client_bench "$b" "cl_rb_$mode" "stomp gem (TCP): $of" \
                ruby "$dir/rb_bench.rb" "${common[@]}" --destination "$q.rb.$mode" || true
            client_bench "$b" "cl_js_$mode" "stompit (TCP): $of" \
                node "$dir/js_bench.js" --client stompit "${common[@]}" \
                --destination "$q.js.$mode" || true
            [ -n "$ws" ] || continue
            common[1]=$WS_PORT
            client_bench "$b" "cl_jsws_$mode" "@stomp/stompjs (WebSocket): $of" \
                node "$dir/js_bench.js" --client stompjs "${common[@]}" \
                --destination "$q.jsws.$mode" || true
        done
    done
    RUN=1
}

# Only the real-client scenarios (BENCH_CLIENTS_ONLY=1), after a warm-up.
run_broker_clients() {
    local b=$1 limit=$((S * 10 + 60))
    case " $BENCH_CLIENTS_BROKERS " in *" $b "*) ;; *) return 0 ;; esac
    if ! "${b}_available"; then
        echo "bench.sh: skipping $b" >&2
        record "$b" unavailable "\"reason\":\"not installed and could not be installed\""
        return 0
    fi
    record "$b" version "\"version\":$(json_str "$("${b}_version")")"
    if start_instance "$b" 1; then
        bench "$b" warmup "warm-up, queue (not reported)" "$limit" \
            --destination /queue/bench.warmup --producers 1 --consumers 1 --size 256 \
            --duration "${S}s" || true
        run_clients "$b"
        stop_instance "$b" 1
    fi
}

# The scenario set for one broker.
run_broker() {
    local b=$1 limit=$((S * 10 + 60))
    if ! "${b}_available"; then
        echo "bench.sh: skipping $b" >&2
        record "$b" unavailable "\"reason\":\"not installed and could not be installed\""
        return 0
    fi
    record "$b" version "\"version\":$(json_str "$("${b}_version")")"
    sqlite_baseline "$b" sqlite

    if start_instance "$b" 1; then
        sleep 2
        record "$b" idle_rss "\"rss_kib\":$(proc_kib "$BPID" VmRSS)" "\"after_s\":2"
        idle_conns "$b"
        bench "$b" warmup "warm-up, queue (not reported)" "$limit" \
            --destination /queue/bench.warmup --producers 1 --consumers 1 --size 256 \
            --duration "${S}s" || true
        bench "$b" warmup_topic "warm-up, topic (not reported)" "$limit" \
            --destination /topic/bench.warmup --producers 1 --consumers 8 --size 256 \
            --duration "${S}s" || true
        for ((RUN = 1; RUN <= BENCH_REPEAT; RUN++)); do
            local of="(run $RUN of $BENCH_REPEAT)"
            bench "$b" np "non-persistent queue 1->1 async 256 B $of" "$limit" \
                --destination /queue/bench.np --producers 1 --consumers 1 --size 256 \
                --duration "${S}s" || true
            bench "$b" topic "topic fan-out 1->8 async 256 B $of" "$limit" \
                --destination /topic/bench.fanout --producers 1 --consumers 8 --size 256 \
                --duration "${S}s" || true
            bench "$b" latency "latency at 2,000 msg/s $of" "$limit" \
                --destination /queue/bench.latency --producers 1 --consumers 1 --size 256 \
                --rate 2000 --duration "${S}s" || true
        done
        RUN=1
        bench "$b" p1 "persistent queue, 1 sync producer" "$limit" \
            --destination /queue/bench.p1 --persistent --send sync --producers 1 --consumers 1 \
            --size 256 --duration "${S}s" || true
        bench "$b" p8 "persistent queue, 8 sync producers" "$limit" \
            --destination /queue/bench.p8 --persistent --send sync --producers 8 --consumers 1 \
            --size 256 --duration "${S}s" || true
        bench "$b" p64 "persistent queue, 64 sync producers" "$limit" \
            --destination /queue/bench.p64 --persistent --send sync --producers 64 --consumers 1 \
            --size 256 --duration "${S}s" || true
        # The same three without the disk (non-persistent, still receipted): how fast sync
        # producers can go on this machine at all, whatever the store does (issue 14).
        if [ "$b" = stompbox ]; then
            for n in 1 8 64; do
                bench "$b" "npsync$n" "non-persistent queue, $n sync producers" "$limit" \
                    --destination "/queue/bench.npsync$n" --send sync --producers "$n" \
                    --consumers 1 --size 256 --duration "${S}s" || true
            done
        fi
        run_clients "$b"
        stop_instance "$b" 1
    fi

    # A fresh broker (empty store) for fill and drain; its peak RSS covers only these two.
    if start_instance "$b" 2; then
        bench "$b" fill "fill $BENCH_FILL persistent 1 KiB" 900 --destination /queue/bench.fill \
            --mode fill --persistent --size 1024 --producers 2 --count "$BENCH_FILL" || true
        bench "$b" drain "drain $BENCH_FILL" 900 --destination /queue/bench.fill --mode drain \
            --consumers 1 --ack client --prefetch 1000 --count "$BENCH_FILL" \
            --drain-timeout 30s || true
        stop_instance "$b" 2
    fi

    # The persistent sync scenarios once more on a stompbox with `durability = "relaxed"`
    # (synchronous=NORMAL: no fsync per commit): what the fsync costs, in the same run.
    if [ "$b" = stompbox ]; then
        printf 'durability = "relaxed"\n' >"$WORK/relaxed.toml"
        if SB_CONFIG="$WORK/relaxed.toml" start_instance "$b" 4; then
            for n in 1 8 64; do
                bench "$b" "relaxed$n" "persistent queue, $n sync producers, durability relaxed" \
                    "$limit" --destination "/queue/bench.relaxed$n" --persistent --send sync \
                    --producers "$n" --consumers 1 --size 256 --duration "${S}s" || true
            done
            stop_instance "$b" 4
        fi
    fi

    # Issue 14's backlog: a million persistent 1 KiB messages in a fresh stompbox, then
    # drained; the other brokers need minutes and gigabytes for this (see fill above).
    if [ "$b" = stompbox ] && [ "$BENCH_FILL_BIG" -gt 0 ] && start_instance "$b" 3; then
        bench "$b" fill_big "fill $BENCH_FILL_BIG persistent 1 KiB" 900 \
            --destination /queue/bench.big --mode fill --persistent --size 1024 --producers 2 \
            --count "$BENCH_FILL_BIG" || true
        bench "$b" drain_big "drain $BENCH_FILL_BIG" 900 --destination /queue/bench.big \
            --mode drain --consumers 1 --ack client --prefetch 1000 --count "$BENCH_FILL_BIG" \
            --drain-timeout 30s || true
        stop_instance "$b" 3
    fi
}

# The network of brokers a → b → c (see the top of this file), started in $WORK/net; with
# PIN=1 each broker on one core (taskset -c i mod nproc).
start_network() {
    local dir="$WORK/net" names=(a b c) ports=() admins=() i
    local statics=('"/queue/bench.hop1.>", "/queue/bench.hop2.>"' '"/queue/bench.hop2.>"')
    mkdir -p "$dir"
    for i in 0 1 2; do
        ports+=("$(free_port)")
        admins+=("$(free_port)")
    done
    for i in 0 1 2; do
        local n=${names[$i]} conf="$dir/${names[$i]}.toml"
        mkdir -p "$dir/$n"
        # Room for the backlog scenario's non-persistent messages, which wait in memory on a
        # (net_backlog): past a destination's memory limit its producer would be held.
        printf 'broker_name = "%s"\n\n[destinations]\nmemory_limit_bytes = 268435456\n' "$n" >"$conf"
        if [ "$i" -lt 2 ]; then
            printf '\n[[network]]\nname = "to-%s"\nuri = "static:(tcp://127.0.0.1:%s)"\nstatic_included = [%s]\nnetwork_ttl = 2\n' \
                "${names[$((i + 1))]}" "${ports[$((i + 1))]}" "${statics[$i]}" >>"$conf"
        fi
    done
    NET_PORTS=("${ports[@]}")
    NET_ADMINS=("${admins[@]}")
    NET_PIDS=("" "" "")
    # The last broker first: each bridge finds its peer at its first attempt.
    for i in 2 1 0; do
        start_net_broker "$i" || return 1
    done
    # Wait until both bridges have linked (each logs "forwarding" once it has subscribed).
    for _ in $(seq 1 300); do
        grep -qs "forwarding" "$dir/a.log" && grep -qs "forwarding" "$dir/b.log" && return 0
        sleep 0.1
    done
    echo "bench.sh: the network's bridges did not link within 30 s" >&2
    record stompbox net_start "\"failed\":\"bridges did not link within 30 s\""
    SB_FAILED=1
    return 1
}

# start_net_broker I: starts network broker I (0 a, 1 b, 2 c) of start_network, pinned to
# core I mod nproc with PIN=1, and waits for its STOMP port; sets NET_PIDS[I].
start_net_broker() {
    local i=$1 names=(a b c) dir="$WORK/net"
    local n=${names[$i]} pin=()
    if [ "${PIN:-}" = 1 ]; then
        pin=(taskset -c "$((i % $(nproc)))")
    fi
    "${pin[@]}" "$BIN" serve --config "$dir/$n.toml" --bind "127.0.0.1:${NET_PORTS[$i]}" \
        --admin-bind "127.0.0.1:${NET_ADMINS[$i]}" --ws-bind 127.0.0.1:0 --data-dir "$dir/$n" \
        >>"$dir/$n.out" 2>>"$dir/$n.log" </dev/null &
    NET_PIDS[i]=$!
    if ! wait_port "${NET_PORTS[$i]}" "$!" 60; then
        echo "bench.sh: network broker $n did not start; last lines of its log:" >&2
        tail -10 "$dir/$n.log" >&2 || true
        record stompbox net_start "\"failed\":\"broker $n did not start\""
        SB_FAILED=1
        return 1
    fi
}

# net_backlog PREFIX KIND COUNT FLAGS...: the bridge alone, with no client running. Stops b,
# fills a with COUNT messages for b (what one broker accepts: the fill's rate), starts b again
# and times the bridge a → b moving that backlog, from the first message forwarded to the
# last, read from a's /api/network every 10 ms (key PREFIX_KIND_backlog).
net_backlog() {
    local prefix=$1 kind=$2 count=$3
    shift 3
    local key="${prefix}_${kind}_backlog" dest="/queue/bench.hop1.backlog.$kind"
    stop_pid "${NET_PIDS[1]}" 15
    if ! bench stompbox "${prefix}_${kind}_fill" \
        "network: $count $kind 256 B sent to a while b is down" "$((S * 10 + 300))" \
        --mode fill --destination "$dest" --producers 1 --size 256 --count "$count" "$@"; then
        start_net_broker 1
        return 1
    fi
    start_net_broker 1 || return 1
    echo "bench.sh: stompbox: network: the bridge a → b forwards that backlog" >&2
    local line
    if ! line=$(timeout -k 5 120 python3 - "${NET_ADMINS[0]}" "$count" <<'PY'
import json, sys, time, urllib.request
port, count = sys.argv[1], int(sys.argv[2])
def forwarded():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/network", timeout=5) as r:
        return sum(b["forwarded"] for b in json.load(r) if b["connector"] == "to-b")
# The rate counts from the first poll that saw messages forwarded (what came before it is
# not timed) to the poll that saw the last.
start = forwarded()
first = last = None
n = at_first = start
deadline = time.monotonic() + 100
while n - start < count and time.monotonic() < deadline:
    time.sleep(0.01)
    n = forwarded()
    now = time.monotonic()
    if first is None and n > start:
        first, at_first = now, n
    last = now
moved = n - start
rate = (n - at_first) / (last - first) if first and last > first else 0
print(json.dumps({"forwarded": moved, "expected": count, "forwarded_per_s": round(rate, 1)}))
PY
    ); then
        echo "bench.sh: stompbox: the backlog was not forwarded" >&2
        record stompbox "$key" "\"failed\":\"the backlog was not forwarded within 100 s\""
        SB_FAILED=1
        return 1
    fi
    line=${line#\{}
    record stompbox "$key" "\"run\":$RUN" "${line%\}}"
}

stop_network() {
    local pid
    for pid in "${NET_PIDS[@]}"; do
        [ -z "$pid" ] || stop_pid "$pid" 15
    done
    NET_PIDS=()
    local n
    for n in a b c; do
        cp "$WORK/net/$n.log" "$LOGS/stompbox-net-$n.log" 2>/dev/null || true
    done
}

# The network scenarios, pinned (keys net_*) then sharing the cores (netshared_*); pinned
# only where taskset and two cores are there.
run_network() {
    [ "$BENCH_NET" -gt 0 ] || return 0
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        PIN=1 run_network_set net
    else
        echo "bench.sh: no taskset or one core: the network scenarios run unpinned only" >&2
    fi
    PIN= run_network_set netshared
}

# The network scenarios: each sends to a and consumes on a, b or c; persistent and not. $1:
# the scenario keys' prefix.
run_network_set() {
    local prefix=$1
    start_network || { stop_network; return 0; }
    local limit=$((S * 10 + 300)) kind count flags hop at
    STOMP_PORT=${NET_PORTS[0]}
    BPID=${NET_PIDS[0]} # a
    BROKER_LOG="$WORK/net/a.log"
    for kind in np p; do
        count=$BENCH_NET
        flags=()
        if [ "$kind" = p ]; then
            count=$BENCH_NET_P
            flags=(--persistent)
        fi
        for hop in 0 1 2; do
            at=${NET_PORTS[$hop]}
            bench stompbox "${prefix}_${kind}_${hop}" \
                "network: $count $kind 256 B, sent to a, consumed $hop hop(s) away" "$limit" \
                --destination "/queue/bench.hop$hop.$kind" --consume-url "tcp://127.0.0.1:$at" \
                --producers 1 --consumers 1 --size 256 --count "$count" --drain-timeout 30s \
                "${flags[@]}" || true
        done
        net_backlog "$prefix" "$kind" "$count" "${flags[@]}" || true
    done
    stop_network
}

# Authentication cost (stompbox only): connections/s with and without argon2id checks.
run_auth() {
    [ "$BENCH_AUTH" = 0 ] && return 0
    echo "== stompbox: authentication cost"
    local out
    if out=$(python3 scripts/compare/auth_bench.py "$BIN" 2>>"$LOGS/auth_bench.err"); then
        out=${out#\{}
        record stompbox auth "${out%\}}"
    else
        echo "bench.sh: the authentication-cost scenario failed ($LOGS/auth_bench.err)" >&2
        record stompbox auth '"failed":true'
    fi
}

if [ -n "$BENCH_AUTH_ONLY" ]; then
    record stompbox version "\"version\":$(json_str "$(stompbox_version)")"
    run_auth
elif [ -n "$BENCH_NET_ONLY" ]; then
    record stompbox version "\"version\":$(json_str "$(stompbox_version)")"
    run_network
elif [ -n "$BENCH_CLIENTS_ONLY" ]; then
    for b in $BENCH_BROKERS; do
        run_broker_clients "$b"
    done
else
    for b in $BENCH_BROKERS; do
        run_broker "$b"
    done
    case " $BENCH_BROKERS " in *" stompbox "*) run_network; run_auth ;; esac
    sqlite_baseline - sqlite_end
fi

record meta run "\"started\":\"$STARTED\"" "\"finished\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"" \
    "\"load_start\":\"$LOAD_START\"" "\"load_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"" \
    "\"seconds\":$S" "\"repeat\":$BENCH_REPEAT" "\"fill\":$BENCH_FILL" "\"fill_big\":$BENCH_FILL_BIG" "\"idle\":$BENCH_IDLE" \
    "\"clients\":$([ "$BENCH_CLIENTS" = 0 ] && echo false || echo true)" \
    "\"clients_n\":$BENCH_CLIENTS_N" "\"clients_p\":$BENCH_CLIENTS_P" \
    "\"clients_lat\":$BENCH_CLIENTS_LAT" "\"clients_repeat\":$BENCH_CLIENTS_REPEAT" \
    "\"clients_only\":$([ -n "$BENCH_CLIENTS_ONLY" ] && echo true || echo false)" \
    "\"brokers\":$(json_str "$BENCH_BROKERS")" \
    "\"disk\":$(json_str "$(df --output=source,fstype "$WORK" | tail -1 | tr -s ' ')")" \
    "\"work\":$(json_str "$WORK")"

report=("$PY" scripts/compare/report.py --results "$BENCH_OUT" --configs "$LOGS")
[ -z "$BENCH_DOC" ] || report+=(--doc "$BENCH_DOC")
[ "$PY" = python3 ] || report+=(--plot "${BENCH_DOC%.md}.png")
"${report[@]}"
echo "raw results: $BENCH_OUT; broker logs: $LOGS/"
if [ "$SB_FAILED" -ne 0 ]; then
    echo "bench.sh: a stompbox scenario failed (see above)" >&2
    exit 1
fi
