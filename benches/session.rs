//! Session hot-path benchmark: one owner delivery turned into MESSAGE bytes, handed to the
//! driver, reported written and (auto mode) acked to the owner, or (client-individual mode)
//! acked by the client. No sockets, no runtime: the session is sans-IO.
//!
//! Before criterion runs, each case prints its heap allocations per message (a counting
//! global allocator), the figure to compare when changing the MESSAGE encoder: a ratio of
//! timings between two commits says how much faster, the count says whether it allocates more.
//!
//! `cargo bench --bench session` takes about ten seconds; criterion's flags work as usual.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use stompbox::codec::{Command, Frame};
use stompbox::config::Config;
use stompbox::message::DestinationName;
use stompbox::message::{
    IdAllocator, Message, MessageId, Router, SessionId, SubId, ToOwner, ToSession,
};
use stompbox::session::{ClientIds, Connections, Post, Services, Session};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[path = "support/counting.rs"]
mod counting;
use counting::ALLOCATIONS;

/// A connected session with one subscription `s` to `/queue/bench`, and the owner mailbox
/// its commands land in.
struct Bench {
    session: Session,
    router: Arc<Router>,
    mailbox: UnboundedReceiver<ToOwner>,
    _answers: UnboundedReceiver<ToSession>,
    message: Arc<Message>,
    ack: Option<Frame>,
}

impl Bench {
    fn new(version: &str, ack: &str) -> Bench {
        let (owner, mailbox) = unbounded_channel();
        let router = Arc::new(Router::new(vec![owner]));
        let services = Services {
            router: router.clone(),
            config: Arc::new(Config::default()),
            ids: Arc::new(IdAllocator::new(0)),
            store: None,
            client_ids: Arc::new(ClientIds::default()),
            connections: Arc::new(Connections::default()),
            memory: Arc::new(AtomicU64::new(0)),
            virtual_topics: Default::default(),
            frames: Default::default(),
            network: Default::default(),
            advisory_listeners: Default::default(),
            durables: Default::default(),
            auth: stompbox::security::Authenticator::start(&Default::default()).expect("auth"),
        };
        let (tx, answers) = unbounded_channel();
        let mut session = Session::new(SessionId(1), &services, tx);
        let connect = Frame::new(Command::Connect).header("accept-version", version);
        session.handle_frame(connect, 0).expect("CONNECT");
        let subscribe = Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/bench")
            .header("ack", ack);
        session.handle_frame(subscribe, 0).expect("SUBSCRIBE");
        let mut b = Bench {
            session,
            router,
            mailbox,
            _answers: answers,
            message: Arc::new(small_message()),
            ack: None,
        };
        b.drain();
        if ack != "auto" {
            // The ack id is the message-id: the same message, delivered and acked in turn.
            b.ack = Some(Frame::new(Command::Ack).header("id", b.message.id.to_string()));
        }
        b
    }

    /// One delivery, all the way to the client's ACK (or the auto ack).
    fn deliver(&mut self) -> usize {
        self.session.handle_answer(ToSession::Deliver {
            sub: SubId(0),
            message: self.message.clone(),
            redelivery_count: 0,
        });
        let bytes = self.session.take_output();
        let n = bytes.len();
        drop(bytes);
        self.session.wrote(n);
        self.session.flush_credits();
        if let Some(ack) = &self.ack {
            self.session.handle_frame(ack.clone(), 0).expect("ACK");
        }
        self.drain();
        n
    }

    /// Posts what the session queued, as the driver does; the owner's mailbox is dropped.
    fn drain(&mut self) {
        for p in self.session.take_posts() {
            if let Post::Owner(shard, cmd) = p {
                self.router.post(shard, cmd);
            }
        }
        while let Ok(cmd) = self.mailbox.try_recv() {
            black_box(cmd);
        }
    }
}

/// A typical message: five headers and a 100-byte body.
fn small_message() -> Message {
    let header = |k: &str, v: &str| (k.to_string(), v.to_string());
    Message {
        id: MessageId(1_000_042),
        destination: DestinationName::parse("/queue/bench").expect("valid name"),
        headers: vec![
            header("content-type", "application/json"),
            header("persistent", "true"),
            header("correlation-id", "c0ffee-42"),
            header("priority", "4"),
            header("reply-to", "/queue/replies"),
        ],
        body: Bytes::from(vec![b'a'; 100]),
        priority: 4,
        persistent: true,
        expires: 0,
    }
}

const CASES: [(&str, &str, &str); 3] = [
    ("auto_1.2", "1.2", "auto"),
    ("client_individual_1.2", "1.2", "client-individual"),
    ("client_individual_1.0", "1.0", "client-individual"),
];

fn report_allocations() {
    const N: usize = 10_000;
    for (name, version, ack) in CASES {
        let mut b = Bench::new(version, ack);
        for _ in 0..100 {
            b.deliver();
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..N {
            b.deliver();
        }
        let per = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64;
        println!("deliver/{name}: {per:.2} allocations per message");
    }
}

fn deliver(c: &mut Criterion) {
    let mut group = c.benchmark_group("deliver");
    for (name, version, ack) in CASES {
        let mut b = Bench::new(version, ack);
        let len = b.deliver();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |bench| bench.iter(|| black_box(b.deliver())));
    }
    group.finish();
}

fn main() {
    report_allocations();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    deliver(&mut c);
    c.final_summary();
}
