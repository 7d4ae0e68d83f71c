"""A thread-safe pool of long-lived Clients, for many threads that send.

Opening a STOMP connection costs a TCP handshake, a CONNECT round trip and, on the broker, a
session; a web server's request threads should not do that per message. The pool lends each
Client to one thread at a time (`with pool.client() as c:`), so a thread's SEND and the wait
for its RECEIPT happen on a connection nobody else is writing to, and at most `size`
connections are ever open. A Client is itself safe to share (every send waits for its own
receipt id), but lending keeps one slow or stuck thread from holding up the others' frames
behind its own on one socket.

Clients are opened lazily, on first demand, and reused. A Client that can no longer be used
(closed, or gave up reconnecting: a plain tcp:// URL after its broker went away, or a
failover URL past maxReconnectAttempts) is dropped when it comes back or is next taken out,
and a fresh one is opened in its place.

Pooled clients are for sending. Subscribe on a Client of your own: a subscription's messages
arrive on whichever thread holds nothing, and its ack ids belong to its connection.
"""

import contextlib
import threading
import time

from .client import DEFAULT_URL, Client


class Pool:
    """`Pool(url, size=4, **client_options)`: at most `size` Clients of `url`, each made with
    `Client(url, **client_options)`. `acquire_timeout` (s, default: wait forever) bounds how
    long a thread waits for a free one."""

    def __init__(self, url=DEFAULT_URL, size=4, acquire_timeout=None, **client_options):
        if size < 1:
            raise ValueError(f"pool size must be at least 1, not {size}")
        self.url = url
        self.size = size
        self.acquire_timeout = acquire_timeout
        self._options = client_options
        self._cond = threading.Condition()
        self._idle = []  # Clients not lent out, most recently returned last
        self._open = 0  # Clients open or being opened (lent out or idle)
        self._closed = False
        self.created = 0  # Clients opened over the pool's life (replacements included)
        self.replaced = 0  # unusable Clients dropped

    @contextlib.contextmanager
    def client(self, timeout=None):
        """Lend a Client to this thread for the `with` block."""
        c = self.acquire(timeout)
        try:
            yield c
        finally:
            self.release(c)

    def send(self, destination, body, headers=None, receipt=True, timeout=None):
        """Send through a pooled Client and wait for the RECEIPT (see Client.send)."""
        with self.client() as c:
            return c.send(destination, body, headers, receipt=receipt, timeout=timeout)

    def acquire(self, timeout=None):
        """Take a Client out of the pool (return it with release())."""
        timeout = self.acquire_timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        dead = []
        try:
            with self._cond:
                c = self._take_locked(deadline, timeout, dead)
        finally:
            for d in dead:
                d.close()  # outside the lock; it gave up reconnecting, so this is quick
        if c is not None:
            return c
        try:
            c = Client(self.url, **self._options)
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise
        with self._cond:
            self.created += 1
        return c

    def _take_locked(self, deadline, timeout, dead):
        """An idle usable Client, or None after reserving a slot for a new one."""
        while True:
            if self._closed:
                raise RuntimeError("pool is closed")
            while self._idle:
                c = self._idle.pop()
                if c.usable:
                    return c
                self._forget_locked(c)
                dead.append(c)
            if self._open < self.size:
                self._open += 1  # reserve the slot; connect outside the lock
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no pooled connection free within {timeout} s "
                                     f"(all {self.size} lent out)")
            self._cond.wait(left)

    def release(self, c):
        """Give a Client back; an unusable one (or any, once the pool is closed) is closed
        and its slot freed for a fresh one."""
        with self._cond:
            keep = c.usable and not self._closed
            if keep:
                self._idle.append(c)
            else:
                self._forget_locked(c)
            self._cond.notify()
        if not keep:
            c.close()

    def _forget_locked(self, c):
        self._open -= 1
        if not c.usable:
            self.replaced += 1

    @property
    def open_connections(self):
        """Clients open now (idle and lent out), never more than `size`."""
        with self._cond:
            return self._open

    def close(self):
        """Close the idle Clients now and the lent ones as they come back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for c in idle:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
