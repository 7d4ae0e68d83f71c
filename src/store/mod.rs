//! The store: persistent messages and durable subscriptions in one SQLite file
//! (`data_dir/stompbox.db`, WAL mode). A leaf: it knows SQL and rows, not queues, sessions or
//! shards.
//!
//! One thread, the store writer (`writer.rs`), owns the only write connection. Owner shards
//! and sessions send it [`Request`]s; it takes everything waiting, applies it in ONE
//! transaction, commits, and then answers each request through the [`Reply`] its caller put
//! in it, in arrival order (group commit: the fsync is shared by the whole batch). What an
//! answer means is the caller's business: a queue's owner hands stored rows to the queue from
//! its replies, which run on the writer thread in commit order, and that is what keeps paging
//! exact (see `destination/queue.rs`). Reads at start (`recover`) use their own connection.
//! `writer.rs` is the group-commit protocol (batches, savepoints, fencing, answers);
//! `failure.rs` decides what a failed write means (fail-stop or not); `apply.rs` is what each
//! request reads or writes in SQL; `ids.rs` keeps message ids from repeating across restarts
//! (the reservation in the `message_ids` row).

mod apply;
mod failure;
#[cfg(feature = "fault-injection")]
pub mod faults;
mod ids;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};

pub use ids::{reserve_at_start, reserved, IdReservation, Reservation, MAX_MESSAGE_ID};
pub use schema::{migrate, MIGRATIONS};
pub use writer::{spawn_writer, Fence, WriterConfig};
#[cfg(test)]
pub(crate) use writer::{spawn_writer_with_faults, Faults};

use crate::config::Durability;
use crate::message::schedule::Pending;
use crate::message::DestinationName;
use crate::message::{DurableName, Message, MessageId, QueueKey, StoredMessage};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A schema migration failed; the file is unchanged from the version before it.
    #[error("schema migration to version {version} failed: {source}")]
    Migration {
        version: usize,
        source: rusqlite::Error,
    },
    /// The file was written by a newer broker.
    #[error("database schema version {found} is newer than this broker knows ({known})")]
    TooNew { found: usize, known: usize },
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// Message ids are used up: a new reservation above this id would not fit SQLite's
    /// INTEGER (see `ids.rs`).
    #[error(
        "message ids are used up: ids continue above {0}, and a new reservation would pass \
         SQLite's largest INTEGER ({max})",
        max = MAX_MESSAGE_ID
    )]
    IdsExhausted(u64),
}

/// Opens (creating if needed) the database for writing and brings its schema up to date.
pub fn open(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.into(),
        source,
    })?;
    prepare(conn, durability)
}

/// [`open`] for the store writer's connection. With the `fault-injection` feature (tests
/// only) it goes through the fault-injection VFS (`faults.rs`), so an end-to-end test can make
/// one of its writes or fsyncs fail.
pub fn open_writer(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    #[cfg(feature = "fault-injection")]
    {
        let open_error = |source| StoreError::Open {
            path: path.into(),
            source,
        };
        let vfs = faults::vfs().map_err(|e| {
            open_error(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(e),
            ))
        })?;
        let flags = OpenFlags::default();
        let conn = Connection::open_with_flags_and_vfs(path, flags, vfs).map_err(open_error)?;
        prepare(conn, durability)
    }
    #[cfg(not(feature = "fault-injection"))]
    open(path, durability)
}

/// Sets a freshly opened connection up for writing: busy timeout, WAL, `synchronous` per
/// `durability`, and the schema brought up to date.
fn prepare(mut conn: Connection, durability: Durability) -> Result<Connection, StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Switching a new file to WAL takes an exclusive lock and does not wait in the busy
    // handler: two brokers of a pair starting together can collide here, so retry briefly.
    let mut attempts = 0;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(e) if is_busy(&e) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let sync = match durability {
        Durability::Fsync => "FULL",
        Durability::Relaxed => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    no_automatic_checkpoints(&conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Turns SQLite's automatic checkpoint off on `conn`: it ignores a failed write or fsync of
/// the database file, and a checkpoint that "succeeds" after one may reuse the log over pages
/// the OS dropped. Only the store writer checkpoints, checking each result
/// (`writer/checkpoint.rs`), after its own commits and when idle; every other connection that
/// commits (the lease's) goes through here.
pub fn no_automatic_checkpoints(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", 0)
}

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Opens the database read-only (operator commands; readers never block the writer in WAL).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.into(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The channel into the store writer. Unbounded in type, bounded by credit: persistent SENDs
/// by producer windows, deletes by deliveries, page-ins by one outstanding per queue level.
pub type StoreTx = std::sync::mpsc::Sender<Request>;

/// How the store writer answers one request: called once, on the writer thread, after the
/// request's batch committed (`Ok`, with what the request read) or failed (`Err`, with the
/// text a client's ERROR carries), in the order the requests arrived. The caller builds it
/// and decides what the answer means (tell an owner, hand a message to a queue, answer a
/// session); the store only calls it. It runs while the writer waits, so it must only post
/// and never block. A request the writer never takes (it stopped) drops its reply uncalled.
pub struct Reply<T = ()>(Box<dyn FnOnce(Result<T, Arc<str>>) + Send>);

impl<T> Reply<T> {
    /// A reply that calls `answer`.
    pub fn new(answer: impl FnOnce(Result<T, Arc<str>>) + Send + 'static) -> Self {
        Reply(Box::new(answer))
    }

    /// Answers the request (the store writer does, after its commit).
    fn send(self, result: Result<T, Arc<str>>) {
        (self.0)(result)
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// What a page-in read: stored messages in id order, and whether that was all there is.
#[derive(Debug, Default)]
pub struct Page {
    pub messages: Vec<StoredMessage>,
    /// Fewer than the limit were found: nothing else of that level is stored above them.
    pub exhausted: bool,
}

/// What the store writer is asked to do. A request that has an answer carries its own
/// [`Reply`].
#[derive(Debug)]
pub enum Request {
    /// Persist a persistent SEND an owner staged for `key`; `reply` after the commit.
    Insert {
        key: QueueKey,
        message: Arc<Message>,
        reply: Reply,
    },
    /// Acked (or expired, or purged from memory): forget these rows. A `reply` means someone
    /// waits for the delete to be on disk (an ACK's or DISCONNECT's RECEIPT promises the
    /// message will not come back after a crash): then the batch is fsynced.
    Delete {
        ids: Vec<MessageId>,
        reply: Option<Reply>,
    },
    /// A stored message came back for redelivery: remember its count across restarts.
    Redelivered { id: MessageId, count: u32 },
    /// Move a stored message into another queue (a dead-letter queue): its row changes its
    /// destination and headers in place. `reply` after the commit, even a failed one (the
    /// caller hands the message over either way).
    Move {
        message: StoredMessage,
        to: QueueKey,
        reply: Reply,
    },
    /// A STOMP COMMIT: insert the persistent ones of `sends` and delete `deletes` in one
    /// transaction; `reply` after the commit (the caller hands the sends to their queues).
    Commit {
        sends: Vec<(QueueKey, Arc<Message>)>,
        deletes: Vec<MessageId>,
        reply: Reply,
    },
    /// Read up to `limit` stored messages of `key` at `priority` with ids above `after`.
    PageIn {
        key: QueueKey,
        priority: u8,
        after: MessageId,
        limit: usize,
        reply: Reply<Page>,
    },
    /// Before `key` first delivers stored messages of `priority` with ids up to `upto`:
    /// remember that they may have been delivered, so that after a crash they come back
    /// marked redelivered (see [`settle_delivery_marks`]).
    Mark {
        key: QueueKey,
        priority: u8,
        upto: MessageId,
        reply: Reply,
    },
    /// Keep a persistent scheduled SEND until it is due: a `scheduled` row for `pending`
    /// (its id, destination, first time, period and repeats) holding `message`; `reply` after
    /// the commit.
    Schedule {
        pending: Pending,
        message: Arc<Message>,
        reply: Reply,
    },
    /// One delivery of stored schedule `schedule` at `now`, in one transaction: insert it as a
    /// message into each queue of `copies` under the id given there (none for a topic without
    /// durable subscriptions), and move the schedule on to `next` (time, repeats left) or
    /// delete it after its last delivery. The reply's page holds the delivered message, with
    /// id `id` (empty when the schedule is gone).
    Fire {
        schedule: MessageId,
        now: u64,
        id: MessageId,
        copies: Vec<(QueueKey, MessageId)>,
        next: Option<(u64, u64)>,
        reply: Reply<Page>,
    },
    /// Remember that `destination` exists (a virtual topic's consumer queue, which exists
    /// until deleted): its `destinations` row.
    RecordDestination {
        destination: DestinationName,
        reply: Option<Reply>,
    },
    /// Record a durable subscription (idempotent); `reply` after the commit.
    DurableSubscribe {
        durable: DurableName,
        topic: DestinationName,
        /// Its selector's text, if it has one.
        selector: Option<Arc<str>>,
        reply: Option<Reply>,
    },
    /// Delete a durable subscription and its stored messages.
    DurableUnsubscribe {
        durable: DurableName,
        topic: DestinationName,
    },
    /// An operator purged a queue: delete its stored rows except `keep` (delivered, unacked).
    Purge { key: QueueKey, keep: Vec<MessageId> },
    /// An operator deleted a destination: its rows and its `destinations` row.
    DeleteDestination { key: QueueKey },
    /// Delete stored messages whose expiry has passed (the writer schedules this itself).
    /// Owners whose counts included them notice on their next page-in.
    SweepExpired,
    /// Record that message ids up to `through` may be handed out (the writer schedules this
    /// itself, see `ids.rs`); its batch is fsynced whatever the `durability`.
    ReserveIds { through: u64 },
    /// Finish what is queued, then stop the writer thread.
    Stop,
}

impl Request {
    /// Body bytes it writes: what bounds a batch (`limits::STORE_BATCH_BYTES`).
    pub fn bytes(&self) -> usize {
        match self {
            Request::Insert { message, .. } | Request::Schedule { message, .. } => {
                message.body.len()
            }
            Request::Move { message, .. } => message.message.body.len(),
            Request::Commit { sends, .. } => sends.iter().map(|(_, m)| m.body.len()).sum(),
            _ => 0,
        }
    }
}

/// What the broker finds in the store at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The largest message id still stored, schedules included (ids continue above it and
    /// above the reservation, see [`reserve_at_start`]).
    pub max_id: u64,
    /// Queues with stored messages, with counts per priority.
    pub queues: Vec<(QueueKey, [u64; 10])>,
    /// Durable subscriptions and their topics.
    /// Durable subscriptions: name, topic and selector text.
    pub durables: Vec<(DurableName, DestinationName, Option<String>)>,
    /// Stored schedules, with their messages.
    pub scheduled: Vec<Pending>,
    /// Queues the `destinations` table names (those that ever stored a message, and virtual
    /// topics' consumer queues, which exist until deleted).
    pub queue_names: Vec<String>,
}

/// At start, before [`recover`]: the delivery marks left by the previous broker (which
/// crashed or stopped) say which stored messages it may have handed to a consumer. Those
/// rows get `redelivery_count` 1 (if still 0), so they are delivered with
/// `redelivered:true`; then the marks are cleared, as this broker has delivered nothing yet.
/// Each mark is one indexed range, and what it covers is bounded by the consumers' prefetch
/// when it was taken, so this stays cheap with millions of stored messages. Returns how many
/// rows were marked.
pub fn settle_delivery_marks(conn: &mut Connection) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let marks: Vec<(String, String, i64, i64)> = tx
        .prepare("SELECT destination, subscription, priority, message_id FROM delivery_marks")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    if marks.is_empty() {
        return Ok(0);
    }
    let mut marked = 0;
    {
        let mut stmt = tx.prepare(
            "UPDATE messages SET redelivery_count = 1
              WHERE destination = ?1 AND subscription = ?2 AND priority = ?3
                AND message_id <= ?4 AND redelivery_count = 0",
        )?;
        for (destination, subscription, priority, upto) in &marks {
            marked += stmt.execute(rusqlite::params![destination, subscription, priority, upto])?;
        }
    }
    tx.execute("DELETE FROM delivery_marks", [])?;
    tx.commit()?;
    Ok(marked)
}

/// Reads what recovery needs: stored message counts per queue and priority, durable
/// subscriptions, and the largest id. Messages themselves are paged in later, on demand.
pub fn recover(conn: &Connection) -> Result<Recovered, StoreError> {
    let mut out = Recovered {
        max_id: conn.query_row(
            // A schedule's id is its SEND's message id: ids continue above both.
            "SELECT max((SELECT coalesce(max(message_id), 0) FROM messages),
                        (SELECT coalesce(max(schedule_id), 0) FROM scheduled))",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64,
        ..Recovered::default()
    };
    let mut stmt = conn.prepare(
        "SELECT destination, subscription, priority, count(*) FROM messages
          GROUP BY destination, subscription, priority ORDER BY destination, subscription",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let dest: String = row.get(0)?;
        let sub: String = row.get(1)?;
        let priority: i64 = row.get(2)?;
        let count: i64 = row.get(3)?;
        let Ok(destination) = DestinationName::parse(&dest) else {
            log::warn!("store: skipping rows of unknown destination {dest:?}");
            continue;
        };
        let key = QueueKey {
            destination,
            subscription: if sub.is_empty() {
                None
            } else {
                Some(Arc::from(sub))
            },
        };
        if out.queues.last().is_none_or(|(k, _)| *k != key) {
            out.queues.push((key, [0; 10]));
        }
        let counts = &mut out.queues.last_mut().expect("pushed above").1;
        counts[priority.clamp(0, 9) as usize] += count as u64;
    }
    let mut stmt = conn.prepare(
        "SELECT schedule_id, destination, next_at, period_ms, repeats_left,
                priority, expires_at, headers, body
           FROM scheduled ORDER BY next_at",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let dest: String = row.get(1)?;
        let Ok(destination) = DestinationName::parse(&dest) else {
            log::warn!("store: skipping a schedule of unknown destination {dest:?}");
            continue;
        };
        let headers: String = row.get(7)?;
        let message = message_from_row(
            &QueueKey::queue(destination.clone()),
            row.get(0)?,
            row.get(5)?,
            row.get(6)?,
            &headers,
            row.get(8)?,
        );
        out.scheduled.push(Pending {
            id: message.id,
            destination,
            next_at: row.get::<_, i64>(2)?.max(0) as u64,
            period_ms: row.get::<_, i64>(3)?.max(0) as u64,
            repeats_left: row.get::<_, i64>(4)?.max(0) as u64,
            message: Arc::new(message),
        });
    }
    out.queue_names = conn
        .prepare("SELECT name FROM destinations WHERE kind = 'queue'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut stmt =
        conn.prepare("SELECT client_id, name, destination, selector FROM durable_subscriptions")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let client_id: String = row.get(0)?;
        let name: String = row.get(1)?;
        let topic: String = row.get(2)?;
        let selector: Option<String> = row.get(3)?;
        if let Ok(topic) = DestinationName::parse(&topic) {
            out.durables.push((
                DurableName {
                    client_id: Arc::from(client_id),
                    name: Arc::from(name),
                },
                topic,
                selector,
            ));
        }
    }
    Ok(out)
}

/// At start: the network ids (`stompbox-network-id`) of the stored forwarded messages, with
/// their destinations, in the order they were stored (message id), for the duplicate filter
/// to be rebuilt from (`message::audit`). Reads only rows that have one (a partial index).
pub fn recover_network_ids(
    conn: &Connection,
    mut each: impl FnMut(&str, DestinationName),
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT destination, network_id FROM messages
          WHERE network_id IS NOT NULL ORDER BY message_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let destination: String = row.get(0)?;
        let network_id: String = row.get(1)?;
        if let Ok(destination) = DestinationName::parse(&destination) {
            each(&network_id, destination);
        }
    }
    Ok(())
}

/// Headers as a JSON object (first value of a repeated name wins, as on the wire).
pub fn headers_to_json(headers: &[(String, String)]) -> String {
    let mut map = serde_json::Map::with_capacity(headers.len());
    for (k, v) in headers {
        map.entry(k.clone())
            .or_insert_with(|| serde_json::Value::String(v.clone()));
    }
    serde_json::Value::Object(map).to_string()
}

/// The inverse of [`headers_to_json`]; non-string values are rendered as JSON text.
pub fn headers_from_json(text: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Builds a message from a stored row's columns.
pub(crate) fn message_from_row(
    key: &QueueKey,
    id: i64,
    priority: i64,
    expires_at: Option<i64>,
    headers: &str,
    body: Vec<u8>,
) -> Message {
    let headers = headers_from_json(headers);
    Message {
        id: MessageId(id as u64),
        destination: key.destination.clone(),
        body: Bytes::from(body),
        priority: priority.clamp(0, 9) as u8,
        persistent: true,
        expires: expires_at.map_or(0, |e| e.max(0) as u64),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_through_json_first_wins() {
        let h = vec![
            ("type".to_string(), "order".to_string()),
            ("type".to_string(), "ignored".to_string()),
            ("x:y".to_string(), "a\nb".to_string()),
        ];
        let json = headers_to_json(&h);
        let back = headers_from_json(&json);
        assert!(back.contains(&("type".to_string(), "order".to_string())));
        assert!(back.contains(&("x:y".to_string(), "a\nb".to_string())));
        assert_eq!(back.len(), 2);
    }
}
