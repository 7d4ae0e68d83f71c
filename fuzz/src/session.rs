//! The checks behind the `session` fuzz target: one to three sans-IO [`Session`]s and one
//! in-process [`Owner`] (no store), pumped by hand the way the session's test `Pair` (`session/testing.rs`) does, driven
//! by a script read from the fuzz input.
//!
//! `fuzz_targets/session.rs` calls [`check_session`]; `tests/fuzz_corpus.rs` includes this file
//! and replays `fuzz/corpus/session/` through it in `cargo test`.
//!
//! # The script
//!
//! The input is a sequence of one-byte operations, so a seed is mostly readable text:
//!
//! | op | then | does |
//! |---|---|---|
//! | `0` `1` `2` | bytes up to and including the next NUL | hands them to that client's decoder (the real [`Decoder`], at the session's version) and feeds the session the frames it decodes, while the session wants to read; a slot with no session gets a new one |
//! | `p` | | pumps owner and every session's answers until nothing moves |
//! | `o` | | runs the owner on its mailbox only |
//! | `a` | slot | hands one session its owner answers |
//! | `t` | slot | takes the session's output (not yet written) |
//! | `w` | slot, n | takes the output and reports at most n more bytes written |
//! | `W` | slot | takes the output and reports all of it written |
//! | `f` | slot | `flush_credits` |
//! | `x` | slot | the connection dies: `close`, unwritten output is lost |
//!
//! A slot byte is taken modulo 3, so `0`, `1` and `2` name the three slots. Other bytes are
//! skipped. Like the socket driver (`session/task.rs`), the harness feeds frames only while
//! `wants_read`, hands answers only while `wants_answers`, and closes a session that is
//! `Closing` once everything it wrote has been taken and written.
//!
//! # The properties
//!
//! - Nothing panics.
//! - Every byte a session writes decodes, with our own [`Decoder`], to frames a server may
//!   send (CONNECTED, MESSAGE, RECEIPT, ERROR); every MESSAGE has a numeric `message-id`.
//! - After an ERROR frame the session writes nothing more.
//! - Memory is bounded: a session's write buffer stays within [`out_bound`], and the memory
//!   account its open transactions charge stays within `max_transaction_bytes` per live
//!   session, and is back to zero once every session has closed.
//! - Nothing vanishes. The harness sees every command on its way to the owner. Once every
//!   session has closed and the owner has run, every message a SEND put into a queue (without
//!   `expires`, which may legitimately drop it) is either still in a queue (browsed through
//!   [`Inspect::Browse`]) or was consumed: the session posted an ACK for it and some session
//!   encoded it in a MESSAGE frame. No queue holds a message twice, and no destination still
//!   counts a consumer or an unacked delivery.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use stompbox::codec::{Command, Decoder, Frame};
use stompbox::config::{Config, DestinationConfig};
use stompbox::destination::{Accounts, Ctx};
use stompbox::limits::{Limits, MAX_PREFETCH, MAX_WRITE_BUFFER_BYTES};
use stompbox::message::{
    DestinationName, DestinationStats, IdAllocator, Inspect, Kind, QueueKey, Router, SessionId,
    ToOwner, ToSession,
};
use stompbox::session::{ClientIds, Connections, Error, Phase, Post, Services, Session};
use stompbox::shard::Owner;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Sessions connected at once.
pub const SLOTS: usize = 3;

/// Runs the script in `data` (see the module docs) and checks every property.
pub fn check_session(data: &[u8]) {
    let mut broker = Broker::new();
    let mut slots: [Option<Client>; SLOTS] = Default::default();
    let mut i = 0;
    let arg = |i: usize| data.get(i).copied().unwrap_or(0);
    while i < data.len() {
        let op = data[i];
        i += 1;
        match op {
            b'0' | b'1' | b'2' => {
                let slot = usize::from(op - b'0');
                let end = data[i..]
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(data.len(), |n| i + n + 1);
                let client = slots[slot].get_or_insert_with(|| broker.connect());
                client.input.extend_from_slice(&data[i..end]);
                client.read();
                i = end;
            }
            b'p' => broker.pump(&mut slots),
            b'o' => _ = broker.run_owner(),
            b'a' | b't' | b'W' | b'f' | b'x' => {
                let slot = usize::from(arg(i)) % SLOTS;
                i += 1;
                let Some(client) = &mut slots[slot] else {
                    continue;
                };
                match op {
                    b'a' => _ = client.answer(),
                    b't' => client.take(),
                    b'W' => client.write(usize::MAX),
                    b'f' => {
                        client.session.flush_credits();
                        client.post();
                    }
                    _ => {
                        let client = slots[slot].take().expect("matched Some above");
                        broker.close(client);
                    }
                }
            }
            b'w' => {
                let slot = usize::from(arg(i)) % SLOTS;
                let n = usize::from(arg(i + 1));
                i += 2;
                if let Some(client) = &mut slots[slot] {
                    client.write(n);
                }
            }
            _ => {}
        }
        broker.after_step(&mut slots);
    }
    for client in slots.iter_mut().filter_map(Option::take) {
        broker.close(client);
    }
    broker.run_owner();
    broker.check_nothing_vanished();
}

/// The broker's configuration for the harness: limits small enough that short inputs reach
/// them (frame and body sizes, subscriptions, transactions, pending receipts, producer window,
/// prefetch, memory, redeliveries before the dead-letter queue).
pub fn config() -> Config {
    Config {
        limits: Limits {
            max_frame_bytes: 1024,
            max_body_bytes: 512,
            max_headers: 12,
            max_header_line_bytes: 128,
            max_subscriptions_per_connection: 4,
            max_transaction_frames: 8,
            max_transactions_per_connection: 3,
            producer_window_bytes: 2048,
            max_transaction_bytes: 2048,
            max_pending_receipts: 6,
            ..Limits::default()
        },
        destinations: DestinationConfig {
            memory_limit_bytes: 4096,
            global_memory_limit_bytes: 16 * 1024,
            queue_prefetch: 4,
            topic_prefetch: 4,
            durable_prefetch: 4,
            max_redeliveries: 2,
            ..DestinationConfig::default()
        },
        ..Config::default()
    }
}

/// The most a session's write buffer may hold: the driver stops handing it answers at
/// `MAX_WRITE_BUFFER_BYTES`, but one step may still write one frame, the receipts waiting
/// behind it and the deliveries every subscription held until its receipt (at most its
/// prefetch each). Escaping at most doubles a header.
pub fn out_bound(limits: &Limits) -> usize {
    let frame = 2 * limits.max_frame_bytes + 1024;
    let held = limits.max_subscriptions_per_connection * MAX_PREFETCH as usize;
    MAX_WRITE_BUFFER_BYTES + (limits.max_pending_receipts + 1 + held) * frame
}

/// The owner of the only shard, its mailbox, and what the harness saw go into it.
struct Broker {
    owner: Owner,
    mailbox: UnboundedReceiver<ToOwner>,
    services: Services,
    next_session: u64,
    /// Ids of messages SENDs put into queues (without `expires`).
    queued: BTreeSet<u64>,
    /// Ids a session ACKed to the owner (auto-ack deliveries written, or client ACKs).
    acked: HashSet<u64>,
    /// Ids of every MESSAGE frame any session encoded.
    encoded: HashSet<u64>,
    /// Sessions closed whose answer channels still need draining.
    closed: Vec<UnboundedReceiver<ToSession>>,
}

/// One connection: its session, the bytes the client sent that are not decoded yet, and what
/// the session wrote.
struct Client {
    session: Session,
    rx: UnboundedReceiver<ToSession>,
    /// Where the commands the session queues go (posted after each call, as `task.rs` does).
    router: Arc<Router>,
    /// Decodes what the client sends, at the session's version (as `task.rs` does).
    decoder: Decoder,
    input: BytesMut,
    out: Output,
    out_bound: usize,
}

/// What a session wrote, checked as it is taken.
struct Output {
    decoder: Decoder,
    buf: BytesMut,
    /// Bytes taken so far, and of those, reported written.
    taken: u64,
    written: u64,
    error_seen: bool,
    /// Message ids in MESSAGE frames.
    encoded: Vec<u64>,
}

impl Broker {
    fn new() -> Broker {
        let (tx, mailbox) = unbounded_channel();
        let router = Arc::new(Router::new(vec![tx]));
        let config = Arc::new(config());
        let services = Services {
            router: router.clone(),
            config: config.clone(),
            ids: Arc::new(IdAllocator::new(0)),
            store: None,
            client_ids: Arc::new(ClientIds::default()),
            connections: Arc::new(Connections::default()),
            memory: Default::default(),
            virtual_topics: Default::default(),
            frames: Default::default(),
            network: Default::default(),
            advisory_listeners: Default::default(),
            durables: Default::default(),
            // No users: CONNECTs are let in without a password check.
            auth: stompbox::security::Authenticator::start(&Default::default()).expect("auth"),
        };
        let ctx = Ctx::new(
            0,
            router,
            None,
            services.ids.clone(),
            Arc::new(config.destinations.clone()),
            Accounts {
                virtual_topics: services.virtual_topics.clone(),
                advisory_listeners: services.advisory_listeners.clone(),
                durable_subscriptions: services.durables.clone(),
                ..Default::default()
            },
        );
        Broker {
            owner: Owner::new(ctx),
            mailbox,
            services,
            next_session: 0,
            queued: BTreeSet::new(),
            acked: HashSet::new(),
            encoded: HashSet::new(),
            closed: Vec::new(),
        }
    }

    fn connect(&mut self) -> Client {
        self.next_session += 1;
        let (tx, rx) = unbounded_channel();
        let session = Session::new(SessionId(self.next_session), &self.services, tx);
        let limits = &self.services.config.limits;
        Client {
            session,
            rx,
            router: self.services.router.clone(),
            decoder: Decoder::new(limits.clone()),
            input: BytesMut::new(),
            out: Output::new(),
            out_bound: out_bound(limits),
        }
    }

    /// Runs the owner on everything in its mailbox, noting what goes in.
    fn run_owner(&mut self) -> bool {
        let mut moved = false;
        while let Ok(cmd) = self.mailbox.try_recv() {
            match &cmd {
                ToOwner::Send { message, .. }
                    if message.destination.kind() == Kind::Queue && message.expires == 0 =>
                {
                    self.queued.insert(message.id.0);
                }
                ToOwner::Ack { ids, .. } => self.acked.extend(ids.iter().map(|id| id.0)),
                _ => {}
            }
            self.owner.handle(cmd);
            moved = true;
        }
        for rx in &mut self.closed {
            // A closed session reads nothing: what was on its way is the owner's to take back.
            while rx.try_recv().is_ok() {}
        }
        moved
    }

    /// Runs owner and sessions until nothing moves.
    fn pump(&mut self, slots: &mut [Option<Client>]) {
        loop {
            let mut moved = self.run_owner();
            for client in slots.iter_mut().flatten() {
                moved |= client.answer();
                client.session.flush_credits();
                client.post();
                client.read();
            }
            if !moved {
                return;
            }
        }
    }

    /// Checks the bounds after each step, and closes sessions the driver would close.
    fn after_step(&mut self, slots: &mut [Option<Client>]) {
        let live = slots.iter().flatten().count() as u64;
        let memory = self.services.memory.load(Ordering::Relaxed);
        let max = self.services.config.limits.max_transaction_bytes as u64;
        assert!(
            memory <= live * max,
            "{memory} bytes charged by {live} sessions' transactions, over {max} each"
        );
        for slot in slots.iter_mut() {
            let Some(client) = slot else { continue };
            assert!(
                client.session.output_len() <= client.out_bound,
                "write buffer of {} bytes, over its bound {}",
                client.session.output_len(),
                client.out_bound
            );
            let drained = !client.session.has_output() && client.out.written == client.out.taken;
            if client.session.phase() == Phase::Closing && drained {
                let client = slot.take().expect("matched Some above");
                self.close(client);
            }
        }
    }

    /// The connection is gone. What the session wrote but nobody took is still checked.
    fn close(&mut self, mut client: Client) {
        client.take();
        client.session.close();
        client.post();
        self.encoded.extend(client.out.encoded.iter().copied());
        self.closed.push(client.rx);
    }

    /// Every session is closed and the owner has run: see the module docs.
    fn check_nothing_vanished(&mut self) {
        let stats = self.stats();
        let mut kept = HashSet::new();
        for s in &stats {
            assert_eq!(
                s.consumers, 0,
                "{s:?} counts a consumer after every session closed"
            );
            assert_eq!(
                s.unacked, 0,
                "{s:?} counts unacked deliveries after every close"
            );
            if s.kind == "topic" {
                continue;
            }
            let destination =
                DestinationName::parse(&s.destination).expect("a queue's name parses");
            let subscription =
                (!s.subscription.is_empty()).then(|| Arc::from(s.subscription.as_str()));
            let key = QueueKey {
                destination,
                subscription,
            };
            let (reply, mut answer) = tokio::sync::oneshot::channel();
            self.owner.handle(ToOwner::Inspect(Inspect::Browse {
                key,
                offset: 0,
                limit: usize::MAX,
                reply,
            }));
            let browsed = answer
                .try_recv()
                .expect("the owner answers at once")
                .unwrap_or_default();
            assert_eq!(
                browsed.len() as u64,
                s.depth,
                "{s:?} browses {} messages",
                browsed.len()
            );
            for m in browsed {
                assert!(
                    kept.insert(m.message_id),
                    "message {} is queued twice",
                    m.message_id
                );
            }
        }
        for id in &self.queued {
            if kept.contains(id) {
                continue;
            }
            assert!(
                self.acked.contains(id) && self.encoded.contains(id),
                "message {id} vanished: not in any queue, acked {}, written in a MESSAGE {}",
                self.acked.contains(id),
                self.encoded.contains(id)
            );
        }
        let memory = self.services.memory.load(Ordering::Relaxed);
        assert_eq!(memory, 0, "closed sessions still charge {memory} bytes");
        assert!(
            self.services.connections.list().is_empty(),
            "closed sessions still listed"
        );
    }

    fn stats(&mut self) -> Vec<DestinationStats> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.owner
            .handle(ToOwner::Inspect(Inspect::Stats { reply }));
        answer.try_recv().expect("the owner answers at once")
    }
}

impl Client {
    /// Feeds the session the frames buffered input decodes to, while it wants to read (the
    /// loop of `task.rs`'s `pump`), and posts what it queued.
    fn read(&mut self) {
        self.read_frames();
        self.post();
    }

    fn read_frames(&mut self) {
        while self.session.wants_read() {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(frame)) => {
                    if self.session.handle_frame(frame, 0).is_err() {
                        return;
                    }
                    if self.decoder.version() != self.session.version() {
                        self.decoder.set_version(self.session.version());
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let receipt = self.decoder.receipt().map(str::to_owned);
                    self.session.fail(&Error::from(e), receipt.as_deref());
                    return;
                }
            }
        }
    }

    /// Hands the session its owner answers while it wants them. Returns whether any came.
    fn answer(&mut self) -> bool {
        let mut moved = false;
        while self.session.wants_answers() {
            let Ok(answer) = self.rx.try_recv() else {
                break;
            };
            self.session.handle_answer(answer);
            moved = true;
        }
        self.post();
        moved
    }

    /// Posts the commands the session queued, in order (the driver's job in `task.rs`).
    fn post(&mut self) {
        for p in self.session.take_posts() {
            match p {
                Post::Owner(shard, cmd) => self.router.post(shard, cmd),
                Post::Store(_) => unreachable!("the harness runs without a store"),
                Post::Authenticate(_) => unreachable!("the harness has no users"),
            }
        }
    }

    /// Takes the session's output and checks it.
    fn take(&mut self) {
        let bytes = self.session.take_output();
        self.out.check(&bytes, &self.session);
    }

    /// Takes the output and reports up to `n` more bytes of it written.
    fn write(&mut self, n: usize) {
        self.take();
        let n = n.min((self.out.taken - self.out.written) as usize);
        self.out.written += n as u64;
        self.session.wrote(n);
        self.post();
    }
}

impl Output {
    fn new() -> Output {
        // Roomy limits: the broker's own headers (and escaping) may take a MESSAGE past the
        // limits its SEND had to meet.
        let limits = Limits {
            max_frame_bytes: 1 << 24,
            max_body_bytes: 1 << 24,
            max_headers: 1 << 16,
            max_header_line_bytes: 1 << 20,
            ..Limits::default()
        };
        Output {
            decoder: Decoder::new(limits),
            buf: BytesMut::new(),
            taken: 0,
            written: 0,
            error_seen: false,
            encoded: Vec::new(),
        }
    }

    /// Decodes `bytes` (more of the session's output) and checks each frame.
    fn check(&mut self, bytes: &[u8], session: &Session) {
        self.taken += bytes.len() as u64;
        self.buf.extend_from_slice(bytes);
        // Frames are encoded at the negotiated version; before CONNECT that is 1.0 (an ERROR).
        self.decoder.set_version(session.version());
        loop {
            let frame = match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => panic!(
                    "session wrote a frame our decoder refuses: {e} in {:?}",
                    self.buf
                ),
            };
            self.check_frame(&frame);
        }
    }

    fn check_frame(&mut self, frame: &Frame) {
        assert!(
            !self.error_seen,
            "{:?} written after an ERROR: {frame:?}",
            frame.command
        );
        match frame.command {
            Command::Connected | Command::Receipt => {}
            Command::Error => self.error_seen = true,
            Command::Message => {
                let id = frame
                    .get("message-id")
                    .and_then(|id| id.parse().ok())
                    .unwrap_or_else(|| panic!("MESSAGE without a numeric message-id: {frame:?}"));
                self.encoded.push(id);
            }
            other => panic!("a server does not send {other:?}: {frame:?}"),
        }
    }
}
