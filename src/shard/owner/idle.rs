//! Destinations kept listed while idle, and destination advisories
//! (`ActiveMQ.Advisory.Queue`, `….Topic`, `….TempQueue`, `….TempTopic`).
//!
//! A queue or topic the owner no longer needs (nothing waiting, no consumers: `Queue::is_idle`,
//! `Topic::is_idle`) is dropped from the owner's maps as before, but its name and counters are
//! kept here, so `/api/destinations`, `/metrics` and the console go on listing it with what it
//! did, until it has been idle for `idle_timeout_ms`, an operator deletes it, or this shard
//! holds its share of `max_idle_destinations` newer idle ones. Its next use creates it again
//! with its counters, as if it had never gone.
//!
//! Why a record and not the idle destination itself: a record costs its name and counters
//! (about 250 bytes plus the name) and nothing else. It holds no buffers and no consumers, so
//! wildcard subscriptions never attach to it (they attach when it is used again), the
//! once-a-second tick does not visit it, and the cap bounds what a client sending to endless
//! one-off names can make the shard keep.
//!
//! Destinations named in `[destinations] declared` (ActiveMQ's startup `<destinations>`)
//! exist from the start: listed while idle from the first moment and never forgotten (an
//! operator's delete empties one and it is listed again at its next use). They, and every
//! destination listed here or in use, are what a user without the `admin` right may use
//! (`ToOwner::Probe`, `session/create.rs`).
//!
//! Destination advisories are published here too: when a destination comes into being (not
//! when a kept one is used again, and not at recovery: no client can be subscribed before the
//! listeners open), and when it is gone for good (forgotten once idle, deleted by an operator,
//! a temporary one whose connection closed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use super::Owner;
use crate::message::advisory::{self, Event};
use crate::message::{Counters, DestinationName, DestinationStats, Kind, QueueKey};

/// Why a destination went, as its `destination-removed` advisory says (`reason`).
pub(super) const IDLE: &str = "idle";
/// An operator deleted it (`/api/delete`).
pub(super) const DELETED: &str = "deleted";
/// A temporary destination whose connection closed.
pub(super) const CONNECTION_CLOSED: &str = "connection-closed";
/// Another broker's temporary destination whose last network route here ended
/// (`owner/temp.rs`).
pub(super) const ROUTE_ENDED: &str = "network-route-ended";

/// An idle destination as kept: its totals, and since when it is idle.
struct Idle {
    counters: Counters,
    since: Instant,
    /// Its place in [`IdleDestinations::order`].
    seq: u64,
}

/// The idle destinations one shard keeps listed (plain queues and topics only: durable
/// subscriptions and temporary destinations are never kept here).
#[derive(Default)]
pub(super) struct IdleDestinations {
    /// By key: a topic's is `QueueKey::queue(name)`, as the topic's own.
    by_key: HashMap<QueueKey, Idle>,
    /// The same keys in the order they became idle (a destination used and idle again moves
    /// to the end): the first is the longest idle.
    order: BTreeMap<u64, QueueKey>,
    next_seq: u64,
}

impl IdleDestinations {
    /// Keeps `key` with `counters`, idle from `now` on.
    fn insert(&mut self, key: QueueKey, counters: Counters, now: Instant) {
        self.remove(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.by_key.insert(
            key,
            Idle {
                counters,
                since: now,
                seq,
            },
        );
    }

    /// Stops keeping `key`; its counters if it was kept.
    pub fn remove(&mut self, key: &QueueKey) -> Option<Counters> {
        let idle = self.by_key.remove(key)?;
        self.order.remove(&idle.seq);
        Some(idle.counters)
    }

    /// Whether `key` is kept.
    pub fn contains(&self, key: &QueueKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Stops keeping the longest idle one, if `expired` says so of when it became idle: its
    /// key and counters.
    fn pop_oldest_if(&mut self, expired: impl Fn(Instant) -> bool) -> Option<(QueueKey, Counters)> {
        let (_, key) = self.order.first_key_value()?;
        if !expired(self.by_key.get(key)?.since) {
            return None;
        }
        let (_, key) = self.order.pop_first()?;
        let idle = self.by_key.remove(&key)?;
        Some((key, idle.counters))
    }

    /// What the admin API and metrics show of each: its counters, and nothing held.
    pub fn stats(&self) -> impl Iterator<Item = DestinationStats> + '_ {
        self.by_key.iter().map(|(key, idle)| DestinationStats {
            destination: key.destination.to_string(),
            subscription: String::new(),
            kind: match key.destination.kind() {
                Kind::Queue => "queue",
                Kind::Topic => "topic",
            },
            depth: 0,
            on_disk: 0,
            unacked: 0,
            consumers: 0,
            memory_bytes: 0,
            blocked_producers: 0,
            flow_control_events: 0,
            counters: idle.counters,
        })
    }
}

/// The keys of the `[destinations] declared` destinations shard `ctx.shard` owns.
pub(super) fn declared_here(ctx: &crate::destination::Ctx) -> foldhash::HashSet<QueueKey> {
    ctx.config
        .declared
        .iter()
        .filter_map(|d| DestinationName::parse(d).ok())
        .filter(|d| d.owner(ctx.router.shards()) == ctx.shard)
        .map(QueueKey::queue)
        .collect()
}

impl Owner {
    /// A queue or topic (`key`) with `counters` was just dropped as idle: kept listed, or,
    /// with `idle_timeout_ms` 0, gone at once. Beyond this shard's share of
    /// `max_idle_destinations`, the longest idle are forgotten early. Advisory topics are
    /// not kept (nothing is kept for them while nobody subscribes either).
    pub(super) fn keep_idle(&mut self, key: QueueKey, counters: Counters) {
        debug_assert!(key.subscription.is_none() && !key.destination.is_temp());
        if (self.ctx.config.idle_timeout_ms == 0 || advisory::is_advisory(&key.destination))
            && !self.declared.contains(&key)
        {
            self.advise_removed(&key.destination, IDLE);
            return;
        }
        let now = Instant::now();
        self.idle.insert(key, counters, now);
        // Declared destinations are not forgotten: they go to the back of the line (at most
        // one round over them).
        let cap = self.idle_cap();
        let mut turns = self.idle.len();
        while self.idle.len() > cap && turns > 0 {
            turns -= 1;
            let Some((key, counters)) = self.idle.pop_oldest_if(|_| true) else {
                break;
            };
            self.forget_unless_declared(key, counters, now);
        }
    }

    /// `key`, popped from the idle list, is forgotten (announced gone), unless declared:
    /// then it is kept again, idle from `now`.
    fn forget_unless_declared(&mut self, key: QueueKey, counters: Counters, now: Instant) {
        match self.declared.contains(&key) {
            true => self.idle.insert(key, counters, now),
            false => self.advise_removed(&key.destination, IDLE),
        }
    }

    /// Lists this shard's declared destinations at start (no advisory: nobody listens yet).
    pub(super) fn list_declared(&mut self) {
        let now = Instant::now();
        let keys: Vec<QueueKey> = self.declared.iter().cloned().collect();
        for key in keys {
            self.idle.insert(key, Counters::default(), now);
        }
    }

    /// Whether `destination` exists on this shard: a queue or topic in use or kept listed
    /// while idle (a topic with durable subscriptions is in use), or a declared one.
    pub(super) fn exists(&self, destination: &DestinationName) -> bool {
        let key = QueueKey::queue(destination.clone());
        self.declared.contains(&key)
            || self.idle.contains(&key)
            || match destination.kind() {
                Kind::Queue => self.queues.contains_key(&key),
                Kind::Topic => self.topics.contains_key(destination),
            }
    }

    /// Answers a session's [`crate::message::ToOwner::Probe`].
    pub(super) fn probe(
        &mut self,
        session: crate::message::SessionId,
        destination: DestinationName,
    ) {
        let exists = self.exists(&destination);
        if let Some(s) = self.sessions.get(&session) {
            let _ = s.tx.send(crate::message::ToSession::Probed {
                destination,
                exists,
            });
        }
    }

    /// Forgets the destinations idle for `idle_timeout_ms` at `now` (once a second).
    pub(super) fn sweep_idle(&mut self, now: Instant) {
        let timeout = Duration::from_millis(self.ctx.config.idle_timeout_ms);
        // At most one round: a declared one is kept again, idle from `now`.
        for _ in 0..self.idle.len() {
            let Some((key, counters)) = self
                .idle
                .pop_oldest_if(|since| now.saturating_duration_since(since) >= timeout)
            else {
                break;
            };
            self.forget_unless_declared(key, counters, now);
        }
    }

    /// Queue or topic `key` is being created: the counters of the idle one it continues, or
    /// None when it is new, and then it is announced.
    pub(super) fn came_into_being(&mut self, key: &QueueKey) -> Option<Counters> {
        if let Some(counters) = self.idle.remove(key) {
            return Some(counters);
        }
        self.ctx.advise(Event::DestinationAdded {
            destination: &key.destination,
        });
        None
    }

    /// A message was published to topic `name` while it has no subscribers and no durable
    /// subscriptions (so no topic is held): nothing is kept of the message, but the topic is
    /// listed while idle with it counted, as one whose subscribers left. Temporary and
    /// advisory topics are not.
    pub(super) fn published_to_nobody(&mut self, name: &DestinationName) {
        if name.is_temp() || advisory::is_advisory(name) || self.ctx.config.idle_timeout_ms == 0 {
            return;
        }
        let key = QueueKey::queue(name.clone());
        let mut counters = self.came_into_being(&key).unwrap_or_default();
        counters.enqueued += 1;
        self.keep_idle(key, counters);
    }

    /// Publishes `destination`'s `destination-removed` advisory.
    pub(super) fn advise_removed(&self, destination: &DestinationName, reason: &str) {
        self.ctx.advise(Event::DestinationRemoved {
            destination,
            reason,
        });
    }

    /// Idle destinations this shard keeps at most.
    fn idle_cap(&self) -> usize {
        let shards = self.ctx.router.shards().max(1);
        self.ctx.config.max_idle_destinations.div_ceil(shards)
    }
}
