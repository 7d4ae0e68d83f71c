//! STOMP protocol versions and `accept-version` negotiation.

use std::fmt;

/// A STOMP protocol version. Ordered, so the highest common version is a `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    /// Every version the broker speaks, lowest first.
    pub const SUPPORTED: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version string as it appears in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses one version token such as `1.2`.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// Picks the highest version both sides speak. `accept_version` is the CONNECT header's
    /// value; a missing header means a 1.0 client (spec 1.1, "Protocol Negotiation").
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        match accept_version {
            None => Some(Version::V1_0),
            Some(list) => list.split(',').filter_map(Version::parse).max(),
        }
    }

    /// The comma list of supported versions, for the `version` header of a refusal.
    pub fn supported_list() -> &'static str {
        "1.0,1.1,1.2"
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common() {
        assert_eq!(Version::negotiate(None), Some(Version::V1_0));
        assert_eq!(Version::negotiate(Some("1.0,1.1")), Some(Version::V1_1));
        assert_eq!(Version::negotiate(Some("1.2,1.0")), Some(Version::V1_2));
        assert_eq!(Version::negotiate(Some("1.3,2.0")), None);
        assert_eq!(Version::negotiate(Some("")), None);
    }
}
