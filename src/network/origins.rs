//! `suppress_duplicate_queue_subscriptions` (ActiveMQ's `suppressDuplicateQueueSubscriptions`):
//! which of this broker's bridges reaches a queue's consumers on some broker most directly.
//!
//! In a mesh with a TTL above 1, a consumer of queue `q` on broker C is demand for A twice:
//! directly on A's bridge to C, and through B (B's bridge subscription for it, one hop
//! further). Both bridges then take `q`'s messages here, and those sent by way of B cross an
//! extra hop. Every bridge of this broker notes here, per queue, the brokers whose consumers
//! its peer's demand stands for (the *origin*: the last broker of the consumer's path, or the
//! peer itself) and how many hops beyond the peer they are. A bridge that suppresses
//! duplicates ignores a consumer that another bridge reaches in fewer hops (in as many, the
//! bridge configured first wins), and follows again when that one's demand or link goes.
//!
//! All bridges run on one thread (`network::spawn`), so this is shared by `Rc`, without locks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

use crate::message::DestinationName;

/// Per (queue, origin broker): the hops at which each bridge (by index) reaches it.
#[derive(Debug, Default)]
pub(super) struct Origins {
    entries: RefCell<HashMap<(DestinationName, String), BTreeMap<usize, usize>>>,
    /// Bumped by every change; a link compares it with the last it followed.
    version: Cell<u64>,
    changed: tokio::sync::Notify,
}

impl Origins {
    /// Bridge `bridge` now reaches `destination`'s consumers at `held` (origin, hops: the
    /// fewest for that origin); what it held before for `destination` is replaced.
    pub(super) fn set(
        &self,
        bridge: usize,
        destination: &DestinationName,
        held: &BTreeMap<String, usize>,
    ) {
        let mut changed = false;
        let mut entries = self.entries.borrow_mut();
        entries.retain(|(d, origin), bridges| {
            if d != destination || held.contains_key(origin) {
                return true;
            }
            changed |= bridges.remove(&bridge).is_some();
            !bridges.is_empty()
        });
        for (origin, hops) in held {
            let bridges = entries
                .entry((destination.clone(), origin.clone()))
                .or_default();
            changed |= bridges.insert(bridge, *hops) != Some(*hops);
        }
        drop(entries);
        if changed {
            self.bump();
        }
    }

    /// Bridge `bridge` holds nothing any more (its link ended).
    pub(super) fn clear(&self, bridge: usize) {
        let mut changed = false;
        self.entries.borrow_mut().retain(|_, bridges| {
            changed |= bridges.remove(&bridge).is_some();
            !bridges.is_empty()
        });
        if changed {
            self.bump();
        }
    }

    /// True when another bridge reaches `origin`'s consumers of `destination` more directly
    /// than `bridge` does at `hops` (in as many hops: one configured before it).
    pub(super) fn nearer_elsewhere(
        &self,
        bridge: usize,
        destination: &DestinationName,
        origin: &str,
        hops: usize,
    ) -> bool {
        self.entries
            .borrow()
            .get(&(destination.clone(), origin.to_string()))
            .is_some_and(|bridges| {
                bridges
                    .iter()
                    .any(|(b, h)| *b != bridge && (*h < hops || (*h == hops && *b < bridge)))
            })
    }

    /// The current version (see `version`).
    pub(super) fn version(&self) -> u64 {
        self.version.get()
    }

    /// Resolves at the next change (from when it is enabled or first polled).
    pub(super) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn bump(&self) {
        self.version.set(self.version.get() + 1);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_bridge_to_an_origin_wins_and_the_others_follow_when_it_goes() {
        let q = DestinationName::parse("/queue/q").unwrap();
        let o = Origins::default();
        let at = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        // Bridge 1 (to B) reaches C's consumer one hop beyond B; bridge 2 (to C) directly.
        o.set(1, &q, &at(&[("c", 1), ("b", 0)]));
        o.set(2, &q, &at(&[("c", 0)]));
        assert!(o.nearer_elsewhere(1, &q, "c", 1));
        assert!(!o.nearer_elsewhere(2, &q, "c", 0));
        assert!(!o.nearer_elsewhere(1, &q, "b", 0));
        // As near: the one configured first.
        o.set(3, &q, &at(&[("c", 0)]));
        assert!(o.nearer_elsewhere(3, &q, "c", 0));
        assert!(!o.nearer_elsewhere(2, &q, "c", 0));
        let v = o.version();
        o.clear(2);
        o.clear(3);
        assert!(o.version() > v);
        assert!(!o.nearer_elsewhere(1, &q, "c", 1));
        // Demand that goes is forgotten; nothing changes, nothing is bumped.
        o.set(1, &q, &at(&[("b", 0)]));
        assert!(!o.nearer_elsewhere(1, &q, "c", 5));
        let v = o.version();
        o.set(1, &q, &at(&[("b", 0)]));
        assert_eq!(o.version(), v);
    }
}
