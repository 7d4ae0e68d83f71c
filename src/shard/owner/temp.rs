//! Temporary destinations on their owner shard: created by their session's
//! `ToOwner::CreateTemp`, deleted with their messages at its `ToOwner::Goodbye`. In between
//! they are ordinary queues and topics (held in memory only: their messages are never
//! persistent, see `session/temp.rs`), charged to the global memory account like any other.
//! Their creation and deletion are announced on `ActiveMQ.Advisory.TempQueue` / `TempTopic`
//! (`owner/idle.rs`); they are never kept listed once deleted.

use log::debug;

use super::idle::CONNECTION_CLOSED;
use super::Owner;
use crate::message::{DestinationName, Kind, QueueKey, SessionId};

impl Owner {
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
        if self.temps.insert(destination.clone(), session).is_none() {
            entry.temps.push(destination.clone());
        }
        match destination.kind() {
            Kind::Queue => self.with_queue(&QueueKey::queue(destination), true, |_, _| {}),
            Kind::Topic => self.with_topic(&destination, true, |_, _| {}),
        }
    }

    /// Deletes a temporary destination whose session is gone (its consumers already were):
    /// its waiting messages are dropped and uncharged, producers parked on it are answered
    /// (their SENDs were accepted before the delete), and later SENDs to it are refused.
    pub(super) fn delete_temp(&mut self, destination: &DestinationName) {
        self.temps.remove(destination);
        self.advise_removed(destination, CONNECTION_CLOSED);
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
