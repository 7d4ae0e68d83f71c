//! The catalogue of what a client can be told in an ERROR frame. Every ERROR the broker sends
//! is built here, from one of these variants, with a stable lower-case `message` header and a
//! body that explains what to do.

use crate::codec::{Command, Frame, ParseError, Version};
use crate::message::NameError;
use crate::selector::SelectorError;

/// A session-level error. Each one is fatal for the connection: the session sends the ERROR
/// frame (with `receipt-id` when the offending frame asked for a receipt) and closes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The bytes are not a valid frame (see [`ParseError`]).
    #[error("malformed frame")]
    Parse(#[from] ParseError),
    /// A frame other than CONNECT/STOMP before the session is connected.
    #[error("not connected")]
    NotConnected(Command),
    /// A second CONNECT or STOMP on one connection.
    #[error("already connected")]
    AlreadyConnected,
    /// The client sent a server command (CONNECTED, MESSAGE, RECEIPT, ERROR).
    #[error("unexpected command")]
    UnexpectedCommand(Command),
    /// `accept-version` names no version the broker speaks.
    #[error("unsupported protocol version")]
    UnsupportedVersion(String),
    /// A required header is missing.
    #[error("missing required header")]
    MissingHeader(Command, &'static str),
    /// A header has a value the broker cannot use.
    #[error("invalid header value")]
    InvalidHeader(&'static str, String, &'static str),
    /// The `destination` header is not a destination the broker knows.
    #[error("invalid destination")]
    Destination(#[from] NameError),
    /// SUBSCRIBE with an `id` already in use on this connection.
    #[error("duplicate subscription id")]
    DuplicateSubscription(String),
    /// UNSUBSCRIBE (or ACK's `subscription`) names no live subscription.
    #[error("unknown subscription")]
    UnknownSubscription(String),
    /// ACK/NACK names no delivery awaiting acknowledgement on this connection.
    #[error("unknown ack id")]
    UnknownAck(String),
    /// BEGIN with a transaction id already open.
    #[error("duplicate transaction")]
    DuplicateTransaction(String),
    /// COMMIT/ABORT/SEND/ACK name a transaction that is not open.
    #[error("unknown transaction")]
    UnknownTransaction(String),
    /// A configured per-connection limit was reached.
    #[error("limit exceeded")]
    Limit(&'static str, usize),
    /// The broker already holds `limits.max_connections` connections.
    #[error("too many connections")]
    TooManyConnections(usize),
    /// No CONNECT within `connect_timeout_ms`.
    #[error("connect timeout")]
    ConnectTimeout(u64),
    /// Nothing received from the client for longer than the negotiated heart-beat × grace.
    #[error("heart-beat timeout")]
    HeartBeatTimeout(u64),
    /// A large frame (one holding large-frames budget) got no byte for
    /// `limits.frame_stall_timeout_ms`.
    #[error("frame stalled")]
    FrameStalled(u64),
    /// The broker is shutting down.
    #[error("broker shutting down")]
    ShuttingDown,
    /// CONNECT names a `client-id` that a live connection holds.
    #[error("client-id already connected")]
    ClientIdInUse(String),
    /// A durable subscription on a queue.
    #[error("cannot durably subscribe to a queue")]
    DurableQueue(String),
    /// A durable subscription without a CONNECT `client-id`.
    #[error("durable subscription needs a client-id")]
    DurableWithoutClientId,
    /// UNSUBSCRIBE would delete a durable subscription a consumer is attached to.
    #[error("durable consumer is in use")]
    DurableInUse(String),
    /// The store could not write: the frame had no effect.
    #[error("store failure")]
    Store(String),
    /// SUBSCRIBE's `selector` does not parse: the selector and where it went wrong.
    #[error("invalid selector")]
    Selector(String, SelectorError),
    /// SEND to a temporary destination that does not exist (its connection closed).
    #[error("temporary destination does not exist")]
    NoSuchTemp(String),
    /// SUBSCRIBE to a temporary destination this connection did not create.
    #[error("temporary destination belongs to another connection")]
    ForeignTemp(String),
    /// A subscriber held its topic over the memory limit too long.
    #[error("slow consumer")]
    SlowConsumer(String),
    /// CONNECT's credentials were not accepted (which part, the log says; the client is not
    /// told).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The connection's user may not do this to this destination (`[[security.authorization]]`):
    /// the user, the operation and the destination.
    #[error("not authorized")]
    NotAuthorized(String, crate::security::authz::Operation, String),
    /// A wildcard destination where one destination is needed (SEND, a durable or browsing
    /// subscription): the destination and why.
    #[error("wildcard destination not allowed here")]
    Wildcard(String, &'static str),
}

/// The `content-type` of the broker's ERROR frames (their body explains the error).
pub const ERROR_CONTENT_TYPE: &str = "text/plain;charset=utf-8";

impl Error {
    /// The ERROR frame for this error. `receipt` is the offending frame's `receipt` header.
    pub fn to_frame(&self, receipt: Option<&str>) -> Frame {
        let mut frame = Frame::new(Command::Error).header("message", self.message());
        if let Error::UnsupportedVersion(_) = self {
            frame = frame.header("version", Version::supported_list());
        }
        if let Some(r) = receipt {
            frame = frame.header("receipt-id", r);
        }
        // With a charset, not bare `text/plain`: stompit 1.0.0 (the current release) handles
        // an ERROR of exactly `text/plain` under 4 KiB by destroying its frame stream, which
        // nobody listens to, and the Node process dies of an uncaught exception
        // (clients/js/error.test.js). The body is UTF-8 text either way; ActiveMQ sends no
        // content-type, RabbitMQ bare `text/plain`.
        frame
            .header("content-type", ERROR_CONTENT_TYPE)
            .with_body(self.detail())
    }

    /// The stable `message` header: the error's kind, plus its specifics where short.
    pub fn message(&self) -> String {
        match self {
            Error::Parse(e) => format!("malformed frame: {e}"),
            Error::MissingHeader(cmd, h) => format!("missing required header {h} on {cmd}"),
            Error::InvalidHeader(h, v, _) => format!("invalid {h} header {v:?}"),
            Error::Limit(name, max) => format!("limit exceeded: {name} ({max})"),
            Error::Selector(_, e) => e.to_string(),
            Error::NoSuchTemp(d) | Error::ForeignTemp(d) => format!("{other}: {d}", other = self),
            // ActiveMQ's words, which clients written for it may look for.
            Error::NotAuthorized(user, op, d) => {
                format!("User {user} is not authorized to {}: {d}", op.phrase())
            }
            other => other.to_string(),
        }
    }

    /// A sentence or two for the ERROR body: what went wrong and what to do.
    pub fn detail(&self) -> String {
        match self {
            Error::Parse(e) => format!("The broker could not parse a frame: {e}. The connection is closed because the byte stream can no longer be trusted."),
            Error::NotConnected(cmd) => format!("{cmd} was sent before CONNECT. Send CONNECT (or STOMP) first."),
            Error::AlreadyConnected => "This connection is already connected; CONNECT may be sent only once.".into(),
            Error::UnexpectedCommand(cmd) => format!("{cmd} is a server frame; clients may not send it."),
            Error::UnsupportedVersion(v) => format!("accept-version {v:?} names no version this broker speaks. Supported: {}.", Version::supported_list()),
            Error::MissingHeader(cmd, h) => format!("{cmd} requires the {h} header."),
            Error::InvalidHeader(h, v, why) => format!("Header {h} has value {v:?}: {why}."),
            Error::Destination(e) => format!("{e}."),
            Error::DuplicateSubscription(id) => format!("Subscription id {id:?} is already in use on this connection; ids must be unique per connection."),
            Error::UnknownSubscription(id) => format!("No subscription with id {id:?} on this connection."),
            Error::UnknownAck(id) => format!("No delivery awaiting acknowledgement has ack id {id:?} on this connection. Ack ids are connection-scoped: they die with the connection (its unacked messages were redelivered), and auto-ack subscriptions take no ACK."),
            Error::DuplicateTransaction(t) => format!("Transaction {t:?} is already open on this connection."),
            Error::UnknownTransaction(t) => format!("Transaction {t:?} is not open on this connection (BEGIN it first; ids are connection-scoped)."),
            Error::Limit(name, max) => format!("This connection reached the broker's {name} limit of {max}."),
            Error::TooManyConnections(max) => format!("The broker already holds its limit of {max} connections. Try again later or another broker."),
            Error::ConnectTimeout(ms) => format!("No CONNECT frame arrived within {ms} ms of connecting."),
            Error::HeartBeatTimeout(ms) => format!("Nothing was received from the client for {ms} ms, longer than the negotiated heart-beat allows."),
            Error::FrameStalled(ms) => format!("No byte of the large frame being read arrived for {ms} ms (limits.frame_stall_timeout_ms); the memory it held is needed by other large frames."),
            Error::AuthenticationFailed => "The login and passcode were not accepted.".into(),
            Error::NotAuthorized(..) => format!("{}. The broker's [[security.authorization]] entries do not give this user's groups that right; nothing was sent or subscribed.", self.message()),
            Error::ShuttingDown => "The broker is shutting down. Reconnect to another broker or retry shortly.".into(),
            Error::ClientIdInUse(id) => format!("Another live connection uses client-id {id:?}. Client ids are unique per broker, since durable subscriptions belong to them."),
            Error::DurableQueue(d) => format!("{d} is a queue; durable subscriptions (activemq.subscriptionName, durable-subscription-name, durable:true) are for /topic/ destinations."),
            Error::DurableWithoutClientId => "A durable subscription (activemq.subscriptionName or durable-subscription-name) needs a client-id header on CONNECT.".into(),
            Error::SlowConsumer(d) => format!("This connection's subscription to {d} kept the topic over its memory limit for longer than slow_consumer_timeout_ms, holding up its producers, so it was disconnected. Read faster, use a smaller prefetch with client acks, or a durable subscription (which pages to disk)."),
            Error::Selector(text, e) => {
                let caret = " ".repeat(e.position - 1);
                format!("The selector of this SUBSCRIBE is not valid JMS selector syntax: {e}.\n\n  {text}\n  {caret}^")
            }
            Error::DurableInUse(name) => format!("Durable subscription {name:?} has a consumer attached; UNSUBSCRIBE that consumer (or let its connection close) before deleting the subscription."),
            Error::Wildcard(d, why) => format!("{d} is a wildcard destination (a * or > segment matches many destinations): {why}."),
            Error::NoSuchTemp(d) => format!("{d} was a temporary destination; it was deleted when the connection that created it closed (or never existed), with its messages. Nothing was sent. A reply to a requester that has gone away has nowhere to go. Another broker's temporary destination exists here only while a network bridge holds a route for it, that is while its requester there has a consumer on it (docs/network.md)."),
            Error::ForeignTemp(d) => format!("{d} is a temporary destination of another connection (or no longer exists): others may SEND to it, as to a reply-to, but only the connection that created it may SUBSCRIBE."),
            Error::Store(reason) => format!("The broker could not store the message or transaction, so it was not accepted: {reason}. Retry it."),
        }
    }
}
