//! Limits per source address, checked when a connection is accepted (after its PROXY header,
//! so behind a load balancer the address is the real client's): live connections from one
//! address (`limits.max_connections_per_address`), and new connections — each one CONNECT
//! attempt — per second from one address (`limits.max_connects_per_second_per_address`) and
//! from all together (`limits.max_connects_per_second`). 0 turns each off (the default: ActiveMQ
//! and RabbitMQ have no such limits either; docs/security.md says when to set them).
//!
//! Rates are token buckets that hold one second's worth, so a client may open its allowance
//! at once and then that many a second. At most [`MAX_ADDRESSES`] addresses are tracked for
//! rates (a full bucket is forgotten first: it is what a new one would be), so addresses
//! without end cannot grow memory; live connections are counted per address only while
//! there are some, which `limits.max_connections` bounds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::limits::Limits;

/// Addresses whose connect rate is tracked at most.
pub const MAX_ADDRESSES: usize = 65_536;

/// Which limit a new connection would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// `max_connections_per_address` (the limit).
    Connections(usize),
    /// `max_connects_per_second_per_address`.
    AddressRate(u32),
    /// `max_connects_per_second`.
    TotalRate(u32),
}

impl Breach {
    /// The config key, for the ERROR and the log.
    pub fn key(self) -> &'static str {
        match self {
            Breach::Connections(_) => "max_connections_per_address",
            Breach::AddressRate(_) => "max_connects_per_second_per_address",
            Breach::TotalRate(_) => "max_connects_per_second",
        }
    }

    pub fn limit(self) -> usize {
        match self {
            Breach::Connections(n) => n,
            Breach::AddressRate(n) | Breach::TotalRate(n) => n as usize,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: rate as f64,
            at: now,
        }
    }

    /// Refills for the time passed; true when it is full (nothing to remember).
    fn refill(&mut self, rate: u32, now: Instant) -> bool {
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + passed * rate as f64).min(rate as f64);
        self.at = now;
        self.tokens >= rate as f64
    }

    fn take(&mut self) -> bool {
        let ok = self.tokens >= 1.0;
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<IpAddr, usize>,
    rates: HashMap<IpAddr, Bucket>,
    total: Option<Bucket>,
}

/// The per-address accounts, shared by every shard.
#[derive(Debug)]
pub struct AddressLimits {
    per_address: usize,
    rate_per_address: u32,
    rate_total: u32,
    inner: Mutex<Inner>,
}

/// A live connection's place in its address's count; given back on drop.
#[derive(Debug)]
pub struct AddressSlot {
    limits: Arc<AddressLimits>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut inner = self.limits.lock();
        if let Some(n) = inner.live.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.live.remove(&self.ip);
            }
        }
    }
}

impl AddressLimits {
    pub fn new(limits: &Limits) -> Arc<AddressLimits> {
        Arc::new(AddressLimits {
            per_address: limits.max_connections_per_address,
            rate_per_address: limits.max_connects_per_second_per_address,
            rate_total: limits.max_connects_per_second,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `ip` at `now`, or says which limit it would break. The
    /// slot (when connections per address are counted) must live as long as the connection.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Option<AddressSlot>, Breach> {
        if self.per_address == 0 && self.rate_per_address == 0 && self.rate_total == 0 {
            return Ok(None);
        }
        let mut inner = self.lock();
        if self.per_address > 0 && inner.live.get(&ip).copied().unwrap_or(0) >= self.per_address {
            return Err(Breach::Connections(self.per_address));
        }
        // Both buckets are checked before either is drawn from, so a refusal costs nothing.
        if self.rate_total > 0 {
            let rate = self.rate_total;
            let total = inner.total.get_or_insert_with(|| Bucket::full(rate, now));
            total.refill(rate, now);
            if total.tokens < 1.0 {
                return Err(Breach::TotalRate(rate));
            }
        }
        if self.rate_per_address > 0 {
            let rate = self.rate_per_address;
            if inner.rates.len() >= MAX_ADDRESSES && !inner.rates.contains_key(&ip) {
                inner.rates.retain(|_, b| !b.refill(rate, now));
                if inner.rates.len() >= MAX_ADDRESSES {
                    // Every tracked address is mid-burst: forget the one that waited longest.
                    let oldest = inner
                        .rates
                        .iter()
                        .min_by_key(|(_, b)| b.at)
                        .map(|(a, _)| *a);
                    if let Some(oldest) = oldest {
                        inner.rates.remove(&oldest);
                    }
                }
            }
            let bucket = inner
                .rates
                .entry(ip)
                .or_insert_with(|| Bucket::full(rate, now));
            bucket.refill(rate, now);
            if !bucket.take() {
                return Err(Breach::AddressRate(rate));
            }
        }
        if let Some(total) = inner.total.as_mut() {
            total.take();
        }
        if self.per_address == 0 {
            return Ok(None);
        }
        *inner.live.entry(ip).or_insert(0) += 1;
        Ok(Some(AddressSlot {
            limits: self.clone(),
            ip,
        }))
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.live.len(), inner.rates.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(per: usize, rate: u32, total: u32) -> Arc<AddressLimits> {
        AddressLimits::new(&Limits {
            max_connections_per_address: per,
            max_connects_per_second_per_address: rate,
            max_connects_per_second: total,
            ..Limits::default()
        })
    }

    #[test]
    fn live_connections_per_address_are_capped_and_given_back() {
        let l = limits(2, 0, 0);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        let s1 = l.admit(a, now).unwrap();
        let _s2 = l.admit(a, now).unwrap();
        assert_eq!(l.admit(a, now).unwrap_err(), Breach::Connections(2));
        assert!(l.admit(b, now).is_ok(), "another address is not held");
        drop(s1);
        assert!(l.admit(a, now).is_ok());
        assert!(limits(0, 0, 0).admit(a, now).unwrap().is_none());
    }

    #[test]
    fn connect_rates_per_address_and_in_total() {
        let l = limits(0, 3, 5);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.admit(a, now).is_ok());
        }
        assert_eq!(l.admit(a, now).unwrap_err(), Breach::AddressRate(3));
        // A third of a second later, one more.
        assert!(l.admit(a, now + Duration::from_millis(340)).is_ok());
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.admit(b, now + Duration::from_millis(340)).is_ok());
        // The total bucket (5 a second) is spent: 4 + 1 taken, refilled ~1.7.
        assert!(l.admit(b, now + Duration::from_millis(340)).is_ok());
        assert_eq!(
            l.admit(b, now + Duration::from_millis(340)).unwrap_err(),
            Breach::TotalRate(5)
        );
    }

    #[test]
    fn endless_addresses_do_not_grow_memory() {
        let l = limits(0, 10, 0);
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 500) {
            let _ = l.admit(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(l.tracked().1 <= MAX_ADDRESSES);
    }
}
