//! What messages and connections carry for a network of brokers: the header names, the
//! broker path and the selector a bridge uses so it never forwards a message back where it
//! has been or beyond its TTL. One place, read by sessions (which drop a message that comes
//! back round a loop) and by bridges (`crate::network`).

/// Our CONNECTED frame names the broker with this header, so a bridge knows its peer.
pub const BROKER_NAME: &str = "broker-name";

/// The brokers a forwarded message has passed through, oldest first, comma-separated
/// (ActiveMQ's `brokerPath`). A message sent by a client has none.
pub const BROKER_PATH: &str = "stompbox-broker-path";

/// On a forwarded SEND: `<broker-name>:<message-id>` of the message on the broker that
/// forwards it, the same on every resend; the receiving broker's duplicate filter keys on it.
pub const NETWORK_ID: &str = "stompbox-network-id";

/// On a forwarded SEND: `true` when the forwarding broker had handed this message to its
/// bridge before (the link failed before the peer's RECEIPT): a possible duplicate.
pub const NETWORK_REDELIVERED: &str = "stompbox-network-redelivered";

/// The number of brokers `path` (a [`BROKER_PATH`] value) names.
pub fn path_len(path: Option<&str>) -> usize {
    match path {
        Some(p) if !p.is_empty() => p.split(',').count(),
        _ => 0,
    }
}

/// True when `path` (a [`BROKER_PATH`] value) names `broker`.
pub fn path_holds(path: &str, broker: &str) -> bool {
    path.split(',').any(|b| b == broker)
}

/// The [`BROKER_PATH`] of a message `broker` forwards: `path` with `broker` appended.
pub fn extend_path(path: Option<&str>, broker: &str) -> String {
    match path {
        Some(p) if !p.is_empty() => format!("{p},{broker}"),
        _ => broker.to_string(),
    }
}

/// The selector of a bridge's local subscription: messages that have crossed fewer than
/// `ttl` hops and, when the peer's name is known, have not passed through the peer. Broker
/// names hold no comma (config checks), and `%`, `_` and `\` in them are escaped for LIKE.
pub fn forward_selector(ttl: u32, peer: Option<&str>) -> String {
    // A path of n names is n hops: forwarded while n < ttl. `%,%` (ttl 2) matches a path of
    // two names or more, so NOT LIKE it lets through paths of fewer than ttl names.
    let hops = (0..ttl).map(|_| "%").collect::<Vec<_>>().join(",");
    let mut clauses = vec![format!("{BROKER_PATH_SEL} NOT LIKE '{hops}'")];
    if let Some(peer) = peer {
        let p = escape_like(peer);
        clauses.push(format!(
            "{BROKER_PATH_SEL} NOT LIKE '{p}' ESCAPE '\\' AND {BROKER_PATH_SEL} NOT LIKE '{p},%' ESCAPE '\\' \
             AND {BROKER_PATH_SEL} NOT LIKE '%,{p}' ESCAPE '\\' AND {BROKER_PATH_SEL} NOT LIKE '%,{p},%' ESCAPE '\\'"
        ));
    }
    format!("{BROKER_PATH_SEL} IS NULL OR ({})", clauses.join(" AND "))
}

/// [`BROKER_PATH`] as a selector names it (a quoted identifier, for its `-`).
const BROKER_PATH_SEL: &str = "\"stompbox-broker-path\"";

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::{Selector, Subject};

    struct Path(Option<&'static str>);

    impl Subject for Path {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.filter(|_| name == BROKER_PATH)
        }
        fn priority(&self) -> u8 {
            4
        }
        fn message_id(&self) -> u64 {
            1
        }
        fn expires(&self) -> u64 {
            0
        }
        fn persistent(&self) -> bool {
            true
        }
    }

    fn forwarded(selector: &str, path: Option<&'static str>) -> bool {
        let s = Selector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e:?}"));
        s.matches(&Path(path))
    }

    #[test]
    fn the_forward_selector_stops_at_the_ttl_and_at_the_peer() {
        let ttl1 = forward_selector(1, Some("b"));
        assert!(forwarded(&ttl1, None));
        assert!(!forwarded(&ttl1, Some("a")), "one hop made, ttl 1");
        let ttl3 = forward_selector(3, Some("b"));
        assert!(forwarded(&ttl3, Some("a")));
        assert!(forwarded(&ttl3, Some("a,c")));
        assert!(!forwarded(&ttl3, Some("a,c,d")), "three hops made, ttl 3");
        for through_b in ["b", "b,a", "a,b", "a,b,c"] {
            assert!(
                !forwarded(&ttl3, Some(through_b)),
                "{through_b} passed the peer"
            );
        }
        // Names are matched whole, and LIKE's wildcards in them are literal.
        assert!(forwarded(&ttl3, Some("bb")));
        let odd = forward_selector(3, Some("x_%"));
        assert!(forwarded(&odd, Some("xy1")));
        assert!(!forwarded(&odd, Some("a,x_%")));
    }

    #[test]
    fn paths_grow_by_one_name() {
        assert_eq!(extend_path(None, "a"), "a");
        assert_eq!(extend_path(Some("a"), "b"), "a,b");
        assert!(path_holds("a,b", "b"));
        assert!(!path_holds("a,bb", "b"));
    }
}
