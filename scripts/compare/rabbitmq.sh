# Driver for RabbitMQ from Debian's `rabbitmq-server` package with its STOMP plugin (see lib.sh
# for the interface). Not the system service: `rabbitmq-server` runs in the foreground as our
# child with its node name, Mnesia dir, logs, config, enabled-plugins file, Erlang cookie
# ($HOME) and epmd all in the temp dir, and every listener (AMQP, STOMP, Erlang distribution,
# epmd) on loopback. Default memory and disk limits; guest/guest, which works from localhost.

RMQ_LIB=/usr/lib/rabbitmq/bin
RMQ_WRAPPER=
RMQ_EPMD=
RMQ_ENV=()

rabbitmq_available() {
    if [ ! -x "$RMQ_LIB/rabbitmq-server" ]; then
        apt_install rabbitmq-server || true
    fi
    if [ ! -x "$RMQ_LIB/rabbitmq-server" ]; then
        echo "bench.sh: RabbitMQ not available ($RMQ_LIB/rabbitmq-server missing," \
            "apt-get install rabbitmq-server failed)" >&2
        return 1
    fi
    if ! ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbitmq_stomp-* >/dev/null 2>&1
    then
        echo "bench.sh: RabbitMQ not available (no rabbitmq_stomp plugin)" >&2
        return 1
    fi
    if ! command -v epmd >/dev/null; then
        echo "bench.sh: RabbitMQ not available (no epmd)" >&2
        return 1
    fi
}

rabbitmq_version() {
    local pkg erl
    pkg=$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo '?')
    erl=$(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null || echo '?')
    echo "RabbitMQ $pkg (Debian rabbitmq-server, rabbitmq_stomp), Erlang $erl"
}

# Not timed: ports, config, our own epmd on a loopback port, and the STOMP plugin enabled.
rabbitmq_prepare() {
    local dir=$1
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"
    local amqp epmd_port dist
    STOMP_PORT=$(free_port)
    IDLE_PORT=$STOMP_PORT
    WS_PORT=
    WS_NONE="rabbitmq_web_stomp is not enabled here"
    amqp=$(free_port)
    dist=$(free_port)
    epmd_port=$(free_port)
    BROKER_AUTH=(--login guest --passcode guest)
    BROKER_LOG="$dir/rabbitmq.out"
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$amqp
stomp.listeners.tcp.1 = 127.0.0.1:$STOMP_PORT
EOF
    : >"$dir/rabbitmq-env.conf"
    : >"$dir/enabled_plugins"
    RMQ_ENV=(
        "HOME=$dir/home"
        "RABBITMQ_NODENAME=stompbench$$@localhost"
        "RABBITMQ_MNESIA_BASE=$dir/mnesia"
        "RABBITMQ_LOG_BASE=$dir/log"
        "RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf"
        "RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config"
        "RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf"
        "RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins"
        "RABBITMQ_PLUGINS_EXPAND_DIR=$dir/plugins-expand"
        "RABBITMQ_PID_FILE=$dir/rabbitmq.pid"
        "RABBITMQ_DIST_PORT=$dist"
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
        "ERL_EPMD_PORT=$epmd_port"
    )
    epmd -port "$epmd_port" -address 127.0.0.1 >"$dir/epmd.log" 2>&1 </dev/null &
    RMQ_EPMD=$!
    wait_port "$epmd_port" "$RMQ_EPMD" 10 || { echo "bench.sh: epmd did not start" >&2; return 1; }
    BROKER_SETUP="$(quote epmd -port "$epmd_port" -address 127.0.0.1) &
$(quote env "${RMQ_ENV[@]}" "$RMQ_LIB/rabbitmq-plugins" --offline enable rabbitmq_stomp)"
    env "${RMQ_ENV[@]}" "$RMQ_LIB/rabbitmq-plugins" --offline enable rabbitmq_stomp \
        >"$dir/plugins.log" 2>&1 || {
        echo "bench.sh: rabbitmq-plugins --offline enable rabbitmq_stomp failed:" >&2
        tail -5 "$dir/plugins.log" >&2
        return 1
    }
}

rabbitmq_start() {
    BROKER_CMD=$(quote env "${RMQ_ENV[@]}" "$RMQ_LIB/rabbitmq-server")
    env "${RMQ_ENV[@]}" "$RMQ_LIB/rabbitmq-server" >"$BROKER_LOG" 2>&1 </dev/null &
    RMQ_WRAPPER=$!
    LAUNCH_PID=$RMQ_WRAPPER
}

# The Erlang VM: the wrapper script's child.
rabbitmq_pid() { pgrep -P "$RMQ_WRAPPER" -x beam.smp | head -1 || true; }

rabbitmq_stop() {
    local beam=
    [ -z "$RMQ_WRAPPER" ] || beam=$(pgrep -P "$RMQ_WRAPPER" -x beam.smp | head -1 || true)
    # The wrapper turns SIGTERM into an orderly stop of the VM and waits for it.
    stop_pid "$RMQ_WRAPPER" 30
    if alive "$beam"; then
        echo "bench.sh: RabbitMQ VM $beam outlived its wrapper; killing it" >&2
        kill -KILL "$beam" 2>/dev/null || true
    fi
    stop_pid "$RMQ_EPMD" 5
    RMQ_WRAPPER=
    RMQ_EPMD=
}
