//! A queue: each message to exactly one consumer, round-robin among consumers with credit,
//! highest priority first and FIFO within a priority.

use std::collections::BTreeMap;

use super::consumer::{message_weight, Blocked, Consumer, Entry};
use super::DestinationName;
use crate::message::{MessageId, SessionId, SessionTx, SubId, Token};

/// A point-to-point destination on its owner shard.
#[derive(Debug)]
pub struct Queue {
    name: DestinationName,
    /// Waiting messages keyed by (9 - priority, id): the first key is the next to deliver.
    messages: BTreeMap<(u8, MessageId), Entry>,
    consumers: Vec<Consumer>,
    /// Where the next round-robin search starts.
    cursor: usize,
    /// Bytes held: waiting messages plus unacked deliveries.
    bytes: u64,
    memory_limit_bytes: u64,
    blocked: Blocked,
}

impl Queue {
    /// An empty queue.
    pub fn new(name: DestinationName, memory_limit_bytes: u64) -> Self {
        Queue {
            name,
            messages: BTreeMap::new(),
            consumers: Vec::new(),
            cursor: 0,
            bytes: 0,
            memory_limit_bytes,
            blocked: Blocked::default(),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &DestinationName {
        &self.name
    }

    /// Messages waiting (not counting unacked deliveries).
    pub fn depth(&self) -> usize {
        self.messages.len()
    }

    /// No messages, no consumers, nobody parked: the owner may forget this queue.
    pub fn is_idle(&self) -> bool {
        self.messages.is_empty() && self.consumers.is_empty() && self.blocked.is_empty()
    }

    fn full(&self) -> bool {
        self.bytes >= self.memory_limit_bytes
    }

    /// Enqueues a new message and answers its producer (now, or once there is room).
    pub fn send(&mut self, entry: Entry, producer: &SessionTx, token: Option<Token>) {
        self.bytes += entry.weight();
        self.insert(entry);
        self.dispatch();
        self.blocked.accept(producer, token, self.full());
    }

    /// Adds a consumer and delivers to it what it has credit for.
    pub fn subscribe(&mut self, consumer: Consumer) {
        self.consumers.push(consumer);
        self.dispatch();
    }

    /// Removes a consumer; its unacked messages go back, marked redelivered.
    pub fn unsubscribe(&mut self, session: SessionId, sub: SubId) {
        if let Some(pos) = self.consumers.iter().position(|c| c.is(session, sub)) {
            let consumer = self.consumers.remove(pos);
            self.requeue(consumer.into_unacked());
        }
        self.after_change();
    }

    /// Removes every consumer of a closed session.
    pub fn goodbye(&mut self, session: SessionId) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.consumers)
            .into_iter()
            .partition(|c| c.session == session);
        self.consumers = kept;
        for c in gone {
            self.requeue(c.into_unacked());
        }
        self.after_change();
    }

    /// Acked: the messages are done.
    pub fn ack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId]) {
        if let Some(c) = self.consumers.iter_mut().find(|c| c.is(session, sub)) {
            for e in c.settle(ids) {
                self.bytes -= e.weight();
            }
        }
        self.after_change();
    }

    /// Nacked: the messages go back to the queue, marked redelivered.
    pub fn nack(&mut self, session: SessionId, sub: SubId, ids: &[MessageId]) {
        if let Some(c) = self.consumers.iter_mut().find(|c| c.is(session, sub)) {
            let mut back = c.settle(ids);
            for e in &mut back {
                e.redelivered = true;
            }
            self.requeue(back);
        }
        self.after_change();
    }

    /// Auto-ack consumer wrote `n` messages.
    pub fn credit(&mut self, session: SessionId, sub: SubId, n: u32) {
        if let Some(c) = self.consumers.iter_mut().find(|c| c.is(session, sub)) {
            c.credit(n);
        }
        self.dispatch();
    }

    fn requeue(&mut self, entries: Vec<Entry>) {
        for e in entries {
            self.insert(e);
        }
    }

    fn insert(&mut self, entry: Entry) {
        let key = (9 - entry.message.priority.min(9), entry.message.id);
        self.messages.insert(key, entry);
    }

    fn after_change(&mut self) {
        self.dispatch();
        self.blocked.release(self.full());
    }

    /// Hands waiting messages to consumers with credit, round-robin.
    fn dispatch(&mut self) {
        while !self.consumers.is_empty() {
            let Some(first) = self.messages.first_entry() else {
                return;
            };
            let n = self.consumers.len();
            let Some(idx) = (0..n)
                .map(|i| (self.cursor + i) % n)
                .find(|&i| self.consumers[i].has_credit())
            else {
                return;
            };
            if first.get().message.expires != 0 && first.get().message.expires <= now_ms() {
                let e = first.remove();
                self.bytes -= message_weight(&e.message);
                continue;
            }
            let entry = first.remove();
            let auto_weight = entry.weight();
            let consumer = &mut self.consumers[idx];
            let tracked = consumer.keeps_unacked();
            match consumer.deliver(entry) {
                Ok(()) => {
                    self.cursor = (idx + 1) % n;
                    if !tracked {
                        self.bytes -= auto_weight;
                    }
                }
                Err(entry) => {
                    // The session is gone; its Goodbye is on the way. Stop using it now.
                    self.insert(entry);
                    let dead = self.consumers.remove(idx);
                    self.requeue(dead.into_unacked());
                    self.cursor = 0;
                }
            }
        }
    }
}

/// Milliseconds since the epoch, for `expires`.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
