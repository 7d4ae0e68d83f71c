//! Destination names: `/queue/NAME` and `/topic/NAME`, parsed once at the edge.

use std::fmt;
use std::sync::Arc;

/// Whether a destination is point-to-point or fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/queue/NAME`: each message goes to exactly one consumer.
    Queue,
    /// `/topic/NAME`: each message goes to every current subscriber.
    Topic,
}

/// A parsed destination. Cheap to clone (the name is shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DestinationName {
    kind: Kind,
    /// The full STOMP name, e.g. `/queue/orders`.
    full: Arc<str>,
}

/// Why a destination header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The prefix is not one the broker knows.
    #[error("destination {0:?} must begin with /queue/ or /topic/, or be a queue name without a leading /")]
    UnknownPrefix(String),
    /// Nothing after the prefix.
    #[error("destination {0:?} has an empty name")]
    Empty(String),
}

impl DestinationName {
    /// Parses a `destination` header value. A name without a leading `/` is a queue, as in
    /// ActiveMQ (`orders` is `/queue/orders`); an unknown `/prefix/` is refused, so that a
    /// typo such as `/queu/orders` is not silently a queue of that name.
    pub fn parse(s: &str) -> Result<DestinationName, NameError> {
        let (kind, rest) = if let Some(rest) = s.strip_prefix("/queue/") {
            (Kind::Queue, rest)
        } else if let Some(rest) = s.strip_prefix("/topic/") {
            (Kind::Topic, rest)
        } else if !s.is_empty() && !s.starts_with('/') {
            return Ok(DestinationName {
                kind: Kind::Queue,
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
            full: Arc::from(s),
        })
    }

    /// Queue or topic.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The full STOMP name, as clients write it.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The name after its `/queue/` or `/topic/` prefix: what wildcards match.
    pub fn name(&self) -> &str {
        let prefix = match self.kind {
            Kind::Queue => "/queue/".len(),
            Kind::Topic => "/topic/".len(),
        };
        &self.full[prefix..]
    }

    /// A `*` or `>` segment: a subscription to every destination of its kind whose name
    /// matches (see `message/wildcard.rs`), on every shard; nothing can be sent to it.
    pub fn is_wildcard(&self) -> bool {
        super::wildcard::is_wildcard(self.name())
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
}
