//! A topic: every message to every current subscriber. A subscriber without credit gets its
//! messages queued in its own backlog; while subscribers' backlogs keep the topic over its
//! memory limit, producers are slowed down (their SEND answers are held).
//!
//! Durable subscriptions are not held here: each is a [`super::Queue`] of its own on this
//! shard, and the owner copies every published message into them (`durables`).

use std::collections::VecDeque;

use super::consumer::{Answer, Blocked, Consumer, Entry};
use super::ctx::{expired, Ctx};
use crate::clock::now_ms;
use crate::message::DestinationName;
use crate::message::{Counters, DestinationStats};
use crate::message::{MessageId, QueueKey, SessionId, SubId};

/// A subscriber and its backlog.
#[derive(Debug)]
struct Subscriber {
    consumer: Consumer,
    pending: VecDeque<Entry>,
}

/// A fan-out destination on its owner shard.
#[derive(Debug)]
pub struct Topic {
    key: QueueKey,
    subscribers: Vec<Subscriber>,
    /// Keys of the durable subscriptions' queues fed by this topic.
    pub durables: Vec<QueueKey>,
    /// Bytes held in subscribers' backlogs and unacked deliveries (a message shared by several
    /// subscribers counts once per subscriber holding it).
    bytes: u64,
    blocked: Blocked,
    counters: Counters,
    /// Since when producers have been held without a break (for the slow-consumer rule).
    full_since: Option<std::time::Instant>,
}

impl Topic {
    /// A topic with no subscribers.
    pub fn new(name: DestinationName) -> Self {
        Topic {
            key: QueueKey::queue(name),
            subscribers: Vec::new(),
            durables: Vec::new(),
            bytes: 0,
            blocked: Blocked::default(),
            counters: Counters::default(),
            full_since: None,
        }
    }

    /// Once a second: if the topic has been over its limit for `slow_consumer_timeout_ms`,
    /// the subscriber with the largest backlog is disconnected (its session gets an ERROR),
    /// which frees the topic for the others and its producers.
    pub fn tick(&mut self, ctx: &Ctx) {
        let timeout = ctx.config.slow_consumer_timeout_ms;
        if !self.full(ctx) || timeout == 0 {
            self.full_since = None;
            self.recheck_flow_control(ctx);
            return;
        }
        let since = *self.full_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < std::time::Duration::from_millis(timeout) {
            return;
        }
        let Some(i) =
            (0..self.subscribers.len()).max_by_key(|&i| self.subscribers[i].pending.len())
        else {
            return;
        };
        let s = self.subscribers.remove(i);
        log::warn!(
            "slow consumer: session={} held {} for {timeout} ms with {} messages pending; disconnecting it",
            s.consumer.session.0,
            self.key.destination,
            s.pending.len()
        );
        s.consumer.tell(crate::message::ToSession::SlowConsumer {
            destination: self.key.destination.clone(),
        });
        self.counters.slow_consumer_disconnects += 1;
        self.forget(s);
        self.full_since = None;
        self.recheck_flow_control(ctx);
    }

    /// A snapshot for the admin API and metrics (durable subscriptions are listed as their own
    /// queues).
    pub fn stats(&self) -> DestinationStats {
        DestinationStats {
            destination: self.key.destination.to_string(),
            subscription: String::new(),
            kind: "topic",
            depth: self
                .subscribers
                .iter()
                .map(|s| s.pending.len() as u64)
                .sum(),
            on_disk: 0,
            unacked: self
                .subscribers
                .iter()
                .map(|s| u64::from(s.consumer.outstanding()))
                .sum(),
            consumers: self.subscribers.len(),
            memory_bytes: self.bytes,
            blocked_producers: self.blocked.producers(),
            flow_control_events: self.blocked.parked_total,
            counters: self.counters,
        }
    }

    /// Answers every parked producer: the topic is being deleted (a temporary topic whose
    /// connection closed), and their SENDs were accepted before that.
    pub fn release_producers(&mut self) {
        self.blocked.release(false);
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

    /// Non-durable subscribers attached.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// No subscribers, no durable subscriptions, nobody parked: the owner may forget it.
    pub fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.durables.is_empty() && self.blocked.is_empty()
    }

    /// Over its own limit; or, while all destinations together are over the global limit,
    /// holding anything at all. A destination whose consumers keep it empty is not held for
    /// what others pile up: its producers add at most their windows before it holds
    /// something, and what they add is consumed. (Holding it too stalled a request/response
    /// client on a queue of its own for as long as another queue sat full.)
    fn full(&self, ctx: &Ctx) -> bool {
        self.bytes >= ctx.config.memory_limit_bytes || (self.bytes > 0 && ctx.over_global_limit())
    }

    /// Whether a producer's answer must wait here: over the memory limit, or holding
    /// earlier answers (which go first).
    pub fn holds(&self, ctx: &Ctx) -> bool {
        self.full(ctx) || !self.blocked.is_empty()
    }

    /// Answers (or parks, while [`Topic::holds`]) a producer whose message went out through
    /// this topic and others.
    pub fn accept(&mut self, answer: Answer, ctx: &Ctx) {
        let full = self.full(ctx);
        self.blocked.accept(Some(answer), full);
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

    /// Publishes to every current non-durable subscriber that wants it (its selector, and
    /// `activemq.noLocal` against `from`, the producer's session); none: the message is
    /// dropped, as in JMS. Answers the producer when `answer` is given.
    pub fn send(
        &mut self,
        entry: Entry,
        from: Option<SessionId>,
        answer: Option<Answer>,
        ctx: &mut Ctx,
    ) {
        self.counters.enqueued += 1;
        let weight = entry.weight();
        let mut dead = Vec::new();
        for (i, s) in self.subscribers.iter_mut().enumerate() {
            if !s.consumer.wants(&entry.message, from) {
                continue;
            }
            s.pending.push_back(entry.clone());
            self.bytes += weight;
            if !drain(s, &mut self.bytes, &mut self.counters) {
                dead.push(i);
            }
        }
        self.remove_dead(dead);
        let full = self.full(ctx);
        self.blocked.accept(answer, full);
    }

    /// Publishes to one subscriber, `sub` of `session`, if it is here (an advisory replayed
    /// to a new advisory subscriber, `ToOwner::PublishTo`).
    pub fn send_to(&mut self, entry: Entry, session: SessionId, sub: SubId, ctx: &mut Ctx) {
        let Some(i) = self
            .subscribers
            .iter()
            .position(|s| s.consumer.is(session, sub))
        else {
            return;
        };
        self.counters.enqueued += 1;
        let weight = entry.weight();
        let s = &mut self.subscribers[i];
        s.pending.push_back(entry);
        self.bytes += weight;
        if !drain(s, &mut self.bytes, &mut self.counters) {
            self.remove_dead(vec![i]);
        }
        let full = self.full(ctx);
        self.blocked.release(full);
    }

    /// Adds a subscriber; it sees messages published from now on.
    pub fn subscribe(&mut self, consumer: Consumer) {
        self.subscribers.push(Subscriber {
            consumer,
            pending: VecDeque::new(),
        });
    }

    /// Removes a subscriber and its backlog.
    pub fn unsubscribe(&mut self, session: SessionId, sub: SubId, ctx: &Ctx) {
        if let Some(pos) = self
            .subscribers
            .iter()
            .position(|s| s.consumer.is(session, sub))
        {
            let s = self.subscribers.remove(pos);
            self.forget(s);
        }
        let full = self.full(ctx);
        self.blocked.release(full);
    }

    /// Removes every subscriber of a closed session.
    pub fn goodbye(&mut self, session: SessionId, ctx: &Ctx) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.subscribers)
            .into_iter()
            .partition(|s| s.consumer.session == session);
        self.subscribers = kept;
        for s in gone {
            self.forget(s);
        }
        let full = self.full(ctx);
        self.blocked.release(full);
    }

    /// Acked (or, in auto mode, written) deliveries are done.
    pub fn ack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId], ctx: &mut Ctx) {
        self.settle(session, sub, ids, false, ctx);
    }

    /// Nacked deliveries go back to the front of this subscriber's backlog (or to the
    /// dead-letter queue after `max_redeliveries`).
    pub fn nack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId], ctx: &mut Ctx) {
        self.settle(session, sub, ids, true, ctx);
    }

    fn settle(
        &mut self,
        session: SessionId,
        sub: SubId,
        ids: &[MessageId],
        requeue: bool,
        ctx: &mut Ctx,
    ) {
        if let Some(i) = self
            .subscribers
            .iter()
            .position(|s| s.consumer.is(session, sub))
        {
            let s = &mut self.subscribers[i];
            let mut settled = s.consumer.settle(ids);
            if requeue {
                settled.sort_by_key(|e| std::cmp::Reverse(e.message.id));
                for e in settled {
                    let weight = e.weight();
                    // A topic subscriber's backlog is its own: a redelivery delay does
                    // not apply here (durable subscriptions, which are queues, have it).
                    // Its own topic's policy and dead-letter queue (a wildcard
                    // subscription's backlog holds messages of many topics).
                    let origin = QueueKey::queue(e.message.destination.clone());
                    match ctx.redeliver(&origin, e, true, true) {
                        Some((e, _delay)) => {
                            self.counters.redelivered += 1;
                            s.pending.push_front(e);
                        }
                        None => {
                            self.counters.dead_lettered += 1;
                            self.bytes -= weight;
                        }
                    }
                }
            } else {
                for e in settled {
                    self.counters.acked += 1;
                    self.bytes -= e.weight();
                }
            }
            if !drain(
                &mut self.subscribers[i],
                &mut self.bytes,
                &mut self.counters,
            ) {
                self.remove_dead(vec![i]);
            }
        }
        let full = self.full(ctx);
        self.blocked.release(full);
    }

    fn forget(&mut self, s: Subscriber) {
        for e in s.pending.iter() {
            self.bytes -= e.weight();
        }
        for e in s.consumer.into_unacked() {
            self.bytes -= e.weight();
        }
    }

    fn remove_dead(&mut self, mut dead: Vec<usize>) {
        dead.sort_unstable();
        for i in dead.into_iter().rev() {
            let s = self.subscribers.remove(i);
            self.forget(s);
        }
    }
}

/// Delivers from a subscriber's backlog while it has credit. Returns false if its session is
/// gone. Deliveries stay counted until acked (auto mode: until written to the socket).
fn drain(s: &mut Subscriber, bytes: &mut u64, counters: &mut Counters) -> bool {
    let now = now_ms();
    while s.consumer.has_credit() {
        let Some(entry) = s.pending.pop_front() else {
            break;
        };
        if expired(&entry.message, now) {
            *bytes -= entry.weight();
            counters.expired += 1;
            continue;
        }
        match s.consumer.deliver(entry) {
            Ok(()) => counters.delivered += 1,
            Err(entry) => {
                s.pending.push_front(entry);
                return false;
            }
        }
    }
    true
}
