//! Network connector URIs, as ActiveMQ's `<networkConnector uri="…">` writes them:
//!
//! - `static:(tcp://b1:61613,tcp://b2:61613)`: one bridge to each broker listed;
//! - `static:(failover:(tcp://m:61613,tcp://s:61613)?maxReconnectAttempts=0)`: one bridge to
//!   a master/slave pair, reaching whichever of them serves (the standby refuses
//!   connections, so the pair is a failover list);
//! - `masterslave:(tcp://m:61613,tcp://s:61613)`: the same, spelled as ActiveMQ 5.6+ does
//!   (`failover:(…)?randomize=false&maxReconnectAttempts=0`).
//!
//! The options after the `static:(…)` list are the connector's reconnect schedule
//! (`initialReconnectDelay`, `maxReconnectDelay`, `useExponentialBackOff`,
//! `backOffMultiplier`; ActiveMQ's `SimpleDiscoveryAgent` defaults: 1 s, 30 s, on, 2). A
//! connector reconnects forever: each attempt is one pass over a peer's list, then a pause.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::client::{BrokerUri, FailoverOptions, UriError};

/// One network connector's peers and reconnect schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkUri {
    /// One bridge per entry: a broker, or a failover list (a master/slave pair).
    pub peers: Vec<BrokerUri>,
    /// Pauses between failed attempts; `max_reconnect_attempts` is always -1 (forever).
    pub reconnect: FailoverOptions,
}

impl NetworkUri {
    /// The URI of one attempt on `peer`: a single pass over its list, no reconnect of its
    /// own (the connector's loop does that), in the order written (master first).
    pub fn one_pass(peer: &BrokerUri) -> BrokerUri {
        let mut once = peer.clone();
        if let Some(f) = once.failover.as_mut() {
            f.max_reconnect_attempts = 0;
            f.startup_max_reconnect_attempts = 0;
            f.randomize = false;
        }
        once
    }
}

impl fmt::Display for NetworkUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peers: Vec<String> = self.peers.iter().map(ToString::to_string).collect();
        write!(f, "static:({})", peers.join(","))
    }
}

impl FromStr for NetworkUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        let whole = s.trim();
        let (scheme, rest) = whole
            .split_once(':')
            .ok_or_else(|| UriError::Scheme(whole.to_string()))?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (list, query) = split_list(whole, rest)?;
        let mut reconnect = FailoverOptions {
            initial_reconnect_delay: Duration::from_millis(1000),
            ..FailoverOptions::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "initialReconnectDelay"
                | "maxReconnectDelay"
                | "useExponentialBackOff"
                | "backOffMultiplier" => {
                    // Parsed by the failover grammar, which knows these options.
                    let probe: BrokerUri = format!("failover:(tcp://h:1)?{key}={value}").parse()?;
                    let parsed = probe.failover.expect("a failover URI");
                    match key {
                        "initialReconnectDelay" => {
                            reconnect.initial_reconnect_delay = parsed.initial_reconnect_delay
                        }
                        "maxReconnectDelay" => {
                            reconnect.max_reconnect_delay = parsed.max_reconnect_delay
                        }
                        "useExponentialBackOff" => {
                            reconnect.use_exponential_back_off = parsed.use_exponential_back_off
                        }
                        _ => reconnect.back_off_multiplier = parsed.back_off_multiplier,
                    }
                }
                _ => return Err(UriError::UnknownOption(key.to_string(), whole.to_string())),
            }
        }
        reconnect.max_reconnect_attempts = -1;
        let parts = split_top_level(list);
        let peers = match scheme.to_ascii_lowercase().as_str() {
            "static" => parts
                .into_iter()
                .map(|p| p.parse::<BrokerUri>())
                .collect::<Result<Vec<_>, _>>()?,
            "masterslave" => {
                let list = parts.join(",");
                let pair: BrokerUri = format!("failover:({list})").parse()?;
                vec![pair]
            }
            _ => return Err(UriError::Scheme(whole.to_string())),
        };
        if peers.is_empty() {
            return Err(UriError::Empty(whole.to_string()));
        }
        Ok(NetworkUri { peers, reconnect })
    }
}

/// `(list)?query` or a bare `list` (ActiveMQ accepts `static:tcp://a`): the list and query.
fn split_list<'a>(whole: &str, rest: &'a str) -> Result<(&'a str, &'a str), UriError> {
    let Some(inner) = rest.strip_prefix('(') else {
        return Ok((rest, ""));
    };
    let mut depth = 1;
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let after = &inner[i + 1..];
                    let query = match after {
                        "" => "",
                        q => q
                            .strip_prefix('?')
                            .ok_or_else(|| UriError::Parentheses(whole.to_string()))?,
                    };
                    return Ok((&inner[..i], query));
                }
            }
            _ => {}
        }
    }
    Err(UriError::Parentheses(whole.to_string()))
}

/// Splits at the commas outside parentheses: `failover:(a,b)?x=1,tcp://c` is two parts.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> NetworkUri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn static_lists_one_bridge_per_broker() {
        let u = parse("static:(tcp://b1:61613,tcp://b2:61614)");
        assert_eq!(u.peers.len(), 2);
        assert_eq!(u.peers[0].addrs, vec!["b1:61613"]);
        assert!(!u.peers[0].is_failover());
        assert_eq!(u.peers[1].addrs, vec!["b2:61614"]);
        assert_eq!(u.reconnect.initial_reconnect_delay, Duration::from_secs(1));
        assert_eq!(u.reconnect.max_reconnect_attempts, -1);
        // ActiveMQ's other spellings.
        assert_eq!(parse("static://(tcp://b1:61613)").peers.len(), 1);
        assert_eq!(parse("static:tcp://b1:61613").peers.len(), 1);
    }

    #[test]
    fn a_failover_list_inside_static_is_one_master_slave_peer() {
        let u = parse(
            "static:(failover:(tcp://m:61613,tcp://s:61613)?maxReconnectAttempts=0,tcp://c:1)\
             ?initialReconnectDelay=100&maxReconnectDelay=2000&useExponentialBackOff=false",
        );
        assert_eq!(u.peers.len(), 2);
        assert_eq!(u.peers[0].addrs, vec!["m:61613", "s:61613"]);
        assert!(u.peers[0].is_failover());
        assert_eq!(u.peers[1].addrs, vec!["c:1"]);
        assert_eq!(
            u.reconnect.initial_reconnect_delay,
            Duration::from_millis(100)
        );
        assert_eq!(u.reconnect.max_reconnect_delay, Duration::from_millis(2000));
        assert!(!u.reconnect.use_exponential_back_off);
        let once = NetworkUri::one_pass(&u.peers[0]);
        let f = once.failover.expect("failover");
        assert_eq!(f.max_reconnect_attempts, 0);
        assert!(!f.randomize, "the master is tried first");
    }

    #[test]
    fn masterslave_is_one_peer_tried_in_order() {
        let u = parse("masterslave:(tcp://m:61613,tcp://s:61613)");
        assert_eq!(u.peers.len(), 1);
        assert_eq!(u.peers[0].addrs, vec!["m:61613", "s:61613"]);
        assert!(u.peers[0].is_failover());
    }

    #[test]
    fn mistakes_are_errors_naming_the_part() {
        for bad in [
            "multicast://default",
            "static:(tcp://a:1",
            "static:()",
            "static:(tcp://a:1)?maxReconectDelay=1",
            "static:(tcp://a)",
            "static:(tcp://a:1)x",
        ] {
            assert!(bad.parse::<NetworkUri>().is_err(), "{bad} was accepted");
        }
    }
}
