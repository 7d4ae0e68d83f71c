//! SEND: the message a frame becomes (id, priority, expiry, the headers it keeps) and the
//! producer window that flow-controls a connection's SENDs.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::error::Error;
use super::state::{required, Session};
use super::temp::in_memory_only;
use super::transactions::TxOp;
use crate::codec::Frame;
use crate::limits::{Limits, PRODUCER_WINDOW};
use crate::message::schedule::{Schedule, ScheduleCmd};
use crate::message::DestinationName;
use crate::message::{Message, ToOwner, Token};

/// SENDs posted to owners and not yet answered: at most [`PRODUCER_WINDOW`] of them and
/// `producer_window_bytes` of their messages, or the session stops reading.
#[derive(Debug, Default)]
pub(super) struct ProducerWindow {
    /// SENDs posted and not yet answered.
    pub unanswered_sends: u32,
    /// The same SENDs by token (a COMMIT's sends share its token), with their count and
    /// bytes: a RECEIPT is written only once every SEND before its frame is answered, stored
    /// ones committed.
    sends: BTreeMap<Token, (u32, u64)>,
    /// Bytes of `sends` (the producer window in bytes, `producer_window_bytes`).
    bytes: u64,
}

impl ProducerWindow {
    /// Room for another SEND (one of any size always goes through).
    pub fn is_open(&self, limits: &Limits) -> bool {
        self.unanswered_sends < PRODUCER_WINDOW && self.bytes < limits.producer_window_bytes as u64
    }

    /// The oldest token with a SEND unanswered: receipts of later frames wait for it.
    pub fn oldest(&self) -> Option<Token> {
        self.sends.first_key_value().map(|(t, _)| *t)
    }

    /// A SEND of `bytes` tracked by `token` was posted.
    fn posted(&mut self, token: Token, bytes: u64) {
        let entry = self.sends.entry(token).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += bytes;
        self.bytes += bytes;
        self.unanswered_sends += 1;
    }

    /// Bytes of the SENDs posted and not yet answered.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True while a SEND tracked by `token` is unanswered.
    pub fn tracks(&self, token: Token) -> bool {
        self.sends.contains_key(&token)
    }

    /// One SEND tracked by `token` was answered.
    pub fn answered(&mut self, token: Token) {
        if let Some((n, bytes)) = self.sends.get_mut(&token) {
            *n -= 1;
            if *n == 0 {
                // A COMMIT's sends share a token: their bytes are released together.
                self.bytes -= *bytes;
                self.sends.remove(&token);
            }
        }
    }
}

impl Session {
    pub(super) fn on_send(&mut self, frame: &mut Frame, now_ms: u64) -> Result<(), Error> {
        // A message that already passed through this broker came round a loop of bridges:
        // taken (its RECEIPT says so, and the bridge that sent it lets it go) and dropped,
        // as ActiveMQ drops a message whose broker path holds its own id.
        let path = frame.get(crate::message::network::BROKER_PATH);
        if path.is_some_and(|p| crate::message::network::path_holds(p, &self.config.broker_name)) {
            self.receipt_now(frame);
            return Ok(());
        }
        let transaction = frame.get("transaction").map(str::to_owned);
        let receipt = frame.get("receipt").map(str::to_owned);
        let mut destinations = self.composite(required(frame, "destination")?)?;
        for d in &destinations {
            self.authorize(crate::security::authz::Operation::Write, d)?;
        }
        // One the user may not create and not known to exist: its owner is asked first,
        // and this SEND comes back once it answers.
        if destinations.iter().any(|d| !self.may_use(d, frame)) {
            return Ok(());
        }
        let fanned = self.virtual_topic_queues(&destinations);
        self.resolve_reply_to(&mut frame.headers.0)?;
        let explicit_expiry = frame.get("expires").is_some();
        let first = self.message(frame, destinations[0].clone(), now_ms)?;
        // An invalid AMQ_SCHEDULED_* header refuses the SEND here, naming the header; a
        // valid schedule is read again where the message is posted (`post_send`).
        Schedule::parse(&first.headers)
            .map_err(|e| Error::InvalidHeader(e.header, e.value, e.why))?;
        // A composite destination (`/queue/a,/topic/b`): one copy per destination, each a
        // message of its own (its own id, its own stored row), as in ActiveMQ.
        let mut messages = Vec::with_capacity(destinations.len());
        let virtual_from = destinations.len();
        destinations.extend(fanned.iter().map(|(q, _)| q.clone()));
        for (i, destination) in destinations.iter().enumerate().skip(1) {
            let expires = match explicit_expiry {
                true => first.expires,
                false => match self.config.destinations.ttl_for(destination) {
                    0 => 0,
                    ttl => now_ms + ttl,
                },
            };
            let mut headers = first.headers.clone();
            if let Some((_, topic)) = i.checked_sub(virtual_from).map(|v| &fanned[v]) {
                // A virtual topic's copy says where it was sent (ActiveMQ's
                // setOriginalDestination).
                headers.push(("original-destination".to_string(), topic.to_string()));
            }
            messages.push(Arc::new(in_memory_only(Message {
                id: self.ids.next(),
                destination: destination.clone(),
                expires,
                headers,
                ..first.clone()
            })));
        }
        messages.insert(0, Arc::new(in_memory_only(first)));
        match transaction {
            Some(tx) => {
                for message in messages {
                    self.transactions
                        .push(&tx, TxOp::Send(message), &self.config.limits)?;
                }
                self.register_receipt(receipt.as_deref(), 0);
            }
            None => {
                let token = self.register_receipt(receipt.as_deref(), messages.len());
                // Every copy is tracked by the RECEIPT's token, or by one token of their own.
                let token = Some(token.unwrap_or_else(|| self.receipts.new_token()));
                for (i, message) in messages.into_iter().enumerate() {
                    // The copies share the first one's body: its bytes weigh once in the
                    // window (and in the large-frames budget it charges).
                    let weight = match i {
                        0 => message.weight(),
                        _ => message.weight() - message.body.len() as u64,
                    };
                    self.post_weighed(message, token, weight);
                }
            }
        }
        Ok(())
    }

    /// The consumer queues of the virtual topics among `destinations` that they do not name
    /// already, each with its topic: a SEND to `/topic/VirtualTopic.Orders` also goes to
    /// every `/queue/Consumer.<group>.VirtualTopic.Orders` (`message/virtual_topic.rs`).
    fn virtual_topic_queues(
        &self,
        destinations: &[DestinationName],
    ) -> Vec<(DestinationName, DestinationName)> {
        let naming = self.config.destinations.virtual_topics();
        let mut out = Vec::new();
        for topic in destinations.iter().filter(|d| naming.is_virtual(d)) {
            for queue in self.virtual_topics.queues_of(topic) {
                if !destinations.contains(&queue) && !out.iter().any(|(q, _)| *q == queue) {
                    out.push((queue, topic.clone()));
                }
            }
        }
        out
    }

    /// The destinations a SEND's `destination` names: one, or a comma-separated composite
    /// (`/queue/a,/topic/b`), whose parts may also be written ActiveMQ's way (`queue://a`,
    /// `topic://b`) or as a plain queue name, or name this connection's temporary
    /// destinations (`/temp-queue/NAME`). Each part is named once; duplicates are refused.
    /// A wildcard is refused: a SEND names the destinations it goes to.
    fn composite(&mut self, header: &str) -> Result<Vec<DestinationName>, Error> {
        let parts = self.composite_parts(header)?;
        if let Some(w) = parts.iter().find(|d| d.is_wildcard()) {
            return Err(Error::Wildcard(
                w.to_string(),
                "a SEND names the destinations it goes to; wildcards are for SUBSCRIBE",
            ));
        }
        Ok(parts)
    }

    fn composite_parts(&mut self, header: &str) -> Result<Vec<DestinationName>, Error> {
        if !header.contains(',') {
            return Ok(vec![self.destination(header)?]);
        }
        let mut out: Vec<DestinationName> = Vec::new();
        for part in header.split(',') {
            let part = part.trim();
            let name = if let Some(n) = part.strip_prefix("queue://") {
                DestinationName::parse(&format!("/queue/{n}"))?
            } else if let Some(n) = part.strip_prefix("topic://") {
                DestinationName::parse(&format!("/topic/{n}"))?
            } else {
                self.destination(part)?
            };
            if out.contains(&name) {
                return Err(Error::InvalidHeader(
                    "destination",
                    header.to_string(),
                    "a composite destination names each destination once",
                ));
            }
            out.push(name);
        }
        Ok(out)
    }

    /// Posts a SEND; it is tracked by `token` (or a fresh one) until its owner answers. A
    /// scheduled one (`AMQ_SCHEDULED_*`, valid since `on_send` checked it) goes to its
    /// owner's schedules: at the SEND, or at the COMMIT of its transaction.
    pub(super) fn post_send(&mut self, message: Arc<Message>, token: Option<Token>) {
        let weight = message.weight();
        self.post_weighed(message, token, weight);
    }

    /// [`Session::post_send`], the message counting `weight` bytes in the producer window.
    fn post_weighed(&mut self, message: Arc<Message>, token: Option<Token>, weight: u64) {
        let shard = self.owner_of(&message.destination);
        let token = token.unwrap_or_else(|| self.receipts.new_token());
        self.window.posted(token, weight);
        let cmd = match Schedule::parse(&message.headers) {
            Ok(Some(schedule)) => ToOwner::Schedule(ScheduleCmd::Add {
                session: self.id,
                message,
                schedule,
                token: Some(token),
            }),
            _ => ToOwner::Send {
                session: self.id,
                message,
                token: Some(token),
            },
        };
        self.post(shard, cmd);
    }

    /// Builds the message a SEND carries, with a fresh id. Takes the frame's headers (and
    /// body) instead of copying them, so call it last.
    fn message(
        &self,
        frame: &mut Frame,
        destination: DestinationName,
        now_ms: u64,
    ) -> Result<Message, Error> {
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
            None => match self.config.destinations.ttl_for(&destination) {
                0 => 0,
                ttl => now_ms + ttl,
            },
        };
        let persistent = frame.get("persistent") == Some("true");
        let mut headers = std::mem::take(&mut frame.headers.0);
        headers.retain(|(k, _)| !BROKER_OWNED.contains(&k.as_str()));
        // JMSTimestamp: when the broker accepted the message, unless the sender said (as
        // ActiveMQ lets it). Kept as a header, so it is stored and selectable as one.
        if !headers.iter().any(|(k, _)| k == "timestamp") {
            headers.push(("timestamp".to_string(), now_ms.to_string()));
        }
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
}

/// Headers of a SEND that the broker sets itself on the MESSAGE (`priority`, `expires` and
/// `persistent` from the message's fields, every time), or that only concern the SEND.
const BROKER_OWNED: [&str; 12] = [
    "priority",
    "expires",
    "persistent",
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

#[cfg(test)]
mod tests {
    use super::super::testing::{send, subscribe, Pair};
    use crate::codec::Command;

    /// A scheduled SEND is receipted at once (it is held by its destination's owner) and not
    /// delivered before its time, while an unscheduled one behind it is.
    #[test]
    fn a_scheduled_send_is_receipted_and_held_back() {
        let mut pair = Pair::new();
        let mut consumer = pair.client("1.2");
        consumer.send(subscribe("/queue/sched", "auto", &[]));
        let mut producer = pair.client("1.2");
        producer.send(
            send("/queue/sched", "later")
                .header("AMQ_SCHEDULED_DELAY", "3600000")
                .header("receipt", "r"),
        );
        producer.send(send("/queue/sched", "now"));
        pair.pump(&mut [&mut consumer, &mut producer]);
        let receipts = producer.frames();
        assert_eq!(receipts[0].get("receipt-id"), Some("r"), "{receipts:?}");
        let frames = consumer.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(&frames[0].body[..], b"now");
    }

    /// An invalid schedule header is an ERROR naming it, and nothing is posted.
    #[test]
    fn an_invalid_schedule_header_is_an_error_naming_it() {
        let mut pair = Pair::new();
        let mut producer = pair.client("1.2");
        producer.send(
            send("/queue/sched", "m")
                .header("AMQ_SCHEDULED_PERIOD", "-1")
                .header("receipt", "bad"),
        );
        let frames = producer.frames();
        assert_eq!(frames[0].command, Command::Error, "{frames:?}");
        assert_eq!(frames[0].get("receipt-id"), Some("bad"));
        assert!(
            frames[0]
                .get("message")
                .is_some_and(|m| m.contains("AMQ_SCHEDULED_PERIOD")),
            "{frames:?}"
        );
        let posted = pair.take_commands();
        assert!(
            !posted.iter().any(|c| matches!(
                c,
                crate::message::ToOwner::Send { .. } | crate::message::ToOwner::Schedule(_)
            )),
            "{posted:?}"
        );
    }

    /// ActiveMQ's clients read `expires`, `priority` and `timestamp` on every MESSAGE, and
    /// `persistent:true` on persistent ones; the broker writes them once each, from the
    /// message, whatever the SEND said.
    #[test]
    fn a_message_carries_expires_priority_timestamp_and_persistent() {
        let mut pair = Pair::new();
        let mut consumer = pair.client("1.2");
        consumer.send(subscribe("/queue/h", "auto", &[]));
        let mut producer = pair.client("1.2");
        producer.send(send("/queue/h", "plain"));
        producer.send(
            send("/queue/h", "marked")
                .header("persistent", "true")
                .header("priority", "7")
                .header("expires", "0")
                .header("timestamp", "1700000000000"),
        );
        producer
            .session
            .handle_frame(send("/queue/h", "later"), 1_234)
            .unwrap();
        pair.pump(&mut [&mut consumer, &mut producer]);
        let frames = consumer.frames();
        assert_eq!(frames.len(), 3, "{frames:?}");
        let count = |f: &crate::codec::Frame, name: &str| {
            f.headers.0.iter().filter(|(k, _)| k == name).count()
        };
        for f in &frames {
            for name in ["expires", "priority", "timestamp"] {
                assert_eq!(count(f, name), 1, "{name} once in {f:?}");
            }
        }
        let plain = &frames[0];
        assert_eq!(plain.get("expires"), Some("0"));
        assert_eq!(plain.get("priority"), Some("4"), "JMS's default priority");
        assert_eq!(
            plain.get("timestamp"),
            Some("0"),
            "the time the SEND was handled"
        );
        assert_eq!(plain.get("persistent"), None);
        let marked = &frames[1];
        assert_eq!(marked.get("priority"), Some("7"));
        assert_eq!(marked.get("persistent"), Some("true"));
        assert_eq!(count(marked, "persistent"), 1);
        assert_eq!(
            marked.get("timestamp"),
            Some("1700000000000"),
            "the sender's own"
        );
        assert_eq!(frames[2].get("timestamp"), Some("1234"));
    }
}
