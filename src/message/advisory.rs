//! Advisory messages: ActiveMQ's event topics under `ActiveMQ.Advisory.`, which a STOMP client
//! subscribes to like any topic (wildcards included, e.g. `/topic/ActiveMQ.Advisory.Consumer.>`).
//! Each advisory is a non-persistent message with `type:Advisory`, a JSON body
//! (`content-type:application/json`) and, for consumer events, ActiveMQ's `consumerCount`
//! header. `docs/compatibility.md` (Advisories) documents every field.
//!
//! Owners publish destination, consumer, expiry and dead-letter events; sessions publish
//! connection events.
//! None is built while no subscription could receive one (sessions count them:
//! [`may_listen`], [`Listening`]); the advisory topic's owner fans it out, and drops it when
//! nobody listens there. Nothing is published about the advisory topics themselves, so
//! advisories cannot feed on each other.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{DestinationName, Kind, Message, MessageId};

/// The name prefix of every advisory topic.
pub const PREFIX: &str = "ActiveMQ.Advisory.";

/// Whether `destination` is an advisory topic (no advisories are published about those).
pub fn is_advisory(destination: &DestinationName) -> bool {
    destination.kind() == Kind::Topic && destination.name().starts_with(PREFIX)
}

/// Whether a subscription to `destination` may receive advisories: an advisory topic, or a
/// wildcard topic pattern whose first two segments can match `ActiveMQ.Advisory` (a little
/// more than that, which only costs building advisories nobody receives).
pub fn may_listen(destination: &DestinationName) -> bool {
    if destination.kind() != Kind::Topic {
        return false;
    }
    if is_advisory(destination) {
        return true;
    }
    if !destination.is_wildcard() {
        return false;
    }
    let mut segments = destination.name().split('.');
    matches!(
        (segments.next(), segments.next()),
        (Some(">"), _) | (Some("ActiveMQ" | "*"), Some("Advisory" | "*" | ">"))
    )
}

/// One subscription counted in the advisory listeners while it lives.
#[derive(Debug)]
pub struct Listening(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Listening {
    /// Counts one more listener in `listeners`.
    pub fn start(listeners: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Listening {
        listeners.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Listening(listeners.clone())
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A consumer as its advisory describes it.
#[derive(Debug, Clone)]
pub struct ConsumerInfo<'a> {
    /// The connection (session number, as in `connection_id` of connection advisories).
    pub connection: u64,
    /// The subscription's number on its connection.
    pub subscription: u32,
    pub selector: Option<&'a str>,
    /// `client_id:name` of a durable subscription.
    pub durable: Option<&'a str>,
    /// For a network bridge's subscription: the brokers whose consumers it stands for.
    pub broker_path: Option<&'a str>,
    /// A subscriber is attached. False only for a durable subscription without one, as
    /// replayed to a new advisory subscriber ([`Durables`]): its `consumer_id` is then
    /// `durable:<client_id:name>`.
    pub active: bool,
}

/// Every durable subscription of the broker, with or without a subscriber: (topic,
/// `client_id:name`) → selector. The topics' owners keep it (created, recovered, deleted); a
/// new subscriber to consumer advisories gets a `consumer-added` with `active:false` for each
/// one without a subscriber, so that a network bridge forwards to it while it is offline
/// (`dynamic_only = false`). Bounded by `max_durable_subscriptions`.
#[derive(Debug, Default)]
pub struct Durables(std::sync::Mutex<std::collections::BTreeMap<(String, String), Option<String>>>);

impl Durables {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, String), Option<String>>>
    {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes durable subscription `key` of `topic`, with its selector.
    pub fn set(&self, topic: &DestinationName, key: &str, selector: Option<&str>) {
        self.lock().insert(
            (topic.as_str().to_string(), key.to_string()),
            selector.map(str::to_string),
        );
    }

    /// Forgets durable subscription `key` of `topic`.
    pub fn remove(&self, topic: &DestinationName, key: &str) {
        self.lock()
            .remove(&(topic.as_str().to_string(), key.to_string()));
    }

    /// Every durable subscription: (topic, `client_id:name`, selector).
    pub fn list(&self) -> Vec<(String, String, Option<String>)> {
        self.lock()
            .iter()
            .map(|((t, k), s)| (t.clone(), k.clone(), s.clone()))
            .collect()
    }
}

/// Something that happened, worth an advisory.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A consumer started on `destination` (a wildcard pattern for wildcard subscriptions);
    /// `count` consumers are there now.
    ConsumerAdded {
        destination: &'a DestinationName,
        consumer: ConsumerInfo<'a>,
        count: usize,
    },
    /// A consumer stopped; `count` remain.
    ConsumerRemoved {
        destination: &'a DestinationName,
        consumer: ConsumerInfo<'a>,
        count: usize,
    },
    /// Durable subscription `durable` (`client_id:name`) of topic `destination` was deleted,
    /// with what it held (published with the consumer advisories of its topic).
    DurableRemoved {
        destination: &'a DestinationName,
        durable: &'a str,
    },
    /// A client connected.
    ConnectionAdded {
        connection: u64,
        client_id: Option<&'a str>,
        peer: &'a str,
        version: &'a str,
    },
    /// A client's connection ended.
    ConnectionRemoved {
        connection: u64,
        client_id: Option<&'a str>,
        peer: &'a str,
    },
    /// A message expired in `destination` before it was consumed.
    Expired {
        destination: &'a DestinationName,
        message_id: MessageId,
    },
    /// `destination` came into being: its first use, or its first use after it was forgotten
    /// (not when it comes back from being kept idle, nor at recovery).
    DestinationAdded { destination: &'a DestinationName },
    /// `destination` is gone: deleted by an operator, forgotten once idle (`reason` `idle`),
    /// or a temporary one whose connection closed.
    DestinationRemoved {
        destination: &'a DestinationName,
        reason: &'a str,
    },
    /// The end of the consumers replayed to a new subscriber of consumer advisories that asked
    /// for it (`stompbox-replay-end:true` on its SUBSCRIBE; network bridges do): `replayed`
    /// advisories marked `"replayed": true` came before it, or come from other shards just
    /// after it. Published to `topic`, a name its subscription matches.
    ReplayEnd {
        topic: &'a DestinationName,
        replayed: usize,
    },
    /// A message of `destination` went to dead-letter queue `dlq`.
    DeadLettered {
        destination: &'a DestinationName,
        message_id: MessageId,
        dlq: &'a DestinationName,
        reason: &'a str,
    },
}

/// `Queue` or `Topic`, as advisory topic names spell kinds.
fn kind(d: &DestinationName) -> &'static str {
    match d.kind() {
        Kind::Queue => "Queue",
        Kind::Topic => "Topic",
    }
}

/// `Queue`, `Topic`, `TempQueue` or `TempTopic`: the topic of `d`'s destination advisories.
fn destination_topic(d: &DestinationName) -> &'static str {
    match (d.kind(), d.is_temp()) {
        (Kind::Queue, false) => "Queue",
        (Kind::Topic, false) => "Topic",
        (Kind::Queue, true) => "TempQueue",
        (Kind::Topic, true) => "TempTopic",
    }
}

/// The body of a destination advisory; `operation_type` is ActiveMQ's
/// `DestinationInfo.operationType` (0 = add, 1 = remove), for code ported from it.
fn destination_json(event: &str, d: &DestinationName, operation_type: u8) -> Value {
    json!({
        "event": event,
        "destination": d.as_str(),
        "temporary": d.is_temp(),
        "operation_type": operation_type,
    })
}

fn consumer_json(event: &str, d: &DestinationName, c: &ConsumerInfo<'_>, count: usize) -> Value {
    json!({
        "event": event,
        "destination": d.as_str(),
        "connection_id": c.connection,
        "consumer_id": match (c.active, c.durable) {
            (false, Some(durable)) => format!("durable:{durable}"),
            _ => format!("{}:{}", c.connection, c.subscription),
        },
        "active": c.active,
        "selector": c.selector,
        "durable_subscription": c.durable,
        "consumer_count": count,
        "broker_path": c.broker_path,
    })
}

impl Event<'_> {
    /// The advisory topic this event is published to, or None when its destination is an
    /// advisory topic itself.
    pub fn topic(&self) -> Option<DestinationName> {
        let name = match self {
            Event::ConsumerAdded { destination, .. }
            | Event::ConsumerRemoved { destination, .. }
            | Event::DurableRemoved { destination, .. } => {
                if is_advisory(destination) {
                    return None;
                }
                format!("Consumer.{}.{}", kind(destination), destination.name())
            }
            Event::ConnectionAdded { .. } | Event::ConnectionRemoved { .. } => {
                "Connection".to_string()
            }
            Event::DestinationAdded { destination }
            | Event::DestinationRemoved { destination, .. } => {
                if is_advisory(destination) {
                    return None;
                }
                destination_topic(destination).to_string()
            }
            Event::Expired { destination, .. } => {
                if is_advisory(destination) {
                    return None;
                }
                format!("Expired.{}.{}", kind(destination), destination.name())
            }
            Event::DeadLettered { destination, .. } => {
                format!("MessageDLQd.{}.{}", kind(destination), destination.name())
            }
            Event::ReplayEnd { topic, .. } => return Some((*topic).clone()),
        };
        DestinationName::parse(&format!("/topic/{PREFIX}{name}")).ok()
    }

    fn body(&self, now: u64) -> Value {
        let mut v = match self {
            Event::ConsumerAdded {
                destination,
                consumer,
                count,
            } => consumer_json("consumer-added", destination, consumer, *count),
            Event::ConsumerRemoved {
                destination,
                consumer,
                count,
            } => consumer_json("consumer-removed", destination, consumer, *count),
            Event::DurableRemoved {
                destination,
                durable,
            } => json!({
                "event": "durable-removed",
                "destination": destination.as_str(),
                "consumer_id": format!("durable:{durable}"),
                "durable_subscription": durable,
            }),
            Event::ConnectionAdded {
                connection,
                client_id,
                peer,
                version,
            } => json!({
                "event": "connection-added",
                "connection_id": connection,
                "client_id": client_id,
                "peer": peer,
                "version": version,
            }),
            Event::ConnectionRemoved {
                connection,
                client_id,
                peer,
            } => json!({
                "event": "connection-removed",
                "connection_id": connection,
                "client_id": client_id,
                "peer": peer,
            }),
            Event::DestinationAdded { destination } => {
                destination_json("destination-added", destination, 0)
            }
            Event::DestinationRemoved {
                destination,
                reason,
            } => {
                let mut v = destination_json("destination-removed", destination, 1);
                v["reason"] = json!(reason);
                v
            }
            Event::Expired {
                destination,
                message_id,
            } => json!({
                "event": "message-expired",
                "destination": destination.as_str(),
                "message_id": message_id.0.to_string(),
            }),
            Event::ReplayEnd { replayed, .. } => json!({
                "event": "replay-end",
                "replayed": replayed,
            }),
            Event::DeadLettered {
                destination,
                message_id,
                dlq,
                reason,
            } => json!({
                "event": "message-dead-lettered",
                "destination": destination.as_str(),
                "message_id": message_id.0.to_string(),
                "dead_letter_queue": dlq.as_str(),
                "reason": reason,
            }),
        };
        v["time"] = json!(now);
        v
    }

    /// The advisory message (id `id`), or None when nothing is published about this event.
    pub fn message(&self, id: MessageId) -> Option<Arc<Message>> {
        self.build(id, false)
    }

    /// The advisory of a consumer replayed to a new advisory subscriber: its body says
    /// `"replayed": true` (see [`Event::ReplayEnd`]).
    pub fn replayed(&self, id: MessageId) -> Option<Arc<Message>> {
        self.build(id, true)
    }

    fn build(&self, id: MessageId, replayed: bool) -> Option<Arc<Message>> {
        let destination = self.topic()?;
        let now = crate::clock::now_ms();
        let mut body = self.body(now);
        if replayed {
            body["replayed"] = json!(true);
        }
        let mut headers = vec![
            ("type".to_string(), "Advisory".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
            ("timestamp".to_string(), now.to_string()),
        ];
        if let Event::ConsumerAdded { count, .. } | Event::ConsumerRemoved { count, .. } = self {
            headers.push(("consumerCount".to_string(), count.to_string()));
        }
        Some(Arc::new(Message {
            id,
            destination,
            headers,
            body: Bytes::from(body.to_string()),
            priority: 4,
            persistent: false,
            expires: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_listen_to_advisories() {
        let listens = |d: &str| may_listen(&DestinationName::parse(d).unwrap());
        for yes in [
            "/topic/ActiveMQ.Advisory.Queue",
            "/topic/ActiveMQ.Advisory.>",
            "/topic/ActiveMQ.*.Consumer.>",
            "/topic/>",
            "/topic/*.Advisory.Topic",
        ] {
            assert!(listens(yes), "{yes}");
        }
        for no in [
            "/topic/orders.>",
            "/queue/ActiveMQ.Advisory.Queue",
            "/topic/ActiveMQ.DLQ.*",
            "/topic/news",
        ] {
            assert!(!listens(no), "{no}");
        }
    }

    #[test]
    fn consumer_advisories_go_to_the_destinations_own_topic_and_count_consumers() {
        let q = DestinationName::parse("/queue/orders.eu").unwrap();
        let e = Event::ConsumerAdded {
            destination: &q,
            consumer: ConsumerInfo {
                connection: 7,
                subscription: 2,
                selector: Some("x = 1"),
                durable: None,
                broker_path: None,
                active: true,
            },
            count: 3,
        };
        let m = e.message(MessageId(1)).unwrap();
        assert_eq!(
            m.destination.as_str(),
            "/topic/ActiveMQ.Advisory.Consumer.Queue.orders.eu"
        );
        assert!(m.headers.contains(&("consumerCount".into(), "3".into())));
        let body: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(body["event"], "consumer-added");
        assert_eq!(body["consumer_id"], "7:2");
        assert_eq!(body["selector"], "x = 1");
    }

    #[test]
    fn destination_advisories_go_to_the_topic_of_their_kind() {
        for (name, topic) in [
            ("/queue/orders", "/topic/ActiveMQ.Advisory.Queue"),
            ("/topic/prices", "/topic/ActiveMQ.Advisory.Topic"),
            (
                "/remote-temp-queue/ID:x-1:1",
                "/topic/ActiveMQ.Advisory.TempQueue",
            ),
            (
                "/remote-temp-topic/ID:x-1:1",
                "/topic/ActiveMQ.Advisory.TempTopic",
            ),
        ] {
            let d = DestinationName::parse(name).unwrap();
            let added = Event::DestinationAdded { destination: &d };
            let m = added.message(MessageId(1)).unwrap();
            assert_eq!(m.destination.as_str(), topic);
            let body: Value = serde_json::from_slice(&m.body).unwrap();
            assert_eq!(body["event"], "destination-added");
            assert_eq!(body["destination"], name);
            assert_eq!(body["operation_type"], 0);
            assert_eq!(body["temporary"], d.is_temp());
            let removed = Event::DestinationRemoved {
                destination: &d,
                reason: "idle",
            };
            let body: Value =
                serde_json::from_slice(&removed.message(MessageId(2)).unwrap().body).unwrap();
            assert_eq!(body["event"], "destination-removed");
            assert_eq!(body["operation_type"], 1);
            assert_eq!(body["reason"], "idle");
        }
        let t = DestinationName::parse("/topic/ActiveMQ.Advisory.Queue").unwrap();
        assert!(Event::DestinationAdded { destination: &t }
            .message(MessageId(1))
            .is_none());
    }

    #[test]
    fn nothing_is_published_about_advisory_topics() {
        let t = DestinationName::parse("/topic/ActiveMQ.Advisory.Consumer.Queue.x").unwrap();
        let e = Event::ConsumerAdded {
            destination: &t,
            consumer: ConsumerInfo {
                connection: 1,
                subscription: 1,
                selector: None,
                durable: None,
                broker_path: None,
                active: true,
            },
            count: 1,
        };
        assert!(e.message(MessageId(1)).is_none());
    }
}
