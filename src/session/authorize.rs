//! Authorization of what a connection does to destinations (`[[security.authorization]]`,
//! `crate::security::authz`): `read` for SUBSCRIBE, `write` for SEND, and `admin` for using
//! a destination the broker does not know yet, which would create it.
//!
//! Whether a destination exists is known only to its owner shard, so a SEND or SUBSCRIBE of
//! a user without `admin` on its destination asks it (`ToOwner::Probe`) and the frame waits,
//! with nothing more read from the client, until the answer: an existing destination is
//! used (and remembered for the connection, so one round trip per destination and
//! connection), a missing one refused with ActiveMQ's words (`User X is not authorized to
//! create: queue://Y`). Users with `admin`, the broker's own bridges and brokers without
//! authorization entries never wait. Temporary destinations (their own rules), wildcard
//! subscriptions (they create nothing) and advisory topics (the broker makes them) are not
//! asked about.
//!
//! A destination remembered as existing that an operator deletes, or that is forgotten once
//! idle, while the connection lives is brought back by its next use from that connection:
//! the connection was already using it.

use log::warn;

use super::error::Error;
use super::state::{Phase, Session};
use crate::clock::now_ms;
use crate::codec::Frame;
use crate::message::{advisory, DestinationName, Kind, ToOwner};
use crate::security::authz::Operation;
use crate::security::Principal;

/// Destinations whose authorization (or existence) a connection remembers.
const MEMO: usize = 1024;

/// A SEND or SUBSCRIBE waiting for its destination's owner to say whether it exists.
#[derive(Debug)]
pub(super) struct PendingCreate {
    frame: Frame,
    destination: DestinationName,
    /// The destinations of `frame` its owners already said exist (a composite SEND asks
    /// about its parts one at a time): kept in the memo while the frame is asked about, so
    /// one naming more than [`MEMO`] of them does not ask about the first ones forever.
    confirmed: Vec<String>,
}

impl Session {
    /// Fails unless the connection's user may do `op` on `destination`.
    pub(super) fn authorize(
        &mut self,
        op: Operation,
        destination: &DestinationName,
    ) -> Result<(), Error> {
        match self.allowed(op, destination) {
            true => Ok(()),
            false => Err(self.denied(op, destination)),
        }
    }

    /// Whether the connection's user may do `op` on `destination`; answered from a
    /// per-connection memo (at most [`MEMO`] destinations) after the first time.
    fn allowed(&mut self, op: Operation, destination: &DestinationName) -> bool {
        if !self.auth.authorizes() || self.own_bridge {
            return true;
        }
        // Looked up by the name as it is (no allocation per frame on this hot path).
        let slot = op as usize;
        if let Some(a) = self
            .authorized
            .get(destination.as_str())
            .and_then(|a| a[slot])
        {
            return a;
        }
        let anonymous = Principal::default();
        let who = self.principal.as_ref().unwrap_or(&anonymous);
        let a = self.auth.allows(who, op, destination);
        if self.authorized.len() >= MEMO {
            self.authorized.clear();
        }
        self.authorized
            .entry(destination.as_str().to_string())
            .or_default()[slot] = Some(a);
        a
    }

    /// The ERROR for `op` denied on `destination`, logged and counted.
    fn denied(&self, op: Operation, destination: &DestinationName) -> Error {
        let user = self
            .principal
            .as_ref()
            .and_then(|p| p.login.clone())
            .unwrap_or_else(|| crate::security::ANONYMOUS.to_string());
        let named = match destination.kind() {
            Kind::Queue => format!("queue://{}", destination.name()),
            Kind::Topic => format!("topic://{}", destination.name()),
        };
        warn!(
            "conn={} peer={} user {user} denied {} {}",
            self.id.0,
            self.peer,
            op.phrase(),
            destination.as_str()
        );
        metrics::counter!("stompbox_authorization_denied_total").increment(1);
        Error::NotAuthorized(user, op, named)
    }

    /// Whether `frame` (a SEND or SUBSCRIBE naming `destination`) may go on now: yes when
    /// the user may create `destination` or it is known to exist; otherwise its owner is
    /// asked and `frame` waits for [`Session::on_probed`] (false).
    pub(super) fn may_use(&mut self, destination: &DestinationName, frame: &Frame) -> bool {
        if !self.auth.authorizes()
            || self.own_bridge
            || destination.is_temp()
            || destination.is_wildcard()
            || advisory::is_advisory(destination)
            || self.existing.contains(destination.as_str())
            || self.allowed(Operation::Admin, destination)
        {
            return true;
        }
        let shard = self.owner_of(destination);
        self.post(
            shard,
            ToOwner::Probe {
                session: self.id,
                destination: destination.clone(),
            },
        );
        self.creating = Some(Box::new(PendingCreate {
            frame: frame.clone(),
            destination: destination.clone(),
            confirmed: Vec::new(),
        }));
        false
    }

    /// The owner's answer to [`Session::may_use`]'s question: the waiting frame goes on, or
    /// fails with ActiveMQ's `not authorized to create`.
    pub(super) fn on_probed(&mut self, destination: DestinationName, exists: bool) {
        let Some(pending) = self.creating.take_if(|p| p.destination == destination) else {
            return;
        };
        // The session failed meanwhile (heart-beat, shutdown): its ERROR stands.
        if self.phase != Phase::Connected || self.failing() {
            return;
        }
        let PendingCreate {
            frame,
            destination,
            mut confirmed,
        } = *pending;
        if !exists {
            let receipt = frame.get("receipt").map(str::to_owned);
            let e = self.denied(Operation::Admin, &destination);
            self.fail(&e, receipt.as_deref());
            return;
        }
        confirmed.push(destination.as_str().to_string());
        if self.existing.len() >= MEMO {
            self.existing.clear();
        }
        self.existing.extend(confirmed.iter().cloned());
        // Its error, if any, is sent by handle_frame.
        let _ = self.handle_frame(frame, now_ms());
        // Asked about its next destination: the ones confirmed so far stay confirmed.
        if let Some(next) = self.creating.as_mut() {
            next.confirmed = confirmed;
        }
    }
}
