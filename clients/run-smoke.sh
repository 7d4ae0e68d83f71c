#!/usr/bin/env bash
# Run one language's client smoke tests against a fresh stompbox.
#
#   clients/run-smoke.sh python|ruby|js
#
# Builds nothing: expects target/debug/stompbox (override with STOMPBOX_BIN) and the
# language's dependencies (`make clients-deps`). Starts the broker on a free port with a
# temporary data dir, runs the tests with STOMP_HOST/STOMP_PORT and STOMP_WS_URL set, always
# stops the broker and removes the temporary dirs, and exits with the tests' status. The tests get
# STOMPBOX_BIN too, to start brokers of their own (clients/pair.sh: a master/standby pair).
#
# The broker refuses anonymous CONNECTs: it knows one user, `app`, with a passcode made up for
# this run, and the tests get them as STOMP_LOGIN and STOMP_PASSCODE. So every test and example
# that passes proves it logs in; one test per language checks a wrong passcode is refused.
set -euo pipefail
# shellcheck source=clients/auth.sh
source "$(dirname "${BASH_SOURCE[0]}")/auth.sh"

lang="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${STOMPBOX_BIN:-$root/target/debug/stompbox}"
# Seconds to wait for the broker's "stompbox listening" line.
start_timeout="${STOMPBOX_START_TIMEOUT:-30}"

case "$lang" in
  python) tests=("$root/.venv/bin/python" -m pytest -p no:cacheprovider "$root/clients/python") ;;
  # Every clients/ruby/test_*.rb, as `node --test` takes every *.test.js of clients/js.
  ruby) tests=(ruby -e 'Dir[File.join(ARGV.shift, "test_*.rb")].sort.each { |f| require f }' "$root/clients/ruby") ;;
  js) tests=(node --test "$root/clients/js/") ;;
  *)
    echo "usage: $0 python|ruby|js" >&2
    exit 2
    ;;
esac

if [[ ! -x "$bin" ]]; then
  echo "run-smoke: $bin not found; run cargo build first" >&2
  exit 2
fi

data_dir="$(mktemp -d)"
log_dir="$(mktemp -d)"
broker_pid=""

stop_broker() {
  if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$broker_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$broker_pid" 2>/dev/null; then
      echo "run-smoke: broker ignored SIGTERM for 5 s, killing it" >&2
      kill -KILL "$broker_pid" 2>/dev/null || true
    fi
    local rc=0
    wait "$broker_pid" 2>/dev/null || rc=$?
    if [[ "$rc" -ne 0 ]]; then
      echo "run-smoke: broker exited with status $rc after SIGTERM (expected 0)" >&2
    fi
  fi
  broker_pid=""
}

cleanup() {
  stop_broker
  rm -rf "$data_dir" "$log_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_broker_log() {
  echo "--- broker stdout ---" >&2
  tail -n 20 "$log_dir/stdout" >&2 || true
  echo "--- broker stderr (last 40 lines) ---" >&2
  tail -n 40 "$log_dir/stderr" >&2 || true
}

login=app
passcode="$(random_passcode)"
write_auth_config "$bin" "$login" "$passcode" "$log_dir/stompbox.toml"

# Create the log files first: the redirections below happen in the background child, which
# may not have run yet when we first look for the port.
: >"$log_dir/stdout"
: >"$log_dir/stderr"
"$bin" serve --config "$log_dir/stompbox.toml" --bind 127.0.0.1:0 --admin-bind 127.0.0.1:0 \
  --ws-bind 127.0.0.1:0 --data-dir "$data_dir" >"$log_dir/stdout" 2>"$log_dir/stderr" &
broker_pid=$!

port=""
deadline=$((SECONDS + start_timeout))
while [[ -z "$port" ]]; do
  port="$(sed -n 's/^stompbox listening stomp=[^ ]*:\([0-9][0-9]*\)\( .*\)\{0,1\}$/\1/p' "$log_dir/stdout" | head -n 1)"
  [[ -n "$port" ]] && break
  if ! kill -0 "$broker_pid" 2>/dev/null; then
    echo "run-smoke: broker exited before listening" >&2
    show_broker_log
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "run-smoke: no 'stompbox listening stomp=HOST:PORT' line within ${start_timeout}s" >&2
    show_broker_log
    exit 1
  fi
  sleep 0.1
done

# The same line names the WebSocket listener (ws=HOST:PORT), for the STOMP over WebSocket tests.
ws_addr="$(sed -n 's/^stompbox listening .* ws=\([^ ]*\).*$/\1/p' "$log_dir/stdout" | head -n 1)"
if [[ -z "$ws_addr" ]]; then
  echo "run-smoke: the listening line names no ws= listener" >&2
  show_broker_log
  exit 1
fi

echo "run-smoke: $lang against stompbox on 127.0.0.1:$port, ws://$ws_addr/stomp" \
  "(pid $broker_pid), login $login required"
status=0
STOMPBOX_BIN="$bin" STOMP_HOST=127.0.0.1 STOMP_PORT="$port" STOMP_WS_URL="ws://$ws_addr/stomp" \
  STOMP_LOGIN="$login" STOMP_PASSCODE="$passcode" "${tests[@]}" || status=$?
if [[ "$status" -ne 0 ]]; then
  echo "run-smoke: $lang smoke tests failed with status $status" >&2
  show_broker_log
fi
exit "$status"
