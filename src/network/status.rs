//! What the bridges tell operators: one [`BridgeStatus`] per bridge, updated by the bridge as
//! it links, forwards and fails, read by the admin endpoint (`/api/network`, `/metrics`, the
//! console) and `stompbox network`. Updated once per link change and per batch of receipts,
//! never per message on the broker's own threads.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One bridge as operators see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeStatus {
    /// The connector's `name`.
    pub connector: String,
    /// The peer as configured (`tcp://b:61613`, or a pair's `failover:(…)`).
    pub peer: String,
    /// The peer's `broker_name`, once linked.
    pub peer_name: Option<String>,
    /// `connecting`, `linked` or `waiting` (to reconnect after a failure).
    pub state: String,
    /// When the current link came up (ms since the epoch).
    pub linked_since: Option<u64>,
    /// Links made since the broker started (reconnects + 1 while linked).
    pub links: u64,
    /// Messages the peer receipted (forwarded for good).
    pub forwarded: u64,
    /// Forwarded SENDs awaiting the peer's RECEIPT.
    pub in_flight: u64,
    /// The local subscriptions that feed the bridge.
    pub routes: Vec<RouteStatus>,
    /// A duplex bridge: the subscriptions on the peer that feed this broker.
    pub reverse_routes: Option<Vec<RouteStatus>>,
    /// A duplex bridge: messages from the peer that this broker receipted.
    pub received: u64,
    /// Messages waiting here on the routes' destinations (filled in by the admin endpoint
    /// from the destinations' depth; for a topic, 0).
    pub backlog: u64,
    /// The last failure of the link, if any.
    pub last_error: Option<String>,
}

/// One local subscription of a bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// The destination or wildcard pattern.
    pub destination: String,
    /// `static` (statically included), `demand` (the peer has consumers for it), `durable`
    /// (for the peer's durable subscriptions) or `replay` (`replay_when_no_consumers`).
    pub kind: String,
    /// The peer consumers' selector, for a demand route with one.
    pub selector: Option<String>,
    /// A durable route's durable subscription here (`client_id:name`): what it keeps is the
    /// backlog for the peer.
    #[serde(default)]
    pub subscription: Option<String>,
}

/// The CONNECT header by which a bridge's connection to its own broker shows it is one
/// ([`Bridges::is_own`]).
pub const BRIDGE_TOKEN: &str = "stompbox-bridge-token";

/// Every bridge of this broker, and the secret by which their connections to this broker
/// are known.
#[derive(Debug)]
pub struct Bridges {
    list: Mutex<Vec<BridgeStatus>>,
    /// 128 random bits (hex), made at start and never written anywhere but in the CONNECT of
    /// this broker's own bridges to its own listener. None without the OS's randomness: then
    /// no connection is taken for a bridge (the bridges work within the client limits).
    token: Option<String>,
}

impl Default for Bridges {
    fn default() -> Self {
        let mut bytes = [0u8; 16];
        let token = match getrandom::fill(&mut bytes) {
            Ok(()) => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            Err(e) => {
                log::warn!("network: no random token for the bridges' own connections: {e}");
                None
            }
        };
        Bridges {
            list: Mutex::default(),
            token,
        }
    }
}

impl Bridges {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BridgeStatus>> {
        // A poisoned lock means a panic while updating a status: still readable.
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this broker's bridges present in [`BRIDGE_TOKEN`] when they connect to it.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether `presented` (a CONNECT's [`BRIDGE_TOKEN`]) is this broker's own: the
    /// connection is one of its bridges, whose routes are not capped by the per-client
    /// subscription limit. Compared in constant time.
    pub fn is_own(&self, presented: &str) -> bool {
        let Some(own) = self.token.as_deref() else {
            return false;
        };
        crate::security::constant_eq(own.as_bytes(), presented.as_bytes())
    }

    /// Adds a bridge; returns its index for [`Bridges::update`].
    pub fn add(&self, status: BridgeStatus) -> usize {
        let mut v = self.lock();
        v.push(status);
        v.len() - 1
    }

    /// Changes bridge `i`'s status.
    pub fn update(&self, i: usize, f: impl FnOnce(&mut BridgeStatus)) {
        if let Some(s) = self.lock().get_mut(i) {
            f(s);
        }
    }

    /// Every bridge, in config order.
    pub fn list(&self) -> Vec<BridgeStatus> {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_brokers_own_token_is_its_own() {
        let bridges = Bridges::default();
        let token = bridges.token().expect("a token").to_string();
        assert_eq!(token.len(), 32);
        assert!(bridges.is_own(&token));
        assert!(!bridges.is_own(""));
        assert!(!bridges.is_own(&token[1..]));
        assert!(!bridges.is_own(&format!("{token}0")));
        let mut other = token.into_bytes();
        other[31] = if other[31] == b'0' { b'1' } else { b'0' };
        assert!(!bridges.is_own(&String::from_utf8(other).unwrap()));
        assert_ne!(
            Bridges::default().token(),
            bridges.token(),
            "one per broker"
        );
    }
}
