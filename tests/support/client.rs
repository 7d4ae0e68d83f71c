//! The one raw STOMP client of the tests: blocking, over `std::net`, sending exactly the bytes
//! or frames it is given and reading frames with a deadline.
//!
//! Panicking calls (`connect`, `send_*`, `expect_*`, `request`, `receive`) are for a test's main
//! line and fail it with what did arrive; `try_*` calls return errors, for clients that must
//! outlive a broker crash or a failover. MESSAGE frames that arrive while a call waits for a
//! RECEIPT are kept and returned first by later reads.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::frame::{connect_frame, parse, send_frame, Frame, Parsed};
use super::target::{target, Target};
use super::{QUIET, WAIT};

/// Granularity of blocking reads: no read blocks longer, so deadlines hold.
const POLL: Duration = Duration::from_millis(20);

/// How many of the last frames received a client remembers for failure messages.
const HISTORY: usize = 50;

/// Why a read produced no frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Nothing complete arrived before the deadline.
    Timeout,
    /// The broker closed the connection (EOF or reset), e.g. because it was killed.
    Closed,
    /// The broker sent bytes that are not a STOMP frame.
    Invalid(String),
}

/// Why [`Client::try_connect`] produced no connection.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connect or the write of CONNECT failed (refused, reset).
    Io(io::Error),
    /// No answer to CONNECT: the deadline passed, the connection closed, or the answer was
    /// not a frame.
    Read(ReadError),
    /// The broker answered with something else than CONNECTED (an ERROR).
    Refused(Frame),
}

/// What one blocking read produced.
pub enum Fill {
    /// Some bytes arrived.
    Data,
    /// Nothing within the poll interval.
    Idle,
    /// The broker closed the connection (EOF or reset).
    Closed,
}

/// A raw STOMP connection. See the module documentation.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unparsed bytes of `buf` start.
    start: usize,
    /// The negotiated version ("1.0" until CONNECTED says otherwise); decides header decoding
    /// and how [`Client::ack`] names a message.
    pub version: String,
    /// Heart-beat EOLs received between frames so far (not the EOLs the spec lets a frame end
    /// with after its NUL: see [`super::frame`]).
    pub eols: usize,
    /// When the last byte arrived.
    pub last_byte: Instant,
    pending: VecDeque<Frame>,
    /// The last frames received (short form), for failure messages.
    history: VecDeque<String>,
    closed: bool,
    /// Whether a CONNECTED arrived (the connection may send frames other than CONNECT).
    connected: bool,
    next_receipt: u64,
}

impl Client {
    /// A TCP connection to `addr` that has sent nothing yet.
    pub fn open(addr: SocketAddr) -> Client {
        Client::try_open(addr, WAIT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Like [`Client::open`] within `timeout`, returning the error.
    pub fn try_open(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        Ok(Client::from_stream(stream))
    }

    /// A connection to `addr` that says, in a PROXY protocol v1 header, that it comes from
    /// `client_ip` (as a load balancer's `send-proxy` does), and has sent nothing else yet.
    pub fn behind_proxy(addr: SocketAddr, client_ip: &str) -> Client {
        let mut s = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let header = format!("PROXY TCP4 {client_ip} 127.0.0.1 40000 {}\r\n", addr.port());
        s.write_all(header.as_bytes()).expect("write PROXY header");
        Client::from_stream(s)
    }

    /// A client over a connection already open (e.g. one that sent a PROXY header).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("set_nodelay");
        stream
            .set_read_timeout(Some(POLL))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("set_write_timeout");
        Client {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            version: "1.0".into(),
            eols: 0,
            last_byte: Instant::now(),
            pending: VecDeque::new(),
            history: VecDeque::new(),
            closed: false,
            connected: false,
            next_receipt: 0,
        }
    }

    /// Opens a connection and completes CONNECT/CONNECTED at 1.2 with `extra` headers, all
    /// within `timeout`, returning what went wrong instead of failing the test.
    pub fn try_connect(
        addr: SocketAddr,
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        let deadline = Instant::now() + timeout;
        let mut c = Client::try_open(addr, timeout).map_err(ConnectError::Io)?;
        c.try_send_frame(&connect_frame("1.2", extra))
            .map_err(ConnectError::Io)?;
        let left = deadline.saturating_duration_since(Instant::now());
        match c.try_frame(left) {
            Ok(f) if f.command == "CONNECTED" => Ok(c),
            Ok(f) => Err(ConnectError::Refused(f)),
            Err(e) => Err(ConnectError::Read(e)),
        }
    }

    /// Sets how long a write may block (30 s by default) before it fails.
    pub fn set_write_timeout(&self, timeout: Duration) {
        self.stream
            .set_write_timeout(Some(timeout))
            .expect("set_write_timeout");
    }

    // --- connecting -----------------------------------------------------------------------------

    /// CONNECT at `version` ("1.0" sends no accept-version) without heart-beats, and expect
    /// CONNECTED at that version.
    #[track_caller]
    pub fn connect(&mut self, version: &str) -> Frame {
        self.connect_with(version, &[])
    }

    /// Like [`Client::connect`], with `extra` CONNECT headers (e.g. `client-id`).
    #[track_caller]
    pub fn connect_with(&mut self, version: &str, extra: &[(&str, &str)]) -> Frame {
        let connected = self.handshake(&connect_frame(version, extra));
        assert_eq!(
            connected.command, "CONNECTED",
            "CONNECT was answered with {connected:?}"
        );
        let got = connected.get("version").unwrap_or("1.0");
        assert_eq!(got, version, "negotiated version: {connected:?}");
        connected
    }

    /// Sends `frame` (a CONNECT or STOMP) and returns the broker's answer, whatever it is; a
    /// CONNECTED sets the version for header decoding.
    #[track_caller]
    pub fn handshake(&mut self, frame: &Frame) -> Frame {
        self.send_frame(frame);
        self.expect_frame(WAIT)
    }

    // --- sending --------------------------------------------------------------------------------

    /// Writes `bytes` exactly; a failed write fails the test.
    #[track_caller]
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!(
                "write of {} bytes failed: {e}; frames received so far: {:?}",
                bytes.len(),
                self.history
            );
        }
    }

    /// Writes `bytes`, returning the error: for bytes sent after the broker may already have
    /// closed, or crashed.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `frame`; a failed write fails the test.
    #[track_caller]
    pub fn send_frame(&mut self, frame: &Frame) {
        if let Err(e) = self.try_send_frame(frame) {
            panic!(
                "write of {} failed: {e}; frames received so far: {:?}",
                frame.command, self.history
            );
        }
    }

    /// Writes `frame`, returning the error.
    pub fn try_send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.try_send_raw(&frame.encode())
    }

    /// A fresh receipt id, unique on this connection.
    pub fn receipt_id(&mut self) -> String {
        self.next_receipt += 1;
        format!("rcpt-{}", self.next_receipt)
    }

    /// Sends `frame` with a new `receipt` header and waits for its RECEIPT. MESSAGE frames
    /// that arrive meanwhile are kept for later reads; anything else fails the test.
    #[track_caller]
    pub fn request(&mut self, frame: Frame) {
        let id = self.receipt_id();
        self.send_frame(&frame.header("receipt", id.clone()));
        self.await_receipt(&id, WAIT);
    }

    /// SEND `body` to `dest` with `extra` headers, no receipt.
    #[track_caller]
    pub fn send(&mut self, dest: &str, body: &str, extra: &[(&str, &str)]) {
        self.send_frame(&send_frame(dest, body, extra));
    }

    /// SEND `body` to `dest` with `extra` headers and wait for the RECEIPT (the message is
    /// then in the destination).
    #[track_caller]
    pub fn send_sync(&mut self, dest: &str, body: &str, extra: &[(&str, &str)]) {
        self.request(send_frame(dest, body, extra));
    }

    /// A `persistent:true` SEND, waiting for its RECEIPT (the message is then stored).
    #[track_caller]
    pub fn send_persistent(&mut self, dest: &str, body: &str, extra: &[(&str, &str)]) {
        let mut headers = vec![("persistent", "true")];
        headers.extend_from_slice(extra);
        self.send_sync(dest, body, &headers);
    }

    /// SUBSCRIBE to `dest` as `id` with `ack` mode and `extra` headers; waits for the receipt.
    #[track_caller]
    pub fn subscribe(&mut self, dest: &str, id: &str, ack: &str, extra: &[(&str, &str)]) {
        let f = Frame::new("SUBSCRIBE")
            .header("destination", dest)
            .header("id", id)
            .header("ack", ack)
            .headers(extra);
        self.request(f);
    }

    /// ACK `msg` the way the connection's version says (1.2 `id` = `ack` header, 1.1
    /// `message-id` + `subscription`, 1.0 `message-id`). No receipt.
    #[track_caller]
    pub fn ack(&mut self, msg: &Frame) {
        let f = self.settle_frame("ACK", msg);
        self.send_frame(&f);
    }

    /// NACK `msg` (1.1 and 1.2). No receipt.
    #[track_caller]
    pub fn nack(&mut self, msg: &Frame) {
        let f = self.settle_frame("NACK", msg);
        self.send_frame(&f);
    }

    /// The ACK or NACK frame for `msg`, to add headers (transaction, receipt) before sending.
    #[track_caller]
    pub fn settle_frame(&self, command: &str, msg: &Frame) -> Frame {
        match self.version.as_str() {
            "1.2" => Frame::new(command).header("id", msg.must("ack")),
            "1.1" => Frame::new(command)
                .header("message-id", msg.must("message-id"))
                .header("subscription", msg.must("subscription")),
            _ => Frame::new(command).header("message-id", msg.must("message-id")),
        }
    }

    /// DISCONNECT with a receipt; expects the RECEIPT and then the close. MESSAGEs that
    /// arrived before the RECEIPT are legitimate; nothing may follow it.
    #[track_caller]
    pub fn disconnect(mut self) {
        let id = self.receipt_id();
        self.send_frame(&Frame::new("DISCONNECT").header("receipt", id.clone()));
        self.await_receipt(&id, WAIT);
        self.pending.clear();
        self.expect_closed(WAIT);
    }

    /// Closes the socket without DISCONNECT, like a crashed client.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    // --- receiving ------------------------------------------------------------------------------

    /// One read (at most the poll interval long) from the socket into the buffer.
    pub fn fill(&mut self) -> Fill {
        if self.closed {
            return Fill::Closed;
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 1 << 20 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 64 * 1024, 0);
        let result = self.stream.read(&mut self.buf[len..]);
        match result {
            Ok(0) => {
                self.buf.truncate(len);
                self.closed = true;
                Fill::Closed
            }
            Ok(n) => {
                self.buf.truncate(len + n);
                self.last_byte = Instant::now();
                Fill::Data
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                self.buf.truncate(len);
                Fill::Idle
            }
            Err(_) => {
                // A reset is how a close looks when we had unread data or wrote after it.
                self.buf.truncate(len);
                self.closed = true;
                Fill::Closed
            }
        }
    }

    /// Takes the next whole frame from what has been read so far, without reading. A frame
    /// the broker should never have sent fails the test.
    #[track_caller]
    pub fn next_buffered(&mut self) -> Option<Frame> {
        match self.take_buffered() {
            Ok(f) => f,
            Err(why) => panic!(
                "broker sent an invalid frame: {why}\nframes before it: {:?}",
                self.history
            ),
        }
    }

    fn take_buffered(&mut self) -> Result<Option<Frame>, String> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(Some(f));
        }
        match parse(&self.buf[self.start..], &self.version)? {
            Parsed::Incomplete { eols, consumed } => {
                self.eols += eols;
                self.start += consumed;
                Ok(None)
            }
            Parsed::Frame {
                frame,
                eols,
                consumed,
            } => {
                self.eols += eols;
                self.start += consumed;
                if frame.command == "CONNECTED" {
                    self.version = frame.get("version").unwrap_or("1.0").to_string();
                    self.connected = true;
                }
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                let mut short = format!("{frame:?}");
                short.truncate(200);
                self.history.push_back(short);
                Ok(Some(frame))
            }
        }
    }

    /// The next frame within `timeout`, or why there is none.
    pub fn try_frame(&mut self, timeout: Duration) -> Result<Frame, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.take_buffered() {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(why) => return Err(ReadError::Invalid(why)),
            }
            if self.closed {
                return Err(ReadError::Closed);
            }
            if Instant::now() >= deadline {
                return Err(ReadError::Timeout);
            }
            self.fill();
        }
    }

    /// The next frame, or None if the connection closed or `timeout` passed first. A frame
    /// the broker should never have sent fails the test.
    #[track_caller]
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        match self.try_frame(timeout) {
            Ok(f) => Some(f),
            Err(ReadError::Invalid(why)) => panic!(
                "broker sent an invalid frame: {why}\nframes before it: {:?}",
                self.history
            ),
            Err(_) => None,
        }
    }

    /// The next frame; fails the test if none arrives within `timeout`.
    #[track_caller]
    pub fn expect_frame(&mut self, timeout: Duration) -> Frame {
        match self.try_frame(timeout) {
            Ok(f) => f,
            Err(e) => panic!(
                "expected a frame within {timeout:?}, got {e:?}; unparsed bytes: {:?}; last \
                 frames received: {:?}",
                String::from_utf8_lossy(&self.buf[self.start..]),
                self.history
            ),
        }
    }

    /// The next frame, which must be a `command`.
    #[track_caller]
    pub fn expect(&mut self, command: &str, timeout: Duration) -> Frame {
        let f = self.expect_frame(timeout);
        assert_eq!(
            f.command, command,
            "expected a {command} frame, got {f:?}; frames before: {:?}",
            self.history
        );
        f
    }

    /// The next MESSAGE (within [`WAIT`]).
    #[track_caller]
    pub fn expect_message(&mut self) -> Frame {
        self.expect("MESSAGE", WAIT)
    }

    /// The next MESSAGE, which must have body `body`.
    #[track_caller]
    pub fn expect_body(&mut self, body: &str) -> Frame {
        let m = self.expect_message();
        assert_eq!(m.text(), body, "unexpected MESSAGE {m:?}");
        m
    }

    /// `n` MESSAGE frames within `timeout` in all; any other frame fails the test.
    #[track_caller]
    pub fn receive(&mut self, n: usize, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_frame(left) {
                Ok(f) if f.command == "MESSAGE" => out.push(f),
                Ok(f) => panic!("expected MESSAGE {} of {n}, got {f:?}", out.len() + 1),
                Err(e) => panic!(
                    "expected {n} MESSAGEs within {timeout:?}, got {} then {e:?}; bodies: {:?}",
                    out.len(),
                    out.iter().map(Frame::text).collect::<Vec<_>>()
                ),
            }
        }
        out
    }

    /// MESSAGE frames until none arrives for `quiet` (or `timeout` passes in all); any other
    /// frame fails the test. For draining a destination whose content is not known exactly.
    #[track_caller]
    pub fn receive_until_quiet(&mut self, quiet: Duration, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_frame(quiet.min(left)) {
                Ok(f) if f.command == "MESSAGE" => out.push(f),
                Ok(f) => panic!("expected MESSAGE, got {f:?} after {} messages", out.len()),
                Err(ReadError::Timeout) => return out,
                Err(e) => panic!("reading MESSAGEs: {e:?} after {} messages", out.len()),
            }
        }
    }

    /// Waits for RECEIPT `id`; MESSAGE frames before it are kept for later reads, anything
    /// else (an ERROR, another receipt) fails the test.
    #[track_caller]
    pub fn await_receipt(&mut self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut held = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = match self.try_frame(left) {
                Ok(f) => f,
                Err(e) => panic!(
                    "expected RECEIPT receipt-id:{id} within {timeout:?}, got {e:?}; last \
                     frames received: {:?}",
                    self.history
                ),
            };
            match f.command.as_str() {
                "RECEIPT" => {
                    assert_eq!(
                        f.get("receipt-id"),
                        Some(id),
                        "RECEIPT out of order or wrong id: {f:?}"
                    );
                    // Keep the held messages ahead of anything already pending.
                    for m in held.into_iter().rev() {
                        self.pending.push_front(m);
                    }
                    return;
                }
                "MESSAGE" => held.push(f),
                _ => panic!("expected RECEIPT receipt-id:{id}, got {f:?}"),
            }
        }
    }

    /// Asserts that no frame arrives for `dur` (heart-beat EOLs are fine) and the connection
    /// stays open.
    #[track_caller]
    pub fn expect_silence(&mut self, dur: Duration) {
        match self.try_frame(dur) {
            Err(ReadError::Timeout) => {}
            Ok(f) => panic!("expected no frame for {dur:?}, got {f:?}"),
            Err(ReadError::Closed) => {
                panic!("expected the connection to stay open for {dur:?}, but it was closed")
            }
            Err(e) => panic!("expected the connection to stay quiet for {dur:?}, got {e:?}"),
        }
    }

    /// Asserts that the broker closes the connection within `timeout` without sending a frame
    /// (heart-beat EOLs are fine).
    #[track_caller]
    pub fn expect_closed(&mut self, timeout: Duration) {
        if let Some(f) = self.next_frame(timeout) {
            panic!("expected the broker to close the connection, got {f:?}");
        }
        if !self.closed {
            panic!(
                "expected the broker to close the connection within {timeout:?}; it stayed open \
                 (frames received: {:?})",
                self.history
            );
        }
    }

    /// Asserts that the broker closes the connection within `timeout`; one ERROR frame before
    /// the close is allowed (returned), nothing else is.
    #[track_caller]
    pub fn expect_closed_maybe_error(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        let first = self.next_frame(timeout);
        if let Some(f) = &first {
            assert_eq!(
                f.command, "ERROR",
                "expected a close (or ERROR, close), got {f:?}"
            );
            self.expect_closed(deadline.saturating_duration_since(Instant::now()));
        } else if !self.closed {
            panic!("expected the broker to close the connection within {timeout:?}");
        }
        first
    }

    /// Expects an ERROR frame with a `message` header — carrying `receipt-id:<receipt>` if the
    /// offending frame had a receipt — followed by the close, as the spec requires.
    #[track_caller]
    pub fn expect_error_and_close(&mut self, receipt: Option<&str>) -> Frame {
        let e = self.expect("ERROR", WAIT);
        assert!(
            e.get("message").is_some_and(|m| !m.is_empty()),
            "ERROR without a `message` header: {e:?}"
        );
        if let Some(id) = receipt {
            assert_eq!(
                e.get("receipt-id"),
                Some(id),
                "ERROR must copy the offending frame's receipt: {e:?}"
            );
        }
        if let Some(f) = self.next_frame(WAIT) {
            panic!("after {e:?} the broker must close the connection, but it sent {f:?}");
        }
        assert!(
            self.closed,
            "after {e:?} the broker must close the connection; it stayed open for {WAIT:?}"
        );
        e
    }

    /// Expects the ERROR for a frame the broker refused to carry out (a required header
    /// missing, an unknown ack id or transaction, a frame before or a second CONNECT), with a
    /// `message` header and `receipt-id:<receipt>` if the frame had a receipt. Our broker then
    /// closes the connection, as the spec requires ([`Client::expect_error_and_close`]).
    /// ActiveMQ keeps it open and serving (`docs/compatibility.md`, "ERROR does not close the
    /// connection"): against it this asserts that nothing else arrives and, once connected,
    /// that a receipted SEND still succeeds.
    #[track_caller]
    pub fn expect_refusal(&mut self, receipt: Option<&str>) -> Frame {
        if target() != Target::ActiveMq {
            return self.expect_error_and_close(receipt);
        }
        let e = self.expect("ERROR", WAIT);
        assert!(
            e.get("message").is_some_and(|m| !m.is_empty()),
            "ERROR without a `message` header: {e:?}"
        );
        if let Some(id) = receipt {
            assert_eq!(
                e.get("receipt-id"),
                Some(id),
                "ERROR must copy the offending frame's receipt: {e:?}"
            );
        }
        self.expect_silence(QUIET);
        if self.connected {
            let dest = format!("/queue/{}", super::unique("after-refusal"));
            self.send_sync(&dest, "the connection still serves", &[]);
        }
        e
    }

    /// Expects one or more ERROR frames with a `message` header, then the close: how ActiveMQ
    /// answers a fatal error when frames it had already read follow the offending one (it
    /// answers those too before the close takes effect; `docs/compatibility.md`). Returns the
    /// ERRORs.
    #[track_caller]
    pub fn expect_errors_and_close(&mut self) -> Vec<Frame> {
        let mut errors = vec![self.expect("ERROR", WAIT)];
        while let Some(f) = self.next_frame(WAIT) {
            assert_eq!(
                f.command, "ERROR",
                "after {:?} only more ERRORs and the close may come: {f:?}",
                errors[0]
            );
            errors.push(f);
        }
        assert!(
            self.closed,
            "after {} ERRORs the broker must close the connection; it stayed open for {WAIT:?}",
            errors.len()
        );
        for e in &errors {
            assert!(
                e.get("message").is_some_and(|m| !m.is_empty()),
                "ERROR without a `message` header: {e:?}"
            );
        }
        errors
    }

    /// [`Client::expect_error_and_close`] without a receipt, for an error the broker finds
    /// while the client is still writing (an endless line, too many headers). ActiveMQ goes on
    /// reading until its close takes effect and may answer those bytes with more ERRORs
    /// (`docs/compatibility.md`), which this allows against it. Returns the first ERROR.
    #[track_caller]
    pub fn expect_error_and_close_mid_stream(&mut self) -> Frame {
        match target() {
            Target::ActiveMq => self.expect_errors_and_close().swap_remove(0),
            _ => self.expect_error_and_close(None),
        }
    }

    /// True once a CONNECTED arrived on this connection.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// True once the broker closed the connection (as seen by a read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A second handle on the socket, for a thread that writes while this client reads.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the socket")
    }
}

/// Asserts that an ERROR's `message` header or body mentions one of `words`
/// (case-insensitive): the most a test pins down about its text.
#[track_caller]
pub fn assert_mentions(frame: &Frame, words: &[&str]) {
    let text = format!("{} {}", frame.get("message").unwrap_or(""), frame.text()).to_lowercase();
    assert!(
        words.iter().any(|w| text.contains(&w.to_lowercase())),
        "expected the ERROR to mention one of {words:?}: {frame:?}"
    );
}
