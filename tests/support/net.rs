//! Ports and randomness: free loopback ports known before a broker binds them, whether a port
//! refuses connections, and a reproducible pseudo-random sequence.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `n` distinct free loopback ports, each checked by binding it and released together. A
/// broker pair needs ports known in advance, since a standby opens its STOMP port only on
/// takeover. They are picked below the kernel's ephemeral range when it leaves room (port 0
/// would pick inside it): the tests make thousands of outgoing connections, and one of them
/// could otherwise take a standby's port as its local port before the standby binds it.
///
/// A port is handed out once per test process: a port given to one test may stay unbound for
/// seconds (a standby's, or a broker's that starts after its peers), and a test running in
/// parallel must not be given it meanwhile.
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
        let span = u64::from(low - 10_000);
        for x in pseudo_random(seed()).take(1000) {
            if held.len() == n {
                break;
            }
            let port = 10_000 + (x % span) as u16;
            if given().contains(&port) {
                continue;
            }
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                held.push(l);
            }
        }
    }
    while held.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        if !given().contains(&l.local_addr().expect("local addr").port()) {
            held.push(l);
        }
    }
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect();
    given().extend(&ports);
    ports
}

/// The ports [`free_ports`] handed out in this process.
fn given() -> std::sync::MutexGuard<'static, HashSet<u16>> {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    GIVEN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// True when a TCP connect to `addr` is refused (nothing listens there), as opposed to
/// accepted or timed out.
pub fn refuses(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

/// A deterministic pseudo-random sequence (xorshift) from `seed`, so failures reproduce.
pub fn pseudo_random(seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed.max(1);
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(x >> 11)
    })
}

/// A different seed for every call, in this and in concurrent test processes.
fn seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
