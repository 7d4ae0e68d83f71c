//! SUBSCRIBE and UNSUBSCRIBE: subscription ids, ack modes, prefetch, and durable
//! subscriptions named in three dialects (ActiveMQ, Artemis, RabbitMQ). The owner shard of the
//! destination holds the consumer; this file holds what the session needs to write and ack
//! its deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashMap;

use super::acks::InFlight;
use super::error::Error;
use super::services::SubscriptionInfo;
use super::state::{required, Session};
use crate::codec::{Command, Frame, Version};
use crate::limits::MAX_PREFETCH;
use crate::message::advisory::{self, ConsumerInfo, Event};
use crate::message::{AckMode, DurableName, Message, SubId, ToOwner, Token};
use crate::message::{ConsumerOptions, DestinationName, Kind};
use crate::selector::Selector;

/// A live subscription as its session sees it.
#[derive(Debug)]
pub(super) struct Sub {
    /// The subscription id: the SUBSCRIBE's `id` (the MESSAGE `subscription` header).
    pub id: String,
    pub destination: DestinationName,
    pub ack: AckMode,
    /// Deliveries awaiting ACK/NACK (client modes), by delivery order ([`InFlight::seq`]):
    /// a cumulative ACK splits it, an individual one removes one entry, both in O(log n).
    pub in_flight: BTreeMap<u64, InFlight>,
    /// Until the SUBSCRIBE's RECEIPT (this token) is written, deliveries wait here, so the
    /// RECEIPT always comes before the subscription's first MESSAGE.
    pub held: Option<(Token, Vec<HeldDelivery>)>,
    /// `browser:true`: its MESSAGEs are copies, consumed by nobody and acked by no one.
    pub browser: bool,
    /// A wildcard destination: attached on every shard, so its deliveries are acked to the
    /// owner of each message's own destination.
    pub wildcard: bool,
    /// Counted among the advisory listeners while it lives (`advisory::may_listen`).
    pub _listening: Option<crate::message::advisory::Listening>,
}

/// A delivery held until its subscription's RECEIPT: the message and its redelivery count.
pub(super) type HeldDelivery = (Arc<Message>, u32);

/// The session's subscriptions.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    pub live: HashMap<SubId, Sub>,
    /// SUBSCRIBE `id` → key.
    pub ids: HashMap<String, SubId>,
    next: u32,
    /// Destinations of subscriptions whose UNSUBSCRIBE is deferred (to route their acks).
    pub leaving: HashMap<SubId, DestinationName>,
}

impl Subscriptions {
    /// Where the acks of `sub` go: its destination while it is live or its UNSUBSCRIBE
    /// waits; None once the owner holds nothing of it.
    pub fn destination_of(&self, sub: SubId) -> Option<&DestinationName> {
        match self.live.get(&sub) {
            Some(s) => Some(&s.destination),
            None => self.leaving.get(&sub),
        }
    }
}

impl Session {
    pub(super) fn on_subscribe(&mut self, frame: &Frame) -> Result<(), Error> {
        let dest = required(frame, "destination")?;
        // A comma names a composite destination (`/queue/a,/queue/b`), which a SEND takes;
        // subscribing to one is refused rather than read as one oddly named queue that no
        // SEND could reach (ActiveMQ consumes from each part; docs/compatibility.md).
        if dest.contains(',') {
            return Err(Error::InvalidHeader(
                "destination",
                dest.to_string(),
                "a composite destination is for SEND; SUBSCRIBE to each destination \
                 (or to a wildcard) with an id of its own",
            ));
        }
        let destination = self.destination(dest)?;
        self.authorize(crate::security::authz::Operation::Read, &destination)?;
        if destination.is_temp()
            && !self.temps.owns(&destination)
            && !self.is_temp_route(&destination, frame)
        {
            return Err(Error::ForeignTemp(dest.to_string()));
        }
        if !self.may_use(&destination, frame) {
            // Comes back once the owner says whether the destination exists.
            return Ok(());
        }
        let sub_id = match frame.get("id") {
            Some(id) => id.to_string(),
            None if self.version == Version::V1_0 => dest.to_string(),
            None => return Err(Error::MissingHeader(Command::Subscribe, "id")),
        };
        if self.subs.ids.contains_key(&sub_id) {
            return Err(Error::DuplicateSubscription(sub_id));
        }
        // Not for this broker's own bridges: a route per destination the peer has demand for,
        // bounded by the peer's consumers (and so by its limits), not by one client's.
        let max = self.config.limits.max_subscriptions_per_connection;
        if self.subs.live.len() >= max && !self.own_bridge {
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
        let options = consumer_options(frame, ack)?;
        let browser = match frame.get("browser") {
            Some(v) if v.eq_ignore_ascii_case("true") => {
                if destination.kind() != Kind::Queue {
                    return Err(Error::InvalidHeader(
                        "browser",
                        v.to_string(),
                        "only a queue can be browsed",
                    ));
                }
                true
            }
            _ => false,
        };
        let durable = self.durable_name(frame, &destination, Some(&sub_id))?;
        let wildcard = destination.is_wildcard();
        if wildcard && durable.is_some() {
            return Err(Error::Wildcard(
                destination.to_string(),
                "a durable subscription needs one topic",
            ));
        }
        if wildcard && browser {
            return Err(Error::Wildcard(
                destination.to_string(),
                "a browser shows one queue",
            ));
        }
        let prefetch = self.prefetch(frame, &destination, durable.is_some())?;
        let sub = SubId(self.subs.next);
        self.subs.next += 1;
        self.subs.ids.insert(sub_id.clone(), sub);
        let info = SubscriptionInfo {
            id: sub_id.clone(),
            destination: destination.to_string(),
            ack: match ack {
                AckMode::Auto => "auto",
                AckMode::Client => "client",
                AckMode::ClientIndividual => "client-individual",
            },
            prefetch,
            durable: durable.as_ref().map(|d| d.key().to_string()),
            selector: options.selector.as_ref().map(|s| s.text().to_string()),
            broker_path: options.broker_path.as_deref().map(str::to_string),
            number: sub.0,
            browser,
        };
        let s = Sub {
            id: sub_id,
            browser,
            destination: destination.clone(),
            ack,
            in_flight: BTreeMap::new(),
            held: None,
            wildcard,
            _listening: advisory::may_listen(&destination)
                .then(|| advisory::Listening::start(&self.advisory_listeners)),
        };
        self.subs.live.insert(sub, s);
        self.connections
            .update(self.id.0, |c| c.subscriptions.push(info));
        // A wildcard subscription is attached on every shard; its RECEIPT waits for all.
        let shards = self.shards_of(&destination);
        let token = self.receipt_token(frame, shards.len());
        if let (Some(t), Some(s)) = (token, self.subs.live.get_mut(&sub)) {
            s.held = Some((t, Vec::new()));
        }
        if browser {
            let shard = self.owner_of(&destination);
            let cmd = ToOwner::Browse {
                session: self.id,
                sub,
                destination,
                selector: options.selector,
                token,
            };
            self.post(shard, cmd);
            return Ok(());
        }
        let options = ConsumerOptions {
            prefetch,
            ..options
        };
        for shard in shards {
            let cmd = ToOwner::Subscribe {
                session: self.id,
                sub,
                destination: destination.clone(),
                options: options.clone(),
                durable: durable.clone(),
                token,
            };
            self.post(shard, cmd);
        }
        if self.config.destinations.advisories && advisory::may_listen(&destination) {
            let marked = frame
                .get("stompbox-replay-end")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            self.replay_consumers(sub, &destination, marked);
        }
        Ok(())
    }

    /// A new subscriber to consumer advisories first receives a `consumer-added` advisory for
    /// each consumer that exists (ActiveMQ does the same), so that a network bridge learns
    /// its peer's demand when it links, not only the changes after.
    ///
    /// Read from the live connections registry, which sessions update before they post a
    /// SUBSCRIBE or UNSUBSCRIBE to the owners; the advisories are posted after this
    /// subscription's SUBSCRIBE, and each shard's mailbox is one queue. So a consumer missing
    /// here has its `consumer-added` delivered live, and one listed here that goes away has
    /// its `consumer-removed` delivered after the replayed one. A replayed consumer may also
    /// be announced live: subscribers key consumers by `consumer_id`.
    ///
    /// With `marked` (the SUBSCRIBE said `stompbox-replay-end:true`) the replayed advisories
    /// say `"replayed": true` and a `replay-end` advisory with their number follows them, so
    /// that a bridge knows when it has its peer's whole demand. The shards deliver in
    /// parallel: the marker can overtake replayed advisories of other shards, hence the count.
    fn replay_consumers(&mut self, sub: SubId, pattern: &DestinationName, marked: bool) {
        let mut consumers: Vec<(DestinationName, SubscriptionInfo, u64)> = Vec::new();
        for c in self.connections.list() {
            for s in c.subscriptions {
                let Ok(d) = DestinationName::parse(&s.destination) else {
                    continue;
                };
                // A browser is no consumer (owners announce none for it).
                if !advisory::is_advisory(&d) && !s.browser {
                    consumers.push((d, s, c.id));
                }
            }
        }
        let mut counts: std::collections::HashMap<&DestinationName, usize> = Default::default();
        for (d, _, _) in &consumers {
            *counts.entry(d).or_default() += 1;
        }
        // Durable subscriptions without a subscriber: consumers too, inactive (a network
        // bridge forwards to them while their subscribers are away).
        let attached: std::collections::HashSet<(&DestinationName, &str)> = consumers
            .iter()
            .filter_map(|(d, s, _)| Some((d, s.durable.as_deref()?)))
            .collect();
        let offline: Vec<(DestinationName, String, Option<String>)> = self
            .durables
            .list()
            .into_iter()
            .filter_map(|(topic, key, selector)| {
                let topic = DestinationName::parse(&topic).ok()?;
                (!attached.contains(&(&topic, key.as_str()))).then_some((topic, key, selector))
            })
            .collect();
        let events = consumers
            .iter()
            .map(|(d, s, connection)| Event::ConsumerAdded {
                destination: d,
                consumer: ConsumerInfo {
                    connection: *connection,
                    subscription: s.number,
                    selector: s.selector.as_deref(),
                    durable: s.durable.as_deref(),
                    broker_path: s.broker_path.as_deref(),
                    active: true,
                },
                count: counts.get(d).copied().unwrap_or(1),
            })
            .chain(
                offline
                    .iter()
                    .map(|(topic, key, selector)| Event::ConsumerAdded {
                        destination: topic,
                        consumer: ConsumerInfo {
                            connection: 0,
                            subscription: 0,
                            selector: selector.as_deref(),
                            durable: Some(key),
                            broker_path: None,
                            active: false,
                        },
                        count: counts.get(topic).copied().unwrap_or(0),
                    }),
            );
        let mut replayed = 0;
        for event in events {
            let Some(topic) = event.topic() else { continue };
            if !crate::message::wildcard::matches(pattern.name(), topic.name()) {
                continue;
            }
            let message = match marked {
                true => event.replayed(self.ids.next()),
                false => event.message(self.ids.next()),
            };
            if let Some(message) = message {
                self.publish_to(sub, message);
                replayed += 1;
            }
        }
        if !marked {
            return;
        }
        // Published to a topic the subscription matches: its wildcards made a segment.
        let name: Vec<&str> = pattern
            .name()
            .split('.')
            .map(|s| match s {
                "*" | ">" => "stompbox-replay-end",
                s => s,
            })
            .collect();
        let Ok(topic) = DestinationName::parse(&format!("/topic/{}", name.join("."))) else {
            return;
        };
        if !advisory::is_advisory(&topic) {
            return;
        }
        let end = Event::ReplayEnd {
            topic: &topic,
            replayed,
        };
        if let Some(message) = end.message(self.ids.next()) {
            self.publish_to(sub, message);
        }
    }

    /// Hands `message` to subscription `sub` of this session only, on its topic's owner.
    fn publish_to(&mut self, sub: SubId, message: Arc<crate::message::Message>) {
        let shard = self.owner_of(&message.destination);
        let session = self.id;
        self.post(
            shard,
            ToOwner::PublishTo {
                message,
                session,
                sub,
            },
        );
    }

    /// The shards holding subscriptions to `destination`: its owner, or every shard for a
    /// wildcard.
    fn shards_of(&self, destination: &DestinationName) -> std::ops::Range<usize> {
        if destination.is_wildcard() {
            0..self.shards
        } else {
            let owner = self.owner_of(destination);
            owner..owner + 1
        }
    }

    pub(super) fn on_unsubscribe(&mut self, frame: &Frame) -> Result<(), Error> {
        let sub_id = match (frame.get("id"), self.version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(Error::MissingHeader(Command::Unsubscribe, "id")),
        };
        let live = self.subs.ids.remove(sub_id);
        let (sub, destination) = match live {
            Some(sub) => {
                let s = self
                    .subs
                    .live
                    .remove(&sub)
                    .expect("ids and live hold the same subscriptions");
                self.acks.forget(s.in_flight.values());
                if self.outbox.has_unwritten(sub) {
                    self.subs.leaving.insert(sub, s.destination.clone());
                }
                (Some(sub), s.destination)
            }
            // Deleting a durable subscription that is not active on this connection needs
            // its topic, to find the shard that holds it.
            None => match (frame.get("destination"), has_durable_header(frame)) {
                (Some(d), true) => (None, DestinationName::parse(d)?),
                // Without a topic (ActiveMQ's clients send only the name), every shard is
                // asked; the one holding it deletes it.
                (None, true) => return self.destroy_durable_anywhere(frame, sub_id),
                _ => return Err(Error::UnknownSubscription(sub_id.to_string())),
            },
        };
        let gone = sub_id.to_string();
        self.connections
            .update(self.id.0, |c| c.subscriptions.retain(|s| s.id != gone));
        let destroy = match has_durable_header(frame) {
            true => self.durable_name(frame, &destination, Some(sub_id))?,
            false => None,
        };
        let shards = self.shards_of(&destination);
        let token = self.receipt_token(frame, shards.len());
        for shard in shards {
            let cmd = ToOwner::Unsubscribe {
                session: self.id,
                sub,
                destination: destination.clone(),
                destroy: destroy.clone(),
                token,
            };
            // Deliveries already encoded for it are written (and consumed) first.
            let end = self.outbox.end();
            if end > self.outbox.written() {
                self.outbox.defer(end, shard, cmd);
            } else {
                self.post(shard, cmd);
            }
        }
        Ok(())
    }

    /// Writes the deliveries a subscription held back until its SUBSCRIBE's RECEIPT.
    pub(super) fn release_held(&mut self, token: Token) {
        let ready: Vec<SubId> = self
            .subs
            .live
            .iter()
            .filter(|(_, s)| s.held.as_ref().is_some_and(|(t, _)| *t == token))
            .map(|(id, _)| *id)
            .collect();
        for sub in ready {
            let held = self.subs.live.get_mut(&sub).and_then(|s| s.held.take());
            for (m, count) in held.map(|(_, h)| h).unwrap_or_default() {
                self.write_message(sub, &m, count);
            }
        }
    }

    /// UNSUBSCRIBE of a durable subscription named without its topic: every shard is asked
    /// to delete it, and the RECEIPT waits for all of them.
    fn destroy_durable_anywhere(&mut self, frame: &Frame, sub_id: &str) -> Result<(), Error> {
        let Some(durable) = self.durable_spec(frame, Some(sub_id))? else {
            return Err(Error::UnknownSubscription(sub_id.to_string()));
        };
        let token = self.receipt_token(frame, self.shards);
        for shard in 0..self.shards {
            let cmd = ToOwner::DestroyDurable {
                session: self.id,
                durable: durable.clone(),
                token,
            };
            self.post(shard, cmd);
        }
        Ok(())
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
        let named = self.durable_spec(frame, sub_id)?;
        if named.is_some() && destination.kind() != Kind::Topic {
            return Err(Error::DurableQueue(destination.to_string()));
        }
        if named.is_some() && destination.is_temp() {
            return Err(Error::InvalidHeader(
                "destination",
                destination.to_string(),
                "a temporary topic cannot have a durable subscription (it ends with its connection)",
            ));
        }
        Ok(named)
    }

    /// The durable subscription's name from the frame's durable headers (see
    /// `durable_name`), whatever its destination.
    fn durable_spec(
        &self,
        frame: &Frame,
        sub_id: Option<&str>,
    ) -> Result<Option<DurableName>, Error> {
        let explicit = frame
            .get("activemq.subscriptionName")
            .or_else(|| frame.get("durable-subscription-name"));
        let name = match (explicit, rabbitmq_durable(frame)) {
            (Some(n), _) => n,
            (None, Some("true")) => match sub_id {
                Some(id) => id,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
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
}

/// ActiveMQ's consumer options on a SUBSCRIBE: `selector`, `activemq.exclusive`,
/// `activemq.priority` and `activemq.noLocal` (Artemis spells it `no-local`). Prefetch is
/// set by the caller.
fn consumer_options(frame: &Frame, ack: AckMode) -> Result<ConsumerOptions, Error> {
    let selector = match frame.get("selector") {
        // ActiveMQ treats an empty selector as none; so do we.
        Some(text) if !text.trim().is_empty() => Some(Arc::new(
            Selector::parse(text).map_err(|e| Error::Selector(text.to_string(), e))?,
        )),
        _ => None,
    };
    let flag = |name: &'static str| -> Result<bool, Error> {
        match frame.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(Error::InvalidHeader(
                name,
                v.to_string(),
                "expected true or false",
            )),
        }
    };
    let priority = match frame.get("activemq.priority") {
        None => 0,
        Some(v) => v.trim().parse::<i8>().map_err(|_| {
            Error::InvalidHeader(
                "activemq.priority",
                v.to_string(),
                "expected an integer from -128 to 127",
            )
        })?,
    };
    Ok(ConsumerOptions {
        ack,
        prefetch: 0,
        selector,
        exclusive: flag("activemq.exclusive")?,
        priority,
        no_local: flag("activemq.noLocal")? || flag("no-local")?,
        broker_path: frame
            .get(crate::message::network::BROKER_PATH)
            .filter(|p| !p.is_empty())
            .map(Arc::from),
    })
}

pub(super) fn has_durable_header(frame: &Frame) -> bool {
    frame.get("activemq.subscriptionName").is_some()
        || frame.get("durable-subscription-name").is_some()
        || rabbitmq_durable(frame) == Some("true")
}

/// RabbitMQ's `durable` header, or `persistent`, its documented alias on SUBSCRIBE and
/// UNSUBSCRIBE.
fn rabbitmq_durable(frame: &Frame) -> Option<&str> {
    frame.get("durable").or_else(|| frame.get("persistent"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{send, subscribe, Pair};
    use crate::codec::{Command, Frame};

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
    fn rabbitmq_persistent_is_durable_on_subscribe_and_deletes_on_unsubscribe() {
        let mut pair = Pair::new();
        let mut p = pair.client("1.2");
        let mut c = pair.client("1.2");
        let durable = [("persistent", "true")];
        let unsubscribe = || Frame::new(Command::Unsubscribe).header("id", "s");
        c.send(subscribe("/topic/rt", "auto", &durable));
        c.send(unsubscribe());
        pair.pump(&mut [&mut p, &mut c]);
        p.send(send("/topic/rt", "kept"));
        pair.pump(&mut [&mut p, &mut c]);
        c.send(subscribe("/topic/rt", "auto", &durable));
        pair.pump(&mut [&mut p, &mut c]);
        let frames = c.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(&frames[0].body[..], b"kept", "kept while away");
        // UNSUBSCRIBE with persistent:true deletes it, as RabbitMQ's docs say.
        c.send(unsubscribe().header("persistent", "true"));
        pair.pump(&mut [&mut p, &mut c]);
        p.send(send("/topic/rt", "gone"));
        pair.pump(&mut [&mut p, &mut c]);
        c.send(subscribe("/topic/rt", "auto", &durable));
        pair.pump(&mut [&mut p, &mut c]);
        let frames = c.frames();
        assert!(
            frames.is_empty(),
            "a new subscription starts empty: {frames:?}"
        );
    }
}
