//! NACK and redelivery: the redelivery count, per-destination policies (`max_redeliveries`,
//! a redelivery delay with back-off, ActiveMQ's NACK-to-DLQ), and the dead-letter queue.

use crate::support::{queue, target, Broker, Target, QUIET, WAIT};

const POLICIES: &str = r#"
[destinations]
max_redeliveries = 6

[[destinations.policy]]
match = "/queue/policy.fragile.>"
max_redeliveries = 1

[[destinations.policy]]
match = "/queue/policy.poison.*"
nack_to_dlq = true

[[destinations.policy]]
match = "/queue/policy.slow.>"
redelivery_delay_ms = 1500
"#;

fn with_policies(test: &str) -> Option<Broker> {
    Broker::own_with_config(test, POLICIES)
}

#[test]
fn a_nacked_message_comes_back_with_its_redelivery_count() {
    let broker = Broker::under_test();
    let q = queue("nack-count");
    broker.connect("1.2").send_sync(&q, "again", &[]);
    let mut c = broker.connect("1.2");
    c.subscribe(&q, "s", "client-individual", &[]);
    for n in 0..3 {
        let m = c.expect_body("again");
        if n == 0 {
            assert_eq!(m.get("redelivered"), None, "{m:?}");
        } else {
            assert_eq!(m.get("redelivered"), Some("true"), "{m:?}");
            assert_eq!(
                m.get("redelivery-count"),
                Some(n.to_string().as_str()),
                "{m:?}"
            );
        }
        c.nack(&m);
        if target() == Target::ActiveMq {
            // ActiveMQ's STOMP NACK is a poison ack: no redelivery (ack.rs asserts where the
            // message goes; docs/compatibility.md).
            c.expect_silence(QUIET);
            return;
        }
    }
}

#[test]
fn max_redeliveries_is_per_destination_and_the_dlq_names_the_origin() {
    let Some(broker) = with_policies("max_redeliveries_is_per_destination") else {
        return;
    };
    let fragile = "/queue/policy.fragile.orders";
    let mut producer = broker.connect("1.2");
    producer.send_sync(fragile, "poison", &[("x-order", "7")]);
    let mut c = broker.connect("1.2");
    c.subscribe(fragile, "s", "client-individual", &[]);
    // Delivered once, redelivered once (max_redeliveries = 1), then dead-lettered.
    for _ in 0..2 {
        let m = c.expect_body("poison");
        c.nack(&m);
    }
    c.expect_silence(QUIET);
    let mut dlq = broker.connect("1.2");
    dlq.subscribe("/queue/ActiveMQ.DLQ", "d", "auto", &[]);
    let dead = dlq.expect_body("poison");
    assert_eq!(dead.get("original-destination"), Some(fragile), "{dead:?}");
    assert_eq!(dead.get("x-order"), Some("7"), "{dead:?}");
    assert!(
        dead.must("dlqDeliveryFailureCause")
            .contains("max_redeliveries (1)"),
        "{dead:?}"
    );
}

#[test]
fn nack_to_dlq_sends_a_nacked_message_straight_to_the_dlq() {
    let Some(broker) = with_policies("nack_to_dlq_sends_a_nacked_message_straight_to_the_dlq")
    else {
        return;
    };
    let poison = "/queue/policy.poison.jobs";
    broker.connect("1.2").send_sync(poison, "bad", &[]);
    let mut c = broker.connect("1.2");
    c.subscribe(poison, "s", "client-individual", &[]);
    let m = c.expect_body("bad");
    c.nack(&m);
    c.expect_silence(QUIET);
    let mut dlq = broker.connect("1.2");
    dlq.subscribe("/queue/ActiveMQ.DLQ", "d", "auto", &[]);
    let dead = dlq.expect_body("bad");
    assert_eq!(dead.get("original-destination"), Some(poison), "{dead:?}");
    // Other destinations still redeliver.
    let other = queue("nack-other");
    broker.connect("1.2").send_sync(&other, "retry", &[]);
    c.subscribe(&other, "o", "client-individual", &[]);
    let m = c.expect_body("retry");
    c.nack(&m);
    c.expect_body("retry");
}

#[test]
fn a_redelivery_delay_holds_a_nacked_message_back_then_delivers_it() {
    let Some(broker) = with_policies("a_redelivery_delay_holds_a_nacked_message_back") else {
        return;
    };
    let slow = "/queue/policy.slow.work";
    let mut producer = broker.connect("1.2");
    producer.send_sync(slow, "first", &[]);
    producer.send_sync(slow, "second", &[]);
    let mut c = broker.connect("1.2");
    c.subscribe(
        slow,
        "s",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    let m = c.expect_body("first");
    c.nack(&m);
    // While "first" waits out its delay, the queue goes on with "second".
    let m = c.expect_body("second");
    c.ack(&m);
    c.expect_silence(QUIET);
    let again = c.receive(1, WAIT);
    assert_eq!(again[0].text(), "first");
    assert_eq!(again[0].get("redelivery-count"), Some("1"), "{again:?}");
}
