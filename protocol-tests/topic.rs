//! `/topic/NAME`: fan-out to the subscribers present when a message is sent.

use crate::support::{topic, Broker, Frame, QUIET};

#[test]
fn topic_message_fans_out_to_every_subscriber() {
    let broker = Broker::under_test();
    let t = topic("fanout");
    let mut subs: Vec<_> = (0..3)
        .map(|i| {
            let mut c = broker.connect("1.2");
            c.subscribe(&t, &format!("s{i}"), "auto", &[]);
            c
        })
        .collect();
    let mut p = broker.connect("1.2");
    p.request(
        Frame::new("SEND")
            .header("destination", t.as_str())
            .header("x-kind", "news")
            .body("to all"),
    );
    for (i, c) in subs.iter_mut().enumerate() {
        let m = c.expect_body("to all");
        assert_eq!(m.get("destination"), Some(t.as_str()), "{m:?}");
        assert_eq!(
            m.get("subscription"),
            Some(format!("s{i}").as_str()),
            "{m:?}"
        );
        assert_eq!(m.get("x-kind"), Some("news"), "{m:?}");
        assert!(m.get("message-id").is_some(), "{m:?}");
        c.expect_silence(QUIET);
    }
}

#[test]
fn topic_message_without_subscribers_is_dropped() {
    let broker = Broker::under_test();
    let t = topic("nobody");
    let mut p = broker.connect("1.2");
    p.send_sync(&t, "into the void", &[]);
    let mut c = broker.connect("1.2");
    c.subscribe(&t, "s", "auto", &[]);
    p.send_sync(&t, "heard", &[]);
    // The first message the subscriber sees is the one sent after it subscribed.
    c.expect_body("heard");
    c.expect_silence(QUIET);
}

#[test]
fn two_subscriptions_on_one_connection_each_get_a_copy() {
    let broker = Broker::under_test();
    let t = topic("twice");
    let mut c = broker.connect("1.2");
    c.subscribe(&t, "a", "auto", &[]);
    c.subscribe(&t, "b", "auto", &[]);
    c.send(&t, "copy", &[]);
    let mut subs = vec![
        c.expect_body("copy").must("subscription").to_string(),
        c.expect_body("copy").must("subscription").to_string(),
    ];
    subs.sort();
    assert_eq!(subs, ["a", "b"]);
    c.expect_silence(QUIET);
}

#[test]
fn topic_unsubscribe_stops_delivery_to_that_subscription_only() {
    let broker = Broker::under_test();
    let t = topic("unsub");
    let mut gone = broker.connect("1.2");
    let mut stays = broker.connect("1.2");
    gone.subscribe(&t, "g", "auto", &[]);
    stays.subscribe(&t, "s", "auto", &[]);
    gone.request(Frame::new("UNSUBSCRIBE").header("id", "g"));
    let mut p = broker.connect("1.2");
    p.send_sync(&t, "after", &[]);
    stays.expect_body("after");
    gone.expect_silence(QUIET);
}

#[test]
fn topic_preserves_order_from_one_producer() {
    let broker = Broker::under_test();
    let t = topic("order");
    let mut a = broker.connect("1.2");
    let mut b = broker.connect("1.2");
    a.subscribe(&t, "a", "auto", &[]);
    b.subscribe(&t, "b", "auto", &[]);
    let mut p = broker.connect("1.2");
    for i in 0..100 {
        p.send(&t, &format!("m{i}"), &[]);
    }
    for i in 0..100 {
        a.expect_body(&format!("m{i}"));
        b.expect_body(&format!("m{i}"));
    }
}

#[test]
fn disconnected_subscriber_no_longer_receives() {
    let broker = Broker::under_test();
    let t = topic("left");
    let mut left = broker.connect("1.2");
    left.subscribe(&t, "l", "auto", &[]);
    left.disconnect();
    let mut stays = broker.connect("1.2");
    stays.subscribe(&t, "s", "auto", &[]);
    let mut p = broker.connect("1.2");
    p.send_sync(&t, "still works", &[]);
    stays.expect_body("still works");
}
