//! Stompbox: a STOMP-first message broker.
//!
//! # Layout
//!
//! The modules follow the data flow:
//!
//! ```text
//! socket ──> codec (frames) ──> session (one per connection, on its shard)
//!                                  │ SEND / SUBSCRIBE / ACK … as `message::ToOwner`
//!                                  v
//!                        shard that owns the destination (hash(name) % shards)
//!                          └─ destination (queue | topic) ─ dispatch by credit ─> session
//! ```
//!
//! - [`codec`]: sans-IO STOMP 1.0–1.2 frame decoder and encoder.
//! - [`limits`]: every default and limit, with why.
//! - [`clock`]: the wall clock, read in one place.
//! - [`config`]: typed TOML config; CLI flags override it.
//! - [`message`]: the message and the commands that cross shards (the one low module).
//! - [`selector`]: JMS message selectors (the SUBSCRIBE `selector` header): parser and evaluator.
//! - [`destination`]: queues, topics, consumers and credit, on their owner shard.
//! - [`session`]: per-connection protocol state and its socket driver.
//! - [`shard`]: thread-per-core runtime: listeners, sessions and owner loops.
//! - [`cli`]: the `stompbox` command line.
//! - [`client`]: an async STOMP client with failover URIs, for the CLI and the bench.
//! - [`bench`](mod@bench): the `stompbox bench` load generator and the SQLite commit baseline.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod destination;
pub mod lease;
pub mod limits;
pub mod message;
pub mod network;
pub mod reload;
pub mod role;
pub mod security;
pub mod selector;
pub mod session;
pub mod shard;
pub mod store;
pub mod transport;
