//! Who may connect: CONNECT's `login` and `passcode` against the configured users (argon2id
//! password hashes), anonymous access, and a per-address back-off after failed attempts.
//! docs/security.md has the threat model and the numbers behind the choices.
//!
//! A password check costs tens of milliseconds of CPU and 19 MiB of memory (that is the
//! point of argon2id). It never runs on a shard thread, where it would stall every
//! connection of the shard: [`Authenticator::check`] answers at once when it can (anonymous
//! access, an address in back-off, credentials verified before) and otherwise the session
//! posts a [`Job`] that a few verifier threads of their own work through, so at most that
//! many checks (and 19 MiB each) run at once whatever the number of CONNECTs; the answer
//! comes back to the session as `ToSession::Authenticated`.
//!
//! Credentials verified once are remembered (a keyed BLAKE2b digest of login and passcode,
//! under a key made at start; never the passcode) until the users are reloaded, so a
//! reconnect storm after a fail-over does not cost an argon2 check per client. An unknown
//! login is checked against a dummy hash, so a refusal takes as long whether or not the
//! login exists, and every refusal says only `authentication failed`.
//!
//! A TLS client certificate (verified against `tls.client_ca` by rustls) whose subject is a
//! user's `certificate_subject` logs that user in without a passcode and without an argon2
//! check ([`Authenticator::check_certificate`]); a certificate no user has leaves the
//! decision to login and passcode, as ActiveMQ's JaasDualAuthenticationPlugin does.

pub mod addresses;
pub mod authz;
mod backoff;
pub mod subject;
pub mod users;

use std::net::IpAddr;
use std::sync::{mpsc, Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use argon2::PasswordVerifier;
use blake2::{Blake2b512, Digest};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use crate::message::{SessionTx, ToSession};
use authz::{AuthorizationEntry, Operation, Rules};
use backoff::Backoff;
use subject::Subject;
use users::{UserEntry, Users};

/// The group every anonymous connection belongs to (ActiveMQ's name).
pub const ANONYMOUS: &str = "anonymous";

/// Most argon2 checks running at once (each takes 19 MiB while it runs).
const MAX_VERIFIERS: usize = 4;

/// Password checks waiting for a verifier at most; past it a CONNECT that needs one is
/// refused at once (about a minute of work queued on 4 verifiers at ~55 ms a check).
const MAX_QUEUED_CHECKS: usize = 4096;

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// A CONNECT without `login` is let in as user `anonymous`, group `anonymous`; while no
    /// users are configured, any login is let in the same way (nothing to check it against).
    pub anonymous: bool,
    /// Users with argon2id password hashes (`stompbox passwd` makes one) and/or the subject
    /// of the TLS client certificates that log them in.
    pub users: Vec<UserEntry>,
    /// A TOML file of more users (`[[users]]`, same fields), read at start and on SIGHUP.
    pub users_file: Option<std::path::PathBuf>,
    /// Failed CONNECTs from one address before it is made to wait.
    pub failures_before_backoff: u32,
    /// The first wait (ms); it doubles with each further failure, up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Which groups may read (SUBSCRIBE, browse) and write (SEND) which destinations
    /// (`authz.rs`); none: everyone may do everything.
    pub authorization: Vec<AuthorizationEntry>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            anonymous: true,
            users: Vec::new(),
            users_file: None,
            failures_before_backoff: 5,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            authorization: Vec::new(),
        }
    }
}

/// Who a connection is. The default is an anonymous connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The login, for logs and the admin API (the claimed one for an unchecked login).
    pub login: Option<String>,
    pub groups: Vec<String>,
    /// The login was checked against a password hash.
    pub authenticated: bool,
}

impl Default for Principal {
    fn default() -> Principal {
        Principal::anonymous(None)
    }
}

impl Principal {
    fn anonymous(login: Option<&str>) -> Principal {
        Principal {
            login: login.map(str::to_string),
            groups: vec![ANONYMOUS.to_string()],
            authenticated: false,
        }
    }
}

/// How a connection's user was established, for logs and the admin API
/// (`/api/connections` `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Nothing checked: anonymous access (or any login while no users are configured).
    Anonymous,
    /// `login` and `passcode`, against the user's password hash.
    Password,
    /// The TLS client certificate's subject is the user's `certificate_subject`.
    Certificate,
    /// One of this broker's own network bridges (it presented the broker's secret).
    Bridge,
}

/// Why a CONNECT was refused. The client is told `authentication failed` whichever it is;
/// the log says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no login given and anonymous access is off")]
    Anonymous,
    #[error("unknown login or wrong passcode")]
    Credentials,
    /// The connection's client certificate logs in a user; `login` named another one.
    #[error("the client certificate is another user's")]
    OtherUser,
    #[error("too many failed attempts from this address: backing off")]
    BackingOff,
    #[error("too many password checks waiting")]
    Busy,
}

/// What [`Authenticator::check`] decided without a password check.
#[derive(Debug)]
pub enum Check {
    Accepted(Principal),
    Refused(Refusal),
    /// Post a [`Job`]: the passcode needs an argon2 check.
    Verify,
}

/// A password check for a verifier thread; the answer goes to `reply`.
pub struct Job {
    pub login: String,
    pub passcode: String,
    pub ip: Option<IpAddr>,
    pub reply: SessionTx,
}

impl std::fmt::Debug for Job {
    // Never the passcode.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// The broker's authentication: users, the verified-credentials memo, the back-off and the
/// verifier threads. One per process; reloaded on SIGHUP.
pub struct Authenticator {
    settings: SecurityConfig,
    users: RwLock<Arc<Users>>,
    rules: Rules,
    /// Per login, the digest of the credentials last verified.
    verified: Mutex<std::collections::HashMap<String, [u8; 64]>>,
    key: [u8; 32],
    /// A hash of a random password: what an unknown login is checked against (made on
    /// first use).
    dummy: OnceLock<String>,
    backoff: Mutex<Backoff>,
    /// The verifier threads' queue, started with the first job.
    jobs: OnceLock<Mutex<mpsc::SyncSender<Job>>>,
    /// Bumped by every reload: a check that began before one does not remember its result.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the users (an error names the bad entry).
    pub fn start(settings: &SecurityConfig) -> Result<Arc<Authenticator>, String> {
        let users = Users::load(&settings.users, settings.users_file.as_deref())?;
        let rules = Rules::new(&settings.authorization)?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
        Ok(Arc::new(Authenticator {
            backoff: Mutex::new(Backoff::new(
                settings.failures_before_backoff,
                Duration::from_millis(settings.backoff_initial_ms),
                Duration::from_millis(settings.backoff_max_ms),
            )),
            settings: settings.clone(),
            users: RwLock::new(Arc::new(users)),
            rules,
            verified: Mutex::default(),
            key,
            dummy: OnceLock::new(),
            jobs: OnceLock::new(),
            generation: Default::default(),
        }))
    }

    /// The verifier threads: as many as cores, at most [`MAX_VERIFIERS`]. They hold the
    /// authenticator weakly and end when it goes (and its sender with it).
    fn verifiers(self: &Arc<Self>) -> &Mutex<mpsc::SyncSender<Job>> {
        self.jobs.get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel::<Job>(MAX_QUEUED_CHECKS);
            let rx = Arc::new(Mutex::new(rx));
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_VERIFIERS);
            for i in 0..threads {
                let rx = rx.clone();
                let auth = Arc::downgrade(self);
                let spawned =
                    std::thread::Builder::new()
                        .name(format!("auth-{i}"))
                        .spawn(move || loop {
                            let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                                Ok(job) => job,
                                Err(_) => return,
                            };
                            let Some(auth) = auth.upgrade() else { return };
                            if job.reply.is_closed() {
                                // The connection went while it waited: nobody to answer.
                                continue;
                            }
                            let result = auth.verify(&job);
                            let _ = job.reply.send(ToSession::Authenticated(result));
                        });
                if let Err(e) = spawned {
                    warn!("auth: cannot start verifier thread {i}: {e}");
                }
            }
            Mutex::new(tx)
        })
    }

    /// Whether any authorization entry is configured (else everything is allowed).
    pub fn authorizes(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether `who` may do `op` on `destination`.
    pub fn allows(
        &self,
        who: &Principal,
        op: Operation,
        destination: &crate::message::DestinationName,
    ) -> bool {
        self.rules.allows(who, op, destination)
    }

    /// Users configured.
    pub fn users(&self) -> usize {
        self.users.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Decides a CONNECT from `ip` without an argon2 check if it can.
    pub fn check(&self, login: Option<&str>, passcode: Option<&str>, ip: Option<IpAddr>) -> Check {
        let login = login.filter(|l| !l.is_empty());
        if let Some(ip) = ip {
            if self.lock_backoff().blocked(ip, Instant::now()) {
                metrics::counter!("stompbox_auth_refused_total", "reason" => "backoff")
                    .increment(1);
                return Check::Refused(Refusal::BackingOff);
            }
        }
        let users = self.users.read().unwrap_or_else(|p| p.into_inner()).clone();
        match login {
            None if self.settings.anonymous => Check::Accepted(Principal::anonymous(None)),
            None => {
                self.failed(ip);
                Check::Refused(Refusal::Anonymous)
            }
            Some(l) if users.is_empty() && self.settings.anonymous => {
                Check::Accepted(Principal::anonymous(Some(l)))
            }
            Some(l) => {
                let digest = self.digest(l, passcode.unwrap_or(""));
                let verified = self
                    .lock_verified()
                    .get(l)
                    .is_some_and(|d| constant_eq(d, &digest));
                match (verified, users.get(l)) {
                    (true, Some(user)) => Check::Accepted(Principal {
                        login: Some(l.to_string()),
                        groups: user.groups.clone(),
                        authenticated: true,
                    }),
                    _ => Check::Verify,
                }
            }
        }
    }

    /// Decides a CONNECT over TLS whose client certificate, verified against `tls.client_ca`,
    /// has `subject`: it is the user whose `certificate_subject` that is, whatever the
    /// passcode (none needed, none checked), unless `login` names another user (refused).
    /// None when no user has that subject: [`Authenticator::check`] decides, as without a
    /// certificate. The back-off, which is against password guessing, neither holds nor
    /// counts certificate logins.
    pub fn check_certificate(
        &self,
        subject: &Subject,
        login: Option<&str>,
    ) -> Option<Result<Principal, Refusal>> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner()).clone();
        let user = users.by_certificate(subject)?;
        if login.is_some_and(|l| !l.is_empty() && l != user.login) {
            metrics::counter!("stompbox_auth_refused_total", "reason" => "certificate")
                .increment(1);
            return Some(Err(Refusal::OtherUser));
        }
        Some(Ok(Principal {
            login: Some(user.login.clone()),
            groups: user.groups.clone(),
            authenticated: true,
        }))
    }

    /// Queues a password check (see [`Check::Verify`]).
    pub fn submit(self: &Arc<Self>, job: Job) {
        let jobs = self.verifiers().lock().unwrap_or_else(|p| p.into_inner());
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                metrics::counter!("stompbox_auth_refused_total", "reason" => "queue_full")
                    .increment(1);
                warn!("auth: {MAX_QUEUED_CHECKS} password checks already waiting: refused");
                let _ = job.reply.send(ToSession::Authenticated(Err(Refusal::Busy)));
            }
            // No verifier thread could be started.
            Err(mpsc::TrySendError::Disconnected(job)) => {
                let _ = job
                    .reply
                    .send(ToSession::Authenticated(Err(Refusal::Credentials)));
            }
        }
    }

    /// The argon2 check, on a verifier thread.
    fn verify(&self, job: &Job) -> Result<Principal, Refusal> {
        self.verify_now(&job.login, &job.passcode, job.ip)
    }

    /// The argon2 check on the calling thread (which must be one that may block: a verifier
    /// thread, or tokio's blocking pool for the admin endpoint).
    pub fn verify_now(
        &self,
        login: &str,
        passcode: &str,
        ip: Option<IpAddr>,
    ) -> Result<Principal, Refusal> {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let users = self.users.read().unwrap_or_else(|p| p.into_inner()).clone();
        let user = users.get(login);
        let dummy = self.dummy.get_or_init(|| {
            let mut random = [0u8; 32];
            let _ = getrandom::fill(&mut random);
            users::hash_password(&format!("{random:?}")).unwrap_or_default()
        });
        // A user without a hash (certificate logins only) is checked like an unknown one.
        let hash = user.and_then(|u| u.hash.as_deref());
        // Verified with the parameters the hash names.
        let ok = users::hasher()
            .verify_password(passcode.as_bytes(), hash.unwrap_or(dummy.as_str()))
            .is_ok()
            && hash.is_some();
        match (ok, user) {
            (true, Some(user)) => {
                if let Some(ip) = ip {
                    self.lock_backoff().succeeded(ip);
                }
                let mut verified = self.lock_verified();
                // A reload while the check ran may have replaced this password: then the
                // result is good for this CONNECT only, not remembered.
                if self.generation.load(std::sync::atomic::Ordering::Acquire) == generation {
                    verified.insert(login.to_string(), self.digest(login, passcode));
                }
                drop(verified);
                Ok(Principal {
                    login: Some(login.to_string()),
                    groups: user.groups.clone(),
                    authenticated: true,
                })
            }
            _ => {
                self.failed(ip);
                Err(Refusal::Credentials)
            }
        }
    }

    fn failed(&self, ip: Option<IpAddr>) {
        metrics::counter!("stompbox_auth_refused_total", "reason" => "credentials").increment(1);
        if let Some(ip) = ip {
            if let Some(wait) = self.lock_backoff().failed(ip, Instant::now()) {
                warn!("auth: {ip} failed too often: refused for {wait:?}");
            }
        }
    }

    /// Reads the users again (SIGHUP); on error keeps the ones in use.
    pub fn reload(&self) -> Result<usize, String> {
        let users = Users::load(&self.settings.users, self.settings.users_file.as_deref())?;
        let n = users.len();
        // Under the memo's lock, so a check that began before cannot remember the old
        // password after this (see `verify_now`).
        let mut verified = self.lock_verified();
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(users);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        verified.clear();
        drop(verified);
        info!("auth: {n} users loaded");
        Ok(n)
    }

    fn digest(&self, login: &str, passcode: &str) -> [u8; 64] {
        let mut h = Blake2b512::new();
        h.update(self.key);
        h.update((login.len() as u64).to_le_bytes());
        h.update(login.as_bytes());
        h.update(passcode.as_bytes());
        h.finalize().into()
    }

    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_verified(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, [u8; 64]>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Compares secrets without stopping at the first difference (the time does not tell how
/// much of a guess was right). Also for the admin token and the bridges' secret.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_user(anonymous: bool) -> Arc<Authenticator> {
        Authenticator::start(&SecurityConfig {
            anonymous,
            users: vec![
                UserEntry {
                    login: "app".into(),
                    password_hash: Some(users::hash_password("right").unwrap()),
                    certificate_subject: None,
                    groups: vec!["users".into()],
                },
                UserEntry {
                    login: "orders".into(),
                    password_hash: None,
                    certificate_subject: Some("CN=orders-svc,O=Example Corp".into()),
                    groups: vec!["shop".into()],
                },
            ],
            failures_before_backoff: 2,
            ..SecurityConfig::default()
        })
        .unwrap()
    }

    fn verify(
        auth: &Arc<Authenticator>,
        login: &str,
        pass: &str,
        ip: &str,
    ) -> Result<Principal, Refusal> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        match auth.check(Some(login), Some(pass), Some(ip.parse().unwrap())) {
            Check::Accepted(p) => return Ok(p),
            Check::Refused(r) => return Err(r),
            Check::Verify => {}
        }
        auth.submit(Job {
            login: login.into(),
            passcode: pass.into(),
            ip: Some(ip.parse().unwrap()),
            reply: tx,
        });
        match rx.blocking_recv() {
            Some(ToSession::Authenticated(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn passwords_are_checked_and_remembered_once_verified() {
        let auth = with_user(false);
        let p = verify(&auth, "app", "right", "10.0.0.1").unwrap();
        assert!(p.authenticated);
        assert_eq!(p.groups, ["users"]);
        // Verified before: answered at once.
        assert!(matches!(
            auth.check(Some("app"), Some("right"), None),
            Check::Accepted(_)
        ));
        assert!(matches!(
            auth.check(Some("app"), Some("wrong"), None),
            Check::Verify
        ));
        assert_eq!(
            verify(&auth, "app", "wrong", "10.0.0.2"),
            Err(Refusal::Credentials)
        );
        assert_eq!(
            verify(&auth, "nobody", "right", "10.0.0.3"),
            Err(Refusal::Credentials)
        );
        assert!(matches!(
            auth.check(None, None, None),
            Check::Refused(Refusal::Anonymous)
        ));
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_without_a_check() {
        let auth = with_user(false);
        for _ in 0..2 {
            assert_eq!(
                verify(&auth, "app", "guess", "10.0.0.9"),
                Err(Refusal::Credentials)
            );
        }
        // Even the right password, while the address waits; other addresses are not held.
        assert_eq!(
            verify(&auth, "app", "right", "10.0.0.9"),
            Err(Refusal::BackingOff)
        );
        assert!(verify(&auth, "app", "right", "10.0.0.10").is_ok());
    }

    #[test]
    fn anonymous_access_when_enabled() {
        let auth = with_user(true);
        match auth.check(None, None, None) {
            Check::Accepted(p) => assert_eq!(p.groups, [ANONYMOUS]),
            other => panic!("{other:?}"),
        }
        // Users exist: a login is checked even with anonymous access on.
        assert!(matches!(
            auth.check(Some("app"), Some("x"), None),
            Check::Verify
        ));
        let open = Authenticator::start(&SecurityConfig::default()).unwrap();
        assert!(matches!(
            open.check(Some("anyone"), Some("x"), None),
            Check::Accepted(_)
        ));
    }

    #[test]
    fn a_certificate_logs_its_user_in_and_no_other() {
        let auth = with_user(false);
        let orders = Subject::parse("CN=orders-svc,O=Example Corp").unwrap();
        for login in [None, Some(""), Some("orders")] {
            let p = auth.check_certificate(&orders, login).unwrap().unwrap();
            assert_eq!(p.login.as_deref(), Some("orders"));
            assert_eq!(p.groups, ["shop"]);
            assert!(p.authenticated);
        }
        assert_eq!(
            auth.check_certificate(&orders, Some("app")).unwrap(),
            Err(Refusal::OtherUser)
        );
        // A subject no user has: login and passcode decide.
        let stranger = Subject::parse("CN=stranger").unwrap();
        assert!(auth.check_certificate(&stranger, None).is_none());
        // A user without a password cannot log in with one (not even an empty one).
        for pass in ["", "right"] {
            assert_eq!(
                verify(&auth, "orders", pass, "10.0.0.20"),
                Err(Refusal::Credentials)
            );
        }
    }
}
