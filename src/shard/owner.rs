//! The owner loop of one shard: holds the destinations whose name hashes to this shard and
//! applies the commands sessions send them. Runs only on its shard's thread, so destinations
//! need no locks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use log::debug;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config::DestinationConfig;
use crate::destination::{Consumer, DestinationName, Entry, Kind, Queue, Topic};
use crate::message::{MessageId, SessionId, SessionTx, ToOwner, ToSession};

/// Bits of a [`MessageId`] that hold the shard index.
const SHARD_BITS: u32 = 10;

/// Commands handled before the loop yields to other tasks on the shard.
const COMMAND_BATCH: usize = 512;

/// A destination of either kind.
enum Destination {
    Queue(Queue),
    Topic(Topic),
}

impl Destination {
    fn is_idle(&self) -> bool {
        match self {
            Destination::Queue(q) => q.is_idle(),
            Destination::Topic(t) => t.is_idle(),
        }
    }
}

/// A session known to this shard.
struct SessionEntry {
    tx: SessionTx,
    /// Destinations on this shard where the session has consumers.
    consumes: HashSet<DestinationName>,
}

/// One shard's destinations and the sessions that use them.
pub struct Owner {
    shard: u64,
    next_seq: u64,
    config: DestinationConfig,
    destinations: HashMap<DestinationName, Destination>,
    sessions: HashMap<SessionId, SessionEntry>,
}

impl Owner {
    /// An owner for shard `shard` with no destinations yet.
    pub fn new(shard: usize, config: DestinationConfig) -> Self {
        Owner {
            shard: shard as u64,
            next_seq: 0,
            config,
            destinations: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    /// Serves commands until [`ToOwner::Stop`] or until every sender is gone.
    pub async fn run(mut self, mut mailbox: UnboundedReceiver<ToOwner>) {
        while let Some(cmd) = mailbox.recv().await {
            if !self.handle(cmd) {
                return;
            }
            for _ in 0..COMMAND_BATCH {
                match mailbox.try_recv() {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// Applies one command. Returns false on [`ToOwner::Stop`].
    pub fn handle(&mut self, cmd: ToOwner) -> bool {
        match cmd {
            ToOwner::Hello { session, tx } => {
                self.sessions.insert(
                    session,
                    SessionEntry {
                        tx,
                        consumes: HashSet::new(),
                    },
                );
            }
            ToOwner::Send {
                session,
                draft,
                token,
            } => {
                let Some(producer) = self.sessions.get(&session).map(|s| s.tx.clone()) else {
                    return true;
                };
                self.next_seq += 1;
                let id = MessageId((self.next_seq << SHARD_BITS) | self.shard);
                let entry = Entry {
                    message: Arc::new(draft.into_message(id)),
                    redelivered: false,
                };
                let name = entry.message.destination.clone();
                match self.destination(&name) {
                    Destination::Queue(q) => q.send(entry, &producer, token),
                    Destination::Topic(t) => t.send(entry, &producer, token),
                }
                self.forget_if_idle(&name);
            }
            ToOwner::Subscribe {
                session,
                sub,
                destination,
                ack,
                prefetch,
                token,
            } => {
                let Some(s) = self.sessions.get_mut(&session) else {
                    return true;
                };
                s.consumes.insert(destination.clone());
                let consumer = Consumer::new(session, sub, s.tx.clone(), ack, prefetch);
                let tx = s.tx.clone();
                match self.destination(&destination) {
                    Destination::Queue(q) => q.subscribe(consumer),
                    Destination::Topic(t) => t.subscribe(consumer),
                }
                if let Some(token) = token {
                    let _ = tx.send(ToSession::Done { token });
                }
            }
            ToOwner::Unsubscribe {
                session,
                sub,
                destination,
                token,
            } => {
                if let Some(d) = self.destinations.get_mut(&destination) {
                    match d {
                        Destination::Queue(q) => q.unsubscribe(session, sub),
                        Destination::Topic(t) => t.unsubscribe(session, sub),
                    }
                }
                self.forget_if_idle(&destination);
                self.done(session, token);
            }
            ToOwner::Ack {
                session,
                sub,
                destination,
                ids,
                token,
            } => {
                if let Some(d) = self.destinations.get_mut(&destination) {
                    match d {
                        Destination::Queue(q) => q.ack(session, sub, &ids),
                        Destination::Topic(t) => t.ack(session, sub, &ids),
                    }
                }
                self.done(session, token);
            }
            ToOwner::Nack {
                session,
                sub,
                destination,
                ids,
                token,
            } => {
                if let Some(d) = self.destinations.get_mut(&destination) {
                    match d {
                        Destination::Queue(q) => q.nack(session, sub, &ids),
                        Destination::Topic(t) => t.nack(session, sub, &ids),
                    }
                }
                self.done(session, token);
            }
            ToOwner::Credit {
                session,
                sub,
                destination,
                n,
            } => {
                if let Some(d) = self.destinations.get_mut(&destination) {
                    match d {
                        Destination::Queue(q) => q.credit(session, sub, n),
                        Destination::Topic(t) => t.credit(session, sub, n),
                    }
                }
            }
            ToOwner::Barrier { session, token } => self.done(session, Some(token)),
            ToOwner::Goodbye { session } => {
                let Some(entry) = self.sessions.remove(&session) else {
                    return true;
                };
                for name in entry.consumes {
                    if let Some(d) = self.destinations.get_mut(&name) {
                        match d {
                            Destination::Queue(q) => q.goodbye(session),
                            Destination::Topic(t) => t.goodbye(session),
                        }
                    }
                    self.forget_if_idle(&name);
                }
                debug!("shard={} session={} gone", self.shard, session.0);
            }
            ToOwner::Stop => return false,
        }
        true
    }

    fn destination(&mut self, name: &DestinationName) -> &mut Destination {
        let limit = self.config.memory_limit_bytes;
        self.destinations
            .entry(name.clone())
            .or_insert_with(|| match name.kind() {
                Kind::Queue => Destination::Queue(Queue::new(name.clone(), limit)),
                Kind::Topic => Destination::Topic(Topic::new(name.clone(), limit)),
            })
    }

    /// Drops a destination that holds nothing (it is re-created on next use), so a stream of
    /// one-off names cannot grow the shard's memory.
    fn forget_if_idle(&mut self, name: &DestinationName) {
        if self
            .destinations
            .get(name)
            .is_some_and(Destination::is_idle)
        {
            self.destinations.remove(name);
        }
    }

    fn done(&self, session: SessionId, token: Option<crate::message::Token>) {
        if let (Some(token), Some(s)) = (token, self.sessions.get(&session)) {
            let _ = s.tx.send(ToSession::Done { token });
        }
    }
}
