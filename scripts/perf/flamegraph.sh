#!/usr/bin/env bash
# On-CPU flamegraphs of a release stompbox under one `stompbox bench` scenario.
#
#   scripts/perf/flamegraph.sh NAME SECONDS -- BENCH-ARGS...
#   scripts/perf/flamegraph.sh p1 5 -- --destination /queue/perf.p1 --persistent --send sync \
#       --producers 1 --consumers 1 --size 256
#
# Builds the release binary (it keeps debug info: Cargo.toml's [profile.release]), starts a
# broker on free ports with a temporary data dir (on the same disk as the repository, like
# make bench), runs the bench client against it, records the broker's threads with
# `perf record -e cpu-clock -g` (a software clock: these VMs have no hardware counters) for
# SECONDS in the middle of the run, and writes docs/perf/NAME.svg (inferno; installed into
# target/tools with `cargo install inferno` when missing) and docs/perf/NAME.txt (the bench
# client's report, and per-thread CPU shares). Always stops the broker.
set -euo pipefail
cd "$(dirname "$0")/../.."

name=${1:?usage: $0 NAME SECONDS -- BENCH-ARGS...}
seconds=${2:?usage: $0 NAME SECONDS -- BENCH-ARGS...}
shift 2
[ "${1:-}" = -- ] && shift

target=${CARGO_TARGET_DIR:-target}
bin=$target/release/stompbox
tools=$target/tools/bin
command -v perf >/dev/null || { echo "flamegraph.sh: perf is needed (apt-get install linux-perf)" >&2; exit 2; }
cargo build --release --quiet
if [ ! -x "$tools/inferno-flamegraph" ]; then
    cargo install --quiet inferno --root "$target/tools"
fi

work=$(mktemp -d -p "$target")
pid=""
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --bind 127.0.0.1:0 --admin-bind 127.0.0.1:0 --ws-bind 127.0.0.1:0 \
    --data-dir "$work/data" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do
    grep -q "stompbox listening" "$work/out" 2>/dev/null && break
    sleep 0.1
done
port=$(grep -o 'stomp=127.0.0.1:[0-9]*' "$work/out" | cut -d: -f2)
[ -n "$port" ] || { echo "flamegraph.sh: the broker did not start:" >&2; cat "$work/err" >&2; exit 1; }

# A run of SECONDS + 4 s, unless the arguments say how many messages (--count): then that
# many, which should take longer than SECONDS + 2.
amount=(--duration "$((seconds + 4))s")
for a in "$@"; do [ "$a" = --count ] && amount=(); done
"$bin" bench --url "stomp://127.0.0.1:$port" "${amount[@]}" --no-progress "$@" \
    >"$work/bench.txt" 2>&1 &
client=$!
sleep 2
perf record -e cpu-clock -F 2999 -g -p "$pid" -o "$work/perf.data" -- sleep "$seconds" \
    >/dev/null 2>&1
wait "$client" || { echo "flamegraph.sh: the bench client failed:" >&2; cat "$work/bench.txt" >&2; exit 1; }

mkdir -p docs/perf
perf script -i "$work/perf.data" 2>/dev/null | "$tools/inferno-collapse-perf" >"$work/folded"
"$tools/inferno-flamegraph" --title "stompbox: $name ($*)" <"$work/folded" >"docs/perf/$name.svg"
{
    echo "stompbox bench $* (perf recorded ${seconds} s of the broker, cpu-clock)"
    echo
    cat "$work/bench.txt"
    echo
    echo "broker CPU samples per thread:"
    perf report -i "$work/perf.data" --stdio --no-children --sort comm -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' || true
} >"docs/perf/$name.txt"
echo "flamegraph.sh: docs/perf/$name.svg, docs/perf/$name.txt"
