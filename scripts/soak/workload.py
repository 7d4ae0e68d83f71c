"""The soak workload: one thread per client role, each opening connection after connection,
and one ledger of everything sent, promised and received.

Streams (what the final check compares, each by the `soak-id` header every message carries):

- `work`  /queue/soak.work: persistent SENDs, some producers with a receipt on each SEND,
  one with a receipt on every 50th only (that RECEIPT confirms every earlier SEND of its
  connection); consumed by client-individual and client (cumulative) consumers that drop
  their connections without DISCONNECT, and by an auto-ack consumer that always DISCONNECTs
  (an abrupt close of an auto-ack consumer may lose what sat in its socket buffer, by design).
- `tx`    /queue/soak.tx: BEGIN, persistent SENDs, COMMIT with a receipt (every fifth
  transaction ABORTed instead; the churn client also leaves transactions open when it drops
  its connection); consumed by a client-individual consumer that ACKs in transactions and
  aborts some of them.
- `durable` /topic/soak.durable: persistent SENDs with a receipt each to a topic with one
  durable subscription, whose subscriber goes away (abruptly or with DISCONNECT) and comes
  back.
- `np`    /topic/soak.np: non-persistent, no receipts, to subscribers that come and go; only
  checked for phantoms, duplicates within one subscription, and order.

A message is *confirmed* when a RECEIPT says it was stored (its own, a later one on the same
connection, or its transaction's COMMIT). Confirmed messages must all arrive; nothing may
arrive that was never sent, and nothing from a transaction that was aborted or never
committed. A transaction whose COMMIT went out without its RECEIPT coming back is in doubt:
all of it or none of it.
"""

import random
import socket
import threading
import time
import traceback

from wire import Closed, Conn, StompError

WORK = "/queue/soak.work"
TX = "/queue/soak.tx"
DURABLE = "/topic/soak.durable"
NP = "/topic/soak.np"
DLQ = "/queue/ActiveMQ.DLQ"
DURABLE_CLIENT_ID = "soak-durable"
DURABLE_NAME = "soak"
STREAM_OF = {WORK: "work", TX: "tx", DURABLE: "durable", NP: "np"}
STREAMS = ("work", "tx", "durable", "np")

# Messages a producer with a receipt on each SEND may have unconfirmed before it waits.
RECEIPT_WINDOW = 20
# The checkpoint producer asks for a receipt on every this many SENDs.
CHECKPOINT_EVERY = 50
# How long a RECEIPT may take before the soak calls the broker stuck.
RECEIPT_TIMEOUT_S = 30.0


def body_for(soak_id, rng):
    """Mostly small bodies, some of 8 KiB, a few of 64 KiB; they start with the id so the
    check can tell a body from another message's."""
    r = rng.random()
    size = 65536 if r < 0.002 else 8192 if r < 0.05 else rng.randint(64, 1024)
    head = (soak_id + "|").encode()
    return (head * (size // len(head) + 1))[:size]


def body_ok(frame):
    soak_id = frame.headers.get("soak-id", "")
    size = frame.headers.get("soak-size")
    head = (soak_id + "|").encode()
    return size is not None and len(frame.body) == int(size) and frame.body.startswith(
        head[:len(frame.body)])


class Ledger:
    """Everything the clients did, shared by all actors (one lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.confirmed = {s: set() for s in STREAMS}
        self.unconfirmed = {s: set() for s in STREAMS}
        self.aborted = set()        # tx ids ABORTed or never committed
        self.in_doubt = []          # tx id lists whose COMMIT had no RECEIPT
        self.received = {s: {} for s in STREAMS}   # id -> deliveries
        self.dead = {}              # id -> original destination, from the DLQ
        self.unflagged_dups = {s: 0 for s in STREAMS}
        self.corrupt = []           # (stream, id, why)
        self.wrong_stream = []      # (stream, id)
        self.np_session_dups = 0
        self.np_out_of_order = 0
        self.sent_count = 0
        self.recv_count = 0

    def sent(self, stream, ids, confirmed):
        with self.lock:
            self.sent_count += len(ids)
            (self.confirmed if confirmed else self.unconfirmed)[stream].update(ids)

    def confirm(self, stream, ids):
        with self.lock:
            self.unconfirmed[stream].difference_update(ids)
            self.confirmed[stream].update(ids)

    def abort(self, ids):
        with self.lock:
            self.unconfirmed["tx"].difference_update(ids)
            self.aborted.update(ids)

    def doubt(self, ids):
        with self.lock:
            self.in_doubt.append(list(ids))

    def received_frame(self, stream, frame):
        soak_id = frame.headers.get("soak-id")
        with self.lock:
            self.recv_count += 1
            if soak_id is None or not body_ok(frame):
                self.corrupt.append((stream, soak_id, frame.headers.get("message-id")))
                return soak_id
            if not soak_id.startswith(stream + "."):
                self.wrong_stream.append((stream, soak_id))
            seen = self.received[stream].get(soak_id, 0)
            self.received[stream][soak_id] = seen + 1
            if seen and frame.headers.get("redelivered") != "true" and stream != "np":
                self.unflagged_dups[stream] += 1
        return soak_id

    def missing(self, stream):
        with self.lock:
            return len(self.confirmed[stream] - self.received[stream].keys() - self.dead.keys())


class Stats:
    """Connection counts of one actor."""

    def __init__(self):
        self.opened = 0
        self.graceful = 0
        self.fin = 0
        self.rst = 0
        self.client_id_busy = 0
        self.unexpected = []   # (actor, what): connections the broker ended or refused


class Control:
    def __init__(self, addr, seed):
        self.addr = addr
        self.seed = seed
        self.stop_producers = threading.Event()
        self.drain = threading.Event()      # consumers stop leaving, everyone comes back
        self.stop_consumers = threading.Event()


class Actor(threading.Thread):
    """One client role: `session()` runs one connection; `run` repeats it until told to stop.
    An exception other than a lost connection fails the soak (`failure`)."""

    producer = False

    def __init__(self, name, ctl, ledger):
        super().__init__(name=name, daemon=True)
        self.ctl = ctl
        self.ledger = ledger
        self.rng = random.Random(f"{ctl.seed}:{name}")
        self.stats = Stats()
        self.failure = None
        self.sessions = 0

    def stopping(self):
        return (self.ctl.stop_producers if self.producer else self.ctl.stop_consumers).is_set()

    def run(self):
        try:
            while not self.stopping():
                self.sessions += 1
                try:
                    self.session()
                except (Closed, StompError) as e:
                    self.stats.unexpected.append((self.name, str(e)))
                    time.sleep(0.5)
                if not self.stopping():
                    self.pause()
        except Exception:  # noqa: BLE001 - reported as the soak's failure
            self.failure = traceback.format_exc()

    def pause(self):
        time.sleep(self.rng.uniform(0.0, 1.0))

    def connect(self, headers=None):
        hb = self.rng.choice((0, 0, 1000, 3000))
        conn = Conn(self.ctl.addr, headers, heart_beat_ms=hb)
        self.stats.opened += 1
        return conn

    def session_end(self, lo, hi):
        return time.monotonic() + self.rng.uniform(lo, hi)

    def leave(self, conn, abrupt_share, on_frame=None):
        """Ends a connection: DISCONNECT with a receipt, or (with probability `abrupt_share`,
        never while draining) a FIN or an RST without DISCONNECT. True if it was graceful and
        confirmed."""
        graceful = self.stopping() or self.ctl.drain.is_set() and not self.producer
        if graceful or self.rng.random() >= abrupt_share:
            ok = conn.disconnect(f"bye-{self.name}-{self.sessions}", on_frame)
            if not ok:
                self.stats.unexpected.append((self.name, "no RECEIPT for DISCONNECT"))
            self.stats.graceful += 1
            return ok
        reset = self.rng.random() < 0.5
        conn.close_abruptly(reset)
        if reset:
            self.stats.rst += 1
        else:
            self.stats.fin += 1
        return False


# ------------------------------------------------------------------------------------------
# Producers
# ------------------------------------------------------------------------------------------

class Pacer:
    """Sends at `rate` per second on average, without catching up after a pause."""

    def __init__(self, rate):
        self.period = 1.0 / rate
        self.next = time.monotonic()

    def wait(self, conn, on_frame):
        while True:
            left = self.next - time.monotonic()
            if left <= 0:
                break
            frame = conn.read(left)
            if frame is not None:
                on_frame(frame)
        self.next = max(self.next + self.period, time.monotonic() - 1.0)


class QueueProducer(Actor):
    """Persistent SENDs to /queue/soak.work: `receipts="each"` asks a receipt on every SEND
    (at most RECEIPT_WINDOW unconfirmed), `"checkpoint"` on every CHECKPOINT_EVERY-th."""

    producer = True

    def __init__(self, name, ctl, ledger, rate, receipts):
        super().__init__(name, ctl, ledger)
        self.rate = rate
        self.receipts = receipts

    def session(self):
        conn = self.connect()
        pending = {}        # receipt id -> soak ids it confirms
        unreceipted = []    # ids sent after the last receipt request
        seq = 0

        def on_frame(frame):
            if frame.command == "RECEIPT":
                ids = pending.pop(frame.headers.get("receipt-id"), None)
                if ids is None:
                    raise RuntimeError(f"{self.name}: unknown receipt {frame.headers}")
                self.ledger.confirm("work", ids)
            elif frame.command == "ERROR":
                raise StompError(frame)

        pacer = Pacer(self.rate)
        end = self.session_end(5, 30)
        try:
            while time.monotonic() < end and not self.stopping():
                pacer.wait(conn, on_frame)
                seq += 1
                soak_id = f"work.{self.name}.{self.sessions}.{seq}"
                body = body_for(soak_id, self.rng)
                headers = {"destination": WORK, "persistent": "true", "soak-id": soak_id,
                           "soak-size": len(body), "priority": self.rng.choice((4, 4, 4, 7))}
                self.ledger.sent("work", [soak_id], confirmed=False)
                unreceipted.append(soak_id)
                if self.receipts == "each" or seq % CHECKPOINT_EVERY == 0:
                    rid = f"r-{soak_id}"
                    headers["receipt"] = rid
                    pending[rid] = unreceipted
                    unreceipted = []
                conn.frame("SEND", headers, body)
                deadline = time.monotonic() + RECEIPT_TIMEOUT_S
                while len(pending) > RECEIPT_WINDOW:
                    frame = conn.read(deadline - time.monotonic())
                    if frame is None:
                        raise RuntimeError(f"{self.name}: no RECEIPT in {RECEIPT_TIMEOUT_S} s")
                    on_frame(frame)
            # A DISCONNECT's RECEIPT confirms every SEND before it.
            if self.leave(conn, 0.4, on_frame):
                for ids in pending.values():
                    self.ledger.confirm("work", ids)
                self.ledger.confirm("work", unreceipted)
        except (Closed, StompError):
            conn.close_abruptly()
            raise


class TxProducer(Actor):
    """BEGIN, 1-8 persistent SENDs to /queue/soak.tx, COMMIT with a receipt; every fifth
    transaction is ABORTed (with a receipt) instead."""

    producer = True

    def __init__(self, name, ctl, ledger, rate):
        super().__init__(name, ctl, ledger)
        self.rate = rate
        self.txs = 0

    def session(self):
        conn = self.connect()
        pacer = Pacer(self.rate)
        end = self.session_end(5, 30)
        seq = 0
        open_tx = []
        try:
            while time.monotonic() < end and not self.stopping():
                pacer.wait(conn, self.unexpected_frame)
                self.txs += 1
                tx = f"tx-{self.name}-{self.txs}"
                conn.frame("BEGIN", {"transaction": tx})
                open_tx = []
                for _ in range(self.rng.randint(1, 8)):
                    seq += 1
                    soak_id = f"tx.{self.name}.{self.sessions}.{seq}"
                    body = body_for(soak_id, self.rng)
                    self.ledger.sent("tx", [soak_id], confirmed=False)
                    open_tx.append(soak_id)
                    conn.frame("SEND", {"destination": TX, "persistent": "true",
                                        "transaction": tx, "soak-id": soak_id,
                                        "soak-size": len(body)}, body)
                abort = self.txs % 5 == 0
                rid = f"r-{tx}"
                if not abort and self.rng.random() < 0.02:
                    # Drop the connection right after COMMIT: the transaction is in doubt.
                    conn.frame("COMMIT", {"transaction": tx, "receipt": rid})
                    self.ledger.doubt(open_tx)
                    open_tx = []
                    conn.close_abruptly(self.rng.random() < 0.5)
                    self.stats.fin += 1
                    return
                conn.frame("ABORT" if abort else "COMMIT", {"transaction": tx, "receipt": rid})
                self.await_receipt(conn, rid)
                if abort:
                    self.ledger.abort(open_tx)
                else:
                    self.ledger.confirm("tx", open_tx)
                open_tx = []
            self.leave(conn, 0.4)
        except (Closed, StompError):
            conn.close_abruptly()
            self.ledger.abort(open_tx)   # never committed: must never be seen
            raise

    def await_receipt(self, conn, rid):
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while True:
            frame = conn.read(deadline - time.monotonic())
            if frame is None:
                raise RuntimeError(f"{self.name}: no RECEIPT {rid} in {RECEIPT_TIMEOUT_S} s")
            if frame.command == "RECEIPT" and frame.headers.get("receipt-id") == rid:
                return
            self.unexpected_frame(frame)

    def unexpected_frame(self, frame):
        if frame.command == "ERROR":
            raise StompError(frame)
        raise RuntimeError(f"{self.name}: unexpected {frame}")


class TopicProducer(Actor):
    """Sends to a topic: persistent with a receipt each (the durable stream) or
    non-persistent without receipts (the np stream)."""

    producer = True

    def __init__(self, name, ctl, ledger, rate, destination):
        super().__init__(name, ctl, ledger)
        self.rate = rate
        self.destination = destination
        self.stream = STREAM_OF[destination]
        self.persistent = destination == DURABLE

    def session(self):
        conn = self.connect()
        pending = {}
        seq = 0

        def on_frame(frame):
            if frame.command == "RECEIPT":
                soak_id = pending.pop(frame.headers.get("receipt-id"), None)
                if soak_id is None:
                    raise RuntimeError(f"{self.name}: unknown receipt {frame.headers}")
                self.ledger.confirm(self.stream, [soak_id])
            elif frame.command == "ERROR":
                raise StompError(frame)

        pacer = Pacer(self.rate)
        end = self.session_end(10, 60)
        try:
            while time.monotonic() < end and not self.stopping():
                pacer.wait(conn, on_frame)
                seq += 1
                soak_id = f"{self.stream}.{self.name}.{self.sessions}.{seq}"
                body = body_for(soak_id, self.rng)
                headers = {"destination": self.destination, "soak-id": soak_id,
                           "soak-size": len(body)}
                self.ledger.sent(self.stream, [soak_id], confirmed=False)
                if self.persistent:
                    headers["persistent"] = "true"
                    headers["receipt"] = f"r-{soak_id}"
                    pending[headers["receipt"]] = soak_id
                conn.frame("SEND", headers, body)
                deadline = time.monotonic() + RECEIPT_TIMEOUT_S
                while len(pending) > RECEIPT_WINDOW:
                    frame = conn.read(deadline - time.monotonic())
                    if frame is None:
                        raise RuntimeError(f"{self.name}: no RECEIPT in {RECEIPT_TIMEOUT_S} s")
                    on_frame(frame)
            if self.leave(conn, 0.3, on_frame):
                self.ledger.confirm(self.stream, list(pending.values()))
        except (Closed, StompError):
            conn.close_abruptly()
            raise


# ------------------------------------------------------------------------------------------
# Consumers
# ------------------------------------------------------------------------------------------

class Consumer(Actor):
    """Subscribes to one destination and handles MESSAGEs until its session ends. Subclasses
    choose the ack mode and what to do with each message (`on_message`)."""

    ack = "client-individual"
    prefetch = 50
    stay = (5, 20)          # seconds per connection
    abrupt_share = 0.7      # connections ended without DISCONNECT
    connect_headers = None
    sub_headers = {}

    def __init__(self, name, ctl, ledger, destination):
        super().__init__(name, ctl, ledger)
        self.destination = destination
        self.stream = STREAM_OF.get(destination, "dlq")
        self.received = 0

    def session(self):
        conn = self.connect(self.connect_headers)
        try:
            sub = {"destination": self.destination, "id": "s", "ack": self.ack,
                   "activemq.prefetchSize": self.prefetch, "receipt": "sub"}
            sub.update(self.sub_headers)
            conn.frame("SUBSCRIBE", sub)
            self.begin_session(conn)
            end = self.session_end(*self.stay)
            # A connection from before the drain may hold messages it will never ACK: it
            # leaves (with DISCONNECT) when the drain starts, so they come back.
            before_drain = not self.ctl.drain.is_set()
            while not self.ctl.stop_consumers.is_set():
                if self.ctl.drain.is_set():
                    if before_drain:
                        break
                elif time.monotonic() >= end:
                    break
                frame = conn.read(0.2)
                if frame is None:
                    self.idle(conn)
                else:
                    self.handle(conn, frame)
            self.end_session(conn)
            self.leave(conn, self.abrupt_share, lambda f: self.handle(conn, f, leaving=True))
        except (Closed, StompError):
            conn.close_abruptly()
            raise

    def handle(self, conn, frame, leaving=False):
        if frame.command == "MESSAGE":
            self.received += 1
            self.ledger.received_frame(self.stream, frame)
            if not leaving:
                self.on_message(conn, frame)
        elif frame.command == "ERROR":
            raise StompError(frame)
        elif frame.command != "RECEIPT":
            raise RuntimeError(f"{self.name}: unexpected {frame}")

    def begin_session(self, conn):
        pass

    def on_message(self, conn, frame):
        pass

    def idle(self, conn):
        pass

    def end_session(self, conn):
        pass


class IndividualConsumer(Consumer):
    """client-individual: ACKs each message (every tenth with a receipt), NACKs 1%, and
    forgets to ACK 1% (they come back when the connection ends)."""

    def on_message(self, conn, frame):
        draining = self.ctl.drain.is_set()
        r = self.rng.random()
        if r < 0.01 and not draining:
            return
        headers = {"id": frame.headers["ack"]}
        if self.received % 10 == 0:
            headers["receipt"] = f"a-{self.received}"
        conn.frame("NACK" if r < 0.02 and not draining else "ACK", headers)


class CumulativeConsumer(Consumer):
    """client mode: one cumulative ACK every 20 messages, or after 0.3 s without one."""

    ack = "client"
    prefetch = 100

    def begin_session(self, conn):
        self.last_ack = None
        self.unacked = 0

    def on_message(self, conn, frame):
        self.last_ack = frame.headers["ack"]
        self.unacked += 1
        if self.unacked >= 20:
            self.flush(conn)

    def idle(self, conn):
        if self.unacked:
            self.flush(conn)

    def flush(self, conn):
        conn.frame("ACK", {"id": self.last_ack})
        self.unacked = 0


class AutoConsumer(Consumer):
    """auto ack, default prefetch; always leaves with DISCONNECT (an auto-ack client that
    drops its socket loses what was in it: documented, not a broker fault)."""

    ack = "auto"
    prefetch = 1000
    stay = (10, 30)
    abrupt_share = 0.0


class TxConsumer(Consumer):
    """client-individual, ACKs in transactions of up to 10; every fifth transaction is
    ABORTed, after which its messages are ACKed again outside a transaction, or (half the
    time, not while draining, and while fewer than HOLD_MAX are held so) left for the end of
    the connection to bring back."""

    prefetch = 100
    HOLD_MAX = 30

    def begin_session(self, conn):
        self.tx = None
        self.tx_acks = []
        self.txs = 0
        self.held = 0

    def on_message(self, conn, frame):
        if self.tx is None:
            self.txs += 1
            self.tx = f"ctx-{self.sessions}-{self.txs}"
            conn.frame("BEGIN", {"transaction": self.tx})
        conn.frame("ACK", {"id": frame.headers["ack"], "transaction": self.tx})
        self.tx_acks.append(frame.headers["ack"])
        if len(self.tx_acks) >= 10:
            self.finish(conn)

    def idle(self, conn):
        if self.tx is not None:
            self.finish(conn)

    def end_session(self, conn):
        if self.tx is not None and self.rng.random() < 0.5 and not self.ctl.drain.is_set():
            return   # leave it open: the end of the connection aborts it
        if self.tx is not None:
            self.finish(conn)

    def finish(self, conn):
        if self.txs % 5 == 0:
            conn.frame("ABORT", {"transaction": self.tx})
            hold = (not self.ctl.drain.is_set() and self.rng.random() < 0.5
                    and self.held + len(self.tx_acks) <= self.HOLD_MAX)
            if hold:
                self.held += len(self.tx_acks)
            else:
                for ack in self.tx_acks:
                    conn.frame("ACK", {"id": ack})
        else:
            conn.frame("COMMIT", {"transaction": self.tx, "receipt": f"c-{self.tx}"})
        self.tx = None
        self.tx_acks = []


class DurableSubscriber(IndividualConsumer):
    """The durable subscription's one subscriber: present 10-40 s, then away 5-20 s (back at
    once while draining). Its client-id may still be held for a moment after an abrupt
    close; it retries then."""

    prefetch = 100
    stay = (10, 40)
    abrupt_share = 0.5
    connect_headers = {"client-id": DURABLE_CLIENT_ID}
    sub_headers = {"activemq.subscriptionName": DURABLE_NAME}

    def connect(self, headers=None):
        for _ in range(100):
            try:
                return super().connect(headers)
            except StompError as e:
                if "client-id" not in str(e):
                    raise
                self.stats.client_id_busy += 1
                time.sleep(0.1)
        raise RuntimeError(f"{self.name}: client-id still in use after 10 s")

    def pause(self):
        deadline = time.monotonic() + self.rng.uniform(5, 20)
        while time.monotonic() < deadline and not self.ctl.drain.is_set():
            time.sleep(0.1)


class NpSubscriber(Consumer):
    """auto ack on /topic/soak.np; checks that one subscription sees each message at most
    once and each producer's messages in order."""

    ack = "auto"
    prefetch = 1000
    stay = (5, 30)
    abrupt_share = 0.5

    def begin_session(self, conn):
        self.seen = set()
        self.last = {}

    def handle(self, conn, frame, leaving=False):
        super().handle(conn, frame, leaving)
        if frame.command != "MESSAGE":
            return
        soak_id = frame.headers.get("soak-id", "")
        producer, _, seq = soak_id.rpartition(".")
        with self.ledger.lock:
            if soak_id in self.seen:
                self.ledger.np_session_dups += 1
            elif int(seq) <= self.last.get(producer, 0):
                self.ledger.np_out_of_order += 1
        self.seen.add(soak_id)
        self.last[producer] = int(seq)


class Churn(Actor):
    """Opens and closes connections all the time: a bare TCP connect, a half-sent CONNECT,
    CONNECT + DISCONNECT, subscriptions dropped with the socket, and transactions left open
    (their SENDs must never be seen)."""

    producer = True

    def session(self):
        kind = self.rng.randrange(5)
        if kind == 0:
            s = socket.create_connection(self.ctl.addr, timeout=5)
            if self.rng.random() < 0.5:
                s.sendall(b"CONNECT\naccept-version:1.2\nhost:")
            s.close()
            self.stats.opened += 1
            self.stats.fin += 1
            return
        conn = self.connect()
        if kind == 2:
            conn.frame("SUBSCRIBE", {"destination": f"/queue/soak.churn.{self.rng.randrange(50)}",
                                     "id": "q", "ack": "client"})
            conn.frame("SUBSCRIBE", {"destination": NP, "id": "t", "ack": "auto"})
            conn.read(self.rng.uniform(0, 0.5))
        elif kind == 3:
            tx = f"churn-{self.sessions}"
            conn.frame("BEGIN", {"transaction": tx})
            ids = []
            for i in range(self.rng.randint(1, 3)):
                soak_id = f"tx.{self.name}.{self.sessions}.{i}"
                body = body_for(soak_id, self.rng)
                self.ledger.sent("tx", [soak_id], confirmed=False)
                self.ledger.abort([soak_id])
                ids.append(soak_id)
                conn.frame("SEND", {"destination": TX, "persistent": "true", "transaction": tx,
                                    "soak-id": soak_id, "soak-size": len(body)}, body)
            conn.close_abruptly(self.rng.random() < 0.5)
            self.stats.fin += 1
            return
        elif kind == 4:
            # Idle for a while with heart-beats (if negotiated), then leave.
            end = time.monotonic() + self.rng.uniform(0.5, 3)
            while time.monotonic() < end:
                conn.read(0.2)
        self.leave(conn, 0.5)

    def pause(self):
        time.sleep(self.rng.uniform(0.05, 0.4))


def sweep(addr, ledger, destination, headers=None, sub_headers=None, quiet_s=3.0):
    """Reads a destination dry with a client-individual consumer (ACKing each), recording
    what it gets; DLQ messages are recorded as dead letters. Returns how many it got."""
    conn = Conn(addr, headers)
    sub = {"destination": destination, "id": "sweep", "ack": "client-individual",
           "activemq.prefetchSize": 500}
    sub.update(sub_headers or {})
    conn.frame("SUBSCRIBE", sub)
    got = 0
    while True:
        frame = conn.read(quiet_s)
        if frame is None:
            break
        if frame.command == "ERROR":
            raise StompError(frame)
        if frame.command != "MESSAGE":
            continue
        got += 1
        if destination == DLQ:
            with ledger.lock:
                ledger.dead[frame.headers.get("soak-id")] = frame.headers.get(
                    "original-destination")
        else:
            ledger.received_frame(STREAM_OF[destination], frame)
        conn.frame("ACK", {"id": frame.headers["ack"]})
    conn.disconnect("sweep-done")
    return got
