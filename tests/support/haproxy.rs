//! HAProxy in front of a [`Pair`], as `config/ha-pair/haproxy.cfg` puts it (installed by
//! `make ha-deps`; a test that needs it fails, saying so, when it is missing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::Client;
use super::net::free_ports;
use super::pair::{health, Pair, WAIT};

/// HAProxy in the foreground (`-db`) as a child process, killed on drop.
pub struct Haproxy {
    /// The frontend clients connect to.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in front of `pair` with this test's ports. `send_proxy` adds
    /// `send-proxy` to the servers (PROXY v1 headers). Returns once it passes a CONNECT on.
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
            a_stomp = a.addr(),
            a_admin = a.admin_addr().port(),
            b_stomp = b.addr(),
            b_admin = b.admin_addr().port(),
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
        let standby = if health(a.admin_addr()).is_some_and(|h| h.status == 200) {
            "b"
        } else {
            "a"
        };
        let down = format!("Server stompbox/{standby} is DOWN");
        let start = Instant::now();
        while !h.log_text().contains(&down)
            || Client::try_connect(addr, &[], Duration::from_secs(2)).is_err()
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
