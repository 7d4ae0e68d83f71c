//! A topic: every message to every current subscriber. A subscriber without credit gets its
//! messages queued in its own pending list; while any subscriber's backlog keeps the topic over
//! its memory limit, producers are slowed down (their SEND answers are held).

use std::collections::VecDeque;

use super::consumer::{Blocked, Consumer, Entry};
use super::DestinationName;
use crate::message::{MessageId, SessionId, SessionTx, SubId, Token};

/// A subscriber and its backlog.
#[derive(Debug)]
struct Subscriber {
    consumer: Consumer,
    pending: VecDeque<Entry>,
}

/// A fan-out destination on its owner shard.
#[derive(Debug)]
pub struct Topic {
    name: DestinationName,
    subscribers: Vec<Subscriber>,
    /// Bytes held in subscribers' backlogs and unacked deliveries (a message shared by several
    /// subscribers counts once per subscriber holding it).
    bytes: u64,
    memory_limit_bytes: u64,
    blocked: Blocked,
}

impl Topic {
    /// A topic with no subscribers.
    pub fn new(name: DestinationName, memory_limit_bytes: u64) -> Self {
        Topic {
            name,
            subscribers: Vec::new(),
            bytes: 0,
            memory_limit_bytes,
            blocked: Blocked::default(),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &DestinationName {
        &self.name
    }

    /// No subscribers and nobody parked: the owner may forget this topic.
    pub fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.blocked.is_empty()
    }

    fn full(&self) -> bool {
        self.bytes >= self.memory_limit_bytes
    }

    /// Publishes to every current subscriber (none: the message is dropped, as in JMS).
    pub fn send(&mut self, entry: Entry, producer: &SessionTx, token: Option<Token>) {
        let weight = entry.weight();
        let mut dead = Vec::new();
        for (i, s) in self.subscribers.iter_mut().enumerate() {
            s.pending.push_back(entry.clone());
            self.bytes += weight;
            if !drain(s, &mut self.bytes) {
                dead.push(i);
            }
        }
        self.remove_dead(dead);
        self.blocked.accept(producer, token, self.full());
    }

    /// Adds a subscriber; it sees messages published from now on.
    pub fn subscribe(&mut self, consumer: Consumer) {
        self.subscribers.push(Subscriber {
            consumer,
            pending: VecDeque::new(),
        });
    }

    /// Removes a subscriber and its backlog.
    pub fn unsubscribe(&mut self, session: SessionId, sub: SubId) {
        if let Some(pos) = self
            .subscribers
            .iter()
            .position(|s| s.consumer.is(session, sub))
        {
            let s = self.subscribers.remove(pos);
            self.forget(s);
        }
        self.blocked.release(self.full());
    }

    /// Removes every subscriber of a closed session.
    pub fn goodbye(&mut self, session: SessionId) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.subscribers)
            .into_iter()
            .partition(|s| s.consumer.session == session);
        self.subscribers = kept;
        for s in gone {
            self.forget(s);
        }
        self.blocked.release(self.full());
    }

    /// Acked deliveries are done.
    pub fn ack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId]) {
        self.settle(session, sub, ids, false);
    }

    /// Nacked deliveries go back to the front of this subscriber's backlog, redelivered.
    pub fn nack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId]) {
        self.settle(session, sub, ids, true);
    }

    /// Auto-ack subscriber wrote `n` messages.
    pub fn credit(&mut self, session: SessionId, sub: SubId, n: u32) {
        if let Some(i) = self
            .subscribers
            .iter()
            .position(|s| s.consumer.is(session, sub))
        {
            self.subscribers[i].consumer.credit(n);
            if !drain(&mut self.subscribers[i], &mut self.bytes) {
                self.remove_dead(vec![i]);
            }
        }
        self.blocked.release(self.full());
    }

    fn settle(&mut self, session: SessionId, sub: SubId, ids: &[MessageId], requeue: bool) {
        if let Some(i) = self
            .subscribers
            .iter()
            .position(|s| s.consumer.is(session, sub))
        {
            let s = &mut self.subscribers[i];
            let mut settled = s.consumer.settle(ids);
            if requeue {
                settled.sort_by_key(|e| std::cmp::Reverse(e.message.id));
                for mut e in settled {
                    e.redelivered = true;
                    s.pending.push_front(e);
                }
            } else {
                for e in settled {
                    self.bytes -= e.weight();
                }
            }
            if !drain(&mut self.subscribers[i], &mut self.bytes) {
                self.remove_dead(vec![i]);
            }
        }
        self.blocked.release(self.full());
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
/// gone. Auto-mode deliveries leave the topic's memory as they are sent.
fn drain(s: &mut Subscriber, bytes: &mut u64) -> bool {
    while s.consumer.has_credit() {
        let Some(entry) = s.pending.pop_front() else {
            break;
        };
        if entry.message.expires != 0 && entry.message.expires <= super::queue::now_ms() {
            *bytes -= entry.weight();
            continue;
        }
        let weight = entry.weight();
        let keeps = s.consumer.keeps_unacked();
        match s.consumer.deliver(entry) {
            Ok(()) if !keeps => *bytes -= weight,
            Ok(()) => {}
            Err(entry) => {
                s.pending.push_front(entry);
                return false;
            }
        }
    }
    true
}
