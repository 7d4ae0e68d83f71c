//! Scheduled delivery on the owner of a destination: the schedules pending for destinations
//! this shard owns, ordered by when they are due, and what happens when one is.
//!
//! A scheduled SEND is counted against `max_scheduled_messages` and its message charged to
//! the global memory account until its last delivery. A persistent one is pending only once
//! its `scheduled` row is committed (then its producer is answered: the RECEIPT means the
//! schedule is on disk). Each delivery of a stored schedule is one store transaction that
//! inserts the delivered message where it goes (a queue, a topic's durable subscriptions) and
//! moves the row on, or deletes it after the last; the message enters its destination only
//! after that commit, from the writer's reply (in commit order, like a COMMIT's sends). A
//! crash before the commit leaves the schedule as it was, to be delivered after the restart;
//! after it, the delivery is in `messages` and the schedule moved on: never lost, never twice.
//! A non-persistent schedule is delivered through the ordinary SEND path.

use std::collections::BTreeMap;
use std::sync::Arc;

use log::{info, warn};

use super::Owner;
use crate::destination::Entry;
use crate::message::schedule::{occurrence, Pending, ScheduleCmd};
use crate::message::{Kind, Message, MessageId, QueueKey, StoredMessage, ToOwner, ToSession};
use crate::store::{Page, Request};

/// Wait before a delivery whose store transaction failed is tried again (ms).
const RETRY_MS: u64 = 1_000;

/// The pending schedules of one shard.
#[derive(Debug, Default)]
pub(super) struct Schedules {
    /// By (due time, schedule id): the earliest first. A schedule whose delivery is being
    /// committed is not here until the store answers.
    due: BTreeMap<(u64, MessageId), Pending>,
}

impl Schedules {
    /// When the earliest schedule is due.
    pub fn next_due(&self) -> Option<u64> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    fn insert(&mut self, p: Pending) {
        self.due.insert((p.next_at, p.id), p);
    }

    /// Takes the earliest schedule if it is due at `now`.
    fn take_due(&mut self, now: u64) -> Option<Pending> {
        let entry = self.due.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }
}

impl Owner {
    /// Applies one scheduling command.
    pub(super) fn schedule(&mut self, cmd: ScheduleCmd) {
        match cmd {
            ScheduleCmd::Add {
                session,
                message,
                schedule,
                token,
            } => {
                let Some(producer) = self.sessions.get(&session).map(|s| s.tx.clone()) else {
                    return;
                };
                if message.destination.is_temp() && !self.temps.contains_key(&message.destination) {
                    let _ = producer.send(ToSession::NoSuchTemp {
                        destination: message.destination.clone(),
                        token,
                    });
                    return;
                }
                // A scheduled message is held in memory until its last delivery: refused
                // (an ERROR naming the limit) rather than held back by flow control.
                let refuse = |name: &'static str, max: u64| {
                    let max = usize::try_from(max).unwrap_or(usize::MAX);
                    let _ = producer.send(ToSession::LimitReached { name, max, token });
                };
                if self.ctx.over_global_limit() {
                    let max = self.ctx.config.global_memory_limit_bytes;
                    refuse("global_memory_limit_bytes", max);
                    return;
                }
                if !self.ctx.add_scheduled(false) {
                    let max = self.ctx.config.max_scheduled_messages as u64;
                    refuse("max_scheduled_messages", max);
                    return;
                }
                self.ctx.charge(0, message.weight());
                let now = crate::clock::now_ms();
                let pending = Pending {
                    id: message.id,
                    destination: message.destination.clone(),
                    next_at: schedule.first_at(now),
                    period_ms: schedule.period_ms,
                    repeats_left: schedule.repeats,
                    message: message.clone(),
                };
                if self.ctx.persists(&message) {
                    let answer = pending.clone();
                    let reply = self.ctx.reply_here(move |result| {
                        ToOwner::Schedule(ScheduleCmd::Stored {
                            pending: answer,
                            producer,
                            token,
                            result,
                        })
                    });
                    self.ctx.request(Request::Schedule {
                        pending,
                        message,
                        reply,
                    });
                } else {
                    self.schedules.insert(pending);
                    let _ = producer.send(ToSession::Accepted { token });
                }
            }
            ScheduleCmd::Stored {
                pending,
                producer,
                token,
                result,
            } => match result {
                Ok(()) => {
                    self.schedules.insert(pending);
                    let _ = producer.send(ToSession::Accepted { token });
                }
                Err(reason) => {
                    self.finished(&pending);
                    let _ = producer.send(ToSession::Rejected { token, reason });
                }
            },
            ScheduleCmd::Fired {
                pending,
                next,
                message,
                copies,
                result,
            } => match (result, message) {
                (Ok(()), Some(message)) => {
                    self.deliver_stored(message, copies);
                    match next {
                        Some(next) => self.schedules.insert(next),
                        None => self.finished(&pending),
                    }
                }
                (Ok(()), None) => {
                    info!(
                        "schedule {} of {} is no longer stored; dropped",
                        pending.id, pending.destination
                    );
                    self.finished(&pending);
                }
                (Err(e), _) => {
                    warn!(
                        "delivery of schedule {} to {} failed, retrying in {RETRY_MS} ms: {e}",
                        pending.id, pending.destination
                    );
                    let retry = Pending {
                        next_at: crate::clock::now_ms() + RETRY_MS,
                        ..pending
                    };
                    self.schedules.insert(retry);
                }
            },
            ScheduleCmd::Recovered(pending) => {
                for p in pending {
                    self.ctx.add_scheduled(true);
                    self.ctx.charge(0, p.message.weight());
                    self.schedules.insert(p);
                }
            }
        }
    }

    /// Delivers every schedule due at `now`.
    pub(super) fn fire_due(&mut self, now: u64) {
        while let Some(p) = self.schedules.take_due(now) {
            self.fire(p, now);
        }
    }

    /// One delivery of `p` at `now`.
    fn fire(&mut self, p: Pending, now: u64) {
        // A temporary destination whose connection closed is gone with its schedules: a
        // delivery must not bring it back (nobody could ever consume it).
        if p.destination.is_temp() && !self.temps.contains_key(&p.destination) {
            self.finished(&p);
            return;
        }
        let next = (p.repeats_left > 0).then(|| Pending {
            next_at: now.saturating_add(p.period_ms),
            repeats_left: p.repeats_left - 1,
            ..p.clone()
        });
        let id = self.ctx.ids.next();
        let message = occurrence(&p.message, id, now);
        if !self.ctx.persists(&message) {
            self.send(Arc::new(message), None);
            match next {
                Some(next) => self.schedules.insert(next),
                None => self.finished(&p),
            }
            return;
        }
        let copies = match p.destination.kind() {
            Kind::Queue => vec![(QueueKey::queue(p.destination.clone()), id)],
            Kind::Topic => {
                let durables: Vec<QueueKey> = self
                    .topics
                    .get(&p.destination)
                    .map(|t| {
                        t.durables
                            .iter()
                            .filter(|key| self.queues.get(*key).is_none_or(|q| q.wants(&message)))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                durables
                    .into_iter()
                    .enumerate()
                    .map(|(i, key)| (key, if i == 0 { id } else { self.ctx.ids.next() }))
                    .collect()
            }
        };
        let answer = (p.clone(), next.clone(), copies.clone());
        let reply = self.ctx.reply_here(move |result: Result<Page, Arc<str>>| {
            let (pending, next, copies) = answer;
            let (message, result) = match result {
                Ok(mut page) => (page.messages.pop().map(|m| m.message), Ok(())),
                Err(e) => (None, Err(e)),
            };
            ToOwner::Schedule(ScheduleCmd::Fired {
                pending,
                next,
                message,
                copies,
                result,
            })
        });
        self.ctx.request(Request::Fire {
            schedule: p.id,
            now,
            id,
            copies,
            next: next.map(|n| (n.next_at, n.repeats_left)),
            reply,
        });
    }

    /// A committed delivery of a stored schedule enters its destination: the queues of
    /// `copies` adopt their rows, a topic's other subscribers (wildcard ones too) get it in
    /// memory.
    fn deliver_stored(&mut self, message: Arc<Message>, copies: Vec<(QueueKey, MessageId)>) {
        if message.destination.kind() == Kind::Topic {
            let name = message.destination.clone();
            let m = message.clone();
            self.with_topic(&name, false, |t, ctx| {
                t.send(Entry::new(m), None, None, ctx)
            });
            let patterns = self.wild.topics_matching(&name);
            self.publish_wild(&patterns, &message, None);
        }
        for (key, id) in copies {
            let copy = if id == message.id {
                message.clone()
            } else {
                Arc::new(Message {
                    id,
                    ..(*message).clone()
                })
            };
            let stored = StoredMessage {
                message: copy,
                redelivery_count: 0,
            };
            self.with_queue(&key, true, |q, ctx| q.adopt(stored, ctx));
            self.forget_if_idle(&key);
        }
    }

    /// A schedule is over (its last delivery, or it was refused): uncounted, uncharged.
    fn finished(&mut self, p: &Pending) {
        self.ctx.remove_scheduled();
        self.ctx.charge(p.message.weight(), 0);
    }
}
