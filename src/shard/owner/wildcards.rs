//! Wildcard subscriptions (`/topic/prices.>`, `/queue/orders.*`) on one shard. The session
//! posts such a SUBSCRIBE to every shard, since the destinations it matches hash to any of
//! them; each shard serves the ones it owns, now and as they appear.
//!
//! - **Topics**: the subscriptions of one pattern share a [`Topic`] of their own, keyed by
//!   the pattern. A message published to a topic of this shard is also published to every
//!   pattern topic whose pattern matches its name (one walk of a [`PatternTrie`]), so a
//!   wildcard subscriber has one backlog and one prefetch window per shard, the flow control
//!   and slow-consumer rule of any topic, and its messages in each topic's order.
//! - **Queues**: a message in a queue goes to one of that queue's consumers, so a wildcard
//!   subscription attaches a consumer to every matching queue of the shard (existing ones at
//!   SUBSCRIBE, new ones as they are created). The attachments are siblings that share one
//!   credit ([`Consumer::sibling`]): the prefetch bounds what the subscription holds across
//!   all of them, and credit freed on one queue lets every attached queue dispatch again. A
//!   queue whose only consumers are idle wildcard attachments is forgotten like one without
//!   consumers (so a stream of one-off names cannot grow the shard), and attached again when
//!   it comes back.

use foldhash::{HashMap, HashSet};

use super::{Attached, Owner};
use crate::destination::{Answer, Consumer, Ctx, Topic};
use crate::message::wildcard::{Pattern, PatternTrie};
use crate::message::{DestinationName, Kind, MessageId, QueueKey, SessionId, SubId, ToSession};

/// One wildcard subscription to queues, on this shard.
struct WildQueue {
    /// The subscription's destination, e.g. `/queue/orders.>`.
    name: DestinationName,
    pattern: Pattern,
    /// Never attached itself: what each attachment is a [`Consumer::sibling`] of.
    template: Consumer,
    /// The queues of this shard it is attached to.
    attached: HashSet<QueueKey>,
    /// Which of them is offered freed credit first, next time: they take turns, so one
    /// queue with a backlog cannot starve the others.
    turn: usize,
}

/// The wildcard subscriptions of one shard.
#[derive(Default)]
pub(super) struct Wildcards {
    /// Pattern (e.g. `/topic/a.>`) → the topic fanning out to its subscribers.
    topics: HashMap<DestinationName, Topic>,
    topic_patterns: PatternTrie<DestinationName>,
    queues: HashMap<(SessionId, SubId), WildQueue>,
    queue_patterns: PatternTrie<(SessionId, SubId)>,
}

impl Wildcards {
    /// Wildcard subscriptions of this shard with destination `pattern`.
    pub fn pattern_consumers(&self, pattern: &DestinationName) -> usize {
        match pattern.kind() {
            Kind::Topic => self.topics.get(pattern).map_or(0, Topic::subscriber_count),
            Kind::Queue => self.queues.values().filter(|w| w.name == *pattern).count(),
        }
    }

    /// The patterns of topic subscriptions that `topic` matches (no allocation while there
    /// are none).
    pub fn topics_matching(&self, topic: &DestinationName) -> Vec<DestinationName> {
        let mut out = Vec::new();
        // A temporary topic belongs to its connection: no wildcard reads it.
        if !self.topic_patterns.is_empty() && !topic.is_temp() {
            self.topic_patterns
                .for_each_match(topic.name(), |p| out.push(p.clone()));
        }
        out
    }
}

impl Owner {
    /// SUBSCRIBE to a wildcard destination: attached on this shard; the session answers
    /// the RECEIPT once every shard did.
    pub(super) fn subscribe_wildcard(&mut self, consumer: Consumer, pattern: DestinationName) {
        let (session, sub) = (consumer.session, consumer.sub);
        let target = match pattern.kind() {
            Kind::Topic => {
                if !self.wild.topics.contains_key(&pattern) {
                    let p = Pattern::new(pattern.name());
                    self.wild.topic_patterns.insert(&p, pattern.clone());
                }
                self.with_wild_topic(&pattern, true, |t, _| t.subscribe(consumer));
                Attached::WildTopic(pattern)
            }
            Kind::Queue => {
                let p = Pattern::new(pattern.name());
                let matching: Vec<QueueKey> = self
                    .queues
                    .keys()
                    .filter(|k| k.subscription.is_none() && k.destination.kind() == Kind::Queue)
                    .filter(|k| !k.destination.is_temp())
                    .filter(|k| p.matches(k.destination.name()))
                    .cloned()
                    .collect();
                self.wild.queue_patterns.insert(&p, (session, sub));
                self.wild.queues.insert(
                    (session, sub),
                    WildQueue {
                        name: pattern.clone(),
                        pattern: p,
                        template: consumer,
                        attached: HashSet::default(),
                        turn: 0,
                    },
                );
                for key in matching {
                    self.attach_wildcards_to(&key, Some((session, sub)));
                }
                Attached::WildQueue(pattern)
            }
        };
        if let Some(s) = self.sessions.get_mut(&session) {
            s.subs.insert(sub, target);
        }
    }

    /// Attaches to the new queue `key` the wildcard subscriptions that match it (or only
    /// `only`).
    pub(super) fn attach_wildcards_to(&mut self, key: &QueueKey, only: Option<(SessionId, SubId)>) {
        // A temporary queue belongs to its connection: no wildcard reads it.
        if self.wild.queue_patterns.is_empty()
            || key.subscription.is_some()
            || key.destination.kind() != Kind::Queue
            || key.destination.is_temp()
        {
            return;
        }
        let mut subs = Vec::new();
        match only {
            Some(s) => subs.push(s),
            None => self
                .wild
                .queue_patterns
                .for_each_match(key.destination.name(), |s| subs.push(*s)),
        }
        for s in subs {
            let Some(w) = self.wild.queues.get_mut(&s) else {
                continue;
            };
            if !w.attached.insert(key.clone()) {
                continue;
            }
            let consumer = w.template.sibling();
            self.with_queue(key, false, |q, ctx| q.subscribe(consumer, ctx));
        }
    }

    /// The queue `key` is about to be forgotten: the wildcard subscriptions attached to it
    /// let go of it.
    pub(super) fn detach_wildcards_from(&mut self, key: &QueueKey, ids: Vec<(SessionId, SubId)>) {
        for id in ids {
            if let Some(w) = self.wild.queues.get_mut(&id) {
                w.attached.remove(key);
            }
        }
    }

    /// Publishes to the wildcard topic subscriptions of `patterns` (those the message's
    /// topic matches); the producer is answered by the caller.
    pub(super) fn publish_wild(
        &mut self,
        patterns: &[DestinationName],
        message: &std::sync::Arc<crate::message::Message>,
        from: Option<SessionId>,
    ) {
        for p in patterns {
            let entry = crate::destination::Entry::new(message.clone());
            self.with_wild_topic(p, false, |t, ctx| t.send(entry, from, None, ctx));
        }
    }

    /// Answers a producer whose message went out through `topic` (if it exists) and the
    /// wildcard `patterns`: held by the first of them that holds answers (over its memory
    /// limit, or holding earlier ones), else at once.
    pub(super) fn accept_fanned_out(
        &mut self,
        topic: &DestinationName,
        patterns: &[DestinationName],
        answer: Answer,
    ) {
        let ctx = &self.ctx;
        let holder = self
            .topics
            .get_mut(topic)
            .filter(|t| t.holds(ctx))
            .or_else(|| {
                let wild = &mut self.wild.topics;
                let p = patterns
                    .iter()
                    .find(|p| wild.get(*p).is_some_and(|t| t.holds(ctx)))?;
                wild.get_mut(p)
            });
        match holder {
            Some(t) => t.accept(answer, ctx),
            None => {
                let _ = answer.tx.send(ToSession::Accepted {
                    token: answer.token,
                });
            }
        }
    }

    /// ACK or NACK of deliveries of wildcard subscription `sub` on this shard.
    pub(super) fn settle_wild_queues(
        &mut self,
        session: SessionId,
        sub: SubId,
        ids: &[MessageId],
        nack: bool,
    ) {
        let Some(w) = self.wild.queues.get_mut(&(session, sub)) else {
            return;
        };
        let mut keys: Vec<QueueKey> = w.attached.iter().cloned().collect();
        if !keys.is_empty() {
            let first = w.turn % keys.len();
            keys.rotate_left(first);
            w.turn = w.turn.wrapping_add(1);
        }
        for key in &keys {
            self.with_queue(key, false, |q, ctx| {
                q.settle_only(session, sub, ids, nack, ctx)
            });
        }
        // Credit freed on one queue may serve the others, wherever it came from; they take
        // turns at it.
        for key in &keys {
            self.with_queue(key, false, |q, ctx| q.redispatch(ctx));
            self.forget_if_idle(key);
        }
    }

    /// Ends wildcard subscription `sub` to queues on this shard: every attachment goes, and
    /// what it held goes back to its queue.
    /// With `goodbye` (the connection is gone) all of its session's consumers leave each
    /// queue at once, so what one returns is not offered to another of the dying session.
    pub(super) fn unsubscribe_wild_queues(
        &mut self,
        session: SessionId,
        sub: SubId,
        goodbye: bool,
    ) {
        let Some(w) = self.wild.queues.remove(&(session, sub)) else {
            return;
        };
        self.wild
            .queue_patterns
            .remove(&w.pattern, |s| *s == (session, sub));
        for key in w.attached {
            self.with_queue(&key, false, |q, ctx| match goodbye {
                true => q.goodbye(session, ctx),
                false => q.unsubscribe(session, sub, ctx),
            });
            self.forget_if_idle(&key);
        }
    }

    /// Ends wildcard subscription `sub` to topics on this shard.
    pub(super) fn unsubscribe_wild_topic(
        &mut self,
        session: SessionId,
        sub: SubId,
        pattern: &DestinationName,
    ) {
        self.with_wild_topic(pattern, false, |t, ctx| t.unsubscribe(session, sub, ctx));
        if self.wild.topics.get(pattern).is_some_and(Topic::is_idle) {
            self.wild.topics.remove(pattern);
            let p = Pattern::new(pattern.name());
            self.wild.topic_patterns.remove(&p, |v| v == pattern);
        }
    }

    /// Once a second: the pattern topics' slow-consumer rule and flow control.
    pub(super) fn tick_wild_topics(&mut self) {
        let names: Vec<DestinationName> = self.wild.topics.keys().cloned().collect();
        for name in names {
            self.with_wild_topic(&name, false, |t, ctx| t.tick(ctx));
        }
    }

    /// Runs `f` on the pattern topic `name` (created first when `create`), charging its
    /// change in memory to the global account.
    pub(super) fn with_wild_topic(
        &mut self,
        name: &DestinationName,
        create: bool,
        f: impl FnOnce(&mut Topic, &mut Ctx),
    ) {
        with_topic_in(&mut self.wild.topics, &mut self.ctx, name, create, f);
    }
}

/// Runs `f` on topic `name` of `topics` (created first when `create`), charging its change
/// in memory to the global account.
pub(super) fn with_topic_in(
    topics: &mut HashMap<DestinationName, Topic>,
    ctx: &mut Ctx,
    name: &DestinationName,
    create: bool,
    f: impl FnOnce(&mut Topic, &mut Ctx),
) {
    if create && !topics.contains_key(name) {
        topics.insert(name.clone(), Topic::new(name.clone()));
    }
    if let Some(t) = topics.get_mut(name) {
        let before = t.bytes();
        f(t, ctx);
        ctx.charge(before, t.bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::*;
    use crate::config::DestinationConfig;
    use crate::message::{AckMode, ConsumerOptions, IdAllocator, Router, ToOwner};

    fn owner() -> Owner {
        let (owner_tx, _mailbox) = unbounded_channel();
        let ctx = Ctx::new(
            0,
            Arc::new(Router::new(vec![owner_tx])),
            None,
            Arc::new(IdAllocator::new(0)),
            Arc::new(DestinationConfig::default()),
            Default::default(),
        );
        Owner::new(ctx)
    }

    use super::super::tests::plain_message as message;

    /// An owner with one session subscribed to `pattern`, and that session's mailbox.
    fn subscribed(
        pattern: &str,
        ack: AckMode,
        prefetch: u32,
    ) -> (Owner, UnboundedReceiver<ToSession>, SessionId, SubId) {
        let mut owner = owner();
        let (tx, rx) = unbounded_channel();
        let (session, sub) = (SessionId(1), SubId(1));
        owner.handle(ToOwner::Hello { session, tx });
        owner.handle(ToOwner::Subscribe {
            session,
            sub,
            destination: DestinationName::parse(pattern).unwrap(),
            options: ConsumerOptions::new(ack, prefetch),
            durable: None,
            token: None,
        });
        (owner, rx, session, sub)
    }

    /// A wildcard consumer that keeps up with a stream of one-off queue names leaves no
    /// queue (and no attachment) behind: the shard does not grow with the names beyond what
    /// it keeps listed while idle (`owner/idle.rs`, capped).
    #[test]
    fn queues_a_wildcard_subscription_emptied_are_forgotten_with_their_attachments() {
        let (mut owner, mut rx, session, sub) = subscribed("/queue/w.>", AckMode::Auto, 10);
        let mut delivered = 0;
        for i in 0..1000 {
            let m = message(&owner, &format!("/queue/w.once{i}"));
            owner.handle(ToOwner::Send {
                session,
                message: m,
                token: None,
            });
            while let Ok(answer) = rx.try_recv() {
                if let ToSession::Deliver { message, .. } = answer {
                    delivered += 1;
                    owner.handle(ToOwner::Ack {
                        session,
                        sub,
                        ids: vec![message.id],
                        token: None,
                    });
                }
            }
        }
        assert_eq!(delivered, 1000);
        assert!(
            owner.queues.is_empty(),
            "{} queues left",
            owner.queues.len()
        );
        let w = &owner.wild.queues[&(session, sub)];
        assert!(
            w.attached.is_empty(),
            "{} attachments left",
            w.attached.len()
        );
        // They are listed while idle, as names and counters only.
        assert_eq!(owner.idle.len(), 1000);
        // Another wildcard subscription attaches to none of them.
        owner.handle(ToOwner::Subscribe {
            session,
            sub: SubId(2),
            destination: DestinationName::parse("/queue/w.*").unwrap(),
            options: ConsumerOptions::new(AckMode::Auto, 10),
            durable: None,
            token: None,
        });
        assert!(owner.wild.queues[&(session, SubId(2))].attached.is_empty());
        assert!(owner.queues.is_empty());
        // A name that comes back is attached again.
        let m = message(&owner, "/queue/w.once7");
        owner.handle(ToOwner::Send {
            session,
            message: m,
            token: None,
        });
        assert!(matches!(rx.try_recv(), Ok(ToSession::Deliver { .. })));
        assert_eq!(owner.idle.len(), 999);
    }

    /// A queue with a backlog does not keep a wildcard subscription's credit to itself: the
    /// queues it is attached to take turns at each ACK.
    #[test]
    fn a_busy_queue_does_not_starve_the_other_queues_of_a_wildcard_subscription() {
        let (mut owner, mut rx, session, sub) =
            subscribed("/queue/f.*", AckMode::ClientIndividual, 1);
        let send = |owner: &mut Owner, to: &str| {
            let m = message(owner, to);
            owner.handle(ToOwner::Send {
                session,
                message: m,
                token: None,
            });
        };
        for _ in 0..100 {
            send(&mut owner, "/queue/f.busy");
        }
        send(&mut owner, "/queue/f.quiet");
        let mut order = Vec::new();
        for _ in 0..4 {
            // Past the producer's answers (Accepted) to the next delivery.
            let message = loop {
                match rx.try_recv() {
                    Ok(ToSession::Deliver { message, .. }) => break message,
                    Ok(_) => continue,
                    Err(e) => panic!("no delivery: {e}"),
                }
            };
            order.push(message.destination.to_string());
            owner.handle(ToOwner::Ack {
                session,
                sub,
                ids: vec![message.id],
                token: None,
            });
        }
        assert!(
            order.iter().any(|d| d == "/queue/f.quiet"),
            "f.quiet waited behind f.busy: {order:?}"
        );
    }
}
