//! Composite destinations: one SEND to several destinations (`/queue/a,/topic/b`).

use crate::support::{queue, target, topic, Broker, Frame, Target, QUIET, WAIT};

#[test]
fn a_composite_send_reaches_every_destination_named() {
    let broker = Broker::under_test();
    let (q, t) = (queue("composite-q"), topic("composite-t"));
    let mut on_queue = broker.connect("1.2");
    on_queue.subscribe(&q, "q", "auto", &[]);
    let mut on_topic = broker.connect("1.2");
    on_topic.subscribe(&t, "t", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&format!("{q},{t}"), "both", &[("x-k", "v")]);
    let m = on_queue.expect_body("both");
    assert_eq!(m.get("destination"), Some(q.as_str()), "{m:?}");
    assert_eq!(m.get("x-k"), Some("v"), "{m:?}");
    let m = on_topic.expect_body("both");
    assert_eq!(m.get("destination"), Some(t.as_str()), "{m:?}");
    if target() == Target::ActiveMq {
        return;
    }
    // Ours also takes the parts in ActiveMQ's own URI form (queue://, topic://).
    let uri_form = format!("{q},topic://{}", &t["/topic/".len()..]);
    producer.send_sync(&uri_form, "again", &[]);
    on_queue.expect_body("again");
    on_topic.expect_body("again");
    on_queue.expect_silence(QUIET);
    on_topic.expect_silence(QUIET);
}

#[test]
fn a_composite_send_in_a_transaction_reaches_every_destination_at_commit() {
    let broker = Broker::under_test();
    let (a, b) = (queue("composite-tx-a"), queue("composite-tx-b"));
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&a, "a", "auto", &[]);
    consumer.subscribe(&b, "b", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.request(Frame::new("BEGIN").header("transaction", "t1"));
    producer.send_sync(&format!("{a},{b}"), "at-commit", &[("transaction", "t1")]);
    consumer.expect_silence(QUIET);
    producer.request(Frame::new("COMMIT").header("transaction", "t1"));
    let got = consumer.receive(2, WAIT);
    let mut destinations: Vec<&str> = got.iter().map(|m| m.must("destination")).collect();
    destinations.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(destinations, want, "{got:?}");
}
