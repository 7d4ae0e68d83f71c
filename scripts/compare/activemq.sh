# Driver for Apache ActiveMQ "Classic" from Debian's `activemq` package (see lib.sh for the
# interface). We do not use the package's init script or instance: the java process runs in the
# foreground as our child, with a generated activemq.xml in the temp dir, KahaDB there too, and
# two STOMP connectors on loopback: `stomp://` (blocking I/O, a thread per connection: the
# distribution's default STOMP connector) for the throughput scenarios and `stomp+nio://` (a
# selector pool, what ActiveMQ recommends for many connections) for the idle connections.
# A `ws://` connector (STOMP over WebSocket, for the WebSocket client scenarios) only where
# the ws transport is installed: it lives in activemq-http with Jetty, which Debian's package
# leaves out, so with Debian's 5.17 there is none.
# JVM heap as the upstream 5.17 `bin/env` sets it (-Xms64M -Xmx1G); broker memory limits are
# left at their defaults (no <systemUsage>); JMX off as in Debian's shipped activemq.xml.
# scripts/activemq/run.sh (the protocol suite against ActiveMQ) uses activemq_available and
# activemq_launch with a config of its own.

AMQ_HOME=/usr/share/activemq
AMQ_PID=

activemq_java() {
    if [ -x /usr/lib/jvm/default-java/bin/java ]; then
        echo /usr/lib/jvm/default-java/bin/java
    else
        command -v java
    fi
}

activemq_available() {
    if [ ! -f "$AMQ_HOME/bin/activemq.jar" ] || [ -z "$(activemq_java)" ]; then
        apt_install activemq || true
    fi
    if [ ! -f "$AMQ_HOME/bin/activemq.jar" ]; then
        echo "$ME: ActiveMQ not available ($AMQ_HOME/bin/activemq.jar missing," \
            "apt-get install activemq failed)" >&2
        return 1
    fi
    if [ -z "$(activemq_java)" ]; then
        echo "$ME: ActiveMQ not available (no java)" >&2
        return 1
    fi
}

# True when a jar ActiveMQ loads registers the ws transport (the service file's name is
# stored uncompressed in the jar's directory, so grep finds it).
activemq_has_ws() {
    find -L "$AMQ_HOME/lib" -name '*.jar' -print0 2>/dev/null |
        xargs -0 -r grep -l -a -F 'META-INF/services/org/apache/activemq/transport/ws' \
            2>/dev/null | grep -q .
}

activemq_version() {
    local pkg java
    pkg=$(dpkg-query -W -f '${Version}' activemq 2>/dev/null || echo '?')
    java=$("$(activemq_java)" -version 2>&1 | sed -n '1s/.*version "\([^"]*\)".*/\1/p')
    echo "ActiveMQ $pkg (Debian activemq), OpenJDK $java"
}

# Not timed: ports and config.
activemq_prepare() {
    local dir=$1
    mkdir -p "$dir/conf" "$dir/data" "$dir/tmp"
    STOMP_PORT=$(free_port)
    IDLE_PORT=$(free_port)
    WS_PORT=
    WS_NONE="Debian's activemq has no ws transport (activemq-http and Jetty are not packaged)"
    local ws=
    if activemq_has_ws; then
        WS_PORT=$(free_port)
        WS_NONE=
        ws="
      <transportConnector name=\"ws\" uri=\"ws://127.0.0.1:$WS_PORT\"/>"
    fi
    BROKER_AUTH=()
    BROKER_LOG="$dir/activemq.log"
    BROKER_SETUP=
    cat >"$dir/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="bench" useJmx="false"
          dataDirectory="$dir/data">
    <persistenceAdapter>
      <kahaDB directory="$dir/data/kahadb"/>
    </persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp"
          uri="stomp://127.0.0.1:$STOMP_PORT?transport.hbGracePeriodMultiplier=1.5"/>
      <transportConnector name="stomp-nio"
          uri="stomp+nio://127.0.0.1:$IDLE_PORT?transport.hbGracePeriodMultiplier=1.5"/>$ws
    </transportConnectors>
  </broker>
</beans>
EOF
}

activemq_start() {
    activemq_launch "$1" -Xms64M -Xmx1G
}

# activemq_launch DIR JVM_FLAG...: starts the broker of DIR/conf/activemq.xml in the background
# as a child of this shell, logging (log4j, configured here) to BROKER_LOG; its data and temp
# files go to DIR. Sets AMQ_PID and LAUNCH_PID (the java process) and BROKER_CMD.
activemq_launch() {
    local dir=$1
    shift
    cat >"$dir/conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{HH:mm:ss,SSS} %-5p %m%n
EOF
    # The JVM flags of Debian's /usr/bin/activemq launcher, minus its daemon plumbing.
    local java
    java=$(activemq_java)
    local args=("$@"
        --add-reads=java.xml=java.logging
        --add-opens java.base/java.security=ALL-UNNAMED
        --add-opens java.base/java.net=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        --add-opens java.naming/javax.naming.spi=ALL-UNNAMED
        --add-opens java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED
        --add-opens java.base/java.util.concurrent=ALL-UNNAMED
        --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
        "-Dactivemq.home=$AMQ_HOME" "-Dactivemq.base=$dir" "-Dactivemq.conf=$dir/conf"
        "-Dactivemq.data=$dir/data" "-Djava.io.tmpdir=$dir/tmp"
        "-Dlog4j.configuration=file:$dir/conf/log4j.properties"
        -jar "$AMQ_HOME/bin/activemq.jar" start "xbean:file:$dir/conf/activemq.xml")
    BROKER_CMD=$(quote "$java" "${args[@]}")
    "$java" "${args[@]}" >"$BROKER_LOG" 2>&1 </dev/null &
    AMQ_PID=$!
    LAUNCH_PID=$AMQ_PID
}

activemq_pid() { echo "$AMQ_PID"; }

activemq_stop() {
    stop_pid "$AMQ_PID" 30
    AMQ_PID=
}
