//! The thin [`Session`]: one connection's protocol state, which owns the per-concern parts
//! and dispatches each frame to its handler.
//!
//! Sans-IO: nothing here touches a socket, a channel or a clock. The driver in `task.rs`
//! feeds frames (with the wall-clock time), owner answers and written byte counts in, writes
//! what [`Session::take_output`] hands it to the socket, posts what [`Session::take_posts`]
//! hands it (in order, before it waits again), and asks [`Session::wants_read`] whether to
//! keep reading. That keeps every protocol rule testable without I/O.
//!
//! Each concern has its own file, holding its state and its frames' handlers:
//!
//! | file | concern |
//! |---|---|
//! | `connect.rs` | CONNECT/STOMP: version and heart-beat negotiation |
//! | `send.rs` | SEND: the message it becomes, the producer window |
//! | `subscriptions.rs` | SUBSCRIBE/UNSUBSCRIBE: prefetch, durable names in three dialects |
//! | `acks.rs` | ack ids for three protocol versions, ACK/NACK resolution |
//! | `transactions.rs` | BEGIN/COMMIT/ABORT: buffers, limits, the COMMIT's store transaction |
//! | `receipts.rs` | tokens, RECEIPT ordering, DISCONNECT, the ERROR that waits for receipts |
//! | `temp.rs` | temporary destinations: `/temp-queue/NAME` bound to a broker-wide name |
//! | `outbox.rs` | the write buffer, MESSAGE writing, stream offsets (auto-ack, deferred commands) |

use std::sync::Arc;

use super::acks::Acks;
use super::connect::HeartBeat;
use super::error::Error;
use super::outbox::Outbox;
use super::receipts::Receipts;
use super::send::ProducerWindow;
use super::services::{ClientIds, Connections, Services};
use super::subscriptions::Subscriptions;
use super::temp::Temps;
use super::transactions::{StoreCommit, Transactions};
use crate::codec::{Command, Frame, Version};
use crate::config::Config;
use crate::limits::MAX_WRITE_BUFFER_BYTES;
use crate::message::advisory::Event;
use crate::message::{IdAllocator, SessionId, SessionTx, ToOwner, ToSession};

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

/// A command the session wants delivered. The driver posts them in the order they were
/// queued ([`Session::take_posts`]); their order is the order of the frames' effects.
#[derive(Debug)]
pub enum Post {
    /// To shard `.0`'s owner loop.
    Owner(usize, ToOwner),
    /// To the store writer: a COMMIT's store transaction (only with a store).
    Store(StoreCommit),
    /// To the verifier threads: a CONNECT's password check.
    Authenticate(crate::security::Job),
}

/// One connection's protocol state.
pub struct Session {
    pub(super) id: SessionId,
    /// The reply address commands carry (owners and store replies answer through it); the
    /// session itself never sends on it.
    pub(super) tx: SessionTx,
    pub(super) config: Arc<Config>,
    pub(super) ids: Arc<IdAllocator>,
    /// Virtual topics' consumer queues, which a SEND to a virtual topic also goes to.
    pub(super) virtual_topics: Arc<crate::message::virtual_topic::VirtualTopics>,
    /// Subscriptions that may receive advisories, counted for the owners.
    pub(super) advisory_listeners: Arc<std::sync::atomic::AtomicUsize>,
    /// Number of shards, to find a destination's owner.
    pub(super) shards: usize,
    /// False when the broker runs without a store (tests): a COMMIT posts at once.
    pub(super) has_store: bool,
    pub(super) client_ids: Arc<ClientIds>,
    /// This broker's bridges, whose secret a connection may present on CONNECT.
    pub(super) bridges: Arc<crate::network::status::Bridges>,
    /// The connection is one of this broker's own bridges (it presented the secret): its
    /// routes are not capped by `max_subscriptions_per_connection`.
    pub(super) own_bridge: bool,
    /// The CONNECT `client-id` this connection holds.
    pub(super) client_id: Option<String>,
    pub(super) connections: Arc<Connections>,
    /// Every durable subscription, for the consumer advisories replayed to a new subscriber.
    pub(super) durables: Arc<crate::message::advisory::Durables>,
    /// The peer, for the admin API.
    pub(super) peer: String,
    /// The client's address (from the PROXY header behind a load balancer), for the
    /// authentication back-off.
    pub(super) peer_ip: Option<std::net::IpAddr>,
    /// The subject of the client certificate rustls verified at the TLS handshake (none
    /// without TLS, or without a verified certificate): may log a user in on CONNECT.
    pub(super) certificate: Option<crate::security::subject::Subject>,
    pub(super) auth: Arc<crate::security::Authenticator>,
    /// A CONNECT waiting for its password check: the frame, version and heart-beats.
    pub(super) authenticating: Option<Box<super::connect::PendingConnect>>,
    /// Who the client is, once connected.
    pub(super) principal: Option<crate::security::Principal>,
    /// Authorization answers already worked out (`authorize.rs`): per destination name,
    /// each operation's (indexed by `Operation as usize`).
    pub(super) authorized: std::collections::HashMap<String, [Option<bool>; 3]>,
    /// A SEND or SUBSCRIBE waiting to hear whether its destination exists (`authorize.rs`).
    pub(super) creating: Option<Box<super::authorize::PendingCreate>>,
    /// Destinations their owners said exist, for a user without `admin` (`authorize.rs`).
    pub(super) existing: std::collections::HashSet<String>,
    /// Shards this session said Hello to (so it says Goodbye, and DISCONNECT's barrier goes
    /// to each).
    pub(super) said_hello: Vec<bool>,
    /// Commands ready for the driver to post, in order.
    posts: Vec<Post>,
    pub(super) phase: Phase,
    pub(super) version: Version,
    pub(super) heart_beat: HeartBeat,
    pub(super) outbox: Outbox,
    pub(super) subs: Subscriptions,
    pub(super) acks: Acks,
    pub(super) transactions: Transactions,
    pub(super) receipts: Receipts,
    pub(super) window: ProducerWindow,
    /// Its connection advisory was published: the one of its end follows at close.
    pub(super) announced: bool,
    pub(super) temps: Temps,
}

impl Session {
    /// A session in [`Phase::Connecting`]. `tx` is the sending side of the channel the driver
    /// reads [`ToSession`] answers from: the reply address of the commands the session posts.
    pub fn new(id: SessionId, services: &Services, tx: SessionTx) -> Self {
        let shards = services.router.shards();
        Session {
            id,
            tx,
            config: services.config.clone(),
            ids: services.ids.clone(),
            virtual_topics: services.virtual_topics.clone(),
            advisory_listeners: services.advisory_listeners.clone(),
            shards,
            has_store: services.store.is_some(),
            client_ids: services.client_ids.clone(),
            client_id: None,
            bridges: services.network.clone(),
            own_bridge: false,
            connections: services.connections.clone(),
            durables: services.durables.clone(),
            peer: String::new(),
            peer_ip: None,
            certificate: None,
            auth: services.auth.clone(),
            authenticating: None,
            principal: None,
            authorized: Default::default(),
            creating: None,
            existing: Default::default(),
            said_hello: vec![false; shards],
            posts: Vec::new(),
            phase: Phase::Connecting,
            version: Version::V1_0,
            heart_beat: HeartBeat::default(),
            outbox: Outbox::new(),
            subs: Subscriptions::default(),
            acks: Acks::default(),
            transactions: Transactions::new(services.memory.clone()),
            receipts: Receipts::default(),
            window: ProducerWindow::default(),
            announced: false,
            temps: Temps::default(),
        }
    }

    /// Names the peer (address, or the client behind a load balancer) for the admin API.
    pub fn set_peer(&mut self, peer: &str) {
        self.peer = peer.to_string();
    }

    /// The client's address, for the authentication back-off.
    pub fn set_peer_ip(&mut self, ip: Option<std::net::IpAddr>) {
        self.peer_ip = ip;
    }

    /// The subject of the connection's verified TLS client certificate.
    pub fn set_certificate(&mut self, subject: Option<crate::security::subject::Subject>) {
        self.certificate = subject;
    }

    /// Queues a CONNECT's password check.
    pub(super) fn posts_authenticate(&mut self, job: crate::security::Job) {
        self.posts.push(Post::Authenticate(job));
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

    /// Should the driver read more frames? Not while closing, not while a password check or
    /// a destination's existence (`authorize.rs`) is being asked, not during a COMMIT, not while
    /// the producer window (frames or bytes) is used up (flow control), not while too many
    /// RECEIPTs wait, and not while the client is not reading what we write.
    pub fn wants_read(&self) -> bool {
        let limits = &self.config.limits;
        matches!(self.phase, Phase::Connecting | Phase::Connected)
            && self.authenticating.is_none()
            && self.creating.is_none()
            && !self.transactions.committing()
            && self.window.is_open(limits)
            && self.receipts.len() < limits.max_pending_receipts
            && self.outbox.len() < MAX_WRITE_BUFFER_BYTES
    }

    /// Bytes of SENDs posted and not yet taken by their destinations beyond the producer
    /// window (one frame larger than the window is let through): what the session holds of
    /// the large-frames budget (`session/frame_budget.rs`).
    pub fn sends_past_window(&self) -> u64 {
        let window = self.config.limits.producer_window_bytes as u64;
        self.window.bytes().saturating_sub(window)
    }

    /// Should the driver pull more owner answers? Not while the write buffer is full.
    pub fn wants_answers(&self) -> bool {
        self.outbox.len() < MAX_WRITE_BUFFER_BYTES
    }

    /// Handles one frame from the client, received at `now_ms` (ms since the epoch). On error
    /// the ERROR frame is already queued in the outbox and the session is [`Phase::Closing`]
    /// (or waiting for earlier receipts, see [`Session::fail`]); the error is returned for
    /// logging.
    pub fn handle_frame(&mut self, mut frame: Frame, now_ms: u64) -> Result<(), Error> {
        // Kept aside: a SEND hands its headers over to the message it becomes.
        let receipt = frame.get("receipt").map(str::to_owned);
        let result = self.dispatch(&mut frame, now_ms);
        if let Err(e) = &result {
            self.fail(e, receipt.as_deref());
        }
        result
    }

    /// Handles one answer from an owner shard or a store request's reply.
    pub fn handle_answer(&mut self, answer: ToSession) {
        match answer {
            ToSession::Deliver {
                sub,
                message,
                redelivery_count,
            } => self.write_message(sub, &message, redelivery_count),
            ToSession::Browsed { sub, messages } => self.write_browsed(sub, messages),
            ToSession::Authenticated(result) => self.on_authenticated(result),
            ToSession::Probed {
                destination,
                exists,
            } => self.on_probed(destination, exists),
            ToSession::Accepted { token } => {
                self.window.unanswered_sends = self.window.unanswered_sends.saturating_sub(1);
                if let Some(t) = token {
                    self.window.answered(t);
                    self.complete(t);
                }
            }
            ToSession::Rejected { token, reason } => {
                self.window.unanswered_sends = self.window.unanswered_sends.saturating_sub(1);
                if let Some(t) = token {
                    self.window.answered(t);
                }
                let receipt = token.and_then(|t| self.receipts.take(t));
                self.fail(&Error::Store(reason.to_string()), receipt.as_deref());
            }
            ToSession::NoSuchTemp { destination, token } => {
                self.window.unanswered_sends = self.window.unanswered_sends.saturating_sub(1);
                if let Some(t) = token {
                    self.window.answered(t);
                }
                let receipt = token.and_then(|t| self.receipts.take(t));
                self.fail(
                    &Error::NoSuchTemp(destination.to_string()),
                    receipt.as_deref(),
                );
            }
            ToSession::Committed {
                token,
                result: Ok(()),
            } => self.committed(token),
            ToSession::Committed {
                token,
                result: Err(reason),
            }
            | ToSession::Failed { token, reason } => {
                let receipt = self.receipts.take(token);
                self.fail(&Error::Store(reason.to_string()), receipt.as_deref());
            }
            ToSession::Done { token } => self.complete(token),
            ToSession::LimitReached { name, max, token } => {
                // A scheduled SEND over a limit is answered this way too: it no longer holds
                // the producer window.
                if let Some(t) = token.filter(|t| self.window.tracks(*t)) {
                    self.window.unanswered_sends = self.window.unanswered_sends.saturating_sub(1);
                    self.window.answered(t);
                }
                let receipt = token.and_then(|t| self.receipts.take(t));
                self.fail(&Error::Limit(name, max), receipt.as_deref());
            }
            ToSession::DurableInUse { name, token } => {
                let receipt = token.and_then(|t| self.receipts.take(t));
                self.fail(&Error::DurableInUse(name), receipt.as_deref());
            }
            ToSession::SlowConsumer { destination } => {
                self.fail(&Error::SlowConsumer(destination.to_string()), None);
            }
        }
    }

    /// The commands queued since the last call, in order, for the driver to post. Call it
    /// after every call into the session and before waiting: an answer the session waits
    /// for can only come once its command is posted.
    pub fn take_posts(&mut self) -> std::vec::Drain<'_, Post> {
        self.posts.drain(..)
    }

    /// The connection is gone: owners drop its consumers and requeue what it had unacked
    /// (auto-ack deliveries that never reached the socket included). Open transactions are
    /// aborted implicitly (their buffered work is simply dropped).
    pub fn close(&mut self) {
        self.connections.remove(self.id.0);
        if std::mem::take(&mut self.announced) {
            let peer = self.peer.clone();
            let client_id = self.client_id.clone();
            self.advise(Event::ConnectionRemoved {
                connection: self.id.0,
                client_id: client_id.as_deref(),
                peer: &peer,
            });
        }
        if let Some(id) = self.client_id.take() {
            self.client_ids.release(&id);
        }
        self.transactions.clear();
        self.flush_credits();
        while let Some((shard, cmd)) = self.outbox.pop_deferred() {
            self.post_now(shard, cmd);
        }
        for shard in 0..self.said_hello.len() {
            if self.said_hello[shard] {
                self.posts
                    .push(Post::Owner(shard, ToOwner::Goodbye { session: self.id }));
            }
        }
        self.said_hello.iter_mut().for_each(|h| *h = false);
    }

    fn dispatch(&mut self, frame: &mut Frame, now_ms: u64) -> Result<(), Error> {
        use Command as C;
        match (self.phase, frame.command) {
            (Phase::Connecting, C::Connect | C::Stomp) => self.on_connect(frame, now_ms),
            (Phase::Connecting, cmd) => Err(Error::NotConnected(cmd)),
            (_, C::Connect | C::Stomp) => Err(Error::AlreadyConnected),
            (Phase::Disconnecting | Phase::Closing, _) => Ok(()),
            (_, C::Send) => self.on_send(frame, now_ms),
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

    /// The shard that owns `destination`.
    pub(super) fn owner_of(&self, destination: &crate::message::DestinationName) -> usize {
        destination.owner(self.shards)
    }

    /// Posts `cmd` to `shard`'s owner, behind any deferred commands.
    pub(super) fn post(&mut self, shard: usize, cmd: ToOwner) {
        match self.outbox.deferred_until() {
            Some(at) => self.outbox.defer(at, shard, cmd),
            None => self.post_now(shard, cmd),
        }
    }

    /// Queues `cmd` for `shard`'s owner now, after a Hello if this is the first contact.
    pub(super) fn post_now(&mut self, shard: usize, cmd: ToOwner) {
        if let ToOwner::Unsubscribe { sub: Some(sub), .. } = &cmd {
            self.subs.leaving.remove(sub);
        }
        if !self.said_hello[shard] {
            self.said_hello[shard] = true;
            let hello = ToOwner::Hello {
                session: self.id,
                tx: self.tx.clone(),
            };
            self.posts.push(Post::Owner(shard, hello));
        }
        self.posts.push(Post::Owner(shard, cmd));
    }

    /// Publishes the advisory of `event` (unless advisories are off) through its topic's
    /// owner; no answer is waited for.
    pub(super) fn advise(&mut self, event: Event<'_>) {
        if !self.config.destinations.advisories {
            return;
        }
        if let Some(message) = event.message(self.ids.next()) {
            let shard = self.owner_of(&message.destination);
            self.posts
                .push(Post::Owner(shard, ToOwner::Publish { message }));
        }
    }

    /// Queues a COMMIT's store transaction for the store writer.
    pub(super) fn post_store(&mut self, commit: StoreCommit) {
        self.posts.push(Post::Store(commit));
    }
}

/// The value of header `name`, which the frame must carry.
pub(super) fn required<'a>(frame: &'a Frame, name: &'static str) -> Result<&'a str, Error> {
    frame
        .get(name)
        .ok_or(Error::MissingHeader(frame.command, name))
}
