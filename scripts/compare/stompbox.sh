# Driver for the release stompbox binary (see lib.sh for the interface). Built-in defaults, no
# config file: every shard core, SQLite store in the temp dir.

SB_PID=

stompbox_available() { [ -x "$BIN" ]; }

# Others may be editing src/ while the benchmark runs: say when the binary is not HEAD's.
stompbox_version() {
    local rev
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
    if ! git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null; then
        rev="$rev + uncommitted src changes"
    fi
    echo "stompbox $("$BIN" --version | awk '{print $2}') ($rev)"
}

stompbox_prepare() {
    local dir=$1
    mkdir -p "$dir/data"
    STOMP_PORT=$(free_port)
    IDLE_PORT=$STOMP_PORT
    WS_PORT=$(free_port)
    WS_NONE=
    BROKER_AUTH=()
    BROKER_LOG="$dir/stompbox.log"
    BROKER_SETUP=
}

stompbox_start() {
    local dir=$1
    local args=(serve --bind "127.0.0.1:$STOMP_PORT" --admin-bind 127.0.0.1:0
        --ws-bind "127.0.0.1:$WS_PORT" --data-dir "$dir/data")
    # SB_CONFIG: a config file for this instance (bench.sh's relaxed-durability runs).
    [ -z "${SB_CONFIG:-}" ] || args+=(--config "$SB_CONFIG")
    BROKER_CMD=$(quote "$BIN" "${args[@]}")
    "$BIN" "${args[@]}" >"$dir/stompbox.out" 2>"$BROKER_LOG" </dev/null &
    SB_PID=$!
    LAUNCH_PID=$SB_PID
}

stompbox_pid() { echo "$SB_PID"; }

stompbox_stop() {
    stop_pid "$SB_PID" 15
    SB_PID=
}
