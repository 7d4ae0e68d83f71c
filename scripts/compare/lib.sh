# Helpers shared by scripts/bench.sh, scripts/activemq/run.sh and the broker drivers next to this
# file (sourced, not run). Messages name the script that sourced them ($ME).
#
# A driver is a file scripts/compare/NAME.sh that defines:
#   NAME_available         0 when the broker can run here (installing it first when missing);
#                          otherwise prints why on stderr and returns 1
#   NAME_version           one line: what runs (package and runtime versions)
#   NAME_prepare DIR       untimed set-up with everything in DIR: sets STOMP_PORT, IDLE_PORT
#                          (the port for the idle connections scenario), WS_PORT (STOMP over
#                          WebSocket; empty when the broker has none here, and then WS_NONE
#                          says why), BROKER_AUTH (extra `stompbox bench` flags, which the
#                          client scripts of scripts/compare/clients/ take too), BROKER_LOG
#                          and BROKER_SETUP (commands it ran, for the docs; may be empty);
#                          writes config files
#   NAME_start DIR         launches the broker in the background as a child of this shell
#                          (the startup time runs from here until STOMP_PORT accepts); sets
#                          LAUNCH_PID (the process whose exit means "failed to start") and
#                          BROKER_CMD (how it was started, shell-quoted, for the docs)
#   NAME_pid               the broker process to read RSS from (valid once the port accepts)
#   NAME_stop              stops everything NAME_prepare and NAME_start launched; idempotent,
#                          safe at any point (also from the EXIT trap)

ME=${ME:-${0##*/}}

# True while PID runs (a zombie, exited but not yet reaped, does not count). No fork: it runs
# every few milliseconds while a broker starts.
alive() {
    local line
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
    while IFS= read -r line; do
        case $line in
        State:*Z* | State:*X*) return 1 ;;
        State:*) return 0 ;;
        esac
    done 2>/dev/null <"/proc/$1/status"
    return 0
}

# stop_pid PID GRACE_S: SIGTERM, wait up to GRACE_S seconds, then SIGKILL; reaps our children.
stop_pid() {
    local pid=$1 grace=${2:-15} i
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            echo "$ME: process $pid ignored SIGTERM for ${grace}s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# Microseconds since the epoch, without forking.
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

# A loopback TCP port nothing listens on, below the ephemeral range (so no outgoing connection
# of the benchmark takes it later) and not handed out before in this run.
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
            USED_PORTS="$USED_PORTS$p "
            echo "$p"
            return 0
        fi
    done
    echo "$ME: no free port found" >&2
    return 1
}

# True when something accepts TCP connections on 127.0.0.1:PORT (no fork: a redirection on a
# builtin opens and closes the socket).
accepts() { { : <>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; }

# wait_port PORT PID TIMEOUT_S: polls every ~5 ms until PORT accepts (0), PID exits (1) or the
# timeout passes (2).
wait_port() {
    local port=$1 pid=$2 deadline=$(($(now_us) + $3 * 1000000))
    while :; do
        accepts "$port" && return 0
        alive "$pid" || return 1
        [ "$(now_us)" -lt "$deadline" ] || return 2
        sleep 0.005
    done
}

# Shell-quotes its arguments into one line.
quote() { local q; printf -v q '%q ' "$@"; echo "${q% }"; }

# CPU seconds (utime + stime) PID has used, from /proc/PID/stat; empty when it is gone. The
# command name in parentheses may hold spaces: fields are counted after its ')'.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
proc_cpu_s() {
    awk -v hz="$CLK_TCK" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
        "/proc/$1/stat" 2>/dev/null || true
}

# Seconds of user + sys CPU in the second line of the `times` builtin's output (this shell's
# finished children, and theirs), saved in FILE: `times` has to run in the shell itself, since
# a subshell's children start at zero.
times_s() {
    awk 'NR == 2 { for (i = 1; i <= 2; i++) { v = $i; sub(/s$/, "", v); split(v, p, "m");
        t += p[1] * 60 + p[2] } printf "%.3f", t }' "$1"
}

# /proc/PID/status field (VmRSS, VmHWM) in KiB; empty when the process is gone.
proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# Escapes a string for a JSON string literal.
json_str() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/ }
    printf '"%s"' "$s"
}

# apt_install PACKAGE...: installs Debian packages, running `apt-get update` first only if the
# plain install fails (a stale package index). Root runs apt-get itself, anyone else through
# sudo. Quiet unless it fails.
apt_install() {
    command -v apt-get >/dev/null || { echo "$ME: no apt-get to install $*" >&2; return 1; }
    local log apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    [ "$(id -u)" -eq 0 ] || apt=(sudo "${apt[@]}")
    log=$(mktemp)
    echo "$ME: installing $* (apt-get)" >&2
    if "${apt[@]}" install -y -q "$@" >"$log" 2>&1 ||
        { "${apt[@]}" update -q >>"$log" 2>&1 &&
            "${apt[@]}" install -y -q "$@" >>"$log" 2>&1; }; then
        rm -f "$log"
        return 0
    fi
    tail -5 "$log" >&2
    rm -f "$log"
    return 1
}
