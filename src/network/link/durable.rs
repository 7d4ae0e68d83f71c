//! Durable routes: for the destination broker's durable subscriptions, a half's route is a
//! durable subscription on its source (`docs/network.md`, Demand), of the bridge's own client
//! id and named by what it takes, so that every link finds what was kept while the link was
//! down. Here: those names, the replays a half awaits (`replay-end` markers) before it deletes
//! the durable subscriptions of its client id that no route uses any more, and that deletion.

use super::demand::{ConsumerAdvisory, RouteSpec};
use super::*;

/// The name of the bridge's durable subscription on the source for the destination broker's
/// durable subscriptions to `topic` with route `spec` (its selector, hops and path): the same
/// in every link, so that a link made again finds what was kept while it was down; and one
/// per distinct spec, so that a route's selector never changes (a durable subscription
/// SUBSCRIBEd with another selector starts afresh, and would drop what it kept).
pub(super) fn durable_route_name(dst: &str, topic: &DestinationName, spec: &RouteSpec) -> String {
    // FNV-1a: stable across builds and versions, which std's hasher does not promise.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let key = format!(
        "{}\n{}\n{}\n{}",
        topic.as_str(),
        spec.selector.as_deref().unwrap_or(""),
        spec.hops,
        spec.path
    );
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{dst}.{hash:016x}")
}

/// The `client-id` of a bridge whose routes may be durable subscriptions: the same in every
/// link of bridge `connector` of broker `broker` to `peer`, on both brokers.
pub(super) fn durable_route_client(broker: &str, connector: &str, peer: &str) -> String {
    format!("{DURABLE_ROUTE_CLIENT}{broker}:{connector}->{peer}")
}

const DURABLE_ROUTE_CLIENT: &str = "stompbox-network:";

/// The connector whose durable route client id `client_id` is, if broker `broker` made it
/// ([`durable_route_client`]); None for any other client id, including another broker's
/// bridge (a duplex peer's reverse routes here).
pub(crate) fn durable_route_connector<'a>(client_id: &'a str, broker: &str) -> Option<&'a str> {
    let rest = client_id
        .strip_prefix(DURABLE_ROUTE_CLIENT)?
        .strip_prefix(broker)?
        .strip_prefix(':')?;
    Some(rest.rsplit_once("->")?.0)
}

/// The broker a durable subscription stands for if it is a bridge's durable route
/// (`client_id:name`, its client id from [`durable_route_client`]), else None.
pub(super) fn durable_route_peer(key: &str) -> Option<String> {
    let (client, _name) = key.strip_prefix(DURABLE_ROUTE_CLIENT)?.rsplit_once(':')?;
    let (_, peer) = client.rsplit_once("->")?;
    Some(peer.to_string()).filter(|p| !p.is_empty())
}

/// The consumer advisory replays a half waits for (its SUBSCRIBEs asked for a `replay-end`
/// marker), by connection and subscription: replayed advisories seen, and how many the
/// marker announced once it came (it can overtake those of other shards).
#[derive(Debug, Default)]
pub(super) struct Replays {
    pending: HashMap<(usize, String), (usize, Option<usize>)>,
    /// Every replay was complete once: the bridge's stale durable subscriptions were deleted.
    pub(super) swept: bool,
}

impl Replays {
    /// Waits for the replay of subscription `sub` on connection `side`.
    pub(super) fn expect(&mut self, side: usize, sub: String) {
        self.pending.insert((side, sub), (0, None));
    }

    /// Notes advisory `body` of subscription `sub` on connection `side`; true when it
    /// completed the last replay pending.
    fn note(&mut self, side: usize, sub: &str, body: &serde_json::Value) -> bool {
        let key = (side, sub.to_string());
        let Some((seen, expected)) = self.pending.get_mut(&key) else {
            return false;
        };
        if body.get("event").and_then(|e| e.as_str()) == Some("replay-end") {
            *expected = body
                .get("replayed")
                .and_then(|n| n.as_u64())
                .map(|n| n as usize);
        } else if body.get("replayed").and_then(|r| r.as_bool()) == Some(true) {
            *seen += 1;
        }
        if expected.is_some_and(|n| *seen >= n) {
            self.pending.remove(&key);
            return self.pending.is_empty();
        }
        false
    }
}

/// The JSON body of an advisory message.
fn advisory_body(m: &Delivery) -> Option<serde_json::Value> {
    serde_json::from_slice(m.body()).ok()
}

impl Half {
    /// Notes from a topic consumer advisory of the source broker the durable subscriptions of
    /// this bridge's client id `client` there: the durable routes' (see
    /// [`Link::sweep_durables`]).
    pub(super) fn note_own_durable(&mut self, advisory: &ConsumerAdvisory, client: Option<&str>) {
        let (Some(client), Some(durable)) = (client, advisory.text("durable_subscription")) else {
            return;
        };
        let Some(name) = durable
            .strip_prefix(client)
            .and_then(|n| n.strip_prefix(':'))
        else {
            return;
        };
        match advisory.event.as_str() {
            "consumer-added" => {
                self.own_durables
                    .insert(name.to_string(), advisory.destination.clone());
            }
            "durable-removed" => {
                self.own_durables.remove(name);
            }
            _ => {}
        }
    }
}

impl Link<'_> {
    /// The body of advisory `m`, read on connection `side` of half `h`, noted in its replays;
    /// with true when it completed them (see [`Link::replay_noted`]).
    pub(super) fn note_replay(
        &mut self,
        h: usize,
        side: usize,
        m: &Delivery,
    ) -> Option<(serde_json::Value, bool)> {
        let body = advisory_body(m)?;
        let sub = m.get("subscription").unwrap_or_default();
        let complete = self.halves[h].replays.note(side, sub, &body);
        Some((body, complete))
    }

    /// After an advisory that completed half `h`'s replays was followed: the sweep.
    pub(super) async fn replay_noted(
        &mut self,
        h: usize,
        complete: bool,
    ) -> Result<(), ClientError> {
        match complete {
            true => self.sweep_durables(h).await,
            false => Ok(()),
        }
    }

    /// Deletes the durable subscriptions of this bridge on half `h`'s source that no route
    /// uses, once the consumers of both brokers were replayed: those of durable subscriptions
    /// the destination broker deleted while the link was down (or while this broker was). A
    /// route that ends while linked deletes its own ([`Link::end_routes`]).
    async fn sweep_durables(&mut self, h: usize) -> Result<(), ClientError> {
        let half = &mut self.halves[h];
        if half.replays.swept {
            return Ok(());
        }
        half.replays.swept = true;
        let used: HashSet<&str> = half
            .routes
            .values()
            .filter_map(|r| r.spec.as_ref()?.durable.as_deref())
            .collect();
        let stale: Vec<(String, DestinationName)> = half
            .own_durables
            .iter()
            .filter(|(name, _)| !used.contains(name.as_str()))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        let src = half.src;
        for (name, topic) in stale {
            info!(
                "network {}: deleting durable subscription {name} of {topic} at {}: {} no longer has a durable subscriber it stood for",
                self.bridge.connector,
                self.halves[h].src_name,
                self.halves[h].dst_name.as_deref().unwrap_or("the peer"),
            );
            self.clients[src]
                .delete_durable(topic.as_str(), &name)
                .await?;
            self.halves[h].own_durables.remove(&name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_durable_route_names_the_broker_it_stands_for() {
        let client = durable_route_client("a", "to-b", "b");
        assert_eq!(
            durable_route_peer(&format!("{client}:b.0123456789abcdef")).as_deref(),
            Some("b")
        );
        assert_eq!(durable_route_peer("reader:daily"), None);
        assert_eq!(durable_route_peer("stompbox-network:odd"), None);
        let client = durable_route_client("a", "to-b", "b");
        assert_eq!(durable_route_connector(&client, "a"), Some("to-b"));
        assert_eq!(
            durable_route_connector(&client, "b"),
            None,
            "another broker's"
        );
        assert_eq!(durable_route_connector(&client, "a:"), None);
        assert_eq!(durable_route_connector("app-client", "a"), None);
    }

    #[test]
    fn a_replay_is_complete_once_its_marker_and_all_it_counted_came() {
        let mut r = Replays::default();
        r.expect(DESTINATION, "sub-1".into());
        r.expect(SOURCE, "sub-1".into());
        let replayed = serde_json::json!({"event": "consumer-added", "replayed": true});
        let live = serde_json::json!({"event": "consumer-added"});
        let end = |n: u64| serde_json::json!({"event": "replay-end", "replayed": n});
        assert!(!r.note(DESTINATION, "sub-1", &replayed));
        // The marker overtook one replayed advisory (another shard's).
        assert!(!r.note(DESTINATION, "sub-1", &end(2)));
        assert!(!r.note(DESTINATION, "sub-1", &live));
        assert!(
            !r.note(DESTINATION, "sub-1", &replayed),
            "the other replay is pending"
        );
        assert!(!r.note(DESTINATION, "sub-2", &end(0)), "not awaited");
        assert!(r.note(SOURCE, "sub-1", &end(0)), "the last one");
        assert!(!r.note(SOURCE, "sub-1", &end(0)), "once");
    }
}
