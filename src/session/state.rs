//! One connection's protocol state: frames in, bytes out and commands to owner shards.
//!
//! Nothing here touches a socket or a timer: the driver in `task.rs` feeds frames and owner
//! answers in, writes [`Session::out`] to the socket and asks [`Session::wants_read`] whether
//! to keep reading. That keeps every protocol rule testable without I/O.

use std::collections::{BTreeMap, VecDeque};

use foldhash::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Error;
use super::services::{ClientIds, ConnectionInfo, Connections, Services, SubscriptionInfo};
use crate::codec::{encode_into, escape_into, Command, Escaping, Frame, Version};
use crate::config::Config;
use crate::destination::{now_ms, DestinationName, Kind};
use crate::limits::{MAX_PREFETCH, MAX_WRITE_BUFFER_BYTES, PRODUCER_WINDOW};
use crate::message::{
    AckMode, DurableName, IdAllocator, Message, MessageId, QueueKey, Router, SessionId, SessionTx,
    SubId, ToOwner, ToSession, Token,
};
use crate::store::{Request, StoreTx};

/// The broker's name and version for the CONNECTED `server` header.
pub const SERVER: &str = concat!("stompbox/", env!("CARGO_PKG_VERSION"));

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for CONNECT.
    Connecting,
    /// CONNECTED was sent.
    Connected,
    /// DISCONNECT with a receipt: waiting for earlier effects, then close.
    Disconnecting,
    /// Close once the write buffer is flushed.
    Closing,
}

/// A live subscription as its session sees it.
#[derive(Debug)]
struct Sub {
    client_id: String,
    destination: DestinationName,
    ack: AckMode,
    /// Deliveries awaiting ACK/NACK (client modes), by delivery order ([`InFlight::seq`]):
    /// a cumulative ACK splits it, an individual one removes one entry, both in O(log n).
    in_flight: BTreeMap<u64, InFlight>,
    /// Until the SUBSCRIBE's RECEIPT (this token) is written, deliveries wait here, so the
    /// RECEIPT always comes before the subscription's first MESSAGE.
    held: Option<(Token, Vec<HeldDelivery>)>,
}

/// A delivery held until its subscription's RECEIPT: the message and its redelivery count.
type HeldDelivery = (Arc<Message>, u32);

/// A delivery awaiting ACK/NACK.
#[derive(Debug)]
struct InFlight {
    id: MessageId,
    /// Delivery order on this session (an aborted ACK puts it back at its place).
    seq: u64,
    ack_id: String,
    /// Stored: a transactional ACK deletes its row in the COMMIT's store transaction.
    persistent: bool,
}

/// One SEND/ACK/NACK buffered in an open transaction.
#[derive(Debug)]
enum TxOp {
    Send(Arc<Message>),
    Settle(Settle),
}

/// An ACK or NACK of some deliveries of one subscription.
#[derive(Debug)]
struct Settle {
    sub: SubId,
    destination: DestinationName,
    /// The deliveries, as they were in flight (an ABORT puts them back).
    taken: Vec<InFlight>,
    nack: bool,
}

impl Settle {
    fn ids(&self) -> Vec<MessageId> {
        self.taken.iter().map(|f| f.id).collect()
    }

    /// The stored ones among the deliveries.
    fn stored(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.taken.iter().filter(|f| f.persistent).map(|f| f.id)
    }
}

/// What a COMMIT still has to do once its store transaction is on disk.
#[derive(Debug)]
struct PendingCommit {
    topic_sends: Vec<Arc<Message>>,
    settles: Vec<Settle>,
}

/// A receipt waiting for the effects of its frame.
#[derive(Debug)]
struct PendingReceipt {
    token: Token,
    receipt_id: String,
    /// Owner answers still outstanding.
    remaining: usize,
    /// DISCONNECT: close once this receipt is written.
    then_close: bool,
    /// Not a RECEIPT but the ERROR that ends the connection: it waits for the receipts of
    /// earlier frames, so the client learns which of them took effect.
    error: Option<Frame>,
}

/// Negotiated heart-beat intervals in ms (0 = none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartBeat {
    /// The broker sends something at least this often.
    pub send_ms: u64,
    /// The client promised to send something at least this often.
    pub expect_ms: u64,
}

/// One connection's protocol state.
pub struct Session {
    id: SessionId,
    router: Arc<Router>,
    tx: SessionTx,
    config: Arc<Config>,
    ids: Arc<IdAllocator>,
    store: Option<StoreTx>,
    client_ids: Arc<ClientIds>,
    /// The CONNECT `client-id` this connection holds.
    client_id: Option<String>,
    connections: Arc<Connections>,
    /// The peer, for the admin API.
    peer: String,
    said_hello: Vec<bool>,
    phase: Phase,
    version: Version,
    heart_beat: HeartBeat,
    /// Encoded frames waiting to be written.
    pub out: BytesMut,
    subs: HashMap<SubId, Sub>,
    sub_ids: HashMap<String, SubId>,
    next_sub: u32,
    /// Ack id → delivery (subscription, message, [`InFlight::seq`]), for every delivery
    /// awaiting ACK/NACK: every ACK form resolves through it in O(1).
    ack_ids: HashMap<String, (SubId, MessageId, u64)>,
    transactions: HashMap<String, Vec<TxOp>>,
    receipts: VecDeque<PendingReceipt>,
    next_token: u64,
    /// SENDs posted to owners and not yet answered (the producer window).
    unanswered_sends: u32,
    /// The same SENDs by token (a COMMIT's sends share its token), with their count and
    /// bytes: a RECEIPT is written only once every SEND before its frame is answered, stored
    /// ones committed.
    sends: BTreeMap<Token, (u32, u64)>,
    /// Bytes of `sends` (the producer window in bytes, `producer_window_bytes`).
    send_bytes: u64,
    /// Bytes buffered in open transactions (`max_transaction_bytes`), charged to `memory`.
    transaction_bytes: u64,
    /// The global memory account.
    memory: Arc<AtomicU64>,
    /// Deliveries written so far, for [`InFlight::seq`].
    next_seq: u64,
    /// Bytes the driver took out of `out` ([`Session::take_output`]); with `out.len()`, the
    /// stream offset just past everything encoded so far.
    out_taken: u64,
    /// Bytes of the stream the driver has written to the socket ([`Session::wrote`]).
    written: u64,
    /// Auto-ack deliveries not yet entirely written to the socket, in stream order: the
    /// stream offset just past the MESSAGE frame, its subscription and message.
    unwritten: VecDeque<(u64, SubId, MessageId)>,
    /// Auto-ack deliveries written since the last [`Session::flush_credits`]: consumed.
    written_auto: HashMap<SubId, Vec<MessageId>>,
    /// Commands held back until the stream up to their offset is written, in order. An
    /// UNSUBSCRIBE waits here until the deliveries already encoded for its subscription reach
    /// the socket (so they count as consumed, and the rest goes back to the queue); whatever
    /// the client sends after it waits behind it, so effects keep the order of frames.
    deferred: VecDeque<(u64, usize, ToOwner)>,
    /// Destinations of subscriptions whose UNSUBSCRIBE is deferred (to route their acks).
    leaving: HashMap<SubId, DestinationName>,
    /// COMMITs whose store transaction is under way, by token. While any is, the session
    /// reads no further frames, so nothing sent after a COMMIT overtakes it.
    commits: HashMap<Token, PendingCommit>,
}

impl Session {
    /// A session in [`Phase::Connecting`]. `tx` is the sending side of the channel the driver
    /// reads [`ToSession`] answers from.
    pub fn new(id: SessionId, services: &Services, tx: SessionTx) -> Self {
        let shards = services.router.shards();
        Session {
            id,
            router: services.router.clone(),
            tx,
            config: services.config.clone(),
            ids: services.ids.clone(),
            store: services.store.clone(),
            client_ids: services.client_ids.clone(),
            client_id: None,
            connections: services.connections.clone(),
            peer: String::new(),
            said_hello: vec![false; shards],
            phase: Phase::Connecting,
            version: Version::V1_0,
            heart_beat: HeartBeat::default(),
            out: BytesMut::with_capacity(4096),
            subs: HashMap::default(),
            sub_ids: HashMap::default(),
            next_sub: 0,
            ack_ids: HashMap::default(),
            transactions: HashMap::default(),
            receipts: VecDeque::new(),
            next_token: 0,
            unanswered_sends: 0,
            sends: BTreeMap::new(),
            send_bytes: 0,
            transaction_bytes: 0,
            memory: services.memory.clone(),
            next_seq: 0,
            out_taken: 0,
            written: 0,
            unwritten: VecDeque::new(),
            written_auto: HashMap::default(),
            deferred: VecDeque::new(),
            leaving: HashMap::default(),
            commits: HashMap::default(),
        }
    }

    /// Names the peer (address, or the client behind a load balancer) for the admin API.
    pub fn set_peer(&mut self, peer: &str) {
        self.peer = peer.to_string();
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Where the session is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The negotiated version (1.0 until CONNECT).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The negotiated heart-beat.
    pub fn heart_beat(&self) -> HeartBeat {
        self.heart_beat
    }

    /// Should the driver read more frames? Not while closing, not during a COMMIT, not while
    /// the producer window (frames or bytes) is used up (flow control), not while too many
    /// RECEIPTs wait, and not while the client is not reading what we write.
    pub fn wants_read(&self) -> bool {
        let limits = &self.config.limits;
        matches!(self.phase, Phase::Connecting | Phase::Connected)
            && self.commits.is_empty()
            && self.unanswered_sends < PRODUCER_WINDOW
            && self.send_bytes < limits.producer_window_bytes as u64
            && self.receipts.len() < limits.max_pending_receipts
            && self.out.len() < MAX_WRITE_BUFFER_BYTES
    }

    /// Should the driver pull more owner answers? Not while the write buffer is full.
    pub fn wants_answers(&self) -> bool {
        self.out.len() < MAX_WRITE_BUFFER_BYTES
    }

    /// Handles one frame from the client. On error the ERROR frame is already queued in
    /// [`Session::out`] and the session is [`Phase::Closing`]; the error is returned for logging.
    pub fn handle_frame(&mut self, mut frame: Frame) -> Result<(), Error> {
        // Kept aside: a SEND hands its headers over to the message it becomes.
        let receipt = frame.get("receipt").map(str::to_owned);
        let result = self.dispatch(&mut frame);
        if let Err(e) = &result {
            self.fail(e, receipt.as_deref());
        }
        result
    }

    /// Queues the ERROR frame for `error` and moves to [`Phase::Closing`].
    ///
    /// Receipts of earlier frames still waiting for their effects are written first (the
    /// client must learn which frames took effect); meanwhile nothing more is read, and the
    /// driver gives up waiting after its linger ([`Session::give_up_waiting`]). A pending
    /// DISCONNECT receipt is dropped: the connection did not end well.
    pub fn fail(&mut self, error: &Error, receipt: Option<&str>) {
        if self.phase == Phase::Closing {
            return;
        }
        if self.failing() {
            // The first ERROR stands. The failure that brings us here may have answered what
            // it waited for (a SEND the store rejected while the broker shuts down, its receipt
            // taken away): then it goes out now, not when the driver gives up waiting.
            self.write_ready_receipts();
            return;
        }
        let frame = error.to_frame(receipt);
        self.receipts.retain(|p| !p.then_close);
        if self.receipts.is_empty() {
            self.write_frame(&frame);
            self.phase = Phase::Closing;
            return;
        }
        let token = self.new_token();
        self.receipts.push_back(PendingReceipt {
            token,
            receipt_id: String::new(),
            remaining: 0,
            then_close: true,
            error: Some(frame),
        });
        self.phase = Phase::Disconnecting;
        self.write_ready_receipts();
    }

    /// True while an ERROR waits behind earlier receipts (see [`Session::fail`]).
    pub fn failing(&self) -> bool {
        self.receipts.back().is_some_and(|p| p.error.is_some())
    }

    /// The earlier receipts took too long (their effects are held, e.g. by flow control):
    /// write the ERROR now and close without them.
    pub fn give_up_waiting(&mut self) {
        if let Some(error) = self.receipts.pop_back().and_then(|p| p.error) {
            self.receipts.clear();
            self.write_frame(&error);
            self.phase = Phase::Closing;
        }
    }

    /// Handles one answer from an owner shard or the store writer.
    pub fn handle_answer(&mut self, answer: ToSession) {
        match answer {
            ToSession::Deliver {
                sub,
                message,
                redelivery_count,
            } => self.write_message(sub, &message, redelivery_count),
            ToSession::Accepted { token } => {
                self.unanswered_sends = self.unanswered_sends.saturating_sub(1);
                if let Some(t) = token {
                    self.send_answered(t);
                    self.complete(t);
                }
            }
            ToSession::Rejected { token, reason } => {
                self.unanswered_sends = self.unanswered_sends.saturating_sub(1);
                if let Some(t) = token {
                    self.send_answered(t);
                }
                let receipt = token.and_then(|t| self.take_receipt(t));
                self.fail(&Error::Store(reason.to_string()), receipt.as_deref());
            }
            ToSession::Committed { token, result } => match result {
                Ok(()) => self.committed(token),
                Err(reason) => {
                    let receipt = self.take_receipt(token);
                    self.fail(&Error::Store(reason.to_string()), receipt.as_deref());
                }
            },
            ToSession::Done { token } => self.complete(token),
            ToSession::LimitReached { name, max, token } => {
                let receipt = token.and_then(|t| self.take_receipt(t));
                self.fail(&Error::Limit(name, max), receipt.as_deref());
            }
            ToSession::SlowConsumer { destination } => {
                self.fail(&Error::SlowConsumer(destination.to_string()), None);
            }
        }
    }

    /// Hands the driver everything encoded so far, to write to the socket.
    pub fn take_output(&mut self) -> Bytes {
        let bytes = self.out.split().freeze();
        self.out_taken += bytes.len() as u64;
        bytes
    }

    /// The driver wrote `n` more bytes of what it took to the socket: auto-ack deliveries now
    /// entirely there are consumed (acked at the next [`Session::flush_credits`]), and
    /// deferred commands whose turn came are posted.
    pub fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        while let Some(&(end, sub, id)) = self.unwritten.front() {
            if end > self.written {
                break;
            }
            self.unwritten.pop_front();
            self.written_auto.entry(sub).or_default().push(id);
        }
        if self
            .deferred
            .front()
            .is_some_and(|(at, ..)| *at <= self.written)
        {
            // Acks of what was written go first: the owner must see them before an
            // UNSUBSCRIBE that would otherwise put those deliveries back.
            self.flush_credits();
            while self
                .deferred
                .front()
                .is_some_and(|(at, ..)| *at <= self.written)
            {
                let (_, shard, cmd) = self.deferred.pop_front().expect("front exists");
                self.post_now(shard, cmd);
            }
        }
    }

    /// Acks the auto-ack deliveries written to the socket since the last call: they are
    /// consumed, and their subscriptions get the credit back.
    pub fn flush_credits(&mut self) {
        if self.written_auto.is_empty() {
            return;
        }
        for (sub, ids) in std::mem::take(&mut self.written_auto) {
            let destination = match self.subs.get(&sub) {
                Some(s) => s.destination.clone(),
                None => match self.leaving.get(&sub) {
                    Some(d) => d.clone(),
                    // Unsubscribed after its last write: the owner holds nothing of it.
                    None => continue,
                },
            };
            let shard = self.router.owner_of(&destination);
            let cmd = ToOwner::Ack {
                session: self.id,
                sub,
                destination,
                ids,
                token: None,
            };
            // Not deferred: these deliveries came before anything that waits there.
            self.post_now(shard, cmd);
        }
    }

    /// The connection is gone: owners drop its consumers and requeue what it had unacked
    /// (auto-ack deliveries that never reached the socket included). Open transactions are
    /// aborted implicitly (their buffered work is simply dropped).
    pub fn close(&mut self) {
        self.connections.remove(self.id.0);
        if let Some(id) = self.client_id.take() {
            self.client_ids.release(&id);
        }
        self.transactions.clear();
        self.release_transaction_bytes(self.transaction_bytes);
        self.flush_credits();
        while let Some((_, shard, cmd)) = self.deferred.pop_front() {
            self.post_now(shard, cmd);
        }
        for shard in 0..self.said_hello.len() {
            if self.said_hello[shard] {
                self.router
                    .post(shard, ToOwner::Goodbye { session: self.id });
            }
        }
        self.said_hello.iter_mut().for_each(|h| *h = false);
    }

    // ---- frame handling ----

    fn dispatch(&mut self, frame: &mut Frame) -> Result<(), Error> {
        use Command as C;
        match (self.phase, frame.command) {
            (Phase::Connecting, C::Connect | C::Stomp) => self.on_connect(frame),
            (Phase::Connecting, cmd) => Err(Error::NotConnected(cmd)),
            (_, C::Connect | C::Stomp) => Err(Error::AlreadyConnected),
            (Phase::Disconnecting | Phase::Closing, _) => Ok(()),
            (_, C::Send) => self.on_send(frame),
            (_, C::Subscribe) => self.on_subscribe(frame),
            (_, C::Unsubscribe) => self.on_unsubscribe(frame),
            (_, C::Ack) => self.on_settle(frame, false),
            (_, C::Nack) => self.on_settle(frame, true),
            (_, C::Begin) => self.on_begin(frame),
            (_, C::Commit) => self.on_commit(frame),
            (_, C::Abort) => self.on_abort(frame),
            (_, C::Disconnect) => self.on_disconnect(frame),
            (_, cmd @ (C::Connected | C::Message | C::Receipt | C::Error)) => {
                Err(Error::UnexpectedCommand(cmd))
            }
        }
    }

    fn on_connect(&mut self, frame: &Frame) -> Result<(), Error> {
        let accept = frame.get("accept-version");
        let version = Version::negotiate(accept)
            .ok_or_else(|| Error::UnsupportedVersion(accept.unwrap_or("").to_string()))?;
        let (cx, cy) = match frame.get("heart-beat") {
            None => (0, 0),
            Some(v) => parse_heart_beat(v).ok_or_else(|| {
                Error::InvalidHeader(
                    "heart-beat",
                    v.to_string(),
                    "expected two integers, e.g. 10000,10000",
                )
            })?,
        };
        super::auth::authenticate(frame.get("login"), frame.get("passcode"))?;
        if let Some(id) = frame.get("client-id") {
            if !self.client_ids.claim(id) {
                return Err(Error::ClientIdInUse(id.to_string()));
            }
            self.client_id = Some(id.to_string());
        }
        let min = self.config.heart_beat.min_interval_ms;
        let send_ms = if cy == 0 { 0 } else { cy.max(min) };
        let expect_ms = if cx == 0 { 0 } else { cx.max(min) };
        self.heart_beat = HeartBeat { send_ms, expect_ms };
        self.version = version;
        self.phase = Phase::Connected;
        self.connections.insert(ConnectionInfo {
            id: self.id.0,
            peer: self.peer.clone(),
            version: version.as_str().to_string(),
            client_id: self.client_id.clone(),
            login: frame.get("login").map(str::to_string),
            connected_at: now_ms(),
            subscriptions: Vec::new(),
        });
        let connected = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("session", format!("session-{}", self.id.0))
            .header("server", SERVER)
            .header("heart-beat", format!("{send_ms},{expect_ms}"));
        self.write_frame(&connected);
        Ok(())
    }

    fn on_send(&mut self, frame: &mut Frame) -> Result<(), Error> {
        let transaction = frame.get("transaction").map(str::to_owned);
        let receipt = frame.get("receipt").map(str::to_owned);
        let message = Arc::new(self.message(frame)?);
        match transaction {
            Some(tx) => {
                self.push_tx_op(&tx, TxOp::Send(message))?;
                self.register_receipt(receipt.as_deref(), 0);
            }
            None => {
                let token = self.register_receipt(receipt.as_deref(), 1);
                self.post_send(message, token);
            }
        }
        Ok(())
    }

    fn on_subscribe(&mut self, frame: &Frame) -> Result<(), Error> {
        let dest = required(frame, "destination")?;
        let destination = DestinationName::parse(dest)?;
        let client_id = match frame.get("id") {
            Some(id) => id.to_string(),
            None if self.version == Version::V1_0 => dest.to_string(),
            None => return Err(Error::MissingHeader(Command::Subscribe, "id")),
        };
        if self.sub_ids.contains_key(&client_id) {
            return Err(Error::DuplicateSubscription(client_id));
        }
        let max = self.config.limits.max_subscriptions_per_connection;
        if self.subs.len() >= max {
            return Err(Error::Limit("max_subscriptions_per_connection", max));
        }
        let ack = match frame.get("ack") {
            None => AckMode::Auto,
            Some(v) => AckMode::parse(v).ok_or_else(|| {
                Error::InvalidHeader(
                    "ack",
                    v.to_string(),
                    "expected auto, client or client-individual",
                )
            })?,
        };
        let durable = self.durable_name(frame, &destination, Some(&client_id))?;
        let prefetch = self.prefetch(frame, &destination, durable.is_some())?;
        let sub = SubId(self.next_sub);
        self.next_sub += 1;
        self.sub_ids.insert(client_id.clone(), sub);
        let s = Sub {
            client_id,
            destination: destination.clone(),
            ack,
            in_flight: BTreeMap::new(),
            held: None,
        };
        self.subs.insert(sub, s);
        let info = SubscriptionInfo {
            id: self.subs[&sub].client_id.clone(),
            destination: destination.to_string(),
            ack: match ack {
                AckMode::Auto => "auto",
                AckMode::Client => "client",
                AckMode::ClientIndividual => "client-individual",
            },
            prefetch,
            durable: durable.as_ref().map(|d| d.key().to_string()),
        };
        self.connections
            .update(self.id.0, |c| c.subscriptions.push(info));
        let token = self.receipt_token(frame, 1);
        if let (Some(t), Some(s)) = (token, self.subs.get_mut(&sub)) {
            s.held = Some((t, Vec::new()));
        }
        let shard = self.router.owner_of(&destination);
        let cmd = ToOwner::Subscribe {
            session: self.id,
            sub,
            destination,
            ack,
            prefetch,
            durable,
            token,
        };
        self.post(shard, cmd);
        Ok(())
    }

    fn on_unsubscribe(&mut self, frame: &Frame) -> Result<(), Error> {
        let client_id = match (frame.get("id"), self.version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(Error::MissingHeader(Command::Unsubscribe, "id")),
        };
        let live = self.sub_ids.remove(client_id);
        let (sub, destination) = match live {
            Some(sub) => {
                let s = self
                    .subs
                    .remove(&sub)
                    .expect("sub_ids and subs hold the same subscriptions");
                for f in s.in_flight.values() {
                    self.ack_ids.remove(&f.ack_id);
                }
                if self.unwritten.iter().any(|(_, u, _)| *u == sub) {
                    self.leaving.insert(sub, s.destination.clone());
                }
                (sub, s.destination)
            }
            // Deleting a durable subscription that is not active on this connection needs
            // its topic, to find the shard that holds it.
            None => match (frame.get("destination"), self.has_durable_header(frame)) {
                (Some(d), true) => (SubId(u32::MAX), DestinationName::parse(d)?),
                _ => return Err(Error::UnknownSubscription(client_id.to_string())),
            },
        };
        let gone = client_id.to_string();
        self.connections
            .update(self.id.0, |c| c.subscriptions.retain(|s| s.id != gone));
        let destroy = match self.has_durable_header(frame) {
            true => self.durable_name(frame, &destination, Some(client_id))?,
            false => None,
        };
        let token = self.receipt_token(frame, 1);
        let shard = self.router.owner_of(&destination);
        let cmd = ToOwner::Unsubscribe {
            session: self.id,
            sub,
            destination,
            destroy,
            token,
        };
        // Deliveries already encoded for it are written (and consumed) first.
        let end = self.stream_end();
        if end > self.written {
            self.defer(end, shard, cmd);
        } else {
            self.post(shard, cmd);
        }
        Ok(())
    }

    fn on_settle(&mut self, frame: &Frame, nack: bool) -> Result<(), Error> {
        let (sub, seq) = self.resolve_ack(frame)?;
        if let Some(tx) = frame.get("transaction") {
            if !self.transactions.contains_key(tx) {
                return Err(Error::UnknownTransaction(tx.to_string()));
            }
        }
        let s = self
            .subs
            .get_mut(&sub)
            .expect("resolve_ack returns live subscriptions");
        // `client` mode is cumulative: everything delivered before it, too.
        let taken: Vec<InFlight> = match s.ack {
            AckMode::Client => {
                let later = s.in_flight.split_off(&(seq + 1));
                std::mem::replace(&mut s.in_flight, later)
                    .into_values()
                    .collect()
            }
            _ => s.in_flight.remove(&seq).into_iter().collect(),
        };
        let destination = s.destination.clone();
        for f in &taken {
            self.ack_ids.remove(&f.ack_id);
        }
        let settle = Settle {
            sub,
            destination,
            taken,
            nack,
        };
        match frame.get("transaction") {
            Some(tx) => {
                self.push_tx_op(tx, TxOp::Settle(settle))?;
                self.receipt_now(frame);
            }
            None => {
                let token = self.receipt_token(frame, 1);
                self.post_settle(settle, token);
            }
        }
        Ok(())
    }

    fn on_begin(&mut self, frame: &Frame) -> Result<(), Error> {
        let tx = required(frame, "transaction")?;
        if self.transactions.contains_key(tx) {
            return Err(Error::DuplicateTransaction(tx.to_string()));
        }
        let max = self.config.limits.max_transactions_per_connection;
        if self.transactions.len() >= max {
            return Err(Error::Limit("max_transactions_per_connection", max));
        }
        self.transactions.insert(tx.to_string(), Vec::new());
        self.receipt_now(frame);
        Ok(())
    }

    /// COMMIT: with a store, persistent sends to queues and deletes of acked stored messages
    /// go to disk in ONE store transaction; the writer then hands the queue sends to their
    /// owners, and the session posts topic sends and the acks. Without a store, everything is
    /// posted at once.
    fn on_commit(&mut self, frame: &Frame) -> Result<(), Error> {
        let tx = required(frame, "transaction")?;
        let ops = self.take_transaction(tx)?;
        let Some(store) = self.store.clone() else {
            let token = self.receipt_token(frame, ops.len());
            for op in ops {
                match op {
                    TxOp::Send(m) => self.post_send(m, token),
                    TxOp::Settle(s) => self.post_settle(s, token),
                }
            }
            return Ok(());
        };
        let mut sends = Vec::new();
        let mut pending = PendingCommit {
            topic_sends: Vec::new(),
            settles: Vec::new(),
        };
        let mut deletes = Vec::new();
        for op in ops {
            match op {
                TxOp::Send(m) if m.destination.kind() == Kind::Queue => {
                    let key = QueueKey::queue(m.destination.clone());
                    let shard = self.router.owner_of(&m.destination);
                    sends.push((key, shard, m));
                }
                TxOp::Send(m) => pending.topic_sends.push(m),
                TxOp::Settle(s) => {
                    if !s.nack {
                        deletes.extend(s.stored());
                    }
                    pending.settles.push(s);
                }
            }
        }
        let token = match self.receipt_token(frame, 1) {
            Some(t) => t,
            None => self.new_token(),
        };
        self.commits.insert(token, pending);
        let _ = store.send(Request::Commit {
            sends,
            deletes,
            session: self.tx.clone(),
            token,
        });
        Ok(())
    }

    /// The store transaction of a COMMIT is on disk: post what remains of it.
    fn committed(&mut self, token: Token) {
        let Some(pending) = self.commits.remove(&token) else {
            // A durable subscription's record is on disk: its SUBSCRIBE's receipt may go.
            self.complete(token);
            return;
        };
        let more = pending.topic_sends.len() + pending.settles.len();
        if let Some(p) = self.receipts.iter_mut().find(|p| p.token == token) {
            p.remaining += more;
        }
        for m in pending.topic_sends {
            self.post_send(m, Some(token));
        }
        for s in pending.settles {
            self.post_settle(s, Some(token));
        }
        self.complete(token);
    }

    fn on_abort(&mut self, frame: &Frame) -> Result<(), Error> {
        let tx = required(frame, "transaction")?;
        let ops = self.take_transaction(tx)?;
        // Sends are dropped. ACKs and NACKs inside it are undone: their deliveries are in
        // flight again under the same ack ids, and nothing is sent. That is what ActiveMQ
        // does; redelivering them at once hangs the Ruby stomp gem, and would make the
        // client's own re-ACK right behind the ABORT an unknown ack id.
        for op in ops {
            if let TxOp::Settle(settle) = op {
                self.restore(settle);
            }
        }
        self.receipt_now(frame);
        Ok(())
    }

    /// Puts the deliveries of an aborted ACK/NACK back in flight. A subscription that ended
    /// meanwhile had them requeued by its owner already.
    fn restore(&mut self, settle: Settle) {
        let Some(s) = self.subs.get_mut(&settle.sub) else {
            return;
        };
        for f in settle.taken {
            self.ack_ids
                .insert(f.ack_id.clone(), (settle.sub, f.id, f.seq));
            s.in_flight.insert(f.seq, f);
        }
    }

    fn on_disconnect(&mut self, frame: &Frame) -> Result<(), Error> {
        match frame.get("receipt") {
            None => self.phase = Phase::Closing,
            Some(receipt) => {
                // Everything posted before this frame is done once every shard we talked to
                // has answered a barrier posted after it.
                let shards: Vec<usize> = (0..self.said_hello.len())
                    .filter(|&s| self.said_hello[s])
                    .collect();
                let token = self.new_token();
                self.receipts.push_back(PendingReceipt {
                    token,
                    receipt_id: receipt.to_string(),
                    remaining: shards.len(),
                    then_close: true,
                    error: None,
                });
                for shard in shards {
                    self.post(
                        shard,
                        ToOwner::Barrier {
                            session: self.id,
                            token,
                        },
                    );
                }
                self.phase = Phase::Disconnecting;
                self.write_ready_receipts();
            }
        }
        Ok(())
    }

    // ---- helpers ----

    /// Builds the message a SEND carries, with a fresh id. Takes the frame's headers (and
    /// body) instead of copying them, so call it last.
    fn message(&self, frame: &mut Frame) -> Result<Message, Error> {
        let destination = DestinationName::parse(required(frame, "destination")?)?;
        let priority = match frame.get("priority") {
            None => 4,
            Some(v) => v
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 9)
                .ok_or_else(|| {
                    Error::InvalidHeader(
                        "priority",
                        v.to_string(),
                        "expected an integer from 0 to 9",
                    )
                })?,
        };
        let expires = match frame.get("expires") {
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                Error::InvalidHeader(
                    "expires",
                    v.to_string(),
                    "expected ms since the epoch, 0 for never",
                )
            })?,
            None => match self.config.destinations.ttl_for(destination.as_str()) {
                0 => 0,
                ttl => now_ms() + ttl,
            },
        };
        let persistent = frame.get("persistent") == Some("true");
        let mut headers = std::mem::take(&mut frame.headers.0);
        headers.retain(|(k, _)| !BROKER_OWNED.contains(&k.as_str()));
        Ok(Message {
            id: self.ids.next(),
            destination,
            headers,
            body: std::mem::take(&mut frame.body),
            priority,
            persistent,
            expires,
        })
    }

    fn has_durable_header(&self, frame: &Frame) -> bool {
        frame.get("activemq.subscriptionName").is_some()
            || frame.get("durable-subscription-name").is_some()
            || frame.get("durable") == Some("true")
    }

    /// The durable subscription a SUBSCRIBE or UNSUBSCRIBE names: ActiveMQ's
    /// `activemq.subscriptionName`, Artemis' `durable-subscription-name`, or RabbitMQ's
    /// `durable:true` (named by the subscription `id`). It hangs off the CONNECT `client-id`
    /// (RabbitMQ style needs none).
    fn durable_name(
        &self,
        frame: &Frame,
        destination: &DestinationName,
        sub_id: Option<&str>,
    ) -> Result<Option<DurableName>, Error> {
        let explicit = frame
            .get("activemq.subscriptionName")
            .or_else(|| frame.get("durable-subscription-name"));
        let name = match (explicit, frame.get("durable")) {
            (Some(n), _) => n,
            (None, Some("true")) => match sub_id {
                Some(id) => id,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        if destination.kind() != Kind::Topic {
            return Err(Error::DurableQueue(destination.to_string()));
        }
        let client_id = match (&self.client_id, explicit) {
            (Some(c), _) => c.as_str(),
            (None, None) => "",
            (None, Some(_)) => return Err(Error::DurableWithoutClientId),
        };
        Ok(Some(DurableName {
            client_id: Arc::from(client_id),
            name: Arc::from(name),
        }))
    }

    fn prefetch(
        &self,
        frame: &Frame,
        destination: &DestinationName,
        durable: bool,
    ) -> Result<u32, Error> {
        let header = ["activemq.prefetchSize", "prefetch-count"]
            .into_iter()
            .find_map(|h| frame.get(h).map(|v| (h, v)));
        let d = &self.config.destinations;
        match header {
            None => Ok(match destination.kind() {
                Kind::Queue => d.queue_prefetch,
                Kind::Topic if durable => d.durable_prefetch,
                Kind::Topic => d.topic_prefetch,
            }),
            Some((name, v)) => {
                let n: i64 = v.trim().parse().map_err(|_| {
                    Error::InvalidHeader(
                        if name == "prefetch-count" {
                            "prefetch-count"
                        } else {
                            "activemq.prefetchSize"
                        },
                        v.to_string(),
                        "expected a non-negative integer",
                    )
                })?;
                // 0 or negative means "no limit" to RabbitMQ users; the broker's cap still holds.
                Ok(if n <= 0 {
                    MAX_PREFETCH
                } else {
                    (n as u64).min(u64::from(MAX_PREFETCH)) as u32
                })
            }
        }
    }

    /// Finds the delivery an ACK/NACK refers to: by `id` (1.2's ack id), by `message-id` and
    /// `subscription` (1.1), or by `message-id` alone (1.0). Clients that mix the styles are
    /// served as long as the reference is unambiguous. Returns the subscription and the
    /// delivery's [`InFlight::seq`]; hash lookups only, however many deliveries are in flight.
    fn resolve_ack(&self, frame: &Frame) -> Result<(SubId, u64), Error> {
        let cmd = frame.command;
        if let Some(id) = frame.get("id") {
            if let Some(&(sub, _, seq)) = self.ack_ids.get(id) {
                return Ok((sub, seq));
            }
            if self.version == Version::V1_2 && frame.get("message-id").is_none() {
                return Err(Error::UnknownAck(id.to_string()));
            }
        }
        let Some(mid) = frame.get("message-id") else {
            let needed = if self.version == Version::V1_2 {
                "id"
            } else {
                "message-id"
            };
            return Err(Error::MissingHeader(cmd, needed));
        };
        let wanted = match frame.get("subscription") {
            Some(client_id) => Some(
                *self
                    .sub_ids
                    .get(client_id)
                    .ok_or_else(|| Error::UnknownSubscription(client_id.to_string()))?,
            ),
            None => None,
        };
        // The ack id is the message-id, or `<message-id>-<sub>` for a message that was already
        // in flight on another subscription of this connection (see `write_message`).
        if let Some(&(sub, _, seq)) = self.ack_ids.get(mid) {
            if wanted.is_none_or(|w| w == sub) {
                return Ok((sub, seq));
            }
        }
        let suffixed = |sub: SubId| self.ack_ids.get(&format!("{mid}-{}", sub.0));
        let found = match wanted {
            Some(sub) => suffixed(sub),
            None => self.subs.keys().find_map(|&sub| suffixed(sub)),
        };
        found
            .map(|&(sub, _, seq)| (sub, seq))
            .ok_or_else(|| Error::UnknownAck(mid.to_string()))
    }

    fn push_tx_op(&mut self, tx: &str, op: TxOp) -> Result<(), Error> {
        let max = self.config.limits.max_transaction_frames;
        let max_bytes = self.config.limits.max_transaction_bytes;
        let ops = self
            .transactions
            .get_mut(tx)
            .ok_or_else(|| Error::UnknownTransaction(tx.to_string()))?;
        if ops.len() >= max {
            return Err(Error::Limit("max_transaction_frames", max));
        }
        let bytes = match &op {
            TxOp::Send(m) => m.weight(),
            TxOp::Settle(_) => 0,
        };
        if self.transaction_bytes + bytes > max_bytes as u64 {
            return Err(Error::Limit("max_transaction_bytes", max_bytes));
        }
        ops.push(op);
        self.transaction_bytes += bytes;
        self.memory.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Ends transaction `tx` (COMMIT or ABORT): its buffered work, no longer charged here.
    fn take_transaction(&mut self, tx: &str) -> Result<Vec<TxOp>, Error> {
        let ops = self
            .transactions
            .remove(tx)
            .ok_or_else(|| Error::UnknownTransaction(tx.to_string()))?;
        let bytes = ops
            .iter()
            .map(|op| match op {
                TxOp::Send(m) => m.weight(),
                TxOp::Settle(_) => 0,
            })
            .sum();
        self.release_transaction_bytes(bytes);
        Ok(ops)
    }

    fn release_transaction_bytes(&mut self, bytes: u64) {
        self.transaction_bytes -= bytes;
        self.memory.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Posts a SEND; it is tracked by `token` (or a fresh one) until its owner answers.
    fn post_send(&mut self, message: Arc<Message>, token: Option<Token>) {
        let shard = self.router.owner_of(&message.destination);
        let token = token.unwrap_or_else(|| self.new_token());
        let bytes = message.weight();
        let entry = self.sends.entry(token).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += bytes;
        self.send_bytes += bytes;
        let token = Some(token);
        self.unanswered_sends += 1;
        self.post(
            shard,
            ToOwner::Send {
                session: self.id,
                message,
                token,
            },
        );
    }

    fn post_settle(&mut self, s: Settle, token: Option<Token>) {
        let shard = self.router.owner_of(&s.destination);
        let session = self.id;
        let ids = s.ids();
        let Settle {
            sub,
            destination,
            nack,
            ..
        } = s;
        let cmd = if nack {
            ToOwner::Nack {
                session,
                sub,
                destination,
                ids,
                token,
            }
        } else {
            ToOwner::Ack {
                session,
                sub,
                destination,
                ids,
                token,
            }
        };
        self.post(shard, cmd);
    }

    /// Posts `cmd` to `shard`'s owner, behind any deferred commands.
    fn post(&mut self, shard: usize, cmd: ToOwner) {
        match self.deferred.back() {
            Some(&(at, ..)) => self.defer(at, shard, cmd),
            None => self.post_now(shard, cmd),
        }
    }

    /// Holds `cmd` until the stream is written up to `at`.
    fn defer(&mut self, at: u64, shard: usize, cmd: ToOwner) {
        self.deferred.push_back((at, shard, cmd));
    }

    /// The stream offset just past everything encoded so far.
    fn stream_end(&self) -> u64 {
        self.out_taken + self.out.len() as u64
    }

    /// One SEND tracked by `token` was answered.
    fn send_answered(&mut self, token: Token) {
        if let Some((n, bytes)) = self.sends.get_mut(&token) {
            *n -= 1;
            if *n == 0 {
                // A COMMIT's sends share a token: their bytes are released together.
                self.send_bytes -= *bytes;
                self.sends.remove(&token);
            }
        }
    }

    fn post_now(&mut self, shard: usize, cmd: ToOwner) {
        if let ToOwner::Unsubscribe { sub, .. } = &cmd {
            self.leaving.remove(sub);
        }
        if !self.said_hello[shard] {
            self.said_hello[shard] = true;
            self.router.post(
                shard,
                ToOwner::Hello {
                    session: self.id,
                    tx: self.tx.clone(),
                },
            );
        }
        self.router.post(shard, cmd);
    }

    fn new_token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    /// Registers the frame's receipt (if any) to be written after `effects` owner answers.
    fn receipt_token(&mut self, frame: &Frame, effects: usize) -> Option<Token> {
        let receipt = frame.get("receipt").map(str::to_owned);
        self.register_receipt(receipt.as_deref(), effects)
    }

    /// Registers `receipt` (if any) to be written after `effects` owner answers.
    fn register_receipt(&mut self, receipt: Option<&str>, effects: usize) -> Option<Token> {
        let receipt = receipt?;
        let token = self.new_token();
        self.receipts.push_back(PendingReceipt {
            token,
            receipt_id: receipt.to_string(),
            remaining: effects,
            then_close: false,
            error: None,
        });
        self.write_ready_receipts();
        Some(token)
    }

    /// A frame whose effect is already complete: its receipt follows any still pending.
    fn receipt_now(&mut self, frame: &Frame) {
        self.receipt_token(frame, 0);
    }

    /// Removes the receipt waiting on `token` (its frame failed) and returns its id, for the
    /// ERROR's `receipt-id`.
    fn take_receipt(&mut self, token: Token) -> Option<String> {
        let i = self.receipts.iter().position(|p| p.token == token)?;
        self.receipts.remove(i).map(|p| p.receipt_id)
    }

    fn complete(&mut self, token: Token) {
        if let Ok(i) = self.receipts.binary_search_by_key(&token, |p| p.token) {
            let p = &mut self.receipts[i];
            p.remaining = p.remaining.saturating_sub(1);
        }
        self.write_ready_receipts();
    }

    /// Writes receipts whose effects are all done, in the order their frames arrived, once
    /// every SEND before their frame is answered too.
    fn write_ready_receipts(&mut self) {
        if self.phase == Phase::Closing {
            // Past an ERROR (or the DISCONNECT's RECEIPT) the client reads no more frames.
            return;
        }
        let oldest_send = self.sends.first_key_value().map(|(t, _)| *t);
        while self
            .receipts
            .front()
            .is_some_and(|p| p.remaining == 0 && oldest_send.is_none_or(|t| t > p.token))
        {
            let p = self.receipts.pop_front().expect("front exists");
            let frame = match p.error {
                Some(error) => error,
                None => Frame::new(Command::Receipt).header("receipt-id", p.receipt_id),
            };
            self.write_frame(&frame);
            if p.then_close {
                self.phase = Phase::Closing;
            }
            self.release_held(p.token);
        }
    }

    /// Writes the deliveries a subscription held back until its SUBSCRIBE's RECEIPT.
    fn release_held(&mut self, token: Token) {
        let ready: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.held.as_ref().is_some_and(|(t, _)| *t == token))
            .map(|(id, _)| *id)
            .collect();
        for sub in ready {
            let held = self.subs.get_mut(&sub).and_then(|s| s.held.take());
            for (m, count) in held.map(|(_, h)| h).unwrap_or_default() {
                self.write_message(sub, &m, count);
            }
        }
    }

    fn write_frame(&mut self, frame: &Frame) {
        let mut buf = Vec::with_capacity(crate::codec::encoded_len(frame));
        encode_into(&mut buf, frame, self.version);
        self.out.extend_from_slice(&buf);
    }

    /// Encodes a MESSAGE frame straight into the write buffer (no intermediate [`Frame`]).
    fn write_message(&mut self, sub_id: SubId, m: &Arc<Message>, redelivery_count: u32) {
        if self.phase == Phase::Closing {
            // Past the DISCONNECT's RECEIPT or an ERROR the client reads no more: the
            // delivery is not written, so its owner takes it back at the Goodbye.
            return;
        }
        let Some(sub) = self.subs.get_mut(&sub_id) else {
            // A late delivery for a subscription closed meanwhile: never written, so the
            // owner puts it back in the queue when it processes the UNSUBSCRIBE.
            return;
        };
        if let Some((_, held)) = &mut sub.held {
            held.push((m.clone(), redelivery_count));
            return;
        }
        let esc = Escaping::for_frame(self.version, Command::Message);
        let out = &mut self.out;
        out.reserve(
            160 + m.body.len()
                + m.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 2)
                    .sum::<usize>(),
        );
        out.put_slice(b"MESSAGE\nsubscription:");
        escape_into(out, &sub.client_id, esc, false);
        out.put_slice(b"\ndestination:");
        escape_into(out, m.destination.as_str(), esc, false);
        let mut digits = [0u8; 20];
        let id = decimal(m.id.0, &mut digits);
        out.put_slice(b"\nmessage-id:");
        out.put_slice(id);
        if sub.ack != AckMode::Auto {
            // The ack id is the message-id (clients that put either in `id` are served),
            // unless that message is already in flight on another subscription here.
            let id = std::str::from_utf8(id).unwrap_or_default();
            let ack_id = if self.ack_ids.contains_key(id) {
                format!("{id}-{}", sub_id.0)
            } else {
                id.to_string()
            };
            if self.version == Version::V1_2 {
                out.put_slice(b"\nack:");
                out.put_slice(ack_id.as_bytes());
            }
            self.next_seq += 1;
            let seq = self.next_seq;
            self.ack_ids.insert(ack_id.clone(), (sub_id, m.id, seq));
            sub.in_flight.insert(
                seq,
                InFlight {
                    id: m.id,
                    seq,
                    ack_id,
                    persistent: m.persistent,
                },
            );
        }
        let auto = sub.ack == AckMode::Auto;
        if redelivery_count > 0 {
            let _ = write!(
                out,
                "\nredelivered:true\nredelivery-count:{redelivery_count}"
            );
        }
        for (k, v) in &m.headers {
            out.put_u8(b'\n');
            escape_into(out, k, esc, true);
            out.put_u8(b':');
            escape_into(out, v, esc, false);
        }
        out.put_slice(b"\ncontent-length:");
        out.put_slice(decimal(m.body.len() as u64, &mut digits));
        out.put_slice(b"\n\n");
        out.put_slice(&m.body);
        self.out.put_u8(0);
        if auto {
            // Consumed once these bytes reach the socket (see `wrote`).
            self.unwritten.push_back((self.stream_end(), sub_id, m.id));
        }
    }
}

/// Headers of a SEND that the broker sets itself on the MESSAGE, or that only concern the SEND.
const BROKER_OWNED: [&str; 9] = [
    "destination",
    "receipt",
    "transaction",
    "content-length",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "redelivery-count",
];

fn required<'a>(frame: &'a Frame, name: &'static str) -> Result<&'a str, Error> {
    frame
        .get(name)
        .ok_or(Error::MissingHeader(frame.command, name))
}

fn parse_heart_beat(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Formats `n` in decimal into `buf` without allocating; returns the digits.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::*;
    use crate::codec::Decoder;
    use crate::destination::Ctx;
    use crate::shard::Owner;

    /// One shard's owner and any number of sessions, pumped by hand: no sockets, no runtime.
    struct Pair {
        owner: Owner,
        mailbox: UnboundedReceiver<ToOwner>,
        services: Services,
        next: u64,
    }

    struct Client {
        session: Session,
        rx: UnboundedReceiver<ToSession>,
        decoder: Decoder,
    }

    impl Pair {
        fn new() -> Pair {
            let (tx, mailbox) = unbounded_channel();
            let router = Arc::new(Router::new(vec![tx]));
            let config = Arc::new(Config::default());
            let services = Services {
                router: router.clone(),
                config: config.clone(),
                ids: Arc::new(IdAllocator::new(0)),
                store: None,
                client_ids: Arc::new(ClientIds::default()),
                connections: Arc::new(Connections::default()),
                memory: Default::default(),
            };
            let ctx = Ctx::new(
                0,
                router,
                None,
                services.ids.clone(),
                Arc::new(config.destinations.clone()),
                Default::default(),
            );
            Pair {
                owner: Owner::new(ctx),
                mailbox,
                services,
                next: 0,
            }
        }

        fn client(&mut self, version: &str) -> Client {
            self.next += 1;
            let (tx, rx) = unbounded_channel();
            let session = Session::new(SessionId(self.next), &self.services, tx);
            let mut decoder = Decoder::new(Default::default());
            decoder.set_version(Version::V1_2);
            let mut c = Client {
                session,
                rx,
                decoder,
            };
            c.send(Frame::new(Command::Connect).header("accept-version", version));
            assert_eq!(c.frames()[0].command, Command::Connected);
            c
        }

        /// Runs owner and sessions until nothing moves.
        fn pump(&mut self, clients: &mut [&mut Client]) {
            loop {
                let mut moved = false;
                while let Ok(cmd) = self.mailbox.try_recv() {
                    self.owner.handle(cmd);
                    moved = true;
                }
                for c in clients.iter_mut() {
                    while let Ok(a) = c.rx.try_recv() {
                        c.session.handle_answer(a);
                        moved = true;
                    }
                    c.session.flush_credits();
                }
                if !moved {
                    return;
                }
            }
        }
    }

    impl Client {
        fn send(&mut self, frame: Frame) {
            let _ = self.session.handle_frame(frame);
        }

        /// What the session wrote, as a driver would take it and write it to the socket.
        fn frames(&mut self) -> Vec<Frame> {
            let bytes = self.session.take_output();
            self.session.wrote(bytes.len());
            let mut buf = BytesMut::from(&bytes[..]);
            let mut out = Vec::new();
            while let Some(f) = self.decoder.decode(&mut buf).unwrap() {
                out.push(f);
            }
            out
        }
    }

    /// SUBSCRIBE as id `s` to `dest` with `ack` and `extra` headers.
    fn subscribe(dest: &str, ack: &str, extra: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", dest)
            .header("ack", ack);
        for (k, v) in extra {
            f = f.header(*k, *v);
        }
        f
    }

    fn send(dest: &str, body: &str) -> Frame {
        Frame::new(Command::Send)
            .header("destination", dest)
            .with_body(body.to_string())
    }

    #[test]
    fn frame_before_connect_is_an_error_and_closes() {
        let pair = Pair::new();
        let (tx, _rx) = unbounded_channel();
        let mut s = Session::new(SessionId(1), &pair.services, tx);
        assert!(s
            .handle_frame(send("/queue/a", "x").header("receipt", "7"))
            .is_err());
        assert_eq!(s.phase(), Phase::Closing);
        let f = Decoder::new(Default::default())
            .decode(&mut s.out)
            .unwrap()
            .unwrap();
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.get("receipt-id"), Some("7"));
    }

    #[test]
    fn receipts_follow_effects_in_order() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/r", "1").header("receipt", "a"));
        c.send(
            Frame::new(Command::Begin)
                .header("transaction", "t")
                .header("receipt", "b"),
        );
        // The SEND's effect is not done until the owner has run, so neither receipt is out.
        assert!(c.frames().is_empty());
        pair.pump(&mut [&mut c]);
        let ids: Vec<_> = c
            .frames()
            .iter()
            .map(|f| f.get("receipt-id").unwrap().to_string())
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn client_mode_ack_is_cumulative() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.2");
        let mut c = pair.client("1.2");
        c.send(subscribe("/queue/c", "client", &[]));
        for i in 0..3 {
            p.send(send("/queue/c", &i.to_string()));
        }
        pair.pump(&mut [&mut p, &mut c]);
        let msgs = c.frames();
        assert_eq!(msgs.len(), 3);
        c.send(Frame::new(Command::Ack).header("id", msgs[1].get("ack").unwrap()));
        // The third is still unacked: acking it alone works, acking the first again does not.
        c.send(Frame::new(Command::Ack).header("id", msgs[2].get("ack").unwrap()));
        assert_eq!(c.session.phase(), Phase::Connected);
        c.send(Frame::new(Command::Ack).header("id", msgs[0].get("ack").unwrap()));
        assert_eq!(c.session.phase(), Phase::Closing);
    }

    #[test]
    fn abort_puts_acked_deliveries_back_in_flight() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.2");
        let mut c = pair.client("1.2");
        c.send(subscribe("/queue/t", "client-individual", &[]));
        p.send(send("/queue/t", "m"));
        pair.pump(&mut [&mut p, &mut c]);
        let m = c.frames().remove(0);
        let ack = || Frame::new(Command::Ack).header("id", m.get("ack").unwrap());
        c.send(Frame::new(Command::Begin).header("transaction", "tx"));
        c.send(ack().header("transaction", "tx"));
        c.send(Frame::new(Command::Abort).header("transaction", "tx"));
        pair.pump(&mut [&mut p, &mut c]);
        // Nothing is redelivered; the same ack id is valid again.
        assert!(c.frames().is_empty());
        c.send(ack().header("receipt", "r"));
        assert_eq!(c.session.phase(), Phase::Connected);
        pair.pump(&mut [&mut p, &mut c]);
        assert_eq!(c.frames()[0].get("receipt-id"), Some("r"));
    }

    #[test]
    fn auto_ack_delivery_not_written_goes_back_on_unsubscribe() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.2");
        let mut c = pair.client("1.2");
        c.send(subscribe("/queue/a", "auto", &[]));
        pair.pump(&mut [&mut p, &mut c]);
        c.frames();
        for i in 0..3 {
            p.send(send("/queue/a", &i.to_string()));
        }
        pair.pump(&mut [&mut p, &mut c]);
        // Encoded but not written: the driver took nothing yet.
        c.send(
            Frame::new(Command::Unsubscribe)
                .header("id", "s")
                .header("receipt", "u"),
        );
        pair.pump(&mut [&mut p, &mut c]);
        // Only the three MESSAGEs are out; the UNSUBSCRIBE waits for them to be written.
        let bytes = c.session.take_output();
        let half = bytes.len() / 2;
        c.session.wrote(half);
        pair.pump(&mut [&mut p, &mut c]);
        c.session.wrote(bytes.len() - half);
        pair.pump(&mut [&mut p, &mut c]);
        let receipt = c.frames();
        assert_eq!(receipt.len(), 1);
        assert_eq!(receipt[0].get("receipt-id"), Some("u"));
        // All three were written, so none comes back.
        let mut d = pair.client("1.2");
        d.send(subscribe("/queue/a", "client-individual", &[]));
        pair.pump(&mut [&mut p, &mut c, &mut d]);
        assert!(d.frames().is_empty());
    }

    #[test]
    fn auto_ack_deliveries_never_written_return_in_order_on_close() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.2");
        let mut c = pair.client("1.2");
        c.send(subscribe("/queue/b", "auto", &[]));
        pair.pump(&mut [&mut p, &mut c]);
        c.frames();
        for i in 0..5 {
            p.send(send("/queue/b", &i.to_string()));
        }
        pair.pump(&mut [&mut p, &mut c]);
        // The connection dies with everything still in its write buffer.
        c.session.close();
        let mut d = pair.client("1.2");
        d.send(subscribe("/queue/b", "client-individual", &[]));
        pair.pump(&mut [&mut p, &mut d]);
        let again = d.frames();
        let bodies: Vec<_> = again.iter().map(|f| f.body.to_vec()).collect();
        assert_eq!(bodies, [b"0", b"1", b"2", b"3", b"4"]);
        // Never written, so not redelivered.
        assert!(again.iter().all(|f| f.get("redelivered").is_none()));
    }

    #[test]
    fn receipt_waits_for_earlier_unreceipted_sends() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/r", "1"));
        c.send(
            Frame::new(Command::Begin)
                .header("transaction", "t")
                .header("receipt", "b"),
        );
        // The SEND is not answered yet, so BEGIN's receipt waits.
        assert!(c.frames().is_empty());
        pair.pump(&mut [&mut c]);
        assert_eq!(c.frames()[0].get("receipt-id"), Some("b"));
    }

    #[test]
    fn ack_by_message_id_finds_a_message_in_flight_on_two_subscriptions() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.0");
        let mut c = pair.client("1.0");
        for id in ["a", "b"] {
            c.send(
                Frame::new(Command::Subscribe)
                    .header("id", id)
                    .header("destination", "/topic/two")
                    .header("ack", "client-individual"),
            );
        }
        pair.pump(&mut [&mut p, &mut c]);
        p.send(send("/topic/two", "m"));
        pair.pump(&mut [&mut p, &mut c]);
        let msgs = c.frames();
        assert_eq!(msgs.len(), 2);
        let mid = msgs[0].get("message-id").unwrap().to_string();
        // 1.0 style: message-id alone, twice, one per subscription holding it.
        for _ in 0..2 {
            c.send(Frame::new(Command::Ack).header("message-id", &mid));
            assert_eq!(c.session.phase(), Phase::Connected);
        }
        c.send(Frame::new(Command::Ack).header("message-id", &mid));
        assert_eq!(c.session.phase(), Phase::Closing);
    }

    #[test]
    fn pending_receipts_stop_reading_at_their_limit() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        // A SEND whose answer has not come (its owner has not run): every later RECEIPT waits.
        c.send(send("/queue/held", "x"));
        let max = c.session.config.limits.max_pending_receipts;
        let mut n = 0;
        while c.session.wants_read() {
            let t = format!("t{n}");
            c.send(
                Frame::new(Command::Begin)
                    .header("transaction", &t)
                    .header("receipt", &t),
            );
            c.send(Frame::new(Command::Abort).header("transaction", &t));
            n += 1;
            assert!(n <= max, "still reading past max_pending_receipts");
        }
        assert_eq!(c.session.receipts.len(), max);
        pair.pump(&mut [&mut c]);
        assert_eq!(c.frames().len(), max);
        assert!(c.session.wants_read());
    }

    #[test]
    fn prefetch_limits_unacked_deliveries() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.1");
        let mut c = pair.client("1.1");
        c.send(subscribe(
            "/queue/p",
            "client-individual",
            &[("activemq.prefetchSize", "2")],
        ));
        for i in 0..5 {
            p.send(send("/queue/p", &i.to_string()));
        }
        pair.pump(&mut [&mut p, &mut c]);
        let first = c.frames();
        assert_eq!(first.len(), 2);
        c.send(
            Frame::new(Command::Ack)
                .header("message-id", first[0].get("message-id").unwrap())
                .header("subscription", "s"),
        );
        pair.pump(&mut [&mut p, &mut c]);
        let next = c.frames();
        assert_eq!(next.len(), 1);
        assert_eq!(&next[0].body[..], b"2");
    }

    #[test]
    fn earlier_receipts_come_before_the_error_and_nothing_after_it() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/e", "m").header("receipt", "r"));
        c.send(Frame::new(Command::Message));
        // The SEND is answered after the failure: its RECEIPT goes first, then the ERROR.
        assert!(c.frames().is_empty());
        pair.pump(&mut [&mut c]);
        let frames = c.frames();
        let commands: Vec<Command> = frames.iter().map(|f| f.command).collect();
        assert_eq!(commands, [Command::Receipt, Command::Error], "{frames:?}");
        assert_eq!(frames[0].get("receipt-id"), Some("r"));
        pair.pump(&mut [&mut c]);
        assert!(c.frames().is_empty());
        assert_eq!(c.session.phase(), Phase::Closing);
    }

    #[test]
    fn a_send_rejected_while_an_error_waits_for_it_lets_the_error_out() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/e", "m").header("receipt", "r"));
        // The broker shuts down (as after a store failure) while the SEND is in flight: the
        // ERROR waits for the SEND's answer.
        c.session.fail(&Error::ShuttingDown, None);
        assert!(c.frames().is_empty());
        assert_eq!(c.session.phase(), Phase::Disconnecting);
        // The store rejects the SEND.
        let token = std::iter::from_fn(|| pair.mailbox.try_recv().ok())
            .find_map(|cmd| match cmd {
                ToOwner::Send { token, .. } => token,
                _ => None,
            })
            .expect("the SEND was posted");
        c.session.handle_answer(ToSession::Rejected {
            token: Some(token),
            reason: "store I/O failure".into(),
        });
        // Nothing is left to wait for: the ERROR goes out now (not after the linger), and no
        // RECEIPT for the rejected SEND.
        let frames = c.frames();
        let commands: Vec<Command> = frames.iter().map(|f| f.command).collect();
        assert_eq!(commands, [Command::Error], "{frames:?}");
        assert_eq!(c.session.phase(), Phase::Closing);
    }
}
