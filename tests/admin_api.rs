//! The admin endpoint against a live broker (docs/admin-api.md): `/metrics` scraped before and
//! after messages flow (every family present, each moving), every `/api/` endpoint including
//! purge and delete, a standby answering 503, and the guard against cross-site requests (CSRF)
//! and DNS rebinding: `Host`, `Origin` and the `X-Stompbox-Request` header.
//!
//! HTTP is spoken by hand over `std::net` (one request per connection, `support::http`), like
//! the STOMP in `support`: the tests need no HTTP client crate and see exactly what the broker
//! sends.

mod support;

use std::net::SocketAddr;

use serde_json::Value;

use support::http::{exchange, get, post, request, request_with, Metrics, Response, OWN_HEADER};
use support::{eventually, now_ms, unique, Broker, WAIT};

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn metrics_families_are_present_and_move_when_messages_flow() {
    // A small memory limit so persistent messages page out (on_disk) and non-persistent ones
    // hit flow control; one redelivery before the DLQ.
    let broker = Broker::start_with_config(
        "[destinations]\nmemory_limit_bytes = 4096\nmax_redeliveries = 1\n",
    );
    let admin = broker.admin_addr();
    let work = format!("/queue/{}", unique("work"));
    let expiring = format!("/queue/{}", unique("expiring"));
    let paged = format!("/queue/{}", unique("paged"));
    let limited = format!("/queue/{}", unique("limited"));
    let topic = format!("/topic/{}", unique("news"));
    let dlq = "/queue/ActiveMQ.DLQ";

    let before = Metrics::scrape(admin);
    assert_eq!(
        before.value("stompbox_lease_role", &[("role", "master")]),
        Some(1.0)
    );
    assert_eq!(
        before.value("stompbox_lease_role", &[("role", "standby")]),
        Some(0.0)
    );
    assert_eq!(before.value("stompbox_lease_epoch", &[]), Some(1.0));
    assert_eq!(before.value("stompbox_connections", &[]), Some(0.0));
    // The default large-frames budget, none of it held at rest.
    assert_eq!(
        before.value("stompbox_large_frames_budget_bytes", &[]),
        Some(268_435_456.0)
    );
    assert_eq!(
        before.value("stompbox_large_frames_held_bytes", &[]),
        Some(0.0)
    );
    assert_eq!(
        before.value("stompbox_messages_enqueued_total", &dest(&work)),
        None
    );

    // Persistent sends, a consumer that acks four, NACKs one twice: one redelivery, then the
    // DLQ (max_redeliveries = 1).
    let mut producer = broker.connect_with("1.2", &[("client-id", "metrics-producer")]);
    for i in 0..5 {
        producer.send_persistent(&work, &format!("work {i}"), &[]);
    }
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&work, "w", "client-individual", &[]);
    let got = consumer.receive(5, WAIT);
    for m in &got[..4] {
        consumer.ack(m);
    }
    consumer.nack(&got[4]);
    let again = consumer.expect_message();
    assert_eq!(again.text(), "work 4");
    consumer.nack(&again);

    // An expiring message nobody consumes: the once-a-second sweep drops it.
    producer.send_persistent(
        &expiring,
        "soon gone",
        &[("expires", &(now_ms() + 200).to_string())],
    );

    // More than memory_limit_bytes of persistent messages: the rest wait on disk only.
    let kib = "x".repeat(1024);
    for _ in 0..10 {
        producer.send_persistent(&paged, &kib, &[]);
    }

    // Non-persistent sends beyond the limit: the broker holds the producer's receipts back.
    let mut flooder = broker.connect("1.2");
    for i in 0..10 {
        flooder.send(&limited, &kib, &[("receipt", &format!("fc-{i}"))]);
    }

    // A topic subscriber (auto ack).
    let mut listener = broker.connect("1.2");
    listener.subscribe(&topic, "t", "auto", &[]);
    for i in 0..3 {
        producer.send_sync(&topic, &format!("news {i}"), &[]);
    }
    assert_eq!(listener.receive(3, WAIT).len(), 3);

    // Wait for what happens in the background: the DLQ move, the expiry sweep, flow control.
    eventually(WAIT, || {
        let d = destinations(admin);
        let ok = row(&d, &work, "")["dead_lettered"] == 1
            && row(&d, &expiring, "")["expired"] == 1
            && row(&d, &limited, "")["blocked_producers"].as_u64() == Some(1)
            && row(&d, &paged, "")["on_disk"].as_u64() >= Some(1);
        if ok {
            Ok(())
        } else {
            Err(d)
        }
    });

    let after = Metrics::scrape(admin);
    for family in FAMILIES {
        assert!(
            after.has_family(family),
            "no {family} in /metrics:\n{}",
            after.text
        );
    }
    let w = dest(&work);
    assert_eq!(
        after.value("stompbox_messages_enqueued_total", &w),
        Some(5.0)
    );
    assert_eq!(
        after.value("stompbox_messages_delivered_total", &w),
        Some(6.0)
    );
    assert_eq!(after.value("stompbox_messages_acked_total", &w), Some(4.0));
    assert_eq!(
        after.value("stompbox_messages_redelivered_total", &w),
        Some(1.0)
    );
    assert_eq!(
        after.value("stompbox_messages_dead_lettered_total", &w),
        Some(1.0)
    );
    assert_eq!(after.value("stompbox_consumers", &w), Some(1.0));
    assert_eq!(after.value("stompbox_depth", &w), Some(0.0));
    assert_eq!(after.value("stompbox_unacked", &w), Some(0.0));
    assert_eq!(after.value("stompbox_depth", &dest(dlq)), Some(1.0));
    assert_eq!(
        after.value("stompbox_messages_enqueued_total", &dest(dlq)),
        Some(1.0)
    );
    assert_eq!(
        after.value("stompbox_messages_expired_total", &dest(&expiring)),
        Some(1.0)
    );
    let p = dest(&paged);
    assert_eq!(after.value("stompbox_depth", &p), Some(10.0));
    assert!(after.value("stompbox_on_disk", &p) >= Some(1.0));
    assert!(after.value("stompbox_memory_bytes", &p) >= Some(1024.0));
    let l = dest(&limited);
    // One producer (the flooder), however many of its SENDs are held.
    assert_eq!(after.value("stompbox_blocked_producers", &l), Some(1.0));
    assert!(after.value("stompbox_flow_control_events_total", &l) >= Some(1.0));
    let t = dest(&topic);
    assert_eq!(
        after.value("stompbox_messages_enqueued_total", &t),
        Some(3.0)
    );
    assert_eq!(
        after.value("stompbox_messages_delivered_total", &t),
        Some(3.0)
    );
    assert_eq!(after.value("stompbox_messages_acked_total", &t), Some(3.0));
    assert_eq!(after.value("stompbox_consumers", &t), Some(1.0));
    assert_eq!(after.value("stompbox_connections", &[]), Some(4.0));
    assert!(
        after.value("stompbox_connections_accepted_total", &[])
            > before
                .value("stompbox_connections_accepted_total", &[])
                .or(Some(0.0))
    );
    for histogram in [
        "stompbox_store_commit_seconds",
        "stompbox_store_batch_requests",
    ] {
        let count = format!("{histogram}_count");
        let moved = after.value(&count, &[]).unwrap_or(0.0);
        assert!(
            moved > before.value(&count, &[]).unwrap_or(0.0),
            "{count} did not move"
        );
        let inf = after.value(&format!("{histogram}_bucket"), &[("le", "+Inf")]);
        assert_eq!(inf, Some(moved), "{histogram} +Inf bucket equals its count");
    }
    assert_eq!(
        after.value("stompbox_lease_role", &[("role", "master")]),
        Some(1.0)
    );

    // A consumer drains the limited queue: the producer's receipts all come through.
    let mut drain = broker.connect("1.2");
    drain.subscribe(&limited, "d", "auto", &[]);
    for i in 0..10 {
        flooder.await_receipt(&format!("fc-{i}"), WAIT);
    }
    eventually(WAIT, || {
        let m = Metrics::scrape(admin);
        match (
            m.value("stompbox_blocked_producers", &l),
            m.value("stompbox_messages_delivered_total", &l),
        ) {
            (Some(0.0), Some(10.0)) => Ok(()),
            other => Err(other),
        }
    });
}

#[test]
fn api_endpoints_answer_on_the_master() {
    let broker = Broker::start();
    let admin = broker.admin_addr();

    // /health and /api/lease name the same holder and epoch.
    let health = get(admin, "/health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.content_type(), Some("application/json"));
    let health = health.json();
    assert_eq!(health["role"], "master");
    assert_eq!(health["epoch"], 1);
    assert_eq!(health["stomp_address"], broker.addr().to_string());
    let lease = ok_json(get(admin, "/api/lease"));
    assert_eq!(lease["holder"], health["holder"]);
    assert_eq!(lease["epoch"], 1);
    assert_eq!(lease["admin_address"], admin.to_string());
    assert_eq!(lease["stomp_address"], broker.addr().to_string());
    assert!(lease["expires_at"].as_u64() > lease["acquired_at"].as_u64());

    // Connections and subscriptions: a durable and a plain topic subscriber on 1.2, a
    // producer on 1.1.
    let topic = format!("/topic/{}", unique("api-topic"));
    let queue = format!("/queue/{}", unique("api-queue"));
    let mut durable = broker.connect_with("1.2", &[("client-id", "api-durable")]);
    durable.subscribe(
        &topic,
        "d1",
        "client",
        &[("activemq.subscriptionName", "dur")],
    );
    let mut plain = broker.connect("1.2");
    plain.subscribe(&topic, "p1", "auto", &[]);
    let mut producer = broker.connect_with("1.1", &[("client-id", "api-producer")]);

    let conns = ok_json(get(admin, "/api/connections"));
    let conns = conns.as_array().expect("an array");
    assert_eq!(conns.len(), 3, "{conns:?}");
    let by_client = |id: &str| {
        conns
            .iter()
            .find(|c| c["client_id"] == id)
            .unwrap_or_else(|| panic!("no connection with client-id {id}: {conns:?}"))
    };
    let d = by_client("api-durable");
    assert_eq!(d["version"], "1.2");
    assert!(d["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert!(d["connected_at"].as_u64() > Some(0));
    assert_eq!(d["subscriptions"][0]["destination"], topic.as_str());
    assert_eq!(d["subscriptions"][0]["durable"], "api-durable:dur");
    assert_eq!(by_client("api-producer")["version"], "1.1");
    assert_eq!(
        by_client("api-producer")["subscriptions"],
        serde_json::json!([])
    );

    let subs = ok_json(get(admin, "/api/subscriptions"));
    let subs = subs.as_array().expect("an array");
    assert_eq!(subs.len(), 2, "{subs:?}");
    let dsub = subs
        .iter()
        .find(|s| s["id"] == "d1")
        .expect("durable subscription");
    assert_eq!(dsub["connection"], d["id"]);
    assert_eq!(dsub["client_id"], "api-durable");
    assert_eq!(dsub["peer"], d["peer"]);
    assert_eq!(dsub["ack"], "client");
    assert_eq!(dsub["durable"], "api-durable:dur");
    assert!(dsub["prefetch"].as_u64() > Some(0));
    let psub = subs
        .iter()
        .find(|s| s["id"] == "p1")
        .expect("plain subscription");
    assert_eq!(psub["ack"], "auto");
    assert_eq!(psub["durable"], Value::Null);

    // Destinations: the topic, the durable subscription's queue, the queue.
    for i in 0..7 {
        producer.send_persistent(&queue, &format!("m{i}"), &[("x-seq", &i.to_string())]);
    }
    let d = destinations(admin);
    let q = row(&d, &queue, "");
    assert_eq!(q["kind"], "queue");
    assert_eq!(
        (q["depth"].as_u64(), q["consumers"].as_u64()),
        (Some(7), Some(0))
    );
    assert_eq!(
        (q["enqueued"].as_u64(), q["delivered"].as_u64()),
        (Some(7), Some(0))
    );
    let t = row(&d, &topic, "");
    assert_eq!(
        (t["kind"].as_str(), t["consumers"].as_u64()),
        (Some("topic"), Some(1))
    );
    assert_eq!(row(&d, &topic, "api-durable:dur")["kind"], "durable");
    for field in [
        "destination",
        "subscription",
        "kind",
        "depth",
        "on_disk",
        "unacked",
        "consumers",
        "memory_bytes",
        "blocked_producers",
        "flow_control_events",
        "enqueued",
        "delivered",
        "acked",
        "redelivered",
        "expired",
        "dead_lettered",
    ] {
        assert!(q.get(field).is_some(), "destination rows have {field}: {q}");
    }

    // Browse, paged, in dispatch order, with headers and body.
    let page = ok_json(get(
        admin,
        &format!("/api/messages?destination={queue}&offset=0&limit=5"),
    ));
    assert_eq!(bodies(&page), ["m0", "m1", "m2", "m3", "m4"]);
    let first = &page[0];
    assert_eq!(first["persistent"], true);
    assert_eq!(first["redelivery_count"], 0);
    assert_eq!(first["body_bytes"], 2);
    assert_eq!(first["expires"], 0);
    assert!(first["message_id"].as_u64().is_some() && first["priority"].as_u64().is_some());
    assert!(
        first["headers"]
            .as_array()
            .is_some_and(|h| h.contains(&serde_json::json!(["x-seq", "0"]))),
        "headers are [name, value] pairs: {first}"
    );
    let page = ok_json(get(
        admin,
        &format!("/api/messages?destination={queue}&offset=5&limit=5"),
    ));
    assert_eq!(bodies(&page), ["m5", "m6"]);
    let page = ok_json(get(
        admin,
        &format!("/api/messages?destination={queue}&offset=7"),
    ));
    assert_eq!(page, serde_json::json!([]));
    assert_eq!(
        bodies(&ok_json(get(
            admin,
            &format!("/api/messages?destination={queue}")
        )))
        .len(),
        7,
        "offset 0 and limit 50 by default"
    );
    let missing = get(
        admin,
        &format!("/api/messages?destination=/queue/{}", unique("none")),
    );
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
    // A name without a leading / is a queue, as on the wire: a missing one is 404.
    let unprefixed = get(
        admin,
        &format!("/api/messages?destination={}", unique("none")),
    );
    assert_eq!(unprefixed.status, 404);
    let bad = get(admin, "/api/messages?destination=/queu/orders");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("/queue/")));
    assert_eq!(
        get(admin, "/api/messages").status,
        400,
        "destination is required"
    );

    // Purge drops what waits and keeps what a consumer holds unacked.
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(
        &queue,
        "c",
        "client-individual",
        &[("activemq.prefetchSize", "2")],
    );
    assert_eq!(support::bodies(&consumer.receive(2, WAIT)), ["m0", "m1"]);
    eventually(WAIT, || {
        match row(&destinations(admin), &queue, "")["unacked"].as_u64() {
            Some(2) => Ok(()),
            other => Err(other),
        }
    });
    assert_eq!(
        get(admin, &format!("/api/purge?destination={queue}")).status,
        405,
        "POST only"
    );
    let purged = ok_json(post(admin, &format!("/api/purge?destination={queue}")));
    assert_eq!(
        purged,
        serde_json::json!({"destination": queue, "purged": 5})
    );
    let q = row(&destinations(admin), &queue, "").clone();
    assert_eq!(
        (q["depth"].as_u64(), q["unacked"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(
        ok_json(get(admin, &format!("/api/messages?destination={queue}"))),
        serde_json::json!([])
    );

    // Delete refuses while a consumer is attached.
    let refused = post(admin, &format!("/api/delete?destination={queue}"));
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("consumer")));
    let refused = post(admin, &format!("/api/delete?destination={topic}"));
    assert_eq!(
        refused.status, 409,
        "a topic with subscribers: {}",
        refused.body
    );

    // The consumer leaves without acking: its two messages come back, then delete takes them.
    consumer.abort();
    eventually(WAIT, || {
        let d = destinations(admin);
        match (
            row(&d, &queue, "")["depth"].as_u64(),
            row(&d, &queue, "")["consumers"].as_u64(),
        ) {
            (Some(2), Some(0)) => Ok(()),
            other => Err(other),
        }
    });
    let deleted = ok_json(post(admin, &format!("/api/delete?destination={queue}")));
    assert_eq!(
        deleted,
        serde_json::json!({"destination": queue, "purged": 2})
    );
    assert!(find(&destinations(admin), &queue, "").is_none());
    assert_eq!(
        get(admin, &format!("/api/messages?destination={queue}")).status,
        404
    );

    // Counters of a re-created destination start again.
    producer.send_persistent(&queue, "fresh", &[]);
    assert_eq!(row(&destinations(admin), &queue, "")["enqueued"], 1);

    // A durable subscription, offline: browse, purge and delete it by `subscription`.
    durable.disconnect();
    for i in 0..3 {
        producer.send_persistent(&topic, &format!("t{i}"), &[]);
    }
    let sub = "api-durable:dur";
    eventually(WAIT, || {
        match row(&destinations(admin), &topic, sub)["depth"].as_u64() {
            Some(3) => Ok(()),
            other => Err(other),
        }
    });
    let page = ok_json(get(
        admin,
        &format!("/api/messages?destination={topic}&subscription={sub}"),
    ));
    assert_eq!(bodies(&page), ["t0", "t1", "t2"]);
    let purged = ok_json(post(
        admin,
        &format!("/api/purge?destination={topic}&subscription={sub}"),
    ));
    assert_eq!(purged["purged"], 3);
    assert_eq!(row(&destinations(admin), &topic, sub)["depth"], 0);
    let deleted = post(
        admin,
        &format!("/api/delete?destination={topic}&subscription={sub}"),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(find(&destinations(admin), &topic, sub).is_none());
    assert_eq!(get(admin, "/api/nothing-here").status, 404);
    plain.disconnect();
}

#[test]
fn a_standby_answers_503_and_takes_over_when_the_master_stops() {
    let mut master = Broker::start();
    let master_admin = master.admin_addr();
    let mut standby = master.beside("standby");
    standby.spawn();
    let admin = standby.admin_addr();

    let health = get(admin, "/health");
    assert_eq!(health.status, 503);
    let health = health.json();
    assert_eq!(health["role"], "standby");
    assert_eq!(health["epoch"], Value::Null);
    assert_eq!(health["stomp_address"], Value::Null);

    for (method, path) in [
        ("GET", "/api/destinations"),
        ("GET", "/api/connections"),
        ("GET", "/api/subscriptions"),
        ("GET", "/api/messages?destination=/queue/x"),
        ("POST", "/api/purge?destination=/queue/x"),
        ("POST", "/api/delete?destination=/queue/x"),
    ] {
        let r = request(admin, method, path);
        assert_eq!(r.status, 503, "{method} {path}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{method} {path}: {}", r.body);
    }
    // The lease row is read from the shared store: it names the master.
    let lease = ok_json(get(admin, "/api/lease"));
    assert_eq!(lease["admin_address"], master_admin.to_string());
    assert_eq!(lease["epoch"], 1);
    let metrics = Metrics::scrape(admin);
    assert_eq!(
        metrics.value("stompbox_lease_role", &[("role", "standby")]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("stompbox_lease_role", &[("role", "master")]),
        Some(0.0)
    );
    assert_eq!(metrics.value("stompbox_connections", &[]), Some(0.0));
    // The console is served in every role.
    let console = get(admin, "/");
    assert_eq!(console.status, 200);
    assert!(console.body.contains("<title>stompbox</title>"));

    // A clean stop releases the lease: the standby becomes master with the next epoch.
    master.terminate();
    eventually(WAIT, || match get(admin, "/health") {
        r if r.status == 200 => Ok(r.json()),
        r => Err(r.body),
    });
    assert_eq!(get(admin, "/health").json()["epoch"], 2);
    assert_eq!(
        ok_json(get(admin, "/api/destinations")),
        serde_json::json!([])
    );
    let metrics = Metrics::scrape(admin);
    assert_eq!(
        metrics.value("stompbox_lease_role", &[("role", "master")]),
        Some(1.0)
    );
    assert_eq!(metrics.value("stompbox_lease_epoch", &[]), Some(2.0));
}

#[test]
fn the_console_is_served_at_the_root() {
    let broker = Broker::start();
    let page = get(broker.admin_addr(), "/");
    assert_eq!(page.status, 200);
    assert!(page
        .content_type()
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("<title>stompbox</title>"));
    // Self-contained: nothing loaded from elsewhere.
    for outside in ["http://", "https://", "<link", "src="] {
        assert!(!page.body.contains(outside), "console.html has {outside:?}");
    }
    // Its purge carries the header a state change needs (exercised by `make test-console`).
    assert!(page.body.contains("X-Stompbox-Request"));
}

/// The STOMP over WebSocket client page (clients/js/browser/) and the @stomp/stompjs bundle it
/// loads are embedded in the binary and served next to the console, behind the same `Host`
/// check. `make test-console` drives the page in Chromium.
#[test]
fn the_web_client_page_and_its_bundle_are_served() {
    let broker = Broker::start();
    let admin = broker.admin_addr();

    let page = get(admin, "/client/");
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type(), Some("text/html; charset=utf-8"));
    assert!(page.body.contains("<title>stompbox web client</title>"));
    assert_eq!(
        page.body,
        include_str!("../clients/js/browser/index.html"),
        "served as written"
    );
    // It loads the bundle from beside itself, not from a CDN.
    assert!(page
        .body
        .contains(r#"<script src="stomp.umd.min.js"></script>"#));

    let bundle = get(admin, "/client/stomp.umd.min.js");
    assert_eq!(bundle.status, 200);
    assert_eq!(
        bundle.content_type(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        bundle.body,
        include_str!("../clients/js/browser/stomp.umd.min.js")
    );
    assert!(bundle.body.contains("StompJs"));

    // Without the slash, a redirect to it: the page's relative links need it.
    let bare = get(admin, "/client");
    assert_eq!(bare.status, 308);
    assert_eq!(bare.header("location"), Some("/client/"));

    // The console links to it.
    assert!(get(admin, "/").body.contains(r#"href="client/""#));

    // The same Host guard as every other page: a rebinding name gets 421.
    let rebound = request_with(
        admin,
        "GET",
        "/client/",
        &[("Host", &format!("evil.example:{}", admin.port()))],
        "",
    );
    assert_eq!(rebound.status, 421);
}

/// An emptied destination stays listed, with its counters, in `/api/destinations` and
/// `/metrics` while it is idle (`idle_timeout_ms`, 5 minutes by default): a purge, or a
/// consumer draining it, does not make what it did disappear.
#[test]
fn an_emptied_destination_stays_listed_with_its_counters() {
    let broker = Broker::start();
    let admin = broker.admin_addr();
    let queue = format!("/queue/{}", unique("emptied"));
    let q = dest(&queue);
    let mut producer = broker.connect("1.2");
    for i in 0..3 {
        producer.send_sync(&queue, &format!("m{i}"), &[]);
    }
    ok_json(post(admin, &format!("/api/purge?destination={queue}")));
    let listed = row(&destinations(admin), &queue, "").clone();
    assert_eq!(
        (&listed["depth"], &listed["consumers"], &listed["enqueued"]),
        (&0.into(), &0.into(), &3.into()),
        "{listed}"
    );
    let metrics = Metrics::scrape(admin);
    assert_eq!(metrics.value("stompbox_depth", &q), Some(0.0));
    assert_eq!(
        metrics.value("stompbox_messages_enqueued_total", &q),
        Some(3.0)
    );
    // It answers as an empty queue: browsing shows nothing, a purge purges nothing.
    let page = ok_json(get(admin, &format!("/api/messages?destination={queue}")));
    assert!(bodies(&page).is_empty(), "{page}");
    let purged = ok_json(post(admin, &format!("/api/purge?destination={queue}")));
    assert_eq!(purged["purged"], 0);
    // Used again, it carries on counting.
    producer.send_sync(&queue, "again", &[]);
    assert_eq!(row(&destinations(admin), &queue, "")["enqueued"], 4);
}

/// `/metrics` lists only destinations that exist now: once idle past `idle_timeout_ms`
/// (short here) a destination is forgotten, and its metrics go with it; when it is re-created
/// its counters start again from zero, which Prometheus' `rate()`/`increase()` read as a
/// counter reset. (Before the fix, the exporter kept the last gauges, and
/// `Counter::absolute` kept the old maximum, stalling the counter.)
#[test]
fn metrics_of_a_forgotten_destination_are_not_stale() {
    let broker = Broker::start_with_config("[destinations]\nidle_timeout_ms = 1\n");
    let admin = broker.admin_addr();
    let queue = format!("/queue/{}", unique("forgotten"));
    let q = dest(&queue);
    let mut producer = broker.connect("1.2");
    for i in 0..3 {
        producer.send_sync(&queue, &format!("m{i}"), &[]);
    }
    assert_eq!(
        Metrics::scrape(admin).value("stompbox_depth", &q),
        Some(3.0)
    );
    ok_json(post(admin, &format!("/api/purge?destination={queue}")));
    eventually(WAIT, || match find(&destinations(admin), &queue, "") {
        None => Ok(()),
        Some(row) => Err(format!(
            "purged empty, still listed after idle_timeout_ms: {row}"
        )),
    });
    let metrics = Metrics::scrape(admin);
    let depth = metrics.value("stompbox_depth", &q);
    assert!(matches!(depth, None | Some(0.0)), "stale depth {depth:?}");
    let enqueued = metrics.value("stompbox_messages_enqueued_total", &q);
    assert!(
        matches!(enqueued, None | Some(0.0)),
        "stale counter {enqueued:?}"
    );
    for i in 0..2 {
        producer.send_sync(&queue, &format!("again {i}"), &[]);
    }
    assert_eq!(
        Metrics::scrape(admin).value("stompbox_messages_enqueued_total", &q),
        Some(2.0),
        "a re-created destination's counter starts again (a counter reset), not stalled at 3"
    );
}

/// CSRF: a web page on another site must not purge or delete. Before the fix, a
/// `POST /api/purge` with `Origin: http://evil.example` and nothing else answered 200 and
/// emptied the queue. A foreign `Origin` is refused even with the request header (which a
/// browser would only send cross-site after a CORS preflight the endpoint never grants).
#[test]
fn a_foreign_origin_can_neither_purge_nor_delete() {
    let broker = Broker::start();
    let admin = broker.admin_addr();
    let queue = format!("/queue/{}", unique("csrf-origin"));
    let mut producer = broker.connect("1.2");
    for i in 0..3 {
        producer.send_sync(&queue, &format!("m{i}"), &[]);
    }
    let host = admin.to_string();
    let host = host.as_str();
    let foreign = [
        "http://evil.example".to_string(),
        "null".to_string(),
        format!("https://{admin}"),
        format!("http://{admin}.evil.example"),
        format!("http://localhost:{}", admin.port()),
    ];
    for action in ["purge", "delete"] {
        let path = format!("/api/{action}?destination={queue}");
        for origin in &foreign {
            for extra in [None, Some(OWN_HEADER)] {
                let mut headers = vec![("Host", host), ("Origin", origin.as_str())];
                headers.extend(extra);
                let r = request_with(admin, "POST", &path, &headers, "");
                assert_eq!(
                    r.status, 403,
                    "{action} Origin {origin} {extra:?}: {}",
                    r.body
                );
                let error = r.json()["error"].as_str().unwrap_or_default().to_string();
                assert!(error.contains(origin.as_str()), "names the origin: {error}");
            }
        }
    }
    assert_eq!(
        row(&destinations(admin), &queue, "")["depth"],
        3,
        "not purged"
    );
}

/// CSRF: a state change needs `X-Stompbox-Request` or `content-type: application/json`,
/// which no HTML form and no "simple" cross-site fetch can send. Before the fix, a bare POST
/// (or a form's `text/plain` body) purged.
#[test]
fn a_state_change_without_the_request_header_is_refused() {
    let broker = Broker::start();
    let admin = broker.admin_addr();
    let queue = format!("/queue/{}", unique("csrf-header"));
    let mut producer = broker.connect("1.2");
    for i in 0..3 {
        producer.send_sync(&queue, &format!("m{i}"), &[]);
    }
    let host = admin.to_string();
    let host = host.as_str();
    let own_origin = format!("http://{admin}");
    let own_origin = own_origin.as_str();
    let purge = format!("/api/purge?destination={queue}");
    for (content_type, body) in [
        (None, ""),
        (Some("text/plain"), "x"),
        (Some("text/plain;charset=UTF-8"), "{\"a\":1}"),
        (Some("application/x-www-form-urlencoded"), "a=b"),
        (Some("multipart/form-data; boundary=b"), "--b--"),
    ] {
        for origin in [None, Some(own_origin)] {
            let mut headers = vec![("Host", host)];
            headers.extend(content_type.map(|t| ("Content-Type", t)));
            headers.extend(origin.map(|o| ("Origin", o)));
            for path in [&purge, &format!("/api/delete?destination={queue}")] {
                let r = request_with(admin, "POST", path, &headers, body);
                assert_eq!(r.status, 403, "{path} {headers:?}: {}", r.body);
                assert_eq!(r.content_type(), Some("application/json"), "{}", r.body);
                let error = r.json()["error"].as_str().unwrap_or_default().to_string();
                assert!(
                    error.contains("X-Stompbox-Request"),
                    "says what to add: {error}"
                );
            }
        }
    }
    assert_eq!(
        row(&destinations(admin), &queue, "")["depth"],
        3,
        "not purged"
    );

    // The request header (any value), or a JSON content type, is enough; with or without the
    // endpoint's own Origin (what the console sends).
    let r = request_with(
        admin,
        "POST",
        &purge,
        &[("Host", host), ("X-Stompbox-Request", "1")],
        "",
    );
    assert_eq!(ok_json(r)["purged"], 3);
    for (i, headers) in [
        vec![("Host", host), ("X-Stompbox-Request", "yes")],
        vec![("Host", host), ("Origin", own_origin), OWN_HEADER],
        vec![("Host", host), ("Content-Type", "application/json")],
        vec![
            ("Host", host),
            ("Origin", own_origin),
            ("Content-Type", "Application/JSON; charset=utf-8"),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        producer.send_sync(&queue, &format!("again {i}"), &[]);
        let r = request_with(admin, "POST", &purge, &headers, "{}");
        assert_eq!(ok_json(r)["purged"], 1, "{headers:?}");
    }
}

/// DNS rebinding: a page at `http://evil.example:PORT`, whose name the attacker then points at
/// 127.0.0.1, reads the API as its own origin; only the `Host` header gives it away. Before
/// the fix any Host was answered.
#[test]
fn a_request_for_an_unknown_host_is_refused() {
    let broker = Broker::start();
    let admin = broker.admin_addr();
    let port = admin.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
        format!("127.0.0.2:{port}"),
    ] {
        for path in ["/api/destinations", "/api/lease", "/"] {
            let r = request_with(admin, "GET", path, &[("Host", host.as_str())], "");
            assert_eq!(r.status, 421, "GET {path} Host {host}: {}", r.body);
            let error = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(error.contains(&host), "names the host: {error}");
            assert!(
                error.contains("admin.allowed_hosts"),
                "says the fix: {error}"
            );
        }
        let purge = "/api/purge?destination=/queue/x";
        let r = request_with(
            admin,
            "POST",
            purge,
            &[("Host", host.as_str()), OWN_HEADER],
            "",
        );
        assert_eq!(r.status, 421, "POST Host {host}: {}", r.body);
    }
    // The bound address and the loopback names, at the bound port.
    for host in [
        admin.to_string(),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = request_with(
            admin,
            "GET",
            "/api/destinations",
            &[("Host", host.as_str())],
            "",
        );
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    // HTTP/1.1 requires Host; HTTP/1.0 tools (no browser) may leave it out.
    let r = request_with(admin, "GET", "/api/destinations", &[], "");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("Host")));
    let r = exchange(admin, "GET /api/destinations HTTP/1.0\r\n", "");
    assert_eq!(r.status, 200, "{}", r.body);

    // Load balancers and Prometheus are answered whatever Host they send (or none, as
    // HAProxy's `option httpchk GET /health` does).
    for path in ["/health", "/metrics"] {
        for host in ["evil.example:8161", "broker-a"] {
            let r = request_with(admin, "GET", path, &[("Host", host)], "");
            assert_eq!(r.status, 200, "GET {path} Host {host}: {}", r.body);
        }
        let r = request_with(admin, "GET", path, &[], "");
        assert_eq!(r.status, 200, "GET {path} without Host: {}", r.body);
        let r = exchange(admin, &format!("GET {path} HTTP/1.0\r\n"), "");
        assert_eq!(r.status, 200, "GET {path} HTTP/1.0: {}", r.body);
    }
}

/// `admin.allowed_hosts` admits names for a proxy or a DNS name of the broker: a name alone
/// on any port, `name:port` on that port only. A state change's Origin must then be that
/// name, the one the browser used.
#[test]
fn admin_allowed_hosts_admits_the_names_listed() {
    let broker = Broker::start_with_config(
        "[admin]\nallowed_hosts = [\"broker-a\", \"Proxy.Example:8443\"]\n",
    );
    let admin = broker.admin_addr();
    let port = admin.port();
    for (host, status) in [
        (format!("broker-a:{port}"), 200),
        ("broker-a".to_string(), 200),
        ("broker-a:9999".to_string(), 200),
        ("proxy.example:8443".to_string(), 200),
        ("proxy.example".to_string(), 421),
        (format!("proxy.example:{port}"), 421),
        (format!("broker-b:{port}"), 421),
        (format!("localhost:{port}"), 200),
    ] {
        let r = request_with(
            admin,
            "GET",
            "/api/destinations",
            &[("Host", host.as_str())],
            "",
        );
        assert_eq!(r.status, status, "Host {host}: {}", r.body);
    }
    let queue = format!("/queue/{}", unique("allowed-host"));
    let mut producer = broker.connect("1.2");
    producer.send_sync(&queue, "m", &[]);
    let purge = format!("/api/purge?destination={queue}");
    let host = format!("broker-a:{port}");
    let reached_as = |origin: &str| {
        let headers = [("Host", host.as_str()), ("Origin", origin), OWN_HEADER];
        request_with(admin, "POST", &purge, &headers, "")
    };
    assert_eq!(reached_as(&format!("http://{admin}")).status, 403);
    assert_eq!(ok_json(reached_as(&format!("http://{host}")))["purged"], 1);
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Every family the issue and docs/admin-api.md name.
const FAMILIES: &[&str] = &[
    "stompbox_connections",
    "stompbox_connections_accepted_total",
    "stompbox_large_frames_budget_bytes",
    "stompbox_large_frames_held_bytes",
    "stompbox_large_frame_stalls_total",
    "stompbox_messages_enqueued_total",
    "stompbox_messages_delivered_total",
    "stompbox_messages_acked_total",
    "stompbox_depth",
    "stompbox_on_disk",
    "stompbox_unacked",
    "stompbox_consumers",
    "stompbox_memory_bytes",
    "stompbox_messages_redelivered_total",
    "stompbox_messages_dead_lettered_total",
    "stompbox_messages_expired_total",
    "stompbox_flow_control_events_total",
    "stompbox_slow_consumer_disconnects_total",
    "stompbox_blocked_producers",
    "stompbox_store_commit_seconds",
    "stompbox_store_batch_requests",
    "stompbox_lease_role",
    "stompbox_lease_epoch",
];

/// Labels naming a destination (not a durable subscription).
fn dest(name: &str) -> [(&str, &str); 2] {
    [("destination", name), ("subscription", "")]
}

fn destinations(admin: SocketAddr) -> Value {
    ok_json(get(admin, "/api/destinations"))
}

fn find<'a>(list: &'a Value, destination: &str, subscription: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|d| d["destination"] == destination && d["subscription"] == subscription)
}

#[track_caller]
fn row<'a>(list: &'a Value, destination: &str, subscription: &str) -> &'a Value {
    find(list, destination, subscription)
        .unwrap_or_else(|| panic!("no {destination} [{subscription}] in {list}"))
}

fn bodies(page: &Value) -> Vec<&str> {
    page.as_array()
        .expect("an array of messages")
        .iter()
        .map(|m| m["body"].as_str().expect("a text body"))
        .collect()
}

#[track_caller]
fn ok_json(r: Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type(), Some("application/json"), "{}", r.body);
    r.json()
}
