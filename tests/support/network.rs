//! Networks of brokers on top of [`Broker`]: configs with `[[network]]` connectors, brokers
//! whose ports are chosen before any of them starts (their configs name each other), and what
//! a broker holds afterwards (rows in its SQLite file, a destination's counters).
//!
//! Every connector retries a lost link after 100 ms (at most 500 ms), so a test that kills a
//! peer waits for the broker, not for ActiveMQ's 1 s .. 30 s default schedule.

use std::net::SocketAddr;

use super::broker::Broker;
use super::net::free_ports;
use super::store::count;

/// The reconnect schedule every test connector uses.
pub const RECONNECT: &str = "initialReconnectDelay=100&maxReconnectDelay=500";

/// One `[[network]]` connector, as TOML.
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    /// The connector's `uri` (see [`static_uri`], [`masterslave_uri`]).
    pub uri: String,
    pub static_included: Vec<String>,
    pub network_ttl: u32,
}

impl Connector {
    /// A connector `name` forwarding `statics` along `uri` with `network_ttl = ttl`.
    pub fn new(name: &str, uri: String, statics: &[&str], ttl: u32) -> Connector {
        Connector {
            name: name.to_string(),
            uri,
            static_included: statics.iter().map(|s| s.to_string()).collect(),
            network_ttl: ttl,
        }
    }

    fn toml(&self) -> String {
        let statics: Vec<String> = self
            .static_included
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        format!(
            "\n[[network]]\nname = {:?}\nuri = {:?}\nstatic_included = [{}]\nnetwork_ttl = {}\n",
            self.name,
            self.uri,
            statics.join(", "),
            self.network_ttl
        )
    }
}

/// `static:(tcp://peer)` with [`RECONNECT`]: one bridge to one broker.
pub fn static_uri(peer: SocketAddr) -> String {
    format!("static:(tcp://{peer})?{RECONNECT}")
}

/// `masterslave:(tcp://m,tcp://s)` with [`RECONNECT`]: one bridge to whichever broker of a
/// pair serves.
pub fn masterslave_uri(pair: &[SocketAddr]) -> String {
    let list: Vec<String> = pair.iter().map(|a| format!("tcp://{a}")).collect();
    format!("masterslave:({})?{RECONNECT}", list.join(","))
}

/// A config naming the broker `broker_name`, with `connectors`.
pub fn config(broker_name: &str, connectors: &[Connector]) -> String {
    let mut text = format!("broker_name = {broker_name:?}\n");
    for c in connectors {
        text.push_str(&c.toml());
    }
    text
}

/// STOMP and admin addresses for `n` brokers, chosen before any of them starts.
pub fn addresses(n: usize) -> Vec<(SocketAddr, SocketAddr)> {
    let ports = free_ports(2 * n);
    ports
        .chunks(2)
        .map(|p| {
            (
                SocketAddr::from(([127, 0, 0, 1], p[0])),
                SocketAddr::from(([127, 0, 0, 1], p[1])),
            )
        })
        .collect()
}

/// Starts a broker named `name` on `at` (from [`addresses`]) with `connectors`.
pub fn start(name: &str, at: (SocketAddr, SocketAddr), connectors: &[Connector]) -> Broker {
    let mut b = Broker::new(&config(name, connectors)).on_ports(at.0.port(), at.1.port());
    b.start_again();
    b
}

/// Every message row in `broker`'s SQLite file, whatever its destination.
pub fn stored_rows(broker: &Broker) -> i64 {
    count(&broker.db(), "SELECT count(*) FROM messages", [])
}

/// Message rows of `destination` in `broker`'s SQLite file.
pub fn stored(broker: &Broker, destination: &str) -> i64 {
    count(
        &broker.db(),
        "SELECT count(*) FROM messages WHERE destination = ?1",
        [destination],
    )
}

/// The row of `destination` (not a durable subscription) in `broker`'s
/// `/api/destinations`, or None while the broker does not list it (or does not answer).
pub fn destination_row(broker: &Broker, destination: &str) -> Option<serde_json::Value> {
    let body = broker.admin_get("/api/destinations")?;
    let rows: serde_json::Value = serde_json::from_str(&body).ok()?;
    rows.as_array()?
        .iter()
        .find(|r| r["destination"] == destination && r["subscription"] == "")
        .cloned()
}

/// `field` (`enqueued`, `consumers`, `depth`…) of `destination` in `broker`'s
/// `/api/destinations`; None while it is not listed.
pub fn counter(broker: &Broker, destination: &str, field: &str) -> Option<u64> {
    destination_row(broker, destination)?[field].as_u64()
}

/// Subscriptions to exactly `destination` (a wildcard such as `/topic/prices.>` included) in
/// `broker`'s `/api/subscriptions`: a bridge's subscription to what it forwards shows there
/// once its links are up. 0 while the broker does not answer.
pub fn subscriptions_to(broker: &Broker, destination: &str) -> usize {
    broker
        .admin_get("/api/subscriptions")
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|rows| {
            rows.as_array()
                .map(|r| r.iter().filter(|s| s["destination"] == destination).count())
        })
        .unwrap_or(0)
}
