//! Per-destination policies: `[[destinations.policy]]` entries that match destination names
//! with wildcards (`/queue/orders.>`, `/topic/prices.*`), as ActiveMQ's `<policyEntry>`s do.
//!
//! Each setting a destination uses comes from the most specific matching entry that sets it,
//! else from the `[destinations]` default. Specificity: more literal segments first, then
//! no `>`, then fewer `*` (so `/queue/a.b` beats `/queue/a.*` beats `/queue/a.>` beats
//! `/queue/>`); entries equally specific apply in file order, the later one winning.

use serde::{Deserialize, Serialize};

use crate::message::wildcard;
use crate::message::{DestinationName, Kind};

/// One `[[destinations.policy]]` entry; unset fields fall through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyEntry {
    /// The destinations this entry applies to: a full name with wildcards, e.g.
    /// `"/queue/orders.>"`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Deliveries after which a message that keeps coming back (NACK, consumer gone, ABORT)
    /// goes to the dead-letter queue.
    pub max_redeliveries: Option<u32>,
    /// Wait before a message that came back is delivered again (ms); 0 = at once.
    pub redelivery_delay_ms: Option<u64>,
    /// Each further redelivery waits this many times longer (1 = always the same delay).
    pub redelivery_backoff_multiplier: Option<f64>,
    /// Longest redelivery delay (ms); 0 = no cap.
    pub max_redelivery_delay_ms: Option<u64>,
    /// A NACK sends the message straight to the dead-letter queue, as ActiveMQ's STOMP does
    /// ("poison ack"), instead of redelivering it.
    pub nack_to_dlq: Option<bool>,
    /// Time to live (ms) for messages sent without `expires`; 0 = none.
    pub ttl_ms: Option<u64>,
    /// Expired messages go to the dead-letter queue (true) or are dropped (false).
    pub expired_to_dlq: Option<bool>,
}

/// What applies to one destination, every field resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub max_redeliveries: u32,
    pub redelivery_delay_ms: u64,
    pub redelivery_backoff_multiplier: f64,
    pub max_redelivery_delay_ms: u64,
    pub nack_to_dlq: bool,
    pub ttl_ms: u64,
    pub expired_to_dlq: bool,
}

impl Policy {
    /// How long the `count`-th redelivery (1 = the first) waits, in ms.
    pub fn redelivery_delay(&self, count: u32) -> u64 {
        if self.redelivery_delay_ms == 0 || count == 0 {
            return 0;
        }
        let factor = self
            .redelivery_backoff_multiplier
            .powi(count.saturating_sub(1).min(64) as i32);
        let delay = (self.redelivery_delay_ms as f64 * factor).min(u64::MAX as f64) as u64;
        match self.max_redelivery_delay_ms {
            0 => delay,
            max => delay.min(max),
        }
    }
}

/// An entry's pattern checked: its kind, its name pattern and how specific it is (higher
/// is more specific).
struct Compiled<'a> {
    kind: Kind,
    name: &'a str,
    rank: (usize, bool, std::cmp::Reverse<usize>),
}

/// Checks an entry; the error names what is wrong.
pub(super) fn check(entry: &PolicyEntry) -> Result<(), String> {
    compile(entry).map(|_| ())
}

/// A config entry's `match`: its kind and its name pattern (wildcards allowed). `what` names
/// the config key in the error.
pub(crate) fn split_pattern<'a>(pattern: &'a str, what: &str) -> Result<(Kind, &'a str), String> {
    let (kind, name) = if let Some(n) = pattern.strip_prefix("/queue/") {
        (Kind::Queue, n)
    } else if let Some(n) = pattern.strip_prefix("/topic/") {
        (Kind::Topic, n)
    } else {
        return Err(format!(
            "{what} match {pattern:?} must begin with /queue/ or /topic/"
        ));
    };
    if name.is_empty() {
        return Err(format!("{what} match {pattern:?} has an empty name"));
    }
    Ok((kind, name))
}

fn compile(entry: &PolicyEntry) -> Result<Compiled<'_>, String> {
    let (kind, name) = split_pattern(&entry.pattern, "destinations.policy")?;
    if let Some(m) = entry.redelivery_backoff_multiplier {
        if !(m.is_finite() && m >= 1.0) {
            return Err(format!(
                "destinations.policy {:?}: redelivery_backoff_multiplier must be >= 1 (got {m})",
                entry.pattern
            ));
        }
    }
    let literal = name.split('.').filter(|s| *s != "*" && *s != ">").count();
    let stars = name.split('.').filter(|s| *s == "*").count();
    let open = name.split('.').any(|s| s == ">");
    Ok(Compiled {
        kind,
        name,
        rank: (literal, !open, std::cmp::Reverse(stars)),
    })
}

/// Resolves the policy of `destination` from the defaults and the entries, without
/// allocating: each field keeps the value of the most specific entry that sets it (the later
/// one among equals).
pub(super) fn resolve(
    defaults: &Policy,
    entries: &[PolicyEntry],
    destination: &DestinationName,
) -> Policy {
    let name = destination.name();
    let mut p = defaults.clone();
    type Rank = Option<(usize, bool, std::cmp::Reverse<usize>)>;
    let mut best: [Rank; 7] = [None; 7];
    for entry in entries {
        // Entries were checked when the config was loaded; one that fails here is skipped.
        let Ok(c) = compile(entry) else { continue };
        // Temporary destinations take the defaults: their names are made up by the broker, and
        // ActiveMQ's `queue=">"` entries do not match them either (it needs `tempQueue`).
        if c.kind != destination.kind() || destination.is_temp() || !wildcard::matches(c.name, name)
        {
            continue;
        }
        let mut take = |field: usize| {
            let better = best[field].is_none_or(|b| c.rank >= b);
            if better {
                best[field] = Some(c.rank);
            }
            better
        };
        if let Some(v) = entry.max_redeliveries.filter(|_| take(0)) {
            p.max_redeliveries = v;
        }
        if let Some(v) = entry.redelivery_delay_ms.filter(|_| take(1)) {
            p.redelivery_delay_ms = v;
        }
        if let Some(v) = entry.redelivery_backoff_multiplier.filter(|_| take(2)) {
            p.redelivery_backoff_multiplier = v;
        }
        if let Some(v) = entry.max_redelivery_delay_ms.filter(|_| take(3)) {
            p.max_redelivery_delay_ms = v;
        }
        if let Some(v) = entry.nack_to_dlq.filter(|_| take(4)) {
            p.nack_to_dlq = v;
        }
        if let Some(v) = entry.ttl_ms.filter(|_| take(5)) {
            p.ttl_ms = v;
        }
        if let Some(v) = entry.expired_to_dlq.filter(|_| take(6)) {
            p.expired_to_dlq = v;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, DestinationConfig, PolicyEntry};
    use crate::message::DestinationName;

    fn name(s: &str) -> DestinationName {
        DestinationName::parse(s).unwrap()
    }

    #[test]
    fn the_most_specific_matching_entry_wins_field_by_field() {
        let config: Config = toml::from_str(
            r#"
            [destinations]
            max_redeliveries = 6
            [[destinations.policy]]
            match = "/queue/>"
            max_redeliveries = 1
            ttl_ms = 5
            [[destinations.policy]]
            match = "/queue/orders.>"
            max_redeliveries = 2
            nack_to_dlq = true
            [[destinations.policy]]
            match = "/queue/orders.*"
            max_redeliveries = 3
            [[destinations.policy]]
            match = "/queue/orders.eu"
            redelivery_delay_ms = 100
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        let d = &config.destinations;
        let eu = d.policy_for(&name("/queue/orders.eu"));
        assert_eq!(
            eu.max_redeliveries, 3,
            "orders.* is more specific than orders.>"
        );
        assert_eq!(eu.redelivery_delay_ms, 100);
        assert!(eu.nack_to_dlq, "from orders.>, the only entry that sets it");
        assert_eq!(eu.ttl_ms, 5, "from >");
        assert_eq!(
            d.policy_for(&name("/queue/orders.eu.x")).max_redeliveries,
            2
        );
        assert_eq!(d.policy_for(&name("/queue/orders")).max_redeliveries, 2);
        assert_eq!(d.policy_for(&name("/queue/other")).max_redeliveries, 1);
        let topic = d.policy_for(&name("/topic/orders.eu"));
        assert_eq!(
            topic.max_redeliveries, 6,
            "queue entries do not apply to topics"
        );
        assert!(!topic.nack_to_dlq);
        assert_eq!(d.ttl_for(&name("/queue/x")), 5);
        assert_eq!(d.ttl_for(&name("/topic/x")), 0);
    }

    #[test]
    fn bad_entries_are_config_errors() {
        for (entry, says) in [
            (
                r#"match = "orders.>""#,
                "must begin with /queue/ or /topic/",
            ),
            (r#"match = "/queue/""#, "empty name"),
            (
                "match = \"/queue/a\"\nredelivery_backoff_multiplier = 0.5",
                "redelivery_backoff_multiplier",
            ),
        ] {
            let text = format!("[[destinations.policy]]\n{entry}\n");
            let config: Config = toml::from_str(&text).unwrap();
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{entry}: {e}");
        }
        let unknown = toml::from_str::<Config>(
            "[[destinations.policy]]\nmatch = \"/queue/a\"\nmax_redelivery = 1\n",
        );
        assert!(unknown.is_err(), "unknown keys are refused");
    }

    #[test]
    fn redelivery_delay_backs_off_and_is_capped() {
        let d = DestinationConfig {
            redelivery_delay_ms: 1000,
            redelivery_backoff_multiplier: 5.0,
            max_redelivery_delay_ms: 60_000,
            policy: vec![PolicyEntry {
                pattern: "/queue/flat".into(),
                redelivery_backoff_multiplier: Some(1.0),
                max_redelivery_delay_ms: Some(0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = d.policy_for(&name("/queue/q"));
        let delays: Vec<u64> = (0..6).map(|n| p.redelivery_delay(n)).collect();
        assert_eq!(delays, [0, 1000, 5000, 25_000, 60_000, 60_000]);
        let flat = d.policy_for(&name("/queue/flat"));
        assert_eq!(flat.redelivery_delay(1), 1000);
        assert_eq!(flat.redelivery_delay(1000), 1000);
        assert_eq!(
            DestinationConfig::default()
                .policy_for(&name("/queue/q"))
                .redelivery_delay(3),
            0
        );
    }
}
