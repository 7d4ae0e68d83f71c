//! The one broker launcher of the tests: a `stompbox serve` child process of the built binary
//! on its own temp dir, started, crashed, stopped, signalled and started again on the same
//! data dir, and always killed and reaped on drop.
//!
//! A broker binds port 0 at each start (its STOMP and admin addresses come from its stdout
//! lines) unless it is on fixed ports, which a master/standby pair needs (a standby opens its
//! STOMP port only when it takes over, so a client must know it before). For the protocol
//! suite a broker can also be the external one named by `STOMP_ADDR`, which is never spawned.
//! [`super::pair`] builds master/standby pairs on the same launcher.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::client::Client;
use super::net::free_ports;
use super::WAIT;

/// How long a broker may take to print its listening line (recovery included).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop (SIGTERM) may take before the test fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Shards of the brokers we start: more than one, so cross-shard paths are exercised, and
/// fixed, so results do not depend on the machine.
const SHARDS: &str = "2";

/// The environment variable naming an already-running broker for the protocol suite to test
/// instead of our binary.
pub const STOMP_ADDR: &str = "STOMP_ADDR";

/// A `stompbox serve` child process: `data_dir` is its store, `config` its config file, `log`
/// its stderr across restarts (in the temp dir, kept with the data dir when a test fails).
pub struct Broker {
    /// A short name for messages and the log file ("broker", "a", "b", "standby").
    name: String,
    /// The temp dir when this broker owns it (a pair owns the one its brokers share).
    owned_dir: Option<tempfile::TempDir>,
    dir: PathBuf,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    log: PathBuf,
    /// STOMP and admin ports kept across restarts; None: port 0 at each start.
    fixed: Option<(SocketAddr, SocketAddr)>,
    /// The broker at `STOMP_ADDR`: never spawned, no log, no process to look at.
    external: Option<SocketAddr>,
    child: Option<Child>,
    /// The STOMP address of the current process, once it printed its listening line.
    stomp: Option<SocketAddr>,
    /// What the current process printed on stdout.
    stdout: Arc<Stdout>,
    starts: u32,
    /// Whether we sent SIGSTOP without SIGCONT since.
    stopped: bool,
}

/// Stdout lines of one process, as a reader thread collects them.
#[derive(Default)]
struct Stdout {
    lines: Mutex<(Vec<String>, bool)>,
    more: Condvar,
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
        let (dir, data_dir, config) = prepare_dir("stompbox-test-", config);
        let mut broker = Broker::in_dir("broker", dir.path(), &data_dir, config.as_deref());
        broker.owned_dir = Some(dir);
        broker
    }

    /// A broker not started yet, named `name`, on `data_dir` with the config file `config`;
    /// its log goes to `dir`, which the caller keeps (a [`super::pair::Pair`] does).
    pub fn in_dir(name: &str, dir: &Path, data_dir: &Path, config: Option<&Path>) -> Broker {
        Broker {
            name: name.to_string(),
            owned_dir: None,
            dir: dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            config: config.map(Path::to_path_buf),
            log: dir.join(format!("{name}.log")),
            fixed: None,
            external: None,
            child: None,
            stomp: None,
            stdout: Arc::default(),
            starts: 0,
            stopped: false,
        }
    }

    /// This broker on STOMP and admin ports chosen now and kept across restarts.
    pub fn on_fixed_ports(self) -> Broker {
        let ports = free_ports(2);
        self.on_ports(ports[0], ports[1])
    }

    /// This broker on these STOMP and admin ports (from `free_ports`), kept across restarts:
    /// for brokers whose configs name each other before either runs.
    pub fn on_ports(mut self, stomp: u16, admin: u16) -> Broker {
        self.fixed = Some((
            SocketAddr::from(([127, 0, 0, 1], stomp)),
            SocketAddr::from(([127, 0, 0, 1], admin)),
        ));
        self
    }

    /// Rewrites this broker's config file with `f` (takes effect at its next start), as an
    /// operator edits it between restarts.
    pub fn rewrite_config(&self, f: impl FnOnce(String) -> String) {
        let path = self.config.as_deref().expect("a broker with a config file");
        let text = std::fs::read_to_string(path).expect("read the config");
        std::fs::write(path, f(text)).expect("write the config");
    }

    /// A second broker, not started, on this one's data dir and config, its log beside this
    /// one's: a standby, as an operator would start one.
    pub fn beside(&self, name: &str) -> Broker {
        Broker::in_dir(name, &self.dir, &self.data_dir, self.config.as_deref())
    }

    // --- the protocol suite: our broker or the one at STOMP_ADDR -------------------------------

    /// The broker the protocol suite tests: the one at `STOMP_ADDR` if set, else ours with its
    /// default configuration.
    pub fn under_test() -> Broker {
        match external_addr() {
            Some(addr) => {
                let mut broker = Broker::new("");
                broker.external = Some(addr);
                broker
            }
            None => Broker::start(),
        }
    }

    /// Our broker with `config` as its config file, for a test that needs our config (a limit,
    /// a timeout) and so cannot apply to another broker. `None` (after printing the declared
    /// reason) when `STOMP_ADDR` is set. The test must be declared in
    /// `protocol-tests/not-applicable.txt` with that reason ([`super::target::not_applicable`]),
    /// which is checked against every target: the external run excludes it by name.
    #[track_caller]
    pub fn own_with_config(test: &str, config: &str) -> Option<Broker> {
        let why = super::target::not_applicable();
        if Broker::is_external() {
            eprintln!("not applicable to the broker at {STOMP_ADDR}: {test}: {why}");
            return None;
        }
        Some(Broker::start_with_config(config))
    }

    /// Our own broker (not `STOMP_ADDR`), for tests of process behaviour such as SIGTERM;
    /// declared like [`Broker::own_with_config`].
    #[track_caller]
    pub fn own(test: &str) -> Option<Broker> {
        Broker::own_with_config(test, "")
    }

    /// Ours with `config` as its config file, or the broker at `STOMP_ADDR` as it is: for a test
    /// whose config only lets our broker do what the test asks of any broker (accept 100 ms
    /// heart-beats, say), so the test holds for an external broker without it.
    pub fn under_test_with_config(config: &str) -> Broker {
        match Broker::is_external() {
            true => Broker::under_test(),
            false => Broker::start_with_config(config),
        }
    }

    /// True when the protocol suite runs against an external broker.
    pub fn is_external() -> bool {
        external_addr().is_some()
    }

    // --- life cycle -----------------------------------------------------------------------------

    /// Starts a process on this data dir and config without waiting for anything (a standby
    /// prints no listening line until it takes over). Panics if one is running already.
    pub fn spawn(&mut self) {
        assert!(
            self.external.is_none(),
            "an external broker is not ours to start"
        );
        assert!(self.child.is_none(), "{}: already running", self.name);
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open broker log");
        let _ = writeln!(log, "===== harness: start #{} =====", self.starts);
        let (bind, admin) = match self.fixed {
            Some((stomp, admin)) => (stomp.to_string(), admin.to_string()),
            None => ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string()),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stompbox"));
        cmd.arg("serve")
            .args(["--bind", &bind, "--admin-bind", &admin, "--shards", SHARDS])
            // WebSocket is on by default at 127.0.0.1:61614: tests that run brokers in
            // parallel each take a free port.
            .args(["--ws-bind", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data_dir);
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
        let out = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        self.stomp = None;
        self.stopped = false;
        // A fresh collector per process: the reader of a killed one may still be draining.
        self.stdout = Arc::default();
        let stdout = self.stdout.clone();
        // Reads stdout to its end, so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lock(&stdout.lines).0.push(line.trim().to_string());
                stdout.more.notify_all();
            }
            lock(&stdout.lines).1 = true;
            stdout.more.notify_all();
        });
    }

    /// Starts a process on this data dir and config and waits until it serves (its listening
    /// line). Panics if one is running already.
    pub fn start_again(&mut self) {
        self.spawn();
        let line = self.wait_line("stompbox listening ", START_TIMEOUT);
        let stomp = field(&line, "stomp=")
            .unwrap_or_else(|| panic!("no stomp= in listening line {line:?}"));
        self.stomp = Some(stomp);
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

    /// Crashes the broker: SIGKILL, then reaps it. Returns the instant just before the
    /// signal. Its clients see their connections close.
    pub fn kill9(&mut self) -> Instant {
        let mut child = self.child.take().expect("kill9: the broker is not running");
        let at = Instant::now();
        child.kill().expect("kill -9 broker");
        child.wait().expect("reap broker");
        self.stomp = None;
        at
    }

    /// Sends `signal` (`libc::SIGTERM`, `SIGSTOP`, `SIGCONT`) to the running process.
    pub fn signal(&mut self, signal: libc::c_int) {
        let pid = self.pid().expect("signal: the broker is not running");
        send_signal(pid, signal);
        match signal {
            libc::SIGSTOP => self.stopped = true,
            libc::SIGCONT => self.stopped = false,
            _ => {}
        }
    }

    /// Graceful stop: SIGTERM, then waits for the exit and returns its status. Panics if the
    /// broker does not exit within a deadline.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(STOP_TIMEOUT).0
    }

    /// Waits for the process to exit by itself (or by a signal sent before); returns its
    /// status and when it was seen exited. Panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .expect("wait_exit: the broker is not running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let at = Instant::now();
                self.child = None;
                self.stomp = None;
                return (status, at);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}\n--- broker log ---\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// True while a broker process is running (started and not yet seen to exit).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The child's pid, while it runs (None for an external broker).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its short name, as in its log file's name and failure messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    // --- what it printed ------------------------------------------------------------------------

    /// Waits for a stdout line of the current process starting with `prefix` (also among the
    /// lines printed already) and returns it. Fails the test at `timeout`, or at once if the
    /// process ended without printing it.
    #[track_caller]
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut lines = lock(&self.stdout.lines);
        loop {
            if let Some(l) = lines.0.iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if lines.1 || left.is_zero() {
                let (seen, ended) = (lines.0.clone(), lines.1);
                drop(lines);
                panic!(
                    "{}: no stdout line starting with {prefix:?} within {timeout:?} (stdout \
                     ended: {ended}; lines: {seen:?})\n--- broker log ---\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            lines = self
                .stdout
                .more
                .wait_timeout(lines, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The lines the current process printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.stdout.lines).0.clone()
    }

    // --- where to reach it ----------------------------------------------------------------------

    /// Where clients connect: the fixed or `STOMP_ADDR` address, or the one the running
    /// process printed.
    pub fn addr(&self) -> SocketAddr {
        if let Some(addr) = self.external.or(self.fixed.map(|(stomp, _)| stomp)) {
            return addr;
        }
        assert!(self.child.is_some(), "{} is not running", self.name);
        self.stomp.expect("set when started")
    }

    /// The address of the running process's `kind` listener (`ws`, `ssl`, `wss`) from its
    /// listening line (`stompbox listening stomp=… ws=…`).
    pub fn listener(&self, kind: &str) -> SocketAddr {
        let line = self.wait_line("stompbox listening ", START_TIMEOUT);
        field(&line, &format!("{kind}="))
            .unwrap_or_else(|| panic!("{}: no {kind}= in {line:?}", self.name))
    }

    /// The admin HTTP address: the fixed one, or the one the running process prints right
    /// after its listening line (waited for). Panics for an external broker.
    #[track_caller]
    pub fn admin_addr(&self) -> SocketAddr {
        assert!(
            self.external.is_none(),
            "an external broker's admin endpoint is unknown"
        );
        if let Some((_, admin)) = self.fixed {
            return admin;
        }
        let line = self.wait_line("stompbox admin ", START_TIMEOUT);
        field(&line, "http=").unwrap_or_else(|| panic!("no http= in admin line {line:?}"))
    }

    /// `GET path` on our own broker's admin endpoint: the body of a 200 answer, or None for an
    /// external broker or any other answer.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        if self.external.is_some() {
            return None;
        }
        let r = super::http::try_get(self.admin_addr(), path, WAIT)?;
        (r.status == 200).then_some(r.body)
    }

    /// A TCP connection to the broker that has sent nothing yet.
    pub fn raw(&self) -> Client {
        Client::open(self.addr())
    }

    /// A connection that completed CONNECT/CONNECTED at `version` ("1.0", "1.1", "1.2")
    /// without heart-beats.
    #[track_caller]
    pub fn connect(&self, version: &str) -> Client {
        self.connect_with(version, &[])
    }

    /// Like [`Broker::connect`], with `extra` CONNECT headers (e.g. `client-id`).
    #[track_caller]
    pub fn connect_with(&self, version: &str, extra: &[(&str, &str)]) -> Client {
        let mut c = self.raw();
        c.connect_with(version, extra);
        c
    }

    // --- its files ------------------------------------------------------------------------------

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
        super::store::open_read_only(&self.db_path())
    }

    /// The whole log (stderr of every process started so far).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last few KiB of the log (all starts), for failure messages.
    pub fn log_tail(&self) -> String {
        if self.external.is_some() {
            return "(external broker: no log)".into();
        }
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let from = bytes.len().saturating_sub(8 * 1024);
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    // --- the process, as the kernel sees it -----------------------------------------------------

    /// The process's memory (None for an external broker, or where `/proc` is missing).
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

    /// How many file descriptors the process holds open (None as for [`Broker::memory`]).
    pub fn open_fds(&self) -> Option<usize> {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", self.pid()?)).ok()?;
        Some(dir.count())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.stopped {
                // SIGKILL ends a stopped process too; resuming it first spares a traced one.
                send_signal(child.id(), libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && self.external.is_none() && self.starts > 0 {
            eprintln!(
                "--- {} log (tail) ---\n{}\n--- end; data dir kept at {} ---",
                self.name,
                self.log_tail(),
                self.data_dir.display()
            );
            if let Some(dir) = &mut self.owned_dir {
                dir.disable_cleanup(true);
            }
        }
    }
}

/// A process's memory as the kernel reports it in `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident (the peak since the process started).
    pub peak_kib: u64,
}

/// A temp dir named `prefix…` with an empty data dir `data/` and, unless `config` is blank,
/// `config` as `stompbox.toml`: the temp dir, the data dir and the config file's path.
pub(crate) fn prepare_dir(
    prefix: &str,
    config: &str,
) -> (tempfile::TempDir, PathBuf, Option<PathBuf>) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("create data dir");
    let config = (!config.trim().is_empty()).then(|| {
        let path = dir.path().join("stompbox.toml");
        std::fs::write(&path, config).expect("write config");
        path
    });
    (dir, data_dir, config)
}

fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) only sends a signal; `pid` is our own child, not yet reaped.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// The address after `key` in a `stompbox listening stomp=… ` or `stompbox admin http=…` line.
fn field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key))?
        .parse()
        .ok()
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
