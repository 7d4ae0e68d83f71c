//! The shared harness of the integration tests: start, crash and restart a `stompbox serve`
//! child on its own temp data dir, a small blocking raw STOMP client over `std::net`, and
//! `eventually(timeout, || ...)`.
//!
//! Nothing here uses the broker's crate: tests speak bytes to the built binary, so they test
//! the process a user runs (including crash recovery), not the library. Every read has a
//! deadline, so a broker that stops answering fails a test with what it did send instead of
//! hanging the suite. Every child is killed and reaped on drop; when a test panics, the tail
//! of the broker's log is printed and its data dir is kept for a post-mortem.

// Each integration test crate compiles this module and uses only part of it; unused helpers
// in one crate are used by another.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a test waits for something the broker must do. Generous: tests run in parallel
/// on two shared cores, against a debug build.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a test listens to check that the broker sends nothing. A slow broker can make
/// such a check pass wrongly, never fail wrongly.
pub const QUIET: Duration = Duration::from_millis(300);

/// How long a broker may take to print its listening line (recovery included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop (SIGTERM) may take before the test fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Granularity of blocking reads: no read blocks longer, so deadlines hold.
const POLL: Duration = Duration::from_millis(20);

/// Shards of the brokers we start: more than one, so cross-shard paths are exercised, and
/// fixed, so results do not depend on the machine.
const CORES: &str = "2";

// ---------------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------------

/// A `stompbox serve` child process on its own temp dir (`dir/data` is the data dir,
/// `dir/stompbox.toml` the config, `dir/broker.log` its stderr across restarts). The data dir
/// outlives the process, so a test can kill it (`kill9`), stop it (`terminate`) and start a
/// new process on the same store (`start_again`). Each start gets a fresh port.
pub struct Broker {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
    addr: Option<SocketAddr>,
    /// What the current process printed on stdout, line by line.
    stdout: Arc<Mutex<Vec<String>>>,
    starts: u32,
}

impl Broker {
    /// A broker with the default configuration on a fresh data dir.
    pub fn start() -> Broker {
        Broker::start_with_config("")
    }

    /// A broker with `config` (TOML) as its config file on a fresh data dir. `bind`,
    /// `data_dir` and `shards` are set by flags, which override the file.
    pub fn start_with_config(config: &str) -> Broker {
        let mut broker = Broker::new(config);
        broker.start_again();
        broker
    }

    /// A broker that has not been started yet (prepare its data dir, then `start_again`).
    pub fn new(config: &str) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("stompbox-test-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let config = (!config.trim().is_empty()).then(|| {
            let path = dir.path().join("stompbox.toml");
            std::fs::write(&path, config).expect("write config");
            path
        });
        let log = dir.path().join("broker.log");
        Broker {
            dir,
            data_dir,
            config,
            log,
            child: None,
            addr: None,
            stdout: Arc::default(),
            starts: 0,
        }
    }

    /// Starts a broker process on this data dir and config and waits for its listening line.
    /// Panics if one is running already.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: the broker is running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open broker log");
        let _ = writeln!(log, "===== harness: start #{} =====", self.starts);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stompbox"));
        cmd.arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--shards")
            .arg(CORES)
            .arg("--admin-bind")
            .arg("127.0.0.1:0");
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawn stompbox serve");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        self.stdout = Arc::default();
        let printed = self.stdout.clone();
        // Reads stdout to its end, so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            let mut tx = Some(tx);
            while matches!(lines.read_line(&mut line), Ok(n) if n > 0) {
                let text = line.trim().to_string();
                if let Some(rest) = text.strip_prefix("stompbox listening ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.to_string());
                    }
                }
                printed.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                line.clear();
            }
        });
        let listening = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "broker did not print `stompbox listening stomp=...` within \
                     {START_TIMEOUT:?} (exit status: {status:?})\n--- broker log ---\n{}",
                    self.log_tail()
                );
            }
        };
        let stomp = listening
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("stomp="))
            .unwrap_or_else(|| panic!("no stomp= in listening line {listening:?}"));
        self.addr = Some(
            stomp
                .parse()
                .unwrap_or_else(|e| panic!("bad stomp address {stomp:?}: {e}")),
        );
    }

    /// Where clients connect. Panics if the broker is not running.
    pub fn addr(&self) -> SocketAddr {
        assert!(self.child.is_some(), "the broker is not running");
        self.addr.expect("set when started")
    }

    /// The admin HTTP address (`stompbox admin http=ADDR` on stdout), once printed.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        let lines = self.stdout();
        lines.iter().find_map(|l| {
            l.strip_prefix("stompbox admin ")?
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("http="))?
                .parse()
                .ok()
        })
    }

    /// The lines the current broker process printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The data dir (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The store file, `data_dir/stompbox.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("stompbox.db")
    }

    /// A read-only connection to the store. Open it while the broker runs: a read-only
    /// connection cannot recover a WAL that a killed broker left behind.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", self.db_path().display()));
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy_timeout");
        conn
    }

    /// The child's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while a broker process is running (started and not yet seen to exit).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A TCP connection to the broker that has sent nothing yet.
    pub fn raw(&self) -> Client {
        Client::open(self.addr())
    }

    /// A connection that completed CONNECT/CONNECTED at `version` ("1.0", "1.1", "1.2").
    pub fn connect(&self, version: &str) -> Client {
        self.connect_with(version, &[])
    }

    /// Like [`Broker::connect`], with `extra` CONNECT headers (e.g. `client-id`).
    pub fn connect_with(&self, version: &str, extra: &[(&str, &str)]) -> Client {
        let mut c = self.raw();
        c.connect(version, extra);
        c
    }

    /// Crashes the broker: SIGKILL, then reaps it. Its clients see their connections close.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: the broker is not running");
        let _ = child.kill();
        let _ = child.wait();
        self.addr = None;
    }

    /// Graceful stop: SIGTERM, then waits for the exit and returns its status. Panics if the
    /// broker does not exit within a deadline (and kills it).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("terminate: the broker is not running");
        self.addr = None;
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "kill -TERM {pid}: {sent:?}"
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker did not exit within {STOP_TIMEOUT:?} of SIGTERM\n--- broker log ---\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// kill -9, then a new process on the same data dir.
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// SIGTERM (which must exit 0), then a new process on the same data dir.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "graceful stop exited with {status:?}\n--- broker log ---\n{}",
            self.log_tail()
        );
        self.start_again();
    }

    /// The last few KiB of the broker's log (all starts).
    pub fn log_tail(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let from = bytes.len().saturating_sub(8 * 1024);
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "--- broker log (tail) ---\n{}\n--- end; data dir kept at {} ---",
                self.log_tail(),
                self.data_dir.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

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

/// Milliseconds since the epoch (the unit of the `expires` header).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A name unique within this test process, for destinations, subscriptions and client ids.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// A STOMP frame. Headers are plain text: the client escapes them for its version when it
/// sends, and frames it reads have them decoded.
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

    /// Appends a header (repeated names are kept, in order).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends each of `headers`.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Frame {
        for (k, v) in headers {
            self.headers.push((k.to_string(), v.to_string()));
        }
        self
    }

    pub fn body(mut self, body: impl AsRef<[u8]>) -> Frame {
        self.body = body.as_ref().to_vec();
        self
    }

    /// The first value of header `name` (the one the spec says receivers use).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or a panic that shows the frame.
    #[track_caller]
    pub fn must(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("{} frame has no `{name}` header: {self:?}", self.command))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The wire form for `version`: header names and values escaped (except in CONNECT and
    /// STOMP frames and in 1.0), a `content-length` added when the body has a NUL.
    pub fn encode(&self, version: &str) -> Vec<u8> {
        let escaped = version != "1.0" && self.command != "CONNECT" && self.command != "STOMP";
        let mut out = Vec::with_capacity(64 + self.body.len());
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        for (k, v) in &self.headers {
            if escaped {
                out.extend_from_slice(escape(k, version).as_bytes());
                out.push(b':');
                out.extend_from_slice(escape(v, version).as_bytes());
            } else {
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                out.extend_from_slice(v.as_bytes());
            }
            out.push(b'\n');
        }
        if self.body.contains(&0) && self.get("content-length").is_none() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.command)?;
        for (k, v) in &self.headers {
            write!(f, " {k}:{v:?}")?;
        }
        let body = String::from_utf8_lossy(&self.body);
        if body.chars().count() > 200 {
            let short: String = body.chars().take(200).collect();
            write!(f, " body({} bytes)={short:?}...", self.body.len())
        } else {
            write!(f, " body={body:?}")
        }
    }
}

fn escape(text: &str, version: &str) -> String {
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
            other => return Err(format!("undefined escape \\{other:?} in {raw:?}")),
        }
    }
    Ok(out)
}

/// Takes one frame off the front of `buf` (heart-beat EOLs before it are skipped): the frame
/// and the bytes consumed, or None when more bytes are needed.
fn parse(buf: &[u8], version: &str) -> Result<Option<(Frame, usize)>, String> {
    let start = buf
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(buf.len());
    // The header block ends at the first empty line (lines end in LF or CRLF).
    let mut lines = Vec::new();
    let mut pos = start;
    let body_start = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
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
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| format!("not UTF-8: {b:?}"));
    let command = text(lines[0])?;
    let decode = command != "CONNECTED";
    let mut headers = Vec::with_capacity(lines.len() - 1);
    let mut content_length = None;
    for line in &lines[1..] {
        let line = text(line)?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without ':' in {command}: {line:?}"))?;
        let (name, value) = if decode {
            (unescape(name, version)?, unescape(value, version)?)
        } else {
            (name.to_string(), value.to_string())
        };
        if name == "content-length" && content_length.is_none() {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad content-length {value:?}"))?,
            );
        }
        headers.push((name, value));
    }
    let (body, end) = match content_length {
        Some(n) => {
            if buf.len() < body_start + n + 1 {
                return Ok(None);
            }
            if buf[body_start + n] != 0 {
                return Err(format!(
                    "{command} body of content-length {n} not followed by NUL"
                ));
            }
            (buf[body_start..body_start + n].to_vec(), body_start + n + 1)
        }
        None => match buf[body_start..].iter().position(|&b| b == 0) {
            None => return Ok(None),
            Some(n) => (buf[body_start..body_start + n].to_vec(), body_start + n + 1),
        },
    };
    Ok(Some((
        Frame {
            command,
            headers,
            body,
        },
        end,
    )))
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

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

/// A blocking raw STOMP connection. Panicking calls (`expect_*`, `request`, `receive`) are
/// for the test's main line; `try_*` calls return errors, for clients that must survive a
/// broker crash. MESSAGE frames that arrive while waiting for a RECEIPT are kept and returned
/// first by later reads.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The negotiated version ("1.0" until CONNECTED says otherwise).
    pub version: String,
    pending: VecDeque<Frame>,
    /// The last frames received (short form), for failure messages.
    history: VecDeque<String>,
    closed: bool,
    next_receipt: u64,
}

impl Client {
    /// A TCP connection to `addr` that has sent nothing yet.
    pub fn open(addr: SocketAddr) -> Client {
        Client::try_open(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Like [`Client::open`], returning the error.
    pub fn try_open(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, WAIT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            version: "1.0".into(),
            pending: VecDeque::new(),
            history: VecDeque::new(),
            closed: false,
            next_receipt: 0,
        })
    }

    // --- connecting ---------------------------------------------------------------------------

    /// CONNECT at `version` with `extra` headers (no heart-beats) and expect CONNECTED.
    #[track_caller]
    pub fn connect(&mut self, version: &str, extra: &[(&str, &str)]) -> Frame {
        let f = self.handshake(version, extra);
        assert_eq!(f.command, "CONNECTED", "CONNECT was answered with {f:?}");
        assert_eq!(
            f.get("version").unwrap_or("1.0"),
            version,
            "negotiated version: {f:?}"
        );
        f
    }

    /// Sends CONNECT at `version` with `extra` headers and returns the broker's answer,
    /// whatever it is (CONNECTED or ERROR).
    #[track_caller]
    pub fn handshake(&mut self, version: &str, extra: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new("CONNECT");
        if version != "1.0" {
            f = f
                .header("accept-version", version)
                .header("host", "localhost")
                .header("heart-beat", "0,0");
        }
        self.send_frame(&f.headers(extra));
        self.expect_frame(WAIT)
    }

    // --- sending ------------------------------------------------------------------------------

    /// Writes raw bytes, returning the error (for clients that outlive a broker crash).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `frame`, escaped for the connection's version, returning the error.
    pub fn try_send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        let bytes = frame.encode(&self.version);
        self.try_send_raw(&bytes)
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

    /// SEND `body` to `dest` with `extra` headers and wait for the RECEIPT.
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

    /// ACK `msg` the way its connection's version says (1.2 `id` = `ack` header, 1.1
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

    /// DISCONNECT with a receipt; waits for the RECEIPT (MESSAGEs before it are dropped).
    #[track_caller]
    pub fn disconnect(mut self) {
        let id = self.receipt_id();
        self.send_frame(&Frame::new("DISCONNECT").header("receipt", id.clone()));
        self.await_receipt(&id, WAIT);
    }

    /// Closes the socket without DISCONNECT, like a crashed client.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    // --- receiving ----------------------------------------------------------------------------

    /// The next frame within `timeout`, or why there is none.
    pub fn try_frame(&mut self, timeout: Duration) -> Result<Frame, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(f);
            }
            match parse(&self.buf, &self.version) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    if frame.command == "CONNECTED" {
                        self.version = frame.get("version").unwrap_or("1.0").to_string();
                    }
                    if self.history.len() == 20 {
                        self.history.pop_front();
                    }
                    let mut short = format!("{frame:?}");
                    short.truncate(160);
                    self.history.push_back(short);
                    return Ok(frame);
                }
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

    /// One read (at most `POLL` long) into the buffer.
    fn fill(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // A reset is how a close looks when we had unread data or wrote after it.
            Err(_) => self.closed = true,
        }
    }

    /// The next frame; fails the test if none arrives within `timeout`.
    #[track_caller]
    pub fn expect_frame(&mut self, timeout: Duration) -> Frame {
        match self.try_frame(timeout) {
            Ok(f) => f,
            Err(e) => panic!(
                "expected a frame within {timeout:?}, got {e:?}; last frames received: {:?}",
                self.history
            ),
        }
    }

    /// The next frame, which must be a `command`.
    #[track_caller]
    pub fn expect(&mut self, command: &str, timeout: Duration) -> Frame {
        let f = self.expect_frame(timeout);
        assert_eq!(f.command, command, "expected {command}, got {f:?}");
        f
    }

    /// The next MESSAGE (within [`WAIT`]).
    #[track_caller]
    pub fn expect_message(&mut self) -> Frame {
        self.expect("MESSAGE", WAIT)
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
                "RECEIPT" if f.get("receipt-id") == Some(id) => {
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

    /// Asserts that no frame arrives for `dur`.
    #[track_caller]
    pub fn expect_silence(&mut self, dur: Duration) {
        match self.try_frame(dur) {
            Err(ReadError::Timeout) => {}
            Ok(f) => panic!("expected no frame for {dur:?}, got {f:?}"),
            Err(e) => panic!("expected the connection to stay quiet for {dur:?}, got {e:?}"),
        }
    }

    /// True once the broker closed the connection (as seen by a read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A SEND frame of `body` to `dest` with `extra` headers.
pub fn send_frame(dest: &str, body: &str, extra: &[(&str, &str)]) -> Frame {
    Frame::new("SEND")
        .header("destination", dest)
        .headers(extra)
        .body(body)
}

/// The bodies of `messages`, as text.
pub fn bodies(messages: &[Frame]) -> Vec<String> {
    messages.iter().map(Frame::text).collect()
}
