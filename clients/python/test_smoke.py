"""Smoke test: stomp.py against a running stompbox on STOMP_HOST (default 127.0.0.1) and
STOMP_PORT. `clients/run-smoke.sh python` starts a broker and runs this file.

Each scenario runs once per STOMP version. 1.0 has no client-individual ack mode, so its
consumers use `client` and still ACK every message.
"""

import pytest

from stompbox_smoke import Client, ack_mode, fresh

COUNT = 100
VERSIONS = ["1.0", "1.1", "1.2"]


@pytest.fixture
def clients():
    """Opens clients on demand and always closes them, even when the test fails."""
    opened = []

    def open_client(version):
        client = Client(version)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        try:
            client.close()
        except Exception:  # a failing close must not hide the test's own failure
            pass


def consume_in_order(consumer, bodies, destination, sub_id):
    """Receive `bodies` in order, checking headers and ACKing each one individually."""
    seen_ids = set()
    for expected in bodies:
        frame = consumer.collector.next_message(f"{expected!r} on {destination}")
        h = frame.headers
        assert frame.body == expected, f"out of order or wrong body: {h} {frame.body!r}"
        assert h["destination"] == destination
        assert h["message-id"] not in seen_ids, f"message-id reused: {h['message-id']}"
        seen_ids.add(h["message-id"])
        if consumer.version != "1.0":
            assert h.get("subscription") == sub_id, h
        if consumer.version == "1.2":
            assert "ack" in h, f"1.2 MESSAGE without ack header in client-individual mode: {h}"
        consumer.ack(frame)


@pytest.mark.parametrize("version", VERSIONS)
def test_queue_delivers_each_message_once_in_order(clients, version):
    destination = fresh("queue", f"queue-{version}")
    bodies = [f"queue message {i:03d}" for i in range(COUNT)]

    producer = clients(version)
    receipts = [producer.send(destination, body, seq=str(i)) for i, body in enumerate(bodies)]
    producer.collector.wait_receipts(receipts)

    consumer = clients(version)
    consumer.subscribe(destination, "sub-queue", ack_mode(version))
    consume_in_order(consumer, bodies, destination, "sub-queue")
    consumer.collector.assert_quiet()
    consumer.close()  # waits for the DISCONNECT receipt: all 100 ACKs were read

    # The ACKed messages are gone: a new consumer's first message is a fresh sentinel.
    again = clients(version)
    again.subscribe(destination, "sub-again", ack_mode(version))
    producer.collector.wait_receipts([producer.send(destination, "sentinel")])
    frame = again.collector.next_message("the sentinel")
    assert frame.body == "sentinel", f"ACKed message redelivered: {frame.headers} {frame.body!r}"
    again.ack(frame)
    again.collector.assert_quiet()


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_fans_out_to_both_subscribers(clients, version):
    destination = fresh("topic", f"topic-{version}")
    bodies = [f"topic message {i:03d}" for i in range(COUNT)]

    subscribers = [clients(version), clients(version)]
    for n, sub in enumerate(subscribers):
        sub.subscribe(destination, f"sub-topic-{n}", ack_mode(version))

    producer = clients(version)
    receipts = [producer.send(destination, body) for body in bodies]
    producer.collector.wait_receipts(receipts)
    producer.collector.wait_receipts([producer.send(destination, "sentinel")])

    for n, sub in enumerate(subscribers):
        consume_in_order(sub, bodies + ["sentinel"], destination, f"sub-topic-{n}")
        sub.collector.assert_quiet()


@pytest.mark.parametrize("version", VERSIONS)
def test_aborted_transaction_is_dropped_committed_one_delivered(clients, version):
    destination = fresh("queue", f"tx-{version}")
    consumer = clients(version)
    consumer.subscribe(destination, "sub-tx", ack_mode(version))

    producer = clients(version)
    conn = producer.conn
    conn.begin(transaction="tx-aborted")
    conn.send(destination, "aborted 1", transaction="tx-aborted")
    conn.send(destination, "aborted 2", transaction="tx-aborted")
    abort_rid = producer.receipt("abort")
    conn.abort("tx-aborted", receipt=abort_rid)
    producer.collector.wait_receipts([abort_rid])

    conn.begin(transaction="tx-committed")
    conn.send(destination, "committed", transaction="tx-committed")
    commit_rid = producer.receipt("commit")
    conn.commit(transaction="tx-committed", receipt=commit_rid)
    producer.collector.wait_receipts([commit_rid])

    # Sent after the COMMIT's receipt, so it must arrive after the committed message; if an
    # aborted message leaked, it shows up in place of "committed".
    producer.collector.wait_receipts([producer.send(destination, "sentinel")])

    consume_in_order(consumer, ["committed", "sentinel"], destination, "sub-tx")
    consumer.collector.assert_quiet()
