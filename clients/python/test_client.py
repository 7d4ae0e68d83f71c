"""Client behaviour against the one broker of run-smoke.sh: threads, errors, reconnects.

A reconnect is provoked by shutting the client's socket down under it, as a cut network or a
load balancer's idle timeout would; the failover URL then reconnects to the same broker.
"""

import queue
import socket
import threading
import time

import pytest

from stompbox_client import (AuthenticationFailed, BrokerError, Client, ConnectionLost,
                             TransactionLost)

TIMEOUT = 10


def cut(client):
    """Kill the client's TCP connection and wait until it reconnected and resubscribed."""
    before = client.connects
    client._conn.transport.socket.shutdown(socket.SHUT_RDWR)
    deadline = time.monotonic() + TIMEOUT
    while not (client.connects > before and client.connected):
        assert time.monotonic() < deadline, "the client did not reconnect"
        time.sleep(0.01)


def test_a_wrong_passcode_fails_at_once_with_authentication_failed(url, auth, fresh, caplog):
    """The broker refuses the login: the constructor raises AuthenticationFailed carrying the
    ERROR frame, without retrying, although the failover URL would reconnect forever."""
    wrong = auth["passcode"] + "-wrong"
    outcome = queue.Queue()

    def connect():
        try:
            Client(url, login=auth["login"], passcode=wrong).close()
            outcome.put(None)
        except Exception as e:  # checked below, on the test's thread
            outcome.put(e)

    with caplog.at_level("DEBUG", logger="stompbox_client"):
        threading.Thread(target=connect, daemon=True, name="wrong-passcode").start()
        try:
            error = outcome.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no outcome within {TIMEOUT} s: is the refused login being "
                                 "retried?") from None
    assert isinstance(error, AuthenticationFailed), repr(error)
    assert isinstance(error, ConnectionLost) and isinstance(error, BrokerError)
    assert error.frame.headers["message"] == "authentication failed"
    assert str(error).startswith("authentication failed")
    assert wrong not in str(error) and wrong not in caplog.text, "the passcode was shown"
    # One refusal put this address nowhere near the broker's back-off: the right one works.
    with Client(url, **auth) as client:
        client.send(fresh("queue", "after-refusal"), "x")


def test_callbacks_run_on_the_dispatcher_thread(url, auth, fresh):
    destination = fresh("queue", "thread")
    threads = queue.Queue()
    with Client(url, **auth) as client:
        client.subscribe(destination, lambda m: threads.put(threading.current_thread().name))
        client.send(destination, "x")
        assert threads.get(timeout=TIMEOUT) == "stompbox-client-dispatch"


def test_a_refused_send_raises_and_the_client_carries_on(url, auth, fresh):
    destination = fresh("queue", "after-error")
    with Client(url, **auth) as client:
        with pytest.raises(BrokerError) as e:
            client.send("/remote-temp-queue/ID:no-such-connection-1", "x")
        assert "temp" in str(e.value)
        client.send(destination, "still working")  # on a new connection if the ERROR closed it


def test_subscription_survives_a_reconnect_and_unacked_messages_come_back(url, auth, fresh):
    destination = fresh("queue", "resubscribe")
    inbox = queue.Queue()
    with Client(url, **auth) as client:
        client.subscribe(destination, inbox.put, ack="client-individual", id="my-sub")
        client.send(destination, "first")
        first = inbox.get(timeout=TIMEOUT)
        cut(client)
        # Its ack id died with the old connection: nothing is sent, and the broker redelivers.
        assert first.ack() is False
        again = inbox.get(timeout=TIMEOUT)
        assert (again.body, again.redelivered) == ("first", True)
        assert again.subscription.id == "my-sub"
        assert again.ack() is True
        client.send(destination, "second")
        second = inbox.get(timeout=TIMEOUT)
        assert (second.body, second.redelivered) == ("second", False)
        second.ack()


def test_a_transaction_cut_by_a_reconnect_raises_and_commits_nothing(url, auth, fresh):
    destination = fresh("queue", "tx-lost")
    inbox = queue.Queue()
    with Client(url, **auth) as client:
        client.subscribe(destination, inbox.put)
        with pytest.raises(TransactionLost):
            with client.transaction() as tx:
                tx.send(destination, "lost 1")
                cut(client)
                tx.send(destination, "lost 2")
        with client.transaction() as tx:
            tx.send(destination, "committed")
        client.send(destination, "sentinel")
        assert inbox.get(timeout=TIMEOUT).body == "committed"
        assert inbox.get(timeout=TIMEOUT).body == "sentinel"


def test_a_raising_callback_nacks_the_message(url, auth, fresh):
    destination = fresh("queue", "nack")
    seen = queue.Queue()

    def flaky(message):
        seen.put(message)
        if not message.redelivered:
            raise RuntimeError("first delivery fails")
        message.ack()

    with Client(url, **auth) as client:
        client.subscribe(destination, flaky, ack="client-individual")
        client.send(destination, "poison?")
        first, second = seen.get(timeout=TIMEOUT), seen.get(timeout=TIMEOUT)
        assert (first.redelivered, second.redelivered) == (False, True)
        assert first.msg_id == second.msg_id


def test_each_send_gets_a_client_msg_id(url, auth, fresh):
    destination = fresh("queue", "msg-id")
    inbox = queue.Queue()
    with Client(url, **auth) as client:
        client.subscribe(destination, inbox.put)
        a = client.send(destination, "a")
        b = client.send(destination, "b", headers={"stompbox-client-msg-id": "mine-1"})
        assert b.msg_id == "mine-1"
        got = [inbox.get(timeout=TIMEOUT), inbox.get(timeout=TIMEOUT)]
        assert [(m.body, m.msg_id, m.resent) for m in got] == [("a", a.msg_id, False),
                                                              ("b", "mine-1", False)]
