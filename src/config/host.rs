//! Host names as the admin endpoint's config and its request checks see them: an
//! `admin.allowed_hosts` entry, and the `host[:port]` of a `Host` header or an origin. Pure
//! parsing; `admin/guard.rs` decides what a request may do with them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One `admin.allowed_hosts` entry: `name` admits that name on any port, `name:port` on that
/// port only (an IP literal works too). Names compare case-insensitively. In TOML it is the
/// string; a malformed one fails the config load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AllowedHost {
    pub host: Host,
    pub port: Option<u16>,
}

impl FromStr for AllowedHost {
    type Err = String;

    fn from_str(s: &str) -> Result<AllowedHost, String> {
        let (host, port) = split_authority(s).map_err(|why| {
            format!("{s:?} is not a host name or HOST:PORT ({why}), e.g. \"broker-a:8161\"")
        })?;
        Ok(AllowedHost { host, port })
    }
}

impl TryFrom<String> for AllowedHost {
    type Error = String;

    fn try_from(s: String) -> Result<AllowedHost, String> {
        s.parse()
    }
}

impl From<AllowedHost> for String {
    fn from(a: AllowedHost) -> String {
        a.to_string()
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// The host part of a `Host` header or origin: an IP literal or a lower-cased name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A `Host` header or an origin's `host[:port]`, the port 80 (http) when none is given.
#[derive(Debug, PartialEq, Eq)]
pub struct Authority {
    pub host: Host,
    pub port: u16,
}

impl Authority {
    pub fn parse(s: &str) -> Result<Authority, &'static str> {
        let (host, port) = split_authority(s)?;
        Ok(Authority {
            host,
            port: port.unwrap_or(80),
        })
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`. Names are letters, digits, `-`, `_`
/// and `.`; an empty port (`host:`) counts as none (RFC 3986).
fn split_authority(s: &str) -> Result<(Host, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("no ] after an IPv6 address")?;
        let v6: Ipv6Addr = v6.parse().map_err(|_| "not an IPv6 address")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("text after ]")?),
        };
        (Host::Ip(IpAddr::V6(v6)), port)
    } else {
        let (name, port) = match s.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (s, None),
        };
        let host = match name.parse::<Ipv4Addr>() {
            Ok(v4) => Host::Ip(IpAddr::V4(v4)),
            Err(_) if name.is_empty() => return Err("no host"),
            Err(_) if name.contains(':') => return Err("an IPv6 address needs [ ]"),
            Err(_) => {
                let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
                if !name.chars().all(ok) {
                    return Err("a name is letters, digits, '-', '_' and '.'");
                }
                Host::Name(name.to_ascii_lowercase())
            }
        };
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().map_err(|_| "port above 65535")?)
        }
        Some(_) => return Err("the port is not a number"),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_entries_parse_or_say_why() {
        for ok in [
            "broker-a",
            "Broker-A.example:8161",
            "10.0.0.5",
            "[::1]:8161",
            "a_b",
        ] {
            assert!(ok.parse::<AllowedHost>().is_ok(), "{ok}");
        }
        assert_eq!(
            "Broker-A:8161".parse::<AllowedHost>().unwrap().to_string(),
            "broker-a:8161"
        );
        for bad in [
            "",
            "http://broker-a",
            "broker-a/",
            "*",
            "::1",
            "[::1",
            "a:b",
            "a:99999",
        ] {
            let err = bad.parse::<AllowedHost>().unwrap_err();
            assert!(err.contains("HOST:PORT"), "{bad:?}: {err}");
        }
    }
}
