//! Virtual topics, as ActiveMQ has them: a SEND to `/topic/VirtualTopic.Orders` also goes to
//! every queue `Consumer.<group>.VirtualTopic.Orders` that exists, so each group gets every
//! message once and its consumers share them like any queue's (load-balanced, durable
//! "subscriptions"). Both prefixes are configurable (`[destinations]
//! virtual_topic_prefix`, `virtual_topic_consumer_prefix`).
//!
//! A consumer queue exists from its first SUBSCRIBE until an operator deletes it: the
//! registry below lists them per virtual topic, each is recorded in the store's
//! `destinations` table, and the registry is read back from there at start. The session of a
//! SEND reads the registry (once per SEND to a virtual topic, under a read lock) and sends
//! one copy to each queue, as a composite SEND does; that the registry is shared by all
//! shards is the price of one RECEIPT covering every stored copy.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use super::wildcard;
use super::{DestinationName, Kind};

/// Where virtual topics are: the two name prefixes.
#[derive(Debug, Clone)]
pub struct Naming<'a> {
    /// Topic names starting with it are virtual (`VirtualTopic.`); empty: none are.
    pub topic_prefix: &'a str,
    /// What a consumer queue's name puts before the topic's: `.`-separated segments, `*`
    /// for any one (`Consumer.*.`).
    pub consumer_prefix: &'a str,
}

impl Naming<'_> {
    /// Whether `topic` is a virtual topic.
    pub fn is_virtual(&self, topic: &DestinationName) -> bool {
        !self.topic_prefix.is_empty()
            && topic.kind() == Kind::Topic
            && !topic.is_temp()
            && topic.name().starts_with(self.topic_prefix)
    }

    /// The virtual topic that `queue` is a consumer queue of, if it is one
    /// (`/queue/Consumer.A.VirtualTopic.Orders` → `/topic/VirtualTopic.Orders`).
    pub fn topic_of(&self, queue: &DestinationName) -> Option<DestinationName> {
        if self.topic_prefix.is_empty() || queue.kind() != Kind::Queue || queue.is_temp() {
            return None;
        }
        let pattern = self.consumer_prefix.trim_end_matches('.');
        let segments = pattern.split('.').count();
        let name = queue.name();
        // The consumer prefix's segments, then the topic's name.
        let mut cut = 0;
        for _ in 0..segments {
            cut += name[cut..].find('.')? + 1;
        }
        let (prefix, topic) = name.split_at(cut);
        if !wildcard::matches(pattern, prefix.trim_end_matches('.'))
            || !topic.starts_with(self.topic_prefix)
            || topic.len() == self.topic_prefix.len()
        {
            return None;
        }
        DestinationName::parse(&format!("/topic/{topic}")).ok()
    }
}

/// The consumer queues of each virtual topic.
#[derive(Debug, Default)]
pub struct VirtualTopics {
    queues: RwLock<HashMap<DestinationName, BTreeSet<String>>>,
}

impl VirtualTopics {
    /// Records `queue` as a consumer queue of `topic`; true if it is new.
    pub fn add(&self, topic: DestinationName, queue: &DestinationName) -> bool {
        let mut map = self.queues.write().unwrap_or_else(|e| e.into_inner());
        map.entry(topic).or_default().insert(queue.to_string())
    }

    /// Whether `queue` is a consumer queue of `topic`.
    pub fn contains(&self, topic: &DestinationName, queue: &DestinationName) -> bool {
        let map = self.queues.read().unwrap_or_else(|e| e.into_inner());
        map.get(topic)
            .is_some_and(|set| set.contains(queue.as_str()))
    }

    /// Forgets `queue` (an operator deleted it).
    pub fn remove(&self, topic: &DestinationName, queue: &DestinationName) {
        let mut map = self.queues.write().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = map.get_mut(topic) {
            set.remove(queue.as_str());
            if set.is_empty() {
                map.remove(topic);
            }
        }
    }

    /// The consumer queues of `topic`, in name order.
    pub fn queues_of(&self, topic: &DestinationName) -> Vec<DestinationName> {
        let map = self.queues.read().unwrap_or_else(|e| e.into_inner());
        map.get(topic)
            .map(|set| {
                set.iter()
                    .filter_map(|q| DestinationName::parse(q).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming<'static> {
        Naming {
            topic_prefix: "VirtualTopic.",
            consumer_prefix: "Consumer.*.",
        }
    }

    fn d(s: &str) -> DestinationName {
        DestinationName::parse(s).unwrap()
    }

    #[test]
    fn consumer_queues_name_their_virtual_topic() {
        let n = naming();
        assert_eq!(
            n.topic_of(&d("/queue/Consumer.A.VirtualTopic.Orders")),
            Some(d("/topic/VirtualTopic.Orders"))
        );
        assert_eq!(
            n.topic_of(&d("/queue/Consumer.billing.VirtualTopic.eu.orders")),
            Some(d("/topic/VirtualTopic.eu.orders"))
        );
        for not in [
            "/queue/Consumer.A.Orders",
            "/queue/Consumer.VirtualTopic.Orders",
            "/queue/Other.A.VirtualTopic.Orders",
            "/queue/Consumer.A.VirtualTopic.",
            "/topic/Consumer.A.VirtualTopic.Orders",
        ] {
            assert_eq!(n.topic_of(&d(not)), None, "{not}");
        }
        assert!(n.is_virtual(&d("/topic/VirtualTopic.Orders")));
        assert!(!n.is_virtual(&d("/topic/Orders")));
        let off = Naming {
            topic_prefix: "",
            consumer_prefix: "Consumer.*.",
        };
        assert_eq!(
            off.topic_of(&d("/queue/Consumer.A.VirtualTopic.Orders")),
            None
        );
    }

    #[test]
    fn the_registry_lists_each_queue_once_until_removed() {
        let r = VirtualTopics::default();
        let t = d("/topic/VirtualTopic.O");
        assert!(r.add(t.clone(), &d("/queue/Consumer.B.VirtualTopic.O")));
        assert!(r.add(t.clone(), &d("/queue/Consumer.A.VirtualTopic.O")));
        assert!(!r.add(t.clone(), &d("/queue/Consumer.A.VirtualTopic.O")));
        assert_eq!(
            r.queues_of(&t),
            vec![
                d("/queue/Consumer.A.VirtualTopic.O"),
                d("/queue/Consumer.B.VirtualTopic.O")
            ]
        );
        r.remove(&t, &d("/queue/Consumer.A.VirtualTopic.O"));
        assert_eq!(r.queues_of(&t), vec![d("/queue/Consumer.B.VirtualTopic.O")]);
    }
}
