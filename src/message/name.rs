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

    /// The broker that created a temporary destination, as its id spells it
    /// (`ID:<broker>:<run>-<connection>:<n>`, see [`temp_broker_tag`]); None for any other
    /// destination, or an id not of that shape.
    pub fn temp_broker(&self) -> Option<&str> {
        if !self.temp {
            return None;
        }
        let (broker, _) = self.name().strip_prefix("ID:")?.split_once(':')?;
        Some(broker)
    }

    /// True for a temporary destination created by the broker named `broker_name`.
    pub fn is_temp_of(&self, broker_name: &str) -> bool {
        self.temp_broker() == Some(temp_broker_tag(broker_name).as_str())
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

/// How a temporary destination's id names the broker that created it: its `broker_name`,
/// each character other than an ASCII letter, digit, `.`, `-` or `_` written `_`. So the id
/// holds no `:` but its own separators, no `,` (which would split a composite SEND) and no
/// `*` or `>` (which could make a wildcard segment); in a network, where broker names are
/// unique and hold no `:` or `,`, a broker can tell its own temporary destinations from its
/// peers'.
pub fn temp_broker_tag(broker_name: &str) -> String {
    broker_name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect()
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

    #[test]
    fn a_temp_id_names_the_broker_that_created_it() {
        let q = DestinationName::parse("/remote-temp-queue/ID:site-a.eu:1700-5:1").unwrap();
        assert_eq!(q.temp_broker(), Some("site-a.eu"));
        assert!(q.is_temp_of("site-a.eu"));
        assert!(!q.is_temp_of("site-a"));
        assert!(!q.is_temp_of("site-b"));
        let odd = DestinationName::temp(
            Kind::Topic,
            &format!("ID:{}:1-2:3", temp_broker_tag("a*b,c:d")),
        );
        assert_eq!(odd.temp_broker(), Some("a_b_c_d"));
        assert!(odd.is_temp_of("a*b,c:d"));
        assert!(!odd.is_wildcard());
        // Not a temporary destination, or an id of another shape.
        assert_eq!(
            DestinationName::parse("/queue/ID:a:1")
                .unwrap()
                .temp_broker(),
            None
        );
        let other = DestinationName::parse("/remote-temp-queue/ID:nobody").unwrap();
        assert_eq!(other.temp_broker(), None);
        assert!(!other.is_temp_of("nobody"));
    }
}
