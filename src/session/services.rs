//! What every session shares with the rest of the broker.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::Config;
use crate::message::{IdAllocator, Router};
use crate::store::StoreTx;

/// Shared services handed to each new session.
#[derive(Clone)]
pub struct Services {
    pub router: Arc<Router>,
    pub config: Arc<Config>,
    pub ids: Arc<IdAllocator>,
    /// None when the broker runs without a store (tests): persistent messages stay in memory.
    pub store: Option<StoreTx>,
    pub client_ids: Arc<ClientIds>,
    pub connections: Arc<Connections>,
    /// The global memory account (`global_memory_limit_bytes`) that destinations charge;
    /// sessions charge their open transactions' buffered SENDs to it.
    pub memory: Arc<std::sync::atomic::AtomicU64>,
    /// Virtual topics' consumer queues: a SEND to a virtual topic goes to each.
    pub virtual_topics: Arc<crate::message::virtual_topic::VirtualTopics>,
    /// Live subscriptions that may receive advisories (`advisory::may_listen`): owners build
    /// advisories only while there are some.
    pub advisory_listeners: Arc<std::sync::atomic::AtomicUsize>,
    /// Every durable subscription, with or without a subscriber: replayed to a new consumer
    /// advisory subscriber (the owners keep it).
    pub durables: Arc<crate::message::advisory::Durables>,
    /// The budget for large frames (`limits.large_frames_budget_bytes`) all connections share.
    pub frames: Arc<super::FrameBudget>,
    /// The network bridges' status, for the admin endpoint.
    pub network: Arc<crate::network::status::Bridges>,
    /// Who may connect (CONNECT's login and passcode).
    pub auth: Arc<crate::security::Authenticator>,
}

/// Live connections and their subscriptions, for the admin API. Touched on CONNECT,
/// SUBSCRIBE, UNSUBSCRIBE and close only, never per message.
#[derive(Debug, Default)]
pub struct Connections(Mutex<HashMap<u64, ConnectionInfo>>);

/// One connection as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: String,
    pub version: String,
    pub client_id: Option<String>,
    pub login: Option<String>,
    /// How the login was established (`password`, `certificate`, …).
    pub auth: crate::security::Method,
    /// The subject of the verified TLS client certificate (RFC 4514), if any.
    pub certificate: Option<String>,
    /// ms since the epoch.
    pub connected_at: u64,
    pub subscriptions: Vec<SubscriptionInfo>,
}

/// One subscription as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionInfo {
    pub id: String,
    pub destination: String,
    pub ack: &'static str,
    pub prefetch: u32,
    /// `client_id:name` for a durable subscription.
    pub durable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// A network bridge's subscription: the brokers whose consumers it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_path: Option<String>,
    /// The broker's number for it on its connection (the `consumer_id` of its advisories).
    #[serde(skip)]
    pub number: u32,
    /// A queue browser (`browser:true`): listed, but no consumer.
    #[serde(skip)]
    pub browser: bool,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ConnectionInfo>> {
        // A poisoned lock means a panic while updating a map entry: the map is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a connected session.
    pub fn insert(&self, info: ConnectionInfo) {
        self.lock().insert(info.id, info);
    }

    /// Updates one connection's record.
    pub fn update(&self, id: u64, f: impl FnOnce(&mut ConnectionInfo)) {
        if let Some(c) = self.lock().get_mut(&id) {
            f(c);
        }
    }

    /// Forgets a closed session.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Every live connection, oldest first.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let mut v: Vec<ConnectionInfo> = self.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Number of live (connected) sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is connected.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The `client-id`s of live connections, shared by all shards: a second live connection with
/// the same client-id is refused, as ActiveMQ does (durable subscriptions hang off it).
#[derive(Debug, Default)]
pub struct ClientIds(Mutex<HashSet<String>>);

impl ClientIds {
    /// Claims `id`; false if a live connection holds it.
    pub fn claim(&self, id: &str) -> bool {
        // A poisoned lock means a panic while inserting a string: the set is still usable.
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string())
    }

    /// Releases `id` when its connection ends.
    pub fn release(&self, id: &str) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(id);
    }
}
