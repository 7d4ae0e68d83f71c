//! The message and the commands that cross shards: the one low module that sessions,
//! destinations, the store and (later) bridges all import, with the destination names
//! (`name.rs`) and the statistics snapshots the admin API shows (`stats.rs`). It imports
//! nothing of ours above it (only `limits` in docs), so nothing imports in a cycle through it.
//!
//! Every channel here is unbounded in type but bounded by credit, and each says how:
//! a session has at most [`crate::limits::PRODUCER_WINDOW`] SENDs unanswered, at most its
//! prefetch of deliveries per subscription in flight (auto-ack ones included, until they are
//! written to the socket), and one ACK/NACK per delivery.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::selector::{Selector, Subject};

pub mod advisory;
pub mod audit;
mod name;
pub mod network;
pub mod schedule;
mod stats;
pub mod virtual_topic;
pub mod wildcard;

pub use name::{temp_broker_tag, DestinationName, Kind, NameError};
pub use name::{REMOTE_TEMP_QUEUE, REMOTE_TEMP_TOPIC, TEMP_QUEUE, TEMP_TOPIC};
pub use stats::{BrowsedMessage, Counters, DestinationStats};

/// A broker-wide unique message id, also the `message_id` primary key of stored messages.
/// Ids grow in the order sessions accept SENDs, so one producer's messages are in id order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

/// Hands out message ids: process-wide, increasing and dense (one process hands out every id
/// from its first on). The broker seeds it above every id handed out before on its store, and
/// the store writer keeps a reservation recorded ahead of it (`store::reserve_at_start`), so
/// ids never repeat across restarts and fail-overs on one store.
#[derive(Debug)]
pub struct IdAllocator(AtomicU64);

impl IdAllocator {
    /// An allocator whose first id is `after + 1`.
    pub fn new(after: u64) -> Self {
        IdAllocator(AtomicU64::new(after))
    }

    /// The next id. One atomic add: it does not look at the reservation (the store writer
    /// does, about once a second).
    pub fn next(&self) -> MessageId {
        MessageId(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The last id handed out (every message that exists has an id ≤ this).
    pub fn last(&self) -> MessageId {
        MessageId(self.0.load(Ordering::Relaxed))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A connection's id, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// A session-local subscription key (a fresh one per SUBSCRIBE, so a late delivery for a
/// subscription that was closed and reopened with the same client id is recognised as stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubId(pub u32);

/// A session-local token that tracks one frame's effect (for its RECEIPT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

/// STOMP acknowledgement modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Acked as soon as the broker has written it to the socket buffer.
    Auto,
    /// Cumulative: an ACK acks every earlier message of the subscription.
    Client,
    /// Each message is acked on its own.
    ClientIndividual,
}

impl AckMode {
    /// Parses the SUBSCRIBE `ack` header.
    pub fn parse(s: &str) -> Option<AckMode> {
        match s {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
}

/// What a SUBSCRIBE asks of its consumer: ack mode, prefetch and ActiveMQ's consumer options.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub ack: AckMode,
    pub prefetch: u32,
    /// `selector`: only messages it is true for.
    pub selector: Option<Arc<Selector>>,
    /// `activemq.exclusive`: while it is attached, a queue delivers to it alone (the first
    /// exclusive consumer attached; another takes over when it leaves).
    pub exclusive: bool,
    /// `activemq.priority`: a queue serves consumers of higher priority first and turns to
    /// lower ones only while those have no credit (default 0).
    pub priority: i8,
    /// `activemq.noLocal`: a topic subscriber does not receive what its own connection sent.
    pub no_local: bool,
    /// `stompbox-broker-path` on a network bridge's SUBSCRIBE: the brokers whose consumers
    /// this subscription stands for (nearest first), carried in its consumer advisories so
    /// that demand does not echo round a loop of bridges (`crate::message::network`).
    pub broker_path: Option<Arc<str>>,
}

impl ConsumerOptions {
    /// Plain options: `ack`, `prefetch`, nothing else.
    pub fn new(ack: AckMode, prefetch: u32) -> Self {
        ConsumerOptions {
            ack,
            prefetch,
            selector: None,
            exclusive: false,
            priority: 0,
            no_local: false,
            broker_path: None,
        }
    }
}

/// An immutable message, shared by every delivery of it (a fan-out copies no body; a clone
/// shares the body too).
#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub destination: DestinationName,
    /// The SEND frame's headers, minus those the broker owns or rewrites (`destination`,
    /// `receipt`, `transaction`, `content-length`, `message-id`, `subscription`, `ack`,
    /// `redelivered`), in their original order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// 0–9, default 4 (JMS / ActiveMQ).
    pub priority: u8,
    /// `persistent:true` on the SEND.
    pub persistent: bool,
    /// Absolute expiry in ms since the epoch; 0 = never.
    pub expires: u64,
}

impl Message {
    /// Bytes this message counts against memory limits and windows: body, headers and a
    /// fixed overhead for the structures that hold it.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        (self.body.len() + headers + 128) as u64
    }
}

/// The priorities as header values, so that a selector reads `priority` as the message's
/// priority without formatting a number per message.
const PRIORITIES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// What a selector reads from a message: its headers, and `priority` and `persistent` as the
/// MESSAGE frame shows them (the message keeps them as fields). `expires` is selected as
/// `JMSExpiration`.
impl Subject for Message {
    fn header(&self, name: &str) -> Option<&str> {
        match self.headers.iter().find(|(k, _)| k == name) {
            Some((_, v)) => Some(v),
            // What the MESSAGE frame shows, though the message keeps it as a field.
            None if name == "priority" => PRIORITIES.get(usize::from(self.priority)).copied(),
            None if name == "persistent" && self.persistent => Some("true"),
            None => None,
        }
    }

    fn priority(&self) -> u8 {
        self.priority
    }

    fn message_id(&self) -> u64 {
        self.id.0
    }

    fn expires(&self) -> u64 {
        self.expires
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// Where a queue's messages live: a queue, or the queue of one durable topic subscription
/// (`subscription` = `client_id:name`). Stored messages carry both parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueKey {
    pub destination: DestinationName,
    pub subscription: Option<Arc<str>>,
}

impl QueueKey {
    /// The key of a plain queue.
    pub fn queue(destination: DestinationName) -> Self {
        QueueKey {
            destination,
            subscription: None,
        }
    }

    /// The `subscription` column value: empty for plain queues.
    pub fn subscription_str(&self) -> &str {
        self.subscription.as_deref().unwrap_or("")
    }
}

impl fmt::Display for QueueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subscription {
            None => write!(f, "{}", self.destination),
            Some(s) => write!(f, "{} [{}]", self.destination, s),
        }
    }
}

/// A message as read back from the store (recovery, page-in) or handed to a queue
/// ([`ToOwner::Adopt`]), with its redelivery count.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: Arc<Message>,
    pub redelivery_count: u32,
}

/// A durable topic subscription's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DurableName {
    pub client_id: Arc<str>,
    pub name: Arc<str>,
}

impl DurableName {
    /// The `subscription` column value and queue key: `client_id:name`.
    pub fn key(&self) -> Arc<str> {
        Arc::from(format!("{}:{}", self.client_id, self.name))
    }
}

/// The channel into a session.
pub type SessionTx = UnboundedSender<ToSession>;

/// What a destination's owner shard is asked to do. Each command names the session it comes
/// from; `token`, when present, is answered with [`ToSession::Done`] once the effect happened.
#[derive(Debug)]
pub enum ToOwner {
    /// First contact of a session with this shard: where to send its deliveries and answers.
    Hello { session: SessionId, tx: SessionTx },
    /// Enqueue (queue) or publish (topic). Always answered with [`ToSession::Accepted`] (or
    /// [`ToSession::Rejected`] if the store failed); a persistent message is answered after
    /// its commit, and answers are held back while the destination is over its memory limit.
    Send {
        session: SessionId,
        message: Arc<Message>,
        token: Option<Token>,
    },
    /// Session `session` created the temporary destination `destination` (on its first use of
    /// `/temp-queue/NAME` or `/temp-topic/NAME`): SENDs may reach it until the session's
    /// [`ToOwner::Goodbye`] deletes it with its messages. Posted before anything that names it.
    CreateTemp {
        session: SessionId,
        destination: DestinationName,
    },
    /// Does `destination` exist here (in use, kept listed while idle, or declared)? Answered
    /// with [`ToSession::Probed`]: a SEND or SUBSCRIBE from a user without the `admin` right
    /// on it may only use one that does (`session/create.rs`).
    Probe {
        session: SessionId,
        destination: DestinationName,
    },
    /// Register a consumer.
    Subscribe {
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        options: ConsumerOptions,
        /// Set for a durable topic subscription.
        durable: Option<DurableName>,
        token: Option<Token>,
    },
    /// Delete durable subscription `durable` if this shard holds it (the UNSUBSCRIBE named no
    /// topic, so every shard is asked); each answers `token`, or refuses while a consumer is
    /// attached to it ([`ToSession::DurableInUse`]).
    DestroyDurable {
        session: SessionId,
        durable: DurableName,
        token: Option<Token>,
    },
    /// `browser:true`: answer `token`, then send the session copies of the queue's waiting
    /// messages (those `selector` matches) as [`ToSession::Browsed`], consuming nothing.
    Browse {
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        selector: Option<Arc<Selector>>,
        token: Option<Token>,
    },
    /// Remove a consumer; its unacked messages go back to the queue. With `destroy`, a durable
    /// subscription is deleted with its pending messages.
    Unsubscribe {
        session: SessionId,
        /// None when the subscription is not active on this connection (an UNSUBSCRIBE that
        /// only deletes a durable subscription, `destroy`).
        sub: Option<SubId>,
        destination: DestinationName,
        destroy: Option<DurableName>,
        token: Option<Token>,
    },
    /// These deliveries are done with: ACKed by the client or, on an auto-ack subscription,
    /// written to the socket (a delivery that never got there is not consumed).
    Ack {
        session: SessionId,
        sub: SubId,
        ids: Vec<MessageId>,
        token: Option<Token>,
    },
    /// These deliveries go back to the queue, marked redelivered.
    Nack {
        session: SessionId,
        sub: SubId,
        ids: Vec<MessageId>,
        token: Option<Token>,
    },
    /// Answer `token` once everything this session sent before it is done.
    Barrier { session: SessionId, token: Token },
    /// The session is gone: drop its consumers, requeue its unacked messages, and delete its
    /// temporary destinations with their messages.
    Goodbye { session: SessionId },
    /// The answer to one persistent SEND this queue staged (its `store::Request::Insert`):
    /// the oldest of its staged SENDs still waiting is committed, or failed and is not
    /// enqueued. Posted from the store writer thread, in commit order.
    Stored {
        key: QueueKey,
        result: Result<(), Arc<str>>,
    },
    /// A message handed to a queue that did not stage it: a COMMIT's send, once the COMMIT's
    /// store transaction is on disk, or a dead letter, once its row moved (or at once when it
    /// is not stored). The one way a message enters a queue from elsewhere
    /// (`Queue::adopt`). A stored one is posted from the store writer thread in commit order,
    /// so no later page-in reads it a second time.
    Adopt {
        key: QueueKey,
        message: StoredMessage,
    },
    /// The answer to a page-in request, posted from the store writer thread. When `result` is an error,
    /// nothing was read (`messages` is empty).
    PagedIn {
        key: QueueKey,
        priority: u8,
        messages: Vec<StoredMessage>,
        exhausted: bool,
        result: Result<(), Arc<str>>,
    },
    /// The answer to a delivery mark request, posted from the store writer thread: the mark
    /// of `key` at `priority` is `upto` (or could not be written); dispatch of stored
    /// messages above the old mark may go on.
    Marked {
        key: QueueKey,
        priority: u8,
        upto: MessageId,
        result: Result<(), Arc<str>>,
    },
    /// At start: queues with stored messages (counts per priority), virtual topics' consumer
    /// queues, and durable subscriptions (with their topic) that this shard owns.
    Recover {
        queues: Vec<(QueueKey, [u64; 10])>,
        /// Durable subscriptions: name, topic and selector text.
        durables: Vec<(DurableName, DestinationName, Option<String>)>,
        /// The network duplicate filter rebuilt from the stored forwarded messages of this
        /// shard's destinations (None: start with an empty one).
        audit: Option<audit::NetworkAudit>,
    },
    /// Scheduled delivery (`AMQ_SCHEDULED_*`): see [`schedule::ScheduleCmd`].
    Schedule(schedule::ScheduleCmd),
    /// A question from the admin endpoint.
    Inspect(Inspect),
    /// Publish a message nobody waits an answer for (an advisory, `message/advisory.rs`).
    Publish { message: Arc<Message> },
    /// Publish an advisory to one subscriber only, `sub` of `session`, attached to the topic
    /// or to a wildcard pattern matching it: the consumers that existed when it subscribed
    /// to consumer advisories (`session/subscriptions.rs`, as ActiveMQ replays them).
    PublishTo {
        message: Arc<Message>,
        session: SessionId,
        sub: SubId,
    },
    /// Stop the owner loop (process shutdown).
    Stop,
}

/// Questions from the admin endpoint, answered on the owner's thread (so destinations stay
/// lock-free). An answer of `None` means "no such destination on this shard".
#[derive(Debug)]
pub enum Inspect {
    /// Every destination this shard owns.
    Stats {
        reply: tokio::sync::oneshot::Sender<Vec<DestinationStats>>,
    },
    /// Waiting messages of one queue.
    Browse {
        key: QueueKey,
        offset: usize,
        limit: usize,
        reply: tokio::sync::oneshot::Sender<Option<Vec<BrowsedMessage>>>,
    },
    /// Drop every waiting message of one queue (unacked deliveries stay); answers the count.
    Purge {
        key: QueueKey,
        reply: tokio::sync::oneshot::Sender<Option<u64>>,
    },
    /// Remove a destination with no consumers, and its messages.
    Delete {
        key: QueueKey,
        reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
    },
}

/// What an owner shard tells a session (or a store request's reply does, from the store
/// writer thread).
#[derive(Debug)]
pub enum ToSession {
    /// A message for one of the session's subscriptions; `redelivery_count` > 0 means it was
    /// delivered before and came back.
    Deliver {
        sub: SubId,
        message: Arc<Message>,
        redelivery_count: u32,
    },
    /// A durable subscription cannot be deleted while a consumer is attached to it.
    DurableInUse { name: String, token: Option<Token> },
    /// What a browser subscription sees: copies of waiting messages with their redelivery
    /// counts, in dispatch order; the session writes them and then ActiveMQ's `browser:end`.
    Browsed {
        sub: SubId,
        messages: Vec<(Arc<Message>, u32)>,
    },
    /// A SEND was accepted: the producer window reopens by one; `token` is its receipt.
    Accepted { token: Option<Token> },
    /// The answer to [`ToOwner::Probe`].
    Probed {
        destination: DestinationName,
        exists: bool,
    },
    /// A SEND could not be stored: the producer window reopens, and the session fails with an
    /// ERROR (carrying the receipt, if any).
    Rejected {
        token: Option<Token>,
        reason: Arc<str>,
    },
    /// A SEND named a temporary destination that does not exist (its connection closed, or
    /// never made it): nothing was sent; the producer window reopens, and the session fails
    /// with an ERROR naming `destination` (carrying the receipt, if any).
    NoSuchTemp {
        destination: DestinationName,
        token: Option<Token>,
    },
    /// A COMMIT's store transaction finished, and only that: on `Ok`, its persistent queue
    /// sends and its acks are on disk and its queue sends were handed to their owners (the
    /// session then posts the rest of the COMMIT); on `Err`, none of it happened and the
    /// session fails with an ERROR.
    Committed {
        token: Token,
        result: Result<(), Arc<str>>,
    },
    /// The command carrying `token` has taken effect (for an ACK, a DISCONNECT's barrier or a
    /// durable SUBSCRIBE that waited for the store: its deletes or record are on disk).
    Done { token: Token },
    /// The store could not commit what the command carrying `token` waited for (the deletes
    /// of acked messages, a durable subscription's record): the session fails with an ERROR
    /// carrying its receipt.
    Failed { token: Token, reason: Arc<str> },
    /// A SUBSCRIBE (or a scheduled SEND) would have gone past a broker-wide limit (`name`, at
    /// `max`): nothing was created, and the session fails with an ERROR (carrying the receipt,
    /// if any).
    LimitReached {
        name: &'static str,
        max: usize,
        token: Option<Token>,
    },
    /// A CONNECT's password check finished (`security`).
    Authenticated(Result<crate::security::Principal, crate::security::Refusal>),
    /// This session's subscriber held a topic over its memory limit for longer than
    /// `slow_consumer_timeout_ms` (stalling its producers): it is disconnected.
    SlowConsumer { destination: DestinationName },
}

/// The mailboxes of every shard's owner loop, indexed by shard. Shared by all sessions.
#[derive(Debug)]
pub struct Router {
    owners: Vec<UnboundedSender<ToOwner>>,
}

impl Router {
    /// A router over the given owner mailboxes (one per shard, in shard order).
    pub fn new(owners: Vec<UnboundedSender<ToOwner>>) -> Self {
        Router { owners }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.owners.len()
    }

    /// The shard that owns `destination`.
    pub fn owner_of(&self, destination: &DestinationName) -> usize {
        destination.owner(self.owners.len())
    }

    /// Posts `cmd` to shard `shard`'s owner loop. A stopped owner (process shutdown) drops it.
    pub fn post(&self, shard: usize, cmd: ToOwner) {
        let _ = self.owners[shard].send(cmd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;

    #[test]
    fn a_selector_reads_the_default_priority_when_the_sender_gave_none() {
        let m = Message {
            id: MessageId(1),
            destination: DestinationName::parse("/queue/q").unwrap(),
            headers: vec![("kind".into(), "a".into())],
            body: Default::default(),
            priority: 4,
            persistent: false,
            expires: 0,
        };
        let matches = |text: &str| Selector::parse(text).unwrap().matches(&m);
        assert!(matches("priority = 4 AND kind = 'a'"));
        assert!(matches("JMSPriority = 4"));
        assert!(!matches("priority = 5"));
        assert!(matches("persistent IS NULL"));
    }
}
