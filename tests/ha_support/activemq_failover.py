#!/usr/bin/env python3
"""The ActiveMQ comparison of docs/ha.md: kill -9 of the master -> first successful STOMP
CONNECT on the slave, for ActiveMQ 5.x's shared-store pair (two brokers, one KahaDB
directory, the kernel file lock on `kahadb/lock`), measured the way tests/ha.rs
`failover_timing` measures stompbox: the killed broker comes back as the next slave.

Not part of `make test` (it needs Debian's `activemq` package and takes a few minutes):

    python3 tests/ha_support/activemq_failover.py [TRIALS]

The slave tries the lock every `lockAcquireSleepInterval` (10 s by default), so the time
depends on when, in that period, the master dies: each trial waits a random 1-11 s (seeded)
before the kill, as a crash would.
"""
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOME = "/usr/share/activemq"
XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false"
          brokerName="broker-{name}" dataDirectory="{base}/data" persistent="true">
    <persistenceAdapter><kahaDB directory="{shared}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:{openwire}"/>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{stomp}"/>
    </transportConnectors>
  </broker>
</beans>
"""
LOG4J = """log4j.rootLogger=INFO, stdout
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{HH:mm:ss,SSS} %-5p %m%n
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, root, name, shared):
        self.name, self.base = name, os.path.join(root, name)
        self.stomp = free_port()
        for d in ("conf", "data", "tmp"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        with open(os.path.join(self.base, "conf", "activemq.xml"), "w") as f:
            f.write(XML.format(name=name, base=self.base, shared=shared,
                               openwire=free_port(), stomp=self.stomp))
        with open(os.path.join(self.base, "conf", "log4j.properties"), "w") as f:
            f.write(LOG4J)
        self.log = os.path.join(root, f"{name}.log")
        self.proc = None

    def start(self):
        b = self.base
        out = open(self.log, "a")
        self.log_pos = os.path.getsize(self.log)
        self.proc = subprocess.Popen(
            ["java", "-Xms256M", "-Xmx256M", f"-Dactivemq.home={HOME}", f"-Dactivemq.base={b}",
             f"-Dactivemq.conf={b}/conf", f"-Dactivemq.data={b}/data", f"-Djava.io.tmpdir={b}/tmp",
             f"-Dlog4j.configuration=file:{b}/conf/log4j.properties",
             "-jar", f"{HOME}/bin/activemq.jar", "start", f"xbean:file:{b}/conf/activemq.xml"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def wait_log(self, text, limit=120):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with open(self.log, "rb") as f:
                f.seek(self.log_pos)
                if text in f.read():
                    return
            time.sleep(0.05)
        raise SystemExit(f"{self.name}: no {text!r} in {self.log} within {limit} s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def stomp_connect(port, timeout=1.0):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        s.settimeout(timeout)
        s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0")
        data = b""
        while b"\0" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return False
            data += chunk
        return data.startswith(b"CONNECTED")
    except OSError:
        return False
    finally:
        s.close()


def main():
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if not os.path.exists(f"{HOME}/bin/activemq.jar"):
        raise SystemExit("needs Debian's activemq package (apt-get install activemq)")
    random.seed(4)
    with tempfile.TemporaryDirectory() as root:
        shared = os.path.join(root, "shared")
        pair = [Broker(root, "a", shared), Broker(root, "b", shared)]
        try:
            pair[0].start()
            pair[0].wait_log(b"Connector stomp started")
            pair[1].start()
            pair[1].wait_log(b"slave mode")
            master, samples = 0, []
            for i in range(trials):
                slave = 1 - master
                time.sleep(random.uniform(1.0, 11.0))
                t0 = time.monotonic()
                pair[master].kill9()
                while not stomp_connect(pair[slave].stomp):
                    if time.monotonic() - t0 > 120:
                        raise SystemExit("the slave never served")
                    time.sleep(0.001)
                took = time.monotonic() - t0
                samples.append(took)
                print(f"trial {i + 1}: {took:.3f} s", flush=True)
                pair[master].start()
                pair[master].wait_log(b"slave mode")
                master = slave
            print(f"samples: {[round(x, 3) for x in samples]}")
            print(f"ActiveMQ shared-store pair, kill -9 -> first STOMP CONNECT, {trials} trials: "
                  f"median {statistics.median(samples):.3f} s, max {max(samples):.3f} s")
        finally:
            for b in pair:
                b.stop()


if __name__ == "__main__":
    main()
