//! `GET /metrics`: Prometheus text format, rendered by `metrics-exporter-prometheus`.
//!
//! Process-wide events (connections accepted, store batches and commit latency, lease
//! changes) are recorded where they happen through the `metrics` facade. Per-destination
//! figures live as plain counters on their owner shards and are read at scrape time (one
//! `Inspect::Stats` per shard), so the message path pays nothing for them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics::gauge;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{AdminState, Role};
use crate::message::DestinationStats;

/// Store commit latency buckets (seconds): an fsync is 0.1–20 ms on most disks.
const COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];
/// Store batch size buckets (requests per commit).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Installs the process-wide recorder (once; later calls get None and metrics go to the
/// first one, which is what a process with one admin endpoint has).
pub fn install() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("stompbox_store_commit_seconds".into()),
            COMMIT_BUCKETS,
        )
        .ok()?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("stompbox_store_batch_requests".into()),
            BATCH_BUCKETS,
        )
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    Some(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("stompbox_connections", "Client connections currently open");
    describe_gauge!(
        "stompbox_large_frames_budget_bytes",
        Unit::Bytes,
        "The large-frames budget all connections share (limits.large_frames_budget_bytes)"
    );
    describe_gauge!(
        "stompbox_large_frames_held_bytes",
        Unit::Bytes,
        "Bytes of the large-frames budget held by connections (or granted to waiting ones)"
    );
    describe_counter!(
        "stompbox_large_frame_stalls_total",
        "Connections closed for stalling in the middle of a large frame"
    );
    // Listed from the start, so a dashboard sees zero rather than nothing.
    metrics::counter!("stompbox_large_frame_stalls_total").increment(0);
    describe_counter!(
        "stompbox_network_duplicates_total",
        "Forwarded messages dropped (and receipted) as copies of ones accepted before \
         (the network duplicate filter, docs/network.md)"
    );
    metrics::counter!("stompbox_network_duplicates_total").increment(0);
    describe_counter!(
        "stompbox_connections_accepted_total",
        "Client connections accepted"
    );
    describe_histogram!(
        "stompbox_store_commit_seconds",
        Unit::Seconds,
        "Store transaction commit time"
    );
    describe_histogram!(
        "stompbox_store_batch_requests",
        "Store requests per commit (group commit)"
    );
    describe_gauge!(
        "stompbox_lease_role",
        "1 for this broker's current role (label role)"
    );
    describe_gauge!("stompbox_lease_epoch", "Lease epoch while master");
    describe_gauge!(
        "stompbox_network_bridge_up",
        "1 while a network bridge is linked to its peer (docs/network.md)"
    );
    describe_counter!(
        "stompbox_network_forwarded_total",
        "Messages a network bridge forwarded and the peer receipted"
    );
    describe_counter!(
        "stompbox_network_links_total",
        "Links a network bridge made (1 + reconnects)"
    );
    describe_gauge!(
        "stompbox_network_in_flight",
        "Forwarded SENDs awaiting the peer's RECEIPT"
    );
    describe_gauge!(
        "stompbox_network_routes",
        "Local subscriptions feeding a network bridge (static and demand)"
    );
    describe_gauge!(
        "stompbox_network_backlog",
        "Messages waiting here on the queues a network bridge forwards"
    );
}

/// Per-destination families, rendered at scrape time straight from the owners' snapshots:
/// only destinations that exist now appear (idle ones while kept, `idle_timeout_ms`), and each
/// counter is the destination's own total (it restarts at 0 if an idle destination was
/// forgotten and re-created, which Prometheus reads as a counter reset).
const DESTINATION_FAMILIES: &[(&str, &str, &str)] = &[
    (
        "stompbox_messages_enqueued_total",
        "counter",
        "Messages that entered a destination",
    ),
    (
        "stompbox_messages_delivered_total",
        "counter",
        "Deliveries to consumers (redeliveries included)",
    ),
    (
        "stompbox_messages_acked_total",
        "counter",
        "Messages consumed (acked, or delivered in auto mode)",
    ),
    (
        "stompbox_messages_redelivered_total",
        "counter",
        "Messages that came back for redelivery",
    ),
    (
        "stompbox_messages_dead_lettered_total",
        "counter",
        "Messages moved to a dead-letter queue",
    ),
    (
        "stompbox_messages_expired_total",
        "counter",
        "Messages dropped or dead-lettered on expiry",
    ),
    (
        "stompbox_flow_control_events_total",
        "counter",
        "SENDs whose answer was held back because a destination was over its memory limit",
    ),
    (
        "stompbox_slow_consumer_disconnects_total",
        "counter",
        "Subscribers disconnected for holding a topic over its memory limit too long",
    ),
    (
        "stompbox_depth",
        "gauge",
        "Messages waiting, in memory and on disk",
    ),
    (
        "stompbox_on_disk",
        "gauge",
        "Waiting messages held only on disk (paged out)",
    ),
    (
        "stompbox_unacked",
        "gauge",
        "Delivered, not yet acknowledged messages",
    ),
    ("stompbox_consumers", "gauge", "Consumers attached"),
    (
        "stompbox_memory_bytes",
        "gauge",
        "Bytes of messages a destination holds in memory",
    ),
    (
        "stompbox_blocked_producers",
        "gauge",
        "Producers held by flow control right now",
    ),
];

fn destination_values(s: &DestinationStats) -> [u64; 14] {
    let c = &s.counters;
    [
        c.enqueued,
        c.delivered,
        c.acked,
        c.redelivered,
        c.dead_lettered,
        c.expired,
        s.flow_control_events,
        c.slow_consumer_disconnects,
        s.depth,
        s.on_disk,
        s.unacked,
        s.consumers as u64,
        s.memory_bytes,
        s.blocked_producers as u64,
    ]
}

/// Escapes a label value for the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_destinations(out: &mut String, stats: &[DestinationStats]) {
    use std::fmt::Write;
    for (i, (name, kind, help)) in DESTINATION_FAMILIES.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in stats {
            let _ = writeln!(
                out,
                "{name}{{destination=\"{}\",subscription=\"{}\"}} {}",
                label(&s.destination),
                label(&s.subscription),
                destination_values(s)[i]
            );
        }
    }
}

/// `GET /metrics`.
pub async fn render(State(state): State<Arc<AdminState>>) -> Response {
    let status = state.status();
    for role in [Role::Standby, Role::Master, Role::SteppingDown] {
        let name = match role {
            Role::Standby => "standby",
            Role::Master => "master",
            Role::SteppingDown => "stepping-down",
        };
        gauge!("stompbox_lease_role", "role" => name).set(if status.role == role {
            1.0
        } else {
            0.0
        });
    }
    gauge!("stompbox_lease_epoch").set(status.epoch.unwrap_or(0) as f64);
    let mut stats = Vec::new();
    match state.services() {
        Some(services) => {
            gauge!("stompbox_connections").set(services.connections.len() as f64);
            gauge!("stompbox_large_frames_budget_bytes").set(services.frames.total_bytes() as f64);
            gauge!("stompbox_large_frames_held_bytes").set(services.frames.used_bytes() as f64);
            if let Ok(s) = super::api::all_stats(&services).await {
                stats = s;
            }
            record_network(&super::api::network_status(&services).await);
        }
        None => gauge!("stompbox_connections").set(0.0),
    }
    let Some(handle) = &state.metrics else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics recorder not installed",
        )
            .into_response();
    };
    let mut body = handle.render();
    render_destinations(&mut body, &stats);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Per-bridge figures, labelled by connector and peer (one series per configured bridge).
fn record_network(bridges: &[crate::network::status::BridgeStatus]) {
    use metrics::counter;
    for b in bridges {
        let labels = [("connector", b.connector.clone()), ("peer", b.peer.clone())];
        gauge!("stompbox_network_bridge_up", &labels).set(if b.state == "linked" {
            1.0
        } else {
            0.0
        });
        counter!("stompbox_network_forwarded_total", &labels).absolute(b.forwarded);
        counter!("stompbox_network_links_total", &labels).absolute(b.links);
        gauge!("stompbox_network_in_flight", &labels).set(b.in_flight as f64);
        gauge!("stompbox_network_routes", &labels).set(b.routes.len() as f64);
        gauge!("stompbox_network_backlog", &labels).set(b.backlog as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
