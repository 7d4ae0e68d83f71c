//! What every session shares with the rest of the broker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

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
