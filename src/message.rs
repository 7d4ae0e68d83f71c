//! The message and the commands that cross shards: the one low module that sessions,
//! destinations and (later) bridges and the store all import. It imports nothing of ours but
//! the codec's header type and destination names.
//!
//! Every channel here is unbounded in type but bounded by credit, and each says how:
//! a session has at most [`crate::limits::PRODUCER_WINDOW`] SENDs unanswered, at most its
//! prefetch of deliveries per subscription in flight, and one ACK/NACK per delivery.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use crate::destination::DestinationName;

/// A broker-wide unique message id. The owner shard assigns it, so ids of one destination
/// increase in arrival order; the low bits hold the shard so shards never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

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

/// An immutable message, shared by every delivery of it (a fan-out copies no body).
#[derive(Debug)]
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

/// A message the session has parsed but the owner has not yet numbered.
#[derive(Debug)]
pub struct Draft {
    pub destination: DestinationName,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub priority: u8,
    pub persistent: bool,
    pub expires: u64,
}

impl Draft {
    /// Numbers the draft, making it an immutable [`Message`].
    pub fn into_message(self, id: MessageId) -> Message {
        Message {
            id,
            destination: self.destination,
            headers: self.headers,
            body: self.body,
            priority: self.priority,
            persistent: self.persistent,
            expires: self.expires,
        }
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
    /// Enqueue (queue) or publish (topic). Always answered with [`ToSession::Accepted`]; the
    /// answer is held back while the destination is over its memory limit (flow control).
    Send {
        session: SessionId,
        draft: Draft,
        token: Option<Token>,
    },
    /// Register a consumer.
    Subscribe {
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        ack: AckMode,
        prefetch: u32,
        token: Option<Token>,
    },
    /// Remove a consumer; its unacked messages go back to the queue.
    Unsubscribe {
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        token: Option<Token>,
    },
    /// These deliveries are done with.
    Ack {
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        ids: Vec<MessageId>,
        token: Option<Token>,
    },
    /// These deliveries go back to the queue, marked redelivered.
    Nack {
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        ids: Vec<MessageId>,
        token: Option<Token>,
    },
    /// Auto-ack subscriptions: `n` deliveries were written, so `n` more may be sent.
    Credit {
        session: SessionId,
        sub: SubId,
        destination: DestinationName,
        n: u32,
    },
    /// Answer `token` once everything this session sent before it is done.
    Barrier { session: SessionId, token: Token },
    /// The session is gone: drop its consumers, requeue its unacked messages.
    Goodbye { session: SessionId },
    /// Stop the owner loop (process shutdown).
    Stop,
}

/// What an owner shard tells a session.
#[derive(Debug)]
pub enum ToSession {
    /// A message for one of the session's subscriptions.
    Deliver {
        sub: SubId,
        message: Arc<Message>,
        redelivered: bool,
    },
    /// A SEND was accepted: the producer window reopens by one; `token` is its receipt.
    Accepted { token: Option<Token> },
    /// The command carrying `token` has taken effect.
    Done { token: Token },
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
