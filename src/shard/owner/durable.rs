//! Durable topic subscriptions on their topic's owner: each is a queue of its own, keyed by
//! the topic and `client_id:name`, that the topic copies every published message into, and a
//! row in the store.

use std::sync::Arc;

use super::Owner;
use crate::destination::{receipts_reply, Queue};
use crate::message::{
    DestinationName, DurableName, QueueKey, SessionId, SessionTx, ToSession, Token,
};
use crate::selector::Selector;
use crate::store::Request;

impl Owner {
    /// The queue of durable subscription `d` to `topic` for a SUBSCRIBE, recorded in the
    /// store, whose reply answers `token` once the record is on disk. None, once the session
    /// is told, when `max_durable_subscriptions` are there already and `d` is new.
    ///
    /// A SUBSCRIBE whose selector differs from the one the subscription has (none counts as
    /// one) deletes it with everything it holds and starts it afresh, as ActiveMQ does: the
    /// messages kept so far were chosen by the old selector.
    pub(super) fn subscribe_durable(
        &mut self,
        d: DurableName,
        topic: DestinationName,
        selector: Option<Arc<Selector>>,
        tx: &SessionTx,
        token: Option<Token>,
    ) -> Option<QueueKey> {
        let text = |s: Option<&Arc<Selector>>| s.map(|s| s.text().to_string());
        if let Some(q) = self.queues.get(&durable_key(&d, &topic)) {
            if text(q.filter()) != text(selector.as_ref()) {
                self.destroy_durable(d.clone(), topic.clone());
            }
        }
        if !self.queues.contains_key(&durable_key(&d, &topic)) && !self.ctx.add_durable(false) {
            let _ = tx.send(ToSession::LimitReached {
                name: "max_durable_subscriptions",
                max: self.ctx.config.max_durable_subscriptions,
                token,
            });
            return None;
        }
        let key = self.durable(&d, &topic, false);
        if let Some(q) = self.queues.get_mut(&key) {
            q.set_filter(selector.clone());
        }
        self.ctx
            .durable_subscriptions
            .set(&topic, &d.key(), selector.as_ref().map(|s| s.text()));
        self.ctx.request(Request::DurableSubscribe {
            durable: d,
            topic,
            selector: selector.map(|s| Arc::from(s.text())),
            reply: token.map(|t| receipts_reply(vec![(tx.clone(), t)])),
        });
        Some(key)
    }

    /// The queue of durable subscription `d` to `topic`, created (and registered with the
    /// topic) if new.
    /// `recovered`: at recovery, when a new topic is not announced.
    pub(super) fn durable(
        &mut self,
        d: &DurableName,
        topic: &DestinationName,
        recovered: bool,
    ) -> QueueKey {
        let key = durable_key(d, topic);
        if !self.queues.contains_key(&key) {
            self.queues.insert(key.clone(), Queue::new(key.clone()));
        }
        if !self.topics.contains_key(topic) {
            self.create_topic(topic, recovered);
        }
        if let Some(t) = self.topics.get_mut(topic) {
            if !t.durables.contains(&key) {
                t.durables.push(key.clone());
            }
        }
        key
    }

    /// Deletes durable subscription `d` of `topic` (for `session`'s UNSUBSCRIBE) unless a
    /// consumer is attached to it: then the session is told, with `token`, and false returned
    /// (ActiveMQ: "Durable consumer is in use").
    pub(super) fn destroy_durable_unless_in_use(
        &mut self,
        session: SessionId,
        d: DurableName,
        topic: DestinationName,
        token: Option<Token>,
    ) -> bool {
        let in_use = self
            .queues
            .get(&durable_key(&d, &topic))
            .is_some_and(|q| q.consumer_count() > 0);
        if in_use {
            if let Some(s) = self.sessions.get(&session) {
                let _ = s.tx.send(ToSession::DurableInUse {
                    name: d.key().to_string(),
                    token,
                });
            }
            return false;
        }
        self.destroy_durable(d, topic);
        true
    }

    /// Deletes durable subscription `d` of `topic` and everything it holds.
    pub(super) fn destroy_durable(&mut self, d: DurableName, topic: DestinationName) {
        let key = durable_key(&d, &topic);
        if let Some(mut q) = self.queues.remove(&key) {
            self.ctx.remove_durable();
            let before = q.bytes();
            q.purge();
            self.ctx.charge(before, q.bytes());
        }
        if let Some(t) = self.topics.get_mut(&topic) {
            t.durables.retain(|k| *k != key);
        }
        self.ctx.durable_subscriptions.remove(&topic, &d.key());
        self.ctx
            .advise(crate::message::advisory::Event::DurableRemoved {
                destination: &topic,
                durable: &d.key(),
            });
        self.forget_topic_if_idle(&topic);
        self.ctx
            .request(Request::DurableUnsubscribe { durable: d, topic });
    }
}

/// The queue key of durable subscription `d` to `topic`.
pub(super) fn durable_key(d: &DurableName, topic: &DestinationName) -> QueueKey {
    QueueKey {
        destination: topic.clone(),
        subscription: Some(d.key()),
    }
}

/// A stored durable subscription's selector, parsed again at recovery. It parsed when it was
/// stored; if this version refuses it, the subscription keeps everything rather than nothing.
pub(super) fn recovered_selector(text: &str) -> Option<Arc<Selector>> {
    match Selector::parse(text) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            log::warn!("stored durable subscription selector {text:?} no longer parses ({e}); keeping every message for it");
            None
        }
    }
}
