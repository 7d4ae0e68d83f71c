//! Networks of brokers (issue 11): the receiving broker's duplicate filter. A bridge puts
//! `stompbox-network-id: <broker>:<message-id>` on every message it forwards, and sends a
//! message again when its RECEIPT was lost with the link; the receiving broker receipts the
//! copy and drops it. These tests play the bridge with a plain client, so what they assert is
//! what a peer and a consumer see: RECEIPTs, MESSAGE frames, rows in SQLite, `/metrics`.

mod support;

use support::{unique, Broker, Client, Frame, QUIET, WAIT};

const NETWORK_ID: &str = "stompbox-network-id";
const NETWORK_REDELIVERED: &str = "stompbox-network-redelivered";

/// SENDs `body` to `dest` as a bridge forwarding a message would (`network_id` is
/// `<broker>:<message-id>`), and waits for the RECEIPT.
fn forward(c: &mut Client, dest: &str, body: &str, network_id: &str, extra: &[(&str, &str)]) {
    let mut headers = vec![(NETWORK_ID, network_id)];
    headers.extend_from_slice(extra);
    c.send_sync(dest, body, &headers);
}

/// The bodies `consumer` receives until the broker stays quiet, each acked.
fn drain(consumer: &mut Client) -> Vec<String> {
    let frames = consumer.receive_until_quiet(QUIET, WAIT);
    for f in &frames {
        if f.get("ack").is_some() {
            consumer.ack(f);
        }
    }
    frames.iter().map(Frame::text).collect()
}

#[test]
fn a_forwarded_message_sent_twice_to_a_queue_is_delivered_once() {
    let broker = Broker::start();
    for persistent in ["true", "false"] {
        let q = format!("/queue/{}", unique("dup"));
        let mut bridge = broker.connect("1.2");
        let p = [("persistent", persistent)];
        forward(&mut bridge, &q, "m1", "a:1", &p);
        // The RECEIPT was lost: the bridge, on a new connection, sends it again. It gets its
        // RECEIPT (the wait in `forward`) and can ACK on its side.
        bridge.abort();
        let mut bridge = broker.connect("1.2");
        forward(&mut bridge, &q, "m1", "a:1", &p);
        forward(&mut bridge, &q, "m2", "a:2", &p);
        forward(&mut bridge, &q, "m1 from b", "b:1", &p);
        forward(&mut bridge, &q, "m2", "a:2", &p);
        let mut consumer = broker.connect("1.2");
        consumer.subscribe(&q, "s", "client-individual", &[]);
        assert_eq!(
            drain(&mut consumer),
            ["m1", "m2", "m1 from b"],
            "persistent:{persistent}"
        );
    }
}

#[test]
fn a_forwarded_message_sent_twice_to_a_topic_is_delivered_once() {
    let broker = Broker::start();
    for persistent in ["true", "false"] {
        let t = format!("/topic/{}", unique("dup"));
        let mut subscriber = broker.connect("1.2");
        subscriber.subscribe(&t, "s", "auto", &[]);
        let mut bridge = broker.connect("1.2");
        let p = [("persistent", persistent)];
        forward(&mut bridge, &t, "t1", "a:1", &p);
        forward(&mut bridge, &t, "t1", "a:1", &p);
        forward(&mut bridge, &t, "t2", "a:2", &p);
        forward(&mut bridge, &t, "t1 from b", "b:1", &p);
        assert_eq!(
            drain(&mut subscriber),
            ["t1", "t2", "t1 from b"],
            "persistent:{persistent}"
        );
    }
}

/// One forwarded SEND to a composite destination is a message per destination here, each
/// accepted once: the filter tells them apart by destination.
#[test]
fn a_forwarded_message_to_a_composite_destination_reaches_each_destination_once() {
    let broker = Broker::start();
    let (a, b) = (
        format!("/queue/{}", unique("ca")),
        format!("/queue/{}", unique("cb")),
    );
    let both = format!("{a},{b}");
    let mut bridge = broker.connect("1.2");
    forward(&mut bridge, &both, "c", "a:9", &[("persistent", "true")]);
    forward(&mut bridge, &both, "c", "a:9", &[("persistent", "true")]);
    for q in [&a, &b] {
        let mut consumer = broker.connect("1.2");
        consumer.subscribe(q, "s", "client-individual", &[]);
        assert_eq!(drain(&mut consumer), ["c"], "{q}");
    }
}

/// A SEND inside a transaction is accepted at its COMMIT: a copy committed again is dropped
/// (with the COMMIT's RECEIPT), and one that was aborted does not count as accepted.
#[test]
fn a_forwarded_message_committed_twice_is_delivered_once() {
    let broker = Broker::start();
    for persistent in ["true", "false"] {
        let q = format!("/queue/{}", unique("tx"));
        let mut bridge = broker.connect("1.2");
        let transact = |c: &mut Client, tx: &str, end: &str, body: &str, id: &str| {
            c.request(Frame::new("BEGIN").header("transaction", tx));
            let send = support::send_frame(
                &q,
                body,
                &[
                    (NETWORK_ID, id),
                    ("persistent", persistent),
                    ("transaction", tx),
                ],
            );
            c.send_frame(&send);
            c.request(Frame::new(end).header("transaction", tx));
        };
        transact(&mut bridge, "t1", "ABORT", "aborted", "a:1");
        transact(&mut bridge, "t2", "COMMIT", "m1", "a:1");
        transact(&mut bridge, "t3", "COMMIT", "m1", "a:1");
        // And a copy outside a transaction of one committed in one.
        forward(&mut bridge, &q, "m1", "a:1", &[("persistent", persistent)]);
        transact(&mut bridge, "t4", "COMMIT", "m2", "a:2");
        let mut consumer = broker.connect("1.2");
        consumer.subscribe(&q, "s", "client-individual", &[]);
        assert_eq!(
            drain(&mut consumer),
            ["m1", "m2"],
            "persistent:{persistent}"
        );
    }
}

/// kill -9 of the receiving broker after it stored a forwarded message, before the bridge saw
/// the RECEIPT: the restarted broker rebuilds its filter from the stored messages and drops
/// the copy sent again.
#[test]
fn a_stored_forwarded_message_sent_again_after_kill_9_is_delivered_once() {
    let mut broker = Broker::start();
    let q = format!("/queue/{}", unique("crash"));
    let topic = format!("/topic/{}", unique("crash"));
    let mut durable = broker.connect_with("1.2", &[("client-id", "dup-durable")]);
    durable.subscribe(
        &topic,
        "d",
        "client-individual",
        &[("activemq.subscriptionName", "d")],
    );
    durable.abort();
    let mut bridge = broker.connect("1.2");
    forward(
        &mut bridge,
        &q,
        "stored",
        "a:100",
        &[("persistent", "true")],
    );
    forward(
        &mut bridge,
        &topic,
        "kept",
        "a:101",
        &[("persistent", "true")],
    );
    let rows: i64 = broker
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE network_id IN ('a:100', 'a:101')",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(rows, 2, "each stored with its network_id");
    broker.crash_and_restart();
    let mut bridge = broker.connect("1.2");
    forward(
        &mut bridge,
        &q,
        "stored",
        "a:100",
        &[("persistent", "true")],
    );
    forward(
        &mut bridge,
        &topic,
        "kept",
        "a:101",
        &[("persistent", "true")],
    );
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "client-individual", &[]);
    assert_eq!(drain(&mut consumer), ["stored"]);
    let mut durable = broker.connect_with("1.2", &[("client-id", "dup-durable")]);
    durable.subscribe(
        &topic,
        "d",
        "client-individual",
        &[("activemq.subscriptionName", "d")],
    );
    assert_eq!(drain(&mut durable), ["kept"]);
    let metrics = broker.admin_get("/metrics").expect("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.trim() == "stompbox_network_duplicates_total 2"),
        "{metrics}"
    );
}

/// Once the first copy was consumed (its row deleted) and the broker restarted, nothing is
/// left to recognise the copy by: a bridge that marks it as a possible duplicate gets it
/// delivered `redelivered:true`, so no consumer sees a message twice unmarked. The mark is
/// stored with the message and survives a restart before it is consumed.
#[test]
fn a_marked_copy_the_filter_cannot_recognise_is_delivered_redelivered() {
    let mut broker = Broker::start();
    let q = format!("/queue/{}", unique("marked"));
    let mut bridge = broker.connect("1.2");
    forward(&mut bridge, &q, "m", "a:7", &[("persistent", "true")]);
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "client-individual", &[]);
    let first = consumer.expect_body("m");
    assert_eq!(first.get("redelivered"), None, "{first:?}");
    let ack = consumer.settle_frame("ACK", &first);
    consumer.request(ack);
    consumer.abort();
    broker.crash_and_restart();
    let mut bridge = broker.connect("1.2");
    let marked = [("persistent", "true"), (NETWORK_REDELIVERED, "true")];
    forward(&mut bridge, &q, "m", "a:7", &marked);
    forward(&mut bridge, &q, "later", "a:8", &marked);
    let count: i64 = broker
        .db()
        .query_row(
            "SELECT redelivery_count FROM messages WHERE network_id = 'a:8'",
            [],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(count, 1, "stored as delivered once");
    broker.crash_and_restart();
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "client-individual", &[]);
    let again = consumer.receive_until_quiet(QUIET, WAIT);
    let seen: Vec<_> = again
        .iter()
        .map(|m| (m.text(), m.get("redelivered")))
        .collect();
    assert_eq!(
        seen,
        [
            ("m".to_string(), Some("true")),
            ("later".to_string(), Some("true"))
        ],
        "{again:?}"
    );
}

/// A marked message that the filter does recognise is dropped like any other copy, and one
/// sent unmarked is not marked.
#[test]
fn a_marked_copy_of_an_accepted_message_is_dropped() {
    let broker = Broker::start();
    let q = format!("/queue/{}", unique("marked-dup"));
    let mut bridge = broker.connect("1.2");
    forward(&mut bridge, &q, "m", "a:1", &[]);
    forward(
        &mut bridge,
        &q,
        "m",
        "a:1",
        &[(NETWORK_REDELIVERED, "true")],
    );
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "client-individual", &[]);
    let got = consumer.receive_until_quiet(QUIET, WAIT);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get("redelivered"), None, "{got:?}");
}
