//! The admin endpoint's questions to an owner (`ToOwner::Inspect`): statistics, browsing,
//! purging and deleting destinations, answered on the owner's thread so destinations stay
//! lock-free. Destinations kept while idle (`owner/idle.rs`) are listed, browse and purge as
//! empty, and a delete forgets them at once.

use super::idle::DELETED;
use super::Owner;
use crate::destination::{Queue, Topic};
use crate::message::{DestinationStats, Inspect, Kind};
use crate::store::Request;

impl Owner {
    pub(super) fn inspect(&mut self, q: Inspect) {
        match q {
            Inspect::Stats { reply } => {
                let mut out: Vec<DestinationStats> =
                    self.queues.values().map(Queue::stats).collect();
                out.extend(self.topics.values().map(Topic::stats));
                out.extend(self.idle.stats());
                let _ = reply.send(out);
            }
            Inspect::Browse {
                key,
                offset,
                limit,
                reply,
            } => {
                let page = match self.queues.get(&key) {
                    Some(q) => Some(q.browse(offset, limit)),
                    // A queue kept while idle: listed, so it answers, with nothing waiting (a
                    // topic, idle or not, has nothing to browse).
                    None => (key.destination.kind() == crate::message::Kind::Queue
                        && self.idle.contains(&key))
                    .then(Vec::new),
                };
                let _ = reply.send(page);
            }
            Inspect::Purge { key, reply } => {
                let mut purged = self.idle.contains(&key).then_some(0);
                self.with_queue(&key, false, |q, ctx| {
                    let keep = q.unacked_ids();
                    purged = Some(q.purge());
                    ctx.request(Request::Purge {
                        key: q.key().clone(),
                        keep,
                    });
                });
                self.forget_if_idle(&key);
                let _ = reply.send(purged);
            }
            Inspect::Delete { key, reply } => {
                let result = match self.queues.get(&key) {
                    _ if key.destination.kind() == Kind::Topic && key.subscription.is_none() => {
                        match self.topics.get(&key.destination) {
                            Some(t) if t.subscriber_count() > 0 || !t.durables.is_empty() => {
                                Err("topic has subscribers or durable subscriptions".to_string())
                            }
                            _ => {
                                let held = self.topics.remove(&key.destination).is_some();
                                if self.idle.remove(&key).is_some() || held {
                                    self.advise_removed(&key.destination, DELETED);
                                }
                                Ok(0)
                            }
                        }
                    }
                    Some(q) if q.consumer_count() > 0 => {
                        Err(format!("queue has {} consumers", q.consumer_count()))
                    }
                    _ => {
                        let mut n = 0;
                        let mut existed = self.idle.remove(&key).is_some();
                        if let Some(mut q) = self.queues.remove(&key) {
                            if key.subscription.is_some() {
                                self.ctx.remove_durable();
                            }
                            let before = q.bytes();
                            n = q.purge();
                            self.ctx.charge(before, q.bytes());
                            existed = true;
                        }
                        if existed && key.subscription.is_none() {
                            self.advise_removed(&key.destination, DELETED);
                        }
                        if let Some(name) = &key.subscription {
                            if let Some(t) = self.topics.get_mut(&key.destination) {
                                t.durables.retain(|k| k.subscription.as_ref() != Some(name));
                            }
                            // As an UNSUBSCRIBE deletes one (`destroy_durable`): forgotten by
                            // the registry, and announced, so bridges drop it as demand.
                            self.ctx
                                .durable_subscriptions
                                .remove(&key.destination, name);
                            if existed {
                                self.ctx
                                    .advise(crate::message::advisory::Event::DurableRemoved {
                                        destination: &key.destination,
                                        durable: name,
                                    });
                            }
                        }
                        if key.subscription.is_none() {
                            let naming = self.ctx.config.virtual_topics();
                            if let Some(topic) = naming.topic_of(&key.destination) {
                                self.ctx.virtual_topics.remove(&topic, &key.destination);
                            }
                        }
                        self.ctx
                            .request(Request::DeleteDestination { key: key.clone() });
                        Ok(n)
                    }
                };
                let _ = reply.send(result);
            }
        }
    }
}
