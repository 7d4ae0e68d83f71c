//! A small async STOMP 1.2 client on tokio, for `stompbox produce|consume|bench` and for tests.
//!
//! It speaks to any STOMP broker (stompbox, ActiveMQ, RabbitMQ) through the same sans-IO codec
//! as the broker ([`crate::codec`]). It owns:
//!
//! - [`uri`]: `tcp://host:port` and ActiveMQ `failover:(...)?options` URIs, parsed once.
//! - [`backoff`]: the reconnect schedule (ActiveMQ `FailoverTransport` semantics).
//! - `connection`: one TCP connection: handshake, buffered writes, reads, heart-beats.
//! - `replay`: the frames a failover client resends after a reconnect (at-least-once).
//! - `failover`: [`Client`], one logical connection over a list of brokers.
//!
//! A [`Client`] is driven by one task: every method takes `&mut self`. Nothing runs in the
//! background, so heart-beats are only sent while a method is awaited (see `connection`).

pub mod backoff;
mod connection;
mod failover;
mod replay;
pub mod uri;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use backoff::Backoff;
pub use failover::{Client, Delivery, TxId};
pub use uri::{BrokerUri, FailoverOptions, UriError};

use crate::codec::{Frame, ParseError};

/// What can go wrong talking to a broker. Transport failures (the first six) make a
/// failover client reconnect; the others are reported to the caller.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (refused, reset, …).
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// The broker closed the connection.
    #[error("connection closed by the broker")]
    Closed,
    /// The broker sent nothing for longer than its heart-beat interval allows.
    #[error("no heart-beat from the broker for {0:?}")]
    HeartbeatTimeout(Duration),
    /// The broker read nothing of what we wrote for longer than `write_timeout`: it is stuck,
    /// or will not read (a write would otherwise wait for it forever).
    #[error("the broker read nothing we wrote for {0:?}")]
    WriteStalled(Duration),
    /// TCP connect plus CONNECT/CONNECTED took longer than `connect_timeout`.
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    /// The broker sent bytes that are not STOMP.
    #[error("broker sent an invalid frame: {0}")]
    Parse(ParseError),
    /// The broker sent an ERROR frame (and, per the spec, closed the connection).
    #[error("broker error: {message}{}", if body.is_empty() { String::new() } else { format!(" ({body})") })]
    Broker {
        /// The ERROR frame's `message` header.
        message: String,
        /// The ERROR frame's body, as text.
        body: String,
    },
    /// The broker answered with a frame that makes no sense at this point.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A failover client exhausted `maxReconnectAttempts`.
    #[error("gave up after {attempts} reconnect passes over {uri}: {last}")]
    GaveUp {
        /// Failed passes over the broker list.
        attempts: u64,
        /// The URI, for the message.
        uri: String,
        /// The last connection error.
        last: Box<ClientError>,
    },
    /// A method was called after the connection was lost for good.
    #[error("not connected")]
    NotConnected,
}

// By hand rather than `#[from]`, which would also make the cause a `source()` and print its
// text twice in an anyhow chain (`{e:#}`).
impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<ParseError> for ClientError {
    fn from(e: ParseError) -> Self {
        ClientError::Parse(e)
    }
}

impl ClientError {
    /// The error an ERROR frame stands for.
    pub fn from_error_frame(frame: &Frame) -> ClientError {
        ClientError::Broker {
            message: frame.get("message").unwrap_or("").to_string(),
            body: String::from_utf8_lossy(&frame.body).trim_end().to_string(),
        }
    }

    /// True when a failover client should reconnect rather than report the error: transport
    /// failures, and ERROR frames that announce a broker going away (stompbox's
    /// `broker shutting down`, RabbitMQ's `connection_forced`).
    pub fn is_transport(&self) -> bool {
        match self {
            ClientError::Io(_)
            | ClientError::Closed
            | ClientError::HeartbeatTimeout(_)
            | ClientError::WriteStalled(_)
            | ClientError::ConnectTimeout(_)
            | ClientError::Parse(_) => true,
            ClientError::Broker { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("shutting down") || m.contains("connection_forced")
            }
            _ => false,
        }
    }
}

/// How a client identifies itself on CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `login` header.
    pub login: Option<String>,
    /// `passcode` header.
    pub passcode: Option<String>,
    /// `client-id` header (ActiveMQ durable subscriptions).
    pub client_id: Option<String>,
    /// `host` header: the virtual host. `/` suits RabbitMQ's default vhost; ActiveMQ and
    /// stompbox ignore it.
    pub host: String,
    /// `heart-beat` we offer: (we send every, we want every). Zero disables a direction.
    pub heart_beat: (Duration, Duration),
    /// Longest time for TCP connect plus CONNECTED.
    pub connect_timeout: Duration,
    /// A flush that writes nothing for this long fails ([`ClientError::WriteStalled`]): the
    /// broker is stuck or will not read. None (the default): wait, as a producer held by the
    /// broker's flow control should.
    pub write_timeout: Option<Duration>,
    /// `stompbox-bridge-token`: a broker's own bridges present its secret when they connect
    /// to it (`network::status::Bridges::is_own`).
    pub bridge_token: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            login: None,
            passcode: None,
            client_id: None,
            host: "/".to_string(),
            heart_beat: (Duration::ZERO, Duration::ZERO),
            connect_timeout: Duration::from_secs(10),
            write_timeout: None,
            bridge_token: None,
        }
    }
}

/// A subscription's `ack` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// The broker considers a message consumed once sent.
    #[default]
    Auto,
    /// ACK is cumulative: it acknowledges this and every earlier message of the subscription.
    Client,
    /// ACK acknowledges one message.
    ClientIndividual,
}

impl AckMode {
    /// The `ack` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

impl FromStr for AckMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AckMode::Auto),
            "client" => Ok(AckMode::Client),
            "client-individual" => Ok(AckMode::ClientIndividual),
            _ => Err(format!(
                "unknown ack mode {s:?} (expected auto, client or client-individual)"
            )),
        }
    }
}

impl fmt::Display for AckMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to ask for on SUBSCRIBE.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// The `ack` mode.
    pub ack: AckMode,
    /// Prefetch (sent as both `activemq.prefetchSize` and RabbitMQ's `prefetch-count`);
    /// `None` leaves the broker's default.
    pub prefetch: Option<u32>,
    /// More SUBSCRIBE headers (selectors, durable subscription names, …).
    pub headers: Vec<(String, String)>,
}
