//! The admin API: JSON over HTTP (docs/admin-api.md). Questions about destinations go to
//! their owner shards as `ToOwner::Inspect` and are answered on those shards' threads.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::AdminState;
use crate::message::{DestinationName, DestinationStats};
use crate::message::{Inspect, QueueKey, ToOwner};
use crate::session::Services;

/// How long an API call waits for the owner shards.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);

/// Names one queue (or durable subscription) in a query string.
#[derive(Debug, Deserialize)]
pub struct QueueQuery {
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

impl QueueQuery {
    fn key(&self) -> Result<QueueKey, ApiError> {
        let destination = DestinationName::parse(&self.destination)
            .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
        let subscription = self
            .subscription
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(Arc::from);
        Ok(QueueKey {
            destination,
            subscription,
        })
    }
}

/// An API error: a status and a message, rendered as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (self.0, Json(Body { error: self.1 })).into_response()
    }
}

pub(super) fn error(code: StatusCode, message: &str) -> ApiError {
    ApiError(code, message.to_string())
}

fn master(state: &AdminState) -> Result<Arc<Services>, ApiError> {
    state.services().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not master: this broker is a standby",
        )
    })
}

/// Every destination's stats, from every shard.
pub async fn all_stats(services: &Services) -> Result<Vec<DestinationStats>, ApiError> {
    let mut waits = Vec::new();
    for shard in 0..services.router.shards() {
        let (reply, rx) = oneshot::channel();
        services
            .router
            .post(shard, ToOwner::Inspect(Inspect::Stats { reply }));
        waits.push(rx);
    }
    let mut out = Vec::new();
    for rx in waits {
        match tokio::time::timeout(OWNER_TIMEOUT, rx).await {
            Ok(Ok(mut v)) => out.append(&mut v),
            _ => {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "a shard did not answer",
                ))
            }
        }
    }
    out.sort_by(|a, b| (&a.destination, &a.subscription).cmp(&(&b.destination, &b.subscription)));
    Ok(out)
}

async fn ask<T>(
    services: &Services,
    key: &QueueKey,
    make: impl FnOnce(oneshot::Sender<T>) -> Inspect,
) -> Result<T, ApiError> {
    let (reply, rx) = oneshot::channel();
    services.router.post(
        services.router.owner_of(&key.destination),
        ToOwner::Inspect(make(reply)),
    );
    match tokio::time::timeout(OWNER_TIMEOUT, rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the owner shard did not answer",
        )),
    }
}

/// `GET /api/destinations`.
pub async fn destinations(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<DestinationStats>>, ApiError> {
    let services = master(&state)?;
    Ok(Json(all_stats(&services).await?))
}

/// `GET /api/connections`.
pub async fn connections(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<crate::session::ConnectionInfo>>, ApiError> {
    Ok(Json(master(&state)?.connections.list()))
}

/// The bridges with their backlog: messages waiting here on each route's destinations (a
/// wildcard route sums the queues it matches; a durable route counts its durable
/// subscription).
pub async fn network_status(services: &Services) -> Vec<crate::network::status::BridgeStatus> {
    let mut bridges = services.network.list();
    if bridges.iter().all(|b| b.routes.is_empty()) {
        return bridges;
    }
    let stats = all_stats(services).await.unwrap_or_default();
    for b in &mut bridges {
        b.backlog = b
            .routes
            .iter()
            .map(|r| match &r.subscription {
                // A durable route: what its durable subscription keeps.
                Some(key) => stats
                    .iter()
                    .filter(|s| s.kind == "durable" && &s.subscription == key)
                    .filter(|s| s.destination == r.destination)
                    .map(|s| s.depth)
                    .sum::<u64>(),
                None => {
                    let Ok(route) = DestinationName::parse(&r.destination) else {
                        return 0;
                    };
                    stats
                        .iter()
                        .filter(|s| s.kind == "queue")
                        .filter(|s| {
                            DestinationName::parse(&s.destination).is_ok_and(|d| route.covers(&d))
                        })
                        .map(|s| s.depth)
                        .sum::<u64>()
                }
            })
            .sum();
    }
    bridges
}

/// `GET /api/network`.
pub async fn network(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<crate::network::status::BridgeStatus>>, ApiError> {
    let services = master(&state)?;
    Ok(Json(network_status(&services).await))
}

/// One subscription with the connection it belongs to.
#[derive(Serialize)]
pub struct SubscriptionRow {
    connection: u64,
    client_id: Option<String>,
    peer: String,
    #[serde(flatten)]
    subscription: crate::session::SubscriptionInfo,
}

/// `GET /api/subscriptions`.
pub async fn subscriptions(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<SubscriptionRow>>, ApiError> {
    let services = master(&state)?;
    let rows = services
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
    Ok(Json(rows))
}

/// `GET /api/messages?destination=/queue/x[&subscription=c:n][&offset=0][&limit=50]`.
pub async fn browse(
    State(state): State<Arc<AdminState>>,
    Query(t): Query<QueueQuery>,
) -> Result<Json<Vec<crate::message::BrowsedMessage>>, ApiError> {
    let services = master(&state)?;
    let key = t.key()?;
    let (offset, limit) = (t.offset.unwrap_or(0), t.limit.unwrap_or(50).min(1000));
    let inspect = |reply| Inspect::Browse {
        key: key.clone(),
        offset,
        limit,
        reply,
    };
    ask(&services, &key, inspect)
        .await?
        .map(Json)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such queue"))
}

/// The answer to a purge or delete.
#[derive(Serialize)]
pub struct Purged {
    destination: String,
    purged: u64,
}

/// `POST /api/purge?destination=/queue/x[&subscription=c:n]`: drops every waiting message
/// (delivered, unacked ones stay with their consumers).
pub async fn purge(
    State(state): State<Arc<AdminState>>,
    Query(t): Query<QueueQuery>,
) -> Result<Json<Purged>, ApiError> {
    let services = master(&state)?;
    let key = t.key()?;
    let n = ask(&services, &key, |reply| Inspect::Purge {
        key: key.clone(),
        reply,
    })
    .await?;
    Ok(Json(Purged {
        destination: t.destination,
        purged: n.unwrap_or(0),
    }))
}

/// `POST /api/delete?destination=/queue/x[&subscription=c:n]`: removes a destination without
/// consumers, with its messages (409 while it has consumers).
pub async fn delete(
    State(state): State<Arc<AdminState>>,
    Query(t): Query<QueueQuery>,
) -> Result<Json<Purged>, ApiError> {
    let services = master(&state)?;
    let key = t.key()?;
    match ask(&services, &key, |reply| Inspect::Delete {
        key: key.clone(),
        reply,
    })
    .await?
    {
        Ok(n) => Ok(Json(Purged {
            destination: t.destination,
            purged: n,
        })),
        Err(why) => Err(error(StatusCode::CONFLICT, &why)),
    }
}

/// `GET /`: the web console (plain HTML and JS, no build step).
pub async fn console() -> Html<&'static str> {
    Html(include_str!("console.html"))
}

/// `GET /client/`: the STOMP over WebSocket web client (clients/js/browser/index.html).
pub async fn client_page() -> Html<&'static str> {
    Html(include_str!("../../clients/js/browser/index.html"))
}

/// `GET /client/stomp.umd.min.js`: the @stomp/stompjs bundle the client page loads, vendored
/// in clients/js/browser/ (VENDORED.md) so that `cargo build` needs no npm.
pub async fn client_bundle() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../clients/js/browser/stomp.umd.min.js"),
    )
}
