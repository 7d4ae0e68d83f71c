//! BEGIN, COMMIT and ABORT: transactions are buffered in the session, within
//! `max_transactions_per_connection`, `max_transaction_frames` and `max_transaction_bytes`
//! (charged to the global memory account until they end). A COMMIT writes its persistent
//! queue SENDs and its acked stored messages in one store transaction ([`StoreCommit`]), then
//! posts the rest; an ABORT drops the SENDs and puts acked deliveries back in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use foldhash::HashMap;

use super::acks::Settle;
use super::error::Error;
use super::state::{required, Session};
use crate::codec::Frame;
use crate::limits::Limits;
use crate::message::network::network_id;
use crate::message::schedule::Schedule;
use crate::message::Kind;
use crate::message::{Message, MessageId, QueueKey, SessionTx, Token};

/// One SEND/ACK/NACK buffered in an open transaction.
#[derive(Debug)]
pub(super) enum TxOp {
    Send(Arc<Message>),
    Settle(Settle),
}

impl TxOp {
    /// Bytes it holds, counted against `max_transaction_bytes`.
    fn bytes(&self) -> u64 {
        match self {
            TxOp::Send(m) => m.weight(),
            TxOp::Settle(_) => 0,
        }
    }
}

/// A COMMIT's store transaction, as the session asks for it ([`super::Post::Store`]): the
/// driver sends it to the store writer as a `store::Request::Commit` whose reply, once it is
/// committed, hands each queue send to its owner (`ToOwner::Adopt`) and then answers
/// `session` with `ToSession::Committed`.
#[derive(Debug)]
pub struct StoreCommit {
    /// The COMMIT's queue sends with the shard that owns each queue (the persistent ones are
    /// inserted).
    pub sends: Vec<(QueueKey, usize, Arc<Message>)>,
    /// Stored messages the COMMIT's ACKs delete.
    pub deletes: Vec<MessageId>,
    pub session: SessionTx,
    pub token: Token,
}

/// What a COMMIT still has to do once its store transaction is on disk.
#[derive(Debug)]
struct PendingCommit {
    /// Topic sends, scheduled sends and forwarded sends (which their owner's duplicate filter
    /// must see before they are stored): posted once the store transaction is on disk.
    topic_sends: Vec<Arc<Message>>,
    settles: Vec<Settle>,
}

/// The session's open transactions, and its COMMITs under way.
#[derive(Debug)]
pub(super) struct Transactions {
    open: HashMap<String, Vec<TxOp>>,
    /// Bytes buffered in `open` (`max_transaction_bytes`), charged to `memory`.
    bytes: u64,
    /// The global memory account.
    memory: Arc<AtomicU64>,
    /// COMMITs whose store transaction is under way, by token. While any is, the session
    /// reads no further frames, so nothing sent after a COMMIT overtakes it.
    commits: HashMap<Token, PendingCommit>,
}

impl Transactions {
    pub fn new(memory: Arc<AtomicU64>) -> Self {
        Transactions {
            open: HashMap::default(),
            bytes: 0,
            memory,
            commits: HashMap::default(),
        }
    }

    /// True while a COMMIT's store transaction is under way.
    pub fn committing(&self) -> bool {
        !self.commits.is_empty()
    }

    /// True if transaction `tx` is open.
    pub fn contains(&self, tx: &str) -> bool {
        self.open.contains_key(tx)
    }

    /// Buffers `op` in open transaction `tx`, within the limits.
    pub fn push(&mut self, tx: &str, op: TxOp, limits: &Limits) -> Result<(), Error> {
        let max = limits.max_transaction_frames;
        let max_bytes = limits.max_transaction_bytes;
        let ops = self
            .open
            .get_mut(tx)
            .ok_or_else(|| Error::UnknownTransaction(tx.to_string()))?;
        if ops.len() >= max {
            return Err(Error::Limit("max_transaction_frames", max));
        }
        let bytes = op.bytes();
        if self.bytes + bytes > max_bytes as u64 {
            return Err(Error::Limit("max_transaction_bytes", max_bytes));
        }
        ops.push(op);
        self.bytes += bytes;
        self.memory.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Ends transaction `tx` (COMMIT or ABORT): its buffered work, no longer charged here.
    fn take(&mut self, tx: &str) -> Result<Vec<TxOp>, Error> {
        let ops = self
            .open
            .remove(tx)
            .ok_or_else(|| Error::UnknownTransaction(tx.to_string()))?;
        self.release(ops.iter().map(TxOp::bytes).sum());
        Ok(ops)
    }

    /// Drops every open transaction (the connection is gone).
    pub fn clear(&mut self) {
        self.open.clear();
        self.release(self.bytes);
    }

    fn release(&mut self, bytes: u64) {
        self.bytes -= bytes;
        self.memory.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Session {
    pub(super) fn on_begin(&mut self, frame: &Frame) -> Result<(), Error> {
        let tx = required(frame, "transaction")?;
        if self.transactions.contains(tx) {
            return Err(Error::DuplicateTransaction(tx.to_string()));
        }
        let max = self.config.limits.max_transactions_per_connection;
        if self.transactions.open.len() >= max {
            return Err(Error::Limit("max_transactions_per_connection", max));
        }
        self.transactions.open.insert(tx.to_string(), Vec::new());
        self.receipt_now(frame);
        Ok(())
    }

    /// COMMIT: with a store, persistent sends to queues and deletes of acked stored messages
    /// go to disk in ONE store transaction; its reply then hands the queue sends to their
    /// owners, and the session posts topic sends and the acks. Without a store, everything is
    /// posted at once.
    pub(super) fn on_commit(&mut self, frame: &Frame) -> Result<(), Error> {
        let tx = required(frame, "transaction")?;
        let ops = self.transactions.take(tx)?;
        if !self.has_store {
            let token = self.receipt_token(frame, ops.len());
            for op in ops {
                match op {
                    TxOp::Send(m) => self.post_send(m, token),
                    TxOp::Settle(s) => self.post_settle(s, token),
                }
            }
            return Ok(());
        }
        let mut sends = Vec::new();
        let mut pending = PendingCommit {
            topic_sends: Vec::new(),
            settles: Vec::new(),
        };
        let mut deletes = Vec::new();
        for op in ops {
            match op {
                // A scheduled SEND is scheduled once the COMMIT is on disk, like a topic's.
                TxOp::Send(m) if matches!(Schedule::parse(&m.headers), Ok(Some(_))) => {
                    pending.topic_sends.push(m)
                }
                // A temporary queue's sends are never stored; posted after the commit, like
                // topic sends, they are refused if it was deleted meanwhile. A forwarded
                // message (`stompbox-network-id`) too: its owner's duplicate filter must see
                // it before it is stored, so its owner stores it, after the rest of the
                // COMMIT (docs/network.md, "Duplicates").
                TxOp::Send(m)
                    if m.destination.kind() == Kind::Queue
                        && !m.destination.is_temp()
                        && network_id(&m.headers).is_none() =>
                {
                    let key = QueueKey::queue(m.destination.clone());
                    let shard = self.owner_of(&m.destination);
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
            None => self.receipts.new_token(),
        };
        self.transactions.commits.insert(token, pending);
        self.post_store(StoreCommit {
            sends,
            deletes,
            session: self.tx.clone(),
            token,
        });
        Ok(())
    }

    /// The store transaction of a COMMIT is on disk: post what remains of it.
    pub(super) fn committed(&mut self, token: Token) {
        // Every COMMIT that posts a store transaction holds its pending part until then.
        let Some(pending) = self.transactions.commits.remove(&token) else {
            return;
        };
        let more = pending.topic_sends.len() + pending.settles.len();
        self.receipts.add_effects(token, more);
        for m in pending.topic_sends {
            self.post_send(m, Some(token));
        }
        for s in pending.settles {
            self.post_settle(s, Some(token));
        }
        self.complete(token);
    }

    pub(super) fn on_abort(&mut self, frame: &Frame) -> Result<(), Error> {
        let tx = required(frame, "transaction")?;
        let ops = self.transactions.take(tx)?;
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
}

#[cfg(test)]
mod tests {
    use super::super::state::Phase;
    use super::super::testing::{send, subscribe, Pair};
    use crate::codec::{Command, Frame};

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
}
