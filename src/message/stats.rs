//! Per-destination counters and the snapshot the admin API and `/metrics` read. Counters are
//! plain integers on the owner shard (no atomics on the message path); a snapshot is taken by
//! asking the owner.

use serde::Serialize;

/// Running totals of one destination since the broker started (or since it was created).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Counters {
    /// Messages that entered it (sent, committed, moved in).
    pub enqueued: u64,
    /// Deliveries to consumers (redeliveries included).
    pub delivered: u64,
    /// Messages consumed: acked, or delivered to an auto-ack consumer.
    pub acked: u64,
    /// Messages that came back for redelivery.
    pub redelivered: u64,
    /// Messages dropped or dead-lettered because they expired.
    pub expired: u64,
    /// Messages moved to a dead-letter queue after too many redeliveries.
    pub dead_lettered: u64,
    /// Subscribers disconnected for stalling the destination (slow consumers).
    pub slow_consumer_disconnects: u64,
}

/// One destination (or durable subscription) as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationStats {
    /// `/queue/NAME` or `/topic/NAME`.
    pub destination: String,
    /// `client_id:name` for a durable subscription's queue; empty otherwise.
    pub subscription: String,
    /// `queue`, `topic` or `durable`.
    pub kind: &'static str,
    /// Messages waiting (in memory and on disk only), not counting unacked ones.
    pub depth: u64,
    /// Of those, the ones held only on disk (paged out).
    pub on_disk: u64,
    /// Delivered, not yet acked.
    pub unacked: u64,
    /// Consumers (subscribers) attached.
    pub consumers: usize,
    /// Bytes of messages held in memory.
    pub memory_bytes: u64,
    /// Producers whose SENDs are held by flow control right now.
    pub blocked_producers: usize,
    /// SENDs ever held by flow control.
    pub flow_control_events: u64,
    #[serde(flatten)]
    pub counters: Counters,
}

/// A waiting message as the browse API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BrowsedMessage {
    pub message_id: u64,
    pub priority: u8,
    pub persistent: bool,
    pub expires: u64,
    pub redelivery_count: u32,
    pub headers: Vec<(String, String)>,
    /// The body as text when it is UTF-8, else empty (see `body_bytes`).
    pub body: String,
    pub body_bytes: usize,
}
