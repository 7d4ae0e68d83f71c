//! ACK and NACK: the ack ids of deliveries awaiting acknowledgement, resolved the three ways
//! the protocol versions name a delivery (1.2 `id`, 1.1 `message-id` + `subscription`, 1.0
//! `message-id`), each in O(1), however many deliveries are in flight.

use foldhash::HashMap;

use super::error::Error;
use super::state::Session;
use super::transactions::TxOp;
use crate::codec::{decimal, Frame, Version};
use crate::message::DestinationName;
use crate::message::{AckMode, Message, MessageId, SubId, ToOwner, Token};

/// A delivery awaiting ACK/NACK.
#[derive(Debug)]
pub(super) struct InFlight {
    pub id: MessageId,
    /// Delivery order on this session (an aborted ACK puts it back at its place).
    pub seq: u64,
    pub ack_id: String,
    /// Stored: a transactional ACK deletes its row in the COMMIT's store transaction.
    pub persistent: bool,
    /// The shard whose owner delivered it, for a wildcard subscription (attached on every
    /// shard); None: the owner of the subscription's destination.
    pub shard: Option<usize>,
}

/// An ACK or NACK of some deliveries of one subscription.
#[derive(Debug)]
pub(super) struct Settle {
    pub sub: SubId,
    pub destination: DestinationName,
    /// The deliveries, as they were in flight (an ABORT puts them back).
    pub taken: Vec<InFlight>,
    pub nack: bool,
}

impl Settle {
    /// The deliveries' ids, by the shard whose owner delivered them (`subscription_owner`
    /// where they do not say), in order of first appearance.
    fn ids_by_shard(&self, subscription_owner: usize) -> Vec<(usize, Vec<MessageId>)> {
        let mut out: Vec<(usize, Vec<MessageId>)> = Vec::with_capacity(1);
        for f in &self.taken {
            let shard = f.shard.unwrap_or(subscription_owner);
            match out.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, ids)) => ids.push(f.id),
                None => out.push((shard, vec![f.id])),
            }
        }
        out
    }

    /// The stored ones among the deliveries.
    pub fn stored(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.taken.iter().filter(|f| f.persistent).map(|f| f.id)
    }
}

/// The ack ids of the session's deliveries awaiting ACK/NACK.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// Ack id → delivery (subscription, message, [`InFlight::seq`]), for every delivery
    /// awaiting ACK/NACK: every ACK form resolves through it in O(1).
    ids: HashMap<String, (SubId, MessageId, u64)>,
    /// Deliveries written so far, for [`InFlight::seq`].
    next_seq: u64,
}

impl Acks {
    /// Gives a delivery of `m` on `sub` its ack id and delivery order. The ack id is the
    /// message-id (clients that put either in `id` are served, as with Artemis), unless that
    /// message is already in flight on another subscription here: then `<message-id>-<sub>`.
    pub fn track(&mut self, sub: SubId, m: &Message, shard: Option<usize>) -> InFlight {
        let mut digits = [0u8; 20];
        // Digits are ASCII.
        let id = std::str::from_utf8(decimal(m.id.0, &mut digits)).unwrap_or_default();
        let ack_id = if self.ids.contains_key(id) {
            format!("{id}-{}", sub.0)
        } else {
            id.to_string()
        };
        self.next_seq += 1;
        let seq = self.next_seq;
        self.ids.insert(ack_id.clone(), (sub, m.id, seq));
        InFlight {
            id: m.id,
            seq,
            ack_id,
            persistent: m.persistent,
            shard,
        }
    }

    /// These deliveries are no longer awaiting ACK/NACK (settled, or their subscription ended).
    pub fn forget<'a>(&mut self, taken: impl IntoIterator<Item = &'a InFlight>) {
        for f in taken {
            self.ids.remove(&f.ack_id);
        }
    }
}

impl Session {
    pub(super) fn on_settle(&mut self, frame: &Frame, nack: bool) -> Result<(), Error> {
        let Some((sub, seq)) = self.resolve_ack(frame)? else {
            // A 1.0/1.1 ACK or NACK for a subscription that is gone: its deliveries already
            // went back to the queue, so there is nothing left to settle and no reason to
            // drop the connection (RabbitMQ and ActiveMQ keep it too).
            self.receipt_now(frame);
            return Ok(());
        };
        if let Some(tx) = frame.get("transaction") {
            if !self.transactions.contains(tx) {
                return Err(Error::UnknownTransaction(tx.to_string()));
            }
        }
        let s = self
            .subs
            .live
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
        self.acks.forget(&taken);
        let settle = Settle {
            sub,
            destination,
            taken,
            nack,
        };
        match frame.get("transaction") {
            Some(tx) => {
                self.transactions
                    .push(tx, TxOp::Settle(settle), &self.config.limits)?;
                self.receipt_now(frame);
            }
            None => {
                let token = self.receipt_token(frame, 1);
                self.post_settle(settle, token);
            }
        }
        Ok(())
    }

    /// Posts an ACK or NACK to the owner of its destination (for a wildcard subscription,
    /// to the owner of each delivery's destination; `token` then waits for each of them).
    pub(super) fn post_settle(&mut self, s: Settle, token: Option<Token>) {
        let owner = self.owner_of(&s.destination);
        let session = self.id;
        let mut parts = s.ids_by_shard(owner);
        if parts.is_empty() {
            // An ACK whose deliveries were taken by an earlier cumulative one: still
            // answered by the owner, after what came before it.
            parts.push((owner, Vec::new()));
        }
        if let Some(t) = token {
            self.receipts.add_effects(t, parts.len() - 1);
        }
        let Settle { sub, nack, .. } = s;
        for (shard, ids) in parts {
            let cmd = if nack {
                ToOwner::Nack {
                    session,
                    sub,
                    ids,
                    token,
                }
            } else {
                ToOwner::Ack {
                    session,
                    sub,
                    ids,
                    token,
                }
            };
            self.post(shard, cmd);
        }
    }

    /// Puts the deliveries of an aborted ACK/NACK back in flight, under their old ack ids.
    /// A subscription that ended meanwhile had them requeued by its owner already.
    pub(super) fn restore(&mut self, settle: Settle) {
        let Some(s) = self.subs.live.get_mut(&settle.sub) else {
            return;
        };
        for f in settle.taken {
            self.acks
                .ids
                .insert(f.ack_id.clone(), (settle.sub, f.id, f.seq));
            s.in_flight.insert(f.seq, f);
        }
    }

    /// Finds the delivery an ACK/NACK refers to: by `id` (1.2's ack id, required in 1.2), by
    /// `message-id` and `subscription` (1.1), or by `message-id` alone (1.0). Clients that
    /// mix the styles are served as long as the reference is unambiguous. Returns the
    /// subscription and the delivery's [`InFlight::seq`], or None for a 1.0/1.1 frame whose
    /// `subscription` is no longer live; hash lookups only, however many deliveries are in
    /// flight.
    fn resolve_ack(&self, frame: &Frame) -> Result<Option<(SubId, u64)>, Error> {
        let ids = &self.acks.ids;
        let cmd = frame.command;
        match frame.get("id") {
            Some(id) => {
                if let Some(&(sub, _, seq)) = ids.get(id) {
                    return Ok(Some((sub, seq)));
                }
                if self.version == Version::V1_2 && frame.get("message-id").is_none() {
                    return Err(Error::UnknownAck(id.to_string()));
                }
            }
            // 1.2 names a delivery by its `ack` value in `id`; a 1.1-style ACK is refused.
            None if self.version == Version::V1_2 => return Err(Error::MissingHeader(cmd, "id")),
            None => {}
        }
        let Some(mid) = frame.get("message-id") else {
            return Err(Error::MissingHeader(cmd, "message-id"));
        };
        let wanted = match frame.get("subscription") {
            Some(sub_id) => match self.subs.ids.get(sub_id) {
                Some(sub) => Some(*sub),
                None if self.version == Version::V1_2 => {
                    return Err(Error::UnknownSubscription(sub_id.to_string()))
                }
                None => return Ok(None),
            },
            None => None,
        };
        // The ack id is the message-id, or `<message-id>-<sub>` for a message that was already
        // in flight on another subscription of this connection (see `Acks::track`).
        if let Some(&(sub, _, seq)) = ids.get(mid) {
            if wanted.is_none_or(|w| w == sub) {
                return Ok(Some((sub, seq)));
            }
        }
        let suffixed = |sub: SubId| ids.get(&format!("{mid}-{}", sub.0));
        let found = match wanted {
            Some(sub) => suffixed(sub),
            None => self.subs.live.keys().find_map(|&sub| suffixed(sub)),
        };
        found
            .map(|&(sub, _, seq)| Some((sub, seq)))
            .ok_or_else(|| Error::UnknownAck(mid.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Phase;
    use super::super::testing::{send, subscribe, Pair};
    use crate::codec::{Command, Frame};

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
    fn a_1_2_ack_without_id_is_an_error_even_with_a_message_id() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.2");
        let mut c = pair.client("1.2");
        c.send(subscribe("/queue/v12", "client-individual", &[]));
        p.send(send("/queue/v12", "m"));
        pair.pump(&mut [&mut p, &mut c]);
        let msgs = c.frames();
        let ack = Frame::new(Command::Ack)
            .header("message-id", msgs[0].get("message-id").unwrap())
            .header("subscription", "s")
            .header("receipt", "r1");
        c.send(ack);
        assert_eq!(c.session.phase(), Phase::Closing);
        let error = &c.frames()[0];
        assert_eq!(error.command, Command::Error);
        assert_eq!(
            error.get("message"),
            Some("missing required header id on ACK")
        );
        assert_eq!(error.get("receipt-id"), Some("r1"));
    }

    #[test]
    fn a_1_1_ack_for_a_subscription_that_is_gone_is_answered_not_fatal() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.1");
        let mut c = pair.client("1.1");
        c.send(subscribe("/queue/gone", "client", &[]));
        p.send(send("/queue/gone", "m"));
        pair.pump(&mut [&mut p, &mut c]);
        let mid = c.frames()[0].get("message-id").unwrap().to_string();
        c.send(Frame::new(Command::Unsubscribe).header("id", "s"));
        pair.pump(&mut [&mut p, &mut c]);
        c.send(
            Frame::new(Command::Ack)
                .header("message-id", &mid)
                .header("subscription", "s")
                .header("receipt", "late"),
        );
        pair.pump(&mut [&mut p, &mut c]);
        assert_eq!(c.session.phase(), Phase::Connected);
        let frames = c.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].command, Command::Receipt);
        assert_eq!(frames[0].get("receipt-id"), Some("late"));
        // The message went back to the queue when the subscription ended, and stays there.
        c.send(subscribe("/queue/gone", "auto", &[]));
        pair.pump(&mut [&mut p, &mut c]);
        let again = c.frames();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].get("message-id"), Some(mid.as_str()));
    }
}
