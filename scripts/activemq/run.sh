#!/usr/bin/env bash
# `make test-against-activemq`: the protocol suite (protocol-tests/) against ActiveMQ Classic 5.17
# from Debian's `activemq` package, which is installed when missing. Starts a private broker
# (generated activemq.xml, KahaDB and temp files in a temp dir, one STOMP connector on a loopback
# port the kernel picks, JVM heap -Xmx512m), waits until it answers a STOMP CONNECT, runs
# `cargo test --test protocol` with STOMP_ADDR pointing at it and STOMP_TARGET=activemq, and
# stops it on every exit path. The tests listed in protocol-tests/not-applicable.txt (they need
# our own broker) are excluded by name, and the list is printed with the reasons. The broker's
# log and config are kept in target/activemq/ for a post-mortem.
#
# Usage: scripts/activemq/run.sh [TESTNAME...]   extra arguments go to the test binary (filters)
#
# Environment:
#   STOMP_LOAD_MESSAGES=2000   messages per producer in load:: (stompbox's default is 10,000;
#                              see protocol-tests/README.md for why this run uses fewer)
#   ACTIVEMQ_HEAP=512m         the JVM's -Xmx
#   CARGO=cargo
set -euo pipefail
cd "$(dirname "$0")/../.."

ME=test-against-activemq
# shellcheck source=../compare/lib.sh
. scripts/compare/lib.sh
# shellcheck source=../compare/activemq.sh
. scripts/compare/activemq.sh

CARGO=${CARGO:-cargo}
ACTIVEMQ_HEAP=${ACTIVEMQ_HEAP:-512m}
export STOMP_LOAD_MESSAGES=${STOMP_LOAD_MESSAGES:-2000}
NOT_APPLICABLE=protocol-tests/not-applicable.txt
KEEP=${CARGO_TARGET_DIR:-target}/activemq
STARTED=$(now_us)
WORK=

cleanup() {
    local rc=$?
    trap - EXIT
    activemq_stop
    if [ -n "$WORK" ]; then
        mkdir -p "$KEEP"
        cp "$WORK/activemq.log" "$WORK/conf/activemq.xml" "$KEEP/" 2>/dev/null || true
        rm -rf "$WORK"
    fi
    echo "$ME: $( [ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)" ) in" \
        "$(( ($(now_us) - STARTED) / 1000000 )) s; ActiveMQ's log: $KEEP/activemq.log" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

activemq_available
echo "$ME: $(activemq_version)" >&2

# Build first, so the JVM does not compete with the compiler for the cores.
"$CARGO" test --test protocol --no-run

# The exclusions, each checked to name exactly one test: a stale or ambiguous name would skip
# nothing, or too much.
tests=$("$CARGO" test -q --test protocol -- --list 2>/dev/null | sed -n 's/: test$//p')
skips=()
echo "$ME: not applicable to ActiveMQ (they need our own broker; $NOT_APPLICABLE):" >&2
while read -r name why; do
    case $name in '' | '#'*) continue ;; esac
    matches=$(grep -cF -- "$name" <<<"$tests" || true)
    if ! grep -qxF -- "$name" <<<"$tests" || [ "$matches" -ne 1 ]; then
        echo "$ME: $NOT_APPLICABLE names $name, which matches $matches tests, not exactly one" >&2
        exit 2
    fi
    echo "  $name: $why" >&2
    skips+=(--skip "$name")
done <"$NOT_APPLICABLE"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stompbox-activemq.XXXXXX")
mkdir -p "$WORK/conf" "$WORK/data" "$WORK/tmp"
BROKER_LOG=$WORK/activemq.log
# Port 0: the kernel picks a free one, which the broker logs. Scheduler support is on for the
# AMQ_SCHEDULED_* headers; advisories are on by default.
cat >"$WORK/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="protocol-tests"
          useJmx="false" schedulerSupport="true" dataDirectory="$WORK/data">
    <persistenceAdapter>
      <kahaDB directory="$WORK/data/kahadb"/>
    </persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:0"/>
    </transportConnectors>
  </broker>
</beans>
EOF
activemq_launch "$WORK" -Xms64M "-Xmx$ACTIVEMQ_HEAP"

# Its STOMP port, from the log line `Listening for connections at: stomp://localhost:PORT`.
port=
for _ in $(seq 1 1200); do
    port=$(sed -n 's|.*Listening for connections at: stomp://[^:]*:\([0-9][0-9]*\).*|\1|p' \
        "$BROKER_LOG" | head -1)
    [ -z "$port" ] && alive "$AMQ_PID" || break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "$ME: ActiveMQ $(alive "$AMQ_PID" && echo "did not open its STOMP port within 120 s" ||
        echo "exited before it opened its STOMP port"); the end of its log:" >&2
    tail -20 "$BROKER_LOG" >&2
    exit 1
fi

# Ready when a CONNECT is answered with CONNECTED.
stomp_connects() {
    local reply
    reply=$(
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'CONNECT\naccept-version:1.2\nhost:localhost\n\n\0' >&3
        IFS= read -r -t 5 line <&3 && echo "$line"
    ) 2>/dev/null || true
    [ "$reply" = CONNECTED ]
}
for _ in $(seq 1 100); do
    stomp_connects && break
    sleep 0.2
done
if ! stomp_connects; then
    echo "$ME: ActiveMQ does not answer CONNECT on port $port; the end of its log:" >&2
    tail -20 "$BROKER_LOG" >&2
    exit 1
fi
echo "$ME: ActiveMQ (pid $AMQ_PID) serves STOMP on 127.0.0.1:$port after" \
    "$(( ($(now_us) - STARTED) / 1000000 )) s; load:: with $STOMP_LOAD_MESSAGES messages" \
    "per producer" >&2

rc=0
STOMP_ADDR=127.0.0.1:$port STOMP_TARGET=activemq \
    "$CARGO" test --test protocol -- "${skips[@]}" "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "$ME: the end of ActiveMQ's log:" >&2
    tail -20 "$BROKER_LOG" >&2
fi
exit "$rc"
