//! The admin API: JSON over HTTP (docs/admin-api.md). Questions about destinations go to
//! their owner shards as `ToOwner::Inspect` and are answered on those shards' threads.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::AdminState;
use crate::destination::{DestinationName, DestinationStats};
use crate::message::{Inspect, QueueKey, ToOwner};
use crate::session::Services;

/// How long an API call waits for the owner shards.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);

/// Names one queue (or durable subscription) in a query string.
#[derive(Debug, Deserialize)]
pub struct Target {
    /// `/queue/NAME` or `/topic/NAME`.
    pub destination: String,
    /// `client_id:name` of a durable subscription of the topic.
    #[serde(default)]
    pub subscription: Option<String>,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Target {
    fn key(&self) -> Result<QueueKey, Response> {
        let destination = DestinationName::parse(&self.destination)
            .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
        let subscription = self.subscription.as_deref().filter(|s| !s.is_empty()).map(Arc::from);
        Ok(QueueKey { destination, subscription })
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(ErrorBody { error: message })).into_response()
}

fn master(state: &AdminState) -> Result<Arc<Services>, Response> {
    state
        .services()
        .ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "not master: this broker is a standby"))
}

/// Every destination's stats, from every shard.
pub async fn all_stats(services: &Services) -> Result<Vec<DestinationStats>, Response> {
    let mut waits = Vec::new();
    for shard in 0..services.router.shards() {
        let (reply, rx) = oneshot::channel();
        services.router.post(shard, ToOwner::Inspect(Inspect::Stats { reply }));
        waits.push(rx);
    }
    let mut out = Vec::new();
    for rx in waits {
        match tokio::time::timeout(OWNER_TIMEOUT, rx).await {
            Ok(Ok(mut v)) => out.append(&mut v),
            _ => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "a shard did not answer")),
        }
    }
    out.sort_by(|a, b| (&a.destination, &a.subscription).cmp(&(&b.destination, &b.subscription)));
    Ok(out)
}

async fn ask<T>(services: &Services, key: &QueueKey, make: impl FnOnce(oneshot::Sender<T>) -> Inspect) -> Result<T, Response> {
    let (reply, rx) = oneshot::channel();
    services.router.post(services.router.owner_of(&key.destination), ToOwner::Inspect(make(reply)));
    match tokio::time::timeout(OWNER_TIMEOUT, rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(error(StatusCode::SERVICE_UNAVAILABLE, "the owner shard did not answer")),
    }
}

/// `GET /api/destinations`.
pub async fn destinations(State(state): State<Arc<AdminState>>) -> Response {
    let services = match master(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match all_stats(&services).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// `GET /api/connections`.
pub async fn connections(State(state): State<Arc<AdminState>>) -> Response {
    match master(&state) {
        Ok(s) => Json(s.connections.list()).into_response(),
        Err(r) => r,
    }
}

/// One subscription with the connection it belongs to.
#[derive(Serialize)]
struct SubscriptionRow {
    connection: u64,
    client_id: Option<String>,
    peer: String,
    #[serde(flatten)]
    subscription: crate::session::SubscriptionInfo,
}

/// `GET /api/subscriptions`.
pub async fn subscriptions(State(state): State<Arc<AdminState>>) -> Response {
    let services = match master(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rows: Vec<SubscriptionRow> = services
        .connections
        .list()
        .into_iter()
        .flat_map(|c| {
            let (id, client_id, peer) = (c.id, c.client_id.clone(), c.peer.clone());
            c.subscriptions.into_iter().map(move |s| SubscriptionRow {
                connection: id,
                client_id: client_id.clone(),
                peer: peer.clone(),
                subscription: s,
            })
        })
        .collect();
    Json(rows).into_response()
}

/// `GET /api/messages?destination=/queue/x[&subscription=c:n][&offset=0][&limit=50]`.
pub async fn browse(State(state): State<Arc<AdminState>>, Query(t): Query<Target>) -> Response {
    let services = match master(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let key = match t.key() {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (offset, limit) = (t.offset.unwrap_or(0), t.limit.unwrap_or(50).min(1000));
    match ask(&services, &key, |reply| Inspect::Browse { key: key.clone(), offset, limit, reply }).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such queue"),
        Err(r) => r,
    }
}

#[derive(Serialize)]
struct Purged {
    destination: String,
    purged: u64,
}

/// `POST /api/purge?destination=/queue/x[&subscription=c:n]`: drops every waiting message
/// (delivered, unacked ones stay with their consumers).
pub async fn purge(State(state): State<Arc<AdminState>>, Query(t): Query<Target>) -> Response {
    let services = match master(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let key = match t.key() {
        Ok(k) => k,
        Err(r) => return r,
    };
    match ask(&services, &key, |reply| Inspect::Purge { key: key.clone(), reply }).await {
        Ok(Some(n)) => Json(Purged { destination: t.destination, purged: n }).into_response(),
        Ok(None) => Json(Purged { destination: t.destination, purged: 0 }).into_response(),
        Err(r) => r,
    }
}

/// `POST /api/delete?destination=/queue/x[&subscription=c:n]`: removes a destination without
/// consumers, with its messages (409 while it has consumers).
pub async fn delete(State(state): State<Arc<AdminState>>, Query(t): Query<Target>) -> Response {
    let services = match master(&state) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let key = match t.key() {
        Ok(k) => k,
        Err(r) => return r,
    };
    match ask(&services, &key, |reply| Inspect::Delete { key: key.clone(), reply }).await {
        Ok(Ok(n)) => Json(Purged { destination: t.destination, purged: n }).into_response(),
        Ok(Err(why)) => error(StatusCode::CONFLICT, &why),
        Err(r) => r,
    }
}

/// `GET /`: the web console (plain HTML and JS, no build step).
pub async fn console() -> Html<&'static str> {
    Html(include_str!("console.html"))
}
