//! Authorization: which groups may `read` (SUBSCRIBE, browse), `write` (SEND) and `admin`
//! (bring into being) a destination, as ActiveMQ's `authorizationEntry` says it, from
//! `[[security.authorization]]` entries that match destinations with wildcards.
//!
//! - No entries at all: everything is allowed (ActiveMQ without its authorization plugin).
//! - Otherwise an operation is allowed when the connection's user is in one of the groups the
//!   entries that match the destination grant it — the union over every matching entry, as
//!   ActiveMQ's `DefaultAuthorizationMap` does — and denied when no entry matches.
//!   The group `"*"` stands for every connection (anonymous ones too).
//! - A wildcard subscription (`/topic/prices.>`) is checked as the pattern it is: an entry
//!   must match the pattern itself (`/topic/prices.>` or `/topic/>`), so a wildcard cannot
//!   reach destinations its subscriber may not read one by one.
//! - `admin` is asked for when a SEND or SUBSCRIBE names a destination the broker does not
//!   know (neither in use, nor kept listed while idle, nor declared in `[destinations]
//!   declared`): using it would create it, as ActiveMQ's `addDestination` asks for `admin`
//!   (`session/create.rs` asks the owner). Wildcard subscriptions create nothing.
//! - Temporary destinations are not matched by entries: any connection may send to one (it is
//!   someone's reply-to), and only its creator may subscribe (the session checks that).
//! - Advisory topics are topics like any other: subscribing to
//!   `/topic/ActiveMQ.Advisory.Consumer.Queue.orders` needs `read` on it (an entry for
//!   `/topic/ActiveMQ.Advisory.>`).

use serde::{Deserialize, Serialize};

use super::Principal;
use crate::message::{DestinationName, Kind};

/// One `[[security.authorization]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationEntry {
    /// The destinations it covers: `/queue/…` or `/topic/…` with `*` and `>` wildcards.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Groups that may SUBSCRIBE (and browse).
    #[serde(default)]
    pub read: Vec<String>,
    /// Groups that may SEND.
    #[serde(default)]
    pub write: Vec<String>,
    /// Groups that may create the destinations it covers (their first SEND or SUBSCRIBE).
    #[serde(default)]
    pub admin: Vec<String>,
}

/// What a frame does to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
    /// Creating the destination: using one the broker does not know yet.
    Admin,
}

impl Operation {
    /// As ActiveMQ's message says it: `read from`, `write to`, `create`.
    pub fn phrase(self) -> &'static str {
        match self {
            Operation::Read => "read from",
            Operation::Write => "write to",
            Operation::Admin => "create",
        }
    }
}

#[derive(Debug)]
struct Rule {
    kind: Kind,
    name: String,
    read: Vec<String>,
    write: Vec<String>,
    admin: Vec<String>,
}

/// The entries, checked.
#[derive(Debug, Default)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Checks every entry; the error names the bad one.
    pub fn new(entries: &[AuthorizationEntry]) -> Result<Rules, String> {
        let mut rules = Vec::with_capacity(entries.len());
        for e in entries {
            let (kind, name) = crate::config::split_pattern(&e.pattern, "security.authorization")?;
            if name.split('.').any(str::is_empty) {
                return Err(format!(
                    "security.authorization match {:?}: empty name or segment",
                    e.pattern
                ));
            }
            rules.push(Rule {
                kind,
                name: name.to_string(),
                read: e.read.clone(),
                write: e.write.clone(),
                admin: e.admin.clone(),
            });
        }
        Ok(Rules(rules))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `who` may do `op` on `destination`.
    pub fn allows(&self, who: &Principal, op: Operation, destination: &DestinationName) -> bool {
        if self.0.is_empty() || destination.is_temp() {
            return true;
        }
        let name = destination.name();
        self.0
            .iter()
            .filter(|r| r.kind == destination.kind() && covers(&r.name, name))
            .flat_map(|r| match op {
                Operation::Read => &r.read,
                Operation::Write => &r.write,
                Operation::Admin => &r.admin,
            })
            .any(|g| g == "*" || who.groups.iter().any(|mine| mine == g))
    }
}

/// Whether the rule pattern `rule` covers everything `name` can reach, `name` being a
/// destination or itself a wildcard subscription: a rule `>` covers the rest whatever it is;
/// a rule `*` covers one literal segment or a `*`; a literal covers only itself; and a `>`
/// in `name` (which reaches everything below it, whatever follows it) only a rule `>`.
fn covers(rule: &str, name: &str) -> bool {
    let mut parts = name.split('.');
    for segment in rule.split('.') {
        match (segment, parts.next()) {
            (">", _) => return true,
            (_, None) | (_, Some(">")) => return false,
            ("*", Some(_)) => {}
            (exact, Some(part)) if exact == part => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pattern: &str, read: &[&str], write: &[&str]) -> AuthorizationEntry {
        AuthorizationEntry {
            pattern: pattern.into(),
            read: read.iter().map(|s| s.to_string()).collect(),
            write: write.iter().map(|s| s.to_string()).collect(),
            admin: Vec::new(),
        }
    }

    fn who(groups: &[&str]) -> Principal {
        Principal {
            login: Some("u".into()),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            authenticated: true,
        }
    }

    fn d(name: &str) -> DestinationName {
        DestinationName::parse(name).unwrap()
    }

    #[test]
    fn groups_of_every_matching_entry_are_granted_and_nothing_else() {
        let rules = Rules::new(&[
            entry("/queue/orders.>", &["shop"], &["shop"]),
            entry("/queue/orders.audit", &["audit"], &[]),
            entry("/topic/ActiveMQ.Advisory.>", &["*"], &[]),
        ])
        .unwrap();
        let (shop, audit, other) = (who(&["shop"]), who(&["audit"]), who(&["misc"]));
        assert!(rules.allows(&shop, Operation::Write, &d("/queue/orders.new")));
        assert!(rules.allows(&shop, Operation::Read, &d("/queue/orders.audit")));
        assert!(rules.allows(&audit, Operation::Read, &d("/queue/orders.audit")));
        assert!(!rules.allows(&audit, Operation::Write, &d("/queue/orders.audit")));
        assert!(!rules.allows(&audit, Operation::Read, &d("/queue/orders.new")));
        // No entry matches: denied.
        assert!(!rules.allows(&shop, Operation::Write, &d("/queue/payroll")));
        assert!(!rules.allows(&shop, Operation::Read, &d("/topic/orders.new")));
        // "*": everyone, for reading advisories here.
        assert!(rules.allows(
            &other,
            Operation::Read,
            &d("/topic/ActiveMQ.Advisory.Queue")
        ));
        assert!(!rules.allows(
            &other,
            Operation::Write,
            &d("/topic/ActiveMQ.Advisory.Queue")
        ));
        // Wildcard subscriptions are checked as patterns.
        assert!(rules.allows(&shop, Operation::Read, &d("/queue/orders.*")));
        assert!(!rules.allows(&shop, Operation::Read, &d("/queue/>")));
        // A rule's * does not cover a subscription's > (which reaches every depth), nor a
        // literal a *; a > followed by more is still a > (what a subscription makes of it).
        let star = Rules::new(&[entry("/topic/prices.*", &["g"], &[])]).unwrap();
        let g = who(&["g"]);
        assert!(star.allows(&g, Operation::Read, &d("/topic/prices.eu")));
        assert!(star.allows(&g, Operation::Read, &d("/topic/prices.*")));
        assert!(!star.allows(&g, Operation::Read, &d("/topic/prices.>")));
        assert!(!star.allows(&g, Operation::Read, &d("/topic/prices.eu.secret")));
        let public = Rules::new(&[entry("/topic/*.public", &["g"], &[])]).unwrap();
        assert!(!public.allows(&g, Operation::Read, &d("/topic/>.public")));
        assert!(!public.allows(&g, Operation::Read, &d("/topic/*.*")));
        let literal = Rules::new(&[entry("/topic/a.b", &["g"], &[])]).unwrap();
        assert!(!literal.allows(&g, Operation::Read, &d("/topic/a.*")));
        assert!(Rules::default().allows(&other, Operation::Write, &d("/queue/x")));
    }

    #[test]
    fn admin_is_a_right_of_its_own() {
        let rules = Rules::new(&[
            AuthorizationEntry {
                admin: vec!["ops".into()],
                ..entry("/queue/orders.>", &["shop"], &["shop"])
            },
            AuthorizationEntry {
                admin: vec!["shop".into()],
                ..entry("/queue/orders.carts.>", &[], &[])
            },
        ])
        .unwrap();
        let (shop, ops) = (who(&["shop"]), who(&["ops"]));
        assert!(!rules.allows(&shop, Operation::Admin, &d("/queue/orders.new")));
        assert!(rules.allows(&ops, Operation::Admin, &d("/queue/orders.new")));
        assert!(!rules.allows(&ops, Operation::Write, &d("/queue/orders.new")));
        // The union of matching entries, as for read and write.
        assert!(rules.allows(&shop, Operation::Admin, &d("/queue/orders.carts.1")));
        assert!(!rules.allows(&shop, Operation::Admin, &d("/queue/other")));
        assert_eq!(Operation::Admin.phrase(), "create");
    }

    #[test]
    fn bad_patterns_are_named() {
        let err = Rules::new(&[entry("orders", &[], &[])]).unwrap_err();
        assert!(err.contains("\"orders\""), "{err}");
        assert!(Rules::new(&[entry("/queue/a..b", &[], &[])]).is_err());
    }
}
