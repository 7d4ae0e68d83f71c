//! The owner loop's own tests (destinations have theirs in `destination/`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::mpsc::unbounded_channel;

use super::*;
use crate::config::DestinationConfig;
use crate::config::Durability;
use crate::message::AckMode;
use crate::message::{IdAllocator, Router};
use crate::store::{spawn_writer_with_faults, Faults, Request, WriterConfig};

/// A store whose page-ins fail at first must be asked again only a few times (not in a
/// loop as fast as the writer answers), and must deliver once it works again.
#[test]
fn a_failing_page_in_is_retried_with_backoff_and_delivers_once_the_store_recovers() {
    const STORED: u64 = 5;
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    crate::store::migrate(&mut conn).unwrap();
    for id in 1..=STORED {
        conn.execute(
            "INSERT INTO messages (message_id, destination, created_at, body)
             VALUES (?1, '/queue/paged', 0, x'2a')",
            [id as i64],
        )
        .unwrap();
    }
    let (owner_tx, mut mailbox) = unbounded_channel();
    let router = Arc::new(Router::new(vec![owner_tx]));
    let faults = Arc::new(Faults {
        fail_page_in: AtomicBool::new(true),
        ..Default::default()
    });
    let config = WriterConfig {
        max_batch: 64,
        sweep_expired: false,
        fence: None,
        durability: Durability::Fsync,
    };
    let (writer_tx, writer) = spawn_writer_with_faults(conn, config, faults.clone()).unwrap();
    // Counts the page-ins the queue asks for on their way to the writer.
    let page_ins = Arc::new(AtomicUsize::new(0));
    let (store, requests) = std::sync::mpsc::channel::<Request>();
    let counted = page_ins.clone();
    let forward = std::thread::spawn(move || {
        for r in requests {
            if matches!(r, Request::PageIn { .. }) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            let _ = writer_tx.send(r);
        }
        let _ = writer_tx.send(Request::Stop);
    });
    let ctx = Ctx::new(
        0,
        router,
        Some(store),
        Arc::new(IdAllocator::new(STORED)),
        Arc::new(DestinationConfig::default()),
        Default::default(),
    );
    let mut owner = Owner::new(ctx);
    let queue = DestinationName::parse("/queue/paged").unwrap();
    let mut counts = [0; 10];
    counts[4] = STORED;
    owner.handle(ToOwner::Recover {
        queues: vec![(QueueKey::queue(queue.clone()), counts)],
        durables: Vec::new(),
    });
    let (session_tx, mut session_rx) = unbounded_channel();
    let session = SessionId(1);
    owner.handle(ToOwner::Hello {
        session,
        tx: session_tx,
    });
    owner.handle(ToOwner::Subscribe {
        session,
        sub: SubId(1),
        destination: queue,
        options: ConsumerOptions::new(AckMode::Auto, 100),
        durable: None,
        token: None,
    });
    let mut delivered = Vec::new();
    // One round of the owner loop.
    let mut pump = |owner: &mut Owner, delivered: &mut Vec<u64>| {
        while let Ok(cmd) = mailbox.try_recv() {
            owner.handle(cmd);
        }
        owner.tick();
        std::thread::sleep(Duration::from_millis(1));
        while let Ok(answer) = session_rx.try_recv() {
            if let ToSession::Deliver { message, .. } = answer {
                delivered.push(message.id.0);
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while page_ins.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        pump(&mut owner, &mut delivered);
    }

    // Long enough for hundreds of attempts if the queue asked again at once; with the
    // backoff there is room for three at most (after 0, 100 and 300 ms).
    let window = Instant::now() + Duration::from_millis(300);
    while Instant::now() < window {
        pump(&mut owner, &mut delivered);
    }
    let attempts = page_ins.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&attempts),
        "{attempts} page-ins while the store failed"
    );
    assert!(delivered.is_empty());

    faults.fail_page_in.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered.len() < STORED as usize && Instant::now() < deadline {
        pump(&mut owner, &mut delivered);
    }
    assert_eq!(delivered, (1..=STORED).collect::<Vec<_>>());

    drop(owner);
    forward.join().unwrap();
    writer.join().unwrap();
}
