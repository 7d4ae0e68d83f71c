//! Networks of brokers: bridges that forward messages from this broker to its peers.
//!
//! A bridge is two STOMP client connections ([`crate::client`]): one to this broker's own
//! listener, one to a peer (or to whichever broker of a master/slave pair serves). It
//! subscribes locally to the destinations it forwards, with `ack:client-individual` and a
//! bounded prefetch, and for each message: SENDs it to the peer with a `receipt`, waits for the
//! RECEIPT (for a persistent message on a stompbox peer: it is on the peer's disk), and only
//! then ACKs it here. That is store-and-forward: a message leaves this broker's store only once
//! the peer has it, and a link that drops (or a peer killed) loses nothing; what was taken
//! here and not yet ACKed comes back to the queue and is forwarded again, so a failure can
//! duplicate at most the message in flight.
//!
//! Being a client of its own broker, a bridge gets every guarantee a client has (flow control,
//! persistence, redelivery, selectors, wildcards) without a second path into the owners.
//!
//! Loops: every forwarded message carries the brokers it passed through
//! ([`crate::message::network::BROKER_PATH`]). A bridge's local subscription selects only
//! messages with fewer hops than the connector's `network_ttl` that have not passed through
//! the peer, and a broker drops (after its RECEIPT) a message whose path names itself.
//!
//! What is built (issue 11, first part): static forwarding (`static_included`) of queues and
//! topics, the connector URIs of `uri.rs`, reconnect forever with back-off. Demand forwarding,
//! duplex bridges, the duplicate filter and observability are to come (docs/network.md).

pub mod uri;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use tokio::sync::watch;

use crate::client::{
    AckMode, Backoff, BrokerUri, Client, ClientError, ConnectOptions, Delivery, FailoverOptions,
    SubscribeOptions,
};
use crate::codec::{Command, Frame};
use crate::config::{Config, NetworkConnector};
use crate::message::network::{extend_path, forward_selector, BROKER_PATH};
use crate::message::DestinationName;
use uri::NetworkUri;

/// Headers of a MESSAGE that a forwarded SEND does not carry: the delivery's own (the peer
/// gives its own), and those the codec writes.
const NOT_FORWARDED: &[&str] = &[
    "message-id",
    "subscription",
    "ack",
    "destination",
    "content-length",
    "redelivered",
    BROKER_PATH,
];

/// One bridge: a connector's link to one peer.
#[derive(Debug, Clone)]
struct Bridge {
    connector: String,
    peer: BrokerUri,
    reconnect: FailoverOptions,
    statics: Vec<DestinationName>,
    ttl: u32,
    prefetch: u32,
    login: Option<String>,
    passcode: Option<String>,
    broker_name: String,
    local: SocketAddr,
}

/// Starts every configured bridge on a thread of its own (one current-thread runtime for
/// all: a bridge waits on the network, it does not compute). Returns `None` without
/// connectors. The bridges stop when `shutdown` turns true.
pub fn spawn(
    config: &Arc<Config>,
    local: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let mut bridges = Vec::new();
    for c in &config.network {
        // Checked when the config was loaded.
        let (Ok(uri), Ok(statics)) = (c.network_uri(), c.static_destinations()) else {
            continue;
        };
        for peer in uri.peers {
            bridges.push(bridge(
                config,
                c,
                peer,
                &uri.reconnect,
                statics.clone(),
                local,
            ));
        }
    }
    if bridges.is_empty() {
        return Ok(None);
    }
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
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let tasks: Vec<_> = bridges
                    .into_iter()
                    .map(|b| tokio::task::spawn_local(run(b, shutdown.clone())))
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
    Ok(Some(handle))
}

fn bridge(
    config: &Config,
    c: &NetworkConnector,
    peer: BrokerUri,
    reconnect: &FailoverOptions,
    statics: Vec<DestinationName>,
    local: SocketAddr,
) -> Bridge {
    Bridge {
        connector: c.name.clone(),
        peer,
        reconnect: reconnect.clone(),
        statics,
        ttl: c.network_ttl,
        prefetch: c.prefetch,
        login: c.login.clone(),
        passcode: c.passcode.clone(),
        broker_name: config.broker_name.clone(),
        local,
    }
}

/// Runs one bridge until shutdown: link, forward until the link fails, pause, link again.
async fn run(bridge: Bridge, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(&bridge.reconnect, true);
    loop {
        let mut linked = false;
        let outcome = tokio::select! {
            r = forward(&bridge, &mut linked) => r,
            _ = shutdown.changed() => return,
        };
        if *shutdown.borrow() {
            return;
        }
        if linked {
            backoff.reset();
        }
        let Err(e) = outcome;
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
    }
}

/// Links to the peer and to this broker, then forwards until something fails. `linked`
/// turns true once both connections and the subscriptions are up.
async fn forward(
    bridge: &Bridge,
    linked: &mut bool,
) -> Result<std::convert::Infallible, ClientError> {
    let remote_options = ConnectOptions {
        login: bridge.login.clone(),
        passcode: bridge.passcode.clone(),
        connect_timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    let mut remote = Client::connect(&NetworkUri::one_pass(&bridge.peer), remote_options).await?;
    let peer_name = remote.broker_name().map(str::to_string);
    if peer_name.as_deref() == Some(bridge.broker_name.as_str()) {
        return Err(ClientError::Protocol(format!(
            "the peer is named {:?} too: broker names must be unique in a network",
            bridge.broker_name
        )));
    }
    let local_uri = BrokerUri {
        addrs: vec![bridge.local.to_string()],
        failover: None,
    };
    let local_options = ConnectOptions {
        // Names the bridge on the admin API's connection list.
        client_id: None,
        ..ConnectOptions::default()
    };
    let mut here = Client::connect(&local_uri, local_options).await?;
    let selector = forward_selector(bridge.ttl, peer_name.as_deref());
    for destination in &bridge.statics {
        let options = SubscribeOptions {
            ack: AckMode::ClientIndividual,
            prefetch: Some(bridge.prefetch),
            headers: vec![("selector".into(), selector.clone())],
        };
        here.subscribe(&destination.to_string(), &options).await?;
    }
    *linked = true;
    info!(
        "network {}: forwarding {} destination(s) to {} ({})",
        bridge.connector,
        bridge.statics.len(),
        bridge.peer,
        peer_name
            .as_deref()
            .unwrap_or("a broker that does not say its name")
    );
    loop {
        let delivery = here.recv().await?;
        let sent = remote
            .send_with_receipt(forwarded(&delivery, &bridge.broker_name))
            .await;
        if let Err(e) = sent {
            // The ACKs of what the peer already has may still sit in the client's buffer:
            // written before the link is given up, or those messages are forwarded twice.
            let _ = here.flush().await;
            return Err(e);
        }
        // Written now: the client sends queued frames only once its read buffer is empty, and
        // with `prefetch` messages buffered ACKs would wait there; a kill -9 of this broker,
        // or a link dropped with a reset, then loses them and forwards those messages twice.
        here.ack(&delivery, None).await?;
        here.flush().await?;
    }
}

/// The SEND that forwards `delivery`: its destination, headers and body, and a broker path
/// that ends with this broker.
fn forwarded(delivery: &Delivery, broker_name: &str) -> Frame {
    let m = &delivery.frame;
    let mut send = Frame::new(Command::Send)
        .header("destination", m.get("destination").unwrap_or_default())
        .header(BROKER_PATH, extend_path(m.get(BROKER_PATH), broker_name));
    for (name, value) in m.headers.iter() {
        if !NOT_FORWARDED.contains(&name) {
            send.headers.push(name, value);
        }
    }
    send.with_body(m.body.clone())
}

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
        let d = Delivery::for_test(message);
        let f = forwarded(&d, "b");
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
    }
}
