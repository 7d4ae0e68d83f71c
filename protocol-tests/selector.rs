//! The SUBSCRIBE `selector` header: JMS selectors over message headers, on queues, topics and
//! durable topic subscriptions; an invalid one is an ERROR naming the position.

use crate::support::{bodies, queue, target, topic, Broker, Frame, Target, QUIET, WAIT};

#[test]
fn a_queue_consumer_with_a_selector_receives_only_matching_messages_in_order() {
    let broker = Broker::under_test();
    let q = queue("sel-basic");
    let mut producer = broker.connect("1.2");
    for (n, color) in ["red", "blue", "red", "green", "red"].iter().enumerate() {
        producer.send_sync(
            &q,
            &format!("{color}-{n}"),
            &[("color", color), ("n", &n.to_string())],
        );
    }
    let mut reds = broker.connect("1.2");
    reds.subscribe(&q, "r", "auto", &[("selector", "color = 'red' AND n >= 1")]);
    let got = reds.receive(2, WAIT);
    assert_eq!(bodies(&got), ["red-2", "red-4"]);
    reds.expect_silence(QUIET);
}

#[test]
fn messages_no_consumer_wants_do_not_block_the_ones_behind_them() {
    let broker = Broker::under_test();
    let q = queue("sel-head");
    let mut producer = broker.connect("1.2");
    // The head of the queue is wanted by nobody attached.
    for n in 0..50 {
        producer.send(&q, &format!("other-{n}"), &[("kind", "other")]);
    }
    producer.send_sync(&q, "mine", &[("kind", "mine")]);
    let mut c = broker.connect("1.2");
    c.subscribe(
        &q,
        "m",
        "client-individual",
        &[("selector", "kind = 'mine'")],
    );
    let m = c.expect_body("mine");
    c.ack(&m);
    c.expect_silence(QUIET);
    // The others are still there for a consumer that wants them.
    let mut rest = broker.connect("1.2");
    rest.subscribe(&q, "o", "auto", &[]);
    let got = rest.receive(50, WAIT);
    assert_eq!(got[0].text(), "other-0");
    assert_eq!(got[49].text(), "other-49");
}

#[test]
fn two_selective_consumers_split_a_queue_by_header() {
    let broker = Broker::under_test();
    let q = queue("sel-split");
    let mut even = broker.connect("1.2");
    even.subscribe(
        &q,
        "e",
        "auto",
        &[("selector", "parity = 'even' AND n >= 0")],
    );
    let mut odd = broker.connect("1.2");
    odd.subscribe(&q, "o", "auto", &[("selector", "parity = 'odd'")]);
    let mut producer = broker.connect("1.2");
    for n in 0..20 {
        let parity = if n % 2 == 0 { "even" } else { "odd" };
        producer.send(
            &q,
            &n.to_string(),
            &[("n", &n.to_string()), ("parity", parity)],
        );
    }
    let evens: Vec<String> = (0..20).step_by(2).map(|n| n.to_string()).collect();
    let odds: Vec<String> = (1..20).step_by(2).map(|n| n.to_string()).collect();
    assert_eq!(bodies(&even.receive(10, WAIT)), evens);
    assert_eq!(bodies(&odd.receive(10, WAIT)), odds);
}

#[test]
fn topic_subscribers_each_get_what_their_selector_matches() {
    let broker = Broker::under_test();
    let t = topic("sel-topic");
    let mut cheap = broker.connect("1.2");
    cheap.subscribe(&t, "c", "auto", &[("selector", "price < 10")]);
    let mut all = broker.connect("1.2");
    all.subscribe(&t, "a", "auto", &[]);
    let mut uk = broker.connect("1.2");
    uk.subscribe(
        &t,
        "u",
        "auto",
        &[("selector", "country IN ('UK', 'IE') AND price IS NOT NULL")],
    );
    let mut producer = broker.connect("1.2");
    for (price, country) in [("5", "UK"), ("15", "FR"), ("9.5", "IE"), ("20", "UK")] {
        producer.send_sync(
            &t,
            &format!("{country}{price}"),
            &[("price", price), ("country", country)],
        );
    }
    if target() == Target::ActiveMq {
        // ActiveMQ reads "9.5" as a long to compare it with 10, fails, and calls it false
        // (docs/compatibility.md: selectors).
        assert_eq!(bodies(&cheap.receive(1, WAIT)), ["UK5"]);
    } else {
        assert_eq!(bodies(&cheap.receive(2, WAIT)), ["UK5", "IE9.5"]);
    }
    assert_eq!(bodies(&all.receive(4, WAIT)).len(), 4);
    assert_eq!(bodies(&uk.receive(3, WAIT)), ["UK5", "IE9.5", "UK20"]);
    cheap.expect_silence(QUIET);
    uk.expect_silence(QUIET);
}

#[test]
fn jms_header_aliases_select_on_priority_and_type() {
    let broker = Broker::under_test();
    let q = queue("sel-jms");
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "low", &[("priority", "1"), ("type", "a")]);
    producer.send_sync(&q, "high", &[("priority", "8"), ("type", "b")]);
    producer.send_sync(&q, "high-a", &[("priority", "9"), ("type", "a")]);
    let mut c = broker.connect("1.2");
    c.subscribe(
        &q,
        "s",
        "auto",
        &[("selector", "JMSPriority > 4 AND JMSType = 'a'")],
    );
    c.expect_body("high-a");
    c.expect_silence(QUIET);
}

#[test]
fn an_invalid_selector_is_an_error_naming_the_position() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("destination", queue("sel-bad").as_str())
            .header("id", "s")
            .header("selector", "color = 'red' AND")
            .header("receipt", "r1"),
    );
    let e = c.expect_refusal(Some("r1"));
    if target() == Target::ActiveMq {
        // ActiveMQ's `message` is the selector itself (the body a Java stack trace), and the
        // connection stays open (docs/compatibility.md).
        assert_eq!(e.get("message"), Some("color = 'red' AND"), "{e:?}");
        return;
    }
    let message = e.must("message");
    assert!(message.contains("selector"), "{e:?}");
    assert!(message.contains("position 18"), "{e:?}");
}

#[test]
fn a_durable_subscription_keeps_only_what_its_selector_matches_while_away() {
    let Some(mut broker) =
        Broker::own("a_durable_subscription_keeps_only_what_its_selector_matches")
    else {
        return;
    };
    let t = topic("sel-durable");
    let durable = [
        ("activemq.subscriptionName", "picky"),
        ("selector", "wanted = 'yes'"),
    ];
    let mut c = broker.connect_with("1.2", &[("client-id", "sel-d")]);
    c.subscribe(&t, "d", "client-individual", &durable);
    c.disconnect();
    // The selector is stored with the subscription: it still filters after a restart.
    broker.crash_and_restart();
    let mut producer = broker.connect("1.2");
    for n in 0..10 {
        let wanted = if n % 3 == 0 { "yes" } else { "no" };
        producer.send_persistent(&t, &n.to_string(), &[("wanted", wanted)]);
    }
    let mut c = broker.connect_with("1.2", &[("client-id", "sel-d")]);
    c.subscribe(&t, "d", "client-individual", &durable);
    let got = c.receive(4, WAIT);
    assert_eq!(bodies(&got), ["0", "3", "6", "9"]);
    for m in &got {
        c.ack(m);
    }
    c.expect_silence(QUIET);
    // A new selector starts the subscription afresh, as in ActiveMQ.
    c.disconnect();
    producer.send_persistent(&t, "kept-for-old", &[("wanted", "yes")]);
    let mut c = broker.connect_with("1.2", &[("client-id", "sel-d")]);
    c.subscribe(
        &t,
        "d",
        "client-individual",
        &[
            ("activemq.subscriptionName", "picky"),
            ("selector", "wanted = 'no'"),
        ],
    );
    c.expect_silence(QUIET);
    producer.send_persistent(&t, "new-no", &[("wanted", "no")]);
    c.expect_body("new-no");
}
