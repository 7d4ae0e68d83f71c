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
        ids: None,
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
        audit: None,
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

/// An owner of one shard with `config`, no store, and the mailbox its advisories are posted to
/// (a session elsewhere listens to advisories).
fn owner_with(config: DestinationConfig) -> (Owner, tokio::sync::mpsc::UnboundedReceiver<ToOwner>) {
    owner_listened(config, 1)
}

/// [`owner_with`], with `listeners` subscriptions to advisories on the broker.
fn owner_listened(
    config: DestinationConfig,
    listeners: usize,
) -> (Owner, tokio::sync::mpsc::UnboundedReceiver<ToOwner>) {
    let (owner_tx, mailbox) = unbounded_channel();
    let ctx = Ctx::new(
        0,
        Arc::new(Router::new(vec![owner_tx])),
        None,
        Arc::new(IdAllocator::new(0)),
        Arc::new(config),
        crate::destination::Accounts {
            advisory_listeners: Arc::new(std::sync::atomic::AtomicUsize::new(listeners)),
            ..Default::default()
        },
    );
    (Owner::new(ctx), mailbox)
}

/// While nobody subscribes to advisories, none is built: one-off destinations cost no
/// advisory messages.
#[test]
fn no_advisory_is_built_while_nobody_listens() {
    let (mut owner, mut mailbox) = owner_listened(idle_config(60_000, 2), 0);
    let (session, _rx) = hello(&mut owner, 1);
    for i in 0..10 {
        send_to(&mut owner, session, &format!("/topic/once{i}"));
        send_to(&mut owner, session, &format!("/queue/once{i}"));
    }
    assert!(destination_advisories(&mut mailbox).is_empty());
    assert!(mailbox.try_recv().is_err(), "nothing was posted");
}

fn idle_config(idle_timeout_ms: u64, max_idle_destinations: usize) -> DestinationConfig {
    DestinationConfig {
        idle_timeout_ms,
        max_idle_destinations,
        ..DestinationConfig::default()
    }
}

/// A session of `owner`, and its mailbox.
fn hello(
    owner: &mut Owner,
    n: u64,
) -> (SessionId, tokio::sync::mpsc::UnboundedReceiver<ToSession>) {
    let (tx, rx) = unbounded_channel();
    let session = SessionId(n);
    owner.handle(ToOwner::Hello { session, tx });
    (session, rx)
}

/// An empty non-persistent message to `destination`, with the owner's next id.
pub(super) fn plain_message(owner: &Owner, destination: &str) -> Arc<Message> {
    Arc::new(Message {
        id: owner.ctx.ids.next(),
        destination: DestinationName::parse(destination).unwrap(),
        headers: Vec::new(),
        body: Default::default(),
        priority: 4,
        persistent: false,
        expires: 0,
    })
}

fn send_to(owner: &mut Owner, session: SessionId, destination: &str) {
    let message = plain_message(owner, destination);
    owner.handle(ToOwner::Send {
        session,
        message,
        token: None,
    });
}

fn subscribe_to(owner: &mut Owner, session: SessionId, sub: u32, destination: &str) {
    owner.handle(ToOwner::Subscribe {
        session,
        sub: SubId(sub),
        destination: DestinationName::parse(destination).unwrap(),
        options: ConsumerOptions::new(AckMode::Auto, 100),
        durable: None,
        token: None,
    });
}

fn unsubscribe_from(owner: &mut Owner, session: SessionId, sub: u32, destination: &str) {
    owner.handle(ToOwner::Unsubscribe {
        session,
        sub: Some(SubId(sub)),
        destination: DestinationName::parse(destination).unwrap(),
        destroy: None,
        token: None,
    });
}

/// ACKs what `rx` has been handed for subscription `sub` (an auto-ack session does that once
/// the MESSAGE is written).
fn ack_delivered(
    owner: &mut Owner,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<ToSession>,
    session: SessionId,
    sub: u32,
) {
    while let Ok(answer) = rx.try_recv() {
        if let ToSession::Deliver { message, .. } = answer {
            owner.handle(ToOwner::Ack {
                session,
                sub: SubId(sub),
                ids: vec![message.id],
                token: None,
            });
        }
    }
}

/// What the admin API lists: destination → stats.
fn listed(
    owner: &mut Owner,
) -> std::collections::BTreeMap<String, crate::message::DestinationStats> {
    let (reply, mut rx) = tokio::sync::oneshot::channel();
    owner.inspect(crate::message::Inspect::Stats { reply });
    let stats = rx.try_recv().expect("answered at once");
    stats
        .into_iter()
        .map(|s| (s.destination.clone(), s))
        .collect()
}

/// The destination advisories posted so far: (event, destination, reason).
fn destination_advisories(
    mailbox: &mut tokio::sync::mpsc::UnboundedReceiver<ToOwner>,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    while let Ok(cmd) = mailbox.try_recv() {
        let ToOwner::Publish { message } = cmd else {
            continue;
        };
        let kind = message.destination.name().to_string();
        if ![
            "ActiveMQ.Advisory.Queue",
            "ActiveMQ.Advisory.Topic",
            "ActiveMQ.Advisory.TempQueue",
            "ActiveMQ.Advisory.TempTopic",
        ]
        .contains(&kind.as_str())
        {
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
        out.push((
            body["event"].as_str().unwrap().to_string(),
            body["destination"].as_str().unwrap().to_string(),
            body["reason"].as_str().unwrap_or_default().to_string(),
        ));
    }
    out
}

/// A queue that drained and lost its consumer is no longer held (no buffers, no consumers),
/// but it is listed with its counters until it has been idle for `idle_timeout_ms`; used
/// again in between, it carries on counting.
#[test]
fn an_emptied_queue_stays_listed_with_its_counters_until_idle_past_the_timeout() {
    let (mut owner, _mailbox) = owner_with(idle_config(60_000, 100));
    let (session, mut rx) = hello(&mut owner, 1);
    send_to(&mut owner, session, "/queue/kept");
    send_to(&mut owner, session, "/queue/kept");
    subscribe_to(&mut owner, session, 1, "/queue/kept");
    ack_delivered(&mut owner, &mut rx, session, 1);
    unsubscribe_from(&mut owner, session, 1, "/queue/kept");
    let key = QueueKey::queue(DestinationName::parse("/queue/kept").unwrap());
    assert!(!owner.queues.contains_key(&key), "no longer held");
    let row = &listed(&mut owner)["/queue/kept"];
    assert_eq!((row.kind, row.depth, row.consumers), ("queue", 0, 0));
    assert_eq!((row.counters.enqueued, row.counters.acked), (2, 2));

    // Used again: the same counters go on.
    send_to(&mut owner, session, "/queue/kept");
    assert_eq!(listed(&mut owner)["/queue/kept"].counters.enqueued, 3);
    subscribe_to(&mut owner, session, 2, "/queue/kept");
    ack_delivered(&mut owner, &mut rx, session, 2);
    unsubscribe_from(&mut owner, session, 2, "/queue/kept");

    let now = Instant::now();
    owner.sweep_idle(now);
    assert_eq!(listed(&mut owner)["/queue/kept"].counters.acked, 3);
    owner.sweep_idle(now + Duration::from_millis(60_001));
    assert!(!listed(&mut owner).contains_key("/queue/kept"));
    // Created again after that: its counters start from zero.
    send_to(&mut owner, session, "/queue/kept");
    assert_eq!(listed(&mut owner)["/queue/kept"].counters.enqueued, 1);
}

/// Beyond `max_idle_destinations` the longest idle are forgotten first, so one-off names
/// cannot grow the shard; `idle_timeout_ms = 0` forgets at once, as before.
#[test]
fn the_longest_idle_destinations_are_forgotten_beyond_max_idle_destinations() {
    let (mut owner, mut mailbox) = owner_with(idle_config(60_000, 3));
    let (session, _rx) = hello(&mut owner, 1);
    for i in 0..1000 {
        let q = format!("/queue/once{i}");
        subscribe_to(&mut owner, session, 1, &q);
        unsubscribe_from(&mut owner, session, 1, &q);
    }
    let names: Vec<String> = listed(&mut owner).into_keys().collect();
    assert_eq!(
        names,
        ["/queue/once997", "/queue/once998", "/queue/once999"]
    );
    assert!(owner.queues.is_empty());
    let advisories = destination_advisories(&mut mailbox);
    let removed: Vec<_> = advisories
        .iter()
        .filter(|(e, _, _)| e == "destination-removed")
        .collect();
    assert_eq!(removed.len(), 997);
    assert_eq!(removed[0].1, "/queue/once0");
    assert_eq!(removed[0].2, "idle");

    let (mut owner, _mailbox) = owner_with(idle_config(0, 3));
    let (session, _rx) = hello(&mut owner, 1);
    subscribe_to(&mut owner, session, 1, "/queue/gone");
    unsubscribe_from(&mut owner, session, 1, "/queue/gone");
    assert!(listed(&mut owner).is_empty());
}

/// A topic published to without subscribers is listed while idle, counting what was sent;
/// one whose subscribers left stays listed with its counters.
#[test]
fn a_topic_is_listed_while_idle_with_its_counters() {
    let (mut owner, mut mailbox) = owner_with(idle_config(60_000, 100));
    let (session, _rx) = hello(&mut owner, 1);
    send_to(&mut owner, session, "/topic/nobody");
    send_to(&mut owner, session, "/topic/nobody");
    subscribe_to(&mut owner, session, 1, "/topic/nobody");
    send_to(&mut owner, session, "/topic/nobody");
    unsubscribe_from(&mut owner, session, 1, "/topic/nobody");
    let row = &listed(&mut owner)["/topic/nobody"];
    assert_eq!((row.kind, row.consumers), ("topic", 0));
    assert_eq!(row.counters.enqueued, 3);
    assert!(owner.topics.is_empty());
    // Announced once, when first used; not when its subscriber came and went.
    assert_eq!(
        destination_advisories(&mut mailbox),
        [(
            "destination-added".to_string(),
            "/topic/nobody".to_string(),
            String::new()
        )]
    );
}

/// Destination advisories: a queue is announced when created and when deleted by an operator
/// (at once, though kept idle); nothing is announced about advisory topics.
#[test]
fn destination_advisories_announce_creation_and_deletion() {
    let (mut owner, mut mailbox) = owner_with(idle_config(60_000, 100));
    let (session, mut rx) = hello(&mut owner, 1);
    send_to(&mut owner, session, "/queue/announced");
    subscribe_to(&mut owner, session, 1, "/queue/announced");
    ack_delivered(&mut owner, &mut rx, session, 1);
    unsubscribe_from(&mut owner, session, 1, "/queue/announced");
    subscribe_to(&mut owner, session, 2, "/topic/ActiveMQ.Advisory.Queue");
    let (reply, mut rx) = tokio::sync::oneshot::channel();
    owner.inspect(crate::message::Inspect::Delete {
        key: QueueKey::queue(DestinationName::parse("/queue/announced").unwrap()),
        reply,
    });
    assert_eq!(rx.try_recv().unwrap(), Ok(0));
    assert!(!listed(&mut owner).contains_key("/queue/announced"));
    let e = |event: &str, reason: &str| {
        (
            event.to_string(),
            "/queue/announced".to_string(),
            reason.to_string(),
        )
    };
    assert_eq!(
        destination_advisories(&mut mailbox),
        [
            e("destination-added", ""),
            e("destination-removed", "deleted")
        ]
    );
}

/// A wildcard subscription to queues (client-individual, a selector, a prefetch of 100)
/// receives every persistent message of a queue that is emptied by its ACKs (so forgotten as
/// idle) and re-created by the next message, however the store's replies, the SENDs and the
/// ACKs interleave: 40 seeded interleavings of SENDs, store replies (Stored, Marked), ACKs,
/// batch flushes and ticks, with the SUBSCRIBE before, among or after the SENDs (the bridge
/// of a network connector subscribes like this).
#[test]
fn a_wildcard_subscription_gets_every_persistent_message_of_a_queue_forgotten_between_them() {
    const TOTAL: usize = 50;
    for seed in 1..=40u64 {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        let (owner_tx, mut mailbox) = unbounded_channel();
        let router = Arc::new(Router::new(vec![owner_tx]));
        let config = WriterConfig {
            max_batch: 64,
            sweep_expired: false,
            fence: None,
            durability: Durability::Fsync,
            ids: None,
        };
        let (writer_tx, writer) =
            spawn_writer_with_faults(conn, config, Arc::new(Faults::default())).unwrap();
        let (store, requests) = std::sync::mpsc::channel::<Request>();
        let forward = std::thread::spawn(move || {
            for r in requests {
                let _ = writer_tx.send(r);
            }
            let _ = writer_tx.send(Request::Stop);
        });
        let ctx = Ctx::new(
            0,
            router,
            Some(store),
            Arc::new(IdAllocator::new(0)),
            Arc::new(DestinationConfig::default()),
            Default::default(),
        );
        let mut owner = Owner::new(ctx);
        let (session, mut rx) = hello(&mut owner, 1);
        let (producer, _prx) = hello(&mut owner, 2);
        let selector = crate::selector::Selector::parse(
            "\"stompbox-broker-path\" IS NULL OR (\"stompbox-broker-path\" NOT LIKE '%')",
        )
        .unwrap();
        let mut options = ConsumerOptions::new(AckMode::ClientIndividual, 100);
        options.selector = Some(Arc::new(selector));
        let mut options = Some(options);
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut sent, mut got) = (0, Vec::new());
        let mut held = std::collections::VecDeque::new();
        let subscribe_at = (seed as usize * 7) % (TOTAL + 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < TOTAL && Instant::now() < deadline {
            if sent >= subscribe_at {
                if let Some(options) = options.take() {
                    owner.handle(ToOwner::Subscribe {
                        session,
                        sub: SubId(1),
                        destination: DestinationName::parse("/queue/orders.>").unwrap(),
                        options,
                        durable: None,
                        token: None,
                    });
                }
            }
            match next() % 7 {
                6 => owner.tick(),
                0 | 1 if sent < TOTAL => {
                    let message = Arc::new(Message {
                        id: owner.ctx.ids.next(),
                        destination: DestinationName::parse("/queue/orders.eu").unwrap(),
                        headers: Vec::new(),
                        body: Default::default(),
                        priority: 4,
                        persistent: true,
                        expires: 0,
                    });
                    owner.handle(ToOwner::Send {
                        session: producer,
                        message,
                        token: None,
                    });
                    sent += 1;
                }
                2 => {
                    if let Ok(cmd) = mailbox.try_recv() {
                        owner.handle(cmd);
                    }
                }
                3 => {
                    if let Some(id) = held.pop_front() {
                        owner.handle(ToOwner::Ack {
                            session,
                            sub: SubId(1),
                            ids: vec![id],
                            token: None,
                        });
                    }
                }
                4 => owner.ctx.flush(),
                _ => std::thread::sleep(Duration::from_micros(next() % 300)),
            }
            while let Ok(answer) = rx.try_recv() {
                if let ToSession::Deliver { message, .. } = answer {
                    got.push(message.id);
                    held.push_back(message.id);
                }
            }
        }
        assert_eq!(
            got.len(),
            TOTAL,
            "seed {seed}: {} of {TOTAL} delivered; queues {:?}",
            got.len(),
            owner.queues.keys().collect::<Vec<_>>(),
        );
        drop(owner);
        forward.join().unwrap();
        writer.join().unwrap();
    }
}

/// A declared queue that comes back from the store at start is listed once, as the queue it
/// is (its stored messages counted), not also as an empty idle one.
#[test]
fn a_declared_queue_recovered_with_stored_messages_is_listed_once() {
    let (mut owner, _mailbox) = owner_with(DestinationConfig {
        declared: vec!["/queue/kept".into()],
        ..idle_config(60_000, 100)
    });
    let key = QueueKey::queue(DestinationName::parse("/queue/kept").unwrap());
    let mut counts = [0; 10];
    counts[4] = 3;
    owner.handle(ToOwner::Recover {
        queues: vec![(key.clone(), counts)],
        durables: Vec::new(),
        audit: None,
    });
    let (reply, mut rx) = tokio::sync::oneshot::channel();
    owner.inspect(crate::message::Inspect::Stats { reply });
    let rows: Vec<_> = rx
        .try_recv()
        .unwrap()
        .into_iter()
        .filter(|s| s.destination == "/queue/kept")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(owner.exists(&key.destination));
}
