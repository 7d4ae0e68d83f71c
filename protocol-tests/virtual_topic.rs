//! Virtual topics: a SEND to `/topic/VirtualTopic.X` also goes to each consumer queue
//! `/queue/Consumer.<group>.VirtualTopic.X`, whose consumers share it as on any queue.

use crate::support::{bodies, unique, Broker, Client, Frame, QUIET, WAIT};

/// `(topic, consumer queue of group)` for a fresh virtual topic.
fn names() -> (String, impl Fn(&str) -> String) {
    let name = format!("VirtualTopic.{}", unique("vt"));
    let topic = format!("/topic/{name}");
    (topic, move |group: &str| {
        format!("/queue/Consumer.{group}.{name}")
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn each_consumer_group_gets_every_message_once_and_shares_it_among_its_consumers() {
    let broker = Broker::under_test();
    let (topic, queue) = names();
    let mut a1 = broker.connect("1.2");
    a1.subscribe(&queue("A"), "a1", "auto", &[("activemq.prefetchSize", "1")]);
    let mut a2 = broker.connect("1.2");
    a2.subscribe(&queue("A"), "a2", "auto", &[("activemq.prefetchSize", "1")]);
    let mut b = broker.connect("1.2");
    b.subscribe(&queue("B"), "b", "auto", &[]);
    let mut plain = broker.connect("1.2");
    plain.subscribe(&topic, "t", "auto", &[]);
    let mut producer = broker.connect("1.2");
    let sent: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    for body in &sent {
        producer.send_sync(&topic, body, &[]);
    }
    let mut group_a = a1.receive_until_quiet(QUIET, WAIT);
    group_a.extend(a2.receive_until_quiet(QUIET, WAIT));
    assert_eq!(sorted(bodies(&group_a)), sorted(sent.clone()), "group A");
    for m in &group_a {
        assert_eq!(m.get("destination"), Some(queue("A").as_str()), "{m:?}");
    }
    let got = b.receive(10, WAIT);
    assert_eq!(bodies(&got), sent, "group B, in order");
    assert_eq!(
        bodies(&plain.receive(10, WAIT)),
        sent,
        "the topic's own subscriber"
    );
    b.expect_silence(QUIET);
}

#[test]
fn a_consumer_queue_keeps_messages_while_its_consumers_are_away() {
    let broker = Broker::under_test();
    let (topic, queue) = names();
    let mut c = broker.connect("1.2");
    c.subscribe(&queue("away"), "s", "auto", &[]);
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    c.disconnect();
    let mut producer = broker.connect("1.2");
    for i in 0..5 {
        producer.send_sync(&topic, &i.to_string(), &[]);
    }
    let mut back = broker.connect("1.2");
    back.subscribe(&queue("away"), "s", "auto", &[]);
    assert_eq!(bodies(&back.receive(5, WAIT)), ["0", "1", "2", "3", "4"]);
}

#[test]
fn a_consumer_queue_survives_a_restart_and_takes_a_receipted_persistent_send() {
    let Some(mut broker) =
        Broker::own("a_consumer_queue_survives_a_restart_and_takes_a_receipted_persistent_send")
    else {
        return;
    };
    let (topic, queue) = names();
    let mut c = broker.connect("1.2");
    // Its RECEIPT means the consumer queue is recorded.
    c.subscribe(&queue("kept"), "s", "auto", &[]);
    c.disconnect();
    broker.crash_and_restart();
    let mut producer = broker.connect("1.2");
    producer.send_persistent(&topic, "after restart", &[]);
    // An operator sees the consumer queue and its message.
    let rows: i64 = broker
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE destination = ?1",
            [queue("kept")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1);
    broker.crash_and_restart();
    let mut back = broker.connect("1.2");
    back.subscribe(&queue("kept"), "s", "auto", &[]);
    let m = back.expect_body("after restart");
    assert_eq!(m.get("original-destination"), Some(topic.as_str()), "{m:?}");
}

#[test]
fn a_deleted_consumer_queue_no_longer_receives() {
    let Some(broker) = Broker::own("a_deleted_consumer_queue_no_longer_receives") else {
        return;
    };
    let (topic, queue) = names();
    let mut c = broker.connect("1.2");
    c.subscribe(&queue("gone"), "s", "auto", &[]);
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    let path = format!("/api/delete?destination={}", queue("gone"));
    let r = crate::support::http::post(broker.admin_addr(), &path);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&topic, "not kept", &[]);
    let mut kept = broker.connect("1.2");
    // A plain subscription to the queue (re-creating it) finds nothing waiting.
    let mut probe: Client = broker.connect("1.2");
    probe.send_sync(&queue("gone"), "probe", &[]);
    kept.subscribe(&queue("gone"), "s", "auto", &[]);
    assert_eq!(kept.expect_message().text(), "probe");
    kept.expect_silence(QUIET);
}

/// A consumer queue exists until deleted: listed while empty and without consumers, also
/// after a plain queue idle as long has been forgotten (`idle_timeout_ms = 1`), and after a
/// restart.
#[test]
fn a_consumer_queue_stays_listed_while_idle_and_after_a_restart() {
    let Some(mut broker) = Broker::own_with_config(
        "a_consumer_queue_stays_listed_while_idle_and_after_a_restart",
        "[destinations]\nidle_timeout_ms = 1\n",
    ) else {
        return;
    };
    let (_, queue) = names();
    let plain = format!("/queue/{}", unique("vt-plain"));
    let listed = |broker: &Broker, name: &str| {
        let json = broker
            .admin_get("/api/destinations")
            .expect("our admin API");
        json.contains(&format!("\"destination\":\"{name}\""))
    };
    let mut c = broker.connect("1.2");
    c.subscribe(&queue("idle"), "v", "auto", &[]);
    c.subscribe(&plain, "p", "auto", &[]);
    c.request(Frame::new("UNSUBSCRIBE").header("id", "v"));
    c.request(Frame::new("UNSUBSCRIBE").header("id", "p"));
    crate::support::eventually(WAIT, || match listed(&broker, &plain) {
        false => Ok(()),
        true => Err("the plain queue is still listed"),
    });
    assert!(
        listed(&broker, &queue("idle")),
        "the consumer queue is listed"
    );
    c.disconnect();
    broker.crash_and_restart();
    assert!(
        listed(&broker, &queue("idle")),
        "the consumer queue is listed after a restart"
    );
}
