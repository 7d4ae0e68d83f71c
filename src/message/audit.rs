//! The network duplicate filter (ActiveMQ's message audit): what a destination's owner shard
//! remembers of the forwarded messages it accepted, so that a copy a bridge sends again
//! (its RECEIPT was lost with the link) is dropped instead of delivered twice.
//!
//! Each forwarded SEND carries [`super::network::NETWORK_ID`], `<producer>:<id>`. The audit
//! keeps, per producer (forwarding broker), a window of the last `depth` (id, destination)
//! pairs it accepted, and at most `producers` producers, the least recently used going
//! first. Memory is therefore bounded by `depth × producers` entries of 16 bytes (and the
//! producers' names) whatever clients send, forged headers included.
//!
//! An entry is a 128-bit hash of the id and the destination (two randomly seeded foldhash
//! hashes), not the strings: a client cannot make it large, and two different messages share
//! an entry with probability about `depth / 2^128`. The destination is part of the
//! key because one forwarded SEND may become several messages here with the same header (a
//! composite destination, a virtual topic's consumer queues), each to be accepted once.
//!
//! Owned by one owner shard (no locks); the runtime builds one per shard at start from the
//! stored messages ([`NetworkAudit::record`] in id order), so a resend after a restart is
//! still caught while the first copy is stored.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use foldhash::quality::RandomState;
use foldhash::{HashMap, HashSet};

use super::network::split_network_id;
use super::DestinationName;

/// Per-producer windows of the forwarded messages one owner shard accepted.
#[derive(Debug)]
pub struct NetworkAudit {
    /// Entries kept per producer (`destinations.network_audit_depth`); 0 turns it off.
    depth: usize,
    /// Producers kept (`destinations.network_audit_producers`).
    max_producers: usize,
    producers: HashMap<Box<str>, Window>,
    /// Bumped by every use of a producer's window: its `used` stamp orders the LRU.
    clock: u64,
    /// Two randomly seeded hashes make one 128-bit entry.
    keys: (RandomState, RandomState),
}

/// One producer's last `depth` entries, oldest first, with a set for lookups.
#[derive(Debug, Default)]
struct Window {
    order: VecDeque<u128>,
    seen: HashSet<u128>,
    used: u64,
}

impl NetworkAudit {
    /// An empty audit of `depth` entries for each of at most `max_producers` producers.
    pub fn new(depth: usize, max_producers: usize) -> Self {
        NetworkAudit {
            depth,
            max_producers,
            producers: HashMap::default(),
            clock: 0,
            keys: (RandomState::default(), RandomState::default()),
        }
    }

    /// Records that the message with [`super::network::NETWORK_ID`] `network_id` was
    /// accepted for `destination`; returns false (and records nothing) when it was already
    /// there: the message is a duplicate. A value that names no producer and id is never a
    /// duplicate (not audited).
    pub fn record(&mut self, network_id: &str, destination: &DestinationName) -> bool {
        let Some((producer, id)) = split_network_id(network_id) else {
            return true;
        };
        if self.depth == 0 || self.max_producers == 0 {
            return true;
        }
        let entry = self.entry(id, destination);
        self.clock += 1;
        let clock = self.clock;
        if !self.producers.contains_key(producer) && self.producers.len() >= self.max_producers {
            // Evict the least recently used producer: a scan, on a new producer only.
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, w)| w.used)
                .map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                self.producers.remove(&p);
            }
        }
        let window = self.producers.entry(producer.into()).or_default();
        window.used = clock;
        if !window.seen.insert(entry) {
            return false;
        }
        window.order.push_back(entry);
        if window.order.len() > self.depth {
            if let Some(old) = window.order.pop_front() {
                window.seen.remove(&old);
            }
        }
        true
    }

    /// Forgets a recorded message that was not accepted after all (the store failed to
    /// write it): a copy sent again must get through.
    pub fn forget(&mut self, network_id: &str, destination: &DestinationName) {
        let Some((producer, id)) = split_network_id(network_id) else {
            return;
        };
        let entry = self.entry(id, destination);
        if let Some(window) = self.producers.get_mut(producer) {
            if window.seen.remove(&entry) {
                window.order.retain(|e| *e != entry);
            }
        }
    }

    /// Entries held, over all producers.
    pub fn len(&self) -> usize {
        self.producers.values().map(|w| w.order.len()).sum()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Producers held.
    pub fn producers(&self) -> usize {
        self.producers.len()
    }

    fn entry(&self, id: &str, destination: &DestinationName) -> u128 {
        let part = (id, destination.as_str());
        let high = self.keys.0.hash_one(part);
        let low = self.keys.1.hash_one(part);
        (u128::from(high) << 64) | u128::from(low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str) -> DestinationName {
        DestinationName::parse(&format!("/queue/{name}")).unwrap()
    }

    #[test]
    fn a_second_copy_is_a_duplicate_per_producer_and_destination() {
        let mut audit = NetworkAudit::new(8, 4);
        let q = queue("q");
        assert!(audit.record("a:1", &q));
        assert!(!audit.record("a:1", &q), "the same message again");
        assert!(audit.record("a:2", &q), "another message");
        assert!(audit.record("b:1", &q), "the same id from another broker");
        assert!(
            audit.record("a:1", &queue("r")),
            "the same id to another queue"
        );
        assert!(audit.record("no-colon", &q));
        assert!(audit.record("no-colon", &q), "not audited");
    }

    #[test]
    fn a_window_keeps_the_last_depth_ids() {
        let mut audit = NetworkAudit::new(3, 4);
        let q = queue("q");
        for i in 0..4 {
            assert!(audit.record(&format!("a:{i}"), &q));
        }
        assert!(audit.record("a:0", &q), "pushed out of the window");
        assert!(!audit.record("a:3", &q), "still in it");
    }

    #[test]
    fn the_least_recently_used_producer_goes_first() {
        let mut audit = NetworkAudit::new(4, 2);
        let q = queue("q");
        audit.record("a:1", &q);
        audit.record("b:1", &q);
        audit.record("a:2", &q);
        audit.record("c:1", &q); // evicts b, used longest ago
        assert_eq!(audit.producers(), 2);
        assert!(!audit.record("a:1", &q), "a was kept");
        assert!(audit.record("b:1", &q), "b was forgotten");
    }

    #[test]
    fn a_forgotten_message_gets_through_again() {
        let mut audit = NetworkAudit::new(4, 2);
        let q = queue("q");
        audit.record("a:1", &q);
        audit.forget("a:1", &q);
        assert!(audit.record("a:1", &q));
        assert_eq!(audit.len(), 1);
    }

    /// Whatever a hostile client sends, the audit holds at most depth × producers entries
    /// and `producers` names.
    #[test]
    fn memory_stays_bounded_by_depth_times_producers() {
        let (depth, producers) = (16, 8);
        let mut audit = NetworkAudit::new(depth, producers);
        let destinations: Vec<_> = (0..5).map(|i| queue(&format!("q{i}"))).collect();
        for i in 0..20_000u32 {
            let producer = i % 37;
            let d = &destinations[(i % 5) as usize];
            audit.record(&format!("p{producer}:{i}"), d);
            if i % 3 == 0 {
                audit.record(&format!("p{producer}:{}", i / 2), d);
            }
            assert!(audit.len() <= depth * producers, "{} entries", audit.len());
            assert!(audit.producers() <= producers);
        }
        for i in 0..(2 * depth * producers) {
            audit.record(&format!("q{}:{i}", i % producers), &destinations[0]);
        }
        assert_eq!(audit.len(), depth * producers, "full, not more");
        let mut off = NetworkAudit::new(0, producers);
        assert!(off.record("a:1", &destinations[0]));
        assert!(off.record("a:1", &destinations[0]), "depth 0 is off");
        assert!(off.is_empty());
    }
}
