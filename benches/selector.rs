//! Selector benchmarks (issue 10):
//!
//! - `selector/eval`: the cost per message of a 3-clause selector
//!   (`color = 'red' AND price > 10 AND region IN ('eu', 'us')`) on a message with eight
//!   headers, matching and not, next to the baseline of a subscription without a selector;
//!   heap allocations per evaluation are printed first (they must be 0).
//! - `selector/queue`: one owner shard, 20,000 messages over 8 message groups (`grp`
//!   header) into a queue with 4 consumers, each selecting 2 of the groups
//!   (`grp IN ('g0', 'g4')` …), every delivery acked as it arrives; next to the baseline of 4
//!   consumers without selectors on the same messages. The ratio of the two is the price of
//!   selective dispatch.
//!
//! `cargo bench --bench selector` takes about twenty seconds; `make bench` runs it.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use stompbox::config::Config;
use stompbox::destination::Ctx;
use stompbox::message::{
    AckMode, ConsumerOptions, DestinationName, IdAllocator, Message, MessageId, Router, SessionId,
    SubId, ToOwner, ToSession,
};
use stompbox::selector::Selector;
use stompbox::shard::Owner;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[path = "support/counting.rs"]
mod counting;
use counting::ALLOCATIONS;

const THREE_CLAUSES: &str = "color = 'red' AND price > 10 AND region IN ('eu', 'us')";

fn message(id: u64, headers: &[(&str, &str)]) -> Arc<Message> {
    Arc::new(Message {
        id: MessageId(id),
        destination: DestinationName::parse("/queue/bench").unwrap(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Bytes::from_static(b"payload"),
        priority: 4,
        persistent: false,
        expires: 0,
    })
}

fn eval(c: &mut Criterion) {
    let selector = Selector::parse(THREE_CLAUSES).unwrap();
    let none: Option<Selector> = None;
    let common = [
        ("content-type", "text/plain"),
        ("timestamp", "1700000000000"),
        ("correlation-id", "c-1"),
        ("x-trace", "abc"),
        ("x-tenant", "t1"),
    ];
    let mut matching = common.to_vec();
    matching.extend([("color", "red"), ("price", "12.5"), ("region", "us")]);
    let mut other = common.to_vec();
    other.extend([("color", "blue"), ("price", "12.5"), ("region", "us")]);
    let (yes, no) = (message(1, &matching), message(2, &other));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        black_box(selector.matches(&*yes));
        black_box(selector.matches(&*no));
    }
    let per = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 2000.0;
    println!("selector/eval: {per} heap allocations per evaluation");
    let mut g = c.benchmark_group("selector/eval");
    g.throughput(Throughput::Elements(1));
    g.bench_function("no selector (baseline)", |b| {
        b.iter(|| black_box(none.as_ref().is_none_or(|s| s.matches(&*yes))))
    });
    g.bench_function("3 clauses, matching", |b| {
        b.iter(|| black_box(selector.matches(&*yes)))
    });
    g.bench_function("3 clauses, first clause false", |b| {
        b.iter(|| black_box(selector.matches(&*no)))
    });
    g.finish();
}

/// One owner, 4 consumers (with or without selectors), 8 groups of messages.
fn queue_run(selective: bool, messages: &[Arc<Message>]) {
    let (tx, mut mailbox) = unbounded_channel();
    let router = Arc::new(Router::new(vec![tx]));
    let config = Config::default();
    let ctx = Ctx::new(
        0,
        router.clone(),
        None,
        Arc::new(IdAllocator::new(0)),
        Arc::new(config.destinations.clone()),
        Default::default(),
    );
    let mut owner = Owner::new(ctx);
    let destination = DestinationName::parse("/queue/bench").unwrap();
    let mut inboxes: Vec<UnboundedReceiver<ToSession>> = Vec::new();
    for c in 0..4u64 {
        let (stx, srx) = unbounded_channel();
        let session = SessionId(c + 1);
        owner.handle(ToOwner::Hello { session, tx: stx });
        let mut options = ConsumerOptions::new(AckMode::ClientIndividual, 1000);
        if selective {
            let text = format!("grp IN ('g{}', 'g{}')", c, c + 4);
            options.selector = Some(Arc::new(Selector::parse(&text).unwrap()));
        }
        owner.handle(ToOwner::Subscribe {
            session,
            sub: SubId(1),
            destination: destination.clone(),
            options,
            durable: None,
            token: None,
        });
        inboxes.push(srx);
    }
    let producer = SessionId(99);
    let (ptx, _prx) = unbounded_channel();
    owner.handle(ToOwner::Hello {
        session: producer,
        tx: ptx,
    });
    let mut delivered = 0;
    for chunk in messages.chunks(500) {
        for m in chunk {
            owner.handle(ToOwner::Send {
                session: producer,
                message: m.clone(),
                token: None,
            });
        }
        delivered += ack_all(&mut owner, &mut inboxes);
        while mailbox.try_recv().is_ok() {}
    }
    delivered += ack_all(&mut owner, &mut inboxes);
    assert_eq!(delivered, messages.len(), "every message delivered once");
}

/// Each consumer acks what it got, as a client-individual client would; returns how many.
fn ack_all(owner: &mut Owner, inboxes: &mut [UnboundedReceiver<ToSession>]) -> usize {
    let mut delivered = 0;
    for (c, inbox) in inboxes.iter_mut().enumerate() {
        let mut ids = Vec::new();
        while let Ok(answer) = inbox.try_recv() {
            if let ToSession::Deliver { message, .. } = answer {
                ids.push(message.id);
            }
        }
        delivered += ids.len();
        if !ids.is_empty() {
            owner.handle(ToOwner::Ack {
                session: SessionId(c as u64 + 1),
                sub: SubId(1),
                ids,
                token: None,
            });
        }
    }
    delivered
}

fn queue(c: &mut Criterion) {
    const N: u64 = 20_000;
    let messages: Vec<Arc<Message>> = (1..=N)
        .map(|id| {
            let group = format!("g{}", id % 8);
            message(id, &[("grp", &group), ("content-type", "text/plain")])
        })
        .collect();
    let mut g = c.benchmark_group("selector/queue");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("4 consumers, no selectors (baseline)", |b| {
        b.iter(|| queue_run(false, &messages))
    });
    g.bench_function("4 consumers selecting 2 of 8 groups each", |b| {
        b.iter(|| queue_run(true, &messages))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    eval(&mut c);
    queue(&mut c);
    c.final_summary();
}
