//! What messages and connections carry for a network of brokers: the header names, the
//! broker path and the selector a bridge uses so it never forwards a message back where it
//! has been or beyond its TTL. One place, read by sessions (which drop a message that comes
//! back round a loop) and by bridges (`crate::network`).

/// Our CONNECTED frame names the broker with this header, so a bridge knows its peer.
pub const BROKER_NAME: &str = "broker-name";

/// The brokers a forwarded message has passed through, oldest first, comma-separated
/// (ActiveMQ's `brokerPath`). A message sent by a client has none.
pub const BROKER_PATH: &str = "stompbox-broker-path";

/// Names a forwarded message for the receiving broker's duplicate filter:
/// `<broker-name>:<message-id>`, the forwarding broker's name (the *producer* of the audit) and
/// the id the message had there (ids never repeat on a broker, restarts and fail-overs
/// included: `store/ids.rs`). Unique per message on the forwarding broker, and the same on
/// every redelivery of it there, also after a restart, so a copy sent again after a lost
/// RECEIPT carries the same value and is dropped (`message/audit.rs`). Broker names hold no `:` (config checks),
/// so the first `:` splits the two parts. A client can set it too: see docs/network.md.
pub const NETWORK_ID: &str = "stompbox-network-id";

/// `true` on a forwarded message the forwarding broker had delivered to its bridge before
/// (a possible duplicate). A receiving broker that accepts it (its duplicate filter no
/// longer knew its [`NETWORK_ID`], e.g. after a restart) delivers it marked
/// `redelivered:true`, as if it had been delivered once here; the header itself stays on
/// the message, so a consumer and `sqlite3` can see why.
pub const NETWORK_REDELIVERED: &str = "stompbox-network-redelivered";

/// The producer (forwarding broker) and id parts of a [`NETWORK_ID`] value, split at its
/// first `:`; None when either part is empty or there is no `:` (then the message is not
/// audited).
pub fn split_network_id(value: &str) -> Option<(&str, &str)> {
    let (producer, id) = value.split_once(':')?;
    (!producer.is_empty() && !id.is_empty()).then_some((producer, id))
}

/// The [`NETWORK_ID`] among `headers` (the first, as a repeated header's first value wins).
pub fn network_id(headers: &[(String, String)]) -> Option<&str> {
    headers
        .iter()
        .find(|(k, _)| k == NETWORK_ID)
        .map(|(_, v)| v.as_str())
}

/// True when `headers` mark a forwarded message as a possible duplicate
/// ([`NETWORK_REDELIVERED`]`: true`).
pub fn arrives_redelivered(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .find(|(k, _)| k == NETWORK_REDELIVERED)
        .is_some_and(|(_, v)| v == "true")
}

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
        // Not `format!`: this runs for every forwarded message, and the formatting machinery
        // showed in a bridge's profile.
        Some(p) if !p.is_empty() => [p, ",", broker].concat(),
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

/// The selector of a bridge's replay route (`replay_when_no_consumers`): queue messages that
/// passed through `peer`, which the forward selector keeps from going back there.
pub fn replay_selector(peer: &str) -> String {
    let p = escape_like(peer);
    format!(
        "{BROKER_PATH_SEL} LIKE '{p}' ESCAPE '\\' OR {BROKER_PATH_SEL} LIKE '{p},%' ESCAPE '\\' \
         OR {BROKER_PATH_SEL} LIKE '%,{p}' ESCAPE '\\' OR {BROKER_PATH_SEL} LIKE '%,{p},%' ESCAPE '\\'"
    )
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
    fn the_replay_selector_takes_what_passed_through_the_peer_whatever_its_hops() {
        let replay = replay_selector("b");
        for through_b in ["b", "b,a", "a,b", "a,b,c", "x,y,b,z"] {
            assert!(forwarded(&replay, Some(through_b)), "{through_b}");
        }
        for not in ["a", "bb", "a,bc", "ab,c"] {
            assert!(!forwarded(&replay, Some(not)), "{not}");
        }
        assert!(!forwarded(&replay, None));
        assert!(forwarded(&replay_selector("b_1%"), Some("a,b_1%")));
        assert!(!forwarded(&replay_selector("b_1%"), Some("a,bx1y")));
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
    fn a_network_id_splits_at_its_first_colon() {
        assert_eq!(split_network_id("a:17"), Some(("a", "17")));
        assert_eq!(
            split_network_id("a:ID:host-1:1:1"),
            Some(("a", "ID:host-1:1:1"))
        );
        for bad in ["a", ":17", "a:", ""] {
            assert_eq!(split_network_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn paths_grow_by_one_name() {
        assert_eq!(extend_path(None, "a"), "a");
        assert_eq!(extend_path(Some("a"), "b"), "a,b");
        assert!(path_holds("a,b", "b"));
        assert!(!path_holds("a,bb", "b"));
    }
}
