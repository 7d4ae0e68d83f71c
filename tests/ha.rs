//! High availability, end to end: master/slave pairs of real `stompbox serve` processes on
//! one data dir (docs/ha.md), killed, stopped and signalled, with failover clients, the store
//! checked with SQLite, and HAProxy in front (installed by `make ha-deps`).
//!
//! Each test holds `serial()`: they start several processes each and some measure failover
//! time, which two shared cores cannot do fairly while other HA tests run beside them.
//! `failover_timing` is ignored by default; run it with
//! `cargo test --release --test ha -- --ignored failover_timing --nocapture`, and ActiveMQ's
//! shared-store pair the same way with `python3 tests/ha_support/activemq_failover.py`.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::failover::{
    assert_all_consumed, first_connect_after, spawn_consumer, spawn_producer, FailoverClient,
};
use support::haproxy::Haproxy;
use support::net::refuses;
use support::pair::{admin_json, health, serial, Pair, WAIT};
use support::store::count;
use support::{connect_frame, eventually, send_frame, Client, Frame, ReadError};

/// Default lease timing (config `lease`): a kill -9 must be served within ttl + acquire.
const DEFAULT_TTL_PLUS_ACQUIRE: Duration = Duration::from_millis(5_000 + 500);

/// Small lease timing for the SIGSTOP test, so the TTL path takes about two seconds.
const SHORT_LEASE: &str =
    "[lease]\nrenew_interval_ms = 300\nttl_ms = 1500\nacquire_interval_ms = 200\n";

#[test]
fn two_brokers_on_one_store_exactly_one_serves() {
    let _serial = serial();
    let mut pair = Pair::start(None);
    let [a, b] = &mut pair.brokers;

    let ha = health(a.admin_addr()).expect("a /health");
    assert_eq!((ha.status, ha.role()), (200, "master"), "a: {ha:?}");
    assert!(ha.epoch().is_some_and(|e| e >= 1), "a's epoch: {ha:?}");
    let hb = health(b.admin_addr()).expect("b /health");
    assert_eq!((hb.status, hb.role()), (503, "standby"), "b: {hb:?}");

    Client::try_connect(a.addr(), &[], WAIT).expect("CONNECT on the master");
    assert!(
        refuses(b.addr()),
        "the standby's STOMP port {} must refuse connections",
        b.addr()
    );
    assert!(
        !b.lines()
            .iter()
            .any(|l| l.starts_with("stompbox listening")),
        "the standby announced a listener: {:?}",
        b.lines()
    );

    let lease = admin_json(b.admin_addr(), "/api/lease").expect("/api/lease");
    assert_eq!(lease.status, 200, "{lease:?}");
    assert_eq!(
        lease.body["pid"].as_u64(),
        a.pid().map(u64::from),
        "lease row: {:?}",
        lease.body
    );
    assert_eq!(
        lease.body["epoch"].as_u64(),
        ha.epoch(),
        "lease row: {:?}",
        lease.body
    );
}

#[test]
fn two_brokers_started_together_elect_one_master_without_a_takeover() {
    let _serial = serial();
    for round in 1..=12 {
        let pair = Pair::start_together(None);
        // A forced takeover happens at the standby's first lease attempt after it got the
        // file lock: well within a few acquire intervals (500 ms).
        std::thread::sleep(Duration::from_millis(1500));
        let lease = admin_json(pair.brokers[0].admin_addr(), "/api/lease").expect("/api/lease");
        let listening: Vec<usize> = (0..2)
            .filter(|&i| {
                pair.brokers[i]
                    .lines()
                    .iter()
                    .any(|l| l.starts_with("stompbox listening"))
            })
            .collect();
        assert_eq!(
            (lease.body["epoch"].as_u64(), listening.len()),
            (Some(1), 1),
            "round {round}: one election, one master expected; lease {:?}, brokers that listened \
             {listening:?}\n{}\n{}",
            lease.body,
            pair.brokers[0].log_tail(),
            pair.brokers[1].log_tail()
        );
    }
}

#[test]
fn kill9_of_the_master_five_times_loses_no_receipted_message() {
    let _serial = serial();
    let mut pair = Pair::start(None);
    let addrs = pair.stomp_addrs();
    let dest = "/queue/ha.kill9";
    let mut producer = spawn_producer(addrs.clone(), dest);
    let mut consumer = spawn_consumer(addrs, dest);

    let mut master = 0;
    let mut takeovers = Vec::new();
    for round in 1..=5 {
        let before = producer.progress.distinct();
        producer.wait_distinct(before + 30, WAIT, "the producer to get 30 more receipts");
        consumer.wait_distinct(1, WAIT, "the consumer to get a message");

        let standby = 1 - master;
        let killed_at = pair.brokers[master].kill9();
        let took = first_connect_after(pair.brokers[standby].addr(), killed_at, WAIT);
        assert!(
            took < DEFAULT_TTL_PLUS_ACQUIRE,
            "round {round}: standby served {took:?} after kill -9 (> ttl + acquire_interval)"
        );
        pair.brokers[standby].wait_master(WAIT);
        takeovers.push(took);

        // The clients keep working on the new master.
        let after = producer.progress.distinct();
        producer.wait_distinct(
            after + 30,
            WAIT,
            "the producer to get receipts from the new master",
        );

        // The killed broker comes back as the new standby.
        pair.brokers[master].spawn();
        pair.brokers[master].wait_line("stompbox admin", WAIT);
        pair.brokers[master].wait_not_master(WAIT);
        master = standby;
    }

    producer.stop();
    let duplicates = assert_all_consumed(&producer, &consumer, WAIT);
    consumer.stop();
    eprintln!(
        "5 kill -9 failovers: takeovers {takeovers:?}; {} receipted messages all consumed, \
         {duplicates} duplicate deliveries; producer connects {}, consumer connects {}",
        producer.progress.distinct(),
        producer.progress.connects(),
        consumer.progress.connects(),
    );
}

#[test]
fn sigstopped_master_is_fenced_and_its_epoch_never_written_after_takeover() {
    let _serial = serial();
    let mut pair = Pair::start(Some(SHORT_LEASE));
    let old_epoch = health(pair.brokers[0].admin_addr())
        .and_then(|h| h.epoch())
        .expect("a's epoch");
    let dest = "/queue/ha.fence";

    // A producer on the old master, with a few messages stored under its epoch.
    let mut old = Client::try_connect(pair.brokers[0].addr(), &[], WAIT).expect("CONNECT on a");
    for i in 0..5 {
        send_receipted(&mut old, dest, &format!("before-stop-{i}"));
    }

    pair.brokers[0].signal(libc::SIGSTOP);
    let new_health = pair.brokers[1].wait_master(WAIT);
    let new_epoch = new_health.epoch().expect("b's epoch");
    assert!(
        new_epoch > old_epoch,
        "epoch {new_epoch} after takeover from {old_epoch}"
    );
    let lease = admin_json(pair.brokers[1].admin_addr(), "/api/lease").expect("/api/lease");
    let takeover_ms = lease.body["acquired_at"].as_i64().expect("acquired_at");
    assert_eq!(
        lease.body["epoch"].as_u64(),
        Some(new_epoch),
        "{:?}",
        lease.body
    );

    let mut new = Client::try_connect(pair.brokers[1].addr(), &[], WAIT).expect("CONNECT on b");
    for i in 0..5 {
        send_receipted(&mut new, dest, &format!("after-takeover-{i}"));
    }

    // From SIGCONT on, watch the old master's /health and STOMP port closely: it must be
    // seen not serving (503, port refused). (That it then *stays* a standby is
    // `resumed_old_master_stays_standby`.)
    let watch = StepDownWatch::start(
        pair.brokers[0].admin_addr(),
        pair.brokers[0].addr(),
        old_epoch,
    );

    // Sends to the old master: some queued in its socket while it is stopped, some right
    // after it resumes. None may be stored, so none may be receipted.
    for i in 0..5 {
        send_unreceipted(&mut old, dest, i).expect("write while stopped");
    }
    pair.brokers[0].signal(libc::SIGCONT);
    for i in 5..10 {
        if send_unreceipted(&mut old, dest, i).is_err() {
            break;
        }
    }
    let deadline = Instant::now() + WAIT;
    let mut frames = Vec::new();
    let ended = loop {
        match old.try_frame(deadline.saturating_duration_since(Instant::now())) {
            Ok(f) => frames.push(f),
            Err(e) => break e,
        }
    };
    assert_ne!(
        ended,
        ReadError::Timeout,
        "the old master kept the connection open; got {frames:?}"
    );
    let commands: Vec<&str> = frames.iter().map(|f| f.command.as_str()).collect();
    eprintln!("old master after SIGCONT sent {commands:?}, then: {ended:?}");
    let receipts: Vec<_> = frames.iter().filter(|f| f.command == "RECEIPT").collect();
    assert!(
        receipts.is_empty(),
        "the fenced old master receipted sends: {receipts:?}"
    );

    // It steps down: gives up its epoch (/health 503) and closes its STOMP port. A port that
    // was seen reopened (a second listening line) was closed first: that case is the bug
    // `resumed_old_master_stays_standby` shows, not this test's concern.
    let old_master = &mut pair.brokers[0];
    eventually(WAIT, || {
        let relistened = old_master
            .lines()
            .iter()
            .filter(|l| l.starts_with("stompbox listening"))
            .count()
            > 1;
        (watch.gave_up() && (watch.refused() || relistened))
            .then_some(())
            .ok_or("the old master to give up its epoch and close its STOMP port")
    });
    drop(watch);
    assert!(
        pair.brokers[0].is_running(),
        "on_step_down = standby: it should stay up"
    );

    let store = pair.db();
    let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| count(&store, sql, p);
    let stale = count(
        "SELECT count(*) FROM messages WHERE epoch < ?1 AND created_at >= ?2",
        &[&(new_epoch as i64), &takeover_ms],
    );
    assert_eq!(
        stale, 0,
        "rows written after the takeover carry an old epoch"
    );
    let from_old = count(
        "SELECT count(*) FROM messages WHERE CAST(body AS TEXT) LIKE 'old-after-cont-%'",
        &[],
    );
    assert_eq!(
        from_old, 0,
        "the fenced old master stored messages after SIGCONT"
    );
    let with_old = count(
        "SELECT count(*) FROM messages WHERE epoch = ?1",
        &[&(old_epoch as i64)],
    );
    let before = count(
        "SELECT count(*) FROM messages WHERE CAST(body AS TEXT) LIKE 'before-stop-%' AND epoch = ?1",
        &[&(old_epoch as i64)],
    );
    assert_eq!(
        (before, with_old),
        (5, 5),
        "rows of the old epoch: only the 5 sent before SIGSTOP"
    );
    let after = count(
        "SELECT count(*) FROM messages WHERE CAST(body AS TEXT) LIKE 'after-takeover-%' AND epoch = ?1",
        &[&(new_epoch as i64)],
    );
    assert_eq!(after, 5, "the new master's rows carry its epoch");
}

#[test]
fn resumed_old_master_stays_standby() {
    let _serial = serial();
    for round in 1..=12 {
        let mut pair = Pair::start(Some(SHORT_LEASE));
        pair.brokers[0].signal(libc::SIGSTOP);
        let new_epoch = pair.brokers[1]
            .wait_master(WAIT)
            .epoch()
            .expect("b's epoch");
        pair.brokers[0].signal(libc::SIGCONT);
        // Several renewals and acquire intervals: time for a wrong takeover to show.
        std::thread::sleep(Duration::from_millis(1500));
        let a = health(pair.brokers[0].admin_addr()).expect("a /health");
        let lease = admin_json(pair.brokers[1].admin_addr(), "/api/lease").expect("/api/lease");
        assert_eq!(
            (
                a.status,
                a.role(),
                lease.body["epoch"].as_u64(),
                refuses(pair.brokers[0].addr())
            ),
            (503, "standby", Some(new_epoch), true),
            "round {round}: the resumed old master must stay a standby and the lease with b; \
             a's /health {a:?}, lease {:?}\n{}\n{}",
            lease.body,
            pair.brokers[0].log_tail(),
            pair.brokers[1].log_tail()
        );
    }
}

/// Watches a broker's `/health` and STOMP port from a thread, every few milliseconds, and
/// remembers whether it saw it give up `epoch` (503, or another epoch) and its STOMP port
/// refusing connections.
struct StepDownWatch {
    seen: Arc<[AtomicBool; 2]>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl StepDownWatch {
    fn start(admin: SocketAddr, stomp: SocketAddr, epoch: u64) -> StepDownWatch {
        let seen = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let gave_up =
                    health(admin).is_some_and(|h| h.status == 503 || h.epoch() != Some(epoch));
                if gave_up {
                    seen2[0].store(true, Ordering::SeqCst);
                }
                if refuses(stomp) {
                    seen2[1].store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        StepDownWatch {
            seen,
            stop,
            handle: Some(handle),
        }
    }

    /// Whether it saw the broker give up the epoch.
    fn gave_up(&self) -> bool {
        self.seen[0].load(Ordering::SeqCst)
    }

    /// Whether it saw the STOMP port refuse a connection.
    fn refused(&self) -> bool {
        self.seen[1].load(Ordering::SeqCst)
    }
}

impl Drop for StepDownWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Writes persistent SEND `old-after-cont-{i}` asking for a receipt, without waiting for it.
fn send_unreceipted(c: &mut Client, dest: &str, i: usize) -> std::io::Result<()> {
    let receipt = format!("old-{i}");
    let body = format!("old-after-cont-{i}");
    c.try_send_frame(&send_frame(
        dest,
        &body,
        &[("persistent", "true"), ("receipt", &receipt)],
    ))
}

#[test]
fn acks_that_reach_a_fenced_old_master_do_not_delete_stored_messages() {
    let _serial = serial();
    let mut pair = Pair::start(Some(SHORT_LEASE));
    let dest = "/queue/ha.ack-fence";
    let mut producer =
        Client::try_connect(pair.brokers[0].addr(), &[], WAIT).expect("CONNECT on a");
    for i in 0..3 {
        send_receipted(&mut producer, dest, &format!("{i}"));
    }
    // A consumer on the old master holds the three messages unacknowledged.
    let mut consumer =
        Client::try_connect(pair.brokers[0].addr(), &[], WAIT).expect("CONNECT on a");
    consumer
        .try_send_frame(&Frame::new("SUBSCRIBE").headers(&[
            ("id", "0"),
            ("destination", dest),
            ("ack", "client-individual"),
        ]))
        .expect("SUBSCRIBE");
    let mut acks = Vec::new();
    while acks.len() < 3 {
        let f = consumer.try_frame(WAIT).expect("MESSAGE");
        assert_eq!(f.command, "MESSAGE", "{f:?}");
        acks.push(f.get("ack").expect("ack header").to_string());
    }

    pair.brokers[0].signal(libc::SIGSTOP);
    pair.brokers[1].wait_master(WAIT);
    // The ACKs wait in the stopped master's socket and are read the moment it resumes.
    for ack in &acks {
        let receipt = format!("ack-{ack}");
        consumer
            .try_send_frame(&Frame::new("ACK").headers(&[("id", ack), ("receipt", &receipt)]))
            .expect("ACK");
    }
    pair.brokers[0].signal(libc::SIGCONT);
    // Acks are batched (DESIGN.md: a crash can redeliver an acked message), so their
    // RECEIPTs do not wait for the commit and may come even now; what matters is that the
    // fenced deletes are rolled back. Read until the old master closes the connection.
    while consumer.try_frame(WAIT).is_ok() {}

    // The messages are still stored, and the new master delivers them.
    let stored = count(
        &pair.db(),
        "SELECT count(*) FROM messages WHERE destination = ?1",
        [dest],
    );
    assert_eq!(
        stored, 3,
        "ACKs processed by the fenced old master deleted stored messages"
    );
    // The master is b, unless the lease bug of `resumed_old_master_stays_standby` struck:
    // ask whoever is master once the roles have settled.
    let master = settled_master(&pair);
    let mut c =
        Client::try_connect(pair.brokers[master].addr(), &[], WAIT).expect("CONNECT on the master");
    c.try_send_frame(&Frame::new("SUBSCRIBE").headers(&[
        ("id", "0"),
        ("destination", dest),
        ("ack", "auto"),
    ]))
    .expect("SUBSCRIBE");
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let f = c.try_frame(WAIT).expect("MESSAGE from the new master");
        bodies.push(f.text());
    }
    bodies.sort();
    assert_eq!(bodies, ["0", "1", "2"]);
}

/// The index of the broker that serves and still serves, at the same epoch, a second later
/// (several acquire intervals of `SHORT_LEASE`).
fn settled_master(pair: &Pair) -> usize {
    let serving = || {
        pair.brokers.iter().enumerate().find_map(|(i, b)| {
            health(b.admin_addr())
                .filter(|h| h.status == 200)
                .map(|h| (i, h.epoch()))
        })
    };
    let start = Instant::now();
    loop {
        if let Some(now) = serving() {
            std::thread::sleep(Duration::from_millis(1000));
            if serving() == Some(now) {
                return now.0;
            }
        }
        assert!(start.elapsed() < WAIT, "no settled master within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a persistent message and waits for its RECEIPT.
fn send_receipted(c: &mut Client, dest: &str, body: &str) {
    let receipt = format!("r-{body}");
    c.try_send_frame(&send_frame(
        dest,
        body,
        &[("persistent", "true"), ("receipt", &receipt)],
    ))
    .expect("SEND");
    let f = c.try_frame(WAIT).expect("RECEIPT");
    assert_eq!(
        (f.command.as_str(), f.get("receipt-id")),
        ("RECEIPT", Some(receipt.as_str())),
        "{f:?}"
    );
}

#[test]
fn sigterm_of_the_master_lets_the_standby_serve_within_a_second() {
    let _serial = serial();
    let mut pair = Pair::start(None);
    pair.brokers[0].signal(libc::SIGTERM);
    let (status, exited_at) = pair.brokers[0].wait_exit(WAIT);
    assert!(status.success(), "clean stop exits 0: {status}");
    let took = first_connect_after(pair.brokers[1].addr(), exited_at, WAIT);
    eprintln!("SIGTERM: standby served {took:?} after the old master exited");
    // A behavioural bound with a huge margin (the lease is released before the exit).
    assert!(
        took < Duration::from_secs(1),
        "standby served {took:?} after a clean stop"
    );
    pair.brokers[1].wait_master(WAIT);
}

#[test]
fn haproxy_client_keeps_working_across_a_master_kill() {
    let _serial = serial();
    let mut pair = Pair::start(None);
    let proxy = Haproxy::start(&pair, false);
    let dest = "/queue/ha.haproxy";
    let mut producer = spawn_producer(vec![proxy.addr], dest);
    let mut consumer = spawn_consumer(vec![proxy.addr], dest);
    producer.wait_distinct(50, WAIT, "receipts through haproxy");
    consumer.wait_distinct(1, WAIT, "a message through haproxy");

    pair.brokers[0].kill9();
    pair.brokers[1].wait_master(WAIT);
    let after = producer.progress.distinct();
    producer.wait_distinct(
        after + 50,
        WAIT,
        "receipts through haproxy from the new master",
    );

    producer.stop();
    let duplicates = assert_all_consumed(&producer, &consumer, WAIT);
    consumer.stop();
    let connects = |c: &FailoverClient| c.progress.connects();
    assert!(
        connects(&producer) >= 2,
        "the producer should have reconnected through haproxy"
    );
    eprintln!(
        "haproxy: {} receipted messages all consumed, {duplicates} duplicates; connects: producer {}, \
         consumer {}",
        producer.progress.distinct(),
        connects(&producer),
        connects(&consumer)
    );
}

/// `n` trials of kill -9 of the master → first successful CONNECT on the standby, with the
/// default lease settings; the killed broker comes back as the next standby.
fn kill9_failover_trials(n: usize) -> Vec<Duration> {
    let mut pair = Pair::start(None);
    let mut master = 0;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let standby = 1 - master;
        let killed_at = pair.brokers[master].kill9();
        samples.push(first_connect_after(
            pair.brokers[standby].addr(),
            killed_at,
            WAIT,
        ));
        pair.brokers[standby].wait_master(WAIT);
        pair.brokers[master].spawn();
        pair.brokers[master].wait_line("stompbox admin", WAIT);
        pair.brokers[master].wait_not_master(WAIT);
        master = standby;
    }
    samples
}

#[test]
#[ignore = "measurement: run with --ignored failover_timing --nocapture"]
fn failover_timing() {
    let _serial = serial();
    let samples = kill9_failover_trials(10);
    let (median, max) = median_max(&samples);
    println!("kill -9 → first CONNECT on the new master, 10 trials, default lease settings:");
    println!("  samples: {samples:?}");
    println!(
        "  median {:.4} s, max {:.4} s",
        median.as_secs_f64(),
        max.as_secs_f64()
    );
    println!(
        "(ActiveMQ's shared-store pair, same procedure: tests/ha_support/activemq_failover.py)"
    );
}

/// Ten kill -9 failovers in a row, each ending with the standby serving as master and the
/// killed broker back as standby (how fast is `failover_timing`'s and `make bench`'s
/// business, not a test's).
#[test]
fn ten_kill9_failovers_in_a_row_each_end_with_a_serving_master() {
    let _serial = serial();
    let samples = kill9_failover_trials(10);
    assert_eq!(samples.len(), 10, "{samples:?}");
}

#[test]
fn proxy_protocol_v1_header_then_connect_is_served() {
    let _serial = serial();
    let pair = Pair::start(Some("proxy_protocol = true\n"));
    let mut c = Client::try_open(pair.brokers[0].addr(), WAIT).expect("open");
    c.try_send_raw(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 61613\r\n")
        .expect("header");
    c.try_send_frame(&connect_frame("1.2", &[]))
        .expect("CONNECT");
    let f = c.try_frame(WAIT).expect("CONNECTED after a PROXY header");
    assert_eq!(f.command, "CONNECTED", "after a PROXY header: {f:?}");
}

#[test]
fn proxy_protocol_connection_without_header_is_closed() {
    let _serial = serial();
    let pair = Pair::start(Some("proxy_protocol = true\n"));
    let mut c = Client::try_open(pair.brokers[0].addr(), WAIT).expect("open");
    c.try_send_frame(&connect_frame("1.2", &[]))
        .expect("CONNECT");
    match c.try_frame(WAIT) {
        Err(ReadError::Closed | ReadError::Invalid(_)) => {}
        other => panic!("a connection without a PROXY header must be closed, got {other:?}"),
    }
}

#[test]
fn haproxy_send_proxy_reaches_a_proxy_protocol_pair() {
    let _serial = serial();
    let pair = Pair::start(Some("proxy_protocol = true\n"));
    // `Haproxy::start` waits for a CONNECT through it, which needs the PROXY header.
    let proxy = Haproxy::start(&pair, true);
    let mut c =
        Client::try_connect(proxy.addr, &[], WAIT).expect("CONNECT through haproxy send-proxy");
    send_receipted(&mut c, "/queue/ha.send-proxy", "via-haproxy");
}

/// Median and maximum of `samples` (not empty).
fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    };
    (median, s[n - 1])
}

/// A persistent scheduled SEND receipted by the master is delivered by the standby after the
/// master's kill -9 (the schedule is a row of the shared store), once per occurrence.
#[test]
fn a_schedule_receipted_by_the_master_is_delivered_by_the_standby_after_kill9() {
    let _serial = serial();
    let mut pair = Pair::start(None);
    let dest = "/queue/ha.scheduled";
    let mut producer = pair.brokers[0].connect("1.2");
    producer.send_sync(
        dest,
        "scheduled",
        &[
            ("persistent", "true"),
            ("AMQ_SCHEDULED_DELAY", "1000"),
            ("AMQ_SCHEDULED_PERIOD", "100"),
            ("AMQ_SCHEDULED_REPEAT", "1"),
        ],
    );
    pair.brokers[0].kill9();
    pair.brokers[1].wait_master(WAIT);
    let mut consumer = pair.brokers[1].connect("1.2");
    consumer.subscribe(dest, "s", "client-individual", &[]);
    let got = consumer.receive(2, WAIT);
    let ids: std::collections::HashSet<&str> = got.iter().map(|m| m.must("message-id")).collect();
    assert_eq!(
        ids.len(),
        2,
        "two deliveries, each its own message: {got:?}"
    );
    for m in &got {
        assert_eq!(m.text(), "scheduled");
        consumer.ack(m);
    }
    consumer.expect_silence(Duration::from_millis(300));
    let db = pair.db();
    eventually(WAIT, || {
        match count(&db, "SELECT count(*) FROM scheduled", []) {
            0 => Ok(()),
            n => Err(format!("{n} schedules left")),
        }
    });
}
