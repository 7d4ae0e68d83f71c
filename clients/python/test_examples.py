"""Every example, run end to end as a subprocess against the broker of run-smoke.sh, with
STOMP_URL unset so it reads STOMP_HOST / STOMP_PORT as its docstring says. That broker
refuses anonymous CONNECTs, so each example must log in with STOMP_LOGIN / STOMP_PASSCODE."""

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

from conftest import EXAMPLES, EXAMPLE_TIMEOUT, run_example
from stompbox_client import Client, credentials_from_env


@pytest.fixture(autouse=True)
def no_stomp_url(monkeypatch):
    monkeypatch.delenv("STOMP_URL", raising=False)


def drain(url, destination, quiet=1.0):
    """Every message waiting on `destination` (ACKed), until none comes for `quiet` s."""
    inbox = queue.Queue()
    bodies = []
    with Client(url, **credentials_from_env()) as client:
        client.subscribe(destination, inbox.put, ack="client-individual")
        while True:
            try:
                message = inbox.get(timeout=quiet)
            except queue.Empty:
                return bodies
            bodies.append(message.body)
            message.ack()


def test_producer_then_consumer(fresh):
    destination = fresh("queue", "example")
    sent = run_example("producer.py", destination, 5)
    assert sent == [f"sent {i} to {destination}" for i in range(5)]
    received = run_example("consumer.py", destination, 5)
    assert [line.split(" message-id=")[0] for line in received] == [
        f"received 'hello {i}'" for i in range(5)]


def test_consumer_acked_what_it_printed(url, fresh):
    destination = fresh("queue", "acked")
    run_example("producer.py", destination, 3)
    run_example("consumer.py", destination, 2)
    # The two it printed were ACKed; the third went back and is still there.
    assert drain(url, destination) == ["hello 2"]


def test_request_reply_over_a_temporary_queue(fresh):
    lines = run_example("request_reply.py", fresh("queue", "service"), 3)
    assert lines == [f"reply to req-{i}: 'REQUEST {i}' correlation-id=req-{i}"
                     for i in range(3)]


def test_transacted_batch_delivers_only_the_committed_batch(url, fresh):
    destination = fresh("queue", "batch")
    lines = run_example("transacted_batch.py", destination, 4)
    assert lines == ["aborted: batch 1 failed after 2 messages",
                     f"committed batch 2: 4 messages to {destination}"]
    assert drain(url, destination) == [f"batch 2 message {i}" for i in range(4)]


def test_durable_subscriber_gets_what_was_published_while_away(fresh):
    lines = run_example("durable_subscriber.py", fresh("topic", "news"))
    assert lines[2:5] == [f"received while away: 'news {i}'" for i in range(3)]
    assert lines[-1] == "deleted the durable subscription"


def test_selector_consumer_gets_only_matching_messages(url, fresh):
    destination = fresh("queue", "selector")
    lines = run_example("selector_consumer.py", destination, "priority > 5")
    assert sorted(lines) == sorted(f"selected 'priority {p}' priority={p}" for p in (6, 7, 8, 9))
    # What the selector did not match is still waiting for someone else.
    assert sorted(drain(url, destination)) == sorted(f"priority {p}" for p in range(6))


def test_failover_demo_against_one_broker(fresh):
    lines = run_example("failover_demo.py", fresh("queue", "demo"), 5, 0)
    assert lines[0].startswith("connected to ")
    assert lines[1:6] == [f"receipted {i}" for i in range(5)]
    assert lines[-1] == "done: 5 receipted, 0 reconnect(s), 0 resent"


def test_failover_demo_moves_to_the_standby_when_the_master_dies(pair, fresh):
    """The demo as its docstring describes it: kill -9 the master mid-stream."""
    env = dict(os.environ)
    env["STOMP_URL"] = (f"failover:(tcp://127.0.0.1:{pair['A_PORT']},"
                        f"tcp://127.0.0.1:{pair['B_PORT']})?randomize=false")
    env["STOMP_LOGIN"], env["STOMP_PASSCODE"] = pair["STOMP_LOGIN"], pair["STOMP_PASSCODE"]
    count = 40
    with tempfile.TemporaryFile(mode="w+") as err_file:
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / "failover_demo.py"),
                                 fresh("queue", "demo-pair"), str(count), "0.01"],
                                env=env, stdout=subprocess.PIPE, stderr=err_file, text=True)
        # Read stdout to its end on this thread; a watchdog ends a demo that hangs.
        watchdog = threading.Timer(EXAMPLE_TIMEOUT, proc.kill)
        watchdog.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("receipted 10\n"):
                    os.kill(int(pair["A_PID"]), signal.SIGKILL)
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        err_file.seek(0)
        err = err_file.read()
    assert proc.returncode == 0, f"{lines}\n{err}"
    assert f"connected to 127.0.0.1:{pair['A_PORT']}" == lines[0]
    assert f"connected to 127.0.0.1:{pair['B_PORT']}" in lines
    assert [line for line in lines if line.startswith("receipted")] == [
        f"receipted {i}" for i in range(count)]
    assert lines[-1].startswith(f"done: {count} receipted, 1 reconnect(s), ")
