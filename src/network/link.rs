//! One link of a bridge: each direction (here → peer, and peer → here for a duplex bridge)
//! a [`Link`] with its two connections (to its source and to its destination), the routes
//! that feed it, and the pipeline of forwarded SENDs awaiting their RECEIPTs (see the module
//! doc of `network`); the directions run side by side. The demand the routes follow is in
//! `demand.rs`; durable routes' names and upkeep in `durable.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use log::{info, warn};

mod demand;
pub(super) mod durable;

use demand::{Gone, PeerConsumer, RouteSpec};
use durable::Replays;

use super::origins::Origins;
use super::status::RouteStatus;
use super::uri::NetworkUri;
use super::{forwarded, Bridge};
use crate::client::{
    AckMode, BrokerUri, Client, ClientError, ConnectOptions, Delivery, SubscribeOptions,
};
use crate::codec::{Command, Frame};
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

/// Forwarded SENDs ask for a RECEIPT at least this often (receipts are cumulative), and
/// always the last of what was buffered when the bridge waits: a RECEIPT per SEND doubled the
/// frames of a forwarded message. With the default `prefetch` of 1,000, four batches are in
/// flight at once (64 with 1,000 forwarded no faster than 100 did; 256 did: docs/network.md,
/// Throughput).
const RECEIPT_EVERY: usize = 256;

/// The receipt of an [`InFlight`] SEND not yet covered by one (the last SEND is held back until
/// the bridge knows whether it ends a batch).
const UNSEALED: u64 = u64::MAX;

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

/// The connections of a [`Link`]: to its half's source broker, and to its destination
/// broker. The forward half's source is this broker's own listener and its destination the
/// peer; a duplex bridge's reverse half has two of its own, the other way round, and a task
/// of its own: what one half writes (SENDs to its destination, ACKs to its source) never
/// waits behind the other's, so a broker holding one direction back by flow control (it stops
/// reading that connection) does not hold up the other.
const SOURCE: usize = 0;
const DESTINATION: usize = 1;

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
    /// The replays of consumers awaited before stale durable routes are deleted.
    replays: Replays,
    /// This bridge's durable subscriptions on `src` (its durable routes, and those of earlier
    /// links), by name: their topics.
    own_durables: HashMap<String, DestinationName>,
    /// The last forwarded SEND, not written yet: it gets the receipt if it ends a batch.
    held: Option<Frame>,
    /// SENDs since the last one with a receipt.
    unsealed: usize,
    in_flight: VecDeque<InFlight>,
    /// The destination broker answered a SEND with an ERROR (not a transport failure): it
    /// refused the first forwarded message it has not receipted.
    refused: bool,
    /// A duplex bridge's reverse half (peer → here).
    reverse: bool,
}

impl Half {
    fn new(src_name: String, dst_name: Option<String>, reverse: bool) -> Half {
        let (src, dst) = (SOURCE, DESTINATION);
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
            replays: Replays::default(),
            own_durables: HashMap::new(),
            held: None,
            unsealed: 0,
            in_flight: VecDeque::new(),
            refused: false,
            reverse,
        }
    }

    /// The routes, for the status; `client` is the client id of durable routes.
    fn route_status(&self, client: Option<&str>) -> Vec<RouteStatus> {
        let mut v: Vec<RouteStatus> = self
            .routes
            .values()
            .map(|r| RouteStatus {
                destination: r.destination.to_string(),
                kind: match (r.fixed, r.replay) {
                    (true, _) => "static",
                    (false, true) => "replay",
                    _ if r.spec.as_ref().is_some_and(|s| s.durable.is_some()) => "durable",
                    (false, false) => "demand",
                }
                .into(),
                selector: r.spec.as_ref().and_then(|s| s.selector.clone()),
                subscription: r
                    .spec
                    .as_ref()
                    .and_then(|s| s.durable.as_ref())
                    .map(|name| format!("{}:{name}", client.unwrap_or(""))),
            })
            .collect();
        v.sort_by(|a, b| a.destination.cmp(&b.destination));
        v
    }
}

/// One direction of a link: its connections and the half that uses them.
struct Link<'a> {
    bridge: &'a Bridge,
    /// What every bridge of this broker reaches, for `suppress_duplicate_queue_subscriptions`.
    origins: &'a Origins,
    /// Indexed by [`SOURCE`] and [`DESTINATION`].
    clients: Vec<Client>,
    /// Its one half (the methods name it by index, `h`, always 0).
    halves: Vec<Half>,
    /// The `client-id` of the halves' source connections when routes may be durable
    /// subscriptions (demand, not `dynamic_only`): the same in every link of the bridge.
    durable_client: Option<String>,
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
    // Durable routes hang off a client id of the bridge's own, on both brokers: the same in
    // every link (a connector names several peers; a pair's brokers share a name). A peer
    // that does not say its name gets none (nor replays that end with a marker).
    let durable_client = peer_name
        .as_ref()
        .filter(|_| bridge.demand.is_some() && !bridge.dynamic_only)
        .map(|peer| durable::durable_route_client(&bridge.broker_name, &bridge.connector, peer));
    let local_uri = BrokerUri {
        addrs: vec![bridge.local.to_string()],
        failover: None,
    };
    // Its routes are subscriptions of its connections here, as many as the peer has demand
    // for: this broker's secret lifts the per-client subscription limit from them.
    let local_options = ConnectOptions {
        write_timeout: bridge.write_timeout,
        bridge_token: bridge.status.token().map(str::to_string),
        ..ConnectOptions::default()
    };
    let source_options = |o: &ConnectOptions| ConnectOptions {
        client_id: durable_client.clone(),
        ..o.clone()
    };
    let here = Client::connect(&local_uri, source_options(&local_options)).await?;
    let mut links = vec![Link {
        bridge,
        origins,
        clients: vec![here, remote],
        halves: vec![Half::new(
            bridge.broker_name.clone(),
            peer_name.clone(),
            false,
        )],
        durable_client: durable_client.clone(),
    }];
    if bridge.duplex {
        // The reverse half's own connections. Its peer may be another broker of a pair than
        // the forward half's, if the pair failed over in between: each half stands alone.
        let remote_out = Client::connect(&peer_uri, source_options(&remote_options))
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
        links.push(Link {
            bridge,
            origins,
            clients: vec![remote_out, here_in],
            halves: vec![Half::new(src_name, Some(bridge.broker_name.clone()), true)],
            durable_client,
        });
    }
    for link in &mut links {
        link.subscribe().await?;
    }
    *linked = true;
    let status = |l: &Link| l.halves[0].route_status(l.durable_client.as_deref());
    let routes = status(&links[0]);
    let reverse = links.get(1).map(status);
    bridge.report(|s| {
        s.state = "linked".into();
        s.peer_name = peer_name.clone();
        s.linked_since = Some(crate::clock::now_ms());
        s.links += 1;
        s.routes = routes;
        s.reverse_routes = reverse;
    });
    info!(
        "network {}: linked to {} ({}); forwarding {} destination(s) statically{}{}",
        bridge.connector,
        bridge.peer,
        peer_name
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
    // Each direction in a task of its own (one waiting to write does not hold up the
    // other); the first failure ends both.
    let result = match &mut links[..] {
        [forward] => forward.pump().await,
        [forward, reverse] => tokio::select! {
            r = forward.pump() => r,
            r = reverse.pump() => r,
        },
        _ => Err(ClientError::Protocol(
            "a link has one half, or two when duplex".into(),
        )),
    };
    // Its demand goes with the link: other bridges no longer defer to it.
    origins.clear(bridge.index);
    // The ACKs of what the other side already has may still sit in a client's buffer:
    // written before the link is given up, or those messages are forwarded twice.
    for link in &mut links {
        link.settle(0).await.ok();
        if link.halves[0].refused {
            link.nack_refused(0).await;
        }
    }
    // A connection dropped with MESSAGEs unread is reset, and a reset can discard the ACKs
    // the broker has not read yet: DISCONNECT instead, and wait (briefly) for its RECEIPT,
    // which comes once every earlier frame took effect.
    for c in links.into_iter().flat_map(|l| l.clients) {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.disconnect()).await;
    }
    result
}

/// SUBSCRIBE options for consumer advisories; with `replay_end`, asking for the `replay-end`
/// marker after the replayed consumers.
fn replay_marked(replay_end: bool) -> SubscribeOptions {
    let mut options = SubscribeOptions::default();
    if replay_end {
        options
            .headers
            .push(("stompbox-replay-end".to_string(), "true".to_string()));
    }
    options
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
    /// Makes the half's subscriptions: its static routes on the source; with demand, the
    /// destination broker's consumer advisories, and those of the source it needs (this
    /// bridge's durable subscriptions; its own consumers for `replay_when_no_consumers`).
    async fn subscribe(&mut self) -> Result<(), ClientError> {
        let bridge = self.bridge;
        for destination in &bridge.statics {
            self.open_route(0, destination, None, false).await?;
        }
        if bridge.demand.is_none() {
            return Ok(());
        }
        let durables = self.durable_client.is_some();
        for (advisories, replay_end) in [
            ("/topic/ActiveMQ.Advisory.Consumer.Queue.>", false),
            ("/topic/ActiveMQ.Advisory.Consumer.Topic.>", durables),
        ] {
            let id = self.clients[DESTINATION]
                .subscribe(advisories, &replay_marked(replay_end))
                .await?;
            if replay_end {
                self.halves[0].replays.expect(DESTINATION, id.clone());
            }
            self.halves[0].advisories.push(id);
        }
        if durables {
            // This bridge's durable subscriptions there: those no route uses are deleted
            // once both replays are in.
            let id = self.clients[SOURCE]
                .subscribe(
                    "/topic/ActiveMQ.Advisory.Consumer.Topic.>",
                    &replay_marked(true),
                )
                .await?;
            self.halves[0].replays.expect(SOURCE, id.clone());
            self.halves[0].local_advisories.push(id);
        }
        if bridge.replay {
            let id = self.clients[SOURCE]
                .subscribe(
                    "/topic/ActiveMQ.Advisory.Consumer.Queue.>",
                    &SubscribeOptions::default(),
                )
                .await?;
            self.halves[0].local_advisories.push(id);
        }
        Ok(())
    }

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
                [source, destination] => tokio::select! {
                    m = source.next() => (SOURCE, m),
                    m = destination.next() => (DESTINATION, m),
                    _ = origins => continue,
                },
                _ => {
                    return Err(ClientError::Protocol(
                        "a link half has two connections".into(),
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
        if done > 0 && !half.reverse {
            let in_flight = half.in_flight.len() as u64;
            self.bridge.report(|s| {
                s.forwarded += done;
                s.in_flight = in_flight;
            });
        }
        if done > 0 && half.reverse {
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
            self.bridge.careful[usize::from(half.reverse)]
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
        let mut delivery = delivery;
        let message = std::mem::replace(&mut delivery.frame, Frame::new(Command::Message));
        let (send, kept) = forwarded(message, &half.src_name, replayed);
        delivery.frame = kept;
        half.in_flight.push_back(InFlight {
            receipt: UNSEALED,
            delivery,
            ack,
        });
        // Counted here only when the pipeline starts to fill; `settle` keeps it current.
        if !half.reverse && half.in_flight.len() == 1 {
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
        let careful = &self.bridge.careful[usize::from(half.reverse)];
        let one_by_one = careful.get() > 0;
        if one_by_one {
            careful.set(careful.get() - 1);
        }
        if half.unsealed >= RECEIPT_EVERY || one_by_one {
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
            let route = self.halves[h].routes.remove(old);
            let src = self.halves[h].src;
            // A durable route's subscription is deleted with it: the durable subscriptions it
            // stood for are gone.
            let durable = route.and_then(|r| r.spec?.durable);
            let headers: Vec<(String, String)> = durable
                .iter()
                .map(|name| ("activemq.subscriptionName".to_string(), name.clone()))
                .collect();
            self.clients[src].unsubscribe_with(old, &headers).await?;
            if let Some(name) = durable {
                self.halves[h].own_durables.remove(&name);
            }
        }
        Ok(())
    }

    /// Publishes half `h`'s routes in its status.
    fn report_routes(&self, h: usize) {
        let routes = self.halves[h].route_status(self.durable_client.as_deref());
        self.bridge.report(|s| match self.halves[h].reverse {
            false => s.routes = routes,
            true => s.reverse_routes = Some(routes),
        });
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
            if let Some(name) = &spec.durable {
                headers.push(("activemq.subscriptionName".to_string(), name.clone()));
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
}
