//! Networks of brokers: bridges that forward messages from this broker to its peers.
//!
//! A bridge is two STOMP client connections ([`crate::client`]): one to this broker's own
//! listener, one to a peer (or to whichever broker of a master/slave pair serves). It
//! subscribes locally to the destinations it forwards, with `ack:client` (cumulative) and a
//! bounded prefetch, and for each message: SENDs it to the peer with a `receipt`, and ACKs it
//! here only once the RECEIPT came back (for a persistent message on a stompbox peer: it is on
//! the peer's disk). That is store-and-forward: a message leaves this broker's store only once
//! the peer has it, and a link that drops (or a peer killed) loses nothing; what was taken
//! here and not yet ACKed comes back to the queue and is forwarded again, marked, and the
//! peer's duplicate filter (`message/audit.rs`) drops the copies it already has.
//!
//! Being a client of its own broker, a bridge gets every guarantee a client has (flow control,
//! persistence, redelivery, selectors, wildcards) without a second path into the owners.
//!
//! Loops: every forwarded message carries the brokers it passed through
//! ([`crate::message::network::BROKER_PATH`]). A bridge's local subscription selects only
//! messages with fewer hops than the connector's `network_ttl` that have not passed through
//! the peer, and a broker drops (after its RECEIPT) a message whose path names itself.
//!
//! Demand: a bridge subscribes to its peer's consumer advisories (`ActiveMQ.Advisory.Consumer.>`,
//! which the peer first replays for the consumers it has) and holds one local subscription per
//! destination the peer has consumers for, with the OR of their selectors, while it has any
//! (`Link::follow_demand`). Consumers that are themselves bridges carry the brokers they stand for
//! (`broker_path` in the advisory): demand that names this broker, or that lies beyond the
//! TTL, is ignored, so it does not echo round a loop.
//!
//! Temporary destinations (`bridge_temp_destinations`): a peer's consumer of one of its own
//! temporary queues or topics (a requester) is demand like any other, and its route here is a
//! subscription to that `/remote-temp-…` name, which this broker takes as a route standing for
//! it (`session/temp.rs`): the destination exists here while the route lasts, so a reply sent
//! here is accepted and forwarded to the requester.
//!
//! Pipelining: up to `prefetch` forwarded SENDs await the peer's RECEIPTs at once (receipts come
//! in order); each local ACK follows its RECEIPT. Every forwarded SEND carries the message's id
//! here ([`NETWORK_ID`]) for the peer's duplicate filter, and a resend is marked
//! ([`NETWORK_REDELIVERED`]).

mod link;
mod origins;
pub mod status;
pub mod uri;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::warn;
use tokio::sync::watch;

use crate::client::{Backoff, BrokerUri, FailoverOptions};
use crate::codec::{Command, Frame};
use crate::config::Config;
use crate::config::DemandFilter;
use crate::message::network::{extend_path, BROKER_PATH, NETWORK_ID, NETWORK_REDELIVERED};
use crate::message::{DestinationName, DurableName};
use status::{BridgeStatus, Bridges};

/// Headers of a MESSAGE that a forwarded SEND does not carry: the delivery's own (the peer
/// gives its own), those the codec writes, and the network's (written anew).
const NOT_FORWARDED: &[&str] = &[
    "message-id",
    "subscription",
    "ack",
    "content-length",
    "redelivered",
    "redelivery-count",
    BROKER_PATH,
    NETWORK_ID,
    NETWORK_REDELIVERED,
];

/// One bridge: a connector's link to one peer.
#[derive(Debug, Clone)]
struct Bridge {
    connector: String,
    peer: BrokerUri,
    reconnect: FailoverOptions,
    statics: Vec<DestinationName>,
    demand: Option<DemandFilter>,
    duplex: bool,
    /// One demand route per destination for all the peer's consumers (ActiveMQ's
    /// `conduitSubscriptions`); false: one per consumer of a queue.
    conduit: bool,
    /// `replay_when_no_consumers`.
    replay: bool,
    /// `dynamic_only`: a peer's durable subscription is demand only while its subscriber is
    /// attached.
    dynamic_only: bool,
    /// `suppress_duplicate_queue_subscriptions` (`origins.rs`).
    suppress: bool,
    decrease_priority: bool,
    /// Hops a message may make (`message_ttl`, else `network_ttl`).
    ttl: u32,
    /// Hops demand may travel (`consumer_ttl`, else `network_ttl`).
    consumer_ttl: u32,
    prefetch: u32,
    heart_beat: Duration,
    /// See `write_timeout_ms` (None: 0, wait forever).
    write_timeout: Option<Duration>,
    login: Option<String>,
    passcode: Option<String>,
    broker_name: String,
    local: SocketAddr,
    /// Where it reports (its index in `bridges`).
    status: Arc<Bridges>,
    index: usize,
    /// Forwarded SENDs still to be receipted one by one, after a peer refused one of a
    /// batch: then the next refusal names its message exactly (kept across links). One per
    /// direction (forward, and a duplex bridge's reverse): a refusal one way does not slow
    /// the other.
    careful: [std::cell::Cell<u64>; 2],
}

impl Bridge {
    fn report(&self, f: impl FnOnce(&mut BridgeStatus)) {
        self.status.update(self.index, f);
    }
}

/// Starts every configured bridge on a thread of its own (one current-thread runtime for
/// all: a bridge waits on the network, it does not compute). Returns `None` without
/// connectors. The bridges stop when `shutdown` turns true.
pub fn spawn(
    config: &Arc<Config>,
    local: SocketAddr,
    shutdown: watch::Receiver<bool>,
    status: Arc<Bridges>,
    orphans: Vec<(DurableName, DestinationName)>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let mut bridges = Vec::new();
    for c in &config.network {
        // Checked when the config was loaded.
        let (Ok(uri), Ok(statics), Ok(filter)) =
            (c.network_uri(), c.static_destinations(), c.demand_filter())
        else {
            continue;
        };
        for peer in uri.peers {
            let index = status.add(BridgeStatus {
                connector: c.name.clone(),
                peer: peer.to_string(),
                state: "connecting".into(),
                ..BridgeStatus::default()
            });
            bridges.push(Bridge {
                status: status.clone(),
                index,
                careful: Default::default(),
                connector: c.name.clone(),
                peer,
                reconnect: uri.reconnect.clone(),
                statics: statics.clone(),
                demand: c.demand.then(|| filter.clone()),
                duplex: c.duplex,
                conduit: c.conduit_subscriptions,
                replay: c.replay_when_no_consumers,
                dynamic_only: c.dynamic_only,
                suppress: c.suppress_duplicate_queue_subscriptions,
                decrease_priority: c.decrease_network_consumer_priority,
                ttl: c.message_ttl.unwrap_or(c.network_ttl),
                consumer_ttl: c.consumer_ttl.unwrap_or(c.network_ttl),
                prefetch: c.prefetch,
                heart_beat: Duration::from_millis(c.heart_beat_ms),
                write_timeout: (c.write_timeout_ms > 0)
                    .then(|| Duration::from_millis(c.write_timeout_ms)),
                login: c.login.clone(),
                passcode: c.passcode.clone(),
                broker_name: config.broker_name.clone(),
                local,
            });
        }
    }
    if bridges.is_empty() && orphans.is_empty() {
        return Ok(None);
    }
    let token = status.token().map(str::to_string);
    let handle = std::thread::Builder::new()
        .name("network".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    warn!("network: cannot start the bridges' runtime: {e}");
                    return;
                }
            };
            let tasks_here = tokio::task::LocalSet::new();
            tasks_here.block_on(&runtime, async move {
                let origins = std::rc::Rc::new(origins::Origins::default());
                let mut tasks: Vec<_> = bridges
                    .into_iter()
                    .map(|b| tokio::task::spawn_local(run(b, shutdown.clone(), origins.clone())))
                    .collect();
                if !orphans.is_empty() {
                    let shutdown = shutdown.clone();
                    tasks.push(tokio::task::spawn_local(delete_orphans(
                        local, token, orphans, shutdown,
                    )));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
    Ok(Some(handle))
}

/// The durable routes among `durables` (the durable subscriptions recovered at start) that
/// no configured connector makes any more: those of a connector renamed or removed, or that
/// now has `demand = false` or `dynamic_only = true`. Each would keep every message published
/// to its topic for a link that never comes; they are deleted at start (`delete_orphans`).
/// A connector still configured deletes its own stale routes once linked
/// (`link/durable.rs`).
pub fn orphaned_routes(
    config: &Config,
    durables: &[(DurableName, DestinationName, Option<String>)],
) -> Vec<(DurableName, DestinationName)> {
    let making: Vec<&str> = config
        .network
        .iter()
        .filter(|c| c.demand && !c.dynamic_only)
        .map(|c| c.name.as_str())
        .collect();
    durables
        .iter()
        .filter(|(d, _, _)| {
            link::durable::durable_route_connector(&d.client_id, &config.broker_name)
                .is_some_and(|connector| !making.contains(&connector))
        })
        .map(|(d, topic, _)| (d.clone(), topic.clone()))
        .collect()
}

/// Deletes `orphans` ([`orphaned_routes`]) here, through a connection of each one's client
/// id; tries again every 5 s until done or shutdown (the listener may not serve yet).
async fn delete_orphans(
    local: SocketAddr,
    token: Option<String>,
    mut orphans: Vec<(DurableName, DestinationName)>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some((first, _)) = orphans.first() {
        let client_id = first.client_id.clone();
        let uri = BrokerUri {
            addrs: vec![local.to_string()],
            failover: None,
        };
        let options = crate::client::ConnectOptions {
            client_id: Some(client_id.to_string()),
            bridge_token: token.clone(),
            ..crate::client::ConnectOptions::default()
        };
        let attempt = async {
            let mut client = crate::client::Client::connect(&uri, options).await?;
            for (d, topic) in orphans.iter().filter(|(d, _)| d.client_id == client_id) {
                log::info!(
                    "network: deleting durable subscription {} of {topic}: a durable route of \
                     a connector that no longer makes it",
                    d.key()
                );
                client.delete_durable(topic.as_str(), &d.name).await?;
            }
            client.disconnect().await
        };
        match attempt.await {
            Ok(()) => orphans.retain(|(d, _)| d.client_id != client_id),
            Err(e) => {
                warn!("network: cannot delete the durable routes of {client_id} yet: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Runs one bridge until shutdown: link, forward until the link fails, pause, link again.
async fn run(
    bridge: Bridge,
    mut shutdown: watch::Receiver<bool>,
    origins: std::rc::Rc<origins::Origins>,
) {
    let mut backoff = Backoff::new(&bridge.reconnect, true);
    loop {
        let mut linked = false;
        let outcome = tokio::select! {
            r = link::forward(&bridge, &origins, &mut linked) => r,
            _ = shutdown.changed() => return,
        };
        if *shutdown.borrow() {
            return;
        }
        if linked {
            backoff.reset();
        }
        let Err(e) = outcome;
        bridge.report(|s| {
            s.state = "waiting".into();
            s.linked_since = None;
            s.in_flight = 0;
            // The static and durable routes come back with the next link: kept, so the
            // backlog shows what waits here for the peer (durable routes are kept here while
            // the link is down). The peer's other demand is unknown until then.
            s.routes
                .retain(|r| r.kind == "static" || r.kind == "durable");
            s.reverse_routes = None;
            s.last_error = Some(e.to_string());
        });
        let delay = backoff
            .next_delay()
            .unwrap_or(bridge.reconnect.max_reconnect_delay);
        warn!(
            "network {}: link to {} failed: {e}; again in {delay:?}",
            bridge.connector, bridge.peer
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        bridge.report(|s| s.state = "connecting".into());
    }
}

/// The [`NETWORK_ID`] of message `m` forwarded by `broker_name`: `broker:message-id`. A broker
/// never hands a message id out twice (`store/ids.rs`: not after a restart, nor after its pair
/// fails over), so the id names one message for good: a resend after this broker restarted
/// carries the same network id, and the peer's duplicate filter recognises the copy.
fn network_id(m: &Frame, broker_name: &str) -> String {
    // Not `format!`: one per forwarded message, and the formatting machinery was 9% of a
    // bridge thread's profile.
    [broker_name, ":", m.get("message-id").unwrap_or_default()].concat()
}

/// The SEND that forwards message `m`: its destination, headers and body, a broker path that
/// ends with this broker (only this broker when `replayed`: a message sent back to a broker it
/// passed through starts again from here, or that broker would drop it as looped), its id here
/// for the peer's duplicate filter, and the mark of a possible duplicate when this broker
/// delivered it before; and, as a MESSAGE, what its ACK or NACK and the logs need
/// ([`KEPT`]). The MESSAGE becomes the SEND in place: its headers and body are moved, not
/// copied (a bridge forwards every message, and copies were most of its allocations).
fn forwarded(mut m: Frame, broker_name: &str, replayed: bool) -> (Frame, Frame) {
    let id = network_id(&m, broker_name);
    let path = match replayed {
        true => broker_name.to_string(),
        false => extend_path(m.get(BROKER_PATH), broker_name),
    };
    let redelivered = m.get("redelivered") == Some("true");
    let mut kept = Frame::new(m.command);
    if let Some(d) = m.get("destination") {
        kept.headers.push("destination", d);
    }
    m.command = Command::Send;
    let mut destination = false;
    m.headers.0.retain_mut(|(name, value)| {
        // The first `destination` is the one (a repeated header's first value wins).
        if name == "destination" {
            return !std::mem::replace(&mut destination, true);
        }
        if !NOT_FORWARDED.contains(&name.as_str()) {
            return true;
        }
        if KEPT.contains(&name.as_str()) && kept.get(name).is_none() {
            kept.headers
                .0
                .push((std::mem::take(name), std::mem::take(value)));
        }
        false
    });
    m.headers.push(BROKER_PATH, path);
    m.headers.push(NETWORK_ID, id);
    if redelivered {
        m.headers.push(NETWORK_REDELIVERED, "true");
    }
    (m, kept)
}

/// The headers of a forwarded MESSAGE that the bridge keeps for its ACK or NACK (with
/// `destination`, for the logs): none of them goes on in the SEND.
const KEPT: &[&str] = &["message-id", "ack", "subscription"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_send_keeps_the_message_and_extends_the_path() {
        let message = Frame::new(Command::Message)
            .header("destination", "/queue/orders")
            .header("message-id", "17")
            .header("subscription", "sub-1")
            .header("persistent", "true")
            .header("priority", "7")
            .header("x-app", "v")
            .header(BROKER_PATH, "a")
            .with_body(&b"body"[..]);
        let (f, kept) = forwarded(message.clone(), "b", false);
        assert_eq!(kept.get("message-id"), Some("17"));
        assert_eq!(kept.get("subscription"), Some("sub-1"));
        assert_eq!(kept.get("destination"), Some("/queue/orders"));
        assert_eq!(kept.get("x-app"), None);
        assert!(kept.body.is_empty());
        assert_eq!(f.command, Command::Send);
        assert_eq!(f.get("destination"), Some("/queue/orders"));
        assert_eq!(f.get(BROKER_PATH), Some("a,b"));
        assert_eq!(f.get("persistent"), Some("true"));
        assert_eq!(f.get("priority"), Some("7"));
        assert_eq!(f.get("x-app"), Some("v"));
        assert_eq!(f.get("message-id"), None);
        assert_eq!(f.get("subscription"), None);
        assert_eq!(
            f.headers.iter().filter(|(n, _)| *n == BROKER_PATH).count(),
            1
        );
        assert_eq!(&f.body[..], b"body");
        assert_eq!(f.get(NETWORK_ID), Some("b:17"));
        assert_eq!(f.get(NETWORK_REDELIVERED), None);
        // Sent back to a broker it passed through, it starts again from here.
        let (replayed, _) = forwarded(message, "b", true);
        assert_eq!(replayed.get(BROKER_PATH), Some("b"));
    }

    #[test]
    fn a_message_delivered_before_is_forwarded_marked() {
        let message = Frame::new(Command::Message)
            .header("destination", "/queue/orders")
            .header("message-id", "17")
            .header("redelivered", "true")
            .header("redelivery-count", "1");
        let (f, _) = forwarded(message, "b", false);
        assert_eq!(f.get(NETWORK_REDELIVERED), Some("true"));
        assert_eq!(f.get("redelivered"), None);
        assert_eq!(f.get("redelivery-count"), None);
    }
}
