//! Advisory topics (`/topic/ActiveMQ.Advisory.…`): destinations created and removed, consumers
//! starting and stopping, connections, expired and dead-lettered messages, as JSON MESSAGEs a
//! STOMP client reads.
//!
//! ActiveMQ 5.17 as Debian packages it delivers none of its advisories to a STOMP subscriber
//! (they are Java objects; asked for `transformation:jms-advisory-json` it closes the
//! connection, its JSON libraries not being installed), so against it these tests only check
//! that the subscription is accepted (docs/compatibility.md, Advisories).

use crate::support::{now_ms, queue, target, topic, unique, Broker, Client, Frame, Target, WAIT};

/// The advisory's JSON body.
fn json(m: &Frame) -> serde_json::Value {
    assert_eq!(m.get("type"), Some("Advisory"), "{m:?}");
    assert_eq!(m.get("content-type"), Some("application/json"), "{m:?}");
    serde_json::from_str(&m.text()).unwrap_or_else(|e| panic!("{e}: {m:?}"))
}

/// Subscribes `c` to advisory topic `name` (after `ActiveMQ.Advisory.`); false against
/// ActiveMQ, which sends none.
fn listen(c: &mut Client, name: &str) -> bool {
    c.subscribe(
        &format!("/topic/ActiveMQ.Advisory.{name}"),
        "adv",
        "auto",
        &[],
    );
    target() != Target::ActiveMq
}

#[test]
fn consumer_advisories_count_the_consumers_of_a_queue() {
    let broker = Broker::under_test();
    let q = queue("adv-q");
    let mut adv = broker.connect("1.2");
    if !listen(
        &mut adv,
        &format!("Consumer.Queue.{}", &q["/queue/".len()..]),
    ) {
        return;
    }
    let mut a = broker.connect("1.2");
    a.subscribe(&q, "a", "auto", &[("selector", "region = 'eu'")]);
    let m = adv.expect_message();
    assert_eq!(m.get("consumerCount"), Some("1"), "{m:?}");
    let body = json(&m);
    assert_eq!(body["event"], "consumer-added");
    assert_eq!(body["destination"], q.as_str());
    assert_eq!(body["selector"], "region = 'eu'");
    let mut b = broker.connect("1.2");
    b.subscribe(&q, "b", "client", &[]);
    assert_eq!(adv.expect_message().get("consumerCount"), Some("2"));
    b.request(Frame::new("UNSUBSCRIBE").header("id", "b"));
    let m = adv.expect_message();
    assert_eq!(m.get("consumerCount"), Some("1"), "{m:?}");
    assert_eq!(json(&m)["event"], "consumer-removed");
    // A connection that goes away takes its consumers with it.
    a.abort();
    let m = adv.expect_message();
    assert_eq!(m.get("consumerCount"), Some("0"), "{m:?}");
    assert_eq!(json(&m)["event"], "consumer-removed");
}

#[test]
fn consumer_advisories_of_topics_durable_and_wildcard_subscriptions_reach_a_wildcard_listener() {
    let broker = Broker::under_test();
    let t = topic("adv-t");
    let mut adv = broker.connect("1.2");
    if !listen(&mut adv, "Consumer.Topic.>") {
        return;
    }
    let client_id = unique("adv-client");
    let mut c = broker.connect_with("1.2", &[("client-id", &client_id)]);
    c.subscribe(&t, "plain", "auto", &[]);
    c.subscribe(&t, "durable", "auto", &[("activemq.subscriptionName", "d")]);
    let pattern = format!("{t}.>");
    c.subscribe(&pattern, "wild", "auto", &[]);
    // A new advisory subscriber is first told of the consumers that exist (other tests'
    // topics on a shared broker): only this test's topic counts here.
    let mut events = Vec::new();
    while events.len() < 3 {
        let m = adv.expect_message();
        let body = json(&m);
        if body["destination"]
            .as_str()
            .is_some_and(|d| d.starts_with(t.as_str()))
        {
            events.push((m.get("consumerCount").map(str::to_string), body));
        }
    }
    assert_eq!(events[0].0.as_deref(), Some("1"));
    assert_eq!(events[0].1["destination"], t.as_str());
    assert_eq!(events[1].0.as_deref(), Some("2"), "the durable one counts");
    assert_eq!(
        events[1].1["durable_subscription"],
        format!("{client_id}:d").as_str()
    );
    // The wildcard subscription is announced once, for its pattern.
    assert_eq!(events[2].1["destination"], pattern.as_str());
    assert_eq!(events[2].0.as_deref(), Some("1"));
    while let Some(m) = adv.next_frame(crate::support::QUIET) {
        let body = json(&m);
        let d = body["destination"].as_str().unwrap_or_default();
        assert!(
            !d.starts_with(t.as_str()),
            "one advisory per consumer: {m:?}"
        );
    }
}

#[test]
fn a_new_advisory_subscriber_is_told_of_the_consumers_that_exist() {
    let broker = Broker::under_test();
    let q = queue("adv-replay");
    let name = &q["/queue/".len()..];
    let mut a = broker.connect("1.2");
    a.subscribe(&q, "a", "auto", &[("selector", "region = 'eu'")]);
    let mut b = broker.connect("1.2");
    b.subscribe(&q, "b", "client", &[]);
    // A consumer of a queue of the same prefix is not about this queue, and a browser is no
    // consumer.
    b.subscribe(&format!("{q}.other"), "c", "auto", &[]);
    b.subscribe(&q, "browse", "auto", &[("browser", "true")]);
    let mut adv = broker.connect("1.2");
    if !listen(&mut adv, &format!("Consumer.Queue.{name}")) {
        return;
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let m = adv.expect_message();
        assert_eq!(m.get("consumerCount"), Some("2"), "{m:?}");
        let body = json(&m);
        assert_eq!(body["event"], "consumer-added");
        assert_eq!(body["destination"], q.as_str());
        seen.push(body["selector"].clone());
    }
    assert!(seen.contains(&serde_json::Value::Null), "{seen:?}");
    assert!(seen.contains(&"region = 'eu'".into()), "{seen:?}");
    adv.expect_silence(crate::support::QUIET);
    // Then changes, as before.
    a.request(Frame::new("UNSUBSCRIBE").header("id", "a"));
    let m = adv.expect_message();
    assert_eq!(json(&m)["event"], "consumer-removed");
    assert_eq!(m.get("consumerCount"), Some("1"), "{m:?}");
}

#[test]
fn a_replay_asked_for_ends_with_a_marker_that_counts_it() {
    let broker = Broker::under_test();
    if target() == Target::ActiveMq {
        return; // no advisories for STOMP (module doc), and no marker: a stompbox extension
    }
    let q = queue("adv-marker");
    let name = &q["/queue/".len()..];
    let mut consumers = broker.connect("1.2");
    consumers.subscribe(&format!("{q}.x"), "x", "auto", &[]);
    consumers.subscribe(&format!("{q}.y"), "y", "auto", &[]);
    let marked = [("stompbox-replay-end", "true")];
    let pattern = format!("/topic/ActiveMQ.Advisory.Consumer.Queue.{name}.>");
    let mut adv = broker.connect("1.2");
    adv.subscribe(&pattern, "adv", "auto", &marked);
    let (mut replayed, mut end) = (Vec::new(), None);
    while end.is_none() || replayed.len() < 2 {
        let m = adv.expect_message();
        let body = json(&m);
        match body["event"].as_str() {
            Some("replay-end") => {
                assert_eq!(
                    m.get("destination"),
                    Some(
                        format!(
                            "/topic/ActiveMQ.Advisory.Consumer.Queue.{name}.stompbox-replay-end"
                        )
                        .as_str()
                    ),
                    "a topic the subscription matches"
                );
                end = Some(body["replayed"].clone());
            }
            _ => {
                assert_eq!(body["event"], "consumer-added", "{body}");
                assert_eq!(body["replayed"], true, "{body}");
                replayed.push(body["destination"].as_str().unwrap_or("").to_string());
            }
        }
    }
    assert_eq!(end, Some(2.into()));
    replayed.sort();
    assert_eq!(replayed, vec![format!("{q}.x"), format!("{q}.y")]);
    adv.expect_silence(crate::support::QUIET);
    // Live advisories are not marked replayed.
    consumers.subscribe(&format!("{q}.z"), "z", "auto", &[]);
    let body = json(&adv.expect_message());
    assert_eq!(body["event"], "consumer-added");
    assert_eq!(body["replayed"], serde_json::Value::Null, "{body}");
    // Nothing to replay: the marker alone, on the (plain) topic subscribed to.
    let none = format!("/topic/ActiveMQ.Advisory.Consumer.Queue.{name}.none");
    let mut empty = broker.connect("1.2");
    empty.subscribe(&none, "adv", "auto", &marked);
    let m = empty.expect_message();
    assert_eq!(m.get("destination"), Some(none.as_str()));
    let body = json(&m);
    assert_eq!(
        (&body["event"], &body["replayed"]),
        (&"replay-end".into(), &0.into())
    );
    // Not asked for: no marker, nor flags.
    let mut plain = broker.connect("1.2");
    plain.subscribe(&pattern, "adv", "auto", &[]);
    for _ in 0..3 {
        let body = json(&plain.expect_message());
        assert_eq!(body["event"], "consumer-added", "{body}");
        assert_eq!(body["replayed"], serde_json::Value::Null, "{body}");
    }
    plain.expect_silence(crate::support::QUIET);
}

#[test]
fn a_durable_subscription_without_its_subscriber_is_told_and_its_deletion_announced() {
    let broker = Broker::under_test();
    let t = topic("adv-durable");
    let name = &t["/topic/".len()..];
    let client_id = unique("adv-durable-client");
    let mut c = broker.connect_with("1.2", &[("client-id", &client_id)]);
    let durable = [("activemq.subscriptionName", "d"), ("selector", "x = 1")];
    c.subscribe(&t, "d", "auto", &durable);
    // Its subscriber leaves; the subscription stays.
    c.request(Frame::new("UNSUBSCRIBE").header("id", "d"));
    let mut adv = broker.connect("1.2");
    if !listen(&mut adv, &format!("Consumer.Topic.{name}")) {
        return;
    }
    let key = format!("{client_id}:d");
    let body = json(&adv.expect_message());
    assert_eq!(body["event"], "consumer-added", "{body}");
    assert_eq!(body["active"], false, "{body}");
    assert_eq!(body["durable_subscription"], key.as_str());
    assert_eq!(body["consumer_id"], format!("durable:{key}").as_str());
    assert_eq!(body["selector"], "x = 1");
    adv.expect_silence(crate::support::QUIET);
    // It comes back and leaves: both say which durable subscription.
    c.subscribe(&t, "d", "auto", &durable);
    let body = json(&adv.expect_message());
    assert_eq!(
        (&body["event"], &body["active"]),
        (&"consumer-added".into(), &true.into())
    );
    assert_eq!(body["durable_subscription"], key.as_str());
    c.request(Frame::new("UNSUBSCRIBE").header("id", "d"));
    let body = json(&adv.expect_message());
    assert_eq!(body["event"], "consumer-removed");
    assert_eq!(body["durable_subscription"], key.as_str());
    // Deleted: announced as such.
    c.request(
        Frame::new("UNSUBSCRIBE")
            .header("id", "d")
            .header("activemq.subscriptionName", "d"),
    );
    let body = json(&adv.expect_message());
    assert_eq!(body["event"], "durable-removed", "{body}");
    assert_eq!(body["destination"], t.as_str());
    assert_eq!(body["durable_subscription"], key.as_str());
    assert_eq!(body["consumer_id"], format!("durable:{key}").as_str());
}

#[test]
fn a_network_bridge_subscription_says_whose_consumers_it_stands_for() {
    let broker = Broker::under_test();
    let q = queue("adv-path");
    let mut adv = broker.connect("1.2");
    if !listen(
        &mut adv,
        &format!("Consumer.Queue.{}", &q["/queue/".len()..]),
    ) {
        return;
    }
    let mut bridge = broker.connect("1.2");
    bridge.subscribe(
        &q,
        "n",
        "client-individual",
        &[("stompbox-broker-path", "b,c")],
    );
    let body = json(&adv.expect_message());
    assert_eq!(body["broker_path"], "b,c");
    let mut plain = broker.connect("1.2");
    plain.subscribe(&q, "p", "auto", &[]);
    assert_eq!(
        json(&adv.expect_message())["broker_path"],
        serde_json::Value::Null
    );
}

#[test]
fn connection_advisories_announce_connections_and_their_end() {
    let broker = Broker::under_test();
    let mut adv = broker.connect("1.2");
    if !listen(&mut adv, "Connection") {
        return;
    }
    let client_id = unique("adv-conn");
    let c = broker.connect_with("1.2", &[("client-id", &client_id)]);
    let added = loop {
        // Other tests' connections are announced too on a shared broker.
        let body = json(&adv.expect_message());
        if body["client_id"] == client_id.as_str() {
            break body;
        }
    };
    assert_eq!(added["event"], "connection-added");
    assert_eq!(added["version"], "1.2");
    c.disconnect();
    let removed = loop {
        let body = json(&adv.expect_message());
        if body["client_id"] == client_id.as_str() {
            break body;
        }
    };
    assert_eq!(removed["event"], "connection-removed");
    assert_eq!(removed["connection_id"], added["connection_id"]);
}

#[test]
fn an_expired_message_is_announced() {
    let broker = Broker::under_test();
    let q = queue("adv-exp");
    let mut adv = broker.connect("1.2");
    if !listen(
        &mut adv,
        &format!("Expired.Queue.{}", &q["/queue/".len()..]),
    ) {
        return;
    }
    let mut producer = broker.connect("1.2");
    let expires = (now_ms() + 200).to_string();
    producer.send_sync(&q, "short-lived", &[("expires", &expires)]);
    // Nobody consumes it: the queue's sweep finds it expired within a second or so.
    let m = adv.expect_frame(WAIT);
    let body = json(&m);
    assert_eq!(body["event"], "message-expired");
    assert_eq!(body["destination"], q.as_str());
}

#[test]
fn a_dead_lettered_message_is_announced() {
    let broker = Broker::under_test();
    let q = queue("adv-dlq");
    let mut adv = broker.connect("1.2");
    if !listen(
        &mut adv,
        &format!("MessageDLQd.Queue.{}", &q["/queue/".len()..]),
    ) {
        return;
    }
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "poison", &[]);
    let mut c = broker.connect("1.2");
    c.subscribe(&q, "s", "client-individual", &[]);
    // Delivered once and redelivered max_redeliveries (6) times, each refused.
    for _ in 0..7 {
        let m = c.expect_body("poison");
        c.nack(&m);
    }
    let m = adv.expect_frame(WAIT);
    let body = json(&m);
    assert_eq!(body["event"], "message-dead-lettered");
    assert_eq!(body["destination"], q.as_str());
    assert_eq!(body["dead_letter_queue"], "/queue/ActiveMQ.DLQ");
}

/// The next advisory on `adv` about `destination` (a shared broker announces other tests'
/// destinations too), as its JSON body.
fn about(adv: &mut Client, destination: &str) -> serde_json::Value {
    loop {
        let body = json(&adv.expect_message());
        if body["destination"] == destination {
            return body;
        }
    }
}

/// Deletes `destination` through our admin API (None for an external broker, whose admin
/// API is not ours).
fn delete(broker: &Broker, destination: &str) -> Option<()> {
    if Broker::is_external() {
        return None;
    }
    let path = format!("/api/delete?destination={destination}");
    let r = crate::support::http::post(broker.admin_addr(), &path);
    assert_eq!(r.status, 200, "{}", r.body);
    Some(())
}

#[test]
fn queue_advisories_announce_a_queue_created_and_deleted() {
    let broker = Broker::under_test();
    let q = queue("adv-created");
    let mut adv = broker.connect("1.2");
    if !listen(&mut adv, "Queue") {
        return;
    }
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "first use", &[]);
    let added = about(&mut adv, &q);
    assert_eq!(added["event"], "destination-added");
    assert_eq!(added["operation_type"], 0);
    assert_eq!(added["temporary"], false);
    // Used again while it exists: not announced again.
    let mut c = broker.connect("1.2");
    c.subscribe(&q, "s", "auto", &[]);
    c.expect_body("first use");
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    producer.send_sync(&q, "second", &[]);
    if delete(&broker, &q).is_none() {
        return;
    }
    let removed = about(&mut adv, &q);
    assert_eq!(removed["event"], "destination-removed", "{removed}");
    assert_eq!(removed["operation_type"], 1);
    assert_eq!(removed["reason"], "deleted");
}

#[test]
fn topic_advisories_announce_a_topic_created_and_deleted() {
    let broker = Broker::under_test();
    let t = topic("adv-created");
    let mut adv = broker.connect("1.2");
    if !listen(&mut adv, "Topic") {
        return;
    }
    let mut c = broker.connect("1.2");
    c.subscribe(&t, "s", "auto", &[]);
    let added = about(&mut adv, &t);
    assert_eq!(added["event"], "destination-added");
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    if delete(&broker, &t).is_none() {
        return;
    }
    let removed = about(&mut adv, &t);
    assert_eq!(removed["event"], "destination-removed", "{removed}");
    assert_eq!(removed["reason"], "deleted");
}

/// Forgotten once idle past `idle_timeout_ms`: announced as removed, `reason` `idle`.
#[test]
fn an_idle_queue_forgotten_is_announced() {
    let Some(broker) = Broker::own_with_config(
        "an_idle_queue_forgotten_is_announced",
        "[destinations]\nidle_timeout_ms = 1\n",
    ) else {
        return;
    };
    let q = queue("adv-idle");
    let mut adv = broker.connect("1.2");
    listen(&mut adv, "Queue");
    let mut c = broker.connect("1.2");
    c.subscribe(&q, "s", "auto", &[]);
    assert_eq!(about(&mut adv, &q)["event"], "destination-added");
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    let removed = about(&mut adv, &q);
    assert_eq!(removed["event"], "destination-removed", "{removed}");
    assert_eq!(removed["reason"], "idle");
}

#[test]
fn temp_queue_advisories_announce_a_temp_queue_and_its_end_with_the_connection() {
    let broker = Broker::under_test();
    let mut adv = broker.connect("1.2");
    if !listen(&mut adv, "TempQueue") {
        return;
    }
    let requests = queue("adv-temp-requests");
    let mut responder = broker.connect("1.2");
    responder.subscribe(&requests, "r", "auto", &[]);
    let mut requester = broker.connect("1.2");
    requester.subscribe("/temp-queue/replies", "replies", "auto", &[]);
    requester.send_sync(&requests, "who", &[("reply-to", "/temp-queue/replies")]);
    let name = responder.expect_body("who").must("reply-to").to_string();
    let added = about(&mut adv, &name);
    assert_eq!(added["event"], "destination-added");
    assert_eq!(added["temporary"], true);
    requester.disconnect();
    let removed = about(&mut adv, &name);
    assert_eq!(removed["event"], "destination-removed", "{removed}");
    assert_eq!(removed["reason"], "connection-closed");
}
