//! What destinations need from their shard: the store, the router (to hand messages to other
//! shards' destinations, e.g. a dead-letter queue), the id allocator and the policy config.
//!
//! Every store request that has an answer gets its [`Reply`] here: what a commit means for a
//! destination (a staged SEND stored, a page read, a message adopted by a dead-letter queue, a
//! receipt that may go) is decided on this side, and posted from the store writer thread in
//! commit order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{DeadLetterStrategy, DestinationConfig, Policy};
use crate::message::advisory::Event;
use crate::message::virtual_topic::VirtualTopics;
use crate::message::{
    IdAllocator, Message, MessageId, QueueKey, Router, SessionTx, StoredMessage, ToOwner,
    ToSession, Token,
};
use crate::store::{Page, Reply, Request, StoreTx};

use super::Entry;
use crate::message::{DestinationName, Kind};

/// The process-wide accounts every shard's destinations charge.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// Bytes held in memory (`global_memory_limit_bytes`); sessions charge their open
    /// transactions to it too.
    pub memory: Arc<AtomicU64>,
    /// Durable subscriptions (`max_durable_subscriptions`).
    pub durables: Arc<AtomicUsize>,
    /// Pending scheduled messages (`max_scheduled_messages`).
    pub scheduled: Arc<AtomicUsize>,
    /// The consumer queues of virtual topics (`message/virtual_topic.rs`), which sessions
    /// read on SEND.
    pub virtual_topics: Arc<VirtualTopics>,
    /// Live subscriptions that may receive advisories (`advisory::may_listen`), counted by
    /// sessions: while there are none, no advisory is built.
    pub advisory_listeners: Arc<AtomicUsize>,
    /// Every durable subscription, for the consumer advisories sessions replay.
    pub durable_subscriptions: Arc<crate::message::advisory::Durables>,
}

/// One shard's context for its destinations.
pub struct Ctx {
    pub shard: usize,
    pub router: Arc<Router>,
    /// None in tests without a store: persistent messages are then kept in memory only.
    pub store: Option<StoreTx>,
    pub ids: Arc<IdAllocator>,
    pub config: Arc<DestinationConfig>,
    /// Bytes held in memory by every destination of every shard.
    global: Arc<AtomicU64>,
    /// Durable subscriptions on every shard (`max_durable_subscriptions`).
    durables: Arc<AtomicUsize>,
    /// Pending scheduled messages on every shard (`max_scheduled_messages`).
    scheduled: Arc<AtomicUsize>,
    /// The consumer queues of virtual topics, shared with every shard and session.
    pub virtual_topics: Arc<VirtualTopics>,
    /// Subscriptions that may receive advisories, on every shard.
    advisory_listeners: Arc<AtomicUsize>,
    /// Every durable subscription of every shard (their topics' owners keep it).
    pub durable_subscriptions: Arc<crate::message::advisory::Durables>,
    /// Acked stored messages, deleted in one request at the end of the owner's batch.
    deletes: Vec<MessageId>,
    /// Receipted ACKs answered once `deletes` are committed.
    delete_replies: Vec<(SessionTx, Token)>,
    /// Queues holding messages that become ready at a time (redelivery delays), by that
    /// time in ms: the owner wakes for the earliest (`next_wake`, `take_due`).
    timers: BTreeMap<u64, Vec<QueueKey>>,
}

impl Ctx {
    /// A context for shard `shard`.
    pub fn new(
        shard: usize,
        router: Arc<Router>,
        store: Option<StoreTx>,
        ids: Arc<IdAllocator>,
        config: Arc<DestinationConfig>,
        accounts: Accounts,
    ) -> Self {
        Ctx {
            shard,
            router,
            store,
            ids,
            config,
            global: accounts.memory,
            durables: accounts.durables,
            scheduled: accounts.scheduled,
            virtual_topics: accounts.virtual_topics,
            advisory_listeners: accounts.advisory_listeners,
            durable_subscriptions: accounts.durable_subscriptions,
            deletes: Vec::new(),
            delete_replies: Vec::new(),
            timers: BTreeMap::new(),
        }
    }

    /// Counts one more durable subscription, unless `max_durable_subscriptions` are there
    /// already (then false). `recovered` ones are always counted.
    pub fn add_durable(&self, recovered: bool) -> bool {
        let n = self.durables.fetch_add(1, Ordering::Relaxed);
        if !recovered && n >= self.config.max_durable_subscriptions {
            self.durables.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts one more pending scheduled message, unless `max_scheduled_messages` are there
    /// already (then false). `recovered` ones are always counted.
    pub fn add_scheduled(&self, recovered: bool) -> bool {
        let n = self.scheduled.fetch_add(1, Ordering::Relaxed);
        if !recovered && n >= self.config.max_scheduled_messages {
            self.scheduled.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// One pending scheduled message fewer (its last delivery is done, or it was refused).
    pub fn remove_scheduled(&self) {
        self.scheduled.fetch_sub(1, Ordering::Relaxed);
    }

    /// One durable subscription fewer.
    pub fn remove_durable(&self) {
        self.durables.fetch_sub(1, Ordering::Relaxed);
    }

    /// True when all destinations together hold `global_memory_limit_bytes` or more.
    pub fn over_global_limit(&self) -> bool {
        self.global.load(Ordering::Relaxed) >= self.config.global_memory_limit_bytes
    }

    /// Charges a destination's change in memory from `before` to `after` bytes.
    pub fn charge(&self, before: u64, after: u64) {
        if after > before {
            self.global.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.global.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// True when persistent messages go to the store.
    pub fn persists(&self, m: &Message) -> bool {
        m.persistent && self.store.is_some()
    }

    /// Asks the store writer to persist `message`, staged by queue `key` (answered with
    /// `ToOwner::Stored`).
    pub fn insert(&self, key: &QueueKey, message: Arc<Message>) {
        let answer = key.clone();
        self.request(Request::Insert {
            key: key.clone(),
            message,
            reply: self.reply_here(move |result| ToOwner::Stored {
                key: answer,
                result,
            }),
        });
    }

    /// Forgets a stored message (batched until [`Ctx::flush`]).
    pub fn delete(&mut self, m: &Message) {
        if self.persists(m) {
            self.deletes.push(m.id);
        }
    }

    /// Forgets the stored message `id` (batched until [`Ctx::flush`]).
    pub fn delete_id(&mut self, id: MessageId) {
        self.deletes.push(id);
    }

    /// Records a stored message's new redelivery count.
    pub fn redelivered(&self, e: &Entry) {
        if self.persists(&e.message) {
            self.request(Request::Redelivered {
                id: e.message.id,
                count: e.redelivery_count,
            });
        }
    }

    /// Asks the store to remember that stored messages of `key` at `priority` up to `upto`
    /// may be delivered from now on (answered with `ToOwner::Marked`).
    pub fn mark(&self, key: &QueueKey, priority: u8, upto: MessageId) {
        let answer = key.clone();
        self.request(Request::Mark {
            key: key.clone(),
            priority,
            upto,
            reply: self.reply_here(move |result| ToOwner::Marked {
                key: answer,
                priority,
                upto,
                result,
            }),
        });
    }

    /// Asks for the next stored messages of `key` at `priority` above `after` (answered with
    /// `ToOwner::PagedIn`).
    pub fn page_in(&self, key: &QueueKey, priority: u8, after: MessageId, limit: usize) {
        let answer = key.clone();
        self.request(Request::PageIn {
            key: key.clone(),
            priority,
            after,
            limit,
            reply: self.reply_here(move |result: Result<Page, Arc<str>>| {
                let (page, result) = match result {
                    Ok(page) => (page, Ok(())),
                    Err(e) => (Default::default(), Err(e)),
                };
                ToOwner::PagedIn {
                    key: answer,
                    priority,
                    messages: page.messages,
                    exhausted: page.exhausted,
                    result,
                }
            }),
        });
    }

    /// A reply that posts what `answer` makes of the store's result to this shard's owner
    /// loop (from the store writer thread, so in commit order).
    pub fn reply_here<T: 'static>(
        &self,
        answer: impl FnOnce(Result<T, Arc<str>>) -> ToOwner + Send + 'static,
    ) -> Reply<T> {
        let router = self.router.clone();
        let shard = self.shard;
        Reply::new(move |result| router.post(shard, answer(result)))
    }

    /// Deletes batched and not yet sent to the store writer.
    pub fn pending_deletes(&self) -> usize {
        self.deletes.len()
    }

    /// Answers `token` (a receipt) with `ToSession::Done` (or `Failed`) once everything this
    /// shard sent the store writer so far, and the deletes pending now, is committed (the
    /// writer commits in order), and returns true; returns false without a store (answer it
    /// now).
    pub fn after_store(&mut self, tx: &SessionTx, token: Token) -> bool {
        if self.store.is_none() {
            return false;
        }
        self.delete_replies.push((tx.clone(), token));
        true
    }

    /// Sends pending deletes, and the receipts waiting for them, to the store writer.
    pub fn flush(&mut self) {
        if !self.deletes.is_empty() || !self.delete_replies.is_empty() {
            let ids = std::mem::take(&mut self.deletes);
            let waiting = std::mem::take(&mut self.delete_replies);
            let reply = (!waiting.is_empty()).then(|| receipts_reply(waiting));
            self.request(Request::Delete { ids, reply });
        }
    }

    /// The dead-letter queue for messages of `origin`, or None when `origin` is itself a
    /// dead-letter queue (a message is never dead-lettered twice; it stays where it is).
    pub fn dead_letter_queue(&self, origin: &DestinationName) -> Option<DestinationName> {
        if origin.as_str().starts_with("/queue/ActiveMQ.DLQ") {
            return None;
        }
        let name = match self.config.dead_letter_strategy {
            DeadLetterStrategy::Shared => "/queue/ActiveMQ.DLQ".to_string(),
            DeadLetterStrategy::Individual => {
                let (kind, rest) = match origin.kind() {
                    Kind::Queue => ("Queue", origin.name()),
                    Kind::Topic => ("Topic", origin.name()),
                };
                format!("/queue/ActiveMQ.DLQ.{kind}.{rest}")
            }
        };
        DestinationName::parse(&name).ok()
    }

    /// Moves `entry` to the dead-letter queue of `origin` with `reason`, keeping its id (a
    /// stored message is moved in place, in one statement). Returns the entry back if there
    /// is no dead-letter queue for it.
    pub fn dead_letter(&self, origin: &QueueKey, entry: Entry, reason: &str) -> Result<(), Entry> {
        let Some(dlq) = self.dead_letter_queue(&origin.destination) else {
            return Err(entry);
        };
        let m = &entry.message;
        let mut headers: Vec<(String, String)> = m
            .headers
            .iter()
            .filter(|(k, _)| k != "dlqDeliveryFailureCause")
            .cloned()
            .collect();
        if !headers.iter().any(|(k, _)| k == "original-destination") {
            headers.push((
                "original-destination".into(),
                origin.destination.to_string(),
            ));
        }
        headers.push(("dlqDeliveryFailureCause".into(), reason.to_string()));
        let moved = Message {
            id: m.id,
            destination: dlq.clone(),
            headers,
            body: m.body.clone(),
            priority: m.priority,
            persistent: m.persistent,
            // A dead letter must not silently expire away (ActiveMQ's default too).
            expires: 0,
        };
        let message = StoredMessage {
            message: Arc::new(moved),
            redelivery_count: 0,
        };
        let to = QueueKey::queue(dlq.clone());
        let shard = self.router.owner_of(&dlq);
        if self.persists(m) {
            let (router, key, adopted) = (self.router.clone(), to.clone(), message.clone());
            self.request(Request::Move {
                message,
                to,
                // Even if the row could not be moved, the message is handed over: it stays
                // stored under its old queue and reappears there after a restart (at least
                // once, never lost).
                reply: Reply::new(move |_| {
                    router.post(
                        shard,
                        ToOwner::Adopt {
                            key,
                            message: adopted,
                        },
                    )
                }),
            });
        } else {
            self.router.post(shard, ToOwner::Adopt { key: to, message });
        }
        log::info!(
            "dead-lettered message={} from={} to={} reason={reason:?}",
            m.id,
            origin,
            dlq
        );
        self.advise(Event::DeadLettered {
            destination: &origin.destination,
            message_id: m.id,
            dlq: &dlq,
            reason,
        });
        Ok(())
    }

    /// The policy of `destination` (`[destinations]` defaults and matching
    /// `[[destinations.policy]]` entries).
    pub fn policy(&self, destination: &DestinationName) -> Policy {
        self.config.policy_for(destination)
    }

    /// Decides what happens to an entry coming back for redelivery (`nack`: the client
    /// refused it): it is counted, and either returned with the delay before it may go out
    /// again in ms (Some), or dead-lettered (None) after its policy's `max_redeliveries`, or
    /// at once on a NACK when the policy says `nack_to_dlq`. With `may_dead_letter` false (a
    /// network bridge's link failed: the message was not refused by anyone) it is counted and
    /// returned, whatever the count.
    pub fn redeliver(
        &self,
        origin: &QueueKey,
        mut e: Entry,
        nack: bool,
        may_dead_letter: bool,
    ) -> Option<(Entry, u64)> {
        let policy = self.policy(&origin.destination);
        if nack && policy.nack_to_dlq {
            return self
                .dead_letter(
                    origin,
                    e,
                    "NACKed, and the destination's policy is nack_to_dlq",
                )
                .err()
                .map(|e| (e, 0));
        }
        e.redelivery_count += 1;
        if may_dead_letter && e.redelivery_count > policy.max_redeliveries {
            let reason = format!(
                "delivery failed more than max_redeliveries ({}) times",
                policy.max_redeliveries
            );
            return self.dead_letter(origin, e, &reason).err().map(|e| (e, 0));
        }
        self.redelivered(&e);
        let delay = policy.redelivery_delay(e.redelivery_count);
        Some((e, delay))
    }

    /// Wakes the owner at `at` (ms since the epoch) for `key`'s delayed messages.
    pub fn wake_at(&mut self, at: u64, key: &QueueKey) {
        let keys = self.timers.entry(at).or_default();
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }

    /// When the owner should wake next for delayed messages.
    pub fn next_wake(&self) -> Option<u64> {
        self.timers.keys().next().copied()
    }

    /// Queues with delayed messages due at `now`.
    pub fn take_due(&mut self, now: u64) -> Vec<QueueKey> {
        let later = self.timers.split_off(&(now + 1));
        let due = std::mem::replace(&mut self.timers, later);
        let mut keys: Vec<QueueKey> = due.into_values().flatten().collect();
        keys.dedup();
        keys
    }

    /// Handles an expired entry: dead-lettered or dropped, per `expired_to_dlq`.
    pub fn expire(&mut self, origin: &QueueKey, e: Entry) {
        self.advise(Event::Expired {
            destination: &origin.destination,
            message_id: e.message.id,
        });
        let e = if self.config.expired_to_dlq {
            match self.dead_letter(origin, e, "expired") {
                Ok(()) => return,
                Err(e) => e,
            }
        } else {
            e
        };
        self.delete(&e.message);
    }

    /// Publishes the advisory of `event` (unless advisories are off) through its topic's
    /// owner.
    pub fn advise(&self, event: Event<'_>) {
        // Nobody could receive it: not built (one-off destinations would otherwise cost two
        // advisory messages each, posted to one shard).
        if !self.config.advisories || self.advisory_listeners.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(message) = event.message(self.ids.next()) {
            let shard = self.router.owner_of(&message.destination);
            self.router.post(shard, ToOwner::Publish { message });
        }
    }

    /// Sends a request to the store writer (dropped when there is no store).
    pub fn request(&self, r: Request) {
        if let Some(store) = &self.store {
            // The writer only stops at shutdown, after every owner stopped.
            let _ = store.send(r);
        }
    }
}

/// A reply that answers each of `receipts` (a session and its frame's token) once the store
/// committed what they wait for: `ToSession::Done`, or `ToSession::Failed` with the error.
pub fn receipts_reply(receipts: Vec<(SessionTx, Token)>) -> Reply {
    Reply::new(move |result| {
        for (session, token) in receipts {
            let _ = session.send(match &result {
                Ok(()) => ToSession::Done { token },
                Err(reason) => ToSession::Failed {
                    token,
                    reason: reason.clone(),
                },
            });
        }
    })
}

/// True when `m` has an expiry at or before `now`.
pub fn expired(m: &Message, now: u64) -> bool {
    m.expires != 0 && m.expires <= now
}
