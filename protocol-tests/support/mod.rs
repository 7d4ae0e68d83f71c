//! The harness: start a broker (or use `STOMP_ADDR`), and a raw blocking STOMP client.
//!
//! Everything here speaks bytes on a `std::net::TcpStream`; nothing of the broker's own crate is
//! used, so the suite tests the wire, not the code. Every read has a deadline, so a broker that
//! stops answering fails a test with what it did send instead of hanging the suite.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a test waits for something the broker must send. Generous: the suite runs in
/// parallel with the load tests on two shared cores.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a test listens to check that the broker sends nothing. A broker that is merely
/// slow can make such a check pass wrongly, never fail wrongly.
pub const QUIET: Duration = Duration::from_millis(300);

/// Granularity of blocking reads: a read never blocks longer than this, so deadlines hold.
const POLL: Duration = Duration::from_millis(50);

/// The shard count passed to brokers we start: more than one, so cross-shard paths are
/// exercised, and fixed, so results do not depend on the machine.
const CORES: &str = "2";

/// The environment variable naming an already-running broker to test instead of our binary.
pub const STOMP_ADDR: &str = "STOMP_ADDR";

// ---------------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------------

/// A broker under test: a `stompbox serve` child process with its own temp data dir, or the
/// external broker named by `STOMP_ADDR`. Dropping it kills and reaps the child; if the test
/// is panicking, the tail of the broker's log is printed first.
pub struct Broker {
    addr: SocketAddr,
    /// The admin HTTP endpoint of our own broker (None for an external one).
    admin: Option<SocketAddr>,
    child: Option<Child>,
    log: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// The broker with its default configuration.
    pub fn start() -> Broker {
        match external_addr() {
            Some(addr) => Broker {
                addr,
                admin: None,
                child: None,
                log: None,
                _dir: None,
            },
            None => Broker::spawn(None),
        }
    }

    /// Our broker with `config` as its TOML config file. Returns `None` (after printing why)
    /// when `STOMP_ADDR` is set, since another broker's config cannot be chosen from here.
    pub fn with_config(test: &str, config: &str) -> Option<Broker> {
        if external_addr().is_some() {
            eprintln!("skipping {test}: it needs the broker's own config, and {STOMP_ADDR} is set");
            return None;
        }
        Some(Broker::spawn(Some(config)))
    }

    /// Our own broker (not `STOMP_ADDR`), for tests of process behaviour such as SIGTERM.
    pub fn own(test: &str) -> Option<Broker> {
        Broker::with_config(test, "")
    }

    /// True when the suite runs against an external broker.
    pub fn is_external() -> bool {
        external_addr().is_some()
    }

    fn spawn(config: Option<&str>) -> Broker {
        let dir = tempfile::tempdir().expect("create temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("create data dir");
        let log = dir.path().join("broker.log");
        let log_file = std::fs::File::create(&log).expect("create log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stompbox"));
        cmd.arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--admin-bind")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data)
            .arg("--cores")
            .arg(CORES);
        if let Some(text) = config {
            let path = dir.path().join("stompbox.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().expect("spawn stompbox serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            let (mut listening, mut admin) = (false, false);
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        // The listening line, then the admin line (in that order).
                        let line = line.trim();
                        if !listening && line.starts_with("stompbox listening ") {
                            let _ = tx.send(line.to_string());
                            listening = true;
                        } else if !admin && line.starts_with("stompbox admin ") {
                            let _ = tx.send(line.to_string());
                            admin = true;
                        }
                    }
                }
            }
        });
        let mut broker = Broker {
            addr: "127.0.0.1:0".parse().expect("literal address"),
            admin: None,
            child: Some(child),
            log: Some(log),
            _dir: Some(dir),
        };
        let listening = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let status = broker
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "broker did not print `stompbox listening stomp=...` (waited up to 30s; \
                     exit status: {status:?})\n--- broker log ---\n{}",
                    broker.log_tail()
                );
            }
        };
        let stomp = listening
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("stomp="))
            .unwrap_or_else(|| panic!("no stomp= in listening line {listening:?}"));
        broker.addr = stomp
            .parse()
            .unwrap_or_else(|e| panic!("bad stomp address {stomp:?}: {e}"));
        // The admin line follows at once; a test that needs it (`admin_get`) gets None if
        // it did not come.
        broker.admin = rx
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .and_then(|line| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("http="))?
                    .parse()
                    .ok()
            });
        broker
    }

    /// `GET path` on our own broker's admin endpoint: the response body, or None for an
    /// external broker (or if the endpoint does not answer 200).
    pub fn admin_get(&self, path: &str) -> Option<String> {
        let addr = self.admin?;
        let mut s = TcpStream::connect_timeout(&addr, WAIT).ok()?;
        s.set_read_timeout(Some(WAIT)).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A TCP connection that has sent nothing yet.
    pub fn raw(&self) -> Client {
        Client::open(self.addr)
    }

    /// A connection that has completed CONNECT/CONNECTED at `version` ("1.0", "1.1", "1.2")
    /// without heart-beats.
    pub fn connect(&self, version: &str) -> Client {
        let mut c = self.raw();
        c.connect(version);
        c
    }

    /// The child's pid (None for an external broker).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last few KiB of the broker's stderr log.
    pub fn log_tail(&self) -> String {
        let Some(path) = &self.log else {
            return "(external broker: no log)".into();
        };
        let bytes = std::fs::read(path).unwrap_or_default();
        let from = bytes.len().saturating_sub(6 * 1024);
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() && self.log.is_some() {
            eprintln!(
                "--- broker log (tail) ---\n{}\n--- end ---",
                self.log_tail()
            );
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn external_addr() -> Option<SocketAddr> {
    let text = std::env::var(STOMP_ADDR).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let addr = text
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("{STOMP_ADDR}={text:?} is not an address: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{STOMP_ADDR}={text:?} resolves to nothing"));
    Some(addr)
}

/// The broker's memory as the kernel reports it in `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident (the peak since the process started).
    pub peak_kib: u64,
}

impl Broker {
    /// The child's memory (None for an external broker, or where `/proc` is missing).
    pub fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// How many file descriptors the child holds open (None as for [`Broker::memory`]).
    pub fn open_fds(&self) -> Option<usize> {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", self.pid()?)).ok()?;
        Some(dir.count())
    }
}

/// Polls `check` until it returns `Ok`, backing off from 5 ms to 100 ms; panics with the last
/// `Err` after `timeout`. The way to wait for the broker instead of sleeping.
#[track_caller]
pub fn eventually<T, E: fmt::Debug>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("condition still false after {timeout:?}: {e:?}")
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// A name unique to this test run, for destinations, subscription ids and transactions, so
/// tests never share state even on one external broker.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let run = *RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        (nanos ^ u64::from(std::process::id())) % 1_000_000_007
    });
    format!("{prefix}-{run}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `/queue/<unique>`.
pub fn queue(name: &str) -> String {
    format!("/queue/{}", unique(name))
}

/// `/topic/<unique>`.
pub fn topic(name: &str) -> String {
    format!("/topic/{}", unique(name))
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// A STOMP frame. Built by tests with headers written exactly as they go on the wire (no
/// escaping is added); read from the broker with header names and values decoded per the
/// connection's version (1.1: `\n \c \\`, 1.2: also `\r`; never for CONNECTED or 1.0).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame {
            command: command.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends a header (raw wire text; repeated names are kept).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl AsRef<[u8]>) -> Frame {
        self.body = body.as_ref().to_vec();
        self
    }

    /// The first value of header `name`, as a receiver must use it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in wire order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `name`, or a panic that shows the whole frame.
    pub fn must(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("{} frame has no `{name}` header: {self:?}", self.command))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The wire form: command, headers as given, blank line, body, NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.body.len());
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.command)?;
        for (k, v) in &self.headers {
            write!(f, " {k:?}:{v:?}")?;
        }
        let body = String::from_utf8_lossy(&self.body);
        if body.len() > 300 {
            write!(f, " body({} bytes)={:?}...", self.body.len(), &body[..300])
        } else {
            write!(f, " body={body:?}")
        }
    }
}

/// Escapes a header name or value for `version` (what a client must put on the wire).
pub fn escape(text: &str, version: &str) -> String {
    if version == "1.0" {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ':' => out.push_str("\\c"),
            '\n' => out.push_str("\\n"),
            '\r' if version == "1.2" => out.push_str("\\r"),
            other => out.push(other),
        }
    }
    out
}

fn unescape(raw: &str, version: &str) -> Result<String, String> {
    if version == "1.0" || !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('c') => out.push(':'),
            Some('n') => out.push('\n'),
            Some('r') if version == "1.2" => out.push('\r'),
            other => {
                return Err(format!(
                    "undefined escape \\{} in {raw:?} (version {version})",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    Ok(out)
}

/// Result of trying to take one frame off the front of a buffer.
enum Parsed {
    /// Need more bytes. `eols` heart-beat EOLs at the front were consumed already.
    Incomplete { eols: usize, consumed: usize },
    Frame {
        frame: Frame,
        eols: usize,
        consumed: usize,
    },
}

/// Parses one frame from `buf` (leading EOLs are skipped and counted). `version` decides
/// header decoding. A frame the broker should never have sent is an `Err` with the reason.
fn parse(buf: &[u8], version: &str) -> Result<Parsed, String> {
    let mut i = 0;
    let mut eols = 0;
    loop {
        match buf.get(i) {
            Some(b'\n') => {
                i += 1;
                eols += 1;
            }
            Some(b'\r') => match buf.get(i + 1) {
                Some(b'\n') => {
                    i += 2;
                    eols += 1;
                }
                None => return Ok(Parsed::Incomplete { eols, consumed: i }),
                Some(_) => break,
            },
            None => return Ok(Parsed::Incomplete { eols, consumed: i }),
            Some(_) => break,
        }
    }
    let start = i;
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = start;
    let body_start = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return Ok(Parsed::Incomplete { eols, consumed: i });
        };
        let mut line = &buf[pos..pos + nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        if line.is_empty() {
            break pos;
        }
        lines.push(line);
    };
    let command = String::from_utf8(lines[0].to_vec())
        .map_err(|_| format!("command is not UTF-8: {:?}", lines[0]))?;
    let decode = command != "CONNECTED";
    let mut headers = Vec::with_capacity(lines.len() - 1);
    let mut content_length = None;
    for line in &lines[1..] {
        let line =
            std::str::from_utf8(line).map_err(|_| format!("header is not UTF-8: {line:?}"))?;
        let colon = line
            .find(':')
            .ok_or_else(|| format!("header line without ':' in {command}: {line:?}"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (name, value) = if decode {
            (unescape(name, version)?, unescape(value, version)?)
        } else {
            (name.to_string(), value.to_string())
        };
        if name == "content-length" && content_length.is_none() {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad content-length {value:?} in {command}"))?,
            );
        }
        headers.push((name, value));
    }
    let (body, end) = match content_length {
        Some(n) => {
            if buf.len() < body_start + n + 1 {
                return Ok(Parsed::Incomplete { eols, consumed: i });
            }
            if buf[body_start + n] != 0 {
                return Err(format!(
                    "{command} body of content-length {n} is not followed by NUL: {:?}",
                    String::from_utf8_lossy(&buf[start..(body_start + n + 1).min(buf.len())])
                ));
            }
            (buf[body_start..body_start + n].to_vec(), body_start + n + 1)
        }
        None => match buf[body_start..].iter().position(|&b| b == 0) {
            None => return Ok(Parsed::Incomplete { eols, consumed: i }),
            Some(n) => (buf[body_start..body_start + n].to_vec(), body_start + n + 1),
        },
    };
    Ok(Parsed::Frame {
        frame: Frame {
            command,
            headers,
            body,
        },
        eols,
        consumed: end,
    })
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// What one blocking read produced.
pub enum Fill {
    /// Some bytes arrived.
    Data,
    /// Nothing within the poll interval.
    Idle,
    /// The broker closed the connection (EOF or reset).
    Closed,
}

/// A raw STOMP connection. Sends exactly the bytes it is given; reads frames with a deadline.
/// Frames set aside while waiting for a RECEIPT are returned first by the `expect_*` calls.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    /// The negotiated version ("1.0" until CONNECTED says otherwise); decides header decoding.
    pub version: String,
    /// Heart-beat EOLs received between frames so far.
    pub eols: usize,
    /// When the last byte arrived.
    pub last_byte: Instant,
    pending: VecDeque<Frame>,
    /// Every frame received so far (command and a short form), for failure messages.
    history: Vec<String>,
    closed: bool,
    next_receipt: u64,
}

impl Client {
    pub fn open(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
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
            history: Vec::new(),
            closed: false,
            next_receipt: 0,
        }
    }

    // --- sending ----------------------------------------------------------------------------

    pub fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!(
                "write of {} bytes failed: {e}; frames received so far: {:?}",
                bytes.len(),
                self.history
            );
        }
    }

    /// Writes and ignores errors: for bytes sent after the broker may already have closed.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send_frame(&mut self, frame: &Frame) {
        self.send_raw(&frame.encode());
    }

    /// A fresh receipt id, unique on this connection.
    pub fn receipt_id(&mut self) -> String {
        self.next_receipt += 1;
        format!("rcpt-{}", self.next_receipt)
    }

    /// Sends `frame` with a new `receipt` header and waits for its RECEIPT. MESSAGE frames that
    /// arrive meanwhile are kept for later `expect_*` calls; anything else fails the test.
    pub fn request(&mut self, frame: Frame) {
        let id = self.receipt_id();
        self.send_frame(&frame.header("receipt", id.clone()));
        self.await_receipt(&id);
    }

    /// SEND `body` to `dest` without a receipt.
    pub fn send_to(&mut self, dest: &str, body: &str) {
        self.send_frame(&Frame::new("SEND").header("destination", dest).body(body));
    }

    /// SEND `body` to `dest` and wait for the receipt (the message is then in the destination).
    pub fn send_sync(&mut self, dest: &str, body: &str) {
        self.request(Frame::new("SEND").header("destination", dest).body(body));
    }

    /// SUBSCRIBE with `id` and `ack` mode, plus `extra` headers; waits for the receipt.
    pub fn subscribe_with(&mut self, dest: &str, id: &str, ack: &str, extra: &[(&str, &str)]) {
        let mut f = Frame::new("SUBSCRIBE")
            .header("destination", dest)
            .header("id", id)
            .header("ack", ack);
        for (k, v) in extra {
            f = f.header(*k, *v);
        }
        self.request(f);
    }

    pub fn subscribe(&mut self, dest: &str, id: &str, ack: &str) {
        self.subscribe_with(dest, id, ack, &[]);
    }

    /// ACK a 1.2 MESSAGE by its `ack` header.
    pub fn ack(&mut self, msg: &Frame) {
        let id = msg.must("ack").to_string();
        self.send_frame(&Frame::new("ACK").header("id", id));
    }

    /// NACK a 1.2 MESSAGE by its `ack` header.
    pub fn nack(&mut self, msg: &Frame) {
        let id = msg.must("ack").to_string();
        self.send_frame(&Frame::new("NACK").header("id", id));
    }

    /// DISCONNECT with a receipt; expects the RECEIPT and then the close.
    pub fn disconnect(mut self) {
        let id = self.receipt_id();
        self.send_frame(&Frame::new("DISCONNECT").header("receipt", id.clone()));
        self.await_receipt(&id);
        // MESSAGEs that arrived before the RECEIPT are legitimate; nothing may follow it.
        self.pending.clear();
        self.expect_closed(WAIT);
    }

    /// Closes the socket without DISCONNECT, like a crashed client.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    // --- connecting ---------------------------------------------------------------------------

    /// CONNECT for `version` ("1.0" sends no accept-version) and expect CONNECTED at it.
    pub fn connect(&mut self, version: &str) -> Frame {
        let mut f = Frame::new("CONNECT");
        if version != "1.0" {
            f = f
                .header("accept-version", version)
                .header("host", "localhost")
                .header("heart-beat", "0,0");
        }
        self.send_frame(&f);
        let connected = self.expect("CONNECTED", WAIT);
        let got = connected.get("version").unwrap_or("1.0");
        assert_eq!(got, version, "negotiated version: {connected:?}");
        connected
    }

    /// Sends `frame` (a CONNECT or STOMP) and returns the broker's answer; a CONNECTED sets
    /// the version for header decoding.
    pub fn handshake(&mut self, frame: &Frame) -> Frame {
        self.send_frame(frame);
        self.expect_frame(WAIT)
    }

    // --- receiving ----------------------------------------------------------------------------

    /// One read from the socket into the buffer.
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
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.buf.truncate(len);
                Fill::Idle
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                self.buf.truncate(len);
                Fill::Idle
            }
            Err(_) => {
                // A reset is how a close looks when we had unread data or had written after it.
                self.buf.truncate(len);
                self.closed = true;
                Fill::Closed
            }
        }
    }

    /// Takes the next whole frame from what has been read so far, without reading.
    pub fn next_buffered(&mut self) -> Option<Frame> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        match parse(&self.buf[self.start..], &self.version) {
            Ok(Parsed::Incomplete { eols, consumed }) => {
                self.eols += eols;
                self.start += consumed;
                None
            }
            Ok(Parsed::Frame {
                frame,
                eols,
                consumed,
            }) => {
                self.eols += eols;
                self.start += consumed;
                if frame.command == "CONNECTED" {
                    self.version = frame.get("version").unwrap_or("1.0").to_string();
                }
                if self.history.len() < 50 {
                    let mut short = format!("{frame:?}");
                    short.truncate(200);
                    self.history.push(short);
                }
                Some(frame)
            }
            Err(why) => panic!(
                "broker sent an invalid frame: {why}\nframes before it: {:?}",
                self.history
            ),
        }
    }

    /// The next frame, or None if the connection closed or `timeout` passed first.
    pub fn try_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.next_buffered() {
                return Some(f);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let Fill::Closed = self.fill() {
                return self.next_buffered();
            }
        }
    }

    /// The next frame; fails the test if the connection closes or `timeout` passes.
    pub fn expect_frame(&mut self, timeout: Duration) -> Frame {
        match self.try_frame(timeout) {
            Some(f) => f,
            None => panic!(
                "expected a frame within {timeout:?}, but the connection {}; \
                 unparsed bytes: {:?}; frames received before: {:?}",
                if self.closed {
                    "was closed"
                } else {
                    "stayed silent"
                },
                String::from_utf8_lossy(&self.buf[self.start..]),
                self.history
            ),
        }
    }

    /// The next frame, which must be `command`.
    pub fn expect(&mut self, command: &str, timeout: Duration) -> Frame {
        let f = self.expect_frame(timeout);
        assert_eq!(
            f.command, command,
            "expected a {command} frame, got {f:?}; frames before: {:?}",
            self.history
        );
        f
    }

    pub fn expect_message(&mut self) -> Frame {
        self.expect("MESSAGE", WAIT)
    }

    /// The next MESSAGE, which must have body `body`.
    pub fn expect_body(&mut self, body: &str) -> Frame {
        let m = self.expect_message();
        assert_eq!(m.text(), body, "unexpected MESSAGE {m:?}");
        m
    }

    /// Waits for RECEIPT `id`. MESSAGE frames before it are kept for later; any other frame
    /// (an ERROR, a wrong receipt-id) fails the test.
    pub fn await_receipt(&mut self, id: &str) {
        let deadline = Instant::now() + WAIT;
        let mut held = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f =
                match self.try_frame(left) {
                    Some(f) => f,
                    None => {
                        panic!(
                    "expected RECEIPT receipt-id:{id} within {WAIT:?}, but the connection {}; \
                     frames received: {:?}",
                    if self.closed { "was closed" } else { "stayed silent" },
                    self.history
                )
                    }
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
    pub fn expect_silence(&mut self, dur: Duration) {
        if let Some(f) = self.pending.pop_front() {
            panic!("expected no frame, but one was already waiting: {f:?}");
        }
        let deadline = Instant::now() + dur;
        while Instant::now() < deadline {
            if let Some(f) = self.next_buffered() {
                panic!("expected no frame for {dur:?}, got {f:?}");
            }
            if let Fill::Closed = self.fill() {
                if let Some(f) = self.next_buffered() {
                    panic!("expected no frame for {dur:?}, got {f:?} and then a close");
                }
                panic!("expected the connection to stay open for {dur:?}, but it was closed");
            }
        }
        if let Some(f) = self.next_buffered() {
            panic!("expected no frame for {dur:?}, got {f:?}");
        }
    }

    /// Asserts that the broker closes the connection within `timeout` without sending a frame
    /// (heart-beat EOLs are fine).
    pub fn expect_closed(&mut self, timeout: Duration) {
        if let Some(f) = self.try_frame(timeout) {
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
    pub fn expect_closed_maybe_error(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        let first = self.try_frame(timeout);
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
        if let Some(f) = self.try_frame(WAIT) {
            panic!("after {e:?} the broker must close the connection, but it sent {f:?}");
        }
        assert!(
            self.closed,
            "after {e:?} the broker must close the connection; it stayed open for {WAIT:?}"
        );
        e
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Asserts that `text` mentions one of `words` (case-insensitive): the most a test pins down
/// about an ERROR's `message`.
pub fn assert_mentions(frame: &Frame, words: &[&str]) {
    let text = format!("{} {}", frame.get("message").unwrap_or(""), frame.text()).to_lowercase();
    assert!(
        words.iter().any(|w| text.contains(&w.to_lowercase())),
        "expected the ERROR to mention one of {words:?}: {frame:?}"
    );
}
