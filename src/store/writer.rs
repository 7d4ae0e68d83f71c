//! The store writer thread: group commit.
//!
//! It blocks for one request, takes every other request already waiting (up to
//! `max_batch`), applies them all in one SQLite transaction, commits once, and only then
//! answers them, in the order they arrived, each through the [`super::Reply`] its caller handed it.
//! While one commit is being fsynced the next batch accumulates, so the cost of an fsync is
//! shared by everyone who was waiting for it.
//!
//! One failing request does not fail its batch: the transaction is rolled back and applied
//! again with each request in a savepoint, so only the requests that fail again are rolled
//! back and answered with their error. A lost lease (fencing) and a failed BEGIN or COMMIT
//! still fail the whole batch. A failed write or fsync (an I/O error, wherever it happens)
//! fails the batch and stops the writer for good: see `failure.rs`.
//!
//! Beside the requests it is sent, the writer schedules two of its own, on a tick that comes
//! with or without traffic (it wakes at least once a second): the expiry sweep, and the next
//! message id reservation once half of the recorded one is used (`ids.rs`).

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{error, info, warn};
use rusqlite::Connection;

use super::apply::{apply_one, Known};
use super::failure::{fail_stop, failed, is_io_failure, stop_for_good};
use super::ids::{Due, IdReservation};
use super::{Page, Request, StoreTx};
use crate::limits::STORE_BATCH_BYTES;

/// How often stored messages that expired on disk (never paged in) are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How often the writer compares the allocator with the message id reservation (and retries
/// recording one that failed): a load and a compare, which `ids.rs` counts on happening about
/// once a second, with or without traffic.
const RESERVATION_INTERVAL: Duration = Duration::from_secs(1);

/// Longest the writer blocks for a request before it ticks (sweep, reservation) anyway.
const TICK: Duration = Duration::from_secs(1);

/// How often an idle writer checkpoints the log (`Writer::checkpoint_idle`).
const IDLE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

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
    /// The message id reservation to keep ahead of the broker's allocator (`ids.rs`); None in
    /// tests that hand out no ids.
    pub ids: Option<IdReservation>,
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
    /// Set by the lease renewer while it waits for the write lock: the writer lets it go
    /// before starting its next transaction.
    pub renewal_waiting: Arc<std::sync::atomic::AtomicBool>,
}

/// Longest the writer waits for a lease renewal to take the write lock before it writes
/// anyway (a renewer stuck on a broken disk must not stop the writer).
const RENEWAL_YIELD_MAX: Duration = Duration::from_secs(1);

/// Starts the writer thread on `conn`.
pub fn spawn_writer(
    conn: Connection,
    config: WriterConfig,
) -> std::io::Result<(StoreTx, JoinHandle<()>)> {
    start(Writer::new(conn, config))
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
    config: WriterConfig,
    faults: Arc<Faults>,
) -> std::io::Result<(StoreTx, JoinHandle<()>)> {
    let mut writer = Writer::new(conn, config);
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
    config: WriterConfig,
    /// Destinations whose `destinations` row is committed (changed only after a commit).
    known: HashSet<String>,
    /// Why nothing more is written (the lease was lost, or an I/O failure): every later
    /// request is answered with it.
    stopped: Option<String>,
    /// The result code of a checkpoint that failed to write or sync during the last COMMIT
    /// (0: none), set by the WAL hook (`checkpoint.rs`).
    checkpoint_failure: Arc<std::sync::atomic::AtomicI32>,
    #[cfg(test)]
    faults: Arc<Faults>,
}

/// One write transaction, `BEGIN IMMEDIATE` … `COMMIT` through cached statements: rusqlite's
/// `Transaction` runs both through `execute_batch`, which parses them again for every commit
/// (several µs of the writer's time per commit, on a sync producer's critical path:
/// docs/perf/README.md). Rolled back if dropped open, as rusqlite's is.
struct WriteTx<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c mut Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn, open: true })
    }

    fn savepoint(&mut self) -> rusqlite::Result<rusqlite::Savepoint<'_>> {
        self.conn.savepoint()
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// One request of a committed batch: what it read (a page-in), or the error it alone was
/// rolled back for.
type Applied = Result<Option<Page>, String>;

/// How one transaction over a batch ended.
enum Pass {
    /// Committed, with one result per request.
    Committed(Vec<Applied>),
    /// Request `index` failed, and with it the whole transaction (no savepoints).
    RolledBack { index: usize, error: String },
}

impl Writer {
    fn new(conn: Connection, config: WriterConfig) -> Self {
        let mut writer = Writer {
            conn,
            config,
            known: HashSet::new(),
            stopped: None,
            checkpoint_failure: Arc::default(),
            #[cfg(test)]
            faults: Arc::default(),
        };
        checkpoint::take_over(&mut writer.conn, &writer.checkpoint_failure);
        writer
    }

    /// A checkpoint while no request comes: other connections' commits (the lease renewer's,
    /// one a second) grow the log, and nothing else checkpoints it (`store::open`). An I/O
    /// failure stops the writer for good, as in a COMMIT's checkpoint.
    fn checkpoint_idle(&mut self) {
        if self.stopped.is_some() {
            return;
        }
        if let Err(e) = self
            .conn
            .wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)
        {
            if is_io_failure(&e) {
                fail_stop(
                    &mut self.stopped,
                    self.config.fence.as_ref(),
                    "in a checkpoint",
                    &e,
                );
            }
        }
    }

    fn run(mut self, rx: Receiver<Request>) {
        let mut last_sweep = std::time::Instant::now();
        let mut last_reservation = std::time::Instant::now();
        let mut last_checkpoint = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(TICK) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if first.is_none() && last_checkpoint.elapsed() >= IDLE_CHECKPOINT_INTERVAL {
                last_checkpoint = std::time::Instant::now();
                self.checkpoint_idle();
            }
            let mut batch: Vec<Request> = first.into_iter().collect();
            if self.config.sweep_expired && last_sweep.elapsed() >= SWEEP_INTERVAL {
                last_sweep = std::time::Instant::now();
                batch.push(Request::SweepExpired);
            }
            if last_reservation.elapsed() >= RESERVATION_INTERVAL {
                last_reservation = std::time::Instant::now();
                batch.extend(self.reservation_due());
            }
            if batch.is_empty() {
                continue;
            }
            self.fill(&mut batch, &rx);
            self.yield_to_renewal();
            let stop = batch.iter().any(|r| matches!(r, Request::Stop));
            self.process(batch);
            if stop {
                break;
            }
        }
        info!("store writer stopped");
    }

    /// Adds what is queued to `batch`, up to `max_batch` requests or
    /// [`STORE_BATCH_BYTES`] of bodies, so one transaction never holds the write lock long.
    fn fill(&self, batch: &mut Vec<Request>, rx: &Receiver<Request>) {
        let mut bytes: usize = batch.iter().map(Request::bytes).sum();
        while batch.len() < self.config.max_batch && bytes < STORE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.bytes();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
    }

    /// The lease renewer is waiting for SQLite's write lock: let it go first (for up to
    /// [`RENEWAL_YIELD_MAX`]). Otherwise a writer that starts its next transaction as soon as
    /// one commits can keep the lock, and a busy master steps down because its own writes
    /// starved its lease.
    fn yield_to_renewal(&self) {
        let Some(fence) = &self.config.fence else {
            return;
        };
        let until = std::time::Instant::now() + RENEWAL_YIELD_MAX;
        while fence
            .renewal_waiting
            .load(std::sync::atomic::Ordering::SeqCst)
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The message id reservation to record now, if half of the recorded one is used; with a
    /// quarter or less left and none newer recorded, stops the writer for good and steps the
    /// broker down instead, before the allocator can pass what is recorded (`ids.rs`).
    fn reservation_due(&mut self) -> Option<Request> {
        if self.stopped.is_some() {
            return None;
        }
        let reservation = self.config.ids.as_ref()?;
        match reservation.due() {
            Due::Nothing => None,
            Due::Extend(through) => Some(Request::ReserveIds { through }),
            Due::StepDown => {
                let last = reservation.allocator.last();
                let why = match reservation.through >= super::MAX_MESSAGE_ID {
                    true => format!(
                        "message ids are used up (message id {last} handed out, SQLite's \
                         INTEGER ends at {})",
                        super::MAX_MESSAGE_ID
                    ),
                    false => format!(
                        "message id {last} handed out, and ids are recorded as reserved only \
                         through {}: no newer reservation could be recorded, so ids handed out \
                         from now on could be handed out again after a restart; no longer \
                         writing",
                        reservation.through
                    ),
                };
                stop_for_good(&mut self.stopped, self.config.fence.as_ref(), why);
                None
            }
        }
    }

    /// After a batch: a committed [`Request::ReserveIds`] raises the recorded reservation; a
    /// failed one is logged (it is asked for again at the next tick).
    fn note_reservation(&mut self, batch: &[Request], result: &Result<Vec<Applied>, String>) {
        let Some(reservation) = self.config.ids.as_mut() else {
            return;
        };
        for (i, req) in batch.iter().enumerate() {
            let Request::ReserveIds { through } = req else {
                continue;
            };
            let outcome = match result {
                Ok(applied) => applied[i].as_ref().map(|_| ()).map_err(String::as_str),
                Err(e) => Err(e.as_str()),
            };
            match outcome {
                Ok(()) => {
                    reservation.through = reservation.through.max(*through);
                    info!("store: message ids reserved through {through}");
                }
                Err(e) => error!(
                    "store: cannot record the message id reservation through {through}: {e}; \
                     ids are reserved through {} and {} of them are handed out, retrying in \
                     {}s (the broker steps down when a quarter of the reservation is left)",
                    reservation.through,
                    reservation.allocator.last(),
                    RESERVATION_INTERVAL.as_secs()
                ),
            }
        }
    }

    /// Applies one batch, commits it and answers its requests.
    fn process(&mut self, batch: Vec<Request>) {
        let started = std::time::Instant::now();
        let result = self.apply(&batch);
        self.note_reservation(&batch, &result);
        metrics::histogram!("stompbox_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("stompbox_store_batch_requests").record(batch.len() as f64);
        if let Err(e) = &result {
            error!("store: commit of {} requests failed: {e}", batch.len());
        }
        answer(batch, result);
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
        let durability = self.config.durability;
        let skip_fsync = durability == crate::config::Durability::Fsync
            && batch.iter().all(|r| {
                matches!(r, Request::Delete { reply: None, .. })
                    || matches!(
                        r,
                        Request::Redelivered { .. }
                            | Request::Mark { .. }
                            | Request::PageIn { .. }
                            | Request::SweepExpired
                            | Request::Stop
                    )
            });
        // A message id reservation is fsynced whatever the durability: a power loss must not
        // take back a reservation that ids were handed out under (`ids.rs`).
        let reserves = batch
            .iter()
            .any(|r| matches!(r, Request::ReserveIds { .. }));
        let usual = match durability {
            crate::config::Durability::Fsync => "FULL",
            crate::config::Durability::Relaxed => "NORMAL",
        };
        let sync = match (reserves, skip_fsync) {
            (true, _) => "FULL",
            (false, true) => "NORMAL",
            (false, false) => usual,
        };
        let fence = self.config.fence.as_ref();
        if sync != usual {
            self.conn
                .pragma_update(None, "synchronous", sync)
                .map_err(|e| failed(&mut self.stopped, fence, "at PRAGMA synchronous", &e))?;
        }
        let result = self.apply_in_transaction(batch);
        let fence = self.config.fence.as_ref();
        if sync != usual {
            self.conn
                .pragma_update(None, "synchronous", usual)
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
        let mut tx =
            WriteTx::begin(&mut self.conn).map_err(|e| failed(stopped, fence, "at BEGIN", &e))?;
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
        let committed = tx.commit();
        // The checkpoint that COMMIT ran (`checkpoint.rs`) failed to write or sync: the batch is
        // in the log, but the file is no longer trusted, as after any I/O failure.
        if let Some(e) = checkpoint::failed(&self.checkpoint_failure) {
            return Err(fail_stop(
                stopped,
                fence,
                "in the checkpoint after COMMIT",
                &e,
            ));
        }
        committed.map_err(|e| failed(stopped, fence, "at COMMIT", &e))?;
        let Known { added, removed, .. } = known;
        for name in &removed {
            self.known.remove(name);
        }
        self.known.extend(added);
        Ok(Pass::Committed(applied))
    }
}

/// Answers every request of a batch, in arrival order: each with its own result when the
/// batch committed, all with the batch's error when nothing did.
fn answer(batch: Vec<Request>, result: Result<Vec<Applied>, String>) {
    let results: Vec<Result<Option<Page>, Arc<str>>> = match result {
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
        let done = result.as_ref().map(|_| ()).map_err(Arc::clone);
        match req {
            Request::Insert { reply, .. }
            | Request::Move { reply, .. }
            | Request::Commit { reply, .. }
            | Request::Mark { reply, .. }
            | Request::Schedule { reply, .. }
            | Request::Delete {
                reply: Some(reply), ..
            }
            | Request::DurableSubscribe {
                reply: Some(reply), ..
            }
            | Request::RecordDestination {
                reply: Some(reply), ..
            } => reply.send(done),
            // A failed page-in is answered as such (not as "nothing found"), so the queue
            // backs off instead of asking again at once. One that committed read a page.
            Request::PageIn { reply, .. } | Request::Fire { reply, .. } => {
                reply.send(result.map(Option::unwrap_or_default))
            }
            Request::Delete { reply: None, .. }
            | Request::DurableSubscribe { reply: None, .. }
            | Request::DurableUnsubscribe { .. }
            | Request::Redelivered { .. }
            | Request::SweepExpired
            | Request::ReserveIds { .. }
            | Request::Purge { .. }
            | Request::DeleteDestination { .. }
            | Request::RecordDestination { reply: None, .. }
            | Request::Stop => {}
        }
    }
}

/// A request for the log: what it is and which queue it is for.
fn describe(req: &Request) -> String {
    match req {
        Request::Insert { key, message, .. } => {
            format!("insert of message {} into {key}", message.id)
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
        Request::Schedule { pending, .. } => {
            format!("schedule {} of {}", pending.id, pending.destination)
        }
        Request::Fire { schedule, .. } => format!("delivery of schedule {schedule}"),
        Request::Purge { key, .. } => format!("purge of {key}"),
        Request::DeleteDestination { key } => format!("delete of destination {key}"),
        Request::RecordDestination { destination, .. } => format!("record of {destination}"),
        Request::SweepExpired => "expiry sweep".into(),
        Request::ReserveIds { through } => format!("message id reservation through {through}"),
        Request::Stop => "stop".into(),
    }
}

fn now_ms() -> i64 {
    crate::clock::now_ms() as i64
}

mod checkpoint;
#[cfg(test)]
mod tests;
