//! One link of a bridge: its connections (this broker's listener and the peer; two more for a
//! duplex bridge), the halves that use them (here → peer, and peer → here for a duplex bridge), the routes that
//! feed each half, the demand it follows from consumer advisories, and the pipeline of
//! forwarded SENDs awaiting their RECEIPTs (see the module doc of `network`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use log::{info, warn};

use super::origins::Origins;
use super::status::RouteStatus;
use super::uri::NetworkUri;
use super::{forwarded, Bridge};
use crate::client::{
    AckMode, BrokerUri, Client, ClientError, ConnectOptions, Delivery, SubscribeOptions,
};
use crate::codec::Frame;
use crate::message::network::{
    forward_selector, path_holds, path_len, replay_selector, BROKER_PATH,
};
use crate::message::DestinationName;

/// A subscription on a half's source broker that feeds it.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    destination: DestinationName,
    /// Statically included: held for the whole link.
    fixed: bool,
    /// What it was subscribed with (demand routes are replaced when this changes).
    spec: Option<RouteSpec>,
    /// A replay route (`replay_when_no_consumers`): it takes the messages that came from the
    /// destination broker, and sends them back.
    replay: bool,
}

/// How a demand route subscribes: the consumers' selector (their OR; None: all messages),
/// the hops beyond the destination broker of the nearest of them, and the path it stands for.
#[derive(Debug, Clone, PartialEq)]
struct RouteSpec {
    selector: Option<String>,
    hops: usize,
    path: String,
}

/// One consumer of the destination broker's, as its advisory describes it.
#[derive(Debug, Clone)]
struct PeerConsumer {
    selector: Option<String>,
    /// Brokers beyond the destination broker it stands for (0: one of its own consumers).
    hops: usize,
    path: Option<String>,
}

/// Forwarded SENDs ask for a RECEIPT at least this often (receipts are cumulative), and
/// always the last of what was buffered when the bridge waits: a RECEIPT per SEND doubled the
/// frames of a forwarded message.
const RECEIPT_EVERY: usize = 64;

/// The receipt of an [`InFlight`] SEND not yet covered by one (the last SEND is held back until
/// the bridge knows whether it ends a batch).
const UNSEALED: u64 = u64::MAX;

/// Consumers whose removal came before their (replayed) addition, by destination and id: the
/// last [`GONE_REMEMBERED`] of them (see `Half::consumer_removed`).
#[derive(Debug, Default)]
struct Gone(VecDeque<(DestinationName, String)>);

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

/// A forwarded SEND awaiting the destination broker's RECEIPT.
#[derive(Debug)]
struct InFlight {
    /// The receipt that covers it ([`UNSEALED`] until one does).
    receipt: u64,
    delivery: Delivery,
    /// ACK it at the source once receipted (false: its subscription has ended, and the
    /// message was taken back by the source or, for a topic, is gone with it).
    ack: bool,
}

/// Consumer removals remembered per half before their additions (a replay's worth).
const GONE_REMEMBERED: usize = 4096;

/// The connections of a link: the forward half's, from this broker's own listener to the
/// peer, and a duplex bridge's reverse half's, from the peer to this broker's listener.
/// Each half has two of its own: what one half writes (SENDs to its destination, ACKs to its
/// source) never waits behind the other's, so a broker holding one direction back by flow
/// control (it stops reading that connection) does not hold up the other.
const HERE: usize = 0;
const REMOTE: usize = 1;
const REMOTE_OUT: usize = 2;
const HERE_IN: usize = 3;

/// One direction of a link: from the broker on connection `src` to the one on `dst`. A
/// bridge has the forward half (here → peer); a duplex bridge also the reverse one.
#[derive(Debug)]
struct Half {
    src: usize,
    dst: usize,
    /// The source broker's name: forwarded messages' paths end with it.
    src_name: String,
    /// The destination broker's name: messages that passed through it are not sent there.
    dst_name: Option<String>,
    /// Live routes (subscriptions on `src`) by subscription id.
    routes: HashMap<String, Route>,
    /// The demand routes of each destination: subscription id by route key (one route with
    /// key "" for a conduit; one per peer consumer, keyed by its id, without).
    demand_routes: HashMap<DestinationName, HashMap<String, String>>,
    /// Consumers whose removal came before their addition (see [`Half::consumer_removed`]).
    gone: Gone,
    /// With `replay_when_no_consumers`: subscriptions on `src` to its queue consumer
    /// advisories, the source's own consumers per destination (not bridges'), and the replay
    /// route of each queue that has one.
    local_advisories: Vec<String>,
    local: HashMap<DestinationName, HashSet<String>>,
    /// Removals of the source's own consumers that came before their additions.
    local_gone: Gone,
    replay_routes: HashMap<DestinationName, String>,
    /// The destination broker's consumers per destination, by consumer id.
    demand: HashMap<DestinationName, HashMap<String, PeerConsumer>>,
    /// Subscriptions on `dst` to its consumer advisories.
    advisories: Vec<String>,
    /// The last forwarded SEND, not written yet: it gets the receipt if it ends a batch.
    held: Option<Frame>,
    /// SENDs since the last one with a receipt.
    unsealed: usize,
    in_flight: VecDeque<InFlight>,
    /// The destination broker answered a SEND with an ERROR (not a transport failure): it
    /// refused the first forwarded message it has not receipted.
    refused: bool,
}

impl Half {
    fn new(src: usize, dst: usize, src_name: String, dst_name: Option<String>) -> Half {
        Half {
            src,
            dst,
            src_name,
            dst_name,
            routes: HashMap::new(),
            demand_routes: HashMap::new(),
            gone: Gone::default(),
            local_advisories: Vec::new(),
            local: HashMap::new(),
            local_gone: Gone::default(),
            replay_routes: HashMap::new(),
            demand: HashMap::new(),
            advisories: Vec::new(),
            held: None,
            unsealed: 0,
            in_flight: VecDeque::new(),
            refused: false,
        }
    }

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
        self.wanted_routes(&own, true).into_values().next()
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

    /// The demand routes that `consumers` (of one destination) need, by route key (see
    /// `demand_routes`).
    fn wanted_routes(
        &self,
        consumers: &[(String, PeerConsumer)],
        conduit: bool,
    ) -> HashMap<String, RouteSpec> {
        if consumers.is_empty() {
            return HashMap::new();
        }
        let dst = self.dst_name.as_deref().unwrap_or("peer");
        let path_of = |c: Option<&PeerConsumer>| match c.and_then(|c| c.path.as_deref()) {
            Some(p) => format!("{dst},{p}"),
            None => dst.to_string(),
        };
        if !conduit {
            return consumers
                .iter()
                .map(|(id, c)| {
                    let spec = RouteSpec {
                        selector: c.selector.clone(),
                        hops: c.hops,
                        path: path_of(Some(c)),
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
        };
        HashMap::from([(String::new(), spec)])
    }

    /// The routes, for the status.
    fn route_status(&self) -> Vec<RouteStatus> {
        let mut v: Vec<RouteStatus> = self
            .routes
            .values()
            .map(|r| RouteStatus {
                destination: r.destination.to_string(),
                kind: match (r.fixed, r.replay) {
                    (true, _) => "static",
                    (false, false) => "demand",
                    (false, true) => "replay",
                }
                .into(),
                selector: r.spec.as_ref().and_then(|s| s.selector.clone()),
            })
            .collect();
        v.sort_by(|a, b| a.destination.cmp(&b.destination));
        v
    }
}

/// One link's state: its connections and the halves that use them.
struct Link<'a> {
    bridge: &'a Bridge,
    /// What every bridge of this broker reaches, for `suppress_duplicate_queue_subscriptions`.
    origins: &'a Origins,
    /// Indexed by [`HERE`], [`REMOTE`] (and for a duplex bridge [`REMOTE_OUT`], [`HERE_IN`]).
    clients: Vec<Client>,
    peer_name: Option<String>,
    halves: Vec<Half>,
}

/// Links to the peer and to this broker, then forwards until something fails. `linked`
/// turns true once the connections and the subscriptions are up.
pub(super) async fn forward(
    bridge: &Bridge,
    origins: &Origins,
    linked: &mut bool,
) -> Result<std::convert::Infallible, ClientError> {
    let remote_options = ConnectOptions {
        login: bridge.login.clone(),
        passcode: bridge.passcode.clone(),
        connect_timeout: Duration::from_secs(10),
        heart_beat: (bridge.heart_beat, bridge.heart_beat),
        write_timeout: bridge.write_timeout,
        ..ConnectOptions::default()
    };
    // One pass over the peer's list finds whichever broker serves; after that a failure must
    // end the link (a silent reconnect would lose the unreceipted SENDs, and a receipt of
    // the new connection would then be taken for theirs).
    let peer_uri = NetworkUri::one_pass(&bridge.peer);
    let remote = Client::connect(&peer_uri, remote_options.clone())
        .await?
        .without_failover();
    let peer_name = peer_name_of(bridge, &remote)?;
    let local_uri = BrokerUri {
        addrs: vec![bridge.local.to_string()],
        failover: None,
    };
    let local_options = ConnectOptions {
        write_timeout: bridge.write_timeout,
        ..ConnectOptions::default()
    };
    let here = Client::connect(&local_uri, local_options.clone()).await?;
    let mut halves = vec![Half::new(
        HERE,
        REMOTE,
        bridge.broker_name.clone(),
        peer_name.clone(),
    )];
    let mut clients = vec![here, remote];
    if bridge.duplex {
        // The reverse half's own connections. Its peer may be another broker of a pair than
        // the forward half's, if the pair failed over in between: each half stands alone.
        let remote_out = Client::connect(&peer_uri, remote_options)
            .await?
            .without_failover();
        let Some(src_name) = peer_name_of(bridge, &remote_out)? else {
            return Err(ClientError::Protocol(
                "duplex needs a stompbox peer (its CONNECTED names it), to keep messages \
                 from looping back"
                    .into(),
            ));
        };
        let here_in = Client::connect(&local_uri, local_options).await?;
        clients.push(remote_out);
        clients.push(here_in);
        halves.push(Half::new(
            REMOTE_OUT,
            HERE_IN,
            src_name,
            Some(bridge.broker_name.clone()),
        ));
    }
    let mut link = Link {
        bridge,
        origins,
        clients,
        peer_name,
        halves,
    };
    for h in 0..link.halves.len() {
        for destination in &bridge.statics {
            link.open_route(h, destination, None, false).await?;
        }
        if bridge.demand.is_some() {
            let dst = link.halves[h].dst;
            for advisories in [
                "/topic/ActiveMQ.Advisory.Consumer.Queue.>",
                "/topic/ActiveMQ.Advisory.Consumer.Topic.>",
            ] {
                let id = link.clients[dst]
                    .subscribe(advisories, &SubscribeOptions::default())
                    .await?;
                link.halves[h].advisories.push(id);
            }
            if bridge.replay {
                let src = link.halves[h].src;
                let id = link.clients[src]
                    .subscribe(
                        "/topic/ActiveMQ.Advisory.Consumer.Queue.>",
                        &SubscribeOptions::default(),
                    )
                    .await?;
                link.halves[h].local_advisories.push(id);
            }
        }
    }
    *linked = true;
    let peer_name = link.peer_name.clone();
    let routes = link.halves[0].route_status();
    let reverse = link.halves.get(1).map(Half::route_status);
    bridge.report(|s| {
        s.state = "linked".into();
        s.peer_name = peer_name;
        s.linked_since = Some(crate::clock::now_ms());
        s.links += 1;
        s.routes = routes;
        s.reverse_routes = reverse;
    });
    info!(
        "network {}: linked to {} ({}); forwarding {} destination(s) statically{}{}",
        bridge.connector,
        bridge.peer,
        link.peer_name
            .as_deref()
            .unwrap_or("a broker that does not say its name"),
        bridge.statics.len(),
        if bridge.demand.is_some() {
            " and the others by demand"
        } else {
            ""
        },
        if bridge.duplex { ", both ways" } else { "" }
    );
    let result = link.pump().await;
    // Its demand goes with the link: other bridges no longer defer to it.
    origins.clear(bridge.index);
    // The ACKs of what the other side already has may still sit in a client's buffer:
    // written before the link is given up, or those messages are forwarded twice.
    for h in 0..link.halves.len() {
        link.settle(h).await.ok();
        if link.halves[h].refused {
            link.nack_refused(h).await;
        }
    }
    // A connection dropped with MESSAGEs unread is reset, and a reset can discard the ACKs
    // the broker has not read yet: DISCONNECT instead, and wait (briefly) for its RECEIPT,
    // which comes once every earlier frame took effect.
    for c in link.clients {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.disconnect()).await;
    }
    result
}

/// The name the peer on `client` gave in CONNECTED, which must not be this broker's.
fn peer_name_of(bridge: &Bridge, client: &Client) -> Result<Option<String>, ClientError> {
    let name = client.broker_name().map(str::to_string);
    if name.as_deref() == Some(bridge.broker_name.as_str()) {
        return Err(ClientError::Protocol(format!(
            "the peer is named {:?} too: broker names must be unique in a network",
            bridge.broker_name
        )));
    }
    Ok(name)
}

impl Link<'_> {
    /// Forwards deliveries and follows demand until a connection fails. Every connection is
    /// always read (a half's source carries its deliveries, its destination its receipts and
    /// advisories); what is in flight is bounded by the routes' prefetch.
    async fn pump(&mut self) -> Result<std::convert::Infallible, ClientError> {
        let mut origins_seen = self.origins.version();
        let mut turn = 0usize;
        loop {
            // Registered before the version is read: a change while this bridge waits
            // elsewhere (a write) is seen at the next turn, one while it selects wakes it.
            let origins_changed = self.origins.changed();
            tokio::pin!(origins_changed);
            origins_changed.as_mut().enable();
            if self.origins.version() != origins_seen {
                origins_seen = self.origins.version();
                self.follow_origins().await?;
            }
            for h in 0..self.halves.len() {
                self.settle(h).await?;
            }
            // What is already buffered on either connection first, without I/O: the SENDs
            // and ACKs it causes then leave in one write, not one per message.
            // Each turn starts on another connection: one with a deep buffer does not keep
            // the others' receipts and advisories waiting.
            let mut handled = 0;
            turn = turn.wrapping_add(1);
            let n = self.clients.len();
            for side in (0..n).map(|i| (i + turn) % n) {
                while handled < 1024 {
                    let frame = match self.clients[side].next_buffered().await {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => return Err(self.failed(side, e)),
                    };
                    handled += 1;
                    if let Some(d) = frame {
                        self.on_message(side, d).await?;
                    }
                }
            }
            if handled > 0 {
                continue;
            }
            // Nothing more buffered: the last SENDs get their receipt before the wait.
            for h in 0..self.halves.len() {
                self.seal(h).await?;
            }
            // Another bridge's demand may change what this one suppresses.
            let suppress = self.bridge.suppress;
            let origins = async {
                match suppress {
                    true => origins_changed.await,
                    false => std::future::pending().await,
                }
            };
            let (side, frame) = match &mut self.clients[..] {
                [here, remote] => tokio::select! {
                    m = here.next() => (HERE, m),
                    m = remote.next() => (REMOTE, m),
                    _ = origins => continue,
                },
                [here, remote, remote_out, here_in] => tokio::select! {
                    m = here.next() => (HERE, m),
                    m = remote.next() => (REMOTE, m),
                    m = remote_out.next() => (REMOTE_OUT, m),
                    m = here_in.next() => (HERE_IN, m),
                    _ = origins => continue,
                },
                _ => {
                    return Err(ClientError::Protocol(
                        "a link has two connections, or four when duplex".into(),
                    ))
                }
            };
            let frame = frame.map_err(|e| self.failed(side, e))?;
            if let Some(d) = frame {
                self.on_message(side, d).await?;
            }
        }
    }

    /// Notes a failure of connection `side`: an ERROR that refuses a message answers a SEND
    /// of the half that sends to that side ([`refuses_message`]).
    fn failed(&mut self, side: usize, e: ClientError) -> ClientError {
        if refuses_message(&e) {
            if let Some(h) = self.halves.iter_mut().find(|h| h.dst == side) {
                h.refused = true;
            }
        }
        e
    }

    /// A MESSAGE read on connection `side`: an advisory for the half that sends there, or a
    /// delivery for the half that takes from there.
    async fn on_message(&mut self, side: usize, d: Delivery) -> Result<(), ClientError> {
        let sub = d.get("subscription").unwrap_or_default().to_string();
        if let Some(h) = self
            .halves
            .iter()
            .position(|h| h.dst == side && h.advisories.contains(&sub))
        {
            return self.on_advisory(h, &d).await;
        }
        if let Some(h) = self
            .halves
            .iter()
            .position(|h| h.src == side && h.local_advisories.contains(&sub))
        {
            return self.on_local_advisory(h, &d).await;
        }
        match self.halves.iter().position(|h| h.src == side) {
            Some(h) => self.forward_one(h, d, &sub).await,
            None => Ok(()),
        }
    }

    /// ACKs at half `h`'s source what its destination has receipted.
    async fn settle(&mut self, h: usize) -> Result<(), ClientError> {
        let half = &mut self.halves[h];
        let confirmed = self.clients[half.dst].confirmed();
        let before = half.in_flight.len();
        // Routes are `ack:client`, whose ACK is cumulative: one ACK, of the last message the
        // destination receipted, covers the earlier ones of its route (forwarded in order,
        // receipted in order).
        let mut last: Vec<Delivery> = Vec::new();
        while half
            .in_flight
            .front()
            .is_some_and(|f| f.receipt <= confirmed)
        {
            let Some(f) = half.in_flight.pop_front() else {
                break;
            };
            if f.ack {
                match last
                    .iter_mut()
                    .find(|d| d.get("subscription") == f.delivery.get("subscription"))
                {
                    Some(d) => *d = f.delivery,
                    None => last.push(f.delivery),
                }
            }
        }
        for d in &last {
            self.clients[half.src].ack(d, None).await?;
        }
        let done = (before - half.in_flight.len()) as u64;
        if done > 0 {
            // Written now, not when the source's deliveries happen to pause: an ACK left in
            // the buffer is lost with the connection, and its message forwarded again.
            self.clients[half.src].flush().await?;
        }
        if done > 0 && h == 0 {
            let in_flight = half.in_flight.len() as u64;
            self.bridge.report(|s| {
                s.forwarded += done;
                s.in_flight = in_flight;
            });
        }
        if done > 0 && h == 1 {
            self.bridge.report(|s| s.received += done);
        }
        Ok(())
    }

    /// NACKs at half `h`'s source the message its destination refused (cumulative, but the
    /// earlier ones of its route were receipted and ACKed just before), so that it is
    /// redelivered (to local consumers, or to the bridge again) and, after the destination's
    /// `max_redeliveries`, dead-lettered there instead of holding the bridge up; the others
    /// in flight come back uncounted when the link is dropped.
    async fn nack_refused(&mut self, h: usize) {
        let half = &self.halves[h];
        // The first SEND not receipted is the refused one only if each had its receipt (the
        // destination answers in order, the ERROR after the receipts before it). Otherwise
        // the next link receipts them one by one, and a refusal then names its message.
        let Some(first) = half.in_flight.front() else {
            return;
        };
        let exact = first.receipt != UNSEALED
            && half
                .in_flight
                .get(1)
                .is_none_or(|next| next.receipt != first.receipt);
        if !exact {
            self.bridge
                .careful
                .set(self.bridge.prefetch.max(1) as u64 * 4);
            warn!(
                "network {}: {} refused one of a batch of messages; forwarding one at a time \
                 to find it",
                self.bridge.connector,
                half.dst_name.as_deref().unwrap_or("the peer"),
            );
            return;
        }
        if !first.ack {
            return;
        }
        let f = first;
        warn!(
            "network {}: {} refused message {} of {}; NACKed at {}",
            self.bridge.connector,
            half.dst_name.as_deref().unwrap_or("the peer"),
            f.delivery.get("message-id").unwrap_or("?"),
            f.delivery.get("destination").unwrap_or("?"),
            half.src_name,
        );
        let _ = self.clients[half.src].nack(&f.delivery, None).await;
    }

    /// Forwards a delivery of half `h`'s subscription `sub`.
    async fn forward_one(
        &mut self,
        h: usize,
        delivery: Delivery,
        sub: &str,
    ) -> Result<(), ClientError> {
        let half = &mut self.halves[h];
        let ack = half.routes.contains_key(sub);
        if !ack && is_queue_delivery(&delivery) {
            // Its subscription ended: the source took it back (it is redelivered to whoever
            // consumes the queue now), so it is not forwarded.
            return Ok(());
        }
        let replayed = half.routes.get(sub).is_some_and(|r| r.replay);
        // Kept: what its ACK or NACK, and the logs, need; the rest goes on in the SEND.
        let kept = delivery.slim(&["message-id", "ack", "subscription", "destination"]);
        let send = forwarded(delivery.into_frame(), &half.src_name, replayed);
        half.in_flight.push_back(InFlight {
            receipt: UNSEALED,
            delivery: kept,
            ack,
        });
        // Counted here only when the pipeline starts to fill; `settle` keeps it current.
        if h == 0 && half.in_flight.len() == 1 {
            self.bridge.report(|s| s.in_flight = 1);
        }
        if let Some(previous) = half.held.replace(send) {
            let dst = half.dst;
            if let Err(e) = self.clients[dst].send_unreceipted(previous).await {
                return Err(self.failed(dst, e));
            }
        }
        let half = &mut self.halves[h];
        half.unsealed += 1;
        let careful = self.bridge.careful.get();
        if careful > 0 {
            self.bridge.careful.set(careful - 1);
        }
        if half.unsealed >= RECEIPT_EVERY || careful > 0 {
            self.seal(h).await?;
        }
        Ok(())
    }

    /// Writes half `h`'s held SEND with a receipt, which covers it and every SEND before it.
    async fn seal(&mut self, h: usize) -> Result<(), ClientError> {
        let half = &mut self.halves[h];
        let Some(send) = half.held.take() else {
            return Ok(());
        };
        half.unsealed = 0;
        let dst = half.dst;
        let n = match self.clients[dst].send_numbered(send).await {
            Ok(n) => n,
            Err(e) => return Err(self.failed(dst, e)),
        };
        for f in self.halves[h].in_flight.iter_mut().rev() {
            if f.receipt != UNSEALED {
                break;
            }
            f.receipt = n;
        }
        Ok(())
    }

    /// A consumer advisory from half `h`'s destination broker: its demand changed.
    async fn on_advisory(&mut self, h: usize, m: &Delivery) -> Result<(), ClientError> {
        let Some(filter) = self.bridge.demand.as_ref() else {
            return Ok(());
        };
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(m.body()) else {
            return Ok(());
        };
        let text = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let (Some(event), Some(destination), Some(id)) =
            (text("event"), text("destination"), text("consumer_id"))
        else {
            return Ok(());
        };
        let Ok(destination) = DestinationName::parse(&destination) else {
            return Ok(());
        };
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
                let path = text("broker_path");
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
            if h == 0 && destination.kind() == crate::message::Kind::Queue {
                let held = self.halves[0].origins_of(&destination);
                self.origins.set(self.bridge.index, &destination, &held);
            }
            self.follow_demand(h, &destination).await?;
            self.follow_replay(h, &destination).await?;
        }
        Ok(())
    }

    /// Follows again the forward half's queue demand, which another bridge's demand may now
    /// suppress or no longer suppress (`suppress_duplicate_queue_subscriptions`).
    async fn follow_origins(&mut self) -> Result<(), ClientError> {
        if !self.bridge.suppress {
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
        let suppress =
            self.bridge.suppress && h == 0 && destination.kind() == crate::message::Kind::Queue;
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
    async fn on_local_advisory(&mut self, h: usize, m: &Delivery) -> Result<(), ClientError> {
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(m.body()) else {
            return Ok(());
        };
        let text = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let (Some(event), Some(destination), Some(id)) =
            (text("event"), text("destination"), text("consumer_id"))
        else {
            return Ok(());
        };
        // A bridge's subscription stands for consumers elsewhere, not here.
        if text("broker_path").is_some_and(|p| !p.is_empty()) {
            return Ok(());
        }
        let Ok(destination) = DestinationName::parse(&destination) else {
            return Ok(());
        };
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

    /// Ends routes `ended` of half `h`. What they have in flight is never ACKed: after their
    /// UNSUBSCRIBE the source takes those messages back (they come again, marked, through a
    /// new route or another consumer) and may hand out their ack ids again, which a late ACK
    /// would then settle, or be refused for.
    async fn end_routes(&mut self, h: usize, ended: Vec<String>) -> Result<(), ClientError> {
        if ended.is_empty() {
            return Ok(());
        }
        self.settle(h).await?;
        let half = &mut self.halves[h];
        for f in half.in_flight.iter_mut() {
            if f.delivery
                .get("subscription")
                .is_some_and(|s| ended.iter().any(|old| old == s))
            {
                f.ack = false;
            }
        }
        for old in &ended {
            self.halves[h].routes.remove(old);
            let src = self.halves[h].src;
            self.clients[src].unsubscribe(old).await?;
        }
        Ok(())
    }

    /// Publishes half `h`'s routes in its status.
    fn report_routes(&self, h: usize) {
        let routes = self.halves[h].route_status();
        self.bridge.report(|s| match h {
            0 => s.routes = routes,
            _ => s.reverse_routes = Some(routes),
        });
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
        let want = self.halves[h].wanted_routes(&followed, conduit);
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

    /// Subscribes on half `h`'s source to `destination`: statically (`spec` None) or for
    /// its destination broker's demand.
    async fn open_route(
        &mut self,
        h: usize,
        destination: &DestinationName,
        spec: Option<RouteSpec>,
        replay: bool,
    ) -> Result<String, ClientError> {
        let half = &self.halves[h];
        let hops = spec.as_ref().map_or(0, |s| s.hops);
        // A message goes on for `hops` more past the destination: it may have made fewer.
        let ttl = self.bridge.ttl.saturating_sub(hops as u32).max(1);
        let mut selector = match (replay, half.dst_name.as_deref()) {
            (true, Some(dst)) => replay_selector(dst),
            _ => forward_selector(ttl, half.dst_name.as_deref()),
        };
        let mut headers = Vec::new();
        // The route stands for the destination broker (and those beyond it): the source
        // takes it for a network consumer (a failed link does not count towards
        // dead-lettering), and a bridge the other way ignores it as demand.
        let dst = half.dst_name.as_deref().unwrap_or("peer").to_string();
        let path = spec.as_ref().map_or(dst, |s| s.path.clone());
        headers.push((BROKER_PATH.to_string(), path));
        if let Some(spec) = &spec {
            if let Some(s) = &spec.selector {
                selector = format!("({selector}) AND ({s})");
            }
            if destination.kind() == crate::message::Kind::Queue {
                // The source's own consumers first; with decrease_network_consumer_priority,
                // nearer brokers before farther ones.
                let priority = match self.bridge.decrease_priority {
                    true => -1 - hops.min(100) as i64,
                    false => -1,
                };
                headers.push(("activemq.priority".to_string(), priority.to_string()));
            }
        }
        headers.push(("selector".to_string(), selector));
        let options = SubscribeOptions {
            ack: AckMode::Client,
            prefetch: Some(self.bridge.prefetch),
            headers,
        };
        let src = half.src;
        let id = self.clients[src]
            .subscribe(&destination.to_string(), &options)
            .await?;
        self.halves[h].routes.insert(
            id.clone(),
            Route {
                destination: destination.clone(),
                fixed: spec.is_none(),
                spec,
                replay,
            },
        );
        Ok(id)
    }
}

/// True for an ERROR by which a destination broker refuses the message itself, and would
/// refuse it again: too large or malformed, a destination or header it cannot take, a
/// temporary destination that is gone, a write it does not authorize (stompbox's, ActiveMQ's
/// and RabbitMQ's wording). Such a message is NACKed at the source ([`Link::nack_refused`]).
/// Every other failure is the destination's, not the message's (`store failure` when its
/// disk is full or failing, a limit, shutting down, a transport failure): the link is made
/// again after the back-off and the message waits at the source, for however long that takes.
fn refuses_message(e: &ClientError) -> bool {
    let ClientError::Broker { message, .. } = e else {
        return false;
    };
    if e.is_transport() {
        return false;
    }
    let m = message.to_ascii_lowercase();
    const REFUSALS: &[&str] = &[
        "malformed frame",
        "invalid destination",
        "temporary destination does not exist",
        "wildcard destination not allowed",
        "not authorized",
        "access_refused",
    ];
    REFUSALS.iter().any(|r| m.contains(r)) || (m.starts_with("invalid ") && m.contains(" header"))
}

fn is_queue_delivery(d: &Delivery) -> bool {
    d.get("destination")
        .and_then(|n| DestinationName::parse(n).ok())
        .is_some_and(|n| n.kind() == crate::message::Kind::Queue)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_error_about_the_message_is_a_refusal_of_it() {
        let error = |message: &str| ClientError::Broker {
            message: message.to_string(),
            body: String::new(),
        };
        for refusal in [
            "malformed frame: frame body exceeds max_body_bytes (2048 > 1024)",
            "invalid destination",
            "invalid persistent header \"maybe\"",
            "temporary destination does not exist: /temp-queue/x",
            "User bridge is not authorized to write to: queue://orders",
        ] {
            assert!(refuses_message(&error(refusal)), "{refusal}");
        }
        for failure in [
            "store failure",
            "limit exceeded: max_transaction_frames (10)",
            "broker shutting down",
            "slow consumer",
            "",
        ] {
            assert!(!refuses_message(&error(failure)), "{failure}");
        }
        assert!(!refuses_message(&ClientError::Closed));
    }

    fn half() -> Half {
        Half::new(HERE, REMOTE, "a".into(), Some("b".into()))
    }

    /// The routes `h`'s demand for `q` needs, every consumer followed.
    fn wanted(h: &Half, q: &DestinationName, conduit: bool) -> HashMap<String, RouteSpec> {
        let consumers: Vec<(String, PeerConsumer)> = h
            .demand
            .get(q)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        h.wanted_routes(&consumers, conduit)
    }

    fn consumer(selector: Option<&str>, hops: usize) -> PeerConsumer {
        PeerConsumer {
            selector: selector.map(str::to_string),
            hops,
            path: None,
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
