//! Temporary destinations, the way ActiveMQ's STOMP has them: a connection's first use of
//! `/temp-queue/NAME` or `/temp-topic/NAME` (SUBSCRIBE, SEND, a composite part or a SEND's
//! `reply-to`) creates a destination with a broker-unique id, and the name stays bound to it
//! for the life of the connection. Other connections see and address it as
//! `/remote-temp-queue/ID` or `/remote-temp-topic/ID` (the `reply-to` of the MESSAGE they
//! receive says so) and may SEND to it; only its connection may SUBSCRIBE. The connection sees
//! its own names in the MESSAGE frames it receives. Its owner shard deletes it with its
//! messages at the connection's Goodbye (`shard/owner/temp.rs`); its messages are kept in
//! memory only, whatever `persistent` says.
//!
//! Across a network (docs/network.md, Temporary destinations): a bridge's subscription to
//! another broker's temporary destination (a SUBSCRIBE carrying `stompbox-broker-path`, for a
//! name whose id names another broker) is its *route*: it makes the destination exist here
//! while it lasts, so that a reply sent here is accepted and forwarded towards its
//! requester (`shard/owner/temp.rs`). Nothing else may SUBSCRIBE to a temporary destination
//! it did not create, and no route stands for one of this broker's own.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use foldhash::HashMap;

use super::error::Error;
use super::state::Session;
use crate::codec::Frame;
use crate::message::network::BROKER_PATH;
use crate::message::{temp_broker_tag, DestinationName, Kind, Message, NameError, ToOwner};
use crate::message::{TEMP_QUEUE, TEMP_TOPIC};

/// One connection's temporary destinations.
#[derive(Debug, Default)]
pub(super) struct Temps {
    /// The connection's own name (`/temp-queue/NAME`) → the destination.
    by_local: HashMap<String, DestinationName>,
    /// The destination's broker-wide name → the connection's own name, to show it its own
    /// names in MESSAGE frames.
    by_remote: HashMap<Arc<str>, String>,
}

impl Temps {
    /// True when this connection created `destination`.
    pub fn owns(&self, destination: &DestinationName) -> bool {
        self.by_remote.contains_key(destination.as_str())
    }

    /// The connection's own name for `destination`, if it created it.
    pub fn local_name(&self, destination: &DestinationName) -> Option<&str> {
        match destination.is_temp() {
            true => self.by_remote.get(destination.as_str()).map(String::as_str),
            false => None,
        }
    }

    /// `headers` as this connection should see them: a `reply-to` naming one of its own
    /// temporary destinations by its broker-wide name shows the connection's own name, as in
    /// ActiveMQ. Borrowed (no copy) unless there is such a header.
    pub fn show<'a>(&self, headers: &'a [(String, String)]) -> Cow<'a, [(String, String)]> {
        if self.by_remote.is_empty() {
            return Cow::Borrowed(headers);
        }
        let own = |(k, v): &(String, String)| k == "reply-to" && self.by_remote.contains_key(&**v);
        if !headers.iter().any(own) {
            return Cow::Borrowed(headers);
        }
        let mut shown = headers.to_vec();
        for (k, v) in shown.iter_mut() {
            if k == "reply-to" {
                if let Some(local) = self.by_remote.get(&**v) {
                    *v = local.clone();
                }
            }
        }
        Cow::Owned(shown)
    }
}

/// True when `header` is a connection's own name for a temporary destination.
pub(super) fn is_local_temp(header: &str) -> bool {
    header.starts_with(TEMP_QUEUE) || header.starts_with(TEMP_TOPIC)
}

impl Session {
    /// The destination a `destination` header (or a part of a composite one) names: a
    /// temporary destination of this connection for `/temp-queue/NAME` and
    /// `/temp-topic/NAME` (created on first use), otherwise what [`DestinationName::parse`]
    /// makes of it.
    pub(super) fn destination(&mut self, header: &str) -> Result<DestinationName, Error> {
        if is_local_temp(header) {
            return self.temp_destination(header);
        }
        Ok(DestinationName::parse(header)?)
    }

    /// The temporary destination this connection's `local` name (`/temp-queue/NAME`,
    /// `/temp-topic/NAME`) is bound to; created, and announced to its owner shard, on first
    /// use, up to `max_temp_destinations_per_connection`.
    pub(super) fn temp_destination(&mut self, local: &str) -> Result<DestinationName, Error> {
        if let Some(d) = self.temps.by_local.get(local) {
            return Ok(d.clone());
        }
        let (kind, name) = match local.strip_prefix(TEMP_QUEUE) {
            Some(name) => (Kind::Queue, name),
            None => (Kind::Topic, &local[TEMP_TOPIC.len()..]),
        };
        if name.is_empty() {
            return Err(NameError::Empty(local.to_string()).into());
        }
        let max = self.config.limits.max_temp_destinations_per_connection;
        if self.temps.by_local.len() >= max {
            return Err(Error::Limit("max_temp_destinations_per_connection", max));
        }
        // `ID:<broker>:<run>-<connection>:<n>`, after ActiveMQ's: unique to this broker (its
        // name, which a network keeps unique, so a bridge can tell whose it is), to this run
        // of it (its start: a name held by a client from before a restart or fail-over never
        // reaches a new connection's destination) and to the connection.
        let n = self.temps.by_local.len() + 1;
        let broker = temp_broker_tag(&self.config.broker_name);
        let id = format!("ID:{broker}:{}-{}:{n}", run_start(), self.id.0);
        let destination = DestinationName::temp(kind, &id);
        self.temps
            .by_local
            .insert(local.to_string(), destination.clone());
        self.temps
            .by_remote
            .insert(Arc::from(destination.as_str()), local.to_string());
        let shard = self.owner_of(&destination);
        let cmd = ToOwner::CreateTemp {
            session: self.id,
            destination: destination.clone(),
        };
        self.post(shard, cmd);
        Ok(destination)
    }

    /// Whether SUBSCRIBE `frame` to `destination`, a temporary destination this connection did
    /// not create, is a network route: a bridge's subscription (it names the brokers it stands
    /// for in `stompbox-broker-path`) to one destination of another broker, to consume it (a
    /// browser would only read other connections' replies). The owner shard then keeps the
    /// destination in existence while routes to it last.
    pub(super) fn is_temp_route(&self, destination: &DestinationName, frame: &Frame) -> bool {
        destination.is_temp()
            && !destination.is_wildcard()
            && !destination.is_temp_of(&self.config.broker_name)
            && frame.get(BROKER_PATH).is_some_and(|p| !p.is_empty())
            && !frame
                .get("browser")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            // Never durable: a temporary destination ends, and a route with it.
            && !super::subscriptions::has_durable_header(frame)
    }

    /// A SEND's `reply-to` naming one of this connection's temporary destinations by its own
    /// name (creating it on first use) is rewritten to the broker-wide name, which is what
    /// the receiver can address. The first `reply-to` counts, as with every repeated header.
    pub(super) fn resolve_reply_to(
        &mut self,
        headers: &mut [(String, String)],
    ) -> Result<(), Error> {
        let Some((_, v)) = headers.iter_mut().find(|(k, _)| k == "reply-to") else {
            return Ok(());
        };
        if is_local_temp(v) {
            *v = self.temp_destination(v)?.as_str().to_string();
        }
        Ok(())
    }
}

/// A temporary destination's message is kept in memory only (as ActiveMQ keeps temporary
/// destinations): a persistent one becomes non-persistent, and keeps `persistent:true` as a
/// header so the MESSAGE still says what the sender asked for.
pub(super) fn in_memory_only(mut m: Message) -> Message {
    if m.destination.is_temp() && m.persistent {
        m.persistent = false;
        m.headers
            .push(("persistent".to_string(), "true".to_string()));
    }
    m
}

/// This run of the broker, for temporary destination ids: its start (ms since the epoch),
/// fixed at the first use in the process.
fn run_start() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(crate::clock::now_ms)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{send, subscribe, Pair};
    use crate::codec::{Command, Frame};

    /// The `reply-to` a responder sees for a request `requester` sent with `reply-to:local`.
    fn request(
        pair: &mut Pair,
        requester: &mut super::super::testing::Client,
        responder: &mut super::super::testing::Client,
        local: &str,
    ) -> String {
        requester.send(send("/queue/requests", "req").header("reply-to", local));
        pair.pump(&mut [requester, responder]);
        let frames = responder.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        // Written, so consumed (auto ack).
        pair.pump(&mut [requester, responder]);
        frames[0].get("reply-to").unwrap().to_string()
    }

    #[test]
    fn a_reply_reaches_the_requester_under_its_own_name() {
        let mut pair = Pair::new();
        let mut requester = pair.client("1.2");
        let mut responder = pair.client("1.2");
        responder.send(subscribe("/queue/requests", "auto", &[]));
        requester.send(subscribe("/temp-queue/r", "auto", &[]));
        let remote = request(&mut pair, &mut requester, &mut responder, "/temp-queue/r");
        assert!(
            remote.starts_with("/remote-temp-queue/ID:localhost:"),
            "names its broker: {remote}"
        );
        assert_eq!(
            request(&mut pair, &mut requester, &mut responder, "/temp-queue/r"),
            remote,
            "one name, one destination"
        );
        responder.send(send(&remote, "reply").header("correlation-id", "c"));
        pair.pump(&mut [&mut requester, &mut responder]);
        let frames = requester.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].get("destination"), Some("/temp-queue/r"));
        assert_eq!(frames[0].get("correlation-id"), Some("c"));
        assert!(responder.frames().is_empty(), "no ERROR");
    }

    #[test]
    fn a_closed_connection_takes_its_temp_queue_and_its_memory_with_it() {
        let mut pair = Pair::new();
        let mut requester = pair.client("1.2");
        let mut responder = pair.client("1.2");
        responder.send(subscribe("/queue/requests", "auto", &[]));
        let remote = request(&mut pair, &mut requester, &mut responder, "/temp-queue/r");
        assert_eq!(pair.memory(), 0, "consumed");
        responder.send(send(&remote, "waits").header("persistent", "true"));
        pair.pump(&mut [&mut requester, &mut responder]);
        assert!(
            pair.memory() > 0,
            "a waiting reply is charged to the global account"
        );
        requester.close();
        pair.pump(&mut [&mut requester, &mut responder]);
        assert_eq!(pair.memory(), 0, "deleted with its message");
        responder.send(send(&remote, "too late").header("receipt", "r"));
        pair.pump(&mut [&mut requester, &mut responder]);
        let frames = responder.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].command, Command::Error);
        assert_eq!(frames[0].get("receipt-id"), Some("r"));
        assert!(frames[0].get("message").unwrap().contains(&remote));
    }

    #[test]
    fn a_persistent_message_to_a_temp_queue_is_not_persistent_but_says_so() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/temp-queue/p", "m").header("persistent", "true"));
        let cmds = pair.take_commands();
        let message = cmds
            .iter()
            .find_map(|cmd| match cmd {
                crate::message::ToOwner::Send { message, .. } => Some(message.clone()),
                _ => None,
            })
            .unwrap();
        assert!(message.destination.is_temp());
        assert!(!message.persistent, "never stored");
        assert_eq!(
            message
                .headers
                .iter()
                .filter(|(k, _)| k == "persistent")
                .count(),
            1
        );
    }

    #[test]
    fn only_its_connection_may_subscribe_to_a_temp_queue() {
        let mut pair = Pair::new();
        let mut requester = pair.client("1.2");
        let mut responder = pair.client("1.2");
        responder.send(subscribe("/queue/requests", "auto", &[]));
        let remote = request(&mut pair, &mut requester, &mut responder, "/temp-queue/r");
        let mut intruder = pair.client("1.2");
        intruder.send(subscribe(&remote, "auto", &[]));
        let frames = intruder.frames();
        assert_eq!(frames[0].command, Command::Error, "{frames:?}");
        assert!(frames[0].get("message").unwrap().contains(&remote));
        // Its own connection may, by either name.
        requester.send(subscribe(&remote, "auto", &[]));
        assert!(requester.frames().is_empty());
    }

    /// Another broker's temporary queue, as a bridge learns it from that broker's advisories.
    const ELSEWHERE: &str = "/remote-temp-queue/ID:site-a:1700000000000-7:1";

    /// A bridge's route: a SUBSCRIBE that names the brokers it stands for.
    fn route(dest: &str) -> Frame {
        subscribe(dest, "client", &[("stompbox-broker-path", "site-a")])
    }

    #[test]
    fn a_route_makes_another_brokers_temp_queue_exist_here_while_it_lasts() {
        let mut pair = Pair::new();
        let mut replier = pair.client("1.2");
        // No route yet: a reply here has nowhere to go.
        replier.send(send(ELSEWHERE, "early").header("receipt", "r0"));
        pair.pump(&mut [&mut replier]);
        let frames = replier.frames();
        assert_eq!(frames[0].command, Command::Error, "{frames:?}");
        assert!(frames[0].get("message").unwrap().contains(ELSEWHERE));
        let mut bridge = pair.client("1.2");
        let mut replier = pair.client("1.2");
        bridge.send(route(ELSEWHERE).header("receipt", "sub"));
        pair.pump(&mut [&mut bridge, &mut replier]);
        assert_eq!(bridge.frames()[0].command, Command::Receipt);
        replier.send(send(ELSEWHERE, "reply").header("receipt", "r1"));
        pair.pump(&mut [&mut bridge, &mut replier]);
        assert_eq!(replier.frames()[0].command, Command::Receipt);
        let frames = bridge.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].get("destination"), Some(ELSEWHERE));
        assert_eq!(&frames[0].body[..], b"reply");
        // The route ends: so does the destination, with what waits in it.
        replier.send(send(ELSEWHERE, "waits"));
        bridge.send(Frame::new(Command::Unsubscribe).header("id", "s"));
        pair.pump(&mut [&mut bridge, &mut replier]);
        assert_eq!(pair.memory(), 0, "deleted with its messages");
        replier.send(send(ELSEWHERE, "too late").header("receipt", "r2"));
        pair.pump(&mut [&mut bridge, &mut replier]);
        let frames = replier.frames();
        assert_eq!(frames[0].command, Command::Error, "{frames:?}");
        assert_eq!(frames[0].get("receipt-id"), Some("r2"));
    }

    #[test]
    fn another_brokers_temp_queue_lasts_until_its_last_route_ends() {
        let mut pair = Pair::new();
        let mut first = pair.client("1.2");
        let mut second = pair.client("1.2");
        let mut replier = pair.client("1.2");
        first.send(route(ELSEWHERE));
        second.send(route(ELSEWHERE));
        pair.pump(&mut [&mut first, &mut second, &mut replier]);
        first.close();
        replier.send(send(ELSEWHERE, "reply").header("receipt", "r1"));
        pair.pump(&mut [&mut first, &mut second, &mut replier]);
        assert_eq!(replier.frames()[0].command, Command::Receipt);
        assert_eq!(&second.frames()[0].body[..], b"reply");
        second.close();
        replier.send(send(ELSEWHERE, "too late"));
        pair.pump(&mut [&mut first, &mut second, &mut replier]);
        assert_eq!(replier.frames()[0].command, Command::Error);
    }

    #[test]
    fn only_a_bridges_route_may_subscribe_to_another_brokers_temp_queue() {
        let mut pair = Pair::new();
        let mut requester = pair.client("1.2");
        let mut responder = pair.client("1.2");
        responder.send(subscribe("/queue/requests", "auto", &[]));
        let own = request(&mut pair, &mut requester, &mut responder, "/temp-queue/r");
        for refused in [
            // A plain consumer would read another broker's requester's replies.
            subscribe(ELSEWHERE, "auto", &[]),
            // So would a browser, route or not.
            route(ELSEWHERE).header("browser", "true"),
            // A pattern over temporary names is no one destination.
            route("/remote-temp-queue/>"),
            // No route stands for this broker's own: not for one of another connection's, nor
            // for one of an earlier run (or to come).
            route(&own),
            route("/remote-temp-queue/ID:localhost:1-99:1"),
        ] {
            let mut c = pair.client("1.2");
            c.send(refused.clone());
            let frames = c.frames();
            assert_eq!(frames[0].command, Command::Error, "{refused:?}: {frames:?}");
        }
        // A bridge's subscription to one of another broker's is its route.
        let mut bridge = pair.client("1.2");
        bridge.send(route(ELSEWHERE).header("receipt", "r"));
        pair.pump(&mut [&mut bridge]);
        let frames = bridge.frames();
        assert_eq!(frames[0].command, Command::Receipt, "{frames:?}");
    }

    #[test]
    fn a_forwarded_reply_to_a_temp_queue_that_is_gone_is_receipted_and_dropped() {
        let mut pair = Pair::new();
        let mut bridge = pair.client("1.2");
        bridge.send(
            send("/remote-temp-queue/ID:localhost:1-99:1", "late reply")
                .header("stompbox-network-id", "site-b:17")
                .header("stompbox-broker-path", "site-b")
                .header("receipt", "r"),
        );
        pair.pump(&mut [&mut bridge]);
        let frames = bridge.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].command, Command::Receipt, "{frames:?}");
        assert_eq!(pair.memory(), 0);
    }

    #[test]
    fn a_forwarded_reply_to_another_brokers_temp_queue_without_a_route_is_refused() {
        // This broker only passes it on: the requester may still be there, so the bridge
        // upstream must keep the reply (it is refused, NACKed there) rather than lose it.
        let mut pair = Pair::new();
        let mut bridge = pair.client("1.2");
        bridge.send(
            send("/remote-temp-queue/ID:site-c:1-99:1", "reply")
                .header("stompbox-network-id", "site-b:17")
                .header("stompbox-broker-path", "site-b")
                .header("receipt", "r"),
        );
        pair.pump(&mut [&mut bridge]);
        let frames = bridge.frames();
        assert_eq!(frames[0].command, Command::Error, "{frames:?}");
        assert_eq!(pair.memory(), 0);
    }

    #[test]
    fn a_connection_creates_at_most_max_temp_destinations_per_connection() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        let max = crate::limits::Limits::default().max_temp_destinations_per_connection;
        for n in 0..max {
            c.send(send(&format!("/temp-topic/{n}"), "x"));
        }
        assert!(c.frames().is_empty());
        c.send(Frame::new(Command::Send).header("destination", "/temp-queue/more"));
        let frames = c.frames();
        assert_eq!(frames[0].command, Command::Error, "{frames:?}");
        assert!(frames[0]
            .get("message")
            .unwrap()
            .contains("max_temp_destinations_per_connection"));
    }
}
