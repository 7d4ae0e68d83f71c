//! `/queue/NAME`: point-to-point delivery, MESSAGE headers, round-robin, subscription ids.

use std::collections::HashSet;

use crate::support::{queue, target, Broker, Frame, Target, QUIET};

#[test]
fn queue_message_carries_destination_message_id_subscription_and_user_headers() {
    let broker = Broker::under_test();
    let mut consumer = broker.connect("1.2");
    let mut producer = broker.connect("1.2");
    let q = queue("headers");
    consumer.subscribe(&q, "sub-7", "auto", &[]);
    producer.request(
        Frame::new("SEND")
            .header("destination", q.as_str())
            .header("content-type", "text/plain")
            .header("x-order", "42")
            .header("correlation-id", "c-1")
            .body("hello"),
    );
    let m = consumer.expect_body("hello");
    assert_eq!(m.get("destination"), Some(q.as_str()), "{m:?}");
    assert_eq!(m.get("subscription"), Some("sub-7"), "{m:?}");
    assert!(m.get("message-id").is_some_and(|v| !v.is_empty()), "{m:?}");
    assert_eq!(m.get("x-order"), Some("42"), "{m:?}");
    assert_eq!(m.get("correlation-id"), Some("c-1"), "{m:?}");
    assert_eq!(m.get("content-type"), Some("text/plain"), "{m:?}");
    assert_eq!(
        m.get("receipt"),
        None,
        "SEND's receipt must not leak into MESSAGE: {m:?}"
    );
}

#[test]
fn message_sent_before_subscribe_waits_in_the_queue() {
    let broker = Broker::under_test();
    let mut producer = broker.connect("1.2");
    let q = queue("waits");
    producer.send_sync(&q, "early", &[]);
    producer.disconnect();
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    consumer.expect_body("early");
}

#[test]
fn queue_preserves_order_for_one_consumer() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("fifo");
    for i in 0..50 {
        c.send(&q, &format!("m{i}"), &[]);
    }
    c.send_sync(&q, "m50", &[]);
    c.subscribe(&q, "s", "auto", &[]);
    for i in 0..=50 {
        c.expect_body(&format!("m{i}"));
    }
}

#[test]
fn message_ids_are_unique() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("ids");
    c.subscribe(&q, "s", "auto", &[]);
    for i in 0..20 {
        c.send(&q, &format!("{i}"), &[]);
    }
    let mut ids = HashSet::new();
    for i in 0..20 {
        let m = c.expect_body(&format!("{i}"));
        assert!(
            ids.insert(m.must("message-id").to_string()),
            "duplicate id: {m:?}"
        );
    }
}

#[test]
fn each_queue_message_goes_to_exactly_one_consumer_round_robin() {
    let broker = Broker::under_test();
    let q = queue("rr");
    let mut a = broker.connect("1.2");
    let mut b = broker.connect("1.2");
    a.subscribe(&q, "a", "auto", &[]);
    b.subscribe(&q, "b", "auto", &[]);
    let mut p = broker.connect("1.2");
    for i in 0..9 {
        p.send(&q, &format!("m{i}"), &[]);
    }
    p.send_sync(&q, "m9", &[]);
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(a.expect_message().text());
        got_b.push(b.expect_message().text());
    }
    a.expect_silence(QUIET);
    b.expect_silence(QUIET);
    let mut all: Vec<String> = got_a.iter().chain(&got_b).cloned().collect();
    all.sort();
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(all, want, "a got {got_a:?}, b got {got_b:?}");
}

#[test]
fn consumers_on_one_connection_share_a_queue() {
    let broker = Broker::under_test();
    let q = queue("same-conn");
    let mut c = broker.connect("1.2");
    c.subscribe(&q, "one", "auto", &[]);
    c.subscribe(&q, "two", "auto", &[]);
    for i in 0..4 {
        c.send(&q, &format!("m{i}"), &[]);
    }
    let mut per_sub = std::collections::HashMap::<String, usize>::new();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let m = c.expect_message();
        *per_sub
            .entry(m.must("subscription").to_string())
            .or_default() += 1;
        bodies.push(m.text());
    }
    c.expect_silence(QUIET);
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3"]);
    assert_eq!(per_sub.get("one"), Some(&2), "{per_sub:?}");
    assert_eq!(per_sub.get("two"), Some(&2), "{per_sub:?}");
}

#[test]
fn unsubscribe_stops_delivery() {
    let broker = Broker::under_test();
    let q = queue("unsub");
    let mut c = broker.connect("1.2");
    c.subscribe(&q, "s", "auto", &[]);
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    let mut p = broker.connect("1.2");
    p.send_sync(&q, "after unsubscribe", &[]);
    c.expect_silence(QUIET);
    let mut other = broker.connect("1.2");
    other.subscribe(&q, "s2", "auto", &[]);
    other.expect_body("after unsubscribe");
}

#[test]
fn queue_and_topic_with_the_same_name_are_distinct() {
    let broker = Broker::under_test();
    let name = crate::support::unique("both");
    let q = format!("/queue/{name}");
    let t = format!("/topic/{name}");
    let mut c = broker.connect("1.2");
    c.subscribe(&t, "t", "auto", &[]);
    c.send_sync(&q, "to the queue", &[]);
    c.expect_silence(QUIET);
    c.subscribe(&q, "q", "auto", &[]);
    let m = c.expect_body("to the queue");
    assert_eq!(m.get("subscription"), Some("q"));
}

#[test]
fn subscription_id_is_the_destination_in_1_0() {
    let broker = Broker::under_test();
    let q = queue("v10-sub");
    let mut c = broker.connect("1.0");
    c.request(Frame::new("SUBSCRIBE").header("destination", q.as_str()));
    c.send(&q, "one-oh", &[]);
    let m = c.expect_body("one-oh");
    assert_eq!(m.get("destination"), Some(q.as_str()), "{m:?}");
    // ActiveMQ sends no `subscription` header for it (1.0 does not require one; see
    // docs/compatibility.md).
    let want = match target() {
        Target::ActiveMq => None,
        _ => Some(q.as_str()),
    };
    assert_eq!(
        m.get("subscription"),
        want,
        "1.0 subscription without id is named by its destination: {m:?}"
    );
    // UNSUBSCRIBE by destination ends it.
    c.request(Frame::new("UNSUBSCRIBE").header("destination", q.as_str()));
    let mut p = broker.connect("1.0");
    p.send_sync(&q, "after", &[]);
    c.expect_silence(QUIET);
}

#[test]
fn messages_flow_between_versions() {
    let broker = Broker::under_test();
    let q = queue("mixed");
    let mut c10 = broker.connect("1.0");
    c10.request(Frame::new("SUBSCRIBE").header("destination", q.as_str()));
    let mut p12 = broker.connect("1.2");
    p12.request(
        Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x-plain", "value")
            .body("from 1.2"),
    );
    let m = c10.expect_body("from 1.2");
    assert_eq!(m.get("x-plain"), Some("value"), "{m:?}");
}
