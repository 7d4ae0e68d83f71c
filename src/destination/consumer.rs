//! A consumer as its destination's owner sees it: where to deliver, how much credit is left
//! (prefetch minus deliveries not yet acked or, in auto mode, not yet written to the socket),
//! and which messages it holds until then. Shared by queues and topics.
//!
//! An auto-ack delivery is consumed only when its session says its bytes reached the socket
//! (it then ACKs it like a client would): a delivery still in the session's channel or write
//! buffer when the subscription ends was never delivered, and goes back to its destination
//! unchanged.

use foldhash::HashMap;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use crate::message::network::arrives_redelivered;
use crate::message::{
    AckMode, ConsumerOptions, Message, MessageId, SessionId, SessionTx, SubId, ToSession,
};

/// A message waiting in a destination, or held by a consumer.
#[derive(Debug, Clone)]
pub struct Entry {
    pub message: Arc<Message>,
    /// How often it was delivered and came back (NACK, unsubscribe, disconnect, ABORT).
    pub redelivery_count: u32,
    /// The queue's consumer generation at which no consumer would take it (selectors,
    /// exclusivity, groups), so dispatch passes over it without asking again until the
    /// consumers change (0 = not known).
    pub passed_at: u32,
}

impl Entry {
    /// A message that was never delivered here. One a bridge marks as a possible duplicate
    /// (`stompbox-network-redelivered: true`: the broker it came from had delivered it
    /// before) counts as delivered once, so its first delivery says `redelivered:true`.
    pub fn new(message: Arc<Message>) -> Self {
        Entry {
            redelivery_count: u32::from(arrives_redelivered(&message.headers)),
            message,
            passed_at: 0,
        }
    }

    /// Bytes this entry counts against the destination's memory limit.
    pub fn weight(&self) -> u64 {
        self.message.weight()
    }
}

/// One subscription, on its owner shard.
#[derive(Debug)]
pub struct Consumer {
    pub session: SessionId,
    pub sub: SubId,
    tx: SessionTx,
    options: ConsumerOptions,
    /// Deliveries not yet acked (client modes) or not yet written (auto mode). Shared by the
    /// siblings of a wildcard subscription on one shard ([`Consumer::sibling`]): its prefetch
    /// bounds what it holds across all the queues it is attached to there.
    outstanding: Rc<Cell<u32>>,
    /// Deliveries not yet acked or written: what goes back if the consumer goes away.
    unacked: HashMap<MessageId, Entry>,
    /// One of the siblings of a wildcard subscription: its queue may forget it while it
    /// holds nothing (the subscription attaches again when the queue comes back).
    wildcard: bool,
}

impl Consumer {
    /// A consumer with full credit.
    pub fn new(session: SessionId, sub: SubId, tx: SessionTx, options: ConsumerOptions) -> Self {
        Consumer {
            session,
            sub,
            tx,
            options,
            outstanding: Rc::new(Cell::new(0)),
            unacked: HashMap::default(),
            wildcard: false,
        }
    }

    /// Another attachment of the same wildcard subscription (to another queue on this
    /// shard): same session, options and credit, its own deliveries.
    pub fn sibling(&self) -> Consumer {
        Consumer {
            session: self.session,
            sub: self.sub,
            tx: self.tx.clone(),
            options: self.options.clone(),
            outstanding: self.outstanding.clone(),
            unacked: HashMap::default(),
            wildcard: true,
        }
    }

    /// An attachment of a wildcard subscription that holds no delivery here: its queue may
    /// be forgotten as if it had no consumer.
    pub fn is_idle_wildcard(&self) -> bool {
        self.wildcard && self.unacked.is_empty()
    }

    /// True if `(session, sub)` names this consumer.
    pub fn is(&self, session: SessionId, sub: SubId) -> bool {
        self.session == session && self.sub == sub
    }

    /// Auto-ack: deliveries it still holds were never written to the client, so they go back
    /// unchanged (not counted as redelivered) when it leaves.
    pub fn is_auto(&self) -> bool {
        self.options.ack == AckMode::Auto
    }

    /// Whether it takes `message` at all, credit aside: its selector is true for it and, with
    /// `activemq.noLocal`, its own connection (`from`) did not send it.
    pub fn wants(&self, message: &Message, from: Option<SessionId>) -> bool {
        if self.options.no_local && from == Some(self.session) {
            return false;
        }
        self.options
            .selector
            .as_ref()
            .is_none_or(|s| s.matches(message))
    }

    /// Its selector.
    pub fn selector(&self) -> Option<&Arc<crate::selector::Selector>> {
        self.options.selector.as_ref()
    }

    /// It has a selector.
    pub fn selective(&self) -> bool {
        self.options.selector.is_some()
    }

    /// `activemq.exclusive`.
    pub fn exclusive(&self) -> bool {
        self.options.exclusive
    }

    /// `activemq.priority`.
    pub fn priority(&self) -> i8 {
        self.options.priority
    }

    /// The brokers a network bridge's subscription stands for (`stompbox-broker-path`).
    pub fn broker_path(&self) -> Option<&Arc<str>> {
        self.options.broker_path.as_ref()
    }

    /// Ids of the deliveries awaiting ACK/NACK (or, in auto mode, their write).
    pub fn unacked_ids(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.unacked.keys().copied()
    }

    /// Deliveries not yet acked (client modes) or not yet written (auto mode), here (a
    /// wildcard subscription's siblings count theirs apart; their credit is shared).
    pub fn outstanding(&self) -> u32 {
        self.unacked.len() as u32
    }

    /// May another message be sent now?
    pub fn has_credit(&self) -> bool {
        self.outstanding.get() < self.options.prefetch
    }

    /// How many deliveries it may hold at once.
    pub fn prefetch(&self) -> u32 {
        self.options.prefetch
    }

    /// Sends `entry`. On failure (the session is gone) the entry is handed back.
    pub fn deliver(&mut self, entry: Entry) -> Result<(), Entry> {
        let msg = ToSession::Deliver {
            sub: self.sub,
            message: entry.message.clone(),
            redelivery_count: entry.redelivery_count,
        };
        if self.tx.send(msg).is_err() {
            return Err(entry);
        }
        self.outstanding.set(self.outstanding.get() + 1);
        self.unacked.insert(entry.message.id, entry);
        Ok(())
    }

    /// Acked (or, in auto mode, written) deliveries: frees credit and returns the entries
    /// (unknown ids are skipped; they were already requeued by an earlier NACK or never
    /// belonged to this consumer).
    pub fn settle(&mut self, ids: &[MessageId]) -> Vec<Entry> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = self.unacked.remove(id) {
                self.outstanding
                    .set(self.outstanding.get().saturating_sub(1));
                out.push(e);
            }
        }
        out
    }

    /// Everything still unacked, oldest first (the consumer is leaving; its siblings, if
    /// any, get the credit back).
    pub fn into_unacked(self) -> Vec<Entry> {
        let held = self.unacked.len() as u32;
        self.outstanding
            .set(self.outstanding.get().saturating_sub(held));
        let mut out: Vec<Entry> = self.unacked.into_values().collect();
        out.sort_by_key(|e| e.message.id);
        out
    }

    /// Sends an answer to this consumer's session (ignoring a session that is gone).
    pub fn tell(&self, msg: ToSession) {
        let _ = self.tx.send(msg);
    }
}

/// Who to answer once a SEND is accepted: the producer's session and the receipt token.
#[derive(Debug)]
pub struct Answer {
    pub session: SessionId,
    pub tx: SessionTx,
    pub token: Option<crate::message::Token>,
}

/// Producers whose SEND answers are held back while a destination is over its memory limit.
#[derive(Debug, Default)]
pub struct Blocked {
    waiting: std::collections::VecDeque<Answer>,
    /// Held answers per producer session.
    producers: HashMap<SessionId, usize>,
    /// SENDs whose answer was held back (flow-control events), ever.
    pub parked_total: u64,
}

impl Blocked {
    /// Answers a SEND now, or parks the answer when `full` (or when earlier answers are
    /// parked, so one producer's answers stay in order).
    pub fn accept(&mut self, answer: Option<Answer>, full: bool) {
        let Some(answer) = answer else { return };
        if full || !self.waiting.is_empty() {
            self.parked_total += 1;
            *self.producers.entry(answer.session).or_insert(0) += 1;
            self.waiting.push_back(answer);
        } else {
            let _ = answer.tx.send(ToSession::Accepted {
                token: answer.token,
            });
        }
    }

    /// Releases parked answers once the destination has room again.
    pub fn release(&mut self, full: bool) {
        if full {
            return;
        }
        self.producers.clear();
        for a in self.waiting.drain(..) {
            let _ = a.tx.send(ToSession::Accepted { token: a.token });
        }
    }

    /// Producers (sessions) with answers held right now.
    pub fn producers(&self) -> usize {
        self.producers.len()
    }

    /// True when nobody is parked.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}
