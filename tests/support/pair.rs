//! A master/standby pair: two [`Broker`]s on one temp data dir (one SQLite file) and fixed
//! ports, so a client knows both addresses before a failover; their roles as `/health` tells
//! them; and the lock that runs pair tests one at a time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::broker::{prepare_dir, Broker, START_TIMEOUT};
use super::eventually;
use super::http::try_get;

/// How long a pair test waits for something that must happen: longer than [`super::WAIT`],
/// since a pair is two brokers (and maybe HAProxy) on two shared cores.
pub const WAIT: Duration = Duration::from_secs(20);

/// How long a `/health` poll may take: a stopped broker must not hold a poll loop for long.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Pair tests start several processes each and some measure time; running them one at a time
/// keeps them from starving each other on two cores. Hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Two brokers on one data dir. Dropping the pair kills both, then removes the dir.
pub struct Pair {
    pub brokers: [Broker; 2],
    // Declared after `brokers`, so it is removed once they are gone.
    dir: tempfile::TempDir,
}

impl Pair {
    /// Starts `a` and waits for it to serve as master, then `b` and waits for it to stand by.
    /// `config` is TOML without `bind` and `data_dir`, which come as flags.
    pub fn start(config: Option<&str>) -> Pair {
        Pair::prepare(config).start_in_turn()
    }

    /// Starts both brokers at the same moment (as an init system would) and waits until one
    /// of them serves.
    pub fn start_together(config: Option<&str>) -> Pair {
        let mut pair = Pair::prepare(config);
        pair.brokers[0].spawn();
        pair.brokers[1].spawn();
        let [a, b] = &pair.brokers;
        eventually(START_TIMEOUT, || {
            let serving = [a, b]
                .iter()
                .any(|x| health(x.admin_addr()).is_some_and(|h| h.status == 200));
            serving
                .then_some(())
                .ok_or("no broker of the pair serves yet")
        });
        pair
    }

    /// Like [`Pair::start`], on these `(stomp, admin)` ports (from `free_ports`), for pairs
    /// whose configs name each other's ports before either starts (a network of pairs).
    pub fn start_on_ports(config: Option<&str>, ports: [(u16, u16); 2]) -> Pair {
        Pair::prepare_on(config, Some(ports)).start_in_turn()
    }

    fn start_in_turn(mut self) -> Pair {
        let [a, b] = &mut self.brokers;
        a.spawn();
        a.wait_line("stompbox listening", START_TIMEOUT);
        a.wait_master(WAIT);
        b.spawn();
        b.wait_line("stompbox admin", START_TIMEOUT);
        b.wait_not_master(WAIT);
        self
    }

    fn prepare(config: Option<&str>) -> Pair {
        Pair::prepare_on(config, None)
    }

    fn prepare_on(config: Option<&str>, ports: Option<[(u16, u16); 2]>) -> Pair {
        let (dir, data, config) = prepare_dir("stompbox-pair-", config.unwrap_or(""));
        let broker = |name, i: usize| {
            let b = Broker::in_dir(name, dir.path(), &data, config.as_deref());
            match ports {
                Some(p) => b.on_ports(p[i].0, p[i].1),
                None => b.on_fixed_ports(),
            }
        };
        Pair {
            brokers: [broker("a", 0), broker("b", 1)],
            dir,
        }
    }

    /// Both STOMP addresses, `a` first (what a failover client is given).
    pub fn stomp_addrs(&self) -> Vec<SocketAddr> {
        self.brokers.iter().map(Broker::addr).collect()
    }

    /// The data dir both brokers share.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir (config, logs, HAProxy files go here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A read-only connection to the store both brokers share.
    pub fn db(&self) -> rusqlite::Connection {
        self.brokers[0].db()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
        }
    }
}

/// What the admin endpoint answered: its status code and its JSON body (`null` if it was not
/// JSON).
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
    admin_json(admin, "/health")
}

/// `GET path` on an admin endpoint; None if it does not answer.
pub fn admin_json(admin: SocketAddr, path: &str) -> Option<Health> {
    let r = try_get(admin, path, HEALTH_TIMEOUT)?;
    let body = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
    Some(Health {
        status: r.status,
        body,
    })
}

impl Broker {
    /// Waits until this broker answers `/health` with 200 (it serves as master).
    #[track_caller]
    pub fn wait_master(&self, timeout: Duration) -> Health {
        self.wait_health(200, "become master", timeout)
    }

    /// Waits until this broker answers `/health` with 503 (standby or stepping down).
    #[track_caller]
    pub fn wait_not_master(&self, timeout: Duration) -> Health {
        self.wait_health(503, "stop serving", timeout)
    }

    #[track_caller]
    fn wait_health(&self, status: u16, what: &str, timeout: Duration) -> Health {
        let mut last = None;
        let deadline = Instant::now() + timeout;
        loop {
            match health(self.admin_addr()) {
                Some(h) if h.status == status => return h,
                other => last = other.or(last),
            }
            assert!(
                Instant::now() < deadline,
                "{} did not {what} within {timeout:?} (last /health: {last:?})\n{}",
                self.name(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
