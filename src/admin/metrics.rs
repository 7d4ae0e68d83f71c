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
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{AdminState, Role};

/// Store commit latency buckets (seconds): an fsync is 0.1–20 ms on most disks.
const COMMIT_BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0];
/// Store batch size buckets (requests per commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

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
    describe_counter!("stompbox_connections_accepted_total", "Client connections accepted");
    describe_counter!("stompbox_messages_in_total", "Messages that entered a destination");
    describe_counter!("stompbox_messages_out_total", "Deliveries to consumers (redeliveries included)");
    describe_counter!("stompbox_messages_acked_total", "Messages consumed (acked, or delivered in auto mode)");
    describe_gauge!("stompbox_queue_depth", "Messages waiting, in memory and on disk");
    describe_gauge!("stompbox_queue_on_disk", "Waiting messages held only on disk (paged out)");
    describe_gauge!("stompbox_unacked", "Delivered, not yet acknowledged messages");
    describe_gauge!("stompbox_consumers", "Consumers attached");
    describe_gauge!(
        "stompbox_destination_memory_bytes",
        Unit::Bytes,
        "Bytes of messages a destination holds in memory"
    );
    describe_counter!("stompbox_redeliveries_total", "Messages that came back for redelivery");
    describe_counter!("stompbox_dead_letters_total", "Messages moved to a dead-letter queue");
    describe_counter!("stompbox_expired_total", "Messages dropped or dead-lettered on expiry");
    describe_counter!(
        "stompbox_flow_control_events_total",
        "SENDs whose answer was held back because a destination was over its memory limit"
    );
    describe_gauge!("stompbox_blocked_producers", "Producers held by flow control right now");
    describe_histogram!("stompbox_store_commit_seconds", Unit::Seconds, "Store transaction commit time");
    describe_histogram!("stompbox_store_batch_requests", "Store requests per commit (group commit)");
    describe_gauge!("stompbox_lease_role", "1 for this broker's current role (label role)");
    describe_gauge!("stompbox_lease_epoch", "Lease epoch while master");
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
        gauge!("stompbox_lease_role", "role" => name).set(if status.role == role { 1.0 } else { 0.0 });
    }
    gauge!("stompbox_lease_epoch").set(status.epoch.unwrap_or(0) as f64);
    if let Some(services) = state.services() {
        gauge!("stompbox_connections").set(services.connections.len() as f64);
        if let Ok(stats) = super::api::all_stats(&services).await {
            for s in stats {
                let labels = [("destination", s.destination.clone()), ("subscription", s.subscription.clone())];
                counter!("stompbox_messages_in_total", &labels).absolute(s.counters.enqueued);
                counter!("stompbox_messages_out_total", &labels).absolute(s.counters.delivered);
                counter!("stompbox_messages_acked_total", &labels).absolute(s.counters.acked);
                counter!("stompbox_redeliveries_total", &labels).absolute(s.counters.redelivered);
                counter!("stompbox_dead_letters_total", &labels).absolute(s.counters.dead_lettered);
                counter!("stompbox_expired_total", &labels).absolute(s.counters.expired);
                counter!("stompbox_flow_control_events_total", &labels).absolute(s.flow_control_events);
                gauge!("stompbox_queue_depth", &labels).set(s.depth as f64);
                gauge!("stompbox_queue_on_disk", &labels).set(s.on_disk as f64);
                gauge!("stompbox_unacked", &labels).set(s.unacked as f64);
                gauge!("stompbox_consumers", &labels).set(s.consumers as f64);
                gauge!("stompbox_destination_memory_bytes", &labels).set(s.memory_bytes as f64);
                gauge!("stompbox_blocked_producers", &labels).set(s.blocked_producers as f64);
            }
        }
    } else {
        gauge!("stompbox_connections").set(0.0);
    }
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "metrics recorder not installed").into_response(),
    }
}
