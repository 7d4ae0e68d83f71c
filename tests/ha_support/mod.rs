//! The harness of the high-availability tests (`tests/ha.rs`): a master/slave pair of
//! `stompbox serve` child processes on one temp data dir with fixed ports (so a client knows
//! both addresses before a failover), signals (kill -9, SIGTERM, SIGSTOP/SIGCONT), a small
//! blocking raw STOMP client, failover producer and consumer threads, the admin endpoint over
//! raw HTTP, and HAProxy as a child process.
//!
//! Nothing here uses the broker's crate: the tests exercise the process an operator runs. Every
//! wait has a deadline, and every child (broker or HAProxy) is resumed, killed and reaped on
//! drop; when a test panics, the tail of each broker's log is printed first.

// Used by tests/ha.rs and tests/store_failure.rs, each of which uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a test waits for something that must happen. Generous: a debug build on two
/// shared cores, next to other test binaries' brokers.
pub const WAIT: Duration = Duration::from_secs(20);

/// How long a broker may take to print its first stdout line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Granularity of blocking reads and polls: nothing blocks longer, so deadlines hold.
const POLL: Duration = Duration::from_millis(20);

/// Shards per broker: fixed, so results do not depend on the machine, and small, since a
/// test runs two brokers (and HAProxy) on two cores.
const CORES: &str = "2";

/// The HA tests start several processes each and some measure time; running them one at a
/// time keeps them from starving each other on two cores. Hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `n` distinct free loopback ports, each checked by binding it and released together. A
/// broker pair needs ports known in advance, since a standby opens its STOMP port only on
/// takeover. They are picked below the kernel's ephemeral range when it leaves room (port 0
/// would pick inside it): the tests make thousands of outgoing connections, and one of them
/// could otherwise take a standby's port as its local port before the standby binds it.
pub fn free_ports(n: usize) -> Vec<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        })
        .unwrap_or(0);
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    if low > 12_000 {
        let span = low - 10_000;
        let mut x = seed();
        for _ in 0..1000 {
            if held.len() == n {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = 10_000 + (x % u64::from(span)) as u16;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                held.push(l);
            }
        }
    }
    while held.len() < n {
        held.push(TcpListener::bind("127.0.0.1:0").expect("bind port 0"));
    }
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A different seed for every call, in this and in concurrent test processes.
fn seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x | 1
}

/// Polls `check` every few milliseconds until it is true; panics with `what` after
/// `timeout`. Returns how long it took.
pub fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Median and maximum of `samples` (not empty).
pub fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    };
    (median, s[n - 1])
}

// ---------------------------------------------------------------------------------------------
// Brokers
// ---------------------------------------------------------------------------------------------

/// One `stompbox serve` process with fixed STOMP and admin ports on a (shared) data dir. It
/// can be killed, signalled and started again on the same ports. Stderr (the log) goes to
/// `log`, appended across restarts; stdout lines are collected for `wait_line`.
pub struct Broker {
    /// A short name for messages ("a", "b").
    pub name: String,
    pub stomp: SocketAddr,
    pub admin: SocketAddr,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    /// Every stdout line of the current process, in order.
    seen: Vec<String>,
}

impl Broker {
    /// Starts a broker process (it becomes master or standby on its own).
    pub fn spawn(name: &str, dir: &Path, data_dir: &Path, config: Option<&Path>) -> Broker {
        let ports = free_ports(2);
        let mut b = Broker {
            name: name.to_string(),
            stomp: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            admin: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            data_dir: data_dir.to_path_buf(),
            config: config.map(Path::to_path_buf),
            log: dir.join(format!("broker-{name}.log")),
            child: None,
            lines: mpsc::channel().1,
            seen: Vec::new(),
        };
        b.start();
        b
    }

    /// Starts the process again (same ports, data dir and config) after it exited or was
    /// killed.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "broker {} is still running",
            self.name
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stompbox"));
        cmd.arg("serve")
            .arg("--bind")
            .arg(self.stomp.to_string())
            .arg("--admin-bind")
            .arg(self.admin.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--shards")
            .arg(CORES);
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
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.lines = rx;
        self.seen.clear();
    }

    /// The process id of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is running").id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for a stdout line starting with `prefix` (also among lines already read).
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(POLL)) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => panic!(
                    "broker {}: no stdout line starting with {prefix:?} within {timeout:?} \
                     (lines so far: {:?})\n{}",
                    self.name,
                    self.seen,
                    self.log_tail()
                ),
            }
        }
    }

    /// Every stdout line read so far from the current process (after draining new ones).
    pub fn lines(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    /// Waits until this broker answers `/health` with 200 (it serves).
    pub fn wait_master(&mut self, timeout: Duration) -> Health {
        let mut last = None;
        let deadline = Instant::now() + timeout;
        loop {
            match health(self.admin) {
                Some(h) if h.status == 200 => return h,
                other => last = other.or(last),
            }
            assert!(
                Instant::now() < deadline,
                "broker {} did not become master within {timeout:?} (last /health: {last:?})\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until this broker answers `/health` with 503 (standby or stepping down).
    pub fn wait_not_master(&mut self, timeout: Duration) -> Health {
        let mut last = None;
        let deadline = Instant::now() + timeout;
        loop {
            match health(self.admin) {
                Some(h) if h.status == 503 => return h,
                other => last = other.or(last),
            }
            assert!(
                Instant::now() < deadline,
                "broker {} still serving after {timeout:?} (last /health: {last:?})\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(POLL);
        }
    }

    /// kill -9. Returns the instant just before the signal; the process is reaped.
    pub fn kill9(&mut self) -> Instant {
        let mut child = self.child.take().expect("broker is running");
        let at = Instant::now();
        child.kill().expect("kill -9 broker");
        child.wait().expect("reap broker");
        at
    }

    /// Sends `signal` (a `kill -s` name: TERM, STOP, CONT) to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits for the process to exit; returns its status and when it was seen exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("broker is running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let at = Instant::now();
                self.child = None;
                return (status, at);
            }
            assert!(
                Instant::now() < deadline,
                "broker {} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The whole log (stderr of every process started so far).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- tail of {} ---\n{tail}\n---", self.log.display())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process still dies of SIGKILL, but resume it anyway in case it is
            // being traced or the kill is ignored for any reason.
            send_signal(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// Two brokers on one data dir. `a` is started first and waited for as master; then `b`
/// starts and is waited for as standby.
pub struct Pair {
    pub brokers: [Broker; 2],
    dir: tempfile::TempDir,
}

impl Pair {
    /// Starts the pair with `config` (TOML without `bind`/`data_dir`, which come as flags).
    pub fn start(config: Option<&str>) -> Pair {
        let (dir, data, config_path) = Pair::prepare(config);
        let mut a = Broker::spawn("a", dir.path(), &data, config_path.as_deref());
        a.wait_line("stompbox listening", START_TIMEOUT);
        a.wait_master(WAIT);
        let mut b = Broker::spawn("b", dir.path(), &data, config_path.as_deref());
        b.wait_line("stompbox admin", START_TIMEOUT);
        b.wait_not_master(WAIT);
        Pair {
            brokers: [a, b],
            dir,
        }
    }

    /// Starts both brokers at the same moment (as an init system would) and waits until
    /// one of them serves.
    pub fn start_together(config: Option<&str>) -> Pair {
        let (dir, data, config_path) = Pair::prepare(config);
        let a = Broker::spawn("a", dir.path(), &data, config_path.as_deref());
        let b = Broker::spawn("b", dir.path(), &data, config_path.as_deref());
        let pair = Pair {
            brokers: [a, b],
            dir,
        };
        let [a, b] = &pair.brokers;
        eventually(START_TIMEOUT, "one broker of the pair to serve", || {
            [a, b]
                .iter()
                .any(|x| health(x.admin).is_some_and(|h| h.status == 200))
        });
        pair
    }

    fn prepare(config: Option<&str>) -> (tempfile::TempDir, PathBuf, Option<PathBuf>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let config_path = config.map(|text| {
            let p = dir.path().join("stompbox.toml");
            std::fs::write(&p, text).expect("write config");
            p
        });
        (dir, data, config_path)
    }

    /// Both STOMP addresses, `a` first (what a failover client is given).
    pub fn stomp_addrs(&self) -> Vec<SocketAddr> {
        self.brokers.iter().map(|b| b.stomp).collect()
    }

    /// The store file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("stompbox.db")
    }

    /// The data dir both brokers share.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir (configs, logs, HAProxy files go here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens the store read-only, for checks.
    pub fn open_store(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open store read-only");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }
}

// ---------------------------------------------------------------------------------------------
// Admin HTTP
// ---------------------------------------------------------------------------------------------

/// An admin response: status code and JSON body.
#[derive(Debug, Clone)]
pub struct Health {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Health {
    /// `role` from the body.
    pub fn role(&self) -> &str {
        self.body["role"].as_str().unwrap_or("")
    }

    /// `epoch` from the body.
    pub fn epoch(&self) -> Option<u64> {
        self.body["epoch"].as_u64()
    }
}

/// `GET /health`; None if the admin endpoint does not answer.
pub fn health(admin: SocketAddr) -> Option<Health> {
    http_get(admin, "/health")
}

/// `GET path` over a fresh connection (HTTP/1.1, `Connection: close`).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<Health> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    Some(Health { status, body })
}

// ---------------------------------------------------------------------------------------------
// Raw STOMP
// ---------------------------------------------------------------------------------------------

/// A STOMP frame as read from the wire (header values unescaped).
#[derive(Debug, Clone)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} {:?}",
            self.command,
            self.headers,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// A blocking STOMP 1.2 connection.
pub struct Stomp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Stomp {
    /// Opens a TCP connection (no STOMP yet).
    pub fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Stomp> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(Stomp {
            stream,
            buf: Vec::new(),
        })
    }

    /// Opens a connection and completes CONNECT/CONNECTED within `timeout`. An ERROR frame
    /// or a close before CONNECTED is an error.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Stomp> {
        let deadline = Instant::now() + timeout;
        let mut s = Stomp::open(addr, timeout)?;
        s.write_connect()?;
        s.expect_connected(deadline)?;
        Ok(s)
    }

    /// Writes a CONNECT frame (STOMP 1.2, no heart-beats).
    pub fn write_connect(&mut self) -> io::Result<()> {
        self.send(
            "CONNECT",
            &[
                ("accept-version", "1.2"),
                ("host", "/"),
                ("heart-beat", "0,0"),
            ],
            b"",
        )
    }

    /// Reads until CONNECTED.
    pub fn expect_connected(&mut self, deadline: Instant) -> io::Result<()> {
        let f = self.read_frame(deadline)?;
        if f.command == "CONNECTED" {
            Ok(())
        } else {
            Err(io::Error::other(format!("expected CONNECTED, got {f}")))
        }
    }

    /// Writes raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes a frame (header values escaped per STOMP 1.2).
    pub fn send(&mut self, command: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<()> {
        self.write_raw(&encode(command, headers, body))
    }

    /// Reads the next frame, skipping heart-beat EOLs. `TimedOut` at the deadline;
    /// `UnexpectedEof` if the peer closed.
    pub fn read_frame(&mut self, deadline: Instant) -> io::Result<Frame> {
        loop {
            if let Some(f) = parse(&mut self.buf)? {
                return Ok(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "no complete frame before the deadline",
                ));
            }
            self.stream.set_read_timeout(Some(left.min(POLL)))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "connection closed",
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Encodes a frame.
pub fn encode(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + body.len());
    out.extend_from_slice(command.as_bytes());
    out.push(b'\n');
    for (k, v) in headers {
        out.extend_from_slice(escape(k).as_bytes());
        out.push(b':');
        out.extend_from_slice(escape(v).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ':' => out.push_str("\\c"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('c') => out.push(':'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Takes one complete frame off the front of `buf`, if there is one.
fn parse(buf: &mut Vec<u8>) -> io::Result<Option<Frame>> {
    let start = buf
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(buf.len());
    buf.drain(..start);
    let Some(head_end) = find(buf, b"\n\n")
        .map(|i| (i, 2))
        .or_else(|| find(buf, b"\r\n\r\n").map(|i| (i, 4)))
    else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end.0]).into_owned();
    let mut lines = head.lines();
    let command = lines
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let l = l.trim_end_matches('\r');
            l.split_once(':').map(|(k, v)| (unescape(k), unescape(v)))
        })
        .collect();
    let body_start = head_end.0 + head_end.1;
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body_end = match length {
        Some(n) if buf.len() > body_start + n => {
            if buf[body_start + n] != 0 {
                return Err(io::Error::other("frame body not followed by NUL"));
            }
            body_start + n
        }
        Some(_) => return Ok(None),
        None => match buf[body_start..].iter().position(|&b| b == 0) {
            Some(i) => body_start + i,
            None => return Ok(None),
        },
    };
    let body = buf[body_start..body_end].to_vec();
    buf.drain(..=body_end);
    Ok(Some(Frame {
        command,
        headers,
        body,
    }))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects to the first address (trying each in turn, starting at `*next`) that completes
/// CONNECT; leaves `*next` on the one that worked. None if none did.
fn connect_any(addrs: &[SocketAddr], next: &mut usize) -> Option<Stomp> {
    for _ in 0..addrs.len() {
        let addr = addrs[*next % addrs.len()];
        if let Ok(s) = Stomp::connect(addr, Duration::from_secs(2)) {
            return Some(s);
        }
        *next = (*next + 1) % addrs.len();
    }
    None
}

/// Measures from `since` to the first successful STOMP CONNECT on `addr`, trying every
/// millisecond (a closed port refuses at once). Panics after `timeout`.
pub fn first_connect_after(addr: SocketAddr, since: Instant, timeout: Duration) -> Duration {
    loop {
        if Stomp::connect(addr, Duration::from_secs(1)).is_ok() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < timeout,
            "no successful CONNECT on {addr} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------------
// Failover producer and consumer
// ---------------------------------------------------------------------------------------------

/// What a failover client did, shared with the test while it runs.
#[derive(Default)]
pub struct Progress {
    /// Producer: ids whose persistent SEND got a RECEIPT. Consumer: id → deliveries.
    counts: Mutex<BTreeMap<u64, u32>>,
    /// Connections made (the first one included).
    pub connects: AtomicU64,
}

impl Progress {
    /// Distinct ids so far.
    pub fn distinct(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A copy of id → count.
    pub fn counts(&self) -> BTreeMap<u64, u32> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, id: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default() += 1;
    }
}

/// A thread running a failover client until told to stop.
pub struct Client {
    pub progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Client {
    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("client thread panicked");
        }
    }

    /// Waits until `progress.distinct()` reaches `n`.
    pub fn wait_distinct(&self, n: usize, timeout: Duration, what: &str) {
        eventually(timeout, what, || self.progress.distinct() >= n);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A failover producer: sends persistent messages `"{id}"` (0, 1, 2, …) to `destination`,
/// one at a time, each with a receipt. On any failure (refused, closed, ERROR, no RECEIPT in
/// time) it reconnects to the next address and resends the message that had no RECEIPT.
pub fn spawn_producer(addrs: Vec<SocketAddr>, destination: &str) -> Client {
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s, dest) = (progress.clone(), stop.clone(), destination.to_string());
    let handle = std::thread::spawn(move || {
        let mut next = 0;
        let mut conn: Option<Stomp> = None;
        let mut id: u64 = 0;
        while !s.load(Ordering::SeqCst) {
            let Some(c) = conn.as_mut() else {
                conn = connect_any(&addrs, &mut next);
                match conn {
                    Some(_) => {
                        p.connects.fetch_add(1, Ordering::SeqCst);
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
                continue;
            };
            let receipt = format!("r-{id}");
            let body = id.to_string();
            let sent = c.send(
                "SEND",
                &[
                    ("destination", &dest),
                    ("persistent", "true"),
                    ("receipt", &receipt),
                ],
                body.as_bytes(),
            );
            let ok =
                sent.is_ok() && wait_receipt(c, &receipt, Instant::now() + Duration::from_secs(5));
            if ok {
                p.record(id);
                id += 1;
                // A little pacing leaves the two cores to the brokers.
                std::thread::sleep(Duration::from_millis(1));
            } else {
                conn = None;
            }
        }
    });
    Client {
        progress,
        stop,
        handle: Some(handle),
    }
}

fn wait_receipt(c: &mut Stomp, receipt: &str, deadline: Instant) -> bool {
    loop {
        match c.read_frame(deadline) {
            Ok(f) if f.command == "RECEIPT" && f.header("receipt-id") == Some(receipt) => {
                return true
            }
            Ok(f) if f.command == "ERROR" => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// A failover consumer: subscribes to `destination` with `ack:client-individual` and ACKs
/// each MESSAGE after recording its id (so a failover between the two may redeliver it: a
/// duplicate). On any failure it reconnects to the next address and subscribes again.
pub fn spawn_consumer(addrs: Vec<SocketAddr>, destination: &str) -> Client {
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s, dest) = (progress.clone(), stop.clone(), destination.to_string());
    let handle = std::thread::spawn(move || {
        let mut next = 0;
        let mut conn: Option<Stomp> = None;
        while !s.load(Ordering::SeqCst) {
            let Some(c) = conn.as_mut() else {
                conn = connect_any(&addrs, &mut next).and_then(|mut c| {
                    c.send(
                        "SUBSCRIBE",
                        &[
                            ("id", "0"),
                            ("destination", &dest),
                            ("ack", "client-individual"),
                        ],
                        b"",
                    )
                    .ok()?;
                    Some(c)
                });
                match conn {
                    Some(_) => {
                        p.connects.fetch_add(1, Ordering::SeqCst);
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
                continue;
            };
            match c.read_frame(Instant::now() + Duration::from_millis(100)) {
                Ok(f) if f.command == "MESSAGE" => {
                    let id = String::from_utf8_lossy(&f.body).parse::<u64>();
                    let ack = f.header("ack").unwrap_or("").to_string();
                    if let Ok(id) = id {
                        p.record(id);
                    }
                    if c.send("ACK", &[("id", &ack)], b"").is_err() {
                        conn = None;
                    }
                }
                Ok(f) if f.command == "ERROR" => conn = None,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(_) => conn = None,
            }
        }
    });
    Client {
        progress,
        stop,
        handle: Some(handle),
    }
}

/// Checks that every id the producer got a RECEIPT for was consumed, waiting up to `timeout`
/// for stragglers. Returns the number of duplicate deliveries.
pub fn assert_all_consumed(producer: &Client, consumer: &Client, timeout: Duration) -> u64 {
    let receipted: BTreeSet<u64> = producer.progress.counts().into_keys().collect();
    let deadline = Instant::now() + timeout;
    loop {
        let consumed = consumer.progress.counts();
        let missing: Vec<u64> = receipted
            .iter()
            .filter(|id| !consumed.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() {
            return consumed.values().map(|&n| u64::from(n - 1)).sum();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} receipted messages never consumed (lost): first ones {:?}",
            missing.len(),
            receipted.len(),
            &missing[..missing.len().min(20)]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------------------------

/// HAProxy in the foreground (`-db`) as a child process, killed on drop.
pub struct Haproxy {
    /// The frontend clients connect to.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in front of `pair` as `config/ha-pair/haproxy.cfg` does, with this
    /// test's ports. `send_proxy` adds `send-proxy` to the servers (PROXY v1 headers). Fails
    /// the test, saying how to install it, when `haproxy` is not installed.
    pub fn start(pair: &Pair, send_proxy: bool) -> Haproxy {
        let installed = Command::new("haproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "haproxy is not installed: run `make ha-deps` (installs Debian's haproxy); \
             `make test` does this first"
        );
        let port = free_ports(1)[0];
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let [a, b] = &pair.brokers;
        let proxy = if send_proxy { " send-proxy" } else { "" };
        let cfg = format!(
            "global\n    maxconn 1000\n\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n    timeout server 1h\n\n\
             frontend stomp\n    bind {addr}\n    default_backend stompbox\n\n\
             backend stompbox\n    option httpchk GET /health\n    http-check expect status 200\n    \
             default-server inter 500ms fall 1 rise 1 on-marked-down shutdown-sessions{proxy}\n    \
             server a {a_stomp} check port {a_admin}\n    server b {b_stomp} check port {b_admin}\n",
            a_stomp = a.stomp,
            a_admin = a.admin.port(),
            b_stomp = b.stomp,
            b_admin = b.admin.port(),
        );
        let cfg_path = pair.dir().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
        let log = pair.dir().join("haproxy.log");
        let out = std::fs::File::create(&log).expect("haproxy log");
        let err = out.try_clone().expect("haproxy log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn haproxy");
        let mut h = Haproxy { addr, child, log };
        // HAProxy starts with every server up, so until its first check marks the standby
        // down it sends some connections there (refused, then closed). Ready once the
        // standby is down and a CONNECT goes through.
        let standby = if health(a.admin).is_some_and(|h| h.status == 200) {
            "b"
        } else {
            "a"
        };
        let down = format!("Server stompbox/{standby} is DOWN");
        let start = Instant::now();
        while !h.log_text().contains(&down) || Stomp::connect(addr, Duration::from_secs(2)).is_err()
        {
            if let Ok(Some(status)) = h.child.try_wait() {
                panic!("haproxy exited at start ({status}):\n{}", h.log_text());
            }
            assert!(
                start.elapsed() < WAIT,
                "no CONNECT through haproxy within {WAIT:?}:\n{}",
                h.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }

    /// HAProxy's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- haproxy output ---\n{}\n---", self.log_text());
        }
    }
}
