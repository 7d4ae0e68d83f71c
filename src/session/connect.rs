//! CONNECT/STOMP: protocol version and heart-beat negotiation, the `client-id` claim, and the
//! CONNECTED answer. Called by the session's dispatch, once per connection.

use log::{debug, warn};

use super::error::Error;
use super::services::ConnectionInfo;
use super::state::{Phase, Session};
use crate::clock::now_ms;
use crate::codec::{Command, Frame, Version};
use crate::message::advisory::Event;
use crate::security::{Check, Job, Method, Principal, Refusal};

/// The broker's name and version for the CONNECTED `server` header.
pub const SERVER: &str = concat!("stompbox/", env!("CARGO_PKG_VERSION"));

/// Negotiated heart-beat intervals in ms (0 = none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartBeat {
    /// The broker sends something at least this often.
    pub send_ms: u64,
    /// The client promised to send something at least this often.
    pub expect_ms: u64,
}

impl HeartBeat {
    /// The answer to a client's `heart-beat:cx,cy`: the broker sends every `cy` ms and
    /// expects every `cx` ms, neither below `min_ms`; 0 (none) stays 0.
    pub fn negotiate(cx: u64, cy: u64, min_ms: u64) -> HeartBeat {
        HeartBeat {
            send_ms: if cy == 0 { 0 } else { cy.max(min_ms) },
            expect_ms: if cx == 0 { 0 } else { cx.max(min_ms) },
        }
    }
}

/// A CONNECT whose password check is running: what the rest of CONNECT needs.
#[derive(Debug)]
pub(super) struct PendingConnect {
    frame: Frame,
    version: Version,
    beats: (u64, u64),
}

impl Session {
    pub(super) fn on_connect(&mut self, frame: &Frame, now_ms: u64) -> Result<(), Error> {
        let accept = frame.get("accept-version");
        let version = Version::negotiate(accept)
            .ok_or_else(|| Error::UnsupportedVersion(accept.unwrap_or("").to_string()))?;
        let (cx, cy) = match frame.get("heart-beat") {
            None => (0, 0),
            Some(v) => parse_heart_beat(v).ok_or_else(|| {
                Error::InvalidHeader(
                    "heart-beat",
                    v.to_string(),
                    "expected two integers, e.g. 10000,10000",
                )
            })?,
        };
        let login = frame.get("login");
        // This broker's own bridges (they hold its secret) are the broker itself: no password
        // check, no authorization rules.
        self.own_bridge = frame
            .get(crate::network::status::BRIDGE_TOKEN)
            .is_some_and(|t| self.bridges.is_own(t));
        let (check, method) = match self.own_bridge {
            true => (
                Check::Accepted(Principal {
                    login: Some("stompbox-bridge".into()),
                    groups: Vec::new(),
                    authenticated: true,
                }),
                Method::Bridge,
            ),
            false => match self
                .certificate
                .as_ref()
                .and_then(|s| self.auth.check_certificate(s, login))
            {
                Some(Ok(principal)) => (Check::Accepted(principal), Method::Certificate),
                Some(Err(why)) => (Check::Refused(why), Method::Certificate),
                // No certificate, or one no user has: login and passcode decide.
                None => (
                    self.auth.check(login, frame.get("passcode"), self.peer_ip),
                    Method::Password,
                ),
            },
        };
        match check {
            Check::Accepted(principal) => {
                let method = match principal.authenticated {
                    true => method,
                    false => Method::Anonymous,
                };
                self.connected(frame, principal, method, version, (cx, cy), now_ms)
            }
            Check::Refused(why) => Err(self.refused(login, why)),
            Check::Verify => {
                // The argon2 check runs on a verifier thread; nothing more is read until
                // its answer (`ToSession::Authenticated`) comes back.
                self.posts_authenticate(Job {
                    login: login.unwrap_or_default().to_string(),
                    passcode: frame.get("passcode").unwrap_or_default().to_string(),
                    ip: self.peer_ip,
                    reply: self.tx.clone(),
                });
                self.authenticating = Some(Box::new(PendingConnect {
                    frame: frame.clone(),
                    version,
                    beats: (cx, cy),
                }));
                Ok(())
            }
        }
    }

    /// The answer of a password check posted by [`Session::on_connect`].
    pub(super) fn on_authenticated(&mut self, result: Result<Principal, Refusal>) {
        let Some(pending) = self.authenticating.take() else {
            return;
        };
        // The session failed meanwhile (CONNECT timeout, shutdown): its ERROR stands.
        if self.phase != Phase::Connecting || self.failing() {
            return;
        }
        let PendingConnect {
            frame,
            version,
            beats,
        } = *pending;
        let receipt = frame.get("receipt").map(str::to_owned);
        let outcome = match result {
            Ok(principal) => self.connected(
                &frame,
                principal,
                Method::Password,
                version,
                beats,
                now_ms(),
            ),
            Err(why) => Err(self.refused(frame.get("login"), why)),
        };
        if let Err(e) = outcome {
            self.fail(&e, receipt.as_deref());
        }
    }

    /// Logs a refused CONNECT (never the passcode; the certificate's subject when there is
    /// one) and gives the client's error, which says only that authentication failed.
    fn refused(&self, login: Option<&str>, why: Refusal) -> Error {
        let certificate = match &self.certificate {
            Some(subject) => format!(" (client certificate {:?})", subject.to_string()),
            None => String::new(),
        };
        warn!(
            "conn={} peer={} authentication failed for login {:?}: {why}{certificate}",
            self.id.0,
            self.peer,
            login.unwrap_or("")
        );
        Error::AuthenticationFailed
    }

    /// The rest of CONNECT, once the client is let in as `principal`.
    fn connected(
        &mut self,
        frame: &Frame,
        principal: Principal,
        method: Method,
        version: Version,
        (cx, cy): (u64, u64),
        now_ms: u64,
    ) -> Result<(), Error> {
        if let Some(id) = frame.get("client-id") {
            if !self.client_ids.claim(id) {
                return Err(Error::ClientIdInUse(id.to_string()));
            }
            self.client_id = Some(id.to_string());
        }
        let hb = HeartBeat::negotiate(cx, cy, self.config.heart_beat.min_interval_ms);
        self.heart_beat = hb;
        self.version = version;
        let login = principal.login.clone();
        let certificate = self.certificate.as_ref().map(|s| s.to_string());
        if method == Method::Certificate {
            debug!(
                "conn={} peer={} client certificate {:?} logged in as user {:?}",
                self.id.0,
                self.peer,
                certificate.as_deref().unwrap_or(""),
                login.as_deref().unwrap_or("")
            );
        }
        self.principal = Some(principal);
        self.phase = Phase::Connected;
        self.connections.insert(ConnectionInfo {
            id: self.id.0,
            peer: self.peer.clone(),
            version: version.as_str().to_string(),
            client_id: self.client_id.clone(),
            login,
            auth: method,
            certificate,
            connected_at: now_ms,
            subscriptions: Vec::new(),
        });
        let connected = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("session", format!("session-{}", self.id.0))
            .header("server", SERVER)
            // Who we are in a network of brokers: a bridge connecting here learns which
            // messages not to send us (those whose broker path already names us).
            .header(
                crate::message::network::BROKER_NAME,
                &self.config.broker_name,
            )
            .header("heart-beat", format!("{},{}", hb.send_ms, hb.expect_ms));
        self.outbox.write_frame(&connected, version);
        self.announced = true;
        let (peer, client_id) = (self.peer.clone(), self.client_id.clone());
        self.advise(Event::ConnectionAdded {
            connection: self.id.0,
            client_id: client_id.as_deref(),
            peer: &peer,
            version: version.as_str(),
        });
        Ok(())
    }
}

fn parse_heart_beat(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::testing::send;
    use bytes::BytesMut;

    use super::*;
    use crate::codec::Decoder;

    #[test]
    fn frame_before_connect_is_an_error_and_closes() {
        let mut s = super::super::testing::Pair::new().session();
        assert!(s
            .handle_frame(send("/queue/a", "x").header("receipt", "7"), 0)
            .is_err());
        assert_eq!(s.phase(), Phase::Closing);
        let mut out = BytesMut::from(&s.take_output()[..]);
        let f = Decoder::new(Default::default())
            .decode(&mut out)
            .unwrap()
            .unwrap();
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.get("receipt-id"), Some("7"));
    }
}
