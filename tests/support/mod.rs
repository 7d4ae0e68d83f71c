//! The one test harness of `tests/` and `protocol-tests/`: start, crash, stop and restart a
//! `stompbox serve` child of the built binary on its own temp data dir, speak raw STOMP to it,
//! read its admin endpoint and its SQLite file, and wait with `eventually(timeout, || ...)`.
//!
//! | module | what |
//! |---|---|
//! | [`client`] | [`Client`], the raw blocking STOMP client: send bytes or frames, read frames with deadlines |
//! | [`frame`] | [`Frame`], its wire form and parser |
//! | [`broker`] | [`Broker`], the launcher: temp dir, config, ports, kill -9, SIGTERM, restart, `/proc` |
//! | [`pair`] | a master/standby [`pair::Pair`] on one SQLite file, on top of [`Broker`] |
//! | [`failover`] | failover producer and consumer threads for a pair |
//! | [`haproxy`] | HAProxy in front of a pair |
//! | [`http`] | the admin endpoint over raw HTTP; `/metrics` samples |
//! | [`store`] | read-only SQLite, one-number queries, the `sqlite3` shell |
//! | [`net`] | free ports, refused ports, a reproducible random sequence |
//! | [`network`] | networks of brokers: `[[network]]` configs, ports chosen up front, stored rows and counters |
//! | [`target`] | which broker the protocol suite tests ([`target::Target`]), and the tests that need ours |
//!
//! Nothing here uses the broker's crate: tests speak bytes to the process a user runs
//! (including crash recovery), not the library. Every read has a deadline, so a broker that
//! stops answering fails a test with what it did send instead of hanging the suite. Every
//! child is killed and reaped on drop; when a test panics, the tail of the broker's log is
//! printed and its data dir is kept for a post-mortem.
//!
//! Each test target includes this module (`mod support;` in `tests/`, `#[path]` from
//! `protocol-tests/main.rs`) and uses a part of it.

// Every test target compiles its own copy of this module and uses only part of it: what one
// target leaves unused another uses, so dead code is checked across targets, not in each.
#![allow(dead_code)]

pub mod broker;
pub mod client;
pub mod failover;
pub mod frame;
pub mod haproxy;
pub mod http;
pub mod net;
pub mod network;
pub mod pair;
pub mod store;
pub mod target;
pub mod tls;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// The names most tests use, at the top; a target that uses none of some is fine.
#[allow(unused_imports)]
pub use {
    broker::{Broker, Memory},
    client::{assert_mentions, Client, ConnectError, Fill, ReadError},
    frame::{bodies, connect_frame, escape, send_frame, Frame},
    target::{target, Target},
};

/// How long a test waits for something the broker must do. Generous: tests run in parallel
/// on two shared cores, against a debug build.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a test listens to check that the broker sends nothing. A slow broker can make
/// such a check pass wrongly, never fail wrongly.
pub const QUIET: Duration = Duration::from_millis(300);

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

/// A name unique to this test run, for destinations, subscriptions, transactions and client
/// ids, so tests never share state, even on one external broker across runs.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static RUN: OnceLock<u64> = OnceLock::new();
    let run = *RUN.get_or_init(|| (now_ms() ^ u64::from(std::process::id())) % 1_000_000_007);
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
