"""One long-lived STOMP 1.2 connection with failover, on top of stomp.py.

stomp.py (9.0.0) tries its address list only while connecting: when an established
connection drops it calls the listeners' `on_disconnected` and stops. A `Client` takes over
from there. Its *supervisor* thread opens a fresh `stomp.Connection12` with the URL's policy,
SUBSCRIBEs again to everything the application subscribed to (same id, ack mode, selector,
durable name), resends every receipted SEND whose RECEIPT had not come (with
`stompbox-resent:true`), and only then lets new SENDs through.

Threads:
- the caller's: `send`, `subscribe`, ... write frames through stomp.py (its `transmit` holds a
  per-socket lock, so whole frames never interleave) and wait on `_cond` for what they need;
- stomp.py's receiver thread: runs `_Listener`, which only records receipts, queues messages
  and reports a lost connection. It never blocks, so RECEIPTs keep flowing even while a
  message callback is busy;
- the dispatcher: calls the application's message callbacks, one at a time, in arrival order;
- the supervisor: reconnects.

Generations: every stomp.py connection gets a number. A frame, a delivery or a loss report is
tagged with the generation it came from, and anything from an older one is ignored: an ack id
dies with its connection (the broker redelivers what was unacked), and ACKing it on the new
connection would be an ERROR that closes that one too.
"""

import itertools
import logging
import queue
import threading
import time
import uuid

import stomp

from . import url as urlmod

log = logging.getLogger("stompbox_client")

DEFAULT_URL = "failover:(tcp://127.0.0.1:61613)"
# Set on a SEND written again after a reconnect because its RECEIPT never came.
RESENT_HEADER = "stompbox-resent"
# Assigned by the client to every SEND (unless the application set it): unique per send()
# call and the same on every resend of it, so consumers can drop duplicates by it.
MSG_ID_HEADER = "stompbox-client-msg-id"


def _header_value(value):
    """STOMP header values are strings; True/False become the `true`/`false` brokers read."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class StompboxError(Exception):
    """Base class of this package's errors."""


class BrokerError(StompboxError):
    """The broker answered with an ERROR frame (`frame` has its headers and body)."""

    def __init__(self, frame):
        self.frame = frame
        message = frame.headers.get("message", "ERROR")
        body = (frame.body or "").strip()
        super().__init__(f"{message}: {body}" if body else message)


class ReceiptTimeout(StompboxError, TimeoutError):
    """No RECEIPT within the timeout. The outcome is unknown: the broker may have taken the
    message. To try again without risking an undetectable duplicate, send it with the same
    `stompbox-client-msg-id` header (`msg_id`)."""

    def __init__(self, message, msg_id=None):
        super().__init__(message)
        self.msg_id = msg_id


class ConnectionLost(StompboxError, ConnectionError):
    """The client is closed, or gave up reconnecting (the URL's maxReconnectAttempts)."""


class AuthenticationFailed(BrokerError, ConnectionLost):
    """The broker refused the CONNECT's login and passcode (ERROR `authentication failed`,
    which does not say which of the two was wrong). Raised by the constructor. When a
    reconnect is refused, the client gives up instead: SENDs waiting for their RECEIPT fail
    with it, later calls raise ConnectionLost with its message, and a Pool drops the client.
    Never retried: the same credentials would be refused again, and every refusal counts
    towards the broker's back-off for this host's address, which would soon refuse this
    host's other clients too (docs/security.md)."""


class TransactionLost(StompboxError):
    """The connection failed during a transaction. The broker drops a transaction with its
    connection, so nothing of it was committed, unless the COMMIT itself was in flight, in
    which case the outcome is unknown (`maybe_committed`). Run the transaction again."""

    def __init__(self, message, maybe_committed=False):
        super().__init__(message)
        self.maybe_committed = maybe_committed


class Receipt:
    """A SEND waiting for its RECEIPT. `wait()` returns once the broker has taken the message
    (for a persistent one: it is on disk) and raises BrokerError, ReceiptTimeout or
    ConnectionLost otherwise."""

    def __init__(self, client, receipt_id, destination, body, headers):
        self._client = client
        self.receipt_id = receipt_id
        self.destination = destination
        self.body = body
        self.headers = headers
        self.msg_id = headers[MSG_ID_HEADER]
        self.resent = 0  # how often it was written again after a reconnect
        self.done = False
        self.error = None

    def wait(self, timeout=None):
        return self._client._wait_send(self, timeout)


class Message:
    """A MESSAGE delivered to a subscription's callback."""

    def __init__(self, client, frame, gen, subscription):
        self._client = client
        self._gen = gen
        self.frame = frame
        self.subscription = subscription
        self.headers = frame.headers
        self.body = frame.body

    @property
    def destination(self):
        return self.headers.get("destination")

    @property
    def message_id(self):
        return self.headers.get("message-id")

    @property
    def msg_id(self):
        """The producer's `stompbox-client-msg-id`, the key to deduplicate on (None when the
        producer did not use this package and set none)."""
        return self.headers.get(MSG_ID_HEADER)

    @property
    def redelivered(self):
        """True when the broker delivered it before (to a consumer that did not ACK it)."""
        return self.headers.get("redelivered") == "true"

    @property
    def resent(self):
        """True when the producer wrote it again after a failover: maybe a duplicate."""
        return self.headers.get(RESENT_HEADER) == "true"

    def ack(self, transaction=None):
        """ACK it (client and client-individual subscriptions). Returns False, and sends
        nothing, when the connection it came on is gone: the broker has put it back and will
        deliver it again, marked redelivered."""
        return self._client._ack_or_nack("ack", self, transaction)

    def nack(self, transaction=None):
        """NACK it: the broker redelivers it (up to max_redeliveries, then dead-letters it).
        Returns False when its connection is gone (it comes back anyway)."""
        return self._client._ack_or_nack("nack", self, transaction)

    def __repr__(self):
        return f"Message({self.destination!r}, {self.body!r}, message-id={self.message_id!r})"


class Subscription:
    """A subscription the client keeps across reconnects. Its SUBSCRIBE headers (id, ack,
    selector, activemq.subscriptionName, prefetch, ...) are sent again, unchanged, on every
    new connection."""

    def __init__(self, client, sub_id, destination, ack, headers, callback):
        self._client = client
        self.id = sub_id
        self.destination = destination
        self.ack = ack
        self.headers = headers
        self.callback = callback

    @property
    def durable_name(self):
        return self.headers.get("activemq.subscriptionName")

    def unsubscribe(self, delete_durable=False):
        """Stop the subscription. A durable one only detaches, and the broker keeps
        collecting its messages, unless `delete_durable` (then they are dropped)."""
        self._client._unsubscribe(self, delete_durable)


class Transaction:
    """BEGIN ... COMMIT as a context manager: commits when the block ends normally, aborts
    when it raises. Sends and acks go out at once; the broker applies them at COMMIT, whose
    RECEIPT is awaited (a RECEIPT means every frame before it took effect)."""

    def __init__(self, client):
        self._client = client
        self.id = f"tx-{uuid.uuid4().hex[:16]}"
        self._gen = None
        self.finished = False

    def __enter__(self):
        self._gen = self._client._begin(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.finished:
            return False
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False

    def send(self, destination, body, headers=None):
        """A transactional SEND (no receipt of its own: the COMMIT's covers it). Returns the
        message's stompbox-client-msg-id."""
        headers = self._client._send_headers(headers)
        self._client._tx_frame(self, lambda conn: conn.send(
            destination, body, headers=headers, transaction=self.id))
        return headers[MSG_ID_HEADER]

    def ack(self, message):
        """ACK `message` as part of this transaction (undone by an abort)."""
        if message._gen != self._gen:
            raise TransactionLost("the message came on an earlier connection; it was put back "
                                  "and will be redelivered")
        self._client._tx_frame(self, lambda conn: conn.ack(
            message.headers["ack"], transaction=self.id))

    def commit(self, timeout=None):
        self.finished = True
        self._client._end(self, "commit", timeout)

    def abort(self, timeout=None):
        self.finished = True
        try:
            self._client._end(self, "abort", timeout)
        except (TransactionLost, ConnectionLost):
            pass  # the broker drops the transaction with the connection: aborted all the same


def _refused_login(frame):
    """True for the ERROR stompbox answers a CONNECT with when the login or passcode is
    wrong, or when this address is in back-off after too many wrong ones."""
    return frame is not None and frame.headers.get("message", "").startswith(
        "authentication failed")


class _Waiter:
    """A receipt for a frame that belongs to one connection (SUBSCRIBE, COMMIT, DISCONNECT)."""

    def __init__(self):
        self.done = False
        self.error = None


class _Listener(stomp.ConnectionListener):
    """Runs on stomp.py's receiver thread for one connection (one generation)."""

    def __init__(self, client, gen):
        self.client = client
        self.gen = gen
        self.connected = threading.Event()
        self.finished = threading.Event()  # CONNECTED, refused or gone
        self.lost = False
        self.connect_error = None

    def on_connected(self, frame):
        self.connected.set()
        self.finished.set()

    def on_error(self, frame):
        if not self.connected.is_set():
            self.connect_error = frame
            self.finished.set()
            return
        self.client._on_error(self.gen, frame)

    def on_receipt(self, frame):
        self.client._on_receipt(frame)

    def on_message(self, frame):
        self.client._on_message(self.gen, frame)

    def on_disconnected(self):
        self.lost = True
        self.finished.set()
        self.client._on_lost(self.gen)


class Client:
    """A STOMP 1.2 connection to stompbox that survives failover.

    url: `failover:(tcp://a:61613,tcp://b:61613)?...` (see url.py for the options) or a
        plain `tcp://host:port`, which does not reconnect.
    login, passcode: sent on every CONNECT, reconnects included; never logged. None (the
        default) connects anonymously. Take them from the environment or a secret store
        (`credentials_from_env()` reads STOMP_LOGIN / STOMP_PASSCODE), not from source. A
        refusal raises AuthenticationFailed and is not retried.
    vhost (the CONNECT `host` header), heartbeats (ms: what we send, what we
        want), client_id (CONNECT `client-id`, needed for durable subscriptions),
        connect_headers (any other CONNECT headers).
    receipt_timeout: default seconds a send() or subscribe() waits, reconnects included.
    connect_timeout: seconds for one TCP connect and for the broker's CONNECTED.
    on_error: called (on the receiver thread) with a BrokerError for ERROR frames that no
        waiting call claims.
    on_connect: called with (host, port) after the first connect and after each reconnect,
        once resubscribed and resent (on the supervisor thread for a reconnect).
    """

    def __init__(self, url=DEFAULT_URL, login=None, passcode=None, heartbeats=(10000, 10000),
                 vhost=None, client_id=None, connect_headers=None, receipt_timeout=30.0,
                 connect_timeout=10.0, on_error=None, on_connect=None):
        self.url = url if isinstance(url, urlmod.BrokerUrl) else urlmod.parse(url)
        self.login = login
        self.passcode = passcode
        self.heartbeats = tuple(heartbeats)
        self.vhost = vhost
        self.client_id = client_id
        self.connect_headers = dict(connect_headers or {})
        self.receipt_timeout = receipt_timeout
        self.connect_timeout = connect_timeout
        self.on_error = on_error
        self.on_connect = on_connect
        self.connects = 0  # successful CONNECTs, the first one included
        self.resends = 0  # SENDs written again after a reconnect
        self.last_error = None

        self._cond = threading.Condition()
        self._gens = itertools.count(1)
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:12]
        self._conn = None
        self._gen = 0  # generation of self._conn
        self._live = False  # self._conn is connected
        self._ready = False  # ... and resubscribed and resent: new frames may go out
        self._closed = False
        self._failed = None  # ConnectionLost once the client gave up
        self._pending = {}  # receipt id -> Receipt (SENDs; survive reconnects)
        self._waiters = {}  # receipt id -> _Waiter (frames of one connection)
        self._subs = {}  # subscription id -> Subscription
        # MESSAGEs for the dispatcher. Not bounded on purpose: the receiver thread that fills
        # it also reads RECEIPTs, and blocking it behind a slow callback could deadlock a
        # callback that sends. The broker's prefetch bounds it for client/client-individual
        # subscriptions; an auto-ack subscription's credit returns on the socket write, so a
        # slow auto-ack callback lets it grow (README, Prefetch).
        self._deliveries = queue.SimpleQueue()
        self._need_reconnect = threading.Event()
        self._connecting = None  # the stomp.py connection _open() is trying

        conn, gen = self._open(startup=True)
        with self._cond:
            self._conn, self._gen, self._live, self._ready = conn, gen, True, True
        if self._conn_listener(conn).lost:
            self._on_lost(gen)
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                            name="stompbox-client-dispatch")
        self._dispatcher.start()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="stompbox-client-supervisor")
        self._supervisor.start()
        self._notify_connect(conn)

    # ---- public API ---------------------------------------------------------------------

    def send(self, destination, body, headers=None, receipt=True, timeout=None):
        """SEND a message. With `receipt` (the default) wait for the broker's RECEIPT,
        reconnecting and resending as needed (at-least-once), and return the Receipt. Without,
        write it and return None: a SEND without a receipt that is in flight when the
        connection drops is lost without anyone knowing."""
        handle = self.send_async(destination, body, headers, receipt)
        if handle is not None:
            handle.wait(timeout)
        return handle

    def send_async(self, destination, body, headers=None, receipt=True):
        """Like send() but returns the Receipt without waiting; `handle.wait()` waits. Lets a
        producer keep a window of SENDs in flight. Resends after a failover keep no order."""
        headers = self._send_headers(headers)
        deadline = time.monotonic() + self.receipt_timeout
        if not receipt:
            conn, gen = self._wait_ready(deadline)
            self._write(gen, lambda: conn.send(destination, body, headers=headers))
            return None
        rid = self._next_id("send")
        handle = Receipt(self, rid, destination, body, headers)
        with self._cond:
            conn, gen = self._wait_ready_locked(deadline)
            self._pending[rid] = handle
        # Outside the lock: a write that blocks (TCP back-pressure) must not stall receipts.
        # If the connection is lost before or during the write, the supervisor resends it.
        self._write(gen, lambda: conn.send(destination, body, headers=headers, receipt=rid))
        return handle

    def subscribe(self, destination, callback, ack="auto", id=None, selector=None,
                  durable_name=None, prefetch=None, headers=None, timeout=None):
        """SUBSCRIBE and wait for the broker's RECEIPT; `callback(message)` runs on the
        client's dispatcher thread. ack: auto, client or client-individual. selector: a JMS
        selector (`priority > 5`). durable_name: a durable topic subscription
        (`activemq.subscriptionName`; needs client_id). prefetch: activemq.prefetchSize.

        A callback that raises on a client/client-individual subscription NACKs the message
        (the broker redelivers it, up to max_redeliveries, then dead-letters it)."""
        if ack not in ("auto", "client", "client-individual"):
            raise ValueError(f"ack must be auto, client or client-individual, not {ack!r}")
        if durable_name is not None and not self.client_id:
            raise ValueError("a durable subscription needs Client(client_id=...): the broker "
                             "keeps it under client-id + activemq.subscriptionName")
        sub_headers = dict(headers or {})
        if selector is not None:
            sub_headers["selector"] = selector
        if durable_name is not None:
            sub_headers["activemq.subscriptionName"] = durable_name
        if prefetch is not None:
            sub_headers["activemq.prefetchSize"] = str(prefetch)
        deadline = time.monotonic() + (timeout if timeout is not None else self.receipt_timeout)
        with self._cond:
            sub_id = id or self._next_id("sub")
            if sub_id in self._subs:
                raise ValueError(f"subscription id {sub_id!r} is already in use")
            sub = Subscription(self, sub_id, destination, ack, sub_headers, callback)
            conn, gen = self._wait_ready_locked(deadline)
            self._subs[sub_id] = sub
        # If the connection goes before the RECEIPT, the reconnect subscribes it again.
        if not self._subscribe_on(conn, gen, sub, deadline):
            self._wait_ready(deadline)
        return sub

    def transaction(self):
        """`with client.transaction() as tx: tx.send(...)` commits at the end of the block
        (waiting for the COMMIT's RECEIPT) or aborts if it raises. See TransactionLost."""
        return Transaction(self)

    @property
    def connected(self):
        """True while a connection is up and synchronised (resubscribed, resends written)."""
        with self._cond:
            return self._ready

    @property
    def broker(self):
        """(host, port) of the broker connected to now, or None."""
        with self._cond:
            conn = self._conn if self._live else None
        return conn.transport.current_host_and_port if conn is not None else None

    @property
    def usable(self):
        """False once closed or given up; a Pool replaces such a client."""
        with self._cond:
            return not self._closed and self._failed is None

    def close(self, timeout=5.0):
        """DISCONNECT (waiting up to `timeout` for its RECEIPT, so the broker has read every
        ACK before it), stop the threads, and fail whatever still waits for a RECEIPT."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            conn, gen, live = self._conn, self._gen, self._live
            self._ready = False
            self._cond.notify_all()
            connecting = self._connecting
        if connecting is not None and connecting is not conn:
            connecting.transport.running = False  # ends stomp.py's attempt_connection loop
        self._need_reconnect.set()
        if live:
            rid = self._next_id("disconnect")
            waiter = self._add_waiter(rid)
            try:
                # Protocol12.disconnect only writes the frame; the Connection's own
                # disconnect(receipt=...) would also wait for the socket without a deadline.
                stomp.protocol.Protocol12.disconnect(conn, receipt=rid)
                self._wait_waiter(waiter, rid, gen, time.monotonic() + timeout)
            except Exception as e:  # closing anyway
                log.debug("DISCONNECT: %s", e)
        self._drop(conn)
        with self._cond:
            for handle in self._pending.values():
                handle.error = ConnectionLost("client closed before the RECEIPT came")
            self._pending.clear()
            self._cond.notify_all()
        self._deliveries.put(None)
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- connecting ---------------------------------------------------------------------

    def _open(self, startup):
        """Open and CONNECT a new stomp.py connection, following the URL's policy: stomp.py
        makes the TCP passes over the address list with the mapped back-off; a broker that
        answers CONNECT with an ERROR (client-id still held by our previous, half-dead
        connection, ...) or not at all counts as one more failed pass. Except a refused login:
        that raises AuthenticationFailed at once (see there why)."""
        limit = self.url.attempts(startup)
        failures = 0
        while True:
            with self._cond:
                if self._closed:
                    raise ConnectionLost("client closed")
            gen = next(self._gens)
            conn = stomp.Connection12(**self.url.stomp_params(startup), heartbeats=self.heartbeats,
                                      vhost=self.vhost, timeout=self.connect_timeout)
            listener = _Listener(self, gen)
            conn.set_listener("stompbox-client", listener)
            with self._cond:
                if self._closed:
                    raise ConnectionLost("client closed")
                self._connecting = conn  # close() stops stomp.py's retry loop through it
            headers = dict(self.connect_headers)
            if self.client_id:
                headers["client-id"] = self.client_id
            try:
                conn.connect(self.login, self.passcode, wait=False, headers=headers)
            except stomp.exception.ConnectFailedException:
                self._drop(conn)
                raise ConnectionLost(f"could not connect to {self.url} (connection refused or "
                                     "unreachable, attempts exhausted)") from None
            except Exception as e:  # the socket died between TCP connect and CONNECT
                problem = f"writing CONNECT failed: {e!r}"
            else:
                listener.finished.wait(self.connect_timeout)
                if listener.connected.is_set():
                    with self._cond:
                        self.connects += 1
                    return conn, gen
                if _refused_login(listener.connect_error):
                    self._drop(conn)
                    raise AuthenticationFailed(listener.connect_error)
                if listener.connect_error is not None:
                    problem = str(BrokerError(listener.connect_error))
                elif listener.lost:
                    problem = "connection closed before CONNECTED"
                else:
                    problem = f"no CONNECTED within {self.connect_timeout} s"
            self._drop(conn)
            failures += 1
            log.warning("connect to %s failed: %s", self.url, problem)
            if limit != -1 and failures > limit:
                raise ConnectionLost(f"could not connect to {self.url}: {problem}")
            self._sleep(self.url.delay(failures))

    def _sleep(self, seconds):
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._closed and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())

    @staticmethod
    def _conn_listener(conn):
        return conn.get_listener("stompbox-client")

    @staticmethod
    def _drop(conn):
        """Close a stomp.py connection's socket without waiting for anything."""
        if conn is None:
            return
        try:
            conn.transport.disconnect_socket()
        except Exception as e:
            log.debug("closing socket: %s", e)

    def _supervise(self):
        while True:
            self._need_reconnect.wait()
            self._need_reconnect.clear()
            with self._cond:
                if self._closed:
                    return
                if self._live:
                    continue  # a stale report
            if not self.url.failover or self.url.max_reconnect_attempts == 0:
                self._fail(ConnectionLost(f"connection to {self.url} lost (the URL does not "
                                          "reconnect: use failover:(...) for that)"))
                return
            try:
                self._reconnect()
            except ConnectionLost as e:
                self._fail(e)
                return
            except Exception:  # keep the supervisor alive: try again
                log.exception("reconnect failed")
                self._need_reconnect.set()
                time.sleep(self.url.delay(1))

    def _reconnect(self):
        self._drop(self._conn)
        conn, gen = self._open(startup=False)
        log.info("reconnected to %s:%s", *(conn.transport.current_host_and_port or ("?", "?")))
        with self._cond:
            if self._closed:
                self._drop(conn)
                return
            self._conn, self._gen, self._live = conn, gen, True
            subs = list(self._subs.values())
        if self._conn_listener(conn).lost:
            self._on_lost(gen)
            return
        deadline = time.monotonic() + self.receipt_timeout
        for sub in subs:
            if not self._subscribe_on(conn, gen, sub, deadline):
                return  # lost again (or no RECEIPT); the next pass starts over
        with self._cond:
            resend = [h for h in self._pending.values() if not h.done]
        for handle in resend:
            handle.resent += 1
            headers = dict(handle.headers)
            headers[RESENT_HEADER] = "true"
            with self._cond:
                self.resends += 1
            if not self._write(gen, lambda h=handle, hd=headers: conn.send(
                    h.destination, h.body, headers=hd, receipt=h.receipt_id)):
                return
        with self._cond:
            if not (self._gen == gen and self._live):
                return
            self._ready = True
            self._cond.notify_all()
        self._notify_connect(conn)

    def _notify_connect(self, conn):
        if self.on_connect is not None:
            try:
                self.on_connect(conn.transport.current_host_and_port)
            except Exception:
                log.exception("on_connect callback raised")

    def _subscribe_on(self, conn, gen, sub, deadline):
        """SUBSCRIBE `sub` on `conn` and wait for the RECEIPT. False if the connection went
        first (the next reconnect subscribes again) or no RECEIPT came by `deadline`."""
        rid = self._next_id("sub-receipt")
        waiter = self._add_waiter(rid)
        if not self._write(gen, lambda: conn.subscribe(sub.destination, sub.id, ack=sub.ack,
                                                       headers=dict(sub.headers), receipt=rid)):
            self._remove_waiter(rid)
            return False
        return self._wait_waiter(waiter, rid, gen, deadline)

    def _fail(self, error):
        log.error("%s", error)
        with self._cond:
            self._failed = error
            self._ready = False
            for handle in self._pending.values():
                handle.error = error
            self._pending.clear()
            self._cond.notify_all()

    # ---- called on stomp.py's receiver thread ----------------------------------------------

    def _on_lost(self, gen):
        with self._cond:
            if gen != self._gen or not self._live:
                return
            self._live = False
            self._ready = False
            self._cond.notify_all()
            closed = self._closed
        if not closed:
            log.warning("connection lost; reconnecting")
            self._need_reconnect.set()

    def _on_receipt(self, frame):
        rid = frame.headers.get("receipt-id")
        with self._cond:
            handle = self._pending.pop(rid, None)
            if handle is not None:
                handle.done = True
            waiter = self._waiters.pop(rid, None)
            if waiter is not None:
                waiter.done = True
            self._cond.notify_all()

    def _on_error(self, gen, frame):
        error = BrokerError(frame)
        self.last_error = error
        rid = frame.headers.get("receipt-id")
        claimed = False
        with self._cond:
            # An ERROR naming a SEND's receipt: that SEND was refused. Resending it would be
            # refused again, so it fails instead of staying pending.
            for table in (self._pending, self._waiters):
                target = table.pop(rid, None) if rid else None
                if target is not None:
                    target.error = error
                    claimed = True
            self._cond.notify_all()
        log.warning("ERROR from broker: %s", error)
        if not claimed and self.on_error is not None:
            self.on_error(error)

    def _on_message(self, gen, frame):
        self._deliveries.put((gen, frame))

    # ---- dispatcher thread -------------------------------------------------------------------

    def _dispatch(self):
        while True:
            item = self._deliveries.get()
            if item is None:
                return
            gen, frame = item
            with self._cond:
                sub = self._subs.get(frame.headers.get("subscription"))
            if sub is None:
                continue  # unsubscribed meanwhile; the broker puts unacked ones back
            message = Message(self, frame, gen, sub)
            try:
                sub.callback(message)
            except Exception:
                log.exception("message callback of subscription %s raised", sub.id)
                if sub.ack != "auto":
                    message.nack()

    # ---- helpers ----------------------------------------------------------------------------

    def _next_id(self, kind):
        return f"{kind}-{self._prefix}-{next(self._ids)}"

    def _send_headers(self, headers):
        headers = {k: _header_value(v) for k, v in (headers or {}).items()}
        headers.setdefault(MSG_ID_HEADER, uuid.uuid4().hex)
        return headers

    def _wait_ready(self, deadline):
        with self._cond:
            return self._wait_ready_locked(deadline)

    def _wait_ready_locked(self, deadline):
        """Wait (holding _cond) until a synchronised connection is up; (conn, gen)."""
        while True:
            if self._closed:
                raise ConnectionLost("client closed")
            if self._failed is not None:
                raise ConnectionLost(str(self._failed))
            if self._ready:
                return self._conn, self._gen
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReceiptTimeout("not connected: still reconnecting when the timeout ran out")
            self._cond.wait(left)

    def _write(self, gen, write):
        """Write one frame on generation `gen`. On a socket error, report the connection lost
        and return False; the supervisor takes it from there."""
        try:
            write()
            return True
        except Exception as e:
            log.debug("write failed: %r", e)
            self._on_lost(gen)
            return False

    def _add_waiter(self, rid):
        waiter = _Waiter()
        with self._cond:
            self._waiters[rid] = waiter
        return waiter

    def _remove_waiter(self, rid):
        with self._cond:
            self._waiters.pop(rid, None)

    def _wait_waiter(self, waiter, rid, gen, deadline):
        """Wait for a connection-bound RECEIPT. True when it came; False when the connection
        `gen` went first or the deadline passed; raises BrokerError for an ERROR."""
        with self._cond:
            while not waiter.done and waiter.error is None:
                left = deadline - time.monotonic()
                if self._gen != gen or not self._live or left <= 0:
                    self._waiters.pop(rid, None)
                    return False
                self._cond.wait(left)
        if waiter.error is not None:
            raise waiter.error
        return True

    def _wait_send(self, handle, timeout):
        timeout = self.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while not handle.done and handle.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    # Not resent any more: the caller now decides (see ReceiptTimeout).
                    self._pending.pop(handle.receipt_id, None)
                    raise ReceiptTimeout(f"no RECEIPT for the SEND to {handle.destination} "
                                         f"within {timeout} s", handle.msg_id)
                self._cond.wait(left)
        if handle.error is not None:
            raise handle.error
        return handle

    def _ack_or_nack(self, kind, message, transaction):
        with self._cond:
            if message._gen != self._gen or not self._live:
                return False
            conn, gen = self._conn, self._gen
        if "ack" not in message.headers:
            raise ValueError(f"{kind}: the message has no ack header (an auto-ack subscription "
                             "takes no ACK or NACK)")
        write = conn.ack if kind == "ack" else conn.nack
        return self._write(gen, lambda: write(message.headers["ack"], transaction=transaction))

    def _unsubscribe(self, sub, delete_durable):
        with self._cond:
            if self._subs.pop(sub.id, None) is None:
                return
            conn, gen, live = self._conn, self._gen, self._ready
        if not live:
            return  # the next connection simply does not subscribe it again
        headers = {}
        if delete_durable and sub.durable_name:
            headers["activemq.subscriptionName"] = sub.durable_name
        rid = self._next_id("unsub")
        waiter = self._add_waiter(rid)
        if self._write(gen, lambda: conn.unsubscribe(sub.id, headers=headers, receipt=rid)):
            self._wait_waiter(waiter, rid, gen, time.monotonic() + self.receipt_timeout)

    def _begin(self, tx):
        conn, gen = self._wait_ready(time.monotonic() + self.receipt_timeout)
        if not self._write(gen, lambda: conn.begin(transaction=tx.id)):
            raise TransactionLost("connection lost at BEGIN")
        return gen

    def _tx_frame(self, tx, write):
        if tx.finished:
            raise ValueError(f"transaction {tx.id} is already finished")
        with self._cond:
            conn, gen, live = self._conn, self._gen, self._live
        if gen != tx._gen or not live or not self._write(gen, lambda: write(conn)):
            tx.finished = True
            raise TransactionLost(f"connection lost during transaction {tx.id}; nothing of it "
                                  "was committed: run it again")

    def _end(self, tx, kind, timeout):
        with self._cond:
            conn, gen, live = self._conn, self._gen, self._live
        if gen != tx._gen or not live:
            raise TransactionLost(f"connection lost during transaction {tx.id}; nothing of it "
                                  "was committed: run it again")
        rid = self._next_id(kind)
        waiter = self._add_waiter(rid)
        write = conn.commit if kind == "commit" else conn.abort
        timeout = self.receipt_timeout if timeout is None else timeout
        if (not self._write(gen, lambda: write(transaction=tx.id, receipt=rid))
                or not self._wait_waiter(waiter, rid, gen, time.monotonic() + timeout)):
            raise TransactionLost(f"no RECEIPT for the {kind.upper()} of {tx.id}: the "
                                  "connection was lost or the timeout ran out, so whether it "
                                  "took effect is unknown", maybe_committed=kind == "commit")
