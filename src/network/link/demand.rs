//! The demand a link follows: the destination broker's consumers, learnt from its consumer
//! advisories, and (for `replay_when_no_consumers`) the source's own; the routes they need
//! (one conduit per destination, or one per queue consumer; replay routes), and which of them
//! another bridge reaches more directly (`suppress_duplicate_queue_subscriptions`). Which
//! routes are durable subscriptions, and their upkeep, is in `durable.rs`.

use super::durable::durable_route_name;
use super::*;

/// How a demand route subscribes: the consumers' selector (their OR; None: all messages),
/// the hops beyond the destination broker of the nearest of them, and the path it stands for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RouteSpec {
    pub(super) selector: Option<String>,
    pub(super) hops: usize,
    pub(super) path: String,
    /// The name of the durable subscription on the source that the route is, for durable
    /// subscriptions of the destination broker's ([`durable_route_name`]).
    pub(super) durable: Option<String>,
}

/// One consumer of the destination broker's, as its advisory describes it.
#[derive(Debug, Clone)]
pub(super) struct PeerConsumer {
    selector: Option<String>,
    /// Brokers beyond the destination broker it stands for (0: one of its own consumers).
    hops: usize,
    path: Option<String>,
    /// A durable subscription (followed as one: not with `dynamic_only`).
    durable: bool,
}

/// Consumers whose removal came before their (replayed) addition, by destination and id: the
/// last [`GONE_REMEMBERED`] of them (see `Half::consumer_removed`).
#[derive(Debug, Default)]
pub(super) struct Gone(VecDeque<(DestinationName, String)>);

impl Gone {
    fn remember(&mut self, destination: &DestinationName, id: &str) {
        if self.0.len() >= GONE_REMEMBERED {
            self.0.pop_front();
        }
        self.0.push_back((destination.clone(), id.to_string()));
    }

    /// True (and forgotten) when consumer `id` of `destination` is remembered as gone.
    fn take(&mut self, destination: &DestinationName, id: &str) -> bool {
        match self.0.iter().position(|(d, g)| g == id && d == destination) {
            Some(at) => {
                self.0.remove(at);
                true
            }
            None => false,
        }
    }
}

/// Consumer removals remembered per half before their additions (a replay's worth).
const GONE_REMEMBERED: usize = 4096;

/// The selector that takes what any of `selectors` takes: None (everything) when one of
/// them is None.
fn either_selector<'a>(selectors: impl Iterator<Item = Option<&'a str>>) -> Option<String> {
    let mut all: Vec<&str> = Vec::new();
    for s in selectors {
        let s = s?;
        if !all.contains(&s) {
            all.push(s);
        }
    }
    all.sort_unstable();
    match all.len() {
        0 => None,
        1 => Some(all[0].to_string()),
        _ => Some(
            all.iter()
                .map(|s| format!("({s})"))
                .collect::<Vec<_>>()
                .join(" OR "),
        ),
    }
}

/// The fields of a consumer advisory (`message/advisory.rs`) that bridges follow; None for a
/// message that is not one.
pub(super) struct ConsumerAdvisory {
    pub(super) event: String,
    pub(super) destination: DestinationName,
    id: String,
    body: serde_json::Value,
}

impl ConsumerAdvisory {
    pub(super) fn parse(body: serde_json::Value) -> Option<ConsumerAdvisory> {
        let text = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let (event, destination, id) = (text("event")?, text("destination")?, text("consumer_id")?);
        let destination = DestinationName::parse(&destination).ok()?;
        Some(ConsumerAdvisory {
            event,
            destination,
            id,
            body,
        })
    }

    /// A text field.
    pub(super) fn text(&self, k: &str) -> Option<String> {
        self.body
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

impl Half {
    /// Notes a consumer of the source broker's own (`replay_when_no_consumers`); true when
    /// that changed anything. As for the destination broker's demand, a removal that came
    /// before its replayed addition is remembered, or the consumer would count here for good
    /// and keep the queue from ever being replayed.
    fn local_consumer_added(&mut self, destination: &DestinationName, id: String) -> bool {
        if self.local_gone.take(destination, &id) {
            return false;
        }
        self.local
            .entry(destination.clone())
            .or_default()
            .insert(id)
    }

    /// Forgets a consumer of the source broker's own; true when that changed anything.
    fn local_consumer_removed(&mut self, destination: &DestinationName, id: &str) -> bool {
        let removed = self
            .local
            .get_mut(destination)
            .is_some_and(|c| c.remove(id));
        if self.local.get(destination).is_some_and(HashSet::is_empty) {
            self.local.remove(destination);
        }
        if !removed {
            self.local_gone.remember(destination, id);
        }
        removed
    }

    /// Notes a consumer of the destination broker's; true when its demand changed.
    fn consumer_added(
        &mut self,
        destination: &DestinationName,
        id: String,
        consumer: PeerConsumer,
    ) -> bool {
        if self.gone.take(destination, &id) {
            return false;
        }
        self.demand
            .entry(destination.clone())
            .or_default()
            .insert(id, consumer);
        true
    }

    /// Forgets a consumer of the destination broker's; true when its demand changed. A
    /// removal of a consumer not known yet is remembered (with its destination: a durable
    /// subscription's id, `durable:client:name`, may come again on another topic): the destination broker replays its
    /// consumers to a new advisory subscriber shard by shard, and a consumer that went away
    /// meanwhile can have its `consumer-removed` arrive before its replayed `consumer-added`,
    /// which would otherwise stand for demand that no longer exists (a route forwarding queue
    /// messages to a broker with no consumer for them). A consumer id is never used twice by
    /// one broker process, so the late addition is recognised and dropped.
    fn consumer_removed(&mut self, destination: &DestinationName, id: &str) -> bool {
        let Some(consumers) = self.demand.get_mut(destination) else {
            self.gone.remember(destination, id);
            return false;
        };
        if consumers.remove(id).is_none() {
            self.gone.remember(destination, id);
            return false;
        }
        if consumers.is_empty() {
            self.demand.remove(destination);
        }
        true
    }

    /// What the replay route of queue `destination` subscribes with, for `followed` (its
    /// followed demand), or None when it needs none: the source has a consumer of its own, or
    /// the destination broker has none of its own. Only the destination broker's own consumers
    /// count, not its bridges' routes towards further brokers: replaying for those could send
    /// a message back and forth between two brokers that both have no consumer, each replay a
    /// hop the TTL does not count.
    fn replay_spec(
        &self,
        destination: &DestinationName,
        followed: &[(String, PeerConsumer)],
    ) -> Option<RouteSpec> {
        let local = self
            .local
            .iter()
            .any(|(d, consumers)| !consumers.is_empty() && d.covers(destination));
        if local {
            return None;
        }
        let own: Vec<(String, PeerConsumer)> = followed
            .iter()
            .filter(|(_, c)| c.hops == 0)
            .cloned()
            .collect();
        self.wanted_routes(destination, &own, true)
            .into_values()
            .next()
    }

    /// The broker whose consumer `c` is: the last of the brokers it stands for, or the
    /// destination broker itself.
    fn origin_of(&self, c: &PeerConsumer) -> String {
        c.path
            .as_deref()
            .and_then(|p| p.rsplit(',').next())
            .filter(|o| !o.is_empty())
            .or(self.dst_name.as_deref())
            .unwrap_or("peer")
            .to_string()
    }

    /// The brokers `destination`'s demand stands for, each with the fewest hops beyond the
    /// destination broker it is reached at.
    fn origins_of(&self, destination: &DestinationName) -> BTreeMap<String, usize> {
        let mut held = BTreeMap::new();
        for c in self
            .demand
            .get(destination)
            .into_iter()
            .flat_map(|c| c.values())
        {
            let hops = held.entry(self.origin_of(c)).or_insert(c.hops);
            *hops = (*hops).min(c.hops);
        }
        held
    }

    /// The demand routes that `consumers` (of `destination`) need, by route key (see
    /// `demand_routes`). Durable subscriptions get durable routes, one per distinct
    /// selector, hops and path (key `durable:<name>`); the other consumers a conduit (or
    /// routes of their own), unless a durable route takes all they take already.
    fn wanted_routes(
        &self,
        destination: &DestinationName,
        consumers: &[(String, PeerConsumer)],
        conduit: bool,
    ) -> HashMap<String, RouteSpec> {
        if consumers.is_empty() {
            return HashMap::new();
        }
        let dst = self.dst_name.as_deref().unwrap_or("peer");
        let path_of = |c: Option<&PeerConsumer>| self.path_of(c);
        let mut durables: Vec<RouteSpec> = Vec::new();
        for (_, c) in consumers.iter().filter(|(_, c)| c.durable) {
            let spec = RouteSpec {
                selector: c.selector.clone(),
                hops: c.hops,
                path: path_of(Some(c)),
                durable: None,
            };
            if !durables.contains(&spec) {
                durables.push(spec);
            }
        }
        // A route with the same selector (or none) and no more hops takes all a consumer
        // takes (fewer hops: a looser TTL selector).
        let covered = |c: &PeerConsumer| {
            durables
                .iter()
                .any(|d| d.hops <= c.hops && (d.selector.is_none() || d.selector == c.selector))
        };
        let consumers: Vec<(String, PeerConsumer)> = consumers
            .iter()
            .filter(|(_, c)| !c.durable && !covered(c))
            .cloned()
            .collect();
        let mut routes: HashMap<String, RouteSpec> = durables
            .into_iter()
            .map(|mut spec| {
                let name = durable_route_name(dst, destination, &spec);
                spec.durable = Some(name.clone());
                (format!("durable:{name}"), spec)
            })
            .collect();
        routes.extend(self.volatile_routes(&consumers, conduit));
        routes
    }

    /// The broker path a route for consumer `c` stands for: the destination broker, then
    /// those `c` stands for.
    fn path_of(&self, c: Option<&PeerConsumer>) -> String {
        let dst = self.dst_name.as_deref().unwrap_or("peer");
        match c.and_then(|c| c.path.as_deref()) {
            Some(p) => format!("{dst},{p}"),
            None => dst.to_string(),
        }
    }

    /// The routes of [`Half::wanted_routes`] for consumers that are not durable subscriptions.
    fn volatile_routes(
        &self,
        consumers: &[(String, PeerConsumer)],
        conduit: bool,
    ) -> HashMap<String, RouteSpec> {
        if consumers.is_empty() {
            return HashMap::new();
        }
        let path_of = |c: Option<&PeerConsumer>| self.path_of(c);
        if !conduit {
            return consumers
                .iter()
                .map(|(id, c)| {
                    let spec = RouteSpec {
                        selector: c.selector.clone(),
                        hops: c.hops,
                        path: path_of(Some(c)),
                        durable: None,
                    };
                    (id.clone(), spec)
                })
                .collect();
        }
        let nearest = consumers.iter().map(|(_, c)| c).min_by_key(|c| c.hops);
        let spec = RouteSpec {
            selector: either_selector(consumers.iter().map(|(_, c)| c.selector.as_deref())),
            hops: nearest.map_or(0, |c| c.hops),
            path: path_of(nearest),
            durable: None,
        };
        HashMap::from([(String::new(), spec)])
    }
}

impl Link<'_> {
    /// A consumer advisory from half `h`'s destination broker: its demand changed.
    pub(super) async fn on_advisory(&mut self, h: usize, m: &Delivery) -> Result<(), ClientError> {
        let dst = self.halves[h].dst;
        let Some((body, replayed)) = self.note_replay(h, dst, m) else {
            return Ok(());
        };
        self.follow_advisory(h, body).await?;
        self.replay_noted(h, replayed).await
    }

    /// Follows consumer advisory `body` of half `h`'s destination broker.
    async fn follow_advisory(
        &mut self,
        h: usize,
        body: serde_json::Value,
    ) -> Result<(), ClientError> {
        let Some(filter) = self.bridge.demand.as_ref() else {
            return Ok(());
        };
        let Some(advisory) = ConsumerAdvisory::parse(body) else {
            return Ok(());
        };
        let text = |k: &str| advisory.text(k);
        let body = &advisory.body;
        let (event, id) = (&advisory.event, advisory.id.clone());
        let destination = advisory.destination.clone();
        // A durable subscription is demand for as long as it exists, with or without its
        // subscriber (unless `dynamic_only`): keyed by its name, not by its consumers.
        let durable = text("durable_subscription").filter(|_| !self.bridge.dynamic_only);
        let active = body.get("active").and_then(|v| v.as_bool()).unwrap_or(true);
        if !active && durable.is_none() {
            return Ok(());
        }
        let id = match &durable {
            Some(d) => format!("durable:{d}"),
            None => id,
        };
        let half = &mut self.halves[h];
        let changed = match event.as_str() {
            "consumer-added" => {
                // A bridge's durable route whose link is down is replayed without the path
                // its subscriber gave: its client id names the broker it stands for.
                let path = text("broker_path").or_else(|| {
                    durable
                        .as_deref()
                        .and_then(super::durable::durable_route_peer)
                });
                let hops = path_len(path.as_deref());
                // Demand that passed through the source is its own, come back; so is demand
                // for a temporary destination of the source's (no route stands for those).
                let echo = path
                    .as_deref()
                    .is_some_and(|p| path_holds(p, &half.src_name))
                    || destination.is_temp_of(&half.src_name);
                // No static route carries a temporary destination (no wildcard reads one).
                let statically = !destination.is_temp()
                    && self.bridge.statics.iter().any(|s| s.covers(&destination));
                if echo
                    || statically
                    || !filter.admits(&destination)
                    || hops + 1 > self.bridge.consumer_ttl as usize
                {
                    return Ok(());
                }
                let consumer = PeerConsumer {
                    selector: text("selector").filter(|s| !s.trim().is_empty()),
                    hops,
                    path,
                    durable: durable.is_some(),
                };
                half.consumer_added(&destination, id, consumer)
            }
            // Its subscriber left; the durable subscription stays, and keeps messages.
            "consumer-removed" if durable.is_some() => false,
            "consumer-removed"
                if !filter.admits(&destination)
                    || self.bridge.statics.iter().any(|s| s.covers(&destination)) =>
            {
                false
            }
            "consumer-removed" => half.consumer_removed(&destination, &id),
            "durable-removed" if durable.is_some() => half.consumer_removed(&destination, &id),
            _ => false,
        };
        if changed {
            if !self.halves[h].reverse && destination.kind() == crate::message::Kind::Queue {
                let held = self.halves[h].origins_of(&destination);
                self.origins.set(self.bridge.index, &destination, &held);
            }
            self.follow_demand(h, &destination).await?;
            self.follow_replay(h, &destination).await?;
        }
        Ok(())
    }

    /// Follows again the forward half's queue demand, which another bridge's demand may now
    /// suppress or no longer suppress (`suppress_duplicate_queue_subscriptions`).
    pub(super) async fn follow_origins(&mut self) -> Result<(), ClientError> {
        if !self.bridge.suppress {
            return Ok(());
        }
        if self.halves[0].reverse {
            return Ok(());
        }
        let queues: Vec<DestinationName> = self.halves[0]
            .demand
            .keys()
            .filter(|d| d.kind() == crate::message::Kind::Queue)
            .cloned()
            .collect();
        for d in queues {
            self.follow_demand(0, &d).await?;
            self.follow_replay(0, &d).await?;
        }
        Ok(())
    }

    /// The consumers of half `h`'s demand for `destination` it may follow: all of them,
    /// except with `suppress_duplicate_queue_subscriptions` those of a queue that another
    /// bridge reaches more directly.
    fn followed(&self, h: usize, destination: &DestinationName) -> Vec<(String, PeerConsumer)> {
        let half = &self.halves[h];
        let Some(consumers) = half.demand.get(destination) else {
            return Vec::new();
        };
        let suppress = self.bridge.suppress
            && !half.reverse
            && destination.kind() == crate::message::Kind::Queue;
        consumers
            .iter()
            .filter(|(_, c)| {
                !suppress
                    || !self.origins.nearer_elsewhere(
                        self.bridge.index,
                        destination,
                        &half.origin_of(c),
                        c.hops,
                    )
            })
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect()
    }

    /// A consumer advisory from half `h`'s source broker (`replay_when_no_consumers`): whether
    /// it has consumers of its own for a queue changed.
    pub(super) async fn on_local_advisory(
        &mut self,
        h: usize,
        m: &Delivery,
    ) -> Result<(), ClientError> {
        let src = self.halves[h].src;
        let Some((body, replayed)) = self.note_replay(h, src, m) else {
            return Ok(());
        };
        if let Some(advisory) = ConsumerAdvisory::parse(body) {
            match advisory.destination.kind() {
                crate::message::Kind::Topic => {
                    self.halves[h].note_own_durable(&advisory, self.durable_client.as_deref())
                }
                crate::message::Kind::Queue => self.follow_local_advisory(h, advisory).await?,
            }
        }
        self.replay_noted(h, replayed).await
    }

    /// Follows a queue consumer advisory of half `h`'s source broker
    /// (`replay_when_no_consumers`).
    async fn follow_local_advisory(
        &mut self,
        h: usize,
        advisory: ConsumerAdvisory,
    ) -> Result<(), ClientError> {
        // A bridge's subscription stands for consumers elsewhere, not here.
        if advisory.text("broker_path").is_some_and(|p| !p.is_empty()) {
            return Ok(());
        }
        let ConsumerAdvisory {
            event,
            destination,
            id,
            ..
        } = advisory;
        let changed = match event.as_str() {
            "consumer-added" => self.halves[h].local_consumer_added(&destination, id),
            "consumer-removed" => self.halves[h].local_consumer_removed(&destination, &id),
            _ => false,
        };
        if !changed {
            return Ok(());
        }
        // A wildcard consumer here covers many queues: each with demand is looked at again.
        let affected: Vec<DestinationName> = self.halves[h]
            .demand
            .keys()
            .filter(|d| destination.covers(d))
            .cloned()
            .collect();
        for d in affected {
            self.follow_replay(h, &d).await?;
        }
        Ok(())
    }

    /// Makes half `h`'s replay route of queue `destination` exist exactly while its
    /// destination broker has consumers for it and the source has none of its own
    /// (`replay_when_no_consumers`, as ActiveMQ's `ConditionalNetworkBridgeFilter`): then the
    /// messages that came from the destination broker go back there rather than wait here
    /// for consumers that left.
    async fn follow_replay(
        &mut self,
        h: usize,
        destination: &DestinationName,
    ) -> Result<(), ClientError> {
        // The replay selector names the destination broker: a peer that does not say its
        // name gets no replay. A temporary queue has none: a route's copy of one holds
        // nothing for consumers of its own.
        // Nor for a wildcard pattern's demand: which queues it covers have consumers here is
        // not known from the pattern.
        if !self.bridge.replay
            || destination.kind() != crate::message::Kind::Queue
            || destination.is_temp()
            || destination.is_wildcard()
            || self.halves[h].dst_name.is_none()
        {
            return Ok(());
        }
        let followed = self.followed(h, destination);
        let half = &self.halves[h];
        let want = half.replay_spec(destination, &followed);
        let current = half.replay_routes.get(destination).cloned();
        let current_spec = current
            .as_ref()
            .and_then(|id| half.routes.get(id))
            .and_then(|r| r.spec.clone());
        if want == current_spec {
            return Ok(());
        }
        match want {
            Some(spec) => {
                let id = self.open_route(h, destination, Some(spec), true).await?;
                self.halves[h].replay_routes.insert(destination.clone(), id);
            }
            None => {
                self.halves[h].replay_routes.remove(destination);
            }
        }
        self.end_routes(h, current.into_iter().collect()).await?;
        self.report_routes(h);
        Ok(())
    }

    /// Makes `destination`'s demand routes of half `h` match its destination broker's
    /// consumers of it: one route with the OR of their selectors (a conduit), or for a queue
    /// without `conduit_subscriptions`, one per consumer.
    async fn follow_demand(
        &mut self,
        h: usize,
        destination: &DestinationName,
    ) -> Result<(), ClientError> {
        let conduit = self.bridge.conduit || destination.kind() == crate::message::Kind::Topic;
        let followed = self.followed(h, destination);
        let want = self.halves[h].wanted_routes(destination, &followed, conduit);
        let current = self.halves[h]
            .demand_routes
            .get(destination)
            .cloned()
            .unwrap_or_default();
        // New subscriptions first, then the old ones end: nothing published meanwhile is
        // missed (a message both take is forwarded twice with one id, which the destination's
        // duplicate filter drops).
        let mut routes = HashMap::new();
        let mut ended = Vec::new();
        for (key, spec) in &want {
            let now = current.get(key);
            let same = now
                .and_then(|id| self.halves[h].routes.get(id))
                .is_some_and(|r| r.spec.as_ref() == Some(spec));
            match (same, now) {
                (true, Some(id)) => {
                    routes.insert(key.clone(), id.clone());
                }
                _ => {
                    let id = self
                        .open_route(h, destination, Some(spec.clone()), false)
                        .await?;
                    routes.insert(key.clone(), id);
                    ended.extend(now.cloned());
                }
            }
        }
        ended.extend(
            current
                .iter()
                .filter(|(key, _)| !want.contains_key(*key))
                .map(|(_, id)| id.clone()),
        );
        match routes.is_empty() {
            true => self.halves[h].demand_routes.remove(destination),
            false => self.halves[h]
                .demand_routes
                .insert(destination.clone(), routes),
        };
        let changed = !want.is_empty() || !ended.is_empty();
        self.end_routes(h, ended).await?;
        if changed {
            self.report_routes(h);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half() -> Half {
        Half::new("a".into(), Some("b".into()), false)
    }

    /// The routes `h`'s demand for `q` needs, every consumer followed.
    fn wanted(h: &Half, q: &DestinationName, conduit: bool) -> HashMap<String, RouteSpec> {
        let consumers: Vec<(String, PeerConsumer)> = h
            .demand
            .get(q)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        h.wanted_routes(q, &consumers, conduit)
    }

    fn consumer(selector: Option<&str>, hops: usize) -> PeerConsumer {
        PeerConsumer {
            selector: selector.map(str::to_string),
            hops,
            path: None,
            durable: false,
        }
    }

    #[test]
    fn a_consumer_removed_before_its_replayed_addition_makes_no_demand() {
        let q = DestinationName::parse("/queue/q").unwrap();
        let mut h = half();
        // The live removal overtook the replayed addition.
        assert!(!h.consumer_removed(&q, "7:1"));
        assert!(!h.consumer_added(&q, "7:1".into(), consumer(None, 0)));
        assert!(wanted(&h, &q, true).is_empty());
        // Others are followed as usual.
        assert!(h.consumer_added(&q, "7:2".into(), consumer(None, 0)));
        assert_eq!(wanted(&h, &q, true).len(), 1);
        assert!(h.consumer_removed(&q, "7:2"));
        assert!(wanted(&h, &q, true).is_empty());
        // What is remembered is bounded.
        for n in 0..GONE_REMEMBERED + 10 {
            h.consumer_removed(&q, &format!("9:{n}"));
        }
        assert_eq!(h.gone.0.len(), GONE_REMEMBERED);
    }

    #[test]
    fn a_replay_route_stands_only_for_the_peers_own_consumers_while_none_is_here() {
        let q = DestinationName::parse("/queue/q").unwrap();
        let mut h = half();
        let mut routed = consumer(None, 1);
        routed.path = Some("d".into());
        let beyond = vec![("1:1".to_string(), routed)];
        assert_eq!(
            h.replay_spec(&q, &beyond),
            None,
            "a route towards d is no consumer"
        );
        let own = vec![("1:2".to_string(), consumer(Some("n > 1"), 0))];
        let spec = h.replay_spec(&q, &own).expect("the peer's own consumer");
        assert_eq!(spec.selector.as_deref(), Some("n > 1"));
        h.local
            .entry(DestinationName::parse("/queue/>").unwrap())
            .or_default()
            .insert("9:9".into());
        assert_eq!(
            h.replay_spec(&q, &own),
            None,
            "a consumer here (a wildcard one)"
        );
    }

    #[test]
    fn a_local_consumer_removed_before_its_replayed_addition_does_not_count() {
        let q = DestinationName::parse("/queue/q").unwrap();
        let mut h = half();
        assert!(!h.local_consumer_removed(&q, "3:1"));
        assert!(!h.local_consumer_added(&q, "3:1".into()));
        assert!(h.local.is_empty());
        assert!(h.local_consumer_added(&q, "3:2".into()));
        assert!(h.local_consumer_removed(&q, "3:2"));
        assert!(h.local.is_empty());
    }

    #[test]
    fn a_consumer_is_of_the_last_broker_its_path_names() {
        let q = DestinationName::parse("/queue/q").unwrap();
        let mut h = half();
        h.consumer_added(&q, "1:1".into(), consumer(None, 0));
        let mut far = consumer(None, 2);
        far.path = Some("c,d".into());
        h.consumer_added(&q, "1:2".into(), far);
        let mut near_d = consumer(None, 1);
        near_d.path = Some("d".into());
        h.consumer_added(&q, "1:3".into(), near_d);
        let held = h.origins_of(&q);
        assert_eq!(held.get("b"), Some(&0), "the destination broker's own");
        assert_eq!(held.get("d"), Some(&1), "the fewest hops to d");
        assert_eq!(held.len(), 2);
    }

    #[test]
    fn without_a_conduit_each_peer_consumer_gets_its_route() {
        let q = DestinationName::parse("/queue/q").unwrap();
        let mut h = half();
        h.consumer_added(&q, "1:1".into(), consumer(Some("n < 5"), 0));
        h.consumer_added(&q, "1:2".into(), consumer(None, 1));
        let conduit = wanted(&h, &q, true);
        assert_eq!(conduit.len(), 1);
        assert_eq!(conduit[""].selector, None);
        assert_eq!(conduit[""].hops, 0);
        let each = wanted(&h, &q, false);
        assert_eq!(each.len(), 2);
        assert_eq!(each["1:1"].selector.as_deref(), Some("n < 5"));
        assert_eq!(each["1:2"].hops, 1);
    }

    #[test]
    fn durable_subscriptions_get_one_durable_route_per_selector_and_cover_the_others() {
        let t = DestinationName::parse("/topic/t").unwrap();
        let mut h = half();
        let durable = |selector: Option<&str>| PeerConsumer {
            durable: true,
            ..consumer(selector, 0)
        };
        h.consumer_added(&t, "durable:r:1".into(), durable(None));
        h.consumer_added(&t, "durable:r:2".into(), durable(None));
        h.consumer_added(&t, "durable:r:3".into(), durable(Some("n > 1")));
        // Taken by the selector-less durable route already: no conduit for it.
        h.consumer_added(&t, "5:1".into(), consumer(Some("n = 7"), 0));
        let routes = wanted(&h, &t, true);
        assert_eq!(routes.len(), 2, "{routes:?}");
        let names: Vec<&str> = routes
            .values()
            .map(|r| r.durable.as_deref().expect("durable routes"))
            .collect();
        assert!(names.iter().all(|n| n.starts_with("b.")), "{names:?}");
        assert_ne!(names[0], names[1]);
        // The same in every link: the name depends on what the route takes, nothing else.
        let again = wanted(&h, &t, true);
        assert_eq!(routes, again);
        // Without the selector-less ones, the other consumer needs a conduit of its own.
        h.consumer_removed(&t, "durable:r:1");
        h.consumer_removed(&t, "durable:r:2");
        let routes = wanted(&h, &t, true);
        assert_eq!(routes.len(), 2, "{routes:?}");
        assert_eq!(routes[""].selector.as_deref(), Some("n = 7"));
        assert_eq!(routes[""].durable, None);
    }

    #[test]
    fn the_demand_selector_takes_what_any_consumer_takes() {
        assert_eq!(either_selector([None, Some("a = 1")].into_iter()), None);
        assert_eq!(either_selector(std::iter::empty()), None);
        assert_eq!(
            either_selector([Some("b = 2"), Some("a = 1"), Some("b = 2")].into_iter()),
            Some("(a = 1) OR (b = 2)".to_string())
        );
        assert_eq!(
            either_selector([Some("a = 1")].into_iter()),
            Some("a = 1".to_string())
        );
    }
}
