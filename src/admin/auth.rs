//! Credentials for the admin endpoint (docs/security.md, "Admin endpoint"): when
//! `admin.auth` asks for them (by default whenever the endpoint is bound beyond loopback),
//! every request except `admin.open_paths` (`/health`, `/metrics`) needs either HTTP Basic
//! credentials of a `[security]` user in `admin.admin_group`, or `Authorization: Bearer`
//! with the token of `admin.token_file`. Without them: 401 with `WWW-Authenticate: Basic`, so
//! a browser asks for them and then sends them with every request of the console.
//!
//! The password check is the STOMP one (`security::Authenticator`): argon2id on a blocking
//! thread, never on the endpoint's single runtime thread, remembered once verified, and the
//! same per-address back-off.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::security::{constant_eq, Authenticator, Check};

/// What the endpoint accepts as credentials; built once at start.
pub struct AdminAuth {
    pub required: bool,
    pub group: String,
    pub token: Option<String>,
    pub open_paths: Vec<String>,
    pub auth: Arc<Authenticator>,
    /// Password checks running at once for this endpoint (each takes 19 MiB while it runs);
    /// past it requests get 503 instead of queueing blocking threads.
    pub checks: Arc<tokio::sync::Semaphore>,
}

/// Password checks the admin endpoint runs at once.
pub const MAX_CHECKS: usize = 2;

/// Why a request was refused (logged; the client sees 401 or 403 only).
#[derive(Debug, PartialEq, Eq)]
enum Denied {
    NoCredentials,
    BadCredentials,
    NotInGroup(String),
    Busy,
}

impl AdminAuth {
    /// Checks a request's `Authorization` header.
    async fn check(
        &self,
        authorization: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<(), Denied> {
        let value = authorization.ok_or(Denied::NoCredentials)?;
        let (scheme, rest) = value.split_once(' ').ok_or(Denied::BadCredentials)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return match &self.token {
                Some(token) if constant_eq(token.as_bytes(), rest.trim().as_bytes()) => Ok(()),
                _ => Err(Denied::BadCredentials),
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Denied::BadCredentials);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(Denied::BadCredentials)?;
        let (login, passcode) = decoded.split_once(':').ok_or(Denied::BadCredentials)?;
        if login.is_empty() || self.auth.users() == 0 {
            // No users: nobody can be in the admin group (anonymous logins are for STOMP).
            return Err(Denied::BadCredentials);
        }
        let ip = peer.map(|p| p.ip());
        let principal = match self.auth.check(Some(login), Some(passcode), ip) {
            Check::Accepted(p) => p,
            Check::Refused(_) => return Err(Denied::BadCredentials),
            Check::Verify => {
                let permit = self
                    .checks
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Denied::Busy)?;
                let (auth, login, passcode) =
                    (self.auth.clone(), login.to_string(), passcode.to_string());
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    auth.verify_now(&login, &passcode, ip)
                })
                .await
                .map_err(|_| Denied::BadCredentials)?
                .map_err(|_| Denied::BadCredentials)?
            }
        };
        if !principal.authenticated {
            return Err(Denied::BadCredentials);
        }
        match principal.groups.contains(&self.group) {
            true => Ok(()),
            false => Err(Denied::NotInGroup(login.to_string())),
        }
    }
}

/// The middleware: open paths pass; others need credentials when they are required.
pub async fn enforce(
    State(admin): State<Arc<AdminAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if !admin.required || admin.open_paths.iter().any(|p| p == request.uri().path()) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match admin.check(authorization.as_deref(), peer).await {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            let path = request.uri().path().to_string();
            match &denied {
                Denied::NoCredentials => log::debug!("admin: {path} without credentials"),
                other => log::warn!("admin: refused {path} from {peer:?}: {other:?}"),
            }
            let (status, text) = match denied {
                Denied::NotInGroup(_) => (
                    StatusCode::FORBIDDEN,
                    "this user is not in admin.admin_group",
                ),
                Denied::Busy => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many password checks running; retry",
                ),
                _ => (StatusCode::UNAUTHORIZED, "credentials required"),
            };
            let mut response = super::api::error(status, text).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"stompbox admin\", charset=\"UTF-8\""),
                );
            }
            response
        }
    }
}
