//! Crash loops (issue 8): one test that kills the broker with SIGKILL `CYCLES` times under a
//! mixed load and then checks, across all cycles, what every client was promised.
//!
//! Each cycle starts fresh clients against the broker's current address (a restarted broker
//! listens on a new port), lets them work for a fraction of a second, kills the broker and
//! starts it again on the same data dir. The clients run until their connection breaks and
//! report what they saw; the main thread keeps one ledger for the whole run:
//!
//! - queue producers: persistent SENDs with a receipt each (receipted or unconfirmed);
//! - a topic producer feeding a durable subscription (client-id + `activemq.subscriptionName`);
//! - a transaction producer: BEGIN, several persistent SENDs, then COMMIT with a receipt (or,
//!   for some, ABORT);
//! - client-individual consumers of the queue, the transaction queue and the durable
//!   subscription, which leave some deliveries unacked, ACK the rest, some with a receipt.
//!
//! After the last restart everything is drained, and the test fails on any receipted message
//! lost, any transaction half applied or aborted-yet-visible, any message nobody sent, and any
//! duplicate that is not a redelivery of a message delivered and not receipt-acked before a
//! crash, marked `redelivered:true`.

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::net::pseudo_random;
use support::store::count;
use support::{eventually, send_frame, Broker, Client, ConnectError, Frame, ReadError, WAIT};

/// kill -9 / restart cycles.
const CYCLES: usize = 100;
/// Load per cycle before the kill: between these (pseudo-random, so kills land anywhere).
const LOAD_MIN_MS: u64 = 300;
const LOAD_MAX_MS: u64 = 800;

const QUEUE: &str = "/queue/crash-loop";
const TX_QUEUE: &str = "/queue/crash-loop-tx";
const TOPIC: &str = "/topic/crash-loop";
const DLQ: &str = "/queue/ActiveMQ.DLQ";
const CLIENT_ID: &str = "crash-loop-reader";
const SUB_NAME: &str = "crash-loop-sub";

/// Queue producers, and SENDs each has in flight (each with its own receipt).
const QUEUE_PRODUCERS: usize = 2;
const WINDOW: usize = 4;
/// SENDs per transaction; every `ABORT_EVERY`th transaction is aborted instead of committed.
const TX_SENDS: usize = 5;
const ABORT_EVERY: u64 = 4;
/// Prefetch of the consumers, and how many deliveries per cycle each may leave unacked (every
/// fifth of the first `UNACKED_WITHIN`): fewer than the prefetch, so a consumer keeps
/// receiving (and acking) until the kill instead of stalling on its own unacked messages.
const PREFETCH: &str = "100";
const UNACKED_WITHIN: usize = 150;

#[test]
fn hundred_kill_9_cycles_under_mixed_load_keep_every_promise() {
    let started = Instant::now();
    let mut broker = Broker::start_with_config("durability = \"fsync\"\n");
    create_durable_subscription(&mut broker);

    let mut ledger = Ledger::default();
    let mut rng = pseudo_random(8);
    for cycle in 0..CYCLES {
        let addr = broker.addr();
        let workers = Workers::spawn(addr, cycle);
        let load = LOAD_MIN_MS + rng.next().expect("endless") % (LOAD_MAX_MS - LOAD_MIN_MS);
        std::thread::sleep(Duration::from_millis(load));
        broker.kill9();
        workers.join_into(&mut ledger, cycle);
        broker.start_again();
    }

    // After the last restart: drain everything (ACK each), then the store must be empty.
    let drained = drain(&broker);
    for (stream, deliveries) in drained {
        for d in deliveries {
            ledger.delivered(stream, CYCLES, d);
        }
    }
    let db = broker.db();
    eventually(WAIT, || {
        let left: i64 = db
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        match left {
            0 => Ok(()),
            n => Err(format!(
                "{n} stored messages left after draining and acking all"
            )),
        }
    });

    let report = ledger.check();
    eprintln!(
        "crash loop: {CYCLES} cycles in {:.1?}\n{}",
        started.elapsed(),
        report.counts
    );
    assert!(
        report.receipted >= 1000,
        "too few receipted messages ({}) for a meaningful test",
        report.receipted
    );
    assert!(
        report.violations.is_empty(),
        "{} broken promises after {CYCLES} kill -9 cycles:\n{}",
        report.violations.len(),
        report.violations.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The clients of one cycle
// ---------------------------------------------------------------------------------------------

/// Which consumer saw a delivery: each is checked for duplicates on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stream {
    Queue,
    TxQueue,
    Durable,
    Dlq,
}

/// The client threads of one cycle; each runs until the broker dies.
struct Workers {
    queue_producers: Vec<JoinHandle<Sends>>,
    topic_producer: JoinHandle<Sends>,
    tx_producer: JoinHandle<Vec<Tx>>,
    consumers: Vec<(Stream, JoinHandle<Vec<Delivery>>)>,
}

impl Workers {
    fn spawn(addr: SocketAddr, cycle: usize) -> Workers {
        let queue_producers = (0..QUEUE_PRODUCERS)
            .map(|p| {
                let tag = format!("q-c{cycle:03}-p{p}");
                std::thread::spawn(move || produce(addr, QUEUE, &tag))
            })
            .collect();
        let tag = format!("t-c{cycle:03}");
        let topic_producer = std::thread::spawn(move || produce(addr, TOPIC, &tag));
        let tx_producer = std::thread::spawn(move || transact(addr, cycle));
        let consumers = [
            (Stream::Queue, QUEUE, false),
            (Stream::TxQueue, TX_QUEUE, false),
            (Stream::Durable, TOPIC, true),
        ]
        .into_iter()
        .map(|(stream, dest, durable)| {
            (
                stream,
                std::thread::spawn(move || consume(addr, dest, durable)),
            )
        })
        .collect();
        Workers {
            queue_producers,
            topic_producer,
            tx_producer,
            consumers,
        }
    }

    /// Waits for every client (the broker is dead) and records what each saw.
    fn join_into(self, ledger: &mut Ledger, cycle: usize) {
        for h in self.queue_producers {
            ledger.queue.add(join(h, "queue producer"));
        }
        ledger
            .topic
            .add(join(self.topic_producer, "topic producer"));
        ledger
            .txs
            .extend(join(self.tx_producer, "transaction producer"));
        for (stream, h) in self.consumers {
            for d in join(h, "consumer") {
                ledger.delivered(stream, cycle, d);
            }
        }
    }
}

fn join<T>(h: JoinHandle<T>, who: &str) -> T {
    h.join()
        .unwrap_or_else(|_| panic!("a {who} failed (its panic is printed above)"))
}

/// What one producer saw.
#[derive(Default)]
struct Sends {
    /// RECEIPT arrived: must be delivered.
    receipted: Vec<String>,
    /// Sent (or being sent) when the broker died: may or may not be delivered.
    unconfirmed: Vec<String>,
}

impl Sends {
    fn add(&mut self, other: Sends) {
        self.receipted.extend(other.receipted);
        self.unconfirmed.extend(other.unconfirmed);
    }
}

/// One transaction of the transaction producer.
struct Tx {
    bodies: Vec<String>,
    outcome: TxOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxOutcome {
    /// The COMMIT's RECEIPT arrived: every message must be delivered.
    Committed,
    /// COMMIT sent, no RECEIPT before the crash: all or none.
    Unconfirmed,
    /// ABORTed, or the broker died before COMMIT was sent: none.
    NotCommitted,
}

/// One MESSAGE a consumer received, and what the consumer did with it.
#[derive(Debug, Clone)]
struct Delivery {
    body: String,
    /// `redelivered:true` or a `redelivery-count` above 0.
    redelivered: bool,
    settle: Settle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Left unacked (or the ACK could not be written): must come back after the crash.
    Unacked,
    /// ACKed without a receipt, or its RECEIPT did not arrive: may come back.
    Acked,
    /// ACKed and the RECEIPT arrived: must not come back.
    AckReceipted,
}

/// CONNECT at 1.2; None if the broker is already gone.
fn try_connect(addr: SocketAddr, extra: &[(&str, &str)]) -> Option<Client> {
    match Client::try_connect(addr, extra, WAIT) {
        Ok(c) => Some(c),
        Err(ConnectError::Io(_) | ConnectError::Read(ReadError::Closed)) => None,
        Err(ConnectError::Refused(f)) => panic!("CONNECT answered with {f:?}"),
        Err(ConnectError::Read(e)) => panic!("CONNECT: {e:?} while the broker should answer"),
    }
}

/// Persistent SENDs to `dest` with a receipt each, `WINDOW` in flight, until the broker dies.
fn produce(addr: SocketAddr, dest: &str, tag: &str) -> Sends {
    let mut out = Sends::default();
    let Some(mut c) = try_connect(addr, &[]) else {
        return out;
    };
    let mut in_flight: VecDeque<(String, String)> = VecDeque::new();
    let mut seq = 0u64;
    'run: loop {
        while in_flight.len() < WINDOW {
            let body = format!("{tag}-{seq:05}");
            let receipt = c.receipt_id();
            seq += 1;
            let f = send_frame(dest, &body, &[("persistent", "true")]).header("receipt", &receipt);
            if c.try_send_frame(&f).is_err() {
                out.unconfirmed.push(body);
                break 'run;
            }
            in_flight.push_back((receipt, body));
        }
        match c.try_frame(WAIT) {
            Ok(f) if f.command == "RECEIPT" => {
                let (receipt, body) = in_flight.pop_front().expect("a SEND is in flight");
                assert_eq!(f.get("receipt-id"), Some(receipt.as_str()), "{f:?}");
                out.receipted.push(body);
            }
            Ok(f) => panic!("producer {tag}: unexpected {f:?}"),
            Err(ReadError::Closed) => break,
            Err(e) => panic!("producer {tag}: {e:?} while the broker should answer"),
        }
    }
    out.unconfirmed
        .extend(in_flight.into_iter().map(|(_, b)| b));
    out
}

/// Transactions of `TX_SENDS` persistent SENDs to `TX_QUEUE`, committed with a receipt (or
/// aborted), one after the other until the broker dies.
fn transact(addr: SocketAddr, cycle: usize) -> Vec<Tx> {
    let mut out = Vec::new();
    let Some(mut c) = try_connect(addr, &[]) else {
        return out;
    };
    for n in 0u64.. {
        let tx = format!("tx-c{cycle:03}-{n:04}");
        let bodies: Vec<String> = (0..TX_SENDS).map(|i| format!("{tx}-{i}")).collect();
        let mut frames = vec![Frame::new("BEGIN").header("transaction", &tx)];
        frames.extend(
            bodies
                .iter()
                .map(|b| send_frame(TX_QUEUE, b, &[("persistent", "true"), ("transaction", &tx)])),
        );
        let abort = n % ABORT_EVERY == ABORT_EVERY - 1;
        let receipt = c.receipt_id();
        let end = if abort { "ABORT" } else { "COMMIT" };
        let end = Frame::new(end)
            .header("transaction", &tx)
            .header("receipt", &receipt);
        let mut written = frames.iter().all(|f| c.try_send_frame(f).is_ok());
        // A COMMIT that may have reached the broker makes the transaction unconfirmed.
        let mut outcome = TxOutcome::NotCommitted;
        if written {
            if !abort {
                outcome = TxOutcome::Unconfirmed;
            }
            written = c.try_send_frame(&end).is_ok();
        }
        if !written {
            out.push(Tx { bodies, outcome });
            break;
        }
        match c.try_frame(WAIT) {
            Ok(f) if f.command == "RECEIPT" => {
                assert_eq!(f.get("receipt-id"), Some(receipt.as_str()), "{f:?}");
                if !abort {
                    outcome = TxOutcome::Committed;
                }
                out.push(Tx { bodies, outcome });
            }
            Ok(f) => panic!("transaction producer: unexpected {f:?}"),
            Err(ReadError::Closed) => {
                out.push(Tx { bodies, outcome });
                break;
            }
            Err(e) => panic!("transaction producer: {e:?} while the broker should answer"),
        }
    }
    out
}

/// A client-individual consumer of `dest` (the durable subscription if `durable`) until the
/// broker dies. Of every five deliveries two are ACKed with a receipt and two without; the
/// fifth is ACKed without one too, or left unacked among the first `UNACKED_WITHIN`.
fn consume(addr: SocketAddr, dest: &str, durable: bool) -> Vec<Delivery> {
    let mut out: Vec<Delivery> = Vec::new();
    let connect: &[(&str, &str)] = if durable {
        &[("client-id", CLIENT_ID)]
    } else {
        &[]
    };
    let Some(mut c) = try_connect(addr, connect) else {
        return out;
    };
    let mut sub = Frame::new("SUBSCRIBE")
        .header("destination", dest)
        .header("id", "live")
        .header("ack", "client-individual")
        .header("activemq.prefetchSize", PREFETCH);
    if durable {
        sub = sub.header("activemq.subscriptionName", SUB_NAME);
    }
    if c.try_send_frame(&sub).is_err() {
        return out;
    }
    // Receipt id of an ACK → index of its delivery in `out`.
    let mut acks: HashMap<String, usize> = HashMap::new();
    loop {
        match c.try_frame(WAIT) {
            Ok(m) if m.command == "MESSAGE" => {
                let n = out.len();
                out.push(Delivery {
                    body: m.text(),
                    redelivered: m.get("redelivered") == Some("true")
                        || m.get("redelivery-count").is_some_and(|n| n != "0"),
                    settle: Settle::Unacked,
                });
                let ack = match n % 5 {
                    0 if n < UNACKED_WITHIN => continue,
                    1 | 3 => {
                        let id = c.receipt_id();
                        acks.insert(id.clone(), n);
                        c.settle_frame("ACK", &m).header("receipt", id)
                    }
                    _ => c.settle_frame("ACK", &m),
                };
                if c.try_send_frame(&ack).is_err() {
                    break;
                }
                out[n].settle = Settle::Acked;
            }
            Ok(f) if f.command == "RECEIPT" => {
                let n = acks
                    .remove(f.must("receipt-id"))
                    .unwrap_or_else(|| panic!("consumer of {dest}: unknown {f:?}"));
                out[n].settle = Settle::AckReceipted;
            }
            Ok(f) => panic!("consumer of {dest}: unexpected {f:?}"),
            Err(ReadError::Closed) => break,
            Err(ReadError::Timeout) => {}
            Err(e) => panic!("consumer of {dest}: {e:?}"),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Setup and drain
// ---------------------------------------------------------------------------------------------

/// Creates the durable subscription (committed before its RECEIPT) and restarts the broker,
/// so the first cycle's consumer finds its client id free.
fn create_durable_subscription(broker: &mut Broker) {
    let mut c = broker.connect_with("1.2", &[("client-id", CLIENT_ID)]);
    c.subscribe(
        TOPIC,
        "setup",
        "client-individual",
        &[("activemq.subscriptionName", SUB_NAME)],
    );
    broker.crash_and_restart();
    let n = count(
        &broker.db(),
        "SELECT count(*) FROM durable_subscriptions WHERE client_id = ?1",
        [CLIENT_ID],
    );
    assert_eq!(n, 1, "the durable subscription survives kill -9");
}

/// Receives and ACKs everything left in each stream until it is quiet.
fn drain(broker: &Broker) -> Vec<(Stream, Vec<Delivery>)> {
    let mut out = Vec::new();
    for (stream, dest, durable) in [
        (Stream::Queue, QUEUE, false),
        (Stream::TxQueue, TX_QUEUE, false),
        (Stream::Durable, TOPIC, true),
        (Stream::Dlq, DLQ, false),
    ] {
        let mut c = if durable {
            broker.connect_with("1.2", &[("client-id", CLIENT_ID)])
        } else {
            broker.connect("1.2")
        };
        let name = [("activemq.subscriptionName", SUB_NAME)];
        c.subscribe(
            dest,
            "drain",
            "client-individual",
            if durable { &name } else { &[] },
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            match c.try_frame(Duration::from_secs(2)) {
                Ok(m) if m.command == "MESSAGE" => {
                    c.ack(&m);
                    got.push(Delivery {
                        body: m.text(),
                        redelivered: m.get("redelivered") == Some("true")
                            || m.get("redelivery-count").is_some_and(|n| n != "0"),
                        settle: Settle::Acked,
                    });
                }
                Ok(f) => panic!("draining {dest}: unexpected {f:?}"),
                Err(ReadError::Timeout) => break,
                Err(e) => panic!("draining {dest}: {e:?}"),
            }
        }
        c.disconnect();
        out.push((stream, got));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The ledger
// ---------------------------------------------------------------------------------------------

/// Everything every client saw, across all cycles.
#[derive(Default)]
struct Ledger {
    queue: Sends,
    topic: Sends,
    txs: Vec<Tx>,
    /// Per stream and body, each delivery with the cycle it happened in (`CYCLES` = the drain).
    deliveries: HashMap<(Stream, String), Vec<(usize, Delivery)>>,
}

/// The verdict: counts to print and every broken promise.
struct Report {
    receipted: usize,
    counts: String,
    violations: Vec<String>,
}

impl Ledger {
    fn delivered(&mut self, stream: Stream, cycle: usize, d: Delivery) {
        self.deliveries
            .entry((stream, d.body.clone()))
            .or_default()
            .push((cycle, d));
    }

    fn check(&self) -> Report {
        let mut violations = Vec::new();
        let seen =
            |stream: Stream, body: &str| self.deliveries.contains_key(&(stream, body.to_string()));

        // Every receipted message arrives; unconfirmed ones may.
        let mut receipted = 0;
        let mut unconfirmed = 0;
        let mut unconfirmed_kept = 0;
        for (stream, sends) in [(Stream::Queue, &self.queue), (Stream::Durable, &self.topic)] {
            for b in &sends.receipted {
                receipted += 1;
                if !seen(stream, b) && !seen(Stream::Dlq, b) {
                    violations.push(format!("{stream:?}: receipted message {b} lost"));
                }
            }
            unconfirmed += sends.unconfirmed.len();
            unconfirmed_kept += sends.unconfirmed.iter().filter(|b| seen(stream, b)).count();
        }

        // Transactions: a receipted COMMIT keeps all, an unconfirmed one all or none, an
        // uncommitted one none.
        let (mut tx_committed, mut tx_unconfirmed, mut tx_kept, mut tx_none) = (0, 0, 0, 0);
        for tx in &self.txs {
            let n = tx
                .bodies
                .iter()
                .filter(|b| seen(Stream::TxQueue, b))
                .count();
            match tx.outcome {
                TxOutcome::Committed => {
                    tx_committed += 1;
                    receipted += tx.bodies.len();
                    if n != tx.bodies.len() {
                        violations.push(format!(
                            "receipted COMMIT of {}: {n} of {} messages delivered",
                            tx.bodies[0],
                            tx.bodies.len()
                        ));
                    }
                }
                TxOutcome::Unconfirmed => {
                    tx_unconfirmed += 1;
                    unconfirmed += tx.bodies.len();
                    if n == tx.bodies.len() {
                        tx_kept += 1;
                        unconfirmed_kept += n;
                    } else if n != 0 {
                        violations.push(format!(
                            "unconfirmed COMMIT of {} half applied: {n} of {} delivered",
                            tx.bodies[0],
                            tx.bodies.len()
                        ));
                    }
                }
                TxOutcome::NotCommitted => {
                    tx_none += 1;
                    if n != 0 {
                        violations.push(format!(
                            "transaction of {} never committed, yet {n} messages delivered",
                            tx.bodies[0]
                        ));
                    }
                }
            }
        }

        // Nothing appears that was not sent (or was sent only inside an uncommitted
        // transaction, checked above).
        let sent: HashSet<&str> = [&self.queue, &self.topic]
            .into_iter()
            .flat_map(|s| s.receipted.iter().chain(&s.unconfirmed))
            .chain(self.txs.iter().flat_map(|t| &t.bodies))
            .map(String::as_str)
            .collect();
        for (stream, body) in self.deliveries.keys() {
            if !sent.contains(body.as_str()) {
                violations.push(format!("{stream:?}: {body} delivered, never sent"));
            }
        }

        // Duplicates: only after a crash, only of a message not receipt-acked before it, and
        // marked redelivered.
        // A first delivery marked redelivered is allowed (JMS: "likely, not guaranteed"): the
        // delivery mark covers the consumers' credit ahead of time. Counted for the docs.
        let (mut deliveries, mut duplicates, mut marked, mut dlq) = (0, 0, 0, 0);
        let mut marked_first = 0;
        let mut by_kind: HashMap<&str, (usize, String)> = HashMap::new();
        for ((stream, body), ds) in &self.deliveries {
            deliveries += ds.len();
            marked_first += usize::from(ds.first().is_some_and(|(_, d)| d.redelivered));
            if *stream == Stream::Dlq {
                dlq += 1;
                violations.push(format!("{body} ended in the dead-letter queue"));
                continue;
            }
            for pair in ds.windows(2) {
                let ((before, prev), (cycle, again)) = (&pair[0], &pair[1]);
                duplicates += 1;
                marked += usize::from(again.redelivered);
                let what = format!(
                    "{stream:?}: {body} delivered in cycle {before} ({:?}), again in cycle \
                     {cycle} (redelivered: {})",
                    prev.settle, again.redelivered
                );
                let kinds = [
                    (before == cycle, "delivered twice without a crash between"),
                    (
                        prev.settle == Settle::AckReceipted,
                        "delivered again after its ACK's RECEIPT",
                    ),
                    (
                        !again.redelivered,
                        "delivered again without redelivered:true",
                    ),
                ];
                for (_, kind) in kinds.into_iter().filter(|(broken, _)| *broken) {
                    let e = by_kind.entry(kind).or_insert((0, what.clone()));
                    e.0 += 1;
                }
            }
        }
        let mut kinds: Vec<_> = by_kind.into_iter().collect();
        kinds.sort();
        for (kind, (n, example)) in kinds {
            violations.push(format!("{n} duplicates {kind}, e.g. {example}"));
        }

        let counts = format!(
            "  receipted messages: {receipted} (queue {}, durable topic {}, in {tx_committed} \
             receipted COMMITs)\n  unconfirmed messages: {unconfirmed}, of them kept: \
             {unconfirmed_kept}\n  transactions: {tx_committed} receipted, {tx_unconfirmed} \
             unconfirmed ({tx_kept} kept whole, {} dropped whole), {tx_none} aborted or never \
             committed\n  deliveries: {deliveries}, duplicates: {duplicates} (marked \
             redelivered: {marked}), first deliveries marked redelivered: {marked_first}, \
             dead letters: {dlq}",
            self.queue.receipted.len(),
            self.topic.receipted.len(),
            tx_unconfirmed - tx_kept,
        );
        Report {
            receipted,
            counts,
            violations,
        }
    }
}
