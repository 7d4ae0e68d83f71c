//! Composite destinations: one SEND to several destinations (`/queue/a,/topic/b`).

use crate::support::{bodies, queue, target, topic, Broker, Frame, Target, QUIET, WAIT};

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

#[test]
fn a_receipted_persistent_composite_send_survives_kill_9_in_every_part() {
    let Some(mut broker) =
        Broker::own("a_receipted_persistent_composite_send_survives_kill_9_in_every_part")
    else {
        return;
    };
    let (a, b) = (queue("composite-kill-a"), queue("composite-kill-b"));
    let mut producer = broker.connect("1.2");
    for n in 0..50 {
        producer.send_persistent(&format!("{a},{b}"), &n.to_string(), &[]);
    }
    // The last RECEIPT promised every part of every SEND is on disk.
    broker.crash_and_restart();
    let expected: Vec<String> = (0..50).map(|n| n.to_string()).collect();
    for q in [&a, &b] {
        let mut c = broker.connect("1.2");
        c.subscribe(q, "s", "auto", &[]);
        assert_eq!(bodies(&c.receive(50, WAIT)), expected, "{q}");
        c.expect_silence(QUIET);
    }
}

/// ActiveMQ consumes from each part of a composite SUBSCRIBE; we refuse it with an ERROR that
/// says what to do instead, rather than read it as one queue named `a,/queue/b` that no SEND
/// could ever reach (docs/compatibility.md).
#[test]
fn a_composite_subscribe_is_refused_with_what_to_do_instead() {
    let broker = Broker::under_test();
    let (a, b) = (queue("composite-sub-a"), queue("composite-sub-b"));
    let mut c = broker.connect("1.2");
    let subscribe = Frame::new("SUBSCRIBE")
        .header("destination", format!("{a},{b}"))
        .header("id", "both");
    if target() == Target::ActiveMq {
        c.request(subscribe);
        let mut producer = broker.connect("1.2");
        producer.send_sync(&a, "from a", &[]);
        producer.send_sync(&b, "from b", &[]);
        assert_eq!(bodies(&c.receive(2, WAIT)).len(), 2);
        return;
    }
    c.send_frame(&subscribe.header("receipt", "r1"));
    let e = c.expect_error_and_close(Some("r1"));
    crate::support::assert_mentions(&e, &["composite"]);
}
