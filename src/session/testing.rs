//! The session test harness: one shard's owner and any number of sessions, pumped by hand,
//! like quinn's `Pair`: no sockets, no runtime, no clock.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::services::{ClientIds, Connections, Services};
use super::state::{Post, Session};
use crate::codec::{Command, Decoder, Frame, Version};
use crate::config::Config;
use crate::destination::{Accounts, Ctx};
use crate::message::{IdAllocator, Router, SessionId, ToOwner, ToSession};
use crate::shard::Owner;

/// One shard's owner and the services its sessions share.
pub struct Pair {
    owner: Owner,
    mailbox: UnboundedReceiver<ToOwner>,
    services: Services,
    next: u64,
}

/// A session and what a driver would hold for it.
pub struct Client {
    pub session: Session,
    rx: UnboundedReceiver<ToSession>,
    decoder: Decoder,
    router: Arc<Router>,
}

impl Pair {
    pub fn new() -> Pair {
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
            virtual_topics: Default::default(),
            frames: Default::default(),
            network: Default::default(),
            advisory_listeners: Default::default(),
            durables: Default::default(),
            auth: crate::security::Authenticator::start(&Default::default()).expect("auth"),
        };
        let ctx = Ctx::new(
            0,
            router,
            None,
            services.ids.clone(),
            Arc::new(crate::config::DestinationConfig {
                broker_name: config.broker_name.clone(),
                ..config.destinations.clone()
            }),
            Accounts {
                memory: services.memory.clone(),
                virtual_topics: services.virtual_topics.clone(),
                advisory_listeners: services.advisory_listeners.clone(),
                durable_subscriptions: services.durables.clone(),
                ..Default::default()
            },
        );
        Pair {
            owner: Owner::new(ctx),
            mailbox,
            services,
            next: 0,
        }
    }

    /// Bytes the destinations hold, as the global memory account counts them.
    pub fn memory(&self) -> u64 {
        self.services
            .memory
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A session that has not seen CONNECT.
    pub fn session(&mut self) -> Session {
        self.next += 1;
        let (tx, _) = unbounded_channel();
        Session::new(SessionId(self.next), &self.services, tx)
    }

    /// A connected client speaking `version`.
    pub fn client(&mut self, version: &str) -> Client {
        self.next += 1;
        let (tx, rx) = unbounded_channel();
        let session = Session::new(SessionId(self.next), &self.services, tx);
        let mut decoder = Decoder::new(Default::default());
        decoder.set_version(Version::V1_2);
        let mut c = Client {
            session,
            rx,
            decoder,
            router: self.services.router.clone(),
        };
        c.send(Frame::new(Command::Connect).header("accept-version", version));
        assert_eq!(c.frames()[0].command, Command::Connected);
        c
    }

    /// The commands sessions posted that the owner has not handled yet (taken, not handled).
    pub fn take_commands(&mut self) -> Vec<ToOwner> {
        std::iter::from_fn(|| self.mailbox.try_recv().ok()).collect()
    }

    /// Runs owner and sessions until nothing moves.
    pub fn pump(&mut self, clients: &mut [&mut Client]) {
        loop {
            let mut moved = false;
            for c in clients.iter_mut() {
                c.post();
            }
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
                c.post();
            }
            // Credits flushed above (acks of auto-ack deliveries written) may have posted more.
            if !moved && self.mailbox.is_empty() {
                return;
            }
        }
    }
}

impl Client {
    /// Hands the session a frame (at time 0), and posts what it queued.
    pub fn send(&mut self, frame: Frame) {
        let _ = self.session.handle_frame(frame, 0);
        self.post();
    }

    /// The connection is gone.
    pub fn close(&mut self) {
        self.session.close();
        self.post();
    }

    /// What the session wrote, as a driver would take it and write it to the socket.
    pub fn frames(&mut self) -> Vec<Frame> {
        let bytes = self.session.take_output();
        self.session.wrote(bytes.len());
        self.post();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut out = Vec::new();
        while let Some(f) = self.decoder.decode(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    /// Posts what the session queued, as the driver does.
    fn post(&mut self) {
        for p in self.session.take_posts() {
            match p {
                Post::Owner(shard, cmd) => self.router.post(shard, cmd),
                Post::Store(_) => unreachable!("the test services have no store"),
                Post::Authenticate(_) => unreachable!("the test services have no users"),
            }
        }
    }
}

/// SUBSCRIBE as id `s` to `dest` with `ack` and `extra` headers.
pub fn subscribe(dest: &str, ack: &str, extra: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new(Command::Subscribe)
        .header("id", "s")
        .header("destination", dest)
        .header("ack", ack);
    for (k, v) in extra {
        f = f.header(*k, *v);
    }
    f
}

/// SEND `body` to `dest`.
pub fn send(dest: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", dest)
        .with_body(body.to_string())
}
