//! Destination names: `/queue/NAME`, `/topic/NAME` and temporary destinations, parsed once at
//! the edge.
//!
//! A temporary destination's broker-wide name is ActiveMQ's remote form,
//! `/remote-temp-queue/ID:…` or `/remote-temp-topic/ID:…`: what other connections see and
//! address. The creating connection's own names for them (`/temp-queue/NAME`,
//! `/temp-topic/NAME`) mean something only on that connection, so the session resolves them
//! (`session/temp.rs`) and [`DestinationName::parse`] refuses them.

use std::fmt;
use std::sync::Arc;

/// Whether a destination is point-to-point or fan-out. A temporary queue is a queue and a
/// temporary topic a topic in every respect but their scope ([`DestinationName::is_temp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/queue/NAME`: each message goes to exactly one consumer.
    Queue,
    /// `/topic/NAME`: each message goes to every current subscriber.
    Topic,
}

/// The prefix of a temporary queue's broker-wide name.
pub const REMOTE_TEMP_QUEUE: &str = "/remote-temp-queue/";
/// The prefix of a temporary topic's broker-wide name.
pub const REMOTE_TEMP_TOPIC: &str = "/remote-temp-topic/";
/// The prefix of a connection's own name for one of its temporary queues.
pub const TEMP_QUEUE: &str = "/temp-queue/";
/// The prefix of a connection's own name for one of its temporary topics.
pub const TEMP_TOPIC: &str = "/temp-topic/";

/// A parsed destination. Cheap to clone (the name is shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DestinationName {
    kind: Kind,
    /// A temporary destination (`/remote-temp-queue/…`, `/remote-temp-topic/…`): it lives as
    /// long as the connection that created it, and is never stored.
    temp: bool,
    /// The full STOMP name, e.g. `/queue/orders`.
    full: Arc<str>,
}

/// Why a destination header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The prefix is not one the broker knows.
    #[error("destination {0:?} must begin with /queue/, /topic/, /temp-queue/ or /temp-topic/, or be a queue name without a leading /")]
    UnknownPrefix(String),
    /// `/temp-queue/NAME` or `/temp-topic/NAME` where no connection can resolve it (a
    /// composite part written `queue://`, the admin API, the config).
    #[error("destination {0:?} names a temporary destination, which only its connection can use by that name; elsewhere use its /remote-temp-queue/ or /remote-temp-topic/ name")]
    LocalTemp(String),
    /// Nothing after the prefix.
    #[error("destination {0:?} has an empty name")]
    Empty(String),
}

impl DestinationName {
    /// Parses a `destination` header value. A name without a leading `/` is a queue, as in
    /// ActiveMQ (`orders` is `/queue/orders`); an unknown `/prefix/` is refused, so that a
    /// typo such as `/queu/orders` is not silently a queue of that name.
    ///
    /// `/remote-temp-queue/ID` and `/remote-temp-topic/ID` parse to the temporary destination
    /// of that name (whether it exists is for its owner shard to say); `/temp-queue/NAME` and
    /// `/temp-topic/NAME` are refused here, since only their connection can resolve them.
    pub fn parse(s: &str) -> Result<DestinationName, NameError> {
        let (kind, temp, rest) = if let Some(rest) = s.strip_prefix("/queue/") {
            (Kind::Queue, false, rest)
        } else if let Some(rest) = s.strip_prefix("/topic/") {
            (Kind::Topic, false, rest)
        } else if let Some(rest) = s.strip_prefix(REMOTE_TEMP_QUEUE) {
            (Kind::Queue, true, rest)
        } else if let Some(rest) = s.strip_prefix(REMOTE_TEMP_TOPIC) {
            (Kind::Topic, true, rest)
        } else if s.starts_with(TEMP_QUEUE) || s.starts_with(TEMP_TOPIC) {
            return Err(NameError::LocalTemp(s.to_string()));
        } else if !s.is_empty() && !s.starts_with('/') {
            return Ok(DestinationName {
                kind: Kind::Queue,
                temp: false,
                full: Arc::from(format!("/queue/{s}")),
            });
        } else {
            return Err(NameError::UnknownPrefix(s.to_string()));
        };
        if rest.is_empty() {
            return Err(NameError::Empty(s.to_string()));
        }
        Ok(DestinationName {
            kind,
            temp,
            full: Arc::from(s),
        })
    }

    /// The temporary destination of `kind` with the broker-unique `id` (its
    /// `/remote-temp-queue/ID` or `/remote-temp-topic/ID` name).
    pub fn temp(kind: Kind, id: &str) -> DestinationName {
        let prefix = match kind {
            Kind::Queue => REMOTE_TEMP_QUEUE,
            Kind::Topic => REMOTE_TEMP_TOPIC,
        };
        DestinationName {
            kind,
            temp: true,
            full: Arc::from(format!("{prefix}{id}")),
        }
    }

    /// True for a temporary destination: scoped to the connection that created it, deleted
    /// with it, never stored.
    pub fn is_temp(&self) -> bool {
        self.temp
    }

    /// Queue or topic.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The full STOMP name, as clients write it.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The name after its `/queue/` or `/topic/` prefix (for a temporary destination, its id):
    /// what wildcards match.
    pub fn name(&self) -> &str {
        let prefix = match (self.kind, self.temp) {
            (Kind::Queue, false) => "/queue/".len(),
            (Kind::Topic, false) => "/topic/".len(),
            (Kind::Queue, true) => REMOTE_TEMP_QUEUE.len(),
            (Kind::Topic, true) => REMOTE_TEMP_TOPIC.len(),
        };
        &self.full[prefix..]
    }

    /// A `*` or `>` segment: a subscription to every destination of its kind whose name
    /// matches (see `message/wildcard.rs`), on every shard; nothing can be sent to it.
    pub fn is_wildcard(&self) -> bool {
        super::wildcard::is_wildcard(self.name())
    }

    /// Whether this destination or wildcard pattern covers `other` (a destination, or a
    /// pattern it contains): the same kind, and `other`'s name matches.
    pub fn covers(&self, other: &DestinationName) -> bool {
        self.kind() == other.kind() && super::wildcard::matches(self.name(), other.name())
    }

    /// The index of the shard that owns this destination: a stable hash of the name modulo the
    /// shard count (FNV-1a: fixed, so every shard computes the same owner).
    pub fn owner(&self, shards: usize) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.full.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % shards as u64) as usize
    }
}

impl fmt::Debug for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Display for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes() {
        assert_eq!(
            DestinationName::parse("/queue/a").unwrap().kind(),
            Kind::Queue
        );
        assert_eq!(
            DestinationName::parse("/topic/a.b").unwrap().kind(),
            Kind::Topic
        );
        assert!(DestinationName::parse("/queue/").is_err());
        let plain = DestinationName::parse("orders").unwrap();
        assert_eq!(plain, DestinationName::parse("/queue/orders").unwrap());
        assert_eq!(plain.as_str(), "/queue/orders");
        assert!(DestinationName::parse("/queu/a").is_err());
        assert!(DestinationName::parse("").is_err());
        let d = DestinationName::parse("/queue/x").unwrap();
        assert_eq!(d.owner(4), d.clone().owner(4));
    }

    #[test]
    fn remote_temp_names_parse_and_local_ones_need_their_connection() {
        let q = DestinationName::parse("/remote-temp-queue/ID:b-1-2").unwrap();
        assert!(q.is_temp());
        assert_eq!(q.kind(), Kind::Queue);
        assert_eq!(q.name(), "ID:b-1-2");
        assert_eq!(q, DestinationName::temp(Kind::Queue, "ID:b-1-2"));
        let t = DestinationName::parse("/remote-temp-topic/ID:b-1-3").unwrap();
        assert!(t.is_temp());
        assert_eq!(t.kind(), Kind::Topic);
        assert!(!DestinationName::parse("/queue/a").unwrap().is_temp());
        assert!(DestinationName::parse("/remote-temp-queue/").is_err());
        assert!(matches!(
            DestinationName::parse("/temp-queue/x"),
            Err(NameError::LocalTemp(_))
        ));
        assert!(DestinationName::parse("/temp-topic/x").is_err());
    }
}
