#!/usr/bin/env bash
# A master/standby pair of stompbox brokers for the client failover tests.
#
#   clients/pair.sh start DIR    start a pair; writes DIR/pair.env and prints it (bar the passcode)
#   clients/pair.sh stop DIR     stop both (SIGKILL) and remove DIR
#
# Both brokers share DIR/data (one SQLite file, one lease) and listen on fixed free loopback
# ports, so a client's failover URL names both before either starts. `a` is started first and
# is the master when `start` returns; `b` stands by (STOMP listener closed, /health 503) and
# takes over when `a` dies. DIR/pair.env holds shell assignments:
#   A_PORT B_PORT       STOMP ports      A_ADMIN B_ADMIN   admin (HTTP) ports
#   A_PID  B_PID        process ids
#   STOMP_LOGIN STOMP_PASSCODE           the one user both brokers let in
# Both refuse anonymous CONNECTs (DIR/stompbox.toml, which holds only the passcode's hash). The
# user is STOMP_LOGIN (default app) with STOMP_PASSCODE (default: a random one), as
# clients/run-smoke.sh exports them to the tests; pair.env repeats both, for a shell or a test
# that did not choose them (`set -a; . DIR/pair.env; set +a` exports them), so DIR is made
# readable by its owner only.
# Uses STOMPBOX_BIN (default target/debug/stompbox). Logs are DIR/a.log and DIR/b.log.
set -euo pipefail
# shellcheck source=clients/auth.sh
source "$(dirname "${BASH_SOURCE[0]}")/auth.sh"

cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${STOMPBOX_BIN:-$root/target/debug/stompbox}"
timeout="${STOMPBOX_START_TIMEOUT:-30}"

free_ports() {
  # Bound all at once so the four are distinct; closed before the brokers bind them.
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

wait_line() { # file pattern pid
  local deadline=$((SECONDS + timeout))
  until grep -q "$2" "$1" 2>/dev/null; do
    if ! kill -0 "$3" 2>/dev/null; then
      echo "pair: broker $3 exited before printing '$2'" >&2
      tail -n 30 "$1" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "pair: no '$2' from broker $3 within ${timeout}s" >&2
      tail -n 30 "$1" >&2 || true
      return 1
    fi
    sleep 0.05
  done
}

case "$cmd" in
  start)
    if [[ ! -x "$bin" ]]; then
      echo "pair: $bin not found; run cargo build first" >&2
      exit 2
    fi
    login="${STOMP_LOGIN:-app}"
    passcode="${STOMP_PASSCODE:-$(random_passcode)}"
    check_credential STOMP_LOGIN "$login"
    check_credential STOMP_PASSCODE "$passcode"
    mkdir -p "$dir/data"
    chmod 700 "$dir"
    write_auth_config "$bin" "$login" "$passcode" "$dir/stompbox.toml"
    read -r a_port a_admin b_port b_admin <<<"$(free_ports 4)"
    "$bin" serve --config "$dir/stompbox.toml" --bind "127.0.0.1:$a_port" \
      --admin-bind "127.0.0.1:$a_admin" --ws-bind 127.0.0.1:0 --data-dir "$dir/data" \
      >"$dir/a.log" 2>&1 &
    a_pid=$!
    echo "A_PID=$a_pid" >"$dir/pair.env"
    wait_line "$dir/a.log" "stompbox listening" "$a_pid"
    "$bin" serve --config "$dir/stompbox.toml" --bind "127.0.0.1:$b_port" \
      --admin-bind "127.0.0.1:$b_admin" --ws-bind 127.0.0.1:0 --data-dir "$dir/data" \
      >"$dir/b.log" 2>&1 &
    b_pid=$!
    echo "B_PID=$b_pid" >>"$dir/pair.env"
    wait_line "$dir/b.log" "stompbox admin" "$b_pid"
    cat >"$dir/pair.env" <<ENV
A_PORT=$a_port
B_PORT=$b_port
A_ADMIN=$a_admin
B_ADMIN=$b_admin
A_PID=$a_pid
B_PID=$b_pid
STOMP_LOGIN=$login
STOMP_PASSCODE=$passcode
ENV
    # The passcode stays in the file (a terminal or a CI log is no place for it).
    sed 's/^STOMP_PASSCODE=.*/STOMP_PASSCODE=(in pair.env)/' "$dir/pair.env"
    ;;
  stop)
    if [[ -f "$dir/pair.env" ]]; then
      # shellcheck disable=SC1091
      source "$dir/pair.env"
      for pid in ${A_PID:-} ${B_PID:-}; do
        kill -KILL "$pid" 2>/dev/null || true
      done
      for pid in ${A_PID:-} ${B_PID:-}; do
        for _ in $(seq 100); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.05
        done
      done
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
