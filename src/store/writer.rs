//! The store writer thread: group commit.
//!
//! It blocks for one request, takes every other request already waiting (up to
//! `max_batch`), applies them all in one SQLite transaction, commits once, and only then
//! answers them, in the order they arrived. While one commit is being fsynced the next batch
//! accumulates, so the cost of an fsync is shared by everyone who was waiting for it.
//!
//! One failing request does not fail its batch: the transaction is rolled back and applied
//! again with each request in a savepoint, so only the requests that fail again are rolled
//! back and answered with their error. A lost lease (fencing) and a failed BEGIN or COMMIT
//! still fail the whole batch. A failed write or fsync (an I/O error, wherever it happens)
//! fails the batch and stops the writer for good: see [`is_io_failure`].

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{error, info, warn};
use rusqlite::{Connection, TransactionBehavior};

use super::apply::{apply_one, Known, Outcome};
use super::{Request, StoreTx};
use crate::message::{Router, StoredMessage, ToOwner, ToSession};

/// How often stored messages that expired on disk (never paged in) are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Store writer settings.
pub struct WriterConfig {
    /// Most requests applied in one transaction.
    pub max_batch: usize,
    /// Delete expired rows every few seconds (when expired messages are dropped rather than
    /// dead-lettered, which needs their owner).
    pub sweep_expired: bool,
    /// The lease this writer writes under; None without a lease (tests).
    pub fence: Option<Fence>,
    /// The configured durability (see [`crate::config::Durability`]).
    pub durability: crate::config::Durability,
}

/// The lease's fencing check on a connection inside its write transaction.
pub type LeaseCheck = dyn Fn(&Connection) -> Result<bool, rusqlite::Error> + Send;

/// Fencing: every transaction first asks the lease (`holds`) whether this broker still holds
/// it at `epoch`. If not, the batch is rolled back, every later request fails, and
/// `on_fenced` is called once (the broker steps down). An I/O failure (a failed write or
/// fsync, see `is_io_failure`) stops the writer the same way and calls `on_store_failure`
/// (the broker steps down and gives its lease up at once). The store does not know what the
/// lease row is; the lease module hands it the check.
pub struct Fence {
    /// The lease's check, run inside each write transaction (the lease module owns what it
    /// means; the store only asks): does this broker still hold the lease at `epoch`?
    pub holds: Box<LeaseCheck>,
    /// The lease epoch, stamped on the rows this broker writes.
    pub epoch: u64,
    pub on_fenced: Box<dyn Fn(String) + Send>,
    pub on_store_failure: Box<dyn Fn(String) + Send>,
}

/// True for errors after which this connection's idea of the file cannot be trusted: an I/O
/// error while writing or syncing (every `SQLITE_IOERR_*` except a failed read) and
/// corruption. They stop the writer for good ([`fail_stop`]) wherever they happen: at BEGIN,
/// while a request is applied (SQLite writes pages to the WAL before COMMIT when a large
/// transaction spills its cache, so a failed write is the same failure whether it comes then
/// or at COMMIT), or at COMMIT. A failed read (`SQLITE_IOERR_READ`, `_SHORT_READ`) changes
/// nothing on disk and lets the broker claim nothing: its request or batch fails and the next
/// one tries again (a page-in backs off and retries). Disk full is not one either: SQLite
/// rolls back cleanly and the next transaction may succeed once space returns.
fn is_io_failure(e: &rusqlite::Error) -> bool {
    let Some(code) = e.sqlite_error_code() else {
        return false;
    };
    let extended = match e {
        rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
        _ => 0,
    };
    match code {
        rusqlite::ErrorCode::DatabaseCorrupt => true,
        rusqlite::ErrorCode::SystemIoFailure => !matches!(
            extended,
            rusqlite::ffi::SQLITE_IOERR_READ | rusqlite::ffi::SQLITE_IOERR_SHORT_READ
        ),
        _ => false,
    }
}

/// The text an error is answered with; an I/O failure ([`is_io_failure`]) first stops the
/// writer for good ([`fail_stop`]). `during` says where it happened, for the log and the
/// clients' ERROR frames.
fn failed(
    stopped: &mut Option<String>,
    fence: Option<&Fence>,
    during: &str,
    e: &rusqlite::Error,
) -> String {
    match is_io_failure(e) {
        true => fail_stop(stopped, fence, during, e),
        false => e.to_string(),
    }
}

/// An I/O error (a failed write or fsync) or corruption. After a failed fsync the OS may have
/// dropped the dirty pages and a retry can "succeed" without the data ever reaching the disk
/// (PostgreSQL's fsyncgate); after a failed write SQLite has rolled the transaction back, and
/// retrying it on the same connection and then promising durability would rest on the same
/// disk that just failed. So this connection is not trusted again: the writer stops writing
/// for good, and the broker steps down and releases its lease, so a standby (or this process,
/// on a fresh connection) recovers from what is really on disk. Returns the error text for
/// the batch's answers.
fn fail_stop(
    stopped: &mut Option<String>,
    fence: Option<&Fence>,
    during: &str,
    e: &rusqlite::Error,
) -> String {
    let why = format!("store I/O failure {during}, no longer writing: {e}");
    error!("store: {why}; stepping down");
    *stopped = Some(why.clone());
    if let Some(f) = fence {
        (f.on_store_failure)(why.clone());
    }
    why
}

/// Starts the writer thread on `conn`. Answers to owners go through `router`.
pub fn spawn_writer(
    conn: Connection,
    router: Arc<Router>,
    config: WriterConfig,
) -> std::io::Result<(StoreTx, JoinHandle<()>)> {
    start(Writer::new(conn, router, config))
}

/// Faults a test injects into a running writer (compiled only in tests).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    /// While set, every page-in fails.
    pub fail_page_in: std::sync::atomic::AtomicBool,
    /// While set, every COMMIT fails as a failed fsync does.
    pub fail_commit: std::sync::atomic::AtomicBool,
    /// While set, every request that inserts messages fails while it is applied, as a failed
    /// write of the WAL does when a large transaction spills SQLite's page cache.
    pub fail_write: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl Faults {
    /// Fails `req` if a fault is set for its kind.
    fn check(&self, req: &Request) -> Result<(), rusqlite::Error> {
        let page_in = matches!(req, Request::PageIn { .. });
        if page_in && self.fail_page_in.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_READ),
                Some("injected page-in failure".into()),
            ));
        }
        let inserts = matches!(req, Request::Insert { .. } | Request::Commit { .. });
        if inserts && self.fail_write.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
                Some("injected write failure".into()),
            ));
        }
        Ok(())
    }
}

/// [`spawn_writer`] with `faults` injected.
#[cfg(test)]
pub(crate) fn spawn_writer_with_faults(
    conn: Connection,
    router: Arc<Router>,
    config: WriterConfig,
    faults: Arc<Faults>,
) -> std::io::Result<(StoreTx, JoinHandle<()>)> {
    let mut writer = Writer::new(conn, router, config);
    writer.faults = faults;
    start(writer)
}

fn start(writer: Writer) -> std::io::Result<(StoreTx, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(rx))?;
    Ok((tx, handle))
}

struct Writer {
    conn: Connection,
    router: Arc<Router>,
    config: WriterConfig,
    /// Destinations whose `destinations` row is committed (changed only after a commit).
    known: HashSet<String>,
    /// Why nothing more is written (the lease was lost, or an I/O failure): every later
    /// request is answered with it.
    stopped: Option<String>,
    #[cfg(test)]
    faults: Arc<Faults>,
}

/// One request of a committed batch: its outcome, or the error it alone was rolled back for.
type Applied = Result<Outcome, String>;

/// How one transaction over a batch ended.
enum Pass {
    /// Committed, with one result per request.
    Committed(Vec<Applied>),
    /// Request `index` failed, and with it the whole transaction (no savepoints).
    RolledBack { index: usize, error: String },
}

impl Writer {
    fn new(conn: Connection, router: Arc<Router>, config: WriterConfig) -> Self {
        Writer {
            conn,
            router,
            config,
            known: HashSet::new(),
            stopped: None,
            #[cfg(test)]
            faults: Arc::default(),
        }
    }

    fn run(mut self, rx: Receiver<Request>) {
        let mut last_sweep = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<Request> = first.into_iter().collect();
            if self.config.sweep_expired && last_sweep.elapsed() >= SWEEP_INTERVAL {
                last_sweep = std::time::Instant::now();
                batch.push(Request::SweepExpired);
            }
            if batch.is_empty() {
                continue;
            }
            while batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let stop = batch.iter().any(|r| matches!(r, Request::Stop));
            self.process(batch);
            if stop {
                break;
            }
        }
        info!("store writer stopped");
    }

    /// Applies one batch, commits it and answers its requests.
    fn process(&mut self, batch: Vec<Request>) {
        let started = std::time::Instant::now();
        let result = self.apply(&batch);
        metrics::histogram!("stompbox_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("stompbox_store_batch_requests").record(batch.len() as f64);
        if let Err(e) = &result {
            error!("store: commit of {} requests failed: {e}", batch.len());
        }
        self.answer(batch, result);
    }

    /// Applies the batch and commits it (see `apply_in_transaction`).
    fn apply(&mut self, batch: &[Request]) -> Result<Vec<Applied>, String> {
        if let Some(why) = &self.stopped {
            return Err(why.clone());
        }
        // A batch that only forgets or annotates messages (acks, redelivery counts, delivery
        // marks, page-ins, the expiry sweep) promises nothing a power loss could break: losing it means an
        // acked message is delivered again, which at-least-once allows. Such batches skip the
        // fsync, so a lone synchronous producer pays one fsync per message, not two. An ACK
        // that asked for a RECEIPT does promise something, so its delete is fsynced.
        let skip_fsync = self.config.durability == crate::config::Durability::Fsync
            && batch.iter().all(|r| {
                matches!(
                    r,
                    Request::Delete { reply, .. } if reply.is_empty()
                ) || matches!(
                    r,
                    Request::Redelivered { .. }
                        | Request::Mark { .. }
                        | Request::PageIn { .. }
                        | Request::SweepExpired
                        | Request::Stop
                )
            });
        let fence = self.config.fence.as_ref();
        if skip_fsync {
            self.conn
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(|e| failed(&mut self.stopped, fence, "at PRAGMA synchronous", &e))?;
        }
        let result = self.apply_in_transaction(batch);
        let fence = self.config.fence.as_ref();
        if skip_fsync {
            self.conn
                .pragma_update(None, "synchronous", "FULL")
                .map_err(|e| failed(&mut self.stopped, fence, "at PRAGMA synchronous", &e))?;
        }
        result
    }

    /// Applies the batch in one transaction. When a request fails, that transaction is rolled
    /// back and the batch is applied again with each request in a savepoint of its own: a
    /// request that fails again is rolled back alone (and answered with its error), the
    /// others commit. Err means nothing was committed and every request fails: the lease is
    /// lost, the transaction itself could not begin or commit, or an I/O failure stopped the
    /// writer for good (then no second pass is tried).
    fn apply_in_transaction(&mut self, batch: &[Request]) -> Result<Vec<Applied>, String> {
        match self.pass(batch, false)? {
            Pass::Committed(applied) => Ok(applied),
            Pass::RolledBack { index, error } => {
                warn!(
                    "store: {} failed in a batch of {}: {error}; applying the batch again, \
                     each request in its own savepoint",
                    describe(&batch[index]),
                    batch.len()
                );
                match self.pass(batch, true)? {
                    Pass::Committed(applied) => Ok(applied),
                    // A pass with savepoints does not roll back the whole batch for one
                    // request; this arm only keeps the match total.
                    Pass::RolledBack { error, .. } => Err(error),
                }
            }
        }
    }

    /// One transaction over the whole batch. The write lock is taken first (IMMEDIATE), and
    /// the fencing check runs inside the transaction, so it and the writes see the same
    /// lease row. With `isolate`, each request runs in a savepoint of its own. An I/O failure
    /// anywhere ([`is_io_failure`]) rolls everything back and stops the writer for good.
    fn pass(&mut self, batch: &[Request], isolate: bool) -> Result<Pass, String> {
        let now = now_ms();
        // The transaction borrows the connection; the failure handling below only touches
        // the other fields (`stopped`, the fence), so it can run while a transaction is open.
        let fence = self.config.fence.as_ref();
        let stopped = &mut self.stopped;
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| failed(stopped, fence, "at BEGIN", &e))?;
        let epoch = match fence {
            None => None,
            Some(f) => {
                let holds =
                    (f.holds)(&tx).map_err(|e| failed(stopped, fence, "reading the lease", &e))?;
                if !holds {
                    drop(tx);
                    let why = format!(
                        "lease epoch {} is no longer ours; this broker no longer writes",
                        f.epoch
                    );
                    error!("store: fenced, {why}; rolling back and stepping down");
                    *stopped = Some(why.clone());
                    (f.on_fenced)(why.clone());
                    return Err(why);
                }
                Some(f.epoch as i64)
            }
        };
        let mut known = Known::new(&self.known);
        let mut applied = Vec::with_capacity(batch.len());
        for (index, req) in batch.iter().enumerate() {
            #[cfg(test)]
            let injected = self.faults.check(req);
            #[cfg(not(test))]
            let injected: Result<(), rusqlite::Error> = Ok(());
            if !isolate {
                match injected.and_then(|()| apply_one(&tx, &mut known, req, now, epoch)) {
                    Ok(outcome) => applied.push(Ok(outcome)),
                    Err(e) if is_io_failure(&e) => {
                        drop(tx);
                        let during = format!("while applying the {}", describe(req));
                        return Err(fail_stop(stopped, fence, &during, &e));
                    }
                    // Dropping `tx` rolls the whole batch back.
                    Err(e) => {
                        return Ok(Pass::RolledBack {
                            index,
                            error: e.to_string(),
                        })
                    }
                }
                continue;
            }
            let before = known.clone();
            let savepoint = tx
                .savepoint()
                .map_err(|e| failed(stopped, fence, "at SAVEPOINT", &e))?;
            match injected.and_then(|()| apply_one(&savepoint, &mut known, req, now, epoch)) {
                Ok(outcome) => {
                    savepoint
                        .commit()
                        .map_err(|e| failed(stopped, fence, "at RELEASE", &e))?;
                    applied.push(Ok(outcome));
                }
                Err(e) if is_io_failure(&e) => {
                    drop(savepoint);
                    drop(tx);
                    let during = format!("while applying the {}", describe(req));
                    return Err(fail_stop(stopped, fence, &during, &e));
                }
                Err(e) => {
                    // Some errors (disk full, a failed read) make SQLite roll back the whole
                    // transaction: then nothing of the batch can be kept.
                    if savepoint.is_autocommit() {
                        return Err(format!("{e} (the transaction was rolled back)"));
                    }
                    savepoint
                        .finish()
                        .map_err(|e| failed(stopped, fence, "at ROLLBACK TO", &e))?;
                    known = before;
                    error!(
                        "store: {} failed and was rolled back alone: {e}",
                        describe(req)
                    );
                    applied.push(Err(e.to_string()));
                }
            }
        }
        #[cfg(test)]
        if self
            .faults
            .fail_commit
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            drop(tx);
            return Err(fail_stop(
                stopped,
                fence,
                "at COMMIT",
                &rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
                    Some("injected fsync failure".into()),
                ),
            ));
        }
        tx.commit()
            .map_err(|e| failed(stopped, fence, "at COMMIT", &e))?;
        let Known { added, removed, .. } = known;
        for name in &removed {
            self.known.remove(name);
        }
        self.known.extend(added);
        Ok(Pass::Committed(applied))
    }

    /// Answers every request of a batch, in arrival order: each with its own result when the
    /// batch committed, all with the batch's error when nothing did.
    fn answer(&self, batch: Vec<Request>, result: Result<Vec<Applied>, String>) {
        let results: Vec<Result<Outcome, Arc<str>>> = match result {
            Ok(applied) => applied
                .into_iter()
                .map(|a| a.map_err(|e| Arc::from(format!("store write failed: {e}"))))
                .collect(),
            Err(e) => {
                let e = Arc::<str>::from(format!("store commit failed: {e}"));
                batch.iter().map(|_| Err(e.clone())).collect()
            }
        };
        for (req, result) in batch.into_iter().zip(results) {
            let (ok, outcome) = match result {
                Ok(outcome) => (Ok(()), outcome),
                Err(e) => (Err(e), Outcome::None),
            };
            match req {
                Request::Insert {
                    key,
                    shard,
                    messages,
                } => self.router.post(
                    shard,
                    ToOwner::Stored {
                        key,
                        staged: messages.len(),
                        adopted: Vec::new(),
                        result: ok,
                    },
                ),
                Request::Move { message, to, shard } => {
                    // Even if the row could not be moved, the message is handed over: it stays
                    // stored under its old queue and reappears there after a restart (at least
                    // once, never lost).
                    self.router.post(
                        shard,
                        ToOwner::Stored {
                            key: to,
                            staged: 0,
                            adopted: vec![message],
                            result: Ok(()),
                        },
                    );
                }
                Request::Commit {
                    sends,
                    session,
                    token,
                    ..
                } => {
                    if ok.is_ok() {
                        for (key, shard, message) in sends {
                            let adopted = vec![StoredMessage {
                                message,
                                redelivery_count: 0,
                            }];
                            self.router.post(
                                shard,
                                ToOwner::Stored {
                                    key,
                                    staged: 0,
                                    adopted,
                                    result: Ok(()),
                                },
                            );
                        }
                    }
                    let _ = session.send(ToSession::Committed { token, result: ok });
                }
                Request::PageIn {
                    key,
                    shard,
                    priority,
                    ..
                } => {
                    // A failed page-in is answered as such (not as "nothing found"), so the
                    // queue backs off instead of asking again at once.
                    let (messages, exhausted) = match outcome {
                        Outcome::PagedIn(m, e) => (m, e),
                        Outcome::None => (Vec::new(), false),
                    };
                    self.router.post(
                        shard,
                        ToOwner::PagedIn {
                            key,
                            priority,
                            messages,
                            exhausted,
                            result: ok,
                        },
                    );
                }
                Request::Mark {
                    key,
                    shard,
                    priority,
                    upto,
                } => self.router.post(
                    shard,
                    ToOwner::Marked {
                        key,
                        priority,
                        upto,
                        result: ok,
                    },
                ),
                Request::DurableSubscribe {
                    reply: Some((session, token)),
                    ..
                } => {
                    let _ = session.send(ToSession::Committed { token, result: ok });
                }
                Request::Delete { reply, .. } => {
                    for (session, token) in reply {
                        let result = ok.clone();
                        let _ = session.send(ToSession::Committed { token, result });
                    }
                }
                Request::DurableSubscribe { reply: None, .. }
                | Request::DurableUnsubscribe { .. }
                | Request::Redelivered { .. }
                | Request::SweepExpired
                | Request::Purge { .. }
                | Request::DeleteDestination { .. }
                | Request::Stop => {}
            }
        }
    }
}

/// A request for the log: what it is and which queue it is for.
fn describe(req: &Request) -> String {
    match req {
        Request::Insert { key, messages, .. } => {
            format!("insert of {} messages into {key}", messages.len())
        }
        Request::Delete { ids, .. } => format!("delete of {} messages", ids.len()),
        Request::Redelivered { id, .. } => format!("redelivery count of message {id}"),
        Request::Move { message, to, .. } => {
            format!("move of message {} to {to}", message.message.id)
        }
        Request::Commit { sends, deletes, .. } => format!(
            "transaction commit ({} sends, {} acks)",
            sends.len(),
            deletes.len()
        ),
        Request::PageIn { key, priority, .. } => {
            format!("page-in of {key} at priority {priority}")
        }
        Request::Mark {
            key,
            priority,
            upto,
            ..
        } => format!("delivery mark of {key} at priority {priority} up to {upto}"),
        Request::DurableSubscribe { durable, .. } => {
            format!("durable subscription {}", durable.key())
        }
        Request::DurableUnsubscribe { durable, .. } => {
            format!("durable unsubscribe {}", durable.key())
        }
        Request::Purge { key, .. } => format!("purge of {key}"),
        Request::DeleteDestination { key } => format!("delete of destination {key}"),
        Request::SweepExpired => "expiry sweep".into(),
        Request::Stop => "stop".into(),
    }
}

fn now_ms() -> i64 {
    crate::clock::now_ms() as i64
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use bytes::Bytes;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use rusqlite::params;

    use super::*;

    /// The lease module's check, as a test writes it: the row names `holder` at `epoch`.
    fn lease_is(c: &Connection, holder: &str, epoch: i64) -> Result<bool, rusqlite::Error> {
        c.query_row(
            "SELECT holder = ?1 AND epoch = ?2 FROM broker_lease WHERE id = 1",
            rusqlite::params![holder, epoch],
            |r| r.get::<_, Option<bool>>(0),
        )
        .map(|b| b.unwrap_or(false))
    }
    use crate::message::DestinationName;
    use crate::message::{Message, QueueKey};
    use crate::message::{MessageId, Token};

    /// A writer on a fresh in-memory store, driven batch by batch with `process`, and the
    /// mailbox of its only owner shard.
    fn writer(fence: Option<Fence>) -> (Writer, UnboundedReceiver<ToOwner>) {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        writer_on(conn, fence)
    }

    /// A writer on `conn`, as [`writer`].
    fn writer_on(conn: Connection, fence: Option<Fence>) -> (Writer, UnboundedReceiver<ToOwner>) {
        let (tx, rx) = unbounded_channel();
        let config = WriterConfig {
            max_batch: 64,
            sweep_expired: false,
            fence,
            durability: crate::config::Durability::Fsync,
        };
        (
            Writer::new(conn, Arc::new(Router::new(vec![tx])), config),
            rx,
        )
    }

    fn message(dest: &str, id: u64) -> Arc<Message> {
        Arc::new(Message {
            id: MessageId(id),
            destination: DestinationName::parse(dest).unwrap(),
            headers: Vec::new(),
            body: Bytes::from_static(b"body"),
            priority: 4,
            persistent: true,
            expires: 0,
        })
    }

    /// Persist messages with `ids` into queue `dest`.
    fn insert(dest: &str, ids: &[u64]) -> Request {
        Request::Insert {
            key: QueueKey::queue(DestinationName::parse(dest).unwrap()),
            shard: 0,
            messages: ids.iter().map(|&id| message(dest, id)).collect(),
        }
    }

    /// Every `Stored` answer posted so far: (queue, staged, adopted ids, committed).
    fn stored(rx: &mut UnboundedReceiver<ToOwner>) -> Vec<(String, usize, Vec<u64>, bool)> {
        let mut out = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            if let ToOwner::Stored {
                key,
                staged,
                adopted,
                result,
            } = cmd
            {
                let adopted = adopted.iter().map(|m| m.message.id.0).collect();
                out.push((key.to_string(), staged, adopted, result.is_ok()));
            }
        }
        out
    }

    /// (destination, message id) of every stored row.
    fn rows(w: &Writer) -> Vec<(String, u64)> {
        let mut stmt = w
            .conn
            .prepare("SELECT destination, message_id FROM messages ORDER BY message_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn owned(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(d, id)| (d.to_string(), *id)).collect()
    }

    fn queue_depths(w: &Writer) -> Vec<(String, i64)> {
        let mut stmt = w
            .conn
            .prepare("SELECT destination, messages FROM queue_depths ORDER BY destination")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn one_failing_request_is_rejected_alone_and_the_rest_of_its_batch_commits() {
        let (mut w, mut rx) = writer(None);
        w.process(vec![insert("/queue/a", &[1])]);
        let (session, mut answers) = unbounded_channel();
        w.process(vec![
            insert("/queue/a", &[2]),
            // Id 1 is taken: the primary key rejects this request, after its first row (id 5)
            // was written, which must be undone with it.
            insert("/queue/b", &[5, 1]),
            Request::Commit {
                sends: vec![(
                    QueueKey::queue(DestinationName::parse("/queue/a").unwrap()),
                    0,
                    message("/queue/a", 3),
                )],
                deletes: Vec::new(),
                session,
                token: Token(7),
            },
            insert("/queue/a", &[4]),
        ]);
        let a = "/queue/a".to_string();
        assert_eq!(
            stored(&mut rx),
            [
                (a.clone(), 1, vec![], true),
                (a.clone(), 1, vec![], true),
                ("/queue/b".into(), 2, vec![], false),
                (a.clone(), 0, vec![3], true),
                (a.clone(), 1, vec![], true),
            ]
        );
        assert!(matches!(
            answers.try_recv(),
            Ok(ToSession::Committed {
                token: Token(7),
                result: Ok(())
            })
        ));
        assert_eq!(
            rows(&w),
            owned(&[
                ("/queue/a", 1),
                ("/queue/a", 2),
                ("/queue/a", 3),
                ("/queue/a", 4)
            ])
        );
    }

    #[test]
    fn a_lost_lease_still_fails_the_whole_batch() {
        let stepped_down = Arc::new(AtomicBool::new(false));
        let flag = stepped_down.clone();
        let fence = Fence {
            holds: Box::new(|c| lease_is(c, "me", 3)),
            epoch: 3,
            on_fenced: Box::new(move |_| flag.store(true, Ordering::SeqCst)),
            on_store_failure: Box::new(|_| panic!("no I/O failure expected")),
        };
        let (mut w, mut rx) = writer(Some(fence));
        let take = "UPDATE broker_lease SET holder = ?1, epoch = ?2 WHERE id = 1";
        w.conn.execute(take, params!["me", 3]).unwrap();
        w.process(vec![insert("/queue/a", &[1])]);
        w.conn.execute(take, params!["other", 4]).unwrap();
        // A batch with a failing request is retried without it; not when the lease is gone.
        w.process(vec![insert("/queue/a", &[2]), insert("/queue/a", &[1])]);
        w.process(vec![insert("/queue/a", &[3])]);
        let a = "/queue/a".to_string();
        assert_eq!(
            stored(&mut rx),
            [
                (a.clone(), 1, vec![], true),
                (a.clone(), 1, vec![], false),
                (a.clone(), 1, vec![], false),
                (a.clone(), 1, vec![], false),
            ]
        );
        assert!(stepped_down.load(Ordering::SeqCst));
        assert_eq!(rows(&w), owned(&[("/queue/a", 1)]));
    }

    #[test]
    fn a_failed_fsync_stops_the_writer_for_good_and_steps_down() {
        let failed = Arc::new(std::sync::Mutex::new(None::<String>));
        let seen = failed.clone();
        let fence = Fence {
            holds: Box::new(|c| lease_is(c, "me", 3)),
            epoch: 3,
            on_fenced: Box::new(|_| panic!("the lease is still ours")),
            on_store_failure: Box::new(move |why| *seen.lock().unwrap() = Some(why)),
        };
        let (mut w, mut rx) = writer(Some(fence));
        let take = "UPDATE broker_lease SET holder = ?1, epoch = ?2 WHERE id = 1";
        w.conn.execute(take, params!["me", 3]).unwrap();
        w.process(vec![insert("/queue/a", &[1])]);
        w.faults.fail_commit.store(true, Ordering::SeqCst);
        w.process(vec![insert("/queue/a", &[2])]);
        // The fault is gone, but after a failed fsync nothing may be written through this
        // connection again (a retry could "succeed" on pages the OS already dropped).
        w.faults.fail_commit.store(false, Ordering::SeqCst);
        w.process(vec![insert("/queue/a", &[3])]);
        let ok: Vec<bool> = stored(&mut rx).into_iter().map(|s| s.3).collect();
        assert_eq!(ok, [true, false, false]);
        let why = failed.lock().unwrap().clone().expect("the broker was told");
        assert!(why.contains("injected fsync failure"), "{why}");
        assert_eq!(rows(&w), owned(&[("/queue/a", 1)]));
    }

    #[test]
    fn a_rolled_back_insert_does_not_hide_its_destination_from_later_ones() {
        let (mut w, mut rx) = writer(None);
        w.process(vec![insert("/queue/old", &[1])]);
        // Fails (id 1 is taken) after recording /queue/new in `destinations`; rolled back.
        w.process(vec![insert("/queue/new", &[1])]);
        w.process(vec![insert("/queue/new", &[2])]);
        let ok: Vec<bool> = stored(&mut rx).into_iter().map(|s| s.3).collect();
        assert_eq!(ok, [true, false, true]);
        assert_eq!(
            queue_depths(&w),
            [("/queue/new".to_string(), 1), ("/queue/old".to_string(), 1)]
        );
    }

    /// A fence for "me" at epoch 3 that records the store failure it is told of (and must not
    /// be fenced), with the lease row set to match.
    fn failure_fence() -> (Fence, Arc<std::sync::Mutex<Option<String>>>) {
        let failed = Arc::new(std::sync::Mutex::new(None::<String>));
        let seen = failed.clone();
        let fence = Fence {
            holds: Box::new(|c| lease_is(c, "me", 3)),
            epoch: 3,
            on_fenced: Box::new(|_| panic!("the lease is still ours")),
            on_store_failure: Box::new(move |why| *seen.lock().unwrap() = Some(why)),
        };
        (fence, failed)
    }

    fn take_lease(w: &Writer) {
        let take = "UPDATE broker_lease SET holder = 'me', epoch = 3 WHERE id = 1";
        w.conn.execute(take, []).unwrap();
    }

    #[test]
    fn a_failed_write_while_applying_stops_the_writer_without_a_second_pass() {
        let (fence, failed) = failure_fence();
        let (mut w, mut rx) = writer(Some(fence));
        take_lease(&w);
        w.process(vec![insert("/queue/a", &[1])]);
        w.faults.fail_write.store(true, Ordering::SeqCst);
        w.process(vec![insert("/queue/a", &[2]), insert("/queue/b", &[3])]);
        // A write failed: the batch is not applied again request by request on this
        // connection, and nothing is written through it any more, fault or not.
        w.faults.fail_write.store(false, Ordering::SeqCst);
        w.process(vec![insert("/queue/a", &[4])]);
        let ok: Vec<bool> = stored(&mut rx).into_iter().map(|s| s.3).collect();
        assert_eq!(ok, [true, false, false, false]);
        let why = failed.lock().unwrap().clone().expect("the broker was told");
        assert!(why.contains("while applying the insert"), "{why}");
        assert!(why.contains("injected write failure"), "{why}");
        assert_eq!(rows(&w), owned(&[("/queue/a", 1)]));
    }

    #[test]
    fn a_failed_read_fails_its_request_and_the_writer_goes_on() {
        let (fence, failed) = failure_fence();
        let (mut w, mut rx) = writer(Some(fence));
        take_lease(&w);
        w.faults.fail_page_in.store(true, Ordering::SeqCst);
        let page_in = Request::PageIn {
            key: QueueKey::queue(DestinationName::parse("/queue/a").unwrap()),
            shard: 0,
            priority: 4,
            after: MessageId(0),
            limit: 10,
        };
        w.process(vec![insert("/queue/a", &[1]), page_in]);
        w.process(vec![insert("/queue/a", &[2])]);
        let mut answers = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                ToOwner::Stored { result, .. } => answers.push(("stored", result.is_ok())),
                ToOwner::PagedIn { result, .. } => answers.push(("paged-in", result.is_ok())),
                _ => {}
            }
        }
        assert_eq!(
            answers,
            [("stored", true), ("paged-in", false), ("stored", true)]
        );
        assert_eq!(*failed.lock().unwrap(), None);
        assert_eq!(rows(&w), owned(&[("/queue/a", 1), ("/queue/a", 2)]));
    }

    /// With the fault-injection VFS: SQLite itself meets the failed system call, so these
    /// check what SQLite does with it (the error code, the rollback) and what the writer does
    /// with that.
    #[cfg(feature = "fault-injection")]
    mod real_sqlite {
        use super::*;
        use crate::store::faults::{FSYNC_TRIGGER, WRITE_TRIGGER};

        type Failed = Arc<std::sync::Mutex<Option<String>>>;

        /// A writer on a file in `dir`, opened through the fault-injection VFS.
        fn file_writer(dir: &std::path::Path) -> (Writer, UnboundedReceiver<ToOwner>, Failed) {
            let path = dir.join(crate::config::DB_FILE);
            let conn = crate::store::open_writer(&path, crate::config::Durability::Fsync).unwrap();
            let (fence, failed) = failure_fence();
            let (w, rx) = writer_on(conn, Some(fence));
            take_lease(&w);
            (w, rx, failed)
        }

        fn big(dest: &str, id: u64) -> Request {
            let mut m = (*message(dest, id)).clone();
            m.body = Bytes::from(vec![b'x'; 8 << 20]);
            Request::Insert {
                key: QueueKey::queue(DestinationName::parse(dest).unwrap()),
                shard: 0,
                messages: vec![Arc::new(m)],
            }
        }

        /// Rows as a fresh connection sees them: what is really in the file.
        fn rows_on_disk(dir: &std::path::Path) -> Vec<(String, u64)> {
            let conn = Connection::open(dir.join(crate::config::DB_FILE)).unwrap();
            let mut stmt = conn
                .prepare("SELECT destination, message_id FROM messages ORDER BY message_id")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }

        #[test]
        fn a_failed_fsync_at_commit_is_fail_stop_and_nothing_of_its_batch_is_visible() {
            let dir = tempfile::tempdir().unwrap();
            let (mut w, mut rx, failed) = file_writer(dir.path());
            w.process(vec![insert("/queue/a", &[1])]);
            std::fs::write(dir.path().join(FSYNC_TRIGGER), b"").unwrap();
            w.process(vec![insert("/queue/a", &[2])]);
            assert!(!dir.path().join(FSYNC_TRIGGER).exists(), "the fault fired");
            // The next fsync would succeed; the writer must not use it.
            w.process(vec![insert("/queue/a", &[3])]);
            let ok: Vec<bool> = stored(&mut rx).into_iter().map(|s| s.3).collect();
            assert_eq!(ok, [true, false, false]);
            let why = failed.lock().unwrap().clone().expect("the broker was told");
            assert!(why.contains("at COMMIT"), "{why}");
            assert_eq!(rows_on_disk(dir.path()), owned(&[("/queue/a", 1)]));
        }

        #[test]
        fn a_failed_write_while_a_large_insert_spills_is_fail_stop_before_commit() {
            let dir = tempfile::tempdir().unwrap();
            let (mut w, mut rx, failed) = file_writer(dir.path());
            w.process(vec![insert("/queue/a", &[1])]);
            // 8 MiB do not fit SQLite's default 2 MB page cache: the insert writes pages to
            // the WAL while it runs, and the first of those writes fails.
            std::fs::write(dir.path().join(WRITE_TRIGGER), b"").unwrap();
            w.process(vec![big("/queue/a", 2)]);
            assert!(!dir.path().join(WRITE_TRIGGER).exists(), "the fault fired");
            w.process(vec![insert("/queue/a", &[3])]);
            let ok: Vec<bool> = stored(&mut rx).into_iter().map(|s| s.3).collect();
            assert_eq!(ok, [true, false, false]);
            let why = failed.lock().unwrap().clone().expect("the broker was told");
            assert!(why.contains("while applying the insert"), "{why}");
            assert_eq!(rows_on_disk(dir.path()), owned(&[("/queue/a", 1)]));
        }
    }
}
