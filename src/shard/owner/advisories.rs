//! Consumer advisories (`ActiveMQ.Advisory.Consumer.…`, `message/advisory.rs`) as the owner
//! publishes them when a subscription starts or ends on one of its destinations, with the
//! number of consumers the destination has then.

use std::sync::Arc;

use super::{Attached, Owner};
use crate::destination::{Entry, Queue};
use crate::message::advisory::{self, ConsumerInfo, Event};
use crate::message::{DestinationName, Kind, Message, QueueKey, SessionId, SubId};

/// The destination a subscription attached as `target` consumes from (a durable
/// subscription's: its topic; a wildcard subscription's: its pattern).
pub(super) fn destination_of(target: &Attached) -> DestinationName {
    match target {
        Attached::Queue(key) => key.destination.clone(),
        Attached::Topic(name) | Attached::WildQueue(name) | Attached::WildTopic(name) => {
            name.clone()
        }
    }
}

impl Owner {
    /// Publishes a consumer advisory for `destination` (its topic or queue, or a wildcard
    /// pattern), with the number of consumers it has now.
    pub(super) fn advise_consumer(
        &self,
        destination: &DestinationName,
        consumer: ConsumerInfo<'_>,
        added: bool,
    ) {
        if !self.ctx.config.advisories || advisory::is_advisory(destination) {
            return;
        }
        // A wildcard subscription is on every shard; the pattern's owner speaks for it.
        if destination.is_wildcard() && self.ctx.router.owner_of(destination) != self.ctx.shard {
            return;
        }
        let count = self.consumer_count(destination);
        self.ctx.advise(match added {
            true => Event::ConsumerAdded {
                destination,
                consumer,
                count,
            },
            false => Event::ConsumerRemoved {
                destination,
                consumer,
                count,
            },
        });
    }

    /// Consumers of `destination` on this shard: a queue's; a topic's subscribers and its
    /// durable subscriptions with a consumer attached; a wildcard pattern's subscriptions.
    fn consumer_count(&self, destination: &DestinationName) -> usize {
        if destination.is_wildcard() {
            return self.wild.pattern_consumers(destination);
        }
        match destination.kind() {
            Kind::Queue => self
                .queues
                .get(&QueueKey::queue(destination.clone()))
                .map_or(0, Queue::consumer_count),
            Kind::Topic => self.topics.get(destination).map_or(0, |t| {
                t.subscriber_count()
                    + t.durables
                        .iter()
                        .filter(|k| self.queues.get(*k).is_some_and(|q| q.consumer_count() > 0))
                        .count()
            }),
        }
    }

    /// Publishes `message` (to a topic) to one subscriber, `sub` of `session`, whether it
    /// subscribed to the topic or to a pattern matching it; nobody else receives it.
    pub(super) fn publish_to(&mut self, message: Arc<Message>, session: SessionId, sub: SubId) {
        let name = message.destination.clone();
        if name.kind() != Kind::Topic {
            return;
        }
        let entry = Entry::new(message);
        if self.topics.contains_key(&name) {
            let e = entry.clone();
            self.with_topic(&name, false, |t, ctx| t.send_to(e, session, sub, ctx));
        }
        for p in self.wild.topics_matching(&name) {
            let e = entry.clone();
            self.with_wild_topic(&p, false, |t, ctx| t.send_to(e, session, sub, ctx));
        }
    }

    /// The consumer advisory of a subscription that ended (`sub` of `session`, attached to
    /// `target`).
    pub(super) fn advise_consumer_removed(
        &self,
        session: SessionId,
        sub: SubId,
        target: &Attached,
    ) {
        let destination = destination_of(target);
        // A durable subscriber leaving says so: its subscription stays, and keeps messages.
        let durable = match target {
            Attached::Queue(key) => key.subscription.as_deref(),
            _ => None,
        };
        let info = ConsumerInfo {
            connection: session.0,
            subscription: sub.0,
            selector: None,
            durable,
            broker_path: None,
            active: true,
        };
        self.advise_consumer(&destination, info, false);
    }
}
