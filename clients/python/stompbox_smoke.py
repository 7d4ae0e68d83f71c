"""Shared plumbing for the stomp.py smoke tests: connect one client per STOMP version and
collect what the broker sends back.

stomp.py calls listeners on its receiver thread; the test thread waits on the collector,
so every wait here has a deadline and says what it was waiting for when it runs out.
"""

import os
import queue
import threading
import time
import uuid

import stomp
import stomp.protocol

HOST = os.environ.get("STOMP_HOST", "127.0.0.1")
# The user run-smoke.sh made; unset connects anonymously (a broker that allows it).
LOGIN = os.environ.get("STOMP_LOGIN") or None
PASSCODE = os.environ.get("STOMP_PASSCODE") if LOGIN else None

# Seconds to wait for any one thing the broker owes us (a receipt, a message).
TIMEOUT = float(os.environ.get("STOMP_SMOKE_TIMEOUT", "10"))

PROTOCOLS = {
    "1.0": stomp.protocol.Protocol10,
    "1.1": stomp.protocol.Protocol11,
    "1.2": stomp.protocol.Protocol12,
}

CONNECTION_CLASSES = {
    "1.0": stomp.Connection10,
    "1.1": stomp.Connection11,
    "1.2": stomp.Connection12,
}


def port():
    """The broker's port from STOMP_PORT; the smoke tests have no default on purpose."""
    value = os.environ.get("STOMP_PORT")
    if not value:
        raise RuntimeError("set STOMP_PORT to the port of a running stompbox (see run-smoke.sh)")
    return int(value)


def fresh(kind, name):
    """A destination nobody else uses, e.g. /queue/smoke-py-queue-1f2e...."""
    return f"/{kind}/smoke-py-{name}-{uuid.uuid4().hex[:12]}"


def ack_mode(version):
    """client-individual is a 1.1 addition; 1.0 only knows auto and client, and acking every
    message in client mode acknowledges exactly that message and the ones before it."""
    return "client" if version == "1.0" else "client-individual"


class Collector(stomp.ConnectionListener):
    """Records CONNECTED, MESSAGE, RECEIPT and ERROR frames for one connection."""

    def __init__(self):
        self.messages = queue.Queue()
        self.connected = None
        self.errors = []
        self._receipts = set()
        self._cond = threading.Condition()

    def on_connected(self, frame):
        self.connected = frame

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        with self._cond:
            self._receipts.add(frame.headers.get("receipt-id"))
            self._cond.notify_all()

    def on_error(self, frame):
        with self._cond:
            self.errors.append(frame)
            self._cond.notify_all()

    def wait_receipts(self, receipt_ids, timeout=TIMEOUT):
        """Wait until every receipt id in `receipt_ids` came back; fail on any ERROR frame."""
        wanted = set(receipt_ids)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not wanted <= self._receipts:
                assert not self.errors, f"ERROR frame(s): {[describe(e) for e in self.errors]}"
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(wanted - self._receipts)
                    raise AssertionError(
                        f"{len(missing)} receipt(s) never arrived, first: {missing[:5]}")
                self._cond.wait(left)
        assert not self.errors, f"ERROR frame(s): {[describe(e) for e in self.errors]}"

    def next_message(self, what, timeout=TIMEOUT):
        """The next MESSAGE frame, or fail saying `what` we were waiting for."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            errors = [describe(e) for e in self.errors]
            raise AssertionError(
                f"no MESSAGE within {timeout}s while waiting for {what}; errors: {errors}"
            ) from None

    def assert_quiet(self, quiet_for=0.3):
        """No MESSAGE arrives for `quiet_for` seconds (catches duplicates and redeliveries)."""
        try:
            extra = self.messages.get(timeout=quiet_for)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected extra MESSAGE: {describe(extra)}")


def describe(frame):
    return f"{frame.cmd} {dict(frame.headers)} body={frame.body!r}"


class Client:
    """One stomp.py connection of a given STOMP version plus its collector."""

    def __init__(self, version):
        self.version = version
        cls = CONNECTION_CLASSES[version]
        self.conn = cls([(HOST, port())], auto_content_length=True)
        self.collector = Collector()
        self.conn.set_listener("collector", self.collector)
        self.conn.connect(LOGIN, PASSCODE, wait=True)
        frame = self.collector.connected
        assert frame is not None and frame.cmd == "CONNECTED", "no CONNECTED frame"
        if version != "1.0":
            assert frame.headers.get("version") == version, describe(frame)
        self._receipt_seq = 0

    def receipt(self, label):
        self._receipt_seq += 1
        return f"{label}-{self._receipt_seq}-{uuid.uuid4().hex[:8]}"

    def send(self, destination, body, **headers):
        """SEND with a receipt; returns the receipt id to wait for."""
        rid = self.receipt("send")
        self.conn.send(destination, body, receipt=rid, **headers)
        return rid

    def subscribe(self, destination, sub_id, ack):
        """SUBSCRIBE and wait for its receipt, so the subscription exists before anyone sends."""
        rid = self.receipt("sub")
        if self.version == "1.0":
            self.conn.subscribe(destination, id=sub_id, ack=ack, receipt=rid)
        else:
            self.conn.subscribe(destination, sub_id, ack=ack, receipt=rid)
        self.collector.wait_receipts([rid])

    def ack(self, frame):
        """ACK in the form each version wants: 1.0 message-id, 1.1 + subscription, 1.2 id."""
        h = frame.headers
        if self.version == "1.0":
            self.conn.ack(h["message-id"])
        elif self.version == "1.1":
            self.conn.ack(h["message-id"], h["subscription"])
        else:
            self.conn.ack(h["ack"])

    def close(self):
        """DISCONNECT with a receipt and wait for it, so the broker has read every ACK we
        wrote before. stomp.py's own disconnect(receipt=...) would wait without a deadline."""
        if not self.conn.is_connected():
            return
        rid = self.receipt("disconnect")
        PROTOCOLS[self.version].disconnect(self.conn, receipt=rid)
        try:
            self.collector.wait_receipts([rid])
        finally:
            self.conn.transport.disconnect_socket()
