//! Ack modes (auto, client = cumulative, client-individual), ACK/NACK by `id` (1.2),
//! `message-id` + `subscription` (1.1) and `message-id` (1.0), and redelivery of unacked
//! messages on NACK, UNSUBSCRIBE and disconnect.

use crate::support::{queue, target, Broker, Client, Frame, Target, QUIET};

/// Subscribes a fresh connection to `q`, sends a marker behind whatever is queued, and returns
/// the messages that came before the marker: what the queue held. Deterministic because the
/// queue is FIFO and the marker is sent after the subscription's receipt.
fn queued_before_marker(broker: &Broker, q: &str) -> Vec<Frame> {
    let mut c = broker.connect("1.2");
    c.subscribe(q, "drain", "auto", &[]);
    c.send(q, "MARKER", &[]);
    let mut before = Vec::new();
    loop {
        let m = c.expect_message();
        if m.text() == "MARKER" {
            return before;
        }
        before.push(m);
    }
}

fn bodies(frames: &[Frame]) -> Vec<String> {
    let mut b: Vec<String> = frames.iter().map(Frame::text).collect();
    b.sort();
    b
}

fn assert_redelivered(m: &Frame) {
    assert_eq!(
        m.get("redelivered"),
        Some("true"),
        "expected redelivered:true on {m:?}"
    );
}

/// Sends `bodies` to `q` and waits for the receipt of the last.
fn fill(broker: &Broker, q: &str, bodies: &[&str]) {
    let mut p = broker.connect("1.2");
    for b in bodies {
        p.send(q, b, &[]);
    }
    p.send_sync(q, "LAST-FILL", &[]);
    p.disconnect();
}

/// ActiveMQ's NACK is a poison ack (docs/compatibility.md): the message is not redelivered but
/// dead-lettered, which drops it here since STOMP messages are not persistent unless asked.
/// Asserts that nothing comes back to `c`, then disconnects it: `q` must then hold exactly
/// `unacked` (the bodies `c` held but did not NACK, sorted), each marked redelivered.
fn assert_nack_is_poison(mut c: Client, broker: &Broker, q: &str, unacked: &[&str]) {
    c.expect_silence(QUIET);
    c.disconnect();
    let left = queued_before_marker(broker, q);
    assert_eq!(bodies(&left), unacked, "{left:?}");
    left.iter().for_each(assert_redelivered);
}

fn consumer(broker: &Broker, q: &str, ack: &str) -> Client {
    let mut c = broker.connect("1.2");
    c.subscribe(q, "s", ack, &[]);
    c
}

#[test]
fn client_individual_message_carries_ack_header_in_1_2() {
    let broker = Broker::under_test();
    let q = queue("ack-header");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "m", &[]);
    let m = c.expect_body("m");
    assert!(
        m.get("ack").is_some_and(|v| !v.is_empty()),
        "1.2 MESSAGE needs `ack`: {m:?}"
    );
}

#[test]
fn client_message_carries_ack_header_in_1_2() {
    let broker = Broker::under_test();
    let q = queue("ack-header-client");
    let mut c = consumer(&broker, &q, "client");
    c.send(&q, "m", &[]);
    let m = c.expect_body("m");
    assert!(
        m.get("ack").is_some_and(|v| !v.is_empty()),
        "1.2 MESSAGE needs `ack`: {m:?}"
    );
}

#[test]
fn auto_acked_message_is_not_redelivered() {
    let broker = Broker::under_test();
    let q = queue("auto");
    let mut c = consumer(&broker, &q, "auto");
    c.send(&q, "once", &[]);
    c.expect_body("once");
    c.disconnect();
    let left = queued_before_marker(&broker, &q);
    assert!(left.is_empty(), "auto-acked message came back: {left:?}");
}

#[test]
fn client_individual_ack_acks_only_that_message() {
    let broker = Broker::under_test();
    let q = queue("ci");
    fill(&broker, &q, &["m1", "m2"]);
    let mut c = consumer(&broker, &q, "client-individual");
    let _m1 = c.expect_body("m1");
    let m2 = c.expect_body("m2");
    let last = c.expect_body("LAST-FILL");
    c.ack(&last);
    let id = m2.must("ack").to_string();
    c.request(Frame::new("ACK").header("id", id));
    c.disconnect();
    let left = queued_before_marker(&broker, &q);
    assert_eq!(
        bodies(&left),
        ["m1"],
        "only the unacked m1 must return: {left:?}"
    );
    assert_redelivered(&left[0]);
}

#[test]
fn client_ack_is_cumulative() {
    let broker = Broker::under_test();
    let q = queue("cumulative");
    fill(&broker, &q, &["m1", "m2", "m3"]);
    let mut c = consumer(&broker, &q, "client");
    c.expect_body("m1");
    let m2 = c.expect_body("m2");
    c.expect_body("m3");
    c.expect_body("LAST-FILL");
    c.request(Frame::new("ACK").header("id", m2.must("ack")));
    c.disconnect();
    let left = queued_before_marker(&broker, &q);
    assert_eq!(
        bodies(&left),
        ["LAST-FILL", "m3"],
        "ACK of m2 covers m1 and m2 only: {left:?}"
    );
    left.iter().for_each(assert_redelivered);
}

#[test]
fn nack_redelivers_with_redelivered_header() {
    let broker = Broker::under_test();
    let q = queue("nack");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "retry me", &[]);
    let first = c.expect_body("retry me");
    assert_ne!(
        first.get("redelivered"),
        Some("true"),
        "first delivery: {first:?}"
    );
    c.request(Frame::new("NACK").header("id", first.must("ack")));
    if target() == Target::ActiveMq {
        assert_nack_is_poison(c, &broker, &q, &[]);
        return;
    }
    let again = c.expect_body("retry me");
    assert_redelivered(&again);
    assert_eq!(
        again.get("message-id"),
        first.get("message-id"),
        "same message: {again:?}"
    );
    c.request(Frame::new("ACK").header("id", again.must("ack")));
    c.disconnect();
    let left = queued_before_marker(&broker, &q);
    assert!(left.is_empty(), "acked redelivery came back: {left:?}");
}

#[test]
fn nack_in_client_mode_covers_earlier_unacked_messages() {
    let broker = Broker::under_test();
    let q = queue("nack-client");
    fill(&broker, &q, &["m1", "m2", "m3"]);
    let mut c = consumer(&broker, &q, "client");
    c.expect_body("m1");
    let m2 = c.expect_body("m2");
    c.expect_body("m3");
    c.expect_body("LAST-FILL");
    c.request(Frame::new("NACK").header("id", m2.must("ack")));
    if target() == Target::ActiveMq {
        // Only m2 is gone: the NACK covers no earlier message.
        assert_nack_is_poison(c, &broker, &q, &["LAST-FILL", "m1", "m3"]);
        return;
    }
    let again = [c.expect_message(), c.expect_message()];
    assert_eq!(
        bodies(&again),
        ["m1", "m2"],
        "NACK of m2 covers m1 and m2: {again:?}"
    );
    again.iter().for_each(assert_redelivered);
    c.expect_silence(QUIET);
}

#[test]
fn unsubscribe_returns_unacked_messages() {
    let broker = Broker::under_test();
    let q = queue("unsub-return");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "held", &[]);
    c.expect_body("held");
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    c.subscribe(&q, "s2", "client-individual", &[]);
    let m = c.expect_body("held");
    assert_redelivered(&m);
    assert_eq!(m.get("subscription"), Some("s2"), "{m:?}");
}

#[test]
fn disconnect_returns_unacked_messages() {
    let broker = Broker::under_test();
    let q = queue("disc-return");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "held", &[]);
    c.expect_body("held");
    c.disconnect();
    let left = queued_before_marker(&broker, &q);
    assert_eq!(bodies(&left), ["held"], "{left:?}");
    assert_redelivered(&left[0]);
}

#[test]
fn dropped_connection_returns_unacked_messages() {
    let broker = Broker::under_test();
    let q = queue("drop-return");
    let mut c = consumer(&broker, &q, "client");
    c.send(&q, "held", &[]);
    c.expect_body("held");
    c.abort();
    let mut other = consumer(&broker, &q, "auto");
    let m = other.expect_body("held");
    assert_redelivered(&m);
}

#[test]
fn unacked_message_goes_to_another_consumer_after_disconnect() {
    let broker = Broker::under_test();
    let q = queue("handover");
    let mut first = consumer(&broker, &q, "client-individual");
    let mut second = broker.connect("1.2");
    second.subscribe(
        &q,
        "s",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    let mut p = broker.connect("1.2");
    p.send_sync(&q, "a", &[]);
    p.send_sync(&q, "b", &[]);
    // Round-robin: one each.
    let got_first = first.expect_message();
    let got_second = second.expect_message();
    assert_eq!(bodies(&[got_first.clone(), got_second.clone()]), ["a", "b"]);
    second.ack(&got_second);
    first.disconnect();
    let m = second.expect_body(&got_first.text());
    assert_redelivered(&m);
}

#[test]
fn ack_by_message_id_and_subscription_in_1_1() {
    let broker = Broker::under_test();
    let q = queue("ack11");
    fill(&broker, &q, &["m1", "m2"]);
    let mut c = broker.connect("1.1");
    c.subscribe(&q, "s11", "client-individual", &[]);
    let m1 = c.expect_body("m1");
    c.expect_body("m2");
    c.expect_body("LAST-FILL");
    c.request(
        Frame::new("ACK")
            .header("message-id", m1.must("message-id"))
            .header("subscription", "s11"),
    );
    c.disconnect();
    let left = queued_before_marker(&broker, &q);
    assert_eq!(bodies(&left), ["LAST-FILL", "m2"], "{left:?}");
}

#[test]
fn nack_by_message_id_and_subscription_in_1_1() {
    let broker = Broker::under_test();
    let q = queue("nack11");
    let mut c = broker.connect("1.1");
    c.subscribe(&q, "s11", "client-individual", &[]);
    c.send(&q, "again", &[]);
    let m = c.expect_body("again");
    c.request(
        Frame::new("NACK")
            .header("message-id", m.must("message-id"))
            .header("subscription", "s11"),
    );
    if target() == Target::ActiveMq {
        assert_nack_is_poison(c, &broker, &q, &[]);
        return;
    }
    let again = c.expect_body("again");
    assert_redelivered(&again);
}

#[test]
fn ack_by_message_id_in_1_0() {
    let broker = Broker::under_test();
    let q = queue("ack10");
    fill(&broker, &q, &["m1"]);
    let mut c = broker.connect("1.0");
    c.request(
        Frame::new("SUBSCRIBE")
            .header("destination", q.as_str())
            .header("ack", "client"),
    );
    c.expect_body("m1");
    let last = c.expect_body("LAST-FILL");
    c.request(Frame::new("ACK").header("message-id", last.must("message-id")));
    c.disconnect();
    let left = queued_before_marker(&broker, &q);
    assert!(left.is_empty(), "cumulative 1.0 ACK left {left:?}");
}

#[test]
fn ack_with_unknown_id_is_an_error() {
    // FEATURES.md §1.7: stale or unknown ack ids are answered with an ERROR.
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("unknown-ack");
    c.subscribe(&q, "s", "client-individual", &[]);
    c.send_frame(
        &Frame::new("ACK")
            .header("id", "no-such-ack-id")
            .header("receipt", "r1"),
    );
    c.expect_refusal(Some("r1"));
}

#[test]
fn acked_message_is_not_delivered_again_to_anyone() {
    let broker = Broker::under_test();
    let q = queue("acked-gone");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "done", &[]);
    let m = c.expect_body("done");
    c.request(Frame::new("ACK").header("id", m.must("ack")));
    c.abort();
    let left = queued_before_marker(&broker, &q);
    assert!(left.is_empty(), "acked message came back: {left:?}");
}
