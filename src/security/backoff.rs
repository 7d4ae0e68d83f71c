//! Per-address back-off after failed CONNECTs: after `after` failures in a row, an address
//! is refused without a password check for a wait that doubles with each further failure
//! (up to `max`). A success clears it; an address quiet for `max` starts afresh. At most
//! [`MAX_ADDRESSES`] addresses are remembered, the least recently failing going first, so
//! attempts from endless addresses cannot grow memory without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses remembered at most (about 64 bytes each).
pub const MAX_ADDRESSES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    until: Option<Instant>,
}

#[derive(Debug)]
pub struct Backoff {
    after: u32,
    initial: Duration,
    max: Duration,
    entries: HashMap<IpAddr, Entry>,
}

impl Backoff {
    pub fn new(after: u32, initial: Duration, max: Duration) -> Backoff {
        Backoff {
            after: after.max(1),
            initial,
            max: max.max(initial),
            entries: HashMap::new(),
        }
    }

    /// Whether `ip` must wait now.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.entries
            .get(&ip)
            .and_then(|e| e.until)
            .is_some_and(|until| now < until)
    }

    /// Records a failure; returns the wait it starts, if any.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.entries.len() >= MAX_ADDRESSES && !self.entries.contains_key(&ip) {
            self.evict(now);
        }
        let (after, initial, max) = (self.after, self.initial, self.max);
        let e = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            last: now,
            until: None,
        });
        if now.duration_since(e.last) > max && e.until.is_none_or(|u| u <= now) {
            e.failures = 0;
        }
        e.failures += 1;
        e.last = now;
        if e.failures < after {
            return None;
        }
        let doublings = (e.failures - after).min(30);
        let wait = initial.saturating_mul(1 << doublings).min(max);
        e.until = Some(now + wait);
        Some(wait)
    }

    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }

    /// Makes room: forgets addresses no longer waiting, else the least recently failing.
    fn evict(&mut self, now: Instant) {
        self.entries.retain(|_, e| e.until.is_some_and(|u| u > now));
        if self.entries.len() >= MAX_ADDRESSES {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(ip, _)| *ip)
            {
                self.entries.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_a_success_clears_them() {
        let s = Duration::from_secs(1);
        let mut b = Backoff::new(3, s, 8 * s);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        assert_eq!(b.failed(ip, t), None);
        assert_eq!(b.failed(ip, t), None);
        assert!(!b.blocked(ip, t));
        assert_eq!(b.failed(ip, t), Some(s));
        assert!(b.blocked(ip, t));
        assert!(!b.blocked(ip, t + s));
        assert_eq!(b.failed(ip, t + s), Some(2 * s));
        assert_eq!(b.failed(ip, t + 3 * s), Some(4 * s));
        assert_eq!(b.failed(ip, t + 7 * s), Some(8 * s));
        assert_eq!(b.failed(ip, t + 15 * s), Some(8 * s));
        b.succeeded(ip);
        assert!(!b.blocked(ip, t + 15 * s));
        // Quiet for longer than the cap: counting starts again.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        b.failed(other, t);
        b.failed(other, t);
        assert_eq!(b.failed(other, t + 20 * s), None);
    }

    #[test]
    fn memory_is_bounded_whatever_the_addresses() {
        let mut b = Backoff::new(5, Duration::from_secs(1), Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 1000) {
            b.failed(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(b.len() <= MAX_ADDRESSES);
    }
}
