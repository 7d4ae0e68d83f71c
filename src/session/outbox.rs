//! The outbox: encoded frames waiting for the socket, and the stream offsets that tie effects
//! to the bytes written.
//!
//! Offsets count from the start of the connection's output stream. The driver takes the
//! bytes ([`Session::take_output`]) and reports what it wrote ([`Session::wrote`]). Two things
//! wait on those offsets:
//!
//! - Auto-ack deliveries are consumed only once their MESSAGE is entirely written; then the
//!   session acks them to their owner like a client would ([`Session::flush_credits`]). One
//!   that never reaches the socket goes back to the queue unchanged when its subscription or
//!   connection ends.
//! - Deferred commands: an UNSUBSCRIBE waits until the MESSAGEs already encoded for its
//!   subscription are written (so they count as consumed, and the rest goes back to the
//!   queue), and whatever the client sends after it waits behind it, so effects keep the
//!   order of frames.
//!
//! MESSAGE frames are encoded here by the codec's [`encode_message`], straight into the
//! buffer; nothing is written past the DISCONNECT's RECEIPT or an ERROR.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use foldhash::HashMap;

use super::state::{Phase, Session};
use crate::codec::{encode_into, encode_message, Frame, MessageFrame, Version};
use crate::message::{AckMode, Message, MessageId, SubId, ToOwner};

/// The write buffer and its stream offsets.
#[derive(Debug)]
pub(super) struct Outbox {
    /// Encoded frames waiting to be taken by the driver.
    buf: BytesMut,
    /// Bytes the driver took out of `buf`; with `buf.len()`, the stream offset just past
    /// everything encoded so far.
    taken: u64,
    /// Bytes of the stream the driver has written to the socket.
    written: u64,
    /// Auto-ack deliveries not yet entirely written to the socket, in stream order: the
    /// stream offset just past the MESSAGE frame, its subscription and message.
    /// The shard is the one whose owner delivered it, for a wildcard subscription.
    unwritten: VecDeque<(u64, SubId, MessageId, Option<usize>)>,
    /// Auto-ack deliveries written since the last [`Session::flush_credits`]: consumed.
    written_auto: HashMap<(SubId, Option<usize>), Vec<MessageId>>,
    /// Commands held back until the stream up to their offset is written, in order, with
    /// their shard (see the module comment).
    deferred: VecDeque<(u64, usize, ToOwner)>,
}

impl Outbox {
    pub fn new() -> Self {
        Outbox {
            buf: BytesMut::with_capacity(4096),
            taken: 0,
            written: 0,
            unwritten: VecDeque::new(),
            written_auto: HashMap::default(),
            deferred: VecDeque::new(),
        }
    }

    /// Bytes encoded and not yet taken by the driver.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The stream offset just past everything encoded so far.
    pub fn end(&self) -> u64 {
        self.taken + self.buf.len() as u64
    }

    /// The stream offset just past what the driver wrote to the socket.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// True while an auto-ack delivery of `sub` is encoded but not entirely written.
    pub fn has_unwritten(&self, sub: SubId) -> bool {
        self.unwritten.iter().any(|(_, u, ..)| *u == sub)
    }

    /// Encodes `frame` for a peer speaking `version`.
    pub fn write_frame(&mut self, frame: &Frame, version: Version) {
        self.buf.reserve(crate::codec::encoded_len(frame));
        encode_into(&mut self.buf, frame, version);
    }

    /// The offset of the last deferred command: a command posted now waits behind it.
    pub fn deferred_until(&self) -> Option<u64> {
        self.deferred.back().map(|&(at, ..)| at)
    }

    /// Holds `cmd` until the stream is written up to `at`.
    pub fn defer(&mut self, at: u64, shard: usize, cmd: ToOwner) {
        self.deferred.push_back((at, shard, cmd));
    }

    /// The next deferred command, whether its turn came or not (the connection is gone).
    pub fn pop_deferred(&mut self) -> Option<(usize, ToOwner)> {
        self.deferred
            .pop_front()
            .map(|(_, shard, cmd)| (shard, cmd))
    }

    /// The next deferred command whose turn came.
    fn pop_due(&mut self) -> Option<(usize, ToOwner)> {
        match self.deferred.front() {
            Some(&(at, ..)) if at <= self.written => self.pop_deferred(),
            _ => None,
        }
    }
}

impl Session {
    /// True if encoded bytes wait to be taken ([`Session::take_output`]).
    pub fn has_output(&self) -> bool {
        !self.outbox.buf.is_empty()
    }

    /// Bytes encoded and not yet taken (bounded by the write-buffer limit plus one frame).
    pub fn output_len(&self) -> usize {
        self.outbox.buf.len()
    }

    /// Hands the driver everything encoded so far, to write to the socket.
    pub fn take_output(&mut self) -> Bytes {
        let bytes = self.outbox.buf.split().freeze();
        self.outbox.taken += bytes.len() as u64;
        bytes
    }

    /// Queues a heart-beat (an EOL) for the socket.
    pub fn write_heart_beat(&mut self) {
        self.outbox.buf.extend_from_slice(b"\n");
    }

    /// The driver wrote `n` more bytes of what it took to the socket: auto-ack deliveries now
    /// entirely there are consumed (acked at the next [`Session::flush_credits`]), and
    /// deferred commands whose turn came are posted.
    pub fn wrote(&mut self, n: usize) {
        let o = &mut self.outbox;
        o.written += n as u64;
        while let Some(&(end, sub, id, shard)) = o.unwritten.front() {
            if end > o.written {
                break;
            }
            o.unwritten.pop_front();
            o.written_auto.entry((sub, shard)).or_default().push(id);
        }
        if o.deferred.front().is_some_and(|(at, ..)| *at <= o.written) {
            // Acks of what was written go first: the owner must see them before an
            // UNSUBSCRIBE that would otherwise put those deliveries back.
            self.flush_credits();
            while let Some((shard, cmd)) = self.outbox.pop_due() {
                self.post_now(shard, cmd);
            }
        }
    }

    /// Acks the auto-ack deliveries written to the socket since the last call: they are
    /// consumed, and their subscriptions get the credit back.
    pub fn flush_credits(&mut self) {
        if self.outbox.written_auto.is_empty() {
            return;
        }
        for ((sub, shard), ids) in std::mem::take(&mut self.outbox.written_auto) {
            // Unsubscribed after its last write: the owner holds nothing of it.
            let Some(destination) = self.subs.destination_of(sub).cloned() else {
                continue;
            };
            let shard = shard.unwrap_or_else(|| self.owner_of(&destination));
            let cmd = ToOwner::Ack {
                session: self.id,
                sub,
                ids,
                token: None,
            };
            // Not deferred: these deliveries came before anything that waits there.
            self.post_now(shard, cmd);
        }
    }

    /// Writes what a browser subscription was shown, then ActiveMQ's end marker: a MESSAGE
    /// with `browser:end`, `message-id:0` and no body.
    pub(super) fn write_browsed(&mut self, sub: SubId, messages: Vec<(Arc<Message>, u32)>) {
        let Some(destination) = self.subs.live.get(&sub).map(|s| s.destination.clone()) else {
            return;
        };
        for (m, count) in messages {
            self.write_message(sub, &m, count);
        }
        let end = Arc::new(Message {
            id: MessageId(0),
            destination,
            headers: vec![("browser".to_string(), "end".to_string())],
            body: Default::default(),
            priority: 4,
            persistent: false,
            expires: 0,
        });
        self.write_message(sub, &end, 0);
    }

    /// Encodes a MESSAGE frame straight into the write buffer (no intermediate [`Frame`]),
    /// giving a client-mode delivery its ack id; a subscription whose SUBSCRIBE's RECEIPT is
    /// not written yet holds the delivery instead.
    pub(super) fn write_message(&mut self, sub_id: SubId, m: &Arc<Message>, redelivery_count: u32) {
        if self.phase == Phase::Closing {
            // Past the DISCONNECT's RECEIPT or an ERROR the client reads no more: the
            // delivery is not written, so its owner takes it back at the Goodbye.
            return;
        }
        let Some(sub) = self.subs.live.get_mut(&sub_id) else {
            // A late delivery for a subscription closed meanwhile: never written, so the
            // owner puts it back in the queue when it processes the UNSUBSCRIBE.
            return;
        };
        if let Some((_, held)) = &mut sub.held {
            held.push((m.clone(), redelivery_count));
            return;
        }
        // A wildcard subscription's deliveries come from every shard: each is acked to the
        // owner of its own destination.
        let shard = sub.wildcard.then(|| m.destination.owner(self.shards));
        let in_flight = match sub.ack {
            _ if sub.browser => None,
            AckMode::Auto => None,
            AckMode::Client | AckMode::ClientIndividual => Some(self.acks.track(sub_id, m, shard)),
        };
        // A temporary destination of this connection shows the name it knows it by.
        let destination = self.temps.local_name(&m.destination);
        let headers = self.temps.show(&m.headers);
        let frame = MessageFrame {
            subscription: &sub.id,
            destination: destination.unwrap_or(m.destination.as_str()),
            message_id: m.id.0,
            ack: match (&in_flight, self.version) {
                (Some(f), Version::V1_2) => Some(&f.ack_id),
                _ => None,
            },
            redelivery_count,
            expires: m.expires,
            priority: m.priority,
            persistent: m.persistent,
            headers: &headers,
            body: &m.body,
        };
        let o = &mut self.outbox;
        o.buf.reserve(frame.encoded_len());
        encode_message(&mut o.buf, &frame, self.version);
        match in_flight {
            Some(f) => {
                sub.in_flight.insert(f.seq, f);
            }
            // A browsed copy: nothing to consume when it is written.
            None if sub.browser => {}
            None => {
                // Consumed once these bytes reach the socket (see `wrote`).
                let end = o.end();
                o.unwritten.push_back((end, sub_id, m.id, shard));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{send, subscribe, Pair};
    use crate::codec::{Command, Frame};

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
        c.close();
        let mut d = pair.client("1.2");
        d.send(subscribe("/queue/b", "client-individual", &[]));
        pair.pump(&mut [&mut p, &mut d]);
        let again = d.frames();
        let bodies: Vec<_> = again.iter().map(|f| f.body.to_vec()).collect();
        assert_eq!(bodies, [b"0", b"1", b"2", b"3", b"4"]);
        // Never written, so not redelivered.
        assert!(again.iter().all(|f| f.get("redelivered").is_none()));
    }
}
