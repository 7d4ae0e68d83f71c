//! Temporary destinations on their owner shard: created by their session's
//! `ToOwner::CreateTemp`, deleted with their messages at its `ToOwner::Goodbye`. In between
//! they are ordinary queues and topics (held in memory only: their messages are never
//! persistent, see `session/temp.rs`), charged to the global memory account like any other.
//! Their creation and deletion are announced on `ActiveMQ.Advisory.TempQueue` / `TempTopic`
//! (`owner/idle.rs`); they are never kept listed once deleted.
//!
//! Another broker's temporary destination exists here only for the network routes that stand
//! for it: bridges' subscriptions to it (`session/temp.rs`, `Session::is_temp_route`). The
//! first route's SUBSCRIBE makes it exist, so SENDs to it (replies to a requester on that
//! broker) are accepted here and reach the routes; the last route's end (its bridge follows
//! the requester's consumer, or its link dropped) deletes it like a closed connection's own,
//! with what still waits in it, and later SENDs are refused again.

use log::debug;

use super::idle::ROUTE_ENDED;
use super::Owner;
use crate::message::network::network_id;
use crate::message::{
    DestinationName, Kind, Message, QueueKey, SessionId, SessionTx, SubId, ToSession, Token,
};

/// What keeps a temporary destination of this shard in existence.
#[derive(Debug)]
pub(super) enum TempHolder {
    /// One of this broker's own, created by a session (whose entry lists it): until that
    /// session's Goodbye.
    Creator,
    /// Another broker's: these network routes (subscriptions) stand for it, until the last
    /// ends. Never empty.
    Routes(Vec<(SessionId, SubId)>),
}

impl Owner {
    /// Answers a SEND to a temporary destination that does not exist here (true; false
    /// when it is not one, or exists). A reply forwarded by a bridge to one of this broker's
    /// own whose requester went away meanwhile is taken and dropped, as a topic message
    /// nobody subscribes to, rather than refused, which would drop the bridge's link for it.
    /// Another broker's (this one only passes it on) is refused, as a client's SEND is: its
    /// requester may still be there, and the bridge keeps the reply (NACKed) until a route
    /// here stands for it again.
    pub(super) fn answered_missing_temp(
        &self,
        message: &Message,
        producer: &SessionTx,
        token: Option<Token>,
    ) -> bool {
        let destination = &message.destination;
        if !destination.is_temp() || self.temps.contains_key(destination) {
            return false;
        }
        if network_id(&message.headers).is_some()
            && destination.is_temp_of(&self.ctx.config.broker_name)
        {
            debug!(
                "shard={} dest={destination} forwarded to a temporary destination that is \
                 gone: dropped",
                self.ctx.shard
            );
            let _ = producer.send(ToSession::Accepted { token });
            return true;
        }
        let _ = producer.send(ToSession::NoSuchTemp {
            destination: destination.clone(),
            token,
        });
        true
    }

    /// Records that `session` created `destination`. It exists from now on (and is listed by
    /// the admin API) until the session's Goodbye: a temporary queue keeps messages sent to it
    /// before its session subscribes; a temporary topic, like any topic, keeps nothing for
    /// subscribers it does not have.
    pub(super) fn create_temp(&mut self, session: SessionId, destination: DestinationName) {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return;
        };
        // Each name is created once per session (the session remembers it), and names are
        // unique to their session, so this is never a second owner.
        if !self.temps.contains_key(&destination) {
            self.temps.insert(destination.clone(), TempHolder::Creator);
            entry.temps.push(destination.clone());
        }
        match destination.kind() {
            Kind::Queue => self.with_queue(&QueueKey::queue(destination), true, |_, _| {}),
            Kind::Topic => self.with_topic(&destination, true, |_, _| {}),
        }
    }

    /// Notes that subscription `sub` of `session` to temporary destination `destination` is
    /// a network route, when the destination is not one this shard's sessions created: the
    /// first makes it exist here. Called before the subscription is attached.
    pub(super) fn hold_temp_route(
        &mut self,
        session: SessionId,
        sub: SubId,
        destination: &DestinationName,
    ) {
        match self.temps.get_mut(destination) {
            Some(TempHolder::Creator) => {}
            Some(TempHolder::Routes(routes)) => routes.push((session, sub)),
            None => {
                self.temps.insert(
                    destination.clone(),
                    TempHolder::Routes(vec![(session, sub)]),
                );
                debug!(
                    "shard={} dest={destination} session={} network route: exists here",
                    self.ctx.shard, session.0
                );
                match destination.kind() {
                    Kind::Queue => {
                        self.with_queue(&QueueKey::queue(destination.clone()), true, |_, _| {})
                    }
                    Kind::Topic => self.with_topic(destination, true, |_, _| {}),
                }
            }
        }
    }

    /// Subscription `sub` of `session` to `destination` ended (already detached): if it was
    /// the last network route to another broker's temporary destination, the destination is
    /// deleted here.
    pub(super) fn release_temp_route(
        &mut self,
        session: SessionId,
        sub: SubId,
        destination: &DestinationName,
    ) {
        let Some(TempHolder::Routes(routes)) = self.temps.get_mut(destination) else {
            return;
        };
        routes.retain(|r| *r != (session, sub));
        if routes.is_empty() {
            self.delete_temp(destination, ROUTE_ENDED);
        }
    }

    /// Deletes a temporary destination whose session is gone (its consumers already were),
    /// or whose last network route ended (`reason`): its waiting messages are dropped and
    /// uncharged, producers parked on it are answered (their SENDs were accepted before the
    /// delete), and later SENDs to it are refused.
    pub(super) fn delete_temp(&mut self, destination: &DestinationName, reason: &str) {
        self.temps.remove(destination);
        self.advise_removed(destination, reason);
        match destination.kind() {
            Kind::Queue => {
                let key = QueueKey::queue(destination.clone());
                if let Some(mut q) = self.queues.remove(&key) {
                    let before = q.bytes();
                    let dropped = q.purge();
                    q.release_producers();
                    // The whole queue is freed (its consumers left at the Goodbye).
                    self.ctx.charge(before, 0);
                    debug!(
                        "shard={} dest={destination} temporary queue deleted with {dropped} messages",
                        self.ctx.shard
                    );
                }
            }
            Kind::Topic => {
                if let Some(mut t) = self.topics.remove(destination) {
                    let before = t.bytes();
                    t.release_producers();
                    self.ctx.charge(before, 0);
                }
            }
        }
    }
}
