//! `[[network]]`: network connectors, one entry per ActiveMQ `<networkConnector>`.

use serde::{Deserialize, Serialize};

use crate::message::DestinationName;
use crate::network::uri::NetworkUri;

/// One network connector: bridges from this broker to the peers its `uri` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConnector {
    /// Names the connector in logs and in the bridges' `client-id` (ActiveMQ's `name`); unique
    /// among this broker's connectors.
    pub name: String,
    /// The peers: `static:(tcp://b:61613,…)`, `static:(failover:(tcp://m,tcp://s)?…)` or
    /// `masterslave:(tcp://m,tcp://s)`, see `network/uri.rs`.
    pub uri: String,
    /// Destinations forwarded to each peer whatever the peer's demand (ActiveMQ's
    /// `staticallyIncludedDestinations`): full names, wildcards allowed, e.g.
    /// `"/queue/orders.>"`.
    pub static_included: Vec<String>,
    /// Network hops a message may make (ActiveMQ's `networkTTL`, default 1): a message that
    /// already crossed this many is not forwarded again.
    pub network_ttl: u32,
    /// Messages a bridge takes from a local destination before the peer has receipted them
    /// (ActiveMQ's `prefetchSize`, 1000 there; see docs/network.md for why ours is smaller).
    pub prefetch: u32,
    /// `login` and `passcode` the bridges send to their peers.
    pub login: Option<String>,
    pub passcode: Option<String>,
}

impl Default for NetworkConnector {
    fn default() -> Self {
        NetworkConnector {
            name: "bridge".into(),
            uri: String::new(),
            static_included: Vec::new(),
            network_ttl: 1,
            prefetch: 100,
            login: None,
            passcode: None,
        }
    }
}

impl NetworkConnector {
    /// The parsed URI (checked by [`check`]).
    pub fn network_uri(&self) -> Result<NetworkUri, String> {
        self.uri
            .parse()
            .map_err(|e| format!("network {:?}: uri: {e}", self.name))
    }

    /// The statically included destinations, parsed (checked by [`check`]).
    pub fn static_destinations(&self) -> Result<Vec<DestinationName>, String> {
        self.static_included
            .iter()
            .map(|d| {
                DestinationName::parse(d)
                    .map_err(|e| format!("network {:?}: static_included {d:?}: {e}", self.name))
            })
            .collect()
    }
}

/// Checks every connector and the broker name they need.
pub fn check(broker_name: &str, connectors: &[NetworkConnector]) -> Result<(), String> {
    if connectors.is_empty() {
        return Ok(());
    }
    if broker_name.is_empty() || broker_name.contains([',', ':']) {
        // `,` separates the names of a broker path, `:` a network id's broker from its id.
        return Err(format!(
            "broker_name {broker_name:?}: a network needs a name without commas or colons, \
             unique in it"
        ));
    }
    let mut names = std::collections::HashSet::new();
    for c in connectors {
        if !names.insert(c.name.as_str()) {
            return Err(format!("network {:?} is named twice", c.name));
        }
        c.network_uri()?;
        let statics = c.static_destinations()?;
        if let Some(t) = statics.iter().find(|d| d.is_temp()) {
            return Err(format!(
                "network {:?}: static_included {t}: temporary destinations are not bridged",
                c.name
            ));
        }
        if statics.is_empty() {
            return Err(format!(
                "network {:?}: static_included is empty; demand forwarding is not built yet \
                 (issue 11), so this connector would forward nothing",
                c.name
            ));
        }
        if c.network_ttl == 0 {
            return Err(format!("network {:?}: network_ttl must be > 0", c.name));
        }
        if c.prefetch == 0 {
            return Err(format!("network {:?}: prefetch must be > 0", c.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network's broker name holds no `,` (broker paths) nor `:` (network ids).
    #[test]
    fn a_broker_name_with_a_comma_or_colon_is_refused() {
        let connector = NetworkConnector {
            uri: "static:(tcp://127.0.0.1:61613)".into(),
            static_included: vec!["/queue/q".into()],
            ..Default::default()
        };
        let connectors = [connector];
        assert_eq!(check("site-a", &connectors), Ok(()));
        for bad in ["", "a,b", "a:b"] {
            let err = check(bad, &connectors).unwrap_err();
            assert!(err.contains("broker_name"), "{bad:?}: {err}");
        }
    }
}
