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
    /// Forward by demand (ActiveMQ's default): a destination's messages go to the peer while
    /// the peer has consumers for it, learnt from its consumer advisories. On by default;
    /// `false` leaves only `static_included`.
    pub demand: bool,
    /// Destinations forwarded by demand (ActiveMQ's `dynamicallyIncludedDestinations`),
    /// wildcards allowed; empty: every queue and topic (never advisory ones; temporary ones
    /// follow `bridge_temp_destinations`).
    pub dynamic_included: Vec<String>,
    /// Destinations never forwarded by demand (ActiveMQ's `excludedDestinations`), wildcards
    /// allowed; they win over `dynamic_included`.
    pub excluded: Vec<String>,
    /// Forward by demand to the peer's temporary destinations too (ActiveMQ's
    /// `bridgeTempDestinations`, default true there and here): while a consumer on the peer
    /// reads one of its temporary queues or topics, the bridge holds a route for it here, so
    /// a reply sent here to its `/remote-temp-…` name reaches the requester there.
    /// `dynamic_included` and `excluded` do not apply to them (as in ActiveMQ).
    pub bridge_temp_destinations: bool,
    /// The bridge also forwards from the peer to this broker over the same connections
    /// (ActiveMQ's `duplex`): for a peer that cannot connect here (a hub behind a firewall).
    /// The peer must be a stompbox broker; it needs no connector of its own.
    pub duplex: bool,
    /// A bridge's subscription for a peer's queue consumers has priority -1, so this broker's
    /// own consumers are served first; with this, -1 less per further hop the demand came
    /// from, so nearer brokers are preferred (ActiveMQ's `decreaseNetworkConsumerPriority`).
    pub decrease_network_consumer_priority: bool,
    /// One demand subscription per destination for all of a peer's consumers, with the OR of
    /// their selectors (ActiveMQ's `conduitSubscriptions`, default true). With false, a
    /// queue gets one per peer consumer, so this broker shares the queue's messages among
    /// consumers, local and remote, one share each, rather than one share per broker. Topics
    /// are always a conduit: one subscription per remote subscriber would deliver each
    /// message to every subscriber there once per subscriber.
    pub conduit_subscriptions: bool,
    /// Send a queue's messages that came from the peer back to it when the peer has
    /// consumers for the queue and this broker has none of its own (ActiveMQ's
    /// `replayWhenNoConsumers`): otherwise a message forwarded here whose consumers then left
    /// stays here, stranded, while the peer's consumers wait. Off by default.
    pub replay_when_no_consumers: bool,
    /// A durable subscription on the peer is demand only while its subscriber is attached
    /// (ActiveMQ's `dynamicOnly`). Off by default, as there: a durable subscription is demand
    /// for as long as it exists, so what is published here while its subscriber is away
    /// still reaches it (the peer keeps it for the subscriber), until it is unsubscribed.
    pub dynamic_only: bool,
    /// In a mesh with a TTL above 1, ignore a peer's demand for a queue consumer that another
    /// bridge of this broker reaches in fewer hops (ActiveMQ's
    /// `suppressDuplicateQueueSubscriptions`): its messages then take the shortest way only,
    /// and do not cross an extra hop. Off by default.
    pub suppress_duplicate_queue_subscriptions: bool,
    /// Network hops a message may make (ActiveMQ's `networkTTL`, default 1): a message that
    /// already crossed this many is not forwarded again.
    pub network_ttl: u32,
    /// Hops a message may make, when it should differ from `network_ttl` (ActiveMQ 5.9's
    /// `messageTTL`).
    pub message_ttl: Option<u32>,
    /// Hops a consumer's demand may travel, when it should differ from `network_ttl`
    /// (ActiveMQ 5.9's `consumerTTL`): demand from a consumer `n` brokers beyond the peer is
    /// followed while `n + 1 <= consumer_ttl`.
    pub consumer_ttl: Option<u32>,
    /// Messages a bridge takes from a local destination before the peer has receipted them
    /// (ActiveMQ's `prefetchSize`, 1000 as there; docs/network.md, Throughput and
    /// Duplicates).
    pub prefetch: u32,
    /// Heart-beats on the link to the peer, both ways, in ms (0: none): a peer that goes
    /// silent for twice this is taken for dead and the link is made again. 10 s by default.
    pub heart_beat_ms: u64,
    /// A write to either of a bridge's connections that makes no progress for this long (ms)
    /// ends the link, which is made again: a peer that is stuck, or that never reads, would
    /// otherwise hold the bridge for good (ActiveMQ's `soWriteTimeout`, off there by default).
    /// Long enough to ride out a peer's producer flow control. 60 s by default; 0: wait
    /// forever.
    pub write_timeout_ms: u64,
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
            demand: true,
            bridge_temp_destinations: true,
            duplex: false,
            dynamic_included: Vec::new(),
            excluded: Vec::new(),
            decrease_network_consumer_priority: false,
            conduit_subscriptions: true,
            replay_when_no_consumers: false,
            dynamic_only: false,
            suppress_duplicate_queue_subscriptions: false,
            heart_beat_ms: 10_000,
            write_timeout_ms: 60_000,
            network_ttl: 1,
            message_ttl: None,
            consumer_ttl: None,
            prefetch: 1000,
            login: None,
            passcode: None,
        }
    }
}

impl NetworkConnector {
    /// The parsed URI (checked by `check`).
    pub fn network_uri(&self) -> Result<NetworkUri, String> {
        self.uri
            .parse()
            .map_err(|e| format!("network {:?}: uri: {e}", self.name))
    }

    /// The statically included destinations, parsed (checked by `check`).
    pub fn static_destinations(&self) -> Result<Vec<DestinationName>, String> {
        self.static_included
            .iter()
            .map(|d| {
                DestinationName::parse(d)
                    .map_err(|e| format!("network {:?}: static_included {d:?}: {e}", self.name))
            })
            .collect()
    }

    /// `dynamic_included` and `excluded`, parsed (checked by `check`).
    pub fn demand_filter(&self) -> Result<DemandFilter, String> {
        let parse = |key: &str, list: &[String]| -> Result<Vec<DestinationName>, String> {
            list.iter()
                .map(|d| {
                    DestinationName::parse(d)
                        .map_err(|e| format!("network {:?}: {key} {d:?}: {e}", self.name))
                })
                .collect()
        };
        Ok(DemandFilter {
            included: parse("dynamic_included", &self.dynamic_included)?,
            excluded: parse("excluded", &self.excluded)?,
            temp: self.bridge_temp_destinations,
        })
    }
}

/// Which destinations a connector forwards by demand.
#[derive(Debug, Clone, Default)]
pub struct DemandFilter {
    pub included: Vec<DestinationName>,
    pub excluded: Vec<DestinationName>,
    /// `bridge_temp_destinations`.
    pub temp: bool,
}

impl DemandFilter {
    /// Whether demand for `d` (a destination, or a peer consumer's wildcard pattern) is
    /// forwarded: a queue or topic that is not advisory, matching an included pattern (when
    /// there are any) and no excluded one; a temporary destination (never a pattern) when
    /// `bridge_temp_destinations` is on, whatever the patterns.
    pub fn admits(&self, d: &DestinationName) -> bool {
        if d.is_temp() {
            return self.temp && !d.is_wildcard();
        }
        let covers = |p: &DestinationName| p.covers(d);
        !crate::message::advisory::is_advisory(d)
            && (self.included.is_empty() || self.included.iter().any(covers))
            && !self.excluded.iter().any(covers)
    }
}

/// Checks every connector and the broker name they need.
pub fn check(broker_name: &str, connectors: &[NetworkConnector]) -> Result<(), String> {
    if connectors.is_empty() {
        return Ok(());
    }
    // `,` separates the names of a broker path, `:` a network id's broker from its id, and a
    // temporary destination's id carries the name with other characters replaced: names that
    // differ only there would take each other's temporary destinations for their own.
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if broker_name.is_empty() || !broker_name.chars().all(allowed) {
        return Err(format!(
            "broker_name {broker_name:?}: a network needs a name of letters, digits, '.', '_' \
             and '-' only, unique in it"
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
                "network {:?}: static_included {t}: a temporary destination is bridged by \
                 demand only (bridge_temp_destinations), while its consumer lasts",
                c.name
            ));
        }
        c.demand_filter()?;
        if statics.is_empty() && !c.demand {
            return Err(format!(
                "network {:?}: static_included is empty and demand = false: this connector \
                 would forward nothing",
                c.name
            ));
        }
        for (key, ttl) in [
            ("network_ttl", Some(c.network_ttl)),
            ("message_ttl", c.message_ttl),
            ("consumer_ttl", c.consumer_ttl),
        ] {
            if ttl == Some(0) {
                return Err(format!("network {:?}: {key} must be > 0", c.name));
            }
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
        assert_eq!(check("dc1.site_a-2", &connectors), Ok(()));
        for bad in ["", "a,b", "a:b", "site a", "site*a"] {
            let err = check(bad, &connectors).unwrap_err();
            assert!(err.contains("broker_name"), "{bad:?}: {err}");
        }
    }

    /// Demand for a peer's temporary destination is followed unless
    /// `bridge_temp_destinations = false`, whatever `dynamic_included` and `excluded` say.
    #[test]
    fn temporary_destinations_are_bridged_by_default_and_can_be_turned_off() {
        let temp = DestinationName::parse("/remote-temp-queue/ID:b:1-2:1").unwrap();
        let connector = NetworkConnector {
            dynamic_included: vec!["/queue/orders.>".into()],
            excluded: vec!["/queue/>".into()],
            ..Default::default()
        };
        assert!(connector.bridge_temp_destinations);
        assert!(connector.demand_filter().unwrap().admits(&temp));
        let off = NetworkConnector {
            bridge_temp_destinations: false,
            ..Default::default()
        };
        assert!(!off.demand_filter().unwrap().admits(&temp));
        // A pattern over temporary names stands for no consumer that a route could follow.
        let pattern = DestinationName::parse("/remote-temp-queue/>").unwrap();
        assert!(!connector.demand_filter().unwrap().admits(&pattern));
    }
}
