//! Typed configuration: parsed once from TOML (`config/stompbox.toml`), then overridden by CLI
//! flags. Every key has the same name in the file, in [`Config`] and (kebab-case) as a flag.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod host;
mod network;
mod policy;
mod transport;

pub use host::{AllowedHost, Authority, Host};
pub use network::{DemandFilter, NetworkConnector};
pub(crate) use policy::split_pattern;
pub use policy::{Policy, PolicyEntry};
pub use transport::{ClientAuth, TlsConfig, WebSocketConfig};

use crate::limits::Limits;
use crate::message::DestinationName;

/// The database file inside `data_dir`.
pub const DB_FILE: &str = "stompbox.db";

/// What a RECEIPT for a persistent SEND promises (config `durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=FULL`: each commit is fsynced; a RECEIPT means the message is on disk.
    Fsync,
    /// `synchronous=NORMAL`: survives a crash of the broker process, but the last commits
    /// before a power loss or OS crash may be lost.
    Relaxed,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole broker configuration. `Default` is the documented default of every key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the STOMP TCP listener.
    pub bind: SocketAddr,
    /// Directory holding `stompbox.db` and everything else the broker keeps on disk.
    pub data_dir: PathBuf,
    /// Number of shards (threads, one single-threaded runtime each). 0 = one per CPU.
    /// (`cores`, its name before issue 9, is still read.)
    #[serde(alias = "cores")]
    pub shards: usize,
    /// A client that has not sent CONNECT this long after connecting is closed.
    pub connect_timeout_ms: u64,
    /// How long a graceful shutdown waits for connections to flush what they have in flight.
    pub shutdown_timeout_ms: u64,
    /// What a RECEIPT for a persistent SEND promises: `fsync` (on disk) or `relaxed`
    /// (survives a broker crash, not a power loss). See docs/sqlite.md.
    pub durability: Durability,
    /// Most store requests the store writer commits in one transaction.
    pub store_max_batch: usize,
    /// Expect a PROXY protocol (v1 or v2) header on every STOMP connection, as sent by a load
    /// balancer (HAProxy `send-proxy`), so logs and limits see the real client address.
    pub proxy_protocol: bool,
    /// The master/slave lease.
    pub lease: LeaseConfig,
    /// The admin HTTP endpoint (health checks, metrics, console, the admin API).
    pub admin: AdminConfig,
    /// Heart-beat negotiation.
    pub heart_beat: HeartBeatConfig,
    /// Frame and connection limits.
    pub limits: Limits,
    /// Destination memory and prefetch defaults.
    pub destinations: DestinationConfig,
    /// This broker's name in a network of brokers: what messages it forwards carry in their
    /// broker path, so they never come back to it. Unique in a network; a master/slave pair
    /// shares one (it is one broker to its peers). ActiveMQ's default is `localhost` too.
    pub broker_name: String,
    /// Network connectors (`[[network]]`): bridges that forward messages to other brokers.
    pub network: Vec<NetworkConnector>,
    /// STOMP over WebSocket (`ws://`, and `wss://` with `[tls]`).
    pub websocket: WebSocketConfig,
    /// TLS: the certificate of the `stomp+ssl` and `wss` listeners, and client certificates.
    pub tls: TlsConfig,
    /// Authentication: users, anonymous access, back-off (docs/security.md).
    pub security: crate::security::SecurityConfig,
}

/// Master/slave lease timing (see docs/ha.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// How often the master extends its lease.
    pub renew_interval_ms: u64,
    /// How long a lease lasts without renewal; a standby takes over an expired lease.
    pub ttl_ms: u64,
    /// How often a standby checks whether the lease is free or expired.
    pub acquire_interval_ms: u64,
    /// What a master that lost its lease does: go back to `standby`, or `exit`.
    pub on_step_down: StepDown,
}

/// What a master does after losing its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepDown {
    /// Close clients and wait as a standby.
    Standby,
    /// Close clients and exit with a failure status (for a supervisor to restart).
    Exit,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            renew_interval_ms: 1000,
            ttl_ms: 5000,
            acquire_interval_ms: 500,
            on_step_down: StepDown::Standby,
        }
    }
}

/// The admin HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/health`, `/metrics`, the console, `/api/…`; see
    /// docs/admin-api.md). (flag: --admin-bind)
    pub bind: SocketAddr,
    /// Host names the endpoint answers to besides its own address (and, on a loopback or
    /// 0.0.0.0 bind, `localhost`): `name` on any port, or `name:port`. Why: a web page whose
    /// name was re-pointed at this address (DNS rebinding) may read the API as its own origin,
    /// and only the `Host` header it sends gives it away, so names must be trusted here.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Whether requests need credentials (docs/security.md): `auto` (the default) when the
    /// endpoint is bound beyond loopback, `always`, or `never` (refused beyond loopback).
    pub auth: AdminAuth,
    /// Users of `[security]` in this group may use the endpoint (HTTP Basic).
    pub admin_group: String,
    /// A file holding a bearer token that also admits (`Authorization: Bearer …`), for
    /// scripts and monitoring; read at start.
    pub token_file: Option<PathBuf>,
    /// Paths answered without credentials (what load balancers and Prometheus call).
    pub open_paths: Vec<String>,
}

/// When the admin endpoint asks for credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAuth {
    /// When bound to an address other hosts can reach.
    #[default]
    Auto,
    Always,
    /// Never (only on a loopback bind).
    Never,
}

impl AdminConfig {
    /// Whether requests (other than `open_paths`) need credentials.
    pub fn needs_auth(&self) -> bool {
        match self.auth {
            AdminAuth::Always => true,
            AdminAuth::Never => false,
            AdminAuth::Auto => !self.bind.ip().is_loopback(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8161)),
            allowed_hosts: Vec::new(),
            auth: AdminAuth::Auto,
            admin_group: "admins".into(),
            token_file: None,
            open_paths: vec!["/health".into(), "/metrics".into()],
        }
    }
}

/// Heart-beat settings (STOMP 1.1+ `heart-beat` header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartBeatConfig {
    /// Shortest heart-beat interval the broker agrees to, either way. A client asking for
    /// less gets this; it keeps a client from making the broker wake up every millisecond.
    pub min_interval_ms: u64,
    /// A client is declared dead after `grace` × the negotiated client→broker interval
    /// without a byte from it. ActiveMQ uses 1.0 (strict), stomp.py 1.5, Artemis 2.0.
    pub grace: f64,
}

/// Destination defaults and policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationConfig {
    /// The broker's `broker_name`, copied here when the owners start (not a key of
    /// `[destinations]`): which temporary destinations are this broker's own.
    #[serde(skip)]
    pub broker_name: String,
    /// Bytes of messages one destination holds in memory. Beyond it, persistent messages stay
    /// on disk only (paged in as consumers drain) and producers of non-persistent messages are
    /// slowed down (producer flow control: the broker stops reading their sockets).
    pub memory_limit_bytes: u64,
    /// Bytes of messages all destinations together hold in memory; past it every destination
    /// that holds messages behaves as over its own limit (persistent messages stay on disk,
    /// non-persistent producers are slowed); one whose consumers keep it empty still takes
    /// messages. Parked producers are re-checked at least once a second.
    pub global_memory_limit_bytes: u64,
    /// Stored messages read from disk in one page-in.
    pub page_batch: usize,
    /// A topic that has been over its memory limit (its producers held) for this long
    /// disconnects the subscriber with the largest backlog, with an ERROR, so one stuck
    /// subscriber cannot stall a topic for good. 0 = never (producers wait indefinitely).
    pub slow_consumer_timeout_ms: u64,
    /// Prefetch of a queue subscription that names none (`activemq.prefetchSize`).
    pub queue_prefetch: u32,
    /// Prefetch of a topic subscription that names none.
    pub topic_prefetch: u32,
    /// Prefetch of a durable topic subscription that names none (ActiveMQ: 100).
    pub durable_prefetch: u32,
    /// A message that came back (NACK, consumer gone) more often than this goes to the
    /// dead-letter queue (ActiveMQ's default: 6).
    pub max_redeliveries: u32,
    /// Wait before a message that came back is delivered again (ms); 0 = at once, as
    /// ActiveMQ's STOMP does without its redelivery plugin.
    pub redelivery_delay_ms: u64,
    /// Each further redelivery waits this many times longer than the one before (1 = the
    /// same delay every time; ActiveMQ's client uses 5 with exponential back-off on).
    pub redelivery_backoff_multiplier: f64,
    /// Longest redelivery delay (ms); 0 = no cap.
    pub max_redelivery_delay_ms: u64,
    /// A NACK sends the message straight to the dead-letter queue (ActiveMQ's STOMP
    /// behaviour) instead of redelivering it until `max_redeliveries`.
    pub nack_to_dlq: bool,
    /// `shared`: one `/queue/ActiveMQ.DLQ`; `individual`: `/queue/ActiveMQ.DLQ.Queue.NAME`
    /// (and `.Topic.NAME`) per destination.
    pub dead_letter_strategy: DeadLetterStrategy,
    /// Expired messages go to the dead-letter queue (true) or are dropped (false).
    pub expired_to_dlq: bool,
    /// Time to live (ms) given to messages sent without `expires`; 0 = none.
    pub default_ttl_ms: u64,
    /// Per-destination time to live (ms) for messages sent without `expires`, by full
    /// destination name, e.g. `"/queue/orders" = 60000`; overrides `default_ttl_ms`.
    pub ttl_ms: BTreeMap<String, u64>,
    /// Most durable topic subscriptions the broker keeps. Each one keeps a queue (and stored
    /// rows) until it is explicitly unsubscribed, and RabbitMQ-style `durable:true` needs no
    /// `client-id`, so without a cap clients could create them without end. A SUBSCRIBE that
    /// would create one more is an ERROR; re-attaching to an existing one always works.
    pub max_durable_subscriptions: usize,
    /// Most scheduled messages (`AMQ_SCHEDULED_DELAY`, `AMQ_SCHEDULED_PERIOD`) pending at
    /// once, broker-wide. Each is held in memory until its last delivery (and charged to
    /// `global_memory_limit_bytes`); a scheduled SEND over the cap is an ERROR.
    pub max_scheduled_messages: usize,
    /// Per-destination policies by wildcard pattern (see [`PolicyEntry`]): each setting
    /// from the most specific matching entry that sets it, else from the defaults above.
    pub policy: Vec<PolicyEntry>,
    /// Topic names starting with this are virtual topics: a SEND to one also goes to each of
    /// its consumer queues (ActiveMQ's `VirtualTopic.`); empty: no virtual topics.
    pub virtual_topic_prefix: String,
    /// What a virtual topic's consumer queue puts before the topic's name: `.`-separated
    /// segments, `*` for any one (ActiveMQ's `Consumer.*.`, as in
    /// `/queue/Consumer.billing.VirtualTopic.Orders`).
    pub virtual_topic_consumer_prefix: String,
    /// Queues and topics that exist from the start (ActiveMQ's startup `<destinations>`):
    /// listed at once, never forgotten while idle, and usable by users without the `admin`
    /// right on them (docs/security.md). Full names without wildcards, e.g.
    /// `["/queue/orders", "/topic/prices"]`.
    pub declared: Vec<String>,
    /// Publish ActiveMQ's advisory messages (`/topic/ActiveMQ.Advisory.…`: destinations,
    /// consumers, connections, expired and dead-lettered messages), as ActiveMQ's
    /// `advisorySupport`.
    pub advisories: bool,
    /// A queue or topic that is idle (nothing waiting, no consumers) stays listed, with its
    /// counters, in `/api/destinations`, `/metrics` and the console until it has been idle
    /// this long (checked once a second), so what it did can still be seen (and `rate()` over
    /// its counters still works) after it drained. Default 5 minutes: several scrapes and a
    /// look at the console, while one-off names still go. 0 = forgotten as soon as idle.
    /// ActiveMQ keeps destinations forever unless `gcInactiveDestinations` (then 60 s,
    /// `inactiveTimoutBeforeGC`). Durable subscriptions and virtual topics' consumer queues
    /// stay until deleted; temporary destinations go with their connection.
    pub idle_timeout_ms: u64,
    /// Most idle destinations kept listed, broker-wide (each shard keeps its share,
    /// `max_idle_destinations / shards` rounded up); beyond it the longest idle are forgotten
    /// early. One costs its name and counters (about 250 bytes plus the name), no buffers, so
    /// a client sending to endless one-off names cannot grow memory without bound. Each is
    /// also 14 series in every `/metrics` scrape, so the default stays modest: 1,000 idle
    /// destinations are about 14,000 series.
    pub max_idle_destinations: usize,
    /// The network duplicate filter (docs/network.md, "Duplicates"): forwarded messages
    /// (`stompbox-network-id`) remembered per forwarding broker, on each shard, to drop a copy
    /// a bridge sends again after a lost RECEIPT. A bridge resends at most what it had in
    /// flight (its `prefetch` per forwarded destination, 1000 by default), so ActiveMQ's
    /// `maxAuditDepth` of 2048 covers two destinations' full windows at once.
    /// 0 turns the filter off.
    pub network_audit_depth: usize,
    /// Most forwarding brokers the duplicate filter remembers per shard (ActiveMQ's
    /// `maxProducersToAudit`, 64); beyond it the least recently heard is forgotten. Memory
    /// is at most about `network_audit_depth × network_audit_producers × 40` bytes per shard
    /// (5 MB with the defaults), whatever clients send.
    pub network_audit_producers: usize,
}

/// Where dead letters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStrategy {
    /// One queue for all: `/queue/ActiveMQ.DLQ`.
    Shared,
    /// One per destination: `/queue/ActiveMQ.DLQ.Queue.NAME`, `/queue/ActiveMQ.DLQ.Topic.NAME`.
    Individual,
}

impl DestinationConfig {
    /// Where virtual topics and their consumer queues are.
    pub fn virtual_topics(&self) -> crate::message::virtual_topic::Naming<'_> {
        crate::message::virtual_topic::Naming {
            topic_prefix: &self.virtual_topic_prefix,
            consumer_prefix: &self.virtual_topic_consumer_prefix,
        }
    }

    /// The time to live for messages to `destination` sent without `expires` (0 = none):
    /// its `ttl_ms` entry, else its policy's.
    pub fn ttl_for(&self, destination: &DestinationName) -> u64 {
        match self.ttl_ms.get(destination.as_str()) {
            Some(ttl) => *ttl,
            None if self.policy.is_empty() => self.default_ttl_ms,
            None => self.policy_for(destination).ttl_ms,
        }
    }

    /// Everything that applies to `destination`: the defaults, overridden by the matching
    /// `policy` entries.
    pub fn policy_for(&self, destination: &DestinationName) -> Policy {
        let defaults = Policy {
            max_redeliveries: self.max_redeliveries,
            redelivery_delay_ms: self.redelivery_delay_ms,
            redelivery_backoff_multiplier: self.redelivery_backoff_multiplier,
            max_redelivery_delay_ms: self.max_redelivery_delay_ms,
            nack_to_dlq: self.nack_to_dlq,
            ttl_ms: self.default_ttl_ms,
            expired_to_dlq: self.expired_to_dlq,
        };
        policy::resolve(&defaults, &self.policy, destination)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 61613)),
            data_dir: PathBuf::from("./data"),
            shards: 0,
            connect_timeout_ms: 30_000,
            shutdown_timeout_ms: 5_000,
            durability: Durability::Fsync,
            store_max_batch: 1024,
            proxy_protocol: false,
            lease: LeaseConfig::default(),
            admin: AdminConfig::default(),
            heart_beat: HeartBeatConfig::default(),
            limits: Limits::default(),
            destinations: DestinationConfig::default(),
            broker_name: "localhost".into(),
            network: Vec::new(),
            websocket: WebSocketConfig::default(),
            tls: TlsConfig::default(),
            security: crate::security::SecurityConfig::default(),
        }
    }
}

impl Default for HeartBeatConfig {
    fn default() -> Self {
        HeartBeatConfig {
            min_interval_ms: 100,
            grace: 1.5,
        }
    }
}

impl Default for DestinationConfig {
    fn default() -> Self {
        DestinationConfig {
            broker_name: String::new(),
            memory_limit_bytes: 32 * 1024 * 1024,
            global_memory_limit_bytes: 512 * 1024 * 1024,
            page_batch: 200,
            slow_consumer_timeout_ms: 30_000,
            queue_prefetch: crate::limits::DEFAULT_QUEUE_PREFETCH,
            topic_prefetch: crate::limits::DEFAULT_TOPIC_PREFETCH,
            durable_prefetch: crate::limits::DEFAULT_DURABLE_PREFETCH,
            max_redeliveries: 6,
            redelivery_delay_ms: 0,
            redelivery_backoff_multiplier: 1.0,
            max_redelivery_delay_ms: 0,
            nack_to_dlq: false,
            dead_letter_strategy: DeadLetterStrategy::Shared,
            expired_to_dlq: false,
            default_ttl_ms: 0,
            ttl_ms: BTreeMap::new(),
            policy: Vec::new(),
            max_durable_subscriptions: 10_000,
            advisories: true,
            virtual_topic_prefix: "VirtualTopic.".into(),
            virtual_topic_consumer_prefix: "Consumer.*.".into(),
            declared: Vec::new(),
            max_scheduled_messages: 100_000,
            idle_timeout_ms: 5 * 60 * 1000,
            max_idle_destinations: 1_000,
            network_audit_depth: 2048,
            network_audit_producers: 64,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.heart_beat.grace < 1.0 || !self.heart_beat.grace.is_finite() {
            return bad(format!(
                "heart_beat.grace must be >= 1.0 (got {})",
                self.heart_beat.grace
            ));
        }
        if self.heart_beat.min_interval_ms == 0 {
            return bad("heart_beat.min_interval_ms must be > 0".into());
        }
        let d = &self.destinations;
        if !(d.redelivery_backoff_multiplier.is_finite() && d.redelivery_backoff_multiplier >= 1.0)
        {
            return bad(format!(
                "destinations.redelivery_backoff_multiplier must be >= 1 (got {})",
                d.redelivery_backoff_multiplier
            ));
        }
        for entry in &d.policy {
            policy::check(entry).map_err(ConfigError::Invalid)?;
        }
        for name in &d.declared {
            match crate::message::DestinationName::parse(name) {
                Ok(n) if !n.is_temp() && !n.is_wildcard() && n.as_str() == name => {}
                _ => {
                    return bad(format!(
                        "destinations.declared {name:?}: a queue or topic name without \
                         wildcards, e.g. \"/queue/orders\""
                    ))
                }
            }
        }
        network::check(&self.broker_name, &self.network).map_err(ConfigError::Invalid)?;
        let l = &self.limits;
        if l.max_body_bytes > l.max_frame_bytes {
            return bad(format!(
                "limits.max_body_bytes ({}) exceeds limits.max_frame_bytes ({})",
                l.max_body_bytes, l.max_frame_bytes
            ));
        }
        if l.large_frames_budget_bytes < l.max_frame_bytes {
            return bad(format!(
                "limits.large_frames_budget_bytes ({}) is less than limits.max_frame_bytes ({}): \
                 the largest frame could never be read",
                l.large_frames_budget_bytes, l.max_frame_bytes
            ));
        }
        for (name, v) in [
            ("limits.max_headers", l.max_headers),
            ("limits.max_header_line_bytes", l.max_header_line_bytes),
            ("limits.max_connections", l.max_connections),
            (
                "limits.max_subscriptions_per_connection",
                l.max_subscriptions_per_connection,
            ),
            (
                "limits.max_temp_destinations_per_connection",
                l.max_temp_destinations_per_connection,
            ),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        let lease = &self.lease;
        if lease.renew_interval_ms == 0 || lease.acquire_interval_ms == 0 {
            return bad("lease.renew_interval_ms and lease.acquire_interval_ms must be > 0".into());
        }
        if lease.ttl_ms < 2 * lease.renew_interval_ms {
            return bad(format!(
                "lease.ttl_ms ({}) must be at least twice lease.renew_interval_ms ({}), or one late renewal loses the lease",
                lease.ttl_ms, lease.renew_interval_ms
            ));
        }
        let d = &self.destinations;
        if d.queue_prefetch == 0 || d.topic_prefetch == 0 || d.durable_prefetch == 0 {
            return bad("destinations.*_prefetch must be > 0".into());
        }
        if d.page_batch == 0 || self.store_max_batch == 0 {
            return bad("destinations.page_batch and store_max_batch must be > 0".into());
        }
        let cp = &d.virtual_topic_consumer_prefix;
        if !d.virtual_topic_prefix.is_empty()
            && (!cp.ends_with('.') || cp.len() < 2 || cp.contains('>') || cp.starts_with('.'))
        {
            return bad(format!(
                "destinations.virtual_topic_consumer_prefix {cp:?}: expected segments ending with '.', e.g. \"Consumer.*.\" (no '>')"
            ));
        }
        for name in d.ttl_ms.keys() {
            if let Err(e) = crate::message::DestinationName::parse(name) {
                return bad(format!("destinations.ttl_ms: {e}"));
            }
        }
        transport::check(self).map_err(ConfigError::Invalid)?;
        if self.admin.auth == AdminAuth::Never && !self.admin.bind.ip().is_loopback() {
            return bad(format!(
                "admin.auth = \"never\" but admin.bind {} is reachable from other hosts: \
                 the admin API can purge and delete queues; use auth = \"auto\"",
                self.admin.bind
            ));
        }
        if self.shards > 1024 {
            return bad(format!("shards must be <= 1024 (got {})", self.shards));
        }
        Ok(())
    }

    /// Whether any TLS listener is configured.
    pub fn tls_listeners(&self) -> bool {
        self.tls.bind.is_some() || (self.websocket.enabled && self.websocket.tls_bind.is_some())
    }

    /// The number of shards to run: `shards`, or one per CPU when it is 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The database file: `data_dir/stompbox.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/stompbox.toml");
        let config = Config::load(&path).expect("config/stompbox.toml must load");
        assert_eq!(
            config,
            Config::default(),
            "config/stompbox.toml must state the defaults"
        );
    }

    #[test]
    fn every_shipped_config_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut checked = 0;
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    checked += 1;
                }
            }
        }
        assert!(checked >= 3);
    }

    #[test]
    fn shards_is_also_read_under_its_old_name_cores() {
        let c: Config = toml::from_str("cores = 3").unwrap();
        assert_eq!(c.shard_count(), 3);
        let c: Config = toml::from_str("shards = 2").unwrap();
        assert_eq!(c.shard_count(), 2);
    }

    #[test]
    fn a_malformed_admin_allowed_host_is_rejected() {
        let err =
            toml::from_str::<Config>("[admin]\nallowed_hosts = [\"http://broker-a\"]").unwrap_err();
        assert!(err.to_string().contains("HOST:PORT"), "{err}");
        assert!(err.to_string().contains("allowed_hosts"), "{err}");
    }

    #[test]
    fn a_large_frames_budget_smaller_than_the_largest_frame_is_rejected() {
        let mut c: Config =
            toml::from_str("[limits]\nlarge_frames_budget_bytes = 1048576").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("large_frames_budget_bytes"), "{err}");
        c.limits.large_frames_budget_bytes = c.limits.max_frame_bytes;
        c.validate()
            .expect("a budget of one largest frame is enough");
    }

    #[test]
    fn declared_destinations_are_plain_names() {
        for bad in ["/queue/orders.>", "/temp-queue/x", "orders"] {
            let c: Config =
                toml::from_str(&format!("[destinations]\ndeclared = [{bad:?}]")).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains("destinations.declared") && err.contains(bad),
                "{err}"
            );
        }
        let c: Config =
            toml::from_str("[destinations]\ndeclared = [\"/queue/a\", \"/topic/b\"]").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("bnd = \"1.2.3.4:5\"").unwrap_err();
        assert!(err.to_string().contains("bnd"), "{err}");
    }
}
