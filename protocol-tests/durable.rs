//! Removing durable topic subscriptions the ActiveMQ way: UNSUBSCRIBE with
//! `activemq.subscriptionName` after the consumer has gone (also from a new connection, with
//! no `destination`), and "durable consumer is in use" while one is attached.

use crate::support::{topic, Broker, Frame, QUIET};

fn unsubscribe_by_name(name: &str) -> Frame {
    Frame::new("UNSUBSCRIBE")
        .header("id", name)
        .header("activemq.subscriptionName", name)
}

#[test]
fn a_durable_subscription_is_removed_by_name_from_a_new_connection() {
    let broker = Broker::under_test();
    let t = topic("durable-remove");
    let client = [("client-id", "durable-remover")];
    let name = [("activemq.subscriptionName", "news")];
    let mut c = broker.connect_with("1.2", &client);
    c.subscribe(&t, "news", "auto", &name);
    c.disconnect();
    let mut c = broker.connect_with("1.2", &client);
    // No destination: ActiveMQ's clients name the subscription only.
    c.request(unsubscribe_by_name("news"));
    broker
        .connect("1.2")
        .send_sync(&t, "while-removed", &[("persistent", "true")]);
    c.subscribe(&t, "news", "auto", &name);
    c.expect_silence(QUIET);
}

#[test]
fn a_durable_subscription_with_a_consumer_attached_is_in_use() {
    let broker = Broker::under_test();
    let t = topic("durable-in-use");
    let mut c = broker.connect_with("1.2", &[("client-id", "durable-user")]);
    c.subscribe(
        &t,
        "attached",
        "auto",
        &[("activemq.subscriptionName", "busy")],
    );
    c.send_frame(
        &unsubscribe_by_name("busy")
            .header("destination", t.as_str())
            .header("receipt", "r1"),
    );
    let e = c.expect_refusal(Some("r1"));
    assert!(
        e.must("message").to_ascii_lowercase().contains("in use"),
        "{e:?}"
    );
}
