//! A queue: each message to exactly one consumer, round-robin among consumers with credit,
//! highest priority first and FIFO within a priority. Also the queue behind each durable
//! topic subscription. This file holds the queue and how messages enter, wait and leave it;
//! `queue/paging.rs` reads stored messages back into memory and `queue/marks.rs` keeps the
//! delivery marks.
//!
//! # Paging
//!
//! Persistent messages are stored by the store writer before they enter the queue (they wait
//! in `staging` meanwhile, with anything sent after them, so a producer's order holds). Once
//! stored, a message is *admitted*: kept in memory, or, while the queue is over its memory
//! window, left on disk only and counted as `unloaded`. Per priority level the queue keeps
//! `max_loaded`, the highest stored id it has read, with this invariant:
//!
//! - every stored message of the level with id ≤ `max_loaded` is in memory (or delivered),
//! - every stored message with id > `max_loaded` is on disk only and counted in `unloaded`.
//!
//! Page-ins read `id > max_loaded` in id order through the store writer. Every stored row
//! reaches its queue through the reply of the request that committed it (`ToOwner::Stored`
//! for a staged SEND, `ToOwner::Adopt` for a COMMIT's send or a dead letter), and the writer
//! runs replies in commit order, so each row is announced before the answer of any later
//! page-in: a page-in never returns a row the queue already holds, and never misses one. A
//! stored message that arrives late with an id ≤ `max_loaded` (ids are allocated before the
//! commit, so commits can finish out of id order) goes to memory, which keeps the invariant.

mod delayed;
mod dispatch;
mod marks;
mod paging;

use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use foldhash::HashMap;

use super::consumer::{Answer, Blocked, Consumer, Entry};
use super::ctx::{expired, Ctx};
use crate::message::{BrowsedMessage, Counters, DestinationStats};
use crate::message::{Message, MessageId, QueueKey, SessionId, StoredMessage, SubId, ToSession};
use crate::selector::Selector;

/// One priority level.
#[derive(Debug, Default)]
struct Level {
    /// In-memory waiting messages, sorted by id.
    mem: VecDeque<Entry>,
    /// Stored messages of this level not in memory.
    unloaded: u64,
    /// Highest stored id read into memory (see the module docs).
    max_loaded: MessageId,
    /// A page-in request is on its way.
    paging: bool,
    /// Page-ins of this level that failed in a row.
    failures: u32,
    /// After a failed page-in or delivery mark: no new one before this (see
    /// `Queue::paged_in`).
    retry_at: Option<std::time::Instant>,
    /// The level's delivery mark as committed: stored messages with ids up to here may be
    /// delivered (see `queue/marks.rs`).
    marked: MessageId,
    /// A delivery mark request is on its way.
    marking: bool,
    /// Past this id (and under `marked`), the next mark is asked for ahead of time, so
    /// dispatch rarely waits for one.
    remark_after: MessageId,
}

impl Level {
    fn insert_sorted(&mut self, e: Entry) {
        let id = e.message.id;
        if self.mem.back().is_none_or(|b| b.message.id < id) {
            self.mem.push_back(e);
        } else {
            let pos = self.mem.partition_point(|x| x.message.id < id);
            self.mem.insert(pos, e);
        }
    }
}

/// A SEND waiting for its store commit (or behind one that is).
#[derive(Debug)]
struct Staged {
    entry: Entry,
    answer: Option<Answer>,
    /// Its commit has not been confirmed yet.
    pending: bool,
    /// Its commit failed: it never enters the queue.
    rejected: bool,
    /// An operator purged the queue while it waited: it is answered but not enqueued.
    purged: bool,
}

/// A point-to-point destination on its owner shard.
#[derive(Debug)]
pub struct Queue {
    key: QueueKey,
    levels: [Level; 10],
    staging: VecDeque<Staged>,
    /// Attached consumers, highest `activemq.priority` first (in arrival order among equals).
    consumers: Vec<Consumer>,
    /// Where the next round-robin search starts.
    cursor: usize,
    /// Bumped whenever consumers come or go: an entry no consumer would take is marked with
    /// it (`Entry::passed_at`) and passed over until the consumers change.
    consumers_gen: u32,
    /// Some consumer has a selector or is exclusive, or their priorities differ: dispatch
    /// asks each consumer (`queue/dispatch.rs`) instead of taking the next with credit.
    selective: bool,
    /// A message with `JMSXGroupID` was seen: groups are pinned to consumers from now on.
    grouped: bool,
    /// Message group → the consumer it is pinned to.
    groups: HashMap<Arc<str>, (SessionId, SubId)>,
    /// Redeliveries waiting out their redelivery delay (`queue/delayed.rs`).
    delayed: BinaryHeap<delayed::Delayed>,
    /// For the queue of a durable subscription with a selector: its topic copies it only the
    /// messages this is true for.
    filter: Option<Arc<Selector>>,
    /// Bytes held in memory: waiting, staged and unacked messages.
    bytes: u64,
    /// In-memory waiting messages with an expiry (so sweeps can skip queues without any).
    expiring: usize,
    blocked: Blocked,
    counters: Counters,
}

impl Queue {
    /// An empty queue.
    pub fn new(key: QueueKey) -> Self {
        Queue {
            key,
            levels: Default::default(),
            staging: VecDeque::new(),
            consumers: Vec::new(),
            cursor: 0,
            consumers_gen: 1,
            selective: false,
            grouped: false,
            groups: HashMap::default(),
            filter: None,
            delayed: BinaryHeap::new(),
            bytes: 0,
            expiring: 0,
            blocked: Blocked::default(),
            counters: Counters::default(),
        }
    }

    /// A snapshot for the admin API and metrics.
    pub fn stats(&self) -> DestinationStats {
        let kind = if self.key.subscription.is_some() {
            "durable"
        } else {
            "queue"
        };
        DestinationStats {
            destination: self.key.destination.to_string(),
            subscription: self.key.subscription_str().to_string(),
            kind,
            depth: self.depth(),
            on_disk: self.levels.iter().map(|l| l.unloaded).sum(),
            unacked: self
                .consumers
                .iter()
                .map(|c| u64::from(c.outstanding()))
                .sum(),
            consumers: self.consumers.len(),
            memory_bytes: self.bytes,
            blocked_producers: self.blocked.producers(),
            flow_control_events: self.blocked.parked_total,
            counters: self.counters,
        }
    }

    /// Up to `limit` waiting messages held in memory, in dispatch order, after skipping
    /// `offset` (messages paged out to disk are not listed; `stats().on_disk` counts them).
    pub fn browse(&self, offset: usize, limit: usize) -> Vec<BrowsedMessage> {
        self.levels
            .iter()
            .rev()
            .flat_map(|l| l.mem.iter())
            .skip(offset)
            .take(limit)
            .map(|e| {
                let m = &e.message;
                BrowsedMessage {
                    message_id: m.id.0,
                    priority: m.priority,
                    persistent: m.persistent,
                    expires: m.expires,
                    redelivery_count: e.redelivery_count,
                    headers: m.headers.clone(),
                    body: String::from_utf8(m.body.to_vec()).unwrap_or_default(),
                    body_bytes: m.body.len(),
                }
            })
            .collect()
    }

    /// What a `browser:true` subscription sees: waiting messages held in memory, in
    /// dispatch order, that `selector` matches and that have not expired, up to
    /// `limits::BROWSE_MAX_MESSAGES` and `BROWSE_MAX_BYTES`.
    pub fn browse_for(&self, selector: Option<&Selector>, now: u64) -> Vec<(Arc<Message>, u32)> {
        let mut bytes = 0;
        self.levels
            .iter()
            .rev()
            .flat_map(|l| l.mem.iter())
            .filter(|e| !expired(&e.message, now))
            .filter(|e| selector.is_none_or(|s| s.matches(&*e.message)))
            .take_while(|e| {
                bytes += e.weight();
                bytes <= crate::limits::BROWSE_MAX_BYTES
            })
            .take(crate::limits::BROWSE_MAX_MESSAGES)
            .map(|e| (e.message.clone(), e.redelivery_count))
            .collect()
    }

    /// Ids of delivered, unacked messages (a purge keeps them).
    pub fn unacked_ids(&self) -> Vec<MessageId> {
        self.consumers
            .iter()
            .flat_map(|c| c.unacked_ids())
            .collect()
    }

    /// A queue that has stored messages (counted per priority) to page in on demand.
    pub fn recovered(key: QueueKey, counts: [u64; 10]) -> Self {
        let mut q = Queue::new(key);
        for (level, n) in q.levels.iter_mut().zip(counts) {
            level.unloaded = n;
        }
        q
    }

    /// Whether the topic of this durable subscription's queue copies `message` into it.
    pub fn wants(&self, message: &Message) -> bool {
        self.filter.as_ref().is_none_or(|s| s.matches(message))
    }

    /// The durable subscription's selector.
    pub fn filter(&self) -> Option<&Arc<Selector>> {
        self.filter.as_ref()
    }

    /// Sets the durable subscription's selector.
    pub fn set_filter(&mut self, filter: Option<Arc<Selector>>) {
        self.filter = filter;
    }

    /// The queue's key.
    pub fn key(&self) -> &QueueKey {
        &self.key
    }

    /// Its running totals.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Carries on the totals of the destination it re-creates (one kept while idle, see
    /// `shard/owner/idle.rs`).
    pub fn resume_counters(&mut self, counters: Counters) {
        self.counters = counters;
    }

    /// Messages waiting: in memory (redeliveries waiting out their delay included) plus
    /// stored on disk only (not counting unacked ones).
    pub fn depth(&self) -> u64 {
        self.levels
            .iter()
            .map(|l| l.mem.len() as u64 + l.unloaded)
            .sum::<u64>()
            + self.staging.len() as u64
            + self.delayed.len() as u64
    }

    /// Consumers attached.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Nothing waiting, staged, unacked or parked, and no consumers but wildcard
    /// subscriptions holding nothing here (they attach again when it comes back): the owner
    /// may drop it.
    pub fn is_idle(&self) -> bool {
        self.depth() == 0
            && self.consumers.iter().all(Consumer::is_idle_wildcard)
            && self.blocked.is_empty()
    }

    /// The subscriptions attached (each wildcard subscription's attachment among them).
    pub fn consumer_ids(&self) -> impl Iterator<Item = (SessionId, SubId)> + '_ {
        self.consumers.iter().map(|c| (c.session, c.sub))
    }

    /// Hands waiting messages to consumers with credit: a wildcard subscription got credit
    /// back from another queue.
    pub fn redispatch(&mut self, ctx: &mut Ctx) {
        self.after_change(ctx);
    }

    /// Over its own limit; or, while all destinations together are over the global limit,
    /// holding anything at all. A destination whose consumers keep it empty is not held for
    /// what others pile up: its producers add at most their windows before it holds
    /// something, and what they add is consumed. (Holding it too stalled a request/response
    /// client on a queue of its own for as long as another queue sat full.)
    fn full(&self, ctx: &Ctx) -> bool {
        self.bytes >= ctx.config.memory_limit_bytes || (self.bytes > 0 && ctx.over_global_limit())
    }

    /// Bytes this destination holds in memory (the owner charges changes to the global
    /// memory account).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Releases parked producers if memory has room again (the global account may have
    /// shrunk because of other destinations).
    pub fn recheck_flow_control(&mut self, ctx: &Ctx) {
        let full = self.full(ctx);
        self.blocked.release(full);
    }

    /// Answers every parked producer: the queue is being deleted (a temporary queue whose
    /// connection closed), and their SENDs were accepted before that.
    pub fn release_producers(&mut self) {
        self.blocked.release(false);
    }

    /// A new message. Persistent ones are stored first; the producer is answered once the
    /// message is in the queue (and held back while the queue is over its memory limit).
    pub fn send(&mut self, entry: Entry, answer: Option<Answer>, ctx: &mut Ctx) {
        self.bytes += entry.weight();
        if ctx.persists(&entry.message) {
            ctx.insert(&self.key, entry.message.clone());
            self.staging.push_back(Staged {
                entry,
                answer,
                pending: true,
                rejected: false,
                purged: false,
            });
        } else if !self.staging.is_empty() {
            self.staging.push_back(Staged {
                entry,
                answer,
                pending: false,
                rejected: false,
                purged: false,
            });
        } else {
            self.admit(entry, ctx);
            self.dispatch(ctx);
            let full = self.full(ctx);
            self.blocked.accept(answer, full);
        }
    }

    /// The store committed the oldest pending staged SEND (or failed to: then it is not
    /// enqueued and its producer gets an ERROR). Staged messages no longer waiting for a
    /// commit ahead of them enter the queue, in order. Returns the message that failed, if
    /// one did.
    pub fn stored(&mut self, result: Result<(), Arc<str>>, ctx: &mut Ctx) -> Option<Arc<Message>> {
        let mut failed = None;
        if let Some(s) = self.staging.iter_mut().find(|s| s.pending) {
            s.pending = false;
            if let Err(reason) = &result {
                failed = Some(s.entry.message.clone());
                // Not stored: the producer gets an ERROR, the message is not in the queue.
                if let Some(a) = s.answer.take() {
                    let _ = a.tx.send(ToSession::Rejected {
                        token: a.token,
                        reason: reason.clone(),
                    });
                }
                s.rejected = true;
            }
        }
        while self.staging.front().is_some_and(|s| !s.pending) {
            let s = self.staging.pop_front().expect("front exists");
            if s.rejected {
                self.bytes -= s.entry.weight();
                continue;
            }
            if s.purged {
                // Accepted, then purged before it reached the queue (its row is deleted by
                // the purge, which the writer runs after the insert).
                self.bytes -= s.entry.weight();
                let full = self.full(ctx);
                self.blocked.accept(s.answer, full);
                continue;
            }
            self.admit(s.entry, ctx);
            let full = self.full(ctx);
            self.blocked.accept(s.answer, full);
        }
        self.after_change(ctx);
        failed
    }

    /// A message handed to this queue from elsewhere (`ToOwner::Adopt`: a COMMIT's send, a
    /// dead letter), already stored if it is persistent. It is admitted like a stored SEND;
    /// nothing waits for it to be accepted.
    pub fn adopt(&mut self, message: StoredMessage, ctx: &mut Ctx) {
        let e = Entry {
            message: message.message,
            redelivery_count: message.redelivery_count,
            passed_at: 0,
        };
        self.bytes += e.weight();
        self.admit(e, ctx);
        self.after_change(ctx);
    }

    /// Adds a consumer (after those of higher or equal priority) and delivers to it what it
    /// has credit for.
    pub fn subscribe(&mut self, consumer: Consumer, ctx: &mut Ctx) {
        let at = self
            .consumers
            .partition_point(|c| c.priority() >= consumer.priority());
        self.consumers.insert(at, consumer);
        self.consumers_changed();
        self.dispatch(ctx);
    }

    /// Removes a consumer; its unacked messages come back for redelivery.
    pub fn unsubscribe(&mut self, session: SessionId, sub: SubId, ctx: &mut Ctx) {
        if let Some(pos) = self.consumers.iter().position(|c| c.is(session, sub)) {
            let consumer = self.consumers.remove(pos);
            self.consumers_changed();
            self.take_back(consumer, ctx);
        }
        self.after_change(ctx);
    }

    /// Removes every consumer of a closed session.
    pub fn goodbye(&mut self, session: SessionId, ctx: &mut Ctx) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.consumers)
            .into_iter()
            .partition(|c| c.session == session);
        self.consumers = kept;
        self.consumers_changed();
        for c in gone {
            self.take_back(c, ctx);
        }
        self.after_change(ctx);
    }

    /// Acked: the messages are done.
    pub fn ack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId], ctx: &mut Ctx) {
        self.settle_only(session, sub, ids, false, ctx);
        self.after_change(ctx);
    }

    /// Nacked: the messages come back for redelivery (or go to the dead-letter queue).
    pub fn nack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId], ctx: &mut Ctx) {
        self.settle_only(session, sub, ids, true, ctx);
        self.after_change(ctx);
    }

    /// ACK (`nack` false) or NACK without dispatching what the freed credit allows: a
    /// wildcard subscription's credit is shared by its queues, which then take turns
    /// ([`Queue::redispatch`]).
    pub fn settle_only(
        &mut self,
        session: SessionId,
        sub: SubId,
        ids: &[MessageId],
        nack: bool,
        ctx: &mut Ctx,
    ) {
        let Some(c) = self.consumers.iter_mut().find(|c| c.is(session, sub)) else {
            return;
        };
        let settled = c.settle(ids);
        if nack {
            return self.requeue(settled, true, true, ctx);
        }
        for e in settled {
            self.bytes -= e.weight();
            self.counters.acked += 1;
            ctx.delete(&e.message);
        }
    }

    /// Drops (or dead-letters) expired in-memory messages.
    pub fn sweep(&mut self, now: u64, ctx: &mut Ctx) {
        if self.expiring == 0 {
            return;
        }
        for level in &mut self.levels {
            let (gone, kept): (Vec<_>, Vec<_>) =
                level.mem.drain(..).partition(|e| expired(&e.message, now));
            level.mem = kept.into();
            for e in gone {
                self.expiring -= 1;
                self.bytes -= e.weight();
                self.counters.expired += 1;
                ctx.expire(&self.key, e);
            }
        }
        self.after_change(ctx);
    }

    /// Empties the queue's memory (messages waiting and on disk); returns how many waited.
    /// The caller deletes the stored rows. Consumers and their unacked messages stay.
    pub fn purge(&mut self) -> u64 {
        let n = self.depth();
        for level in &mut self.levels {
            for e in level.mem.drain(..) {
                self.bytes -= e.weight();
            }
            level.unloaded = 0;
        }
        for d in self.delayed.drain() {
            self.bytes -= d.entry.weight();
        }
        self.expiring = 0;
        // Sends still waiting for their commit are purged too (answered, never enqueued).
        for s in self.staging.iter_mut() {
            s.purged = true;
        }
        n
    }

    /// Puts a stored (or non-persistent) message into memory or leaves it on disk, keeping
    /// the paging invariant.
    fn admit(&mut self, e: Entry, ctx: &Ctx) {
        self.counters.enqueued += 1;
        let over = self.full(ctx);
        let level = &mut self.levels[e.message.priority.min(9) as usize];
        let stored = ctx.persists(&e.message);
        if stored && e.message.id > level.max_loaded && (level.unloaded > 0 || over) {
            level.unloaded += 1;
            self.bytes -= e.weight();
            return;
        }
        if stored {
            level.max_loaded = level.max_loaded.max(e.message.id);
        }
        if e.message.expires != 0 {
            self.expiring += 1;
        }
        if !self.grouped && dispatch::group_of(&e.message).is_some() {
            self.grouped = true;
        }
        level.insert_sorted(e);
    }

    /// What a leaving consumer held: unacked deliveries come back as redelivered; an auto-ack
    /// consumer's were never written to its client, so they come back as they were, at their
    /// place (ids order) in the queue, and their stored rows stay. A network bridge's
    /// (`broker_path`) come back counted but never dead-lettered for it: its link failed, no
    /// consumer refused them (a bridge NACKs a message its peer refuses).
    fn take_back(&mut self, consumer: Consumer, ctx: &mut Ctx) {
        let auto = consumer.is_auto();
        let network = consumer.broker_path().is_some();
        let entries = consumer.into_unacked();
        if !auto {
            return self.requeue(entries, false, !network, ctx);
        }
        for e in entries {
            if e.message.expires != 0 {
                self.expiring += 1;
            }
            self.levels[e.message.priority.min(9) as usize].insert_sorted(e);
        }
    }

    /// Deliveries coming back (`nack`: refused by the client) are counted and go back to
    /// their level, after their policy's redelivery delay if it has one, or to the
    /// dead-letter queue.
    fn requeue(&mut self, entries: Vec<Entry>, nack: bool, may_dead_letter: bool, ctx: &mut Ctx) {
        let now = crate::clock::now_ms();
        for e in entries {
            let weight = e.weight();
            match ctx.redeliver(&self.key, e, nack, may_dead_letter) {
                Some((e, delay)) => {
                    self.counters.redelivered += 1;
                    if delay > 0 {
                        self.delay(e, now + delay, ctx);
                        continue;
                    }
                    if e.message.expires != 0 {
                        self.expiring += 1;
                    }
                    self.levels[e.message.priority.min(9) as usize].insert_sorted(e);
                }
                None => {
                    self.counters.dead_lettered += 1;
                    self.bytes -= weight;
                }
            }
        }
    }

    fn after_change(&mut self, ctx: &mut Ctx) {
        self.dispatch(ctx);
        let full = self.full(ctx);
        self.blocked.release(full);
    }
}
