//! The lifecycle of destinations as an operator sees it in `/api/destinations`: a destination
//! used once stays listed, with its counters, while idle, until it has been idle for
//! `idle_timeout_ms`, an operator deletes it, or `max_idle_destinations` newer idle ones push
//! it out (docs/compatibility.md, Destinations). The STOMP side runs against any broker; the
//! listing is our admin API, so against another broker only the STOMP side is checked
//! (ActiveMQ keeps every destination listed in its console until deleted, unless
//! `gcInactiveDestinations`).

use serde_json::Value;

use crate::support::http::post;
use crate::support::{eventually, queue, topic, Broker, Client, Frame, WAIT};

/// `/api/destinations` of our broker (None for another broker).
fn listed(broker: &Broker) -> Option<Vec<Value>> {
    let json = broker.admin_get("/api/destinations")?;
    let rows: Value = serde_json::from_str(&json).expect("JSON");
    Some(rows.as_array().expect("an array").clone())
}

/// The row of `destination` (not a durable subscription), if listed.
fn row(rows: &[Value], destination: &str) -> Option<Value> {
    rows.iter()
        .find(|r| r["destination"] == destination && r["subscription"] == "")
        .cloned()
}

/// Sends `n` messages to queue `q`, consumes and ACKs them, and unsubscribes: `q` is idle.
fn use_and_drain(broker: &Broker, q: &str, n: usize) {
    let mut producer = broker.connect("1.2");
    for i in 0..n {
        producer.send_sync(q, &format!("m{i}"), &[]);
    }
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(q, "s", "client-individual", &[]);
    for m in consumer.receive(n, WAIT) {
        consumer.ack(&m);
    }
    consumer.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
}

/// Creates queue `q` without a message (a SUBSCRIBE), then leaves it idle.
fn touch(c: &mut Client, q: &str) {
    c.subscribe(q, "t", "auto", &[]);
    c.request(Frame::new("UNSUBSCRIBE").header("id", "t"));
}

#[test]
fn an_emptied_queue_stays_listed_with_its_counters() {
    let broker = Broker::under_test();
    let q = queue("drained");
    use_and_drain(&broker, &q, 2);
    let Some(rows) = listed(&broker) else {
        return;
    };
    let r = row(&rows, &q).unwrap_or_else(|| panic!("{q} not listed once drained"));
    assert_eq!(r["kind"], "queue", "{r}");
    assert_eq!(r["depth"], 0, "{r}");
    assert_eq!(r["consumers"], 0, "{r}");
    assert_eq!(r["enqueued"], 2, "{r}");
    assert_eq!(r["acked"], 2, "{r}");
    // Used again, it carries on counting.
    use_and_drain(&broker, &q, 1);
    let r = row(&listed(&broker).unwrap(), &q).expect("listed");
    assert_eq!((&r["enqueued"], &r["acked"]), (&3.into(), &3.into()), "{r}");
}

#[test]
fn a_topic_whose_subscribers_left_stays_listed_with_its_counters() {
    let broker = Broker::under_test();
    let t = topic("left");
    let mut subscriber = broker.connect("1.2");
    subscriber.subscribe(&t, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&t, "one", &[]);
    producer.send_sync(&t, "two", &[]);
    assert_eq!(subscriber.receive(2, WAIT).len(), 2);
    subscriber.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    let Some(rows) = listed(&broker) else {
        return;
    };
    let r = row(&rows, &t).unwrap_or_else(|| panic!("{t} not listed once idle"));
    assert_eq!(r["kind"], "topic", "{r}");
    assert_eq!(r["consumers"], 0, "{r}");
    assert_eq!(r["enqueued"], 2, "{r}");
}

#[test]
fn a_queue_idle_past_idle_timeout_ms_is_forgotten() {
    let Some(broker) = Broker::own_with_config(
        "a_queue_idle_past_idle_timeout_ms_is_forgotten",
        "[destinations]\nidle_timeout_ms = 1\n",
    ) else {
        return;
    };
    let q = queue("timed-out");
    use_and_drain(&broker, &q, 2);
    eventually(WAIT, || match row(&listed(&broker).unwrap(), &q) {
        None => Ok(()),
        Some(r) => Err(format!("still listed: {r}")),
    });
    // Created again, it counts from zero.
    use_and_drain(&broker, &q, 1);
    let r = row(&listed(&broker).unwrap(), &q).expect("listed again");
    assert_eq!(r["enqueued"], 1, "{r}");
}

#[test]
fn an_admin_delete_forgets_an_idle_queue_at_once() {
    let Some(broker) = Broker::own("an_admin_delete_forgets_an_idle_queue_at_once") else {
        return;
    };
    let q = queue("deleted-idle");
    use_and_drain(&broker, &q, 2);
    assert!(
        row(&listed(&broker).unwrap(), &q).is_some(),
        "listed while idle"
    );
    let r = post(broker.admin_addr(), &format!("/api/delete?destination={q}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        row(&listed(&broker).unwrap(), &q).is_none(),
        "deleted: no longer listed"
    );
}

/// Each shard keeps its share of `max_idle_destinations` (rounded up), the most recently idle:
/// the harness runs two shards, so of 40 one-off names at most two stay listed, the newest
/// among them, and the oldest is gone (unless the 39 after it all went to the other shard).
#[test]
fn beyond_max_idle_destinations_the_longest_idle_are_forgotten() {
    let Some(broker) = Broker::own_with_config(
        "beyond_max_idle_destinations_the_longest_idle_are_forgotten",
        "[destinations]\nmax_idle_destinations = 2\n",
    ) else {
        return;
    };
    let names: Vec<String> = (0..40).map(|i| queue(&format!("one-off{i}"))).collect();
    let mut c = broker.connect("1.2");
    for q in &names {
        touch(&mut c, q);
    }
    let rows = listed(&broker).unwrap();
    let kept: Vec<&String> = names.iter().filter(|q| row(&rows, q).is_some()).collect();
    assert!(kept.len() <= 2, "{kept:?}");
    assert!(kept.contains(&&names[39]), "the newest is kept: {kept:?}");
    assert!(
        !kept.contains(&&names[0]),
        "the oldest is forgotten: {kept:?}"
    );
}
