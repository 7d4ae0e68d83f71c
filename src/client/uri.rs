//! Broker URIs as ActiveMQ clients write them: `tcp://host:port`, or
//! `failover:(tcp://a:61613,tcp://b:61613)?randomize=false&maxReconnectAttempts=-1`.
//!
//! Parsed once, at the edge, into a [`BrokerUri`]. Like ActiveMQ's `IntrospectionSupport`, an
//! option that is not understood is an error, not silently ignored: a typo such as
//! `maxReconectAttempts` would otherwise change how a client behaves in an outage.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where a client connects: one address, or a failover list with its reconnect policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerUri {
    /// The broker addresses (`host:port`), in the order written.
    pub addrs: Vec<String>,
    /// `Some` for a `failover:` URI: reconnect, resubscribe and resend on connection loss.
    pub failover: Option<FailoverOptions>,
}

/// The options of a `failover:` URI. Names, meanings and defaults are ActiveMQ's
/// (`FailoverTransport`), so a URI copied from an ActiveMQ client behaves the same here.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverOptions {
    /// `randomize` (default true): shuffle the addresses before each pass over them.
    pub randomize: bool,
    /// `initialReconnectDelay` in ms (default 10): the pause after the first failed pass.
    pub initial_reconnect_delay: Duration,
    /// `maxReconnectDelay` in ms (default 30000): the longest pause between passes.
    pub max_reconnect_delay: Duration,
    /// `useExponentialBackOff` (default true): grow the pause after each failed pass.
    pub use_exponential_back_off: bool,
    /// `backOffMultiplier` (default 2.0): how much the pause grows.
    pub back_off_multiplier: f64,
    /// `maxReconnectAttempts` (default -1 = forever; 0 = never reconnect): once connected,
    /// how many reconnect passes to make before giving up.
    pub max_reconnect_attempts: i64,
    /// `startupMaxReconnectAttempts` (default -1 = use `maxReconnectAttempts`): the same
    /// limit for the very first connect.
    pub startup_max_reconnect_attempts: i64,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            randomize: true,
            initial_reconnect_delay: Duration::from_millis(10),
            max_reconnect_delay: Duration::from_millis(30_000),
            use_exponential_back_off: true,
            back_off_multiplier: 2.0,
            max_reconnect_attempts: -1,
            startup_max_reconnect_attempts: -1,
        }
    }
}

/// Why a broker URI was refused. The text names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The scheme is neither `tcp`, `stomp` nor `failover`.
    #[error("unsupported scheme in {0:?} (expected tcp://host:port or failover:(...))")]
    Scheme(String),
    /// A `tcp://` URI lacks `host:port`, or the port is not a number.
    #[error("invalid address in {0:?} (expected host:port)")]
    Address(String),
    /// A `failover:` URI names no broker.
    #[error("failover URI {0:?} names no broker")]
    Empty(String),
    /// The parentheses of a `failover:(...)` list do not match.
    #[error("unbalanced parentheses in {0:?}")]
    Parentheses(String),
    /// An option this client does not know (ActiveMQ refuses these too).
    #[error("unknown option {0:?} in {1:?}")]
    UnknownOption(String, String),
    /// A known option with a value of the wrong kind.
    #[error("invalid value {1:?} for option {0} (expected {2})")]
    OptionValue(String, String, &'static str),
    /// A nested URI inside a failover list is itself a failover URI.
    #[error("nested failover URI in {0:?}")]
    Nested(String),
}

impl BrokerUri {
    /// True for a `failover:` URI.
    pub fn is_failover(&self) -> bool {
        self.failover.is_some()
    }
}

impl FromStr for BrokerUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        let s = s.trim();
        if let Some(rest) = strip_prefix_ignore_case(s, "failover:") {
            return parse_failover(s, rest);
        }
        Ok(BrokerUri {
            addrs: vec![parse_tcp(s)?],
            failover: None,
        })
    }
}

impl fmt::Display for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failover {
            None => write!(f, "tcp://{}", self.addrs.join(",")),
            Some(_) => {
                let list: Vec<String> = self.addrs.iter().map(|a| format!("tcp://{a}")).collect();
                write!(f, "failover:({})", list.join(","))
            }
        }
    }
}

/// `failover:(uri,uri)?opts` or the bracket-less `failover:uri,uri` ActiveMQ also accepts.
fn parse_failover(whole: &str, rest: &str) -> Result<BrokerUri, UriError> {
    let (list, query) = if let Some(inner) = rest.strip_prefix('(') {
        let close = inner
            .rfind(')')
            .ok_or_else(|| UriError::Parentheses(whole.to_string()))?;
        let after = &inner[close + 1..];
        let query = match after {
            "" => None,
            q => Some(
                q.strip_prefix('?')
                    .ok_or_else(|| UriError::Parentheses(whole.to_string()))?,
            ),
        };
        (&inner[..close], query)
    } else {
        match rest.split_once('?') {
            Some((l, q)) => (l, Some(q)),
            None => (rest, None),
        }
    };
    if list.contains('(') || list.contains(')') {
        return Err(UriError::Parentheses(whole.to_string()));
    }
    let mut addrs = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if strip_prefix_ignore_case(part, "failover:").is_some() {
            return Err(UriError::Nested(whole.to_string()));
        }
        addrs.push(parse_tcp(part)?);
    }
    if addrs.is_empty() {
        return Err(UriError::Empty(whole.to_string()));
    }
    let mut options = FailoverOptions::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        options.set(key, value, whole)?;
    }
    Ok(BrokerUri {
        addrs,
        failover: Some(options),
    })
}

impl FailoverOptions {
    /// Applies one `key=value` of the query; `whole` is the URI, for the error text.
    fn set(&mut self, key: &str, value: &str, whole: &str) -> Result<(), UriError> {
        match key {
            "randomize" => self.randomize = parse_bool(key, value)?,
            "initialReconnectDelay" => self.initial_reconnect_delay = parse_ms(key, value)?,
            "maxReconnectDelay" => self.max_reconnect_delay = parse_ms(key, value)?,
            "useExponentialBackOff" => self.use_exponential_back_off = parse_bool(key, value)?,
            "backOffMultiplier" => {
                self.back_off_multiplier = value
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 1.0)
                    .ok_or_else(|| {
                        UriError::OptionValue(key.into(), value.into(), "a number >= 1")
                    })?
            }
            "maxReconnectAttempts" => self.max_reconnect_attempts = parse_attempts(key, value)?,
            "startupMaxReconnectAttempts" => {
                self.startup_max_reconnect_attempts = parse_attempts(key, value)?
            }
            _ => return Err(UriError::UnknownOption(key.to_string(), whole.to_string())),
        }
        Ok(())
    }
}

/// `tcp://host:port` (also `stomp://`, and a bare `host:port`). Options on a single transport
/// URI are refused: none is supported, and ignoring one would hide a mistake.
fn parse_tcp(s: &str) -> Result<String, UriError> {
    let rest = match s.split_once("://") {
        Some((scheme, rest)) => {
            if !scheme.eq_ignore_ascii_case("tcp") && !scheme.eq_ignore_ascii_case("stomp") {
                return Err(UriError::Scheme(s.to_string()));
            }
            rest
        }
        None if s.contains(':') && !s.contains('/') => s,
        None => return Err(UriError::Scheme(s.to_string())),
    };
    let (addr, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        let key = q.split(['=', '&']).next().unwrap_or(q);
        return Err(UriError::UnknownOption(key.to_string(), s.to_string()));
    }
    let addr = addr.trim_end_matches('/');
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| UriError::Address(s.to_string()))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(UriError::Address(s.to_string()));
    }
    Ok(addr.to_string())
}

fn parse_bool(key: &str, value: &str) -> Result<bool, UriError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(UriError::OptionValue(
            key.into(),
            value.into(),
            "true or false",
        )),
    }
}

fn parse_ms(key: &str, value: &str) -> Result<Duration, UriError> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| UriError::OptionValue(key.into(), value.into(), "milliseconds"))
}

fn parse_attempts(key: &str, value: &str) -> Result<i64, UriError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= -1)
        .ok_or_else(|| UriError::OptionValue(key.into(), value.into(), "-1 or a count"))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BrokerUri, UriError> {
        s.parse()
    }

    #[test]
    fn plain_tcp() {
        let u = parse("tcp://127.0.0.1:61613").unwrap();
        assert_eq!(u.addrs, vec!["127.0.0.1:61613"]);
        assert!(!u.is_failover());
        assert_eq!(parse("stomp://h:1").unwrap().addrs, vec!["h:1"]);
        assert_eq!(
            parse("localhost:61613").unwrap().addrs,
            vec!["localhost:61613"]
        );
        assert_eq!(
            parse("tcp://[::1]:61613").unwrap().addrs,
            vec!["[::1]:61613"]
        );
    }

    #[test]
    fn tcp_errors() {
        assert!(matches!(parse("http://h:1"), Err(UriError::Scheme(_))));
        assert!(matches!(parse("tcp://h"), Err(UriError::Address(_))));
        assert!(matches!(
            parse("tcp://h:notaport"),
            Err(UriError::Address(_))
        ));
        assert!(matches!(parse("tcp://:61613"), Err(UriError::Address(_))));
        assert_eq!(
            parse("tcp://h:1?wireFormat.maxInactivityDuration=0"),
            Err(UriError::UnknownOption(
                "wireFormat.maxInactivityDuration".into(),
                "tcp://h:1?wireFormat.maxInactivityDuration=0".into()
            ))
        );
    }

    #[test]
    fn failover_with_every_option() {
        let u = parse(
            "failover:(tcp://a:61613,tcp://b:61613)?randomize=false&initialReconnectDelay=10\
             &maxReconnectDelay=30000&useExponentialBackOff=true&maxReconnectAttempts=-1\
             &backOffMultiplier=1.5&startupMaxReconnectAttempts=3",
        )
        .unwrap();
        assert_eq!(u.addrs, vec!["a:61613", "b:61613"]);
        let f = u.failover.unwrap();
        assert!(!f.randomize);
        assert_eq!(f.initial_reconnect_delay, Duration::from_millis(10));
        assert_eq!(f.max_reconnect_delay, Duration::from_secs(30));
        assert!(f.use_exponential_back_off);
        assert_eq!(f.max_reconnect_attempts, -1);
        assert_eq!(f.startup_max_reconnect_attempts, 3);
        assert_eq!(f.back_off_multiplier, 1.5);
    }

    #[test]
    fn failover_defaults_and_short_forms() {
        let u = parse("failover:(tcp://a:1)").unwrap();
        assert_eq!(u.failover.unwrap(), FailoverOptions::default());
        let u = parse("failover:tcp://a:1,tcp://b:2?randomize=false").unwrap();
        assert_eq!(u.addrs, vec!["a:1", "b:2"]);
        assert!(!u.failover.unwrap().randomize);
        let u = parse("FAILOVER:(tcp://a:1, tcp://b:2)?").unwrap();
        assert_eq!(u.addrs.len(), 2);
    }

    #[test]
    fn failover_errors() {
        assert!(matches!(
            parse("failover:(tcp://a:1)?maxReconectAttempts=3"),
            Err(UriError::UnknownOption(k, _)) if k == "maxReconectAttempts"
        ));
        assert!(matches!(
            parse("failover:(tcp://a:1)?randomize=yes"),
            Err(UriError::OptionValue(..))
        ));
        assert!(matches!(
            parse("failover:(tcp://a:1)?maxReconnectAttempts=-2"),
            Err(UriError::OptionValue(..))
        ));
        assert!(matches!(
            parse("failover:(tcp://a:1)?backOffMultiplier=0.5"),
            Err(UriError::OptionValue(..))
        ));
        assert!(matches!(parse("failover:()"), Err(UriError::Empty(_))));
        assert!(matches!(
            parse("failover:(tcp://a:1"),
            Err(UriError::Parentheses(_))
        ));
        assert!(matches!(
            parse("failover:(tcp://a:1)x"),
            Err(UriError::Parentheses(_))
        ));
        assert!(matches!(
            parse("failover:(failover:(tcp://a:1))"),
            Err(UriError::Parentheses(_) | UriError::Nested(_))
        ));
        assert!(matches!(
            parse("failover:(udp://a:1)"),
            Err(UriError::Scheme(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for s in ["tcp://a:1", "failover:(tcp://a:1,tcp://b:2)"] {
            let u = parse(s).unwrap();
            assert_eq!(u.to_string(), s);
            assert_eq!(parse(&u.to_string()).unwrap().addrs, u.addrs);
        }
    }
}
