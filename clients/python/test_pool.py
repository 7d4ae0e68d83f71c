"""The pool: many threads sending through a few long-lived connections."""

import queue
import socket
import threading
import time

from stompbox_client import Client, Pool

THREADS = 12
PER_THREAD = 40
SIZE = 3


def test_many_threads_few_connections_each_message_once(url, auth, fresh):
    destination = fresh("queue", "pool")
    lent = 0
    most_lent = 0
    lock = threading.Lock()
    errors = []

    def worker(pool, t):
        nonlocal lent, most_lent
        try:
            for i in range(PER_THREAD):
                with pool.client() as c:
                    with lock:
                        lent += 1
                        most_lent = max(most_lent, lent)
                    try:
                        c.send(destination, f"{t}-{i}", headers={"persistent": "true"})
                    finally:
                        with lock:
                            lent -= 1
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    with Pool(url, size=SIZE, **auth) as pool:
        threads = [threading.Thread(target=worker, args=(pool, t)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a sender thread is stuck"
        assert errors == []
        assert pool.created <= SIZE
        assert pool.open_connections <= SIZE
        assert most_lent <= SIZE
        connects = pool.created

    expected = {f"{t}-{i}" for t in range(THREADS) for i in range(PER_THREAD)}
    inbox = queue.Queue()
    received = []
    with Client(url, **auth) as consumer:
        consumer.subscribe(destination, inbox.put, ack="client-individual")
        while len(received) < len(expected):
            message = inbox.get(timeout=10)
            received.append(message.body)
            message.ack()
        try:
            extra = inbox.get(timeout=0.5)
            raise AssertionError(f"more messages than sent, e.g. {extra.body!r}")
        except queue.Empty:
            pass
    assert sorted(received) == sorted(expected), "a message was lost or delivered twice"
    print(f"pool: {THREADS} threads sent {len(expected)} messages over {connects} connections")


def test_a_dead_connection_is_replaced(url, auth, fresh):
    """With a plain tcp:// URL a Client does not reconnect; the pool drops it and opens a
    new one in its place."""
    plain = "tcp://" + url.split("tcp://")[1].split(")")[0]
    destination = fresh("queue", "pool-replace")
    with Pool(plain, size=1, **auth) as pool:
        with pool.client() as c:
            c.send(destination, "before")
            # What a broker restart or a cut network does: the socket dies under the client.
            c._conn.transport.socket.shutdown(socket.SHUT_RDWR)
            deadline = time.monotonic() + 10
            while c.usable and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not c.usable, "the client did not notice its socket died"
        pool.send(destination, "after")
        assert pool.created == 2
        assert pool.replaced == 1
        assert pool.open_connections == 1
