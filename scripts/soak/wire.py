"""A small blocking STOMP 1.2 client over a plain socket, for the soak workload.

Plain sockets rather than stomp.py because the soak must decide exactly how each connection
ends (DISCONNECT with a receipt, FIN without DISCONNECT, or RST) and know exactly which frames
were on the wire before it, to keep an honest ledger. stomp.py itself is covered by the client
smoke tests (clients/python).

One Conn belongs to one thread. Reads have deadlines; heart-beats are sent from `tick()`,
which the owner calls from its loop.
"""

import socket
import struct
import time

ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"}
UNESCAPES = {"\\\\": "\\", "\\r": "\r", "\\n": "\n", "\\c": ":"}


class StompError(Exception):
    """The broker answered with an ERROR frame (its `message` header is the text)."""

    def __init__(self, frame):
        super().__init__(frame.headers.get("message", "ERROR") + ": " + frame.body[:200].decode(
            "utf-8", "replace"))
        self.frame = frame


class Closed(Exception):
    """The connection ended (EOF, reset or a socket error) while reading or writing."""


class Frame:
    __slots__ = ("command", "headers", "body")

    def __init__(self, command, headers, body=b""):
        self.command = command
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"Frame({self.command}, {self.headers})"


def escape(value):
    return "".join(ESCAPES.get(c, c) for c in str(value))


def unescape(value):
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        pair = value[i:i + 2]
        if pair in UNESCAPES:
            out.append(UNESCAPES[pair])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def encode(command, headers, body=b""):
    lines = [command]
    for k, v in headers.items():
        lines.append(f"{escape(k)}:{escape(v)}")
    if body:
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode() + body + b"\0"


class Conn:
    """One STOMP 1.2 connection. `heart_beat_ms` is what we offer both ways (0: none)."""

    def __init__(self, addr, connect_headers=None, heart_beat_ms=0, timeout=10.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.last_sent = time.monotonic()
        self.send_every = 0.0
        headers = {"accept-version": "1.2", "host": "stompbox",
                   "heart-beat": f"{heart_beat_ms},{heart_beat_ms}"}
        headers.update(connect_headers or {})
        self.write(encode("CONNECT", headers))
        frame = self.read(timeout)
        if frame is None:
            self.close_abruptly()
            raise Closed("no CONNECTED within the timeout")
        if frame.command == "ERROR":
            self.close_abruptly()
            raise StompError(frame)
        if frame.command != "CONNECTED":
            self.close_abruptly()
            raise Closed(f"expected CONNECTED, got {frame.command}")
        # The broker's answer `sx,sy`: sy is how often it wants to hear from us.
        sy = int(frame.headers.get("heart-beat", "0,0").split(",")[1])
        if heart_beat_ms and sy:
            self.send_every = sy / 1000 / 2

    def write(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Closed(f"write: {e}") from e
        self.last_sent = time.monotonic()

    def frame(self, command, headers, body=b""):
        self.write(encode(command, headers, body))

    def tick(self):
        """Sends a heart-beat EOL when we have been silent for half the agreed interval."""
        if self.send_every and time.monotonic() - self.last_sent >= self.send_every:
            self.write(b"\n")

    def read(self, timeout):
        """The next frame, or None when none arrived within `timeout` seconds. Raises Closed
        when the connection ends."""
        deadline = time.monotonic() + timeout
        while True:
            # Also while frames keep coming: a busy auto-ack consumer sends nothing else.
            self.tick()
            frame = self._take()
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(min(left, 0.2))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                raise Closed(f"read: {e}") from e
            if not data:
                raise Closed("EOF")
            self.buf += data

    def _take(self):
        buf = self.buf
        start = 0
        while start < len(buf) and buf[start] in (10, 13):  # heart-beat EOLs
            start += 1
        if start:
            del buf[:start]
        end = buf.find(b"\n\n")
        if end < 0:
            return None
        head = buf[:end].decode("utf-8").replace("\r\n", "\n").split("\n")
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(unescape(k), unescape(v))
        length = headers.get("content-length")
        if length is not None:
            stop = end + 2 + int(length)
            if len(buf) < stop + 1:
                return None
            body = bytes(buf[end + 2:stop])
            del buf[:stop + 1]
        else:
            stop = buf.find(b"\0", end + 2)
            if stop < 0:
                return None
            body = bytes(buf[end + 2:stop])
            del buf[:stop + 1]
        return Frame(head[0], headers, body)

    def disconnect(self, receipt, on_frame=None, timeout=10.0):
        """DISCONNECT with a receipt; frames before the RECEIPT go to `on_frame`. True when the
        RECEIPT came (every earlier frame took effect), False otherwise. Closes the socket."""
        try:
            self.frame("DISCONNECT", {"receipt": receipt})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                frame = self.read(deadline - time.monotonic())
                if frame is None:
                    break
                if frame.command == "RECEIPT" and frame.headers.get("receipt-id") == receipt:
                    return True
                if on_frame is not None:
                    on_frame(frame)
            return False
        except Closed:
            return False
        finally:
            self.sock.close()

    def close_abruptly(self, reset=False):
        """Closes without DISCONNECT: a FIN, or with `reset` an RST (SO_LINGER 0)."""
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass
