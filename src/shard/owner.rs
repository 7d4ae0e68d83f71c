//! The owner loop of one shard: holds the destinations whose name hashes to this shard (and
//! the queues of durable subscriptions to its topics) and applies the commands sessions send
//! them and the store's replies post to them. Runs only on its shard's thread, so
//! destinations need no locks. `owner/durable.rs` keeps durable subscriptions' queues;
//! `owner/temp.rs` temporary destinations; `owner/wildcards.rs` wildcard subscriptions;
//! `owner/scheduled.rs` scheduled messages; `owner/advisories.rs` consumer advisories;
//! `owner/idle.rs` idle destinations kept listed, and destination advisories;
//! `owner/inspect.rs` answers the admin endpoint.

mod advisories;
mod durable;
mod idle;
mod inspect;
mod scheduled;
mod temp;
mod wildcards;

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::destination::{receipts_reply, Answer, Consumer, Ctx, Entry, Queue, Topic};
use crate::message::advisory::ConsumerInfo;
use crate::message::audit::NetworkAudit;
use crate::message::network::network_id;
use crate::message::{
    ConsumerOptions, DestinationName, DurableName, Kind, Message, MessageId, QueueKey, SessionId,
    SessionTx, SubId, ToOwner, ToSession, Token,
};
use crate::store::Request;
use advisories::destination_of;
use durable::durable_key;
use wildcards::{with_topic_in, Wildcards};

/// Commands handled before the loop yields to other tasks on the shard.
const COMMAND_BATCH: usize = 512;

/// How often expired in-memory messages are swept out and parked producers re-checked.
const TICK: Duration = Duration::from_secs(1);

/// Sleeps until `at` (ms since the epoch, the wall clock messages are stamped with); at
/// once when it has passed.
async fn sleep_until_ms(at: Option<u64>) {
    let now = crate::clock::now_ms();
    let ms = at.map_or(0, |at| at.saturating_sub(now));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// What a subscription is attached to.
#[derive(Debug, Clone)]
enum Attached {
    Queue(QueueKey),
    Topic(DestinationName),
    /// A wildcard subscription to queues (`owner/wildcards.rs`), by its pattern.
    WildQueue(DestinationName),
    /// A wildcard subscription to topics, by its pattern.
    WildTopic(DestinationName),
}

/// A session known to this shard.
struct SessionEntry {
    tx: SessionTx,
    /// Its subscriptions on this shard.
    subs: HashMap<SubId, Attached>,
    /// The temporary destinations it created that this shard owns: deleted at its Goodbye.
    temps: Vec<DestinationName>,
    /// Its ACKs queued store deletes that no receipt has waited for yet: the next receipt
    /// (of an ACK or a DISCONNECT) waits for their commit, as a RECEIPT implies that every
    /// earlier frame took effect.
    unconfirmed_deletes: bool,
}

/// One shard's destinations and the sessions that use them.
pub struct Owner {
    ctx: Ctx,
    queues: HashMap<QueueKey, Queue>,
    topics: HashMap<DestinationName, Topic>,
    sessions: HashMap<SessionId, SessionEntry>,
    wild: Wildcards,
    /// Scheduled messages for destinations this shard owns (`owner/scheduled.rs`).
    schedules: scheduled::Schedules,
    /// The temporary destinations this shard owns that exist, by what keeps them: the
    /// session that created them, or (another broker's) the network routes that stand for
    /// them. A SEND to one not here is refused; its queue or topic may come and go meanwhile
    /// like any other (it is idle), but it exists until its session's Goodbye, or its last
    /// route's end.
    temps: HashMap<DestinationName, temp::TempHolder>,
    /// Queues and topics dropped as idle, still listed with their counters (`owner/idle.rs`).
    idle: idle::IdleDestinations,
    /// The network duplicate filter of this shard's destinations (`message/audit.rs`).
    audit: NetworkAudit,
    /// This shard's `[destinations] declared` queues and topics: they exist from the start
    /// and are never forgotten while idle (`owner/idle.rs`).
    declared: foldhash::HashSet<QueueKey>,
}

impl Owner {
    /// An owner with no destinations yet.
    pub fn new(ctx: Ctx) -> Self {
        let audit = NetworkAudit::new(
            ctx.config.network_audit_depth,
            ctx.config.network_audit_producers,
        );
        let declared = idle::declared_here(&ctx);
        let mut owner = Owner {
            audit,
            declared,
            ctx,
            queues: HashMap::default(),
            topics: HashMap::default(),
            sessions: HashMap::default(),
            wild: Wildcards::default(),
            schedules: Default::default(),
            temps: HashMap::default(),
            idle: Default::default(),
        };
        owner.list_declared();
        owner
    }

    /// Serves commands until [`ToOwner::Stop`] or until every sender is gone.
    pub async fn run(mut self, mut mailbox: UnboundedReceiver<ToOwner>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = match (self.ctx.next_wake(), self.schedules.next_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                cmd = mailbox.recv() => {
                    let Some(cmd) = cmd else { break };
                    let mut go_on = self.handle(cmd);
                    for _ in 0..COMMAND_BATCH {
                        if !go_on {
                            break;
                        }
                        match mailbox.try_recv() {
                            Ok(cmd) => go_on = self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                    self.ctx.flush();
                    if !go_on {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                _ = tick.tick() => self.tick(),
                _ = sleep_until_ms(wake), if wake.is_some() => self.wake(),
            }
        }
        self.ctx.flush();
    }

    /// Delayed messages are due: they enter their queues; and so are scheduled ones.
    fn wake(&mut self) {
        let now = crate::clock::now_ms();
        for key in self.ctx.take_due(now) {
            self.with_queue(&key, false, |q, ctx| q.release_delayed(now, ctx));
        }
        self.fire_due(now);
        self.ctx.flush();
    }

    /// Once a second: sweep expired messages, let producers parked on a full global memory
    /// account go once other destinations (maybe on other shards) have shrunk, retry
    /// failed page-ins whose backoff has passed, and forget destinations idle for too long.
    fn tick(&mut self) {
        let now = crate::clock::now_ms();
        let keys: Vec<QueueKey> = self.queues.keys().cloned().collect();
        for key in keys {
            self.with_queue(&key, false, |q, ctx| {
                q.sweep(now, ctx);
                q.recheck_flow_control(ctx);
                q.retry_page_in(ctx);
            });
        }
        let names: Vec<DestinationName> = self.topics.keys().cloned().collect();
        for name in names {
            self.with_topic(&name, false, |t, ctx| t.tick(ctx));
        }
        self.tick_wild_topics();
        self.sweep_idle(std::time::Instant::now());
        self.ctx.flush();
    }

    /// Applies one command. Returns false on [`ToOwner::Stop`].
    pub fn handle(&mut self, cmd: ToOwner) -> bool {
        match cmd {
            ToOwner::Hello { session, tx } => {
                self.sessions.insert(
                    session,
                    SessionEntry {
                        tx,
                        subs: HashMap::default(),
                        temps: Vec::new(),
                        unconfirmed_deletes: false,
                    },
                );
            }
            ToOwner::CreateTemp {
                session,
                destination,
            } => self.create_temp(session, destination),
            ToOwner::Probe {
                session,
                destination,
            } => self.probe(session, destination),
            ToOwner::Send {
                session,
                message,
                token,
            } => {
                let Some(producer) = self.sessions.get(&session).map(|s| s.tx.clone()) else {
                    return true;
                };
                if self.answered_missing_temp(&message, &producer, token) {
                    return true;
                }
                if !self.audit_accepts(&message) {
                    // A copy of a forwarded message accepted before: answered as accepted,
                    // so the bridge that sent it again can let it go.
                    let _ = producer.send(ToSession::Accepted { token });
                    return true;
                }
                self.send(
                    message,
                    Some(Answer {
                        session,
                        tx: producer,
                        token,
                    }),
                );
            }
            ToOwner::Subscribe {
                session,
                sub,
                destination,
                options,
                durable,
                token,
            } => {
                self.subscribe(session, sub, destination, options, durable, token);
            }
            ToOwner::DestroyDurable {
                session,
                durable,
                token,
            } => {
                let key = durable.key();
                let topics: Vec<DestinationName> = self
                    .queues
                    .keys()
                    .filter(|k| k.subscription.as_deref() == Some(&*key))
                    .map(|k| k.destination.clone())
                    .collect();
                for topic in topics {
                    if !self.destroy_durable_unless_in_use(session, durable.clone(), topic, token) {
                        return true;
                    }
                }
                self.done(session, token);
            }
            ToOwner::Browse {
                session,
                sub,
                destination,
                selector,
                token,
            } => {
                let Some(tx) = self.sessions.get(&session).map(|s| s.tx.clone()) else {
                    return true;
                };
                let now = crate::clock::now_ms();
                let messages = self
                    .queues
                    .get(&QueueKey::queue(destination))
                    .map(|q| q.browse_for(selector.as_deref(), now))
                    .unwrap_or_default();
                if let Some(token) = token {
                    let _ = tx.send(ToSession::Done { token });
                }
                let _ = tx.send(ToSession::Browsed { sub, messages });
            }
            ToOwner::Unsubscribe {
                session,
                sub,
                destination,
                destroy,
                token,
            } => {
                let target = sub.and_then(|sub| {
                    let attached = self.sessions.get_mut(&session)?.subs.remove(&sub)?;
                    Some((sub, attached))
                });
                if let Some((sub, target)) = target {
                    self.detach(session, sub, &target, false);
                }
                if let Some(d) = destroy {
                    if !self.destroy_durable_unless_in_use(session, d, destination, token) {
                        return true;
                    }
                }
                self.done(session, token);
            }
            ToOwner::Ack {
                session,
                sub,
                ids,
                token,
                ..
            } => {
                let before = self.ctx.pending_deletes();
                self.settle(session, sub, &ids, false);
                let deleted = self.ctx.pending_deletes() > before;
                self.done_after_deletes(session, token, deleted);
            }
            ToOwner::Nack {
                session,
                sub,
                ids,
                token,
                ..
            } => {
                self.settle(session, sub, &ids, true);
                self.done(session, token);
            }
            ToOwner::Barrier { session, token } => {
                self.done_after_deletes(session, Some(token), false)
            }
            ToOwner::Goodbye { session } => {
                let Some(entry) = self.sessions.remove(&session) else {
                    return true;
                };
                for (sub, target) in entry.subs {
                    self.detach(session, sub, &target, true);
                }
                for destination in entry.temps {
                    self.delete_temp(&destination, idle::CONNECTION_CLOSED);
                }
                debug!("shard={} session={} gone", self.ctx.shard, session.0);
            }
            ToOwner::Stored { key, result } => {
                let mut failed = None;
                self.with_queue(&key, true, |q, ctx| failed = q.stored(result, ctx));
                if let Some(id) = failed.as_deref().and_then(|m| network_id(&m.headers)) {
                    // Not accepted after all: a copy sent again must get through.
                    self.audit.forget(id, &key.destination);
                }
                self.forget_if_idle(&key);
            }
            ToOwner::Adopt { key, message } => {
                if key.destination.is_temp() && !self.temps.contains_key(&key.destination) {
                    // A deleted temporary queue is not brought back by a late hand-over.
                    return true;
                }
                self.with_queue(&key, true, |q, ctx| q.adopt(message, ctx));
                self.forget_if_idle(&key);
            }
            ToOwner::PagedIn {
                key,
                priority,
                messages,
                exhausted,
                result,
            } => {
                self.with_queue(&key, false, |q, ctx| {
                    q.paged_in(priority, messages, exhausted, result, ctx)
                });
            }
            ToOwner::Marked {
                key,
                priority,
                upto,
                result,
            } => {
                self.with_queue(&key, false, |q, ctx| q.marked(priority, upto, result, ctx));
            }
            ToOwner::Recover {
                queues,
                durables,
                audit,
            } => {
                if let Some(audit) = audit {
                    self.audit = audit;
                }
                let mut filters = Vec::new();
                for (d, topic, selector) in durables {
                    if !self.queues.contains_key(&durable_key(&d, &topic)) {
                        self.ctx.add_durable(true);
                    }
                    let key = self.durable(&d, &topic, true);
                    self.ctx
                        .durable_subscriptions
                        .set(&topic, &d.key(), selector.as_deref());
                    filters.push((
                        key,
                        selector.as_deref().and_then(durable::recovered_selector),
                    ));
                }
                for (key, counts) in queues {
                    // A declared one was listed idle at start: now it is in use.
                    self.idle.remove(&key);
                    self.queues
                        .insert(key.clone(), Queue::recovered(key, counts));
                }
                for (key, filter) in filters {
                    if let Some(q) = self.queues.get_mut(&key) {
                        q.set_filter(filter);
                    }
                }
            }
            ToOwner::Schedule(cmd) => self.schedule(cmd),
            ToOwner::Inspect(q) => self.inspect(q),
            ToOwner::Publish { message } => self.send(message, None),
            ToOwner::PublishTo {
                message,
                session,
                sub,
            } => self.publish_to(message, session, sub),
            ToOwner::Stop => return false,
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        options: ConsumerOptions,
        durable: Option<DurableName>,
        token: Option<Token>,
    ) {
        let Some(tx) = self.sessions.get(&session).map(|s| s.tx.clone()) else {
            return;
        };
        let consumer = Consumer::new(session, sub, tx.clone(), options);
        if destination.is_wildcard() {
            // Durable and browsing wildcard subscriptions are refused by the session.
            if let Some(token) = token {
                let _ = tx.send(ToSession::Done { token });
            }
            let selector = consumer.selector().cloned();
            let path = consumer.broker_path().cloned();
            self.subscribe_wildcard(consumer, destination.clone());
            let info = ConsumerInfo {
                connection: session.0,
                subscription: sub.0,
                selector: selector.as_ref().map(|s| s.text()),
                durable: None,
                broker_path: path.as_deref(),
                active: true,
            };
            self.advise_consumer(&destination, info, true);
            return;
        }
        if destination.is_temp() {
            self.hold_temp_route(session, sub, &destination);
        }
        let mut answered = false;
        let target = match (destination.kind(), durable) {
            (Kind::Queue, _) => {
                // The SUBSCRIBE's receipt waits for a new consumer queue's record.
                answered = self.register_virtual_consumer_queue(&destination, &tx, token);
                Attached::Queue(QueueKey::queue(destination))
            }
            (Kind::Topic, None) => Attached::Topic(destination),
            (Kind::Topic, Some(d)) => {
                let selector = consumer.selector().cloned();
                let Some(key) = self.subscribe_durable(d, destination, selector, &tx, token) else {
                    return;
                };
                // The SUBSCRIBE's receipt waits for the subscription's record to be on disk.
                answered = self.ctx.store.is_some();
                Attached::Queue(key)
            }
        };
        if let Some(s) = self.sessions.get_mut(&session) {
            s.subs.insert(sub, target.clone());
        }
        // Answer first: the session holds deliveries back until the RECEIPT is written.
        if !answered {
            if let Some(token) = token {
                let _ = tx.send(ToSession::Done { token });
            }
        }
        let selector = consumer.selector().cloned();
        let path = consumer.broker_path().cloned();
        match &target {
            Attached::Queue(key) => self.with_queue(key, true, |q, ctx| q.subscribe(consumer, ctx)),
            Attached::Topic(name) => self.with_topic(name, true, |t, _| t.subscribe(consumer)),
            Attached::WildQueue(_) | Attached::WildTopic(_) => {
                unreachable!("wildcard subscriptions are attached by subscribe_wildcard")
            }
        }
        let durable = match &target {
            Attached::Queue(key) => key.subscription.clone(),
            _ => None,
        };
        let info = ConsumerInfo {
            connection: session.0,
            subscription: sub.0,
            selector: selector.as_ref().map(|s| s.text()),
            durable: durable.as_deref(),
            broker_path: path.as_deref(),
            active: true,
        };
        self.advise_consumer(&destination_of(&target), info, true);
    }

    /// A SUBSCRIBE to a virtual topic's consumer queue (`Consumer.A.VirtualTopic.Orders`)
    /// creates it for good: from now on every SEND to the topic also goes to it (the sending
    /// sessions read the registry), and its `destinations` row brings it back after a
    /// restart, until an operator deletes it.
    /// Returns true when the store answers `token` once the record is on disk.
    fn register_virtual_consumer_queue(
        &self,
        queue: &DestinationName,
        tx: &SessionTx,
        token: Option<Token>,
    ) -> bool {
        let Some(topic) = self.ctx.config.virtual_topics().topic_of(queue) else {
            return false;
        };
        if !self.ctx.virtual_topics.add(topic, queue) || self.ctx.store.is_none() {
            return false;
        }
        self.ctx.request(Request::RecordDestination {
            destination: queue.clone(),
            reply: token.map(|t| receipts_reply(vec![(tx.clone(), t)])),
        });
        true
    }

    /// Ends subscription `sub` of `session` (all of the session's consumers there when
    /// `goodbye`): what it held unacked goes back, and its consumer advisory is published.
    fn detach(&mut self, session: SessionId, sub: SubId, target: &Attached, goodbye: bool) {
        match target {
            Attached::Queue(key) => {
                self.with_queue(key, false, |q, ctx| match goodbye {
                    true => q.goodbye(session, ctx),
                    false => q.unsubscribe(session, sub, ctx),
                });
                self.forget_if_idle(key);
            }
            Attached::Topic(name) => {
                self.with_topic(name, false, |t, ctx| match goodbye {
                    true => t.goodbye(session, ctx),
                    false => t.unsubscribe(session, sub, ctx),
                });
                self.forget_topic_if_idle(name);
            }
            Attached::WildQueue(_) => self.unsubscribe_wild_queues(session, sub, goodbye),
            Attached::WildTopic(pattern) => self.unsubscribe_wild_topic(session, sub, pattern),
        }
        self.advise_consumer_removed(session, sub, target);
        match target {
            Attached::Queue(key) if key.destination.is_temp() => {
                self.release_temp_route(session, sub, &key.destination)
            }
            Attached::Topic(name) if name.is_temp() => self.release_temp_route(session, sub, name),
            _ => {}
        }
    }

    /// The network duplicate filter: false when `message` is a forwarded message
    /// (`stompbox-network-id`) already accepted for its destination, which is then counted
    /// and dropped; else it is recorded as accepted now. Every SEND that reaches a destination
    /// passes here on its owner, a transaction's at its COMMIT.
    fn audit_accepts(&mut self, message: &Message) -> bool {
        let Some(id) = network_id(&message.headers) else {
            return true;
        };
        if self.audit.record(id, &message.destination) {
            return true;
        }
        metrics::counter!("stompbox_network_duplicates_total").increment(1);
        debug!(
            "shard={} dest={} network_id={id} duplicate dropped",
            self.ctx.shard, message.destination
        );
        false
    }

    /// Enqueues or publishes one message; `answer` is who to tell once it is accepted.
    fn send(&mut self, message: Arc<Message>, answer: Option<Answer>) {
        let name = message.destination.clone();
        match name.kind() {
            Kind::Queue => {
                let key = QueueKey::queue(name);
                self.with_queue(&key, true, |q, ctx| {
                    q.send(Entry::new(message), answer, ctx)
                });
            }
            Kind::Topic => {
                let from = answer.as_ref().map(|a| a.session);
                let patterns = self.wild.topics_matching(&name);
                let Some(topic) = self.topics.get(&name) else {
                    self.published_to_nobody(&name);
                    self.publish_wild(&patterns, &message, from);
                    match answer {
                        Some(a) if !patterns.is_empty() => {
                            self.accept_fanned_out(&name, &patterns, a)
                        }
                        // Nobody subscribed: dropped, as JMS topics do.
                        Some(a) => {
                            let _ = a.tx.send(ToSession::Accepted { token: a.token });
                        }
                        None => {}
                    }
                    return;
                };
                let durables: Vec<QueueKey> = topic
                    .durables
                    .iter()
                    .filter(|key| self.queues.get(*key).is_none_or(|q| q.wants(&message)))
                    .cloned()
                    .collect();
                if durables.is_empty() && patterns.is_empty() {
                    self.with_topic(&name, false, |t, ctx| {
                        t.send(Entry::new(message), from, answer, ctx)
                    });
                    return;
                }
                let copy = message.clone();
                self.with_topic(&name, false, |t, ctx| {
                    t.send(Entry::new(copy), from, None, ctx)
                });
                self.publish_wild(&patterns, &message, from);
                let mut answer = answer;
                if durables.is_empty() {
                    if let Some(a) = answer.take() {
                        self.accept_fanned_out(&name, &patterns, a);
                    }
                    return;
                }
                // Each durable subscription holds its own copy (its own stored row); the
                // producer is answered with the last one, which is stored last.
                let last = durables.len() - 1;
                for (i, key) in durables.into_iter().enumerate() {
                    let copy = if i == 0 {
                        message.clone()
                    } else {
                        Arc::new(Message {
                            id: self.ctx.ids.next(),
                            ..(*message).clone()
                        })
                    };
                    let a = if i == last { answer.take() } else { None };
                    self.with_queue(&key, false, |q, ctx| q.send(Entry::new(copy), a, ctx));
                }
            }
        }
    }

    /// Runs `f` on the queue `key` (created first when `create`: with the counters it had if
    /// it was kept idle, else announced), charging its change in memory to the global account.
    fn with_queue(&mut self, key: &QueueKey, create: bool, f: impl FnOnce(&mut Queue, &mut Ctx)) {
        if create && !self.queues.contains_key(key) {
            let mut q = Queue::new(key.clone());
            if key.subscription.is_none() {
                if let Some(counters) = self.came_into_being(key) {
                    q.resume_counters(counters);
                }
            }
            self.queues.insert(key.clone(), q);
            self.attach_wildcards_to(key, None);
        }
        if let Some(q) = self.queues.get_mut(key) {
            let before = q.bytes();
            f(q, &mut self.ctx);
            self.ctx.charge(before, q.bytes());
        }
    }

    /// Runs `f` on the topic `name` (created first when `create`: with the counters it had if
    /// it was kept idle, else announced), charging its change in memory to the global
    /// account.
    fn with_topic(
        &mut self,
        name: &DestinationName,
        create: bool,
        f: impl FnOnce(&mut Topic, &mut Ctx),
    ) {
        if create && !self.topics.contains_key(name) {
            self.create_topic(name, false);
        }
        with_topic_in(&mut self.topics, &mut self.ctx, name, false, f);
    }

    /// Creates topic `name`, with the counters it had if it was kept idle; else announced,
    /// unless `recovered` (nobody can listen yet).
    fn create_topic(&mut self, name: &DestinationName, recovered: bool) {
        let key = QueueKey::queue(name.clone());
        let mut t = Topic::new(name.clone());
        let kept = match recovered {
            true => self.idle.remove(&key),
            false => self.came_into_being(&key),
        };
        if let Some(counters) = kept {
            t.resume_counters(counters);
        }
        self.topics.insert(name.clone(), t);
    }

    /// ACK (`nack` false) or NACK deliveries of one subscription, wherever it is attached.
    fn settle(&mut self, session: SessionId, sub: SubId, ids: &[MessageId], nack: bool) {
        match self.target(session, sub) {
            Some(Attached::Queue(key)) => self.with_queue(&key, false, |q, ctx| match nack {
                false => q.ack(session, sub, ids, ctx),
                true => q.nack(session, sub, ids, ctx),
            }),
            Some(Attached::Topic(name)) => self.with_topic(&name, false, |t, ctx| match nack {
                false => t.ack(session, sub, ids, ctx),
                true => t.nack(session, sub, ids, ctx),
            }),
            Some(Attached::WildQueue(_)) => self.settle_wild_queues(session, sub, ids, nack),
            Some(Attached::WildTopic(pattern)) => {
                self.with_wild_topic(&pattern, false, |t, ctx| match nack {
                    false => t.ack(session, sub, ids, ctx),
                    true => t.nack(session, sub, ids, ctx),
                })
            }
            None => {}
        }
    }

    fn target(&self, session: SessionId, sub: SubId) -> Option<Attached> {
        self.sessions
            .get(&session)
            .and_then(|s| s.subs.get(&sub))
            .cloned()
    }

    /// Drops a queue that holds nothing (it is re-created on next use), so a stream of one-off
    /// names cannot grow the shard's memory; its name and counters stay listed a while
    /// (`owner/idle.rs`). Durable subscriptions' queues and virtual topics' consumer queues
    /// stay until deleted. Temporary queues stay until their session's Goodbye (they are few
    /// per session).
    fn forget_if_idle(&mut self, key: &QueueKey) {
        if key.subscription.is_none()
            && !self.temps.contains_key(&key.destination)
            && self.queues.get(key).is_some_and(Queue::is_idle)
            && !self.is_virtual_consumer_queue(&key.destination)
        {
            if let Some(q) = self.queues.remove(key) {
                self.detach_wildcards_from(key, q.consumer_ids().collect());
                // A temporary queue outside `temps` outlived its connection: not kept.
                if !key.destination.is_temp() {
                    self.keep_idle(key.clone(), q.counters());
                }
            }
        }
    }

    fn forget_topic_if_idle(&mut self, name: &DestinationName) {
        if !self.temps.contains_key(name) && self.topics.get(name).is_some_and(Topic::is_idle) {
            if let Some(t) = self.topics.remove(name) {
                if !name.is_temp() {
                    self.keep_idle(QueueKey::queue(name.clone()), t.counters());
                }
            }
        }
    }

    /// Whether `queue` is a consumer queue of a virtual topic, created by a SUBSCRIBE: it
    /// exists until an operator deletes it, as its `destinations` row says.
    fn is_virtual_consumer_queue(&self, queue: &DestinationName) -> bool {
        self.ctx
            .config
            .virtual_topics()
            .topic_of(queue)
            .is_some_and(|topic| self.ctx.virtual_topics.contains(&topic, queue))
    }

    /// Answers `token` once the store deletes `session`'s ACKs queued (`deleted`: this frame
    /// queued some) are committed: a receipted ACK's RECEIPT promises its messages will not
    /// come back after a crash, and so does the RECEIPT of any later frame for earlier ACKs.
    fn done_after_deletes(&mut self, session: SessionId, token: Option<Token>, deleted: bool) {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return;
        };
        entry.unconfirmed_deletes |= deleted;
        let Some(token) = token else {
            return;
        };
        if entry.unconfirmed_deletes && self.ctx.after_store(&entry.tx, token) {
            entry.unconfirmed_deletes = false;
        } else {
            let _ = entry.tx.send(ToSession::Done { token });
        }
    }

    fn done(&self, session: SessionId, token: Option<Token>) {
        if let (Some(token), Some(s)) = (token, self.sessions.get(&session)) {
            let _ = s.tx.send(ToSession::Done { token });
        }
    }
}

#[cfg(test)]
mod tests;
