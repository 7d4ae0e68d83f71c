//! A topic subscriber that stops reading holds its topic over the memory limit (producers are
//! held by flow control); after `slow_consumer_timeout_ms` it is disconnected with an ERROR,
//! and the producer and the other subscribers carry on.

mod support;

use std::time::Duration;

use support::{unique, Broker};

#[test]
fn a_stalled_topic_subscriber_is_disconnected_and_the_others_carry_on() {
    let broker = Broker::start_with_config(
        "[destinations]\nmemory_limit_bytes = 65536\nslow_consumer_timeout_ms = 500\n",
    );
    let topic = format!("/topic/{}", unique("slow"));
    // The stuck one: client acks, never acks, one message in flight at a time.
    let mut stuck = broker.connect("1.2");
    stuck.subscribe(
        &topic,
        "s",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    let mut healthy = broker.connect("1.2");
    healthy.subscribe(&topic, "h", "auto", &[]);
    let mut producer = broker.connect("1.2");
    let body = "x".repeat(1024);
    // Far more than 64 KiB: without the slow-consumer rule the producer would wait forever.
    for i in 0..400 {
        producer.send(&topic, &format!("{i}:{body}"), &[]);
    }
    producer.send_sync(&topic, "last", &[]);
    // The healthy subscriber got everything, in order.
    let got = healthy.receive(401, Duration::from_secs(20));
    assert!(got[400].text().starts_with("last"));
    // The stuck one got its first message, then an ERROR naming the reason, then a close.
    let first = stuck.expect_message();
    assert!(first.text().starts_with("0:"));
    let error = stuck.expect("ERROR", Duration::from_secs(10));
    assert_eq!(error.get("message"), Some("slow consumer"), "{error:?}");
}
