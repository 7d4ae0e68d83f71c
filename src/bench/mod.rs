//! `stompbox bench`: a load generator for any STOMP broker, and the SQLite commit baseline.
//!
//! N producers and M consumers, each a [`crate::client::Client`] (so failover URIs work),
//! spread over a few threads that each run a single-threaded tokio runtime. Every message
//! carries its producer, a sequence number and its send time in headers ([`PRODUCER_HEADER`],
//! [`SEQ_HEADER`], [`SENT_HEADER`]); consumers turn them into end-to-end latency
//! (hdrhistogram) and lost / duplicated counts ([`seen::Seen`]). The result is a [`Report`].
//!
//! - `run.rs`: the phases of a run (connect, subscribe, start, wait, report).
//! - `producer.rs`, `consumer.rs`: one client's loop each.
//! - [`seen`]: lost and duplicate accounting.
//! - [`sqlite`]: the raw commit rate of the disk, the limit of persistent sync producers.
//! - [`report`]: the summary, as text or one JSON line; `progress.rs` the live line.

mod consumer;
mod producer;
mod progress;
pub mod report;
mod run;
pub mod seen;
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use report::Report;
pub use run::run;

use crate::client::{AckMode, BrokerUri, ConnectOptions};

/// Header naming the producer of a message: `<run id>-<producer index>`.
pub const PRODUCER_HEADER: &str = "bench-producer";
/// Header with the message's sequence number within its producer, from 0.
pub const SEQ_HEADER: &str = "bench-seq";
/// Header with the send time, in microseconds since the Unix epoch.
pub const SENT_HEADER: &str = "bench-sent-us";

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Producers and consumers at once.
    #[default]
    Both,
    /// Producers only: leave the messages in the destination (for a later `drain`).
    Fill,
    /// Consumers only: take what a `fill` left.
    Drain,
    /// Only hold `idle_conns` connections open for the duration.
    Idle,
    /// Only the SQLite commit baseline.
    Sqlite,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "both" => Ok(Mode::Both),
            "fill" => Ok(Mode::Fill),
            "drain" => Ok(Mode::Drain),
            "idle" => Ok(Mode::Idle),
            "sqlite" => Ok(Mode::Sqlite),
            _ => Err(format!(
                "unknown mode {s:?} (expected both, fill, drain, idle or sqlite)"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Both => "both",
            Mode::Fill => "fill",
            Mode::Drain => "drain",
            Mode::Idle => "idle",
            Mode::Sqlite => "sqlite",
        })
    }
}

/// How producers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendMode {
    /// No receipts: as fast as the broker reads.
    #[default]
    Async,
    /// A receipt per message, awaited before the next send.
    Sync,
    /// Transactions of K messages; the COMMIT's receipt is awaited.
    Batch(u32),
}

impl FromStr for SendMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "async" => Ok(SendMode::Async),
            "sync" => Ok(SendMode::Sync),
            _ => match s.strip_prefix("batch:").map(str::parse::<u32>) {
                Some(Ok(k)) if k > 0 => Ok(SendMode::Batch(k)),
                _ => Err(format!(
                    "unknown send mode {s:?} (expected async, sync or batch:K with K > 0)"
                )),
            },
        }
    }
}

impl fmt::Display for SendMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendMode::Async => f.write_str("async"),
            SendMode::Sync => f.write_str("sync"),
            SendMode::Batch(k) => write!(f, "batch:{k}"),
        }
    }
}

/// How much to send: a message count (over all producers) or a duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// This many messages in total (split evenly over producers); in `drain` mode, the number
    /// expected.
    Count(u64),
    /// Send (or, in `drain` mode, receive) for this long.
    Duration(Duration),
}

/// A benchmark run, fully typed.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The broker (or failover list).
    pub uri: BrokerUri,
    /// The broker the consumers connect to, when not `uri` (a network of brokers: produce on
    /// one, consume on another).
    pub consume_uri: Option<BrokerUri>,
    /// CONNECT options shared by every client.
    pub connect: ConnectOptions,
    /// The destination, e.g. `/queue/bench` or `/topic/bench`.
    pub destination: String,
    /// What to run.
    pub mode: Mode,
    /// Producer connections.
    pub producers: usize,
    /// Consumer connections.
    pub consumers: usize,
    /// Body size in bytes.
    pub size: usize,
    /// `persistent:true` on every SEND.
    pub persistent: bool,
    /// How producers send.
    pub send_mode: SendMode,
    /// Consumers' ack mode.
    pub ack: AckMode,
    /// Consumers' prefetch (`None`: the broker's default).
    pub prefetch: Option<u32>,
    /// Total send rate in messages per second over all producers (`None`: flat out).
    pub rate: Option<f64>,
    /// How much to send.
    pub amount: Amount,
    /// Extra connections that CONNECT and then stay idle for the whole run.
    pub idle_conns: usize,
    /// Threads running clients.
    pub threads: usize,
    /// Consumers stop when nothing arrived for this long after the producers finished.
    pub drain_timeout: Duration,
    /// Measure the SQLite commit rate in this directory first.
    pub sqlite_baseline: Option<PathBuf>,
    /// How long the SQLite baseline runs.
    pub sqlite_duration: Duration,
    /// Draw a live progress line on stderr (only if it is a terminal).
    pub progress: bool,
}

impl BenchConfig {
    /// True when the destination is a topic (every consumer expects every message).
    pub fn is_topic(&self) -> bool {
        self.destination.starts_with("/topic/") || self.destination.starts_with("/exchange/")
    }

    /// Where the consumers connect: `consume_uri`, else `uri`.
    pub fn consumer_uri(&self) -> &BrokerUri {
        self.consume_uri.as_ref().unwrap_or(&self.uri)
    }
}
