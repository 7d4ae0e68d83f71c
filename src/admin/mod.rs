//! The admin HTTP endpoint (axum on its own thread and runtime, so it answers in every role,
//! also while the broker is a standby or stepping down).
//!
//! - `GET /health`: 200 with the role as JSON on the serving master; 503 (same JSON) on a
//!   standby or a broker stepping down. This is what a load balancer's health check uses.
//! - `GET /api/lease`: the `broker_lease` row.
//! - `GET /metrics`: Prometheus text (see `metrics.rs`).
//! - `GET /api/destinations`, `/api/connections`, `/api/subscriptions`,
//!   `/api/messages?destination=…` (browse), `POST /api/purge?destination=…`,
//!   `POST /api/delete?destination=…`: the admin API (`api.rs`, docs/admin-api.md).
//! - `GET /`: the web console (`console.html`).
//! - `GET /client/`: a STOMP over WebSocket client page, and `/client/stomp.umd.min.js`, the
//!   @stomp/stompjs bundle it loads (both from clients/js/browser/, embedded at build time).
//!
//! Every request first passes `guard.rs`: the `Host` check against DNS rebinding, and for a
//! state change the `Origin` and `X-Stompbox-Request` checks against cross-site requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::config::AdminConfig;
use guard::Guard;

/// What this broker is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Waiting for the lease; client listener closed.
    Standby,
    /// Holding the lease and serving clients.
    Master,
    /// Lost the lease (or shutting down): closing clients.
    SteppingDown,
}

/// The role as `/health` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub role: Role,
    /// The lease epoch while master.
    pub epoch: Option<u64>,
    /// This broker's lease holder name.
    pub holder: String,
    /// The STOMP address while master.
    pub stomp_address: Option<String>,
}

mod api;
mod auth;
mod guard;
pub mod metrics;

/// State shared between the broker's life cycle and the HTTP handlers.
pub struct AdminState {
    status: Mutex<Status>,
    db_path: PathBuf,
    /// The serving broker's shared services (None unless master).
    services: Mutex<Option<Arc<crate::session::Services>>>,
    metrics: Option<PrometheusHandle>,
}

impl AdminState {
    /// Starts as a standby.
    pub fn new(holder: String, db_path: PathBuf) -> Arc<Self> {
        Arc::new(AdminState {
            status: Mutex::new(Status {
                role: Role::Standby,
                epoch: None,
                holder,
                stomp_address: None,
            }),
            db_path,
            services: Mutex::new(None),
            metrics: metrics::install(),
        })
    }

    /// Attaches (master) or detaches (standby) the serving broker.
    pub fn set_services(&self, services: Option<Arc<crate::session::Services>>) {
        *self.services.lock().unwrap_or_else(|p| p.into_inner()) = services;
    }

    /// The serving broker's services, if this broker is the master.
    pub fn services(&self) -> Option<Arc<crate::session::Services>> {
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets this broker's lease holder name (known once the admin address is bound).
    pub fn set_holder(&self, holder: &str) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.holder = holder.to_string();
    }

    /// Records a role change.
    pub fn set(&self, role: Role, epoch: Option<u64>, stomp_address: Option<String>) {
        // A poisoned lock only means a panic while copying these fields: keep going.
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.role = role;
        s.epoch = epoch;
        s.stomp_address = stomp_address;
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Binds the admin listener at `config.bind` (so a bad address fails at start) and serves it
/// on a thread of its own. Returns the bound address.
pub fn start(
    config: &AdminConfig,
    state: Arc<AdminState>,
    users: Arc<crate::security::Authenticator>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let token = match &config.token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("admin.token_file {}: {e}", path.display()),
                )
            })?;
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(std::io::Error::other(format!(
                    "admin.token_file {}: the token must be at least 16 characters",
                    path.display()
                )));
            }
            Some(token)
        }
    };
    let required = config.needs_auth();
    if required && token.is_none() && users.users() == 0 {
        log::warn!(
            "admin: {} needs credentials (admin.auth) but no [security] users and no \
             admin.token_file are configured: only {:?} are reachable",
            config.bind,
            config.open_paths
        );
    }
    let auth = Arc::new(auth::AdminAuth {
        required,
        group: config.admin_group.clone(),
        token,
        open_paths: config.open_paths.clone(),
        auth: users,
        checks: Arc::new(tokio::sync::Semaphore::new(auth::MAX_CHECKS)),
    });
    let listener = std::net::TcpListener::bind(config.bind)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    // Built from the bound address, so a port 0 bind admits the port it got.
    let guard = Arc::new(Guard::new(addr, config.allowed_hosts.clone()));
    let handle = std::thread::Builder::new()
        .name("admin-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("admin: cannot build runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::error!("admin: cannot register listener: {e}");
                        return;
                    }
                };
                let app =
                    router(state, guard, auth).into_make_service_with_connect_info::<SocketAddr>();
                if let Err(e) = axum::serve(listener, app).await {
                    log::error!("admin: server failed: {e}");
                }
            });
        })?;
    Ok((addr, handle))
}

fn router(state: Arc<AdminState>, guard: Arc<Guard>, auth: Arc<auth::AdminAuth>) -> Router {
    Router::new()
        .route("/", get(api::console))
        // Relative links in the page (its bundle, the console) need the trailing slash.
        .route("/client", get(|| async { Redirect::permanent("/client/") }))
        .route("/client/", get(api::client_page))
        .route("/client/stomp.umd.min.js", get(api::client_bundle))
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .route("/api/lease", get(lease))
        .route("/api/destinations", get(api::destinations))
        .route("/api/connections", get(api::connections))
        .route("/api/network", get(api::network))
        .route("/api/subscriptions", get(api::subscriptions))
        .route("/api/messages", get(api::browse))
        .route("/api/purge", axum::routing::post(api::purge))
        .route("/api/delete", axum::routing::post(api::delete))
        .with_state(state)
        // The Host check first (outermost), then credentials.
        .layer(axum::middleware::from_fn_with_state(auth, auth::enforce))
        .layer(axum::middleware::from_fn_with_state(guard, guard::enforce))
}

async fn health(State(state): State<Arc<AdminState>>) -> Response {
    let status = state.status();
    let code = if status.role == Role::Master {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(status)).into_response()
}

async fn lease(State(state): State<Arc<AdminState>>) -> Response {
    let path = state.db_path.clone();
    let row = tokio::task::spawn_blocking(move || {
        let conn = crate::store::open_read_only(&path)?;
        crate::lease::read(&conn)
    })
    .await;
    match row {
        Ok(Ok(row)) => Json(row).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
