//! The writer's unit tests: batches driven one by one with `Writer::process`, on an
//! in-memory store (or, with `fault-injection`, a file behind the failing VFS).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};

use bytes::Bytes;
use rusqlite::params;

use super::*;
use crate::message::DestinationName;
use crate::message::{IdAllocator, Message, MessageId, QueueKey};
use crate::store::{IdReservation, Reply};

/// The lease module's check, as a test writes it: the row names `holder` at `epoch`.
fn lease_is(c: &Connection, holder: &str, epoch: i64) -> Result<bool, rusqlite::Error> {
    c.query_row(
        "SELECT holder = ?1 AND epoch = ?2 FROM broker_lease WHERE id = 1",
        rusqlite::params![holder, epoch],
        |r| r.get::<_, Option<bool>>(0),
    )
    .map(|b| b.unwrap_or(false))
}

/// A writer on a fresh in-memory store, driven batch by batch with `process`, and what its
/// requests are answered.
fn writer(fence: Option<Fence>) -> (Writer, Answers) {
    let mut conn = Connection::open_in_memory().unwrap();
    crate::store::migrate(&mut conn).unwrap();
    writer_on(conn, fence)
}

/// A writer on `conn`, as [`writer`].
fn writer_on(conn: Connection, fence: Option<Fence>) -> (Writer, Answers) {
    let config = WriterConfig {
        max_batch: 64,
        sweep_expired: false,
        fence,
        durability: crate::config::Durability::Fsync,
        ids: None,
    };
    (Writer::new(conn, config), Answers::new())
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

fn key(dest: &str) -> QueueKey {
    QueueKey::queue(DestinationName::parse(dest).unwrap())
}

/// Builds requests whose replies record, in the order the writer calls them, what each
/// request was and whether it committed.
struct Answers {
    tx: Sender<(String, bool)>,
    rx: Receiver<(String, bool)>,
}

impl Answers {
    fn new() -> Self {
        let (tx, rx) = channel();
        Answers { tx, rx }
    }

    /// A reply that records `what` and whether its request committed.
    fn reply<T: 'static>(&self, what: String) -> Reply<T> {
        let tx = self.tx.clone();
        Reply::new(move |result: Result<T, Arc<str>>| {
            let _ = tx.send((what, result.is_ok()));
        })
    }

    /// Persist message `id` into queue `dest` (answered as `insert <id>`).
    fn insert(&self, dest: &str, id: u64) -> Request {
        self.insert_message(message(dest, id))
    }

    fn insert_message(&self, message: Arc<Message>) -> Request {
        Request::Insert {
            key: QueueKey::queue(message.destination.clone()),
            reply: self.reply(format!("insert {}", message.id)),
            message,
        }
    }

    /// A COMMIT of persistent sends, each (queue, id) (answered as `commit <ids>`).
    fn commit(&self, sends: &[(&str, u64)]) -> Request {
        let ids: Vec<String> = sends.iter().map(|(_, id)| id.to_string()).collect();
        Request::Commit {
            sends: sends
                .iter()
                .map(|&(dest, id)| (key(dest), message(dest, id)))
                .collect(),
            deletes: Vec::new(),
            reply: self.reply(format!("commit {}", ids.join(" "))),
        }
    }

    /// A page-in of `dest` at priority 4 (answered as `page-in`).
    fn page_in(&self, dest: &str) -> Request {
        Request::PageIn {
            key: key(dest),
            priority: 4,
            after: MessageId(0),
            limit: 10,
            reply: self.reply("page-in".into()),
        }
    }

    /// Every answer since the last call: (what, committed).
    fn take(&self) -> Vec<(String, bool)> {
        self.rx.try_iter().collect()
    }

    /// Whether each request answered since the last call committed.
    fn committed(&self) -> Vec<bool> {
        self.take().into_iter().map(|(_, ok)| ok).collect()
    }
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

/// Pairs as [`rows`] and [`Answers::take`] return them: (destination, id), (what, committed).
fn owned<T: Copy>(v: &[(&str, T)]) -> Vec<(String, T)> {
    v.iter().map(|(s, t)| (s.to_string(), *t)).collect()
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
    let (mut w, a) = writer(None);
    w.process(vec![a.insert("/queue/a", 1)]);
    w.process(vec![
        a.insert("/queue/a", 2),
        // Id 1 is taken: the primary key rejects this COMMIT at its second send, after its
        // first row (id 5) was written, which must be undone with it.
        a.commit(&[("/queue/b", 5), ("/queue/b", 1)]),
        a.commit(&[("/queue/a", 3)]),
        a.insert("/queue/a", 4),
    ]);
    assert_eq!(
        a.take(),
        owned(&[
            ("insert 1", true),
            ("insert 2", true),
            ("commit 5 1", false),
            ("commit 3", true),
            ("insert 4", true),
        ])
    );
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
        renewal_waiting: Arc::default(),
    };
    let (mut w, a) = writer(Some(fence));
    let take = "UPDATE broker_lease SET holder = ?1, epoch = ?2 WHERE id = 1";
    w.conn.execute(take, params!["me", 3]).unwrap();
    w.process(vec![a.insert("/queue/a", 1)]);
    w.conn.execute(take, params!["other", 4]).unwrap();
    // A batch with a failing request is retried without it; not when the lease is gone.
    w.process(vec![a.insert("/queue/a", 2), a.insert("/queue/a", 1)]);
    w.process(vec![a.insert("/queue/a", 3)]);
    assert_eq!(
        a.take(),
        owned(&[
            ("insert 1", true),
            ("insert 2", false),
            ("insert 1", false),
            ("insert 3", false),
        ])
    );
    assert!(stepped_down.load(Ordering::SeqCst));
    assert_eq!(rows(&w), owned(&[("/queue/a", 1)]));
}

#[test]
fn a_failed_fsync_stops_the_writer_for_good_and_steps_down() {
    let (fence, failed) = failure_fence();
    let (mut w, a) = writer(Some(fence));
    take_lease(&w);
    w.process(vec![a.insert("/queue/a", 1)]);
    w.faults.fail_commit.store(true, Ordering::SeqCst);
    w.process(vec![a.insert("/queue/a", 2)]);
    // The fault is gone, but after a failed fsync nothing may be written through this
    // connection again (a retry could "succeed" on pages the OS already dropped).
    w.faults.fail_commit.store(false, Ordering::SeqCst);
    w.process(vec![a.insert("/queue/a", 3)]);
    assert_eq!(a.committed(), [true, false, false]);
    let why = failed.lock().unwrap().clone().expect("the broker was told");
    assert!(why.contains("injected fsync failure"), "{why}");
    assert_eq!(rows(&w), owned(&[("/queue/a", 1)]));
}

#[test]
fn a_rolled_back_insert_does_not_hide_its_destination_from_later_ones() {
    let (mut w, a) = writer(None);
    w.process(vec![a.insert("/queue/old", 1)]);
    // Fails (id 1 is taken) after recording /queue/new in `destinations`; rolled back.
    w.process(vec![a.insert("/queue/new", 1)]);
    w.process(vec![a.insert("/queue/new", 2)]);
    assert_eq!(a.committed(), [true, false, true]);
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
        renewal_waiting: Arc::default(),
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
    let (mut w, a) = writer(Some(fence));
    take_lease(&w);
    w.process(vec![a.insert("/queue/a", 1)]);
    w.faults.fail_write.store(true, Ordering::SeqCst);
    w.process(vec![a.insert("/queue/a", 2), a.insert("/queue/b", 3)]);
    // A write failed: the batch is not applied again request by request on this
    // connection, and nothing is written through it any more, fault or not.
    w.faults.fail_write.store(false, Ordering::SeqCst);
    w.process(vec![a.insert("/queue/a", 4)]);
    assert_eq!(a.committed(), [true, false, false, false]);
    let why = failed.lock().unwrap().clone().expect("the broker was told");
    assert!(why.contains("while applying the insert"), "{why}");
    assert!(why.contains("injected write failure"), "{why}");
    assert_eq!(rows(&w), owned(&[("/queue/a", 1)]));
}

#[test]
fn a_failed_read_fails_its_request_and_the_writer_goes_on() {
    let (fence, failed) = failure_fence();
    let (mut w, a) = writer(Some(fence));
    take_lease(&w);
    w.faults.fail_page_in.store(true, Ordering::SeqCst);
    w.process(vec![a.insert("/queue/a", 1), a.page_in("/queue/a")]);
    w.process(vec![a.insert("/queue/a", 2)]);
    assert_eq!(
        a.take(),
        owned(&[("insert 1", true), ("page-in", false), ("insert 2", true)])
    );
    assert_eq!(*failed.lock().unwrap(), None);
    assert_eq!(rows(&w), owned(&[("/queue/a", 1), ("/queue/a", 2)]));
}

const R: u64 = crate::limits::MESSAGE_ID_RESERVATION;

/// Makes `w` keep message ids reserved ahead of an allocator that handed out ids up to
/// `last`, with `through` recorded.
fn keep_ids(w: &mut Writer, last: u64, through: u64) {
    w.config.ids = Some(IdReservation {
        allocator: Arc::new(IdAllocator::new(last)),
        through,
    });
}

#[test]
fn the_next_id_reservation_is_recorded_once_half_of_the_last_is_used() {
    let (mut w, a) = writer(None);
    let through = 5 * R;
    keep_ids(&mut w, through - R / 2 - 1, through);
    assert!(w.reservation_due().is_none(), "more than half is left");
    keep_ids(&mut w, through - R / 2, through);
    let req = w.reservation_due().expect("half is used");
    assert!(
        matches!(req, Request::ReserveIds { through: t } if t == through + R / 2),
        "{req:?}"
    );
    w.process(vec![req, a.insert("/queue/a", 1)]);
    assert_eq!(a.committed(), [true]);
    assert_eq!(crate::store::reserved(&w.conn).unwrap(), through + R / 2);
    assert_eq!(w.config.ids.as_ref().unwrap().through, through + R / 2);
    assert!(
        w.reservation_due().is_none(),
        "recorded: nothing more to do"
    );
}

#[test]
fn an_unrecorded_id_reservation_is_retried_then_the_broker_steps_down_before_reaching_it() {
    let (fence, failed) = failure_fence();
    let (mut w, a) = writer(Some(fence));
    take_lease(&w);
    let through = 5 * R;
    keep_ids(&mut w, through - R / 2, through);
    // Recording it fails (not an I/O failure): its request alone is rolled back.
    w.conn.execute("DROP TABLE message_ids", []).unwrap();
    let req = w.reservation_due().expect("half is used");
    w.process(vec![req, a.insert("/queue/a", 1)]);
    assert_eq!(a.committed(), [true], "the rest of the batch commits");
    assert_eq!(w.config.ids.as_ref().unwrap().through, through);
    assert!(failed.lock().unwrap().is_none());
    assert!(
        w.reservation_due().is_some(),
        "asked for again at the next tick"
    );
    // Still unrecorded with a quarter left: the writer stops, the broker is told.
    keep_ids(&mut w, through - R / 4, through);
    assert!(w.reservation_due().is_none());
    let why = failed.lock().unwrap().clone().expect("the broker was told");
    assert!(
        why.contains(&format!("reserved only through {through}")),
        "{why}"
    );
    w.process(vec![a.insert("/queue/a", 2)]);
    assert_eq!(a.committed(), [false], "no longer writing");
    assert!(w.reservation_due().is_none(), "told once");
}

/// A running writer thread on a new store file in `dir` (returned as its path).
fn spawn_file_writer(
    dir: &std::path::Path,
    ids: Option<IdReservation>,
) -> (std::path::PathBuf, StoreTx, std::thread::JoinHandle<()>) {
    let path = dir.join(crate::config::DB_FILE);
    let conn = crate::store::open(&path, crate::config::Durability::Fsync).unwrap();
    let config = WriterConfig {
        max_batch: 64,
        sweep_expired: false,
        fence: None,
        durability: crate::config::Durability::Fsync,
        ids,
    };
    let (tx, handle) = spawn_writer(conn, config).unwrap();
    (path, tx, handle)
}

/// A writer with nothing to do still ticks: a broker that carries only non-persistent
/// messages (no store request at all) keeps its reservation ahead.
#[test]
fn an_idle_writer_moves_the_id_reservation_ahead_on_its_tick() {
    let dir = tempfile::tempdir().unwrap();
    // Half of the reservation is handed out (to non-persistent messages: nothing stored).
    let ids = IdReservation {
        allocator: Arc::new(IdAllocator::new(R / 2)),
        through: R,
    };
    let (path, tx, handle) = spawn_file_writer(dir.path(), Some(ids));
    let reader = Connection::open(&path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while crate::store::reserved(&reader).unwrap() != R / 2 + R {
        assert!(
            std::time::Instant::now() < deadline,
            "no new reservation recorded by an idle writer"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tx.send(Request::Stop).unwrap();
    handle.join().unwrap();
}

/// Other connections do not checkpoint (`store::open`): an idle writer checkpoints what they
/// committed (the lease renewer's, one commit a second), so the log does not grow while no
/// message comes.
#[test]
fn an_idle_writer_checkpoints_what_other_connections_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tx, handle) = spawn_file_writer(dir.path(), None);
    let other = crate::store::open(&path, crate::config::Durability::Fsync).unwrap();
    other
        .execute(
            "INSERT INTO messages (message_id, destination, created_at, body)
             VALUES (1, '/queue/other', 0, zeroblob(1048576))",
            [],
        )
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::metadata(&path).unwrap().len() < 1 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was never checkpointed into the database file"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tx.send(Request::Stop).unwrap();
    handle.join().unwrap();
}

/// With the fault-injection VFS: SQLite itself meets the failed system call, so these
/// check what SQLite does with it (the error code, the rollback) and what the writer does
/// with that.
#[cfg(feature = "fault-injection")]
mod real_sqlite {
    use super::*;
    use crate::store::faults::{CHECKPOINT_TRIGGER, FSYNC_TRIGGER, WRITE_TRIGGER};

    type Failed = Arc<std::sync::Mutex<Option<String>>>;

    /// A writer on a file in `dir`, opened through the fault-injection VFS.
    fn file_writer(dir: &std::path::Path) -> (Writer, Answers, Failed) {
        let path = dir.join(crate::config::DB_FILE);
        let conn = crate::store::open_writer(&path, crate::config::Durability::Fsync).unwrap();
        let (fence, failed) = failure_fence();
        let (w, a) = writer_on(conn, Some(fence));
        take_lease(&w);
        (w, a, failed)
    }

    /// Persist an 8 MiB message `id` into `dest`.
    fn big(a: &Answers, dest: &str, id: u64) -> Request {
        let mut m = (*message(dest, id)).clone();
        m.body = Bytes::from(vec![b'x'; 8 << 20]);
        a.insert_message(Arc::new(m))
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
        let (mut w, a, failed) = file_writer(dir.path());
        w.process(vec![a.insert("/queue/a", 1)]);
        std::fs::write(dir.path().join(FSYNC_TRIGGER), b"").unwrap();
        w.process(vec![a.insert("/queue/a", 2)]);
        assert!(!dir.path().join(FSYNC_TRIGGER).exists(), "the fault fired");
        // The next fsync would succeed; the writer must not use it.
        w.process(vec![a.insert("/queue/a", 3)]);
        assert_eq!(a.committed(), [true, false, false]);
        let why = failed.lock().unwrap().clone().expect("the broker was told");
        assert!(why.contains("at COMMIT"), "{why}");
        assert_eq!(rows_on_disk(dir.path()), owned(&[("/queue/a", 1)]));
    }

    /// SQLite's automatic checkpoint ignores a failed fsync of the database file; the
    /// writer's own checkpoint (same point, inside the COMMIT that takes the log past 1,000
    /// pages) stops the writer for good, as any failed write or fsync does.
    #[test]
    fn a_failed_fsync_in_a_checkpoint_is_fail_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, a, failed) = file_writer(dir.path());
        w.process(vec![a.insert("/queue/a", 1)]);
        std::fs::write(dir.path().join(CHECKPOINT_TRIGGER), b"").unwrap();
        // 8 MiB are some 2,000 log pages: this commit checkpoints.
        w.process(vec![big(&a, "/queue/a", 2)]);
        assert!(
            !dir.path().join(CHECKPOINT_TRIGGER).exists(),
            "the fault fired"
        );
        w.process(vec![a.insert("/queue/a", 3)]);
        assert_eq!(a.committed(), [true, false, false]);
        let why = failed.lock().unwrap().clone().expect("the broker was told");
        assert!(why.contains("in the checkpoint after COMMIT"), "{why}");
        assert!(!rows_on_disk(dir.path()).contains(&("/queue/a".into(), 3)));
    }

    /// The hook that replaces SQLite's automatic checkpoint still checkpoints: the log is
    /// copied into the database file once it passes 1,000 pages.
    #[test]
    fn the_writer_still_checkpoints_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, a, _failed) = file_writer(dir.path());
        w.process(vec![big(&a, "/queue/a", 1)]);
        assert_eq!(a.committed(), [true]);
        let db = std::fs::metadata(dir.path().join(crate::config::DB_FILE)).unwrap();
        assert!(db.len() >= 8 << 20, "database file {} bytes", db.len());
    }

    /// Under `durability = "relaxed"` commits are not fsynced, but a message id reservation
    /// is: a power loss must not take it back once ids were handed out under it.
    #[test]
    fn an_id_reservation_is_fsynced_under_relaxed_durability() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::config::DB_FILE);
        let conn = crate::store::open_writer(&path, crate::config::Durability::Relaxed).unwrap();
        let (fence, failed) = failure_fence();
        let (mut w, a) = writer_on(conn, Some(fence));
        w.config.durability = crate::config::Durability::Relaxed;
        take_lease(&w);
        std::fs::write(dir.path().join(FSYNC_TRIGGER), b"").unwrap();
        w.process(vec![a.insert("/queue/a", 1)]);
        assert!(
            dir.path().join(FSYNC_TRIGGER).exists(),
            "a relaxed commit is not fsynced"
        );
        keep_ids(&mut w, R / 2, R);
        let req = w.reservation_due().expect("half is used");
        w.process(vec![req]);
        assert!(
            !dir.path().join(FSYNC_TRIGGER).exists(),
            "the reservation's commit was fsynced"
        );
        let why = failed
            .lock()
            .unwrap()
            .clone()
            .expect("the failed fsync stops the writer");
        assert!(why.contains("at COMMIT"), "{why}");
        assert_eq!(w.config.ids.as_ref().unwrap().through, R, "not recorded");
    }

    #[test]
    fn a_failed_write_while_a_large_insert_spills_is_fail_stop_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, a, failed) = file_writer(dir.path());
        w.process(vec![a.insert("/queue/a", 1)]);
        // 8 MiB do not fit SQLite's default 2 MB page cache: the insert writes pages to
        // the WAL while it runs, and the first of those writes fails.
        std::fs::write(dir.path().join(WRITE_TRIGGER), b"").unwrap();
        w.process(vec![big(&a, "/queue/a", 2)]);
        assert!(!dir.path().join(WRITE_TRIGGER).exists(), "the fault fired");
        w.process(vec![a.insert("/queue/a", 3)]);
        assert_eq!(a.committed(), [true, false, false]);
        let why = failed.lock().unwrap().clone().expect("the broker was told");
        assert!(why.contains("while applying the insert"), "{why}");
        assert_eq!(rows_on_disk(dir.path()), owned(&[("/queue/a", 1)]));
    }
}

/// A stored schedule of `id` for `dest`, due at `next_at`, with `repeats_left`.
fn schedule(a: &Answers, dest: &str, id: u64, next_at: u64, repeats_left: u64) -> Request {
    let mut m = (*message(dest, id)).clone();
    m.headers = vec![
        ("AMQ_SCHEDULED_DELAY".into(), "10".into()),
        ("timestamp".into(), "1000".into()),
    ];
    let message = Arc::new(m);
    Request::Schedule {
        pending: crate::message::schedule::Pending {
            id: MessageId(id),
            destination: DestinationName::parse(dest).unwrap(),
            next_at,
            period_ms: 100,
            repeats_left,
            message: message.clone(),
        },
        message,
        reply: a.reply(format!("schedule {id}")),
    }
}

/// One delivery of schedule `id` as message `as_id` into `dest`, moving on to `next`.
fn fire(a: &Answers, dest: &str, id: u64, as_id: u64, next: Option<(u64, u64)>) -> Request {
    Request::Fire {
        schedule: MessageId(id),
        now: 5_000,
        id: MessageId(as_id),
        copies: vec![(key(dest), MessageId(as_id))],
        next,
        reply: a.reply(format!("fire {id}")),
    }
}

fn scheduled_rows(w: &Writer) -> Vec<(i64, i64, i64)> {
    let mut stmt = w
        .conn
        .prepare("SELECT message_id, next_delivery_ms, repeats_left FROM scheduled_messages")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_schedule_is_no_message_until_each_delivery_moves_it_on_in_one_transaction() {
    let (mut w, a) = writer(None);
    w.process(vec![schedule(&a, "/queue/s", 1, 2_000, 1)]);
    assert_eq!(a.committed(), [true]);
    assert_eq!(scheduled_rows(&w), [(1, 2_000, 1)]);
    assert!(rows(&w).is_empty(), "not a message before its time");
    assert_eq!(queue_depths(&w), owned(&[("/queue/s", 0)]));

    w.process(vec![fire(&a, "/queue/s", 1, 2, Some((5_100, 0)))]);
    assert_eq!(a.committed(), [true]);
    assert_eq!(rows(&w), owned(&[("/queue/s", 2)]));
    assert_eq!(scheduled_rows(&w), [(1, 5_100, 0)]);
    let headers: String = w
        .conn
        .query_row(
            "SELECT headers FROM messages WHERE message_id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let headers: serde_json::Value = serde_json::from_str(&headers).unwrap();
    assert_eq!(headers["scheduledJobId"], "1");
    assert_eq!(headers["timestamp"], "5000");
    assert!(headers.get("AMQ_SCHEDULED_DELAY").is_none(), "{headers}");

    w.process(vec![fire(&a, "/queue/s", 1, 3, None)]);
    assert_eq!(rows(&w), owned(&[("/queue/s", 2), ("/queue/s", 3)]));
    assert!(
        scheduled_rows(&w).is_empty(),
        "deleted after its last delivery"
    );
    // A schedule that is gone delivers nothing.
    w.process(vec![fire(&a, "/queue/s", 1, 4, None)]);
    assert_eq!(rows(&w).len(), 2);
}

#[test]
fn a_failed_delivery_leaves_neither_the_message_nor_a_moved_schedule() {
    let (mut w, a) = writer(None);
    w.process(vec![schedule(&a, "/queue/s", 1, 2_000, 3)]);
    a.take();
    // Message id 7 exists already: the delivery's insert fails, and with it the whole
    // delivery (its own savepoint), so the schedule stays as it was.
    w.process(vec![a.insert("/queue/other", 7)]);
    w.process(vec![fire(&a, "/queue/s", 1, 7, Some((9_000, 2)))]);
    assert_eq!(a.committed(), [true, false]);
    assert_eq!(rows(&w), owned(&[("/queue/other", 7)]));
    assert_eq!(scheduled_rows(&w), [(1, 2_000, 3)]);
}

#[test]
fn recovery_reads_schedules_and_continues_ids_above_them() {
    let (mut w, a) = writer(None);
    w.process(vec![
        a.insert("/queue/q", 3),
        schedule(&a, "/queue/s", 9, 2_000, 0),
    ]);
    let recovered = crate::store::recover(&w.conn).unwrap();
    assert_eq!(recovered.max_id, 9);
    assert_eq!(recovered.scheduled.len(), 1);
    let p = &recovered.scheduled[0];
    assert_eq!((p.id, p.next_at, p.period_ms), (MessageId(9), 2_000, 100));
    assert_eq!(p.destination.as_str(), "/queue/s");
    assert_eq!(&p.message.body[..], b"body");
    assert!(p.message.persistent);
    assert!(recovered
        .queues
        .iter()
        .all(|(k, _)| k.destination.as_str() != "/queue/s"));
}

/// 50 producers of 10 MiB persistent messages queue a gigabyte at once: one transaction must
/// not write it all while holding SQLite's write lock (the lease renewal needs it too). A
/// batch closes once it holds `STORE_BATCH_BYTES` of bodies; small messages fill it by count.
#[test]
fn a_batch_closes_at_its_byte_bound_however_many_requests_wait() {
    let (w, a) = writer(None);
    let (tx, rx) = channel();
    let big = Bytes::from(vec![7u8; 10 * 1024 * 1024]);
    for id in 1..=50 {
        let m = Arc::new(Message {
            body: big.clone(),
            ..(*message("/queue/big", id)).clone()
        });
        tx.send(Request::Insert {
            key: key("/queue/big"),
            message: m,
            reply: a.reply(id.to_string()),
        })
        .unwrap();
    }
    let first = rx.recv().unwrap();
    let mut batch = vec![first];
    w.fill(&mut batch, &rx);
    // 10 MiB each: the second reaches 20 MiB, past the 16 MiB bound.
    assert_eq!(batch.len(), 2);

    let (tx, rx) = channel();
    for id in 100..200 {
        tx.send(Request::Insert {
            key: key("/queue/small"),
            message: message("/queue/small", id),
            reply: a.reply(id.to_string()),
        })
        .unwrap();
    }
    let mut rest = vec![rx.recv().unwrap()];
    w.fill(&mut rest, &rx);
    assert_eq!(rest.len(), 64, "small ones fill a batch up to max_batch");
}

/// While the lease renewer waits for the write lock, the writer does not start its next
/// transaction: it goes once the renewal is through.
#[test]
fn the_writer_lets_a_waiting_lease_renewal_go_first() {
    let waiting = Arc::new(AtomicBool::new(true));
    let fence = Fence {
        holds: Box::new(|_| Ok(true)),
        epoch: 1,
        on_fenced: Box::new(|_| panic!("not fenced")),
        on_store_failure: Box::new(|_| panic!("no I/O failure expected")),
        renewal_waiting: waiting.clone(),
    };
    let (w, _a) = writer(Some(fence));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let renewer = {
        let (order, waiting) = (order.clone(), waiting.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            order.lock().unwrap().push("renewed");
            waiting.store(false, Ordering::SeqCst);
        })
    };
    w.yield_to_renewal();
    order.lock().unwrap().push("writer");
    renewer.join().unwrap();
    assert_eq!(*order.lock().unwrap(), ["renewed", "writer"]);
}
