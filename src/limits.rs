//! Every default and limit of the broker, each with the reason for its value.
//!
//! Config (`crate::config`) starts from these numbers; the codec and sessions read the
//! resulting [`Limits`] and never hard-code a size of their own.

use serde::{Deserialize, Serialize};

/// Size limits applied to every frame a client sends. A breach is an ERROR frame and a close,
/// checked before the parser allocates for the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest whole frame (command, headers and body): the largest body plus room for
    /// headers.
    pub max_frame_bytes: usize,
    /// Largest body: ActiveMQ's default `maxDataLength`, 100 MiB, so nothing ActiveMQ takes by
    /// default is refused (RabbitMQ's own STOMP test suite sends 16 MiB bodies). Large frames
    /// cannot pin memory per connection: beyond a small allowance each, they are charged to
    /// `large_frames_budget_bytes`, shared by all connections.
    pub max_body_bytes: usize,
    /// Bytes all connections together may hold of large frames: read buffers grown past 256 KiB
    /// for a frame of known length (past 64 KiB for one without `content-length`, charged as
    /// the largest frame), and posted SENDs past `producer_window_bytes`, from
    /// the frame's first byte until its destination takes it. A connection that would need
    /// more than is free stops reading until others give some back (`session/frame_budget.rs`),
    /// so a thousand connections sending 100 MiB frames hold this much, not 100 GiB. At least
    /// `max_frame_bytes`, so every frame fits; 256 MiB lets two of the largest frames, or
    /// sixteen of 16 MiB, be read at once.
    pub large_frames_budget_bytes: usize,
    /// A connection in the middle of a frame it holds large-frames budget for is closed with
    /// an ERROR when no byte arrives for this long (ms), so a client that stops mid-frame
    /// (crashed without closing, or hostile) cannot keep the budget other large frames wait
    /// for. Counted only while the broker reads the connection; nginx's `client_body_timeout`
    /// is 60 s. 0 = never.
    pub frame_stall_timeout_ms: u64,
    /// Most headers in one frame. ActiveMQ allows 1000; real clients send fewer than 30.
    pub max_headers: usize,
    /// Longest single header line (name, colon and value). ActiveMQ allows 10 KiB.
    pub max_header_line_bytes: usize,
    /// Most live subscriptions on one connection.
    pub max_subscriptions_per_connection: usize,
    /// Most temporary destinations (`/temp-queue/NAME`, `/temp-topic/NAME`) one connection
    /// creates. Each is a queue or topic that lives until the connection closes, so without a
    /// cap one connection could make the broker keep a destination per name it sends;
    /// ActiveMQ has none, and request/reply clients use one or a handful.
    pub max_temp_destinations_per_connection: usize,
    /// Most client connections the broker holds at once; more are refused with an ERROR.
    pub max_connections: usize,
    /// Most live connections from one client address (the PROXY header's behind a load
    /// balancer); 0 = no limit (`security/addresses.rs`).
    pub max_connections_per_address: usize,
    /// Most new connections (CONNECT attempts) a second from one address; 0 = no limit.
    pub max_connects_per_second_per_address: u32,
    /// Most new connections a second from all addresses together; 0 = no limit.
    pub max_connects_per_second: u32,
    /// Most frames (SEND, ACK, NACK) buffered in one open transaction; a transaction is held in
    /// the session's memory until COMMIT, so it needs a cap.
    pub max_transaction_frames: usize,
    /// Most open transactions on one connection.
    pub max_transactions_per_connection: usize,
    /// Bytes of SENDs one connection may have in flight to destinations (posted, not yet
    /// accepted) before the broker stops reading its socket: producer flow control counted in
    /// bytes, so large frames cannot park gigabytes the way a frame count would let them. One
    /// SEND is always let through when nothing is in flight, whatever its size.
    pub producer_window_bytes: usize,
    /// Bytes of SEND bodies and headers buffered in one connection's open transactions
    /// (together). They are held in the session until COMMIT and cannot be flow-controlled
    /// without blocking the COMMIT itself, so past this the transactional SEND is an ERROR.
    /// They count against `global_memory_limit_bytes` meanwhile.
    pub max_transaction_bytes: usize,
    /// RECEIPTs one connection may have waiting for earlier effects (a SEND held by flow
    /// control, a COMMIT on its way to disk) before the broker stops reading its socket until
    /// some are written.
    pub max_pending_receipts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 100 * 1024 * 1024 + 64 * 1024,
            max_body_bytes: 100 * 1024 * 1024,
            large_frames_budget_bytes: 256 * 1024 * 1024,
            frame_stall_timeout_ms: 30_000,
            max_headers: 1000,
            max_header_line_bytes: 10 * 1024,
            max_subscriptions_per_connection: 1000,
            max_temp_destinations_per_connection: 100,
            max_connections: 10_000,
            max_connections_per_address: 0,
            max_connects_per_second_per_address: 0,
            max_connects_per_second: 0,
            max_transaction_frames: 10_000,
            max_transactions_per_connection: 100,
            producer_window_bytes: 4 * 1024 * 1024,
            max_transaction_bytes: 64 * 1024 * 1024,
            max_pending_receipts: 10_000,
        }
    }
}

/// Longest command line; the longest real command is `UNSUBSCRIBE` (11 bytes). ActiveMQ caps
/// it at 1024, and so do we, so garbage without a newline is rejected early.
pub const MAX_COMMAND_LINE_BYTES: usize = 1024;

/// Default prefetch (unacknowledged messages in flight) for a queue subscription: ActiveMQ's
/// STOMP default, which users of `activemq.prefetchSize` expect.
pub const DEFAULT_QUEUE_PREFETCH: u32 = 1000;

/// Default prefetch for a topic subscription: ActiveMQ's `Short.MAX_VALUE`.
pub const DEFAULT_TOPIC_PREFETCH: u32 = 32_767;

/// Default prefetch for a durable topic subscription: ActiveMQ's.
pub const DEFAULT_DURABLE_PREFETCH: u32 = 100;

/// The largest prefetch a client may ask for; larger requests are clamped, so one subscription
/// cannot claim an unbounded share of the broker's memory.
pub const MAX_PREFETCH: u32 = 65_535;

/// Producer window: how many SENDs one connection may have in flight to destination owners
/// before the session stops reading its socket. This is what turns a full destination into
/// TCP back-pressure on exactly the producers that feed it. `Limits::producer_window_bytes`
/// bounds the same window in bytes.
pub const PRODUCER_WINDOW: u32 = 1024;

/// Bytes buffered for writing to one socket before the session stops pulling more deliveries
/// (and stops reading, so a client that never reads its receipts cannot grow our buffer).
pub const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Bytes read from a socket in one go.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Wait after a failed page-in before a queue asks the store again; it doubles with each
/// failure in a row. Short, so a passing hiccup delays consumers little; a queue that asked
/// again at once would spin the store writer and flood the log while the store is failing.
pub const PAGE_IN_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest wait between page-in attempts of a failing queue: a store that recovers is
/// noticed within a few seconds, and a store that keeps failing costs one attempt (and one
/// log line) per queue level every few seconds.
pub const PAGE_IN_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// The fewest stored messages one delivery mark covers ahead (see "Delivery marks" in
/// `destination/queue.rs`); a mark covers the consumers' prefetch, and at least this many, so
/// prefetch-1 consumers do not wait for a store round trip per message. After a crash, at
/// most this many (or the prefetch) never-delivered messages per queue come back marked
/// redelivered.
pub const DELIVERY_MARK_AHEAD_MIN: u64 = 256;

/// The read buffer a new connection starts with; it grows to [`READ_CHUNK_BYTES`] once reads
/// fill it. A CONNECT fits, and a burst of connections that never get further (port scans,
/// reconnect storms, slowloris) costs 4 KiB each instead of 64 KiB, which the allocator
/// then keeps after they are gone.
pub const INITIAL_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Allocations at least this large get pages of their own from the OS (glibc's
/// `M_MMAP_THRESHOLD`), which go back to it the moment they are freed. glibc's default moves
/// this threshold up to the largest block freed so far (up to 32 MiB), so after the first
/// large frame every later one came from the shards' heaps, and freeing it (a persistent
/// message once on disk, a read buffer once its frame is out) did not lower the resident
/// memory: 50 producers of 10 MiB persistent frames left 600 MiB resident with nothing held.
/// Fixed at glibc's starting value, the broker's resident memory follows what it holds.
pub const MMAP_THRESHOLD_BYTES: usize = 128 * 1024;

/// Applies [`MMAP_THRESHOLD_BYTES`] to this process's allocator (glibc only; elsewhere a
/// no-op). Called once at start, before the broker's threads are spawned.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; it is called before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES as libc::c_int);
    }
}

/// Deepest nesting a `selector` may have (parentheses, `NOT`s, signs, and the height of
/// chains of arithmetic). Parsing and evaluation recurse once per level, so this bounds their
/// stack use; real selectors nest a handful of levels.
pub const SELECTOR_MAX_DEPTH: usize = 100;

/// Most messages one `browser:true` SUBSCRIBE is shown (ActiveMQ's `maxBrowsePageSize` is
/// 400), and most bytes of them: the browse is written in one go, so it must not be the whole
/// queue. Messages paged out to disk are not shown either.
pub const BROWSE_MAX_MESSAGES: usize = 400;
pub const BROWSE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Body bytes past which the store writer closes a batch (group commit): one transaction
/// holds SQLite's write lock while it writes, and the lease renewal needs that lock too, so a
/// batch of many 10 MiB messages must not hold it for seconds. Small messages never reach
/// it (1,024 requests of 1 KiB are 1 MiB).
pub const STORE_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Message ids a master reserves ahead in the store (`store/ids.rs`): at start, above where
/// the last one stopped, and again each time half is used. Large, so the reservation costs
/// one small fsynced commit per 2^31 ids (35 minutes at a million messages a second) and a
/// failing store leaves a quarter of it, 2^30 ids, to be retried in before the master steps
/// down; a start skips at most this many ids, so SQLite's 2^63 last 2^31 starts.
pub const MESSAGE_ID_RESERVATION: u64 = 1 << 32;
