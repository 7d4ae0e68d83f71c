//! Scheduled delivery (`AMQ_SCHEDULED_DELAY`, `AMQ_SCHEDULED_PERIOD`, `AMQ_SCHEDULED_REPEAT`):
//! ActiveMQ's scheduler, which our harness starts with `schedulerSupport="true"`. "Not before
//! its time" is shown by order: an unscheduled message sent after a delayed one arrives first.
//! No test measures a duration; delays are long enough that the order is certain.

use std::collections::HashSet;
use std::process::Command;

use crate::support::store::sqlite3_cli;
use crate::support::{
    assert_mentions, bodies, queue, target, topic, unique, Broker, Frame, Target, QUIET, WAIT,
};

/// A delay no broker passes before handling the next frame on the same connection.
const DELAY_MS: &str = "1500";

#[test]
fn a_delayed_message_arrives_after_one_sent_later_without_delay() {
    let broker = Broker::under_test();
    let q = queue("sched-delay");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(
        &q,
        "delayed",
        &[("AMQ_SCHEDULED_DELAY", DELAY_MS), ("x-k", "v")],
    );
    producer.send_sync(&q, "marker", &[]);
    consumer.expect_body("marker");
    let m = consumer.expect_body("delayed");
    assert_eq!(m.get("x-k"), Some("v"), "{m:?}");
    // As ActiveMQ: the delivery names its schedule and no longer carries the schedule.
    assert!(m.get("scheduledJobId").is_some(), "{m:?}");
    assert_eq!(m.get("AMQ_SCHEDULED_DELAY"), None, "{m:?}");
    consumer.expect_silence(QUIET);
}

#[test]
fn a_delayed_message_to_a_topic_arrives_after_one_sent_later_without_delay() {
    let broker = Broker::under_test();
    let t = topic("sched-topic");
    let mut subscriber = broker.connect("1.2");
    subscriber.subscribe(&t, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&t, "delayed", &[("AMQ_SCHEDULED_DELAY", DELAY_MS)]);
    producer.send_sync(&t, "marker", &[]);
    subscriber.expect_body("marker");
    subscriber.expect_body("delayed");
    subscriber.expect_silence(QUIET);
}

#[test]
fn period_and_repeat_deliver_repeat_plus_one_new_messages() {
    let broker = Broker::under_test();
    let q = queue("sched-repeat");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(
        &q,
        "tick",
        &[
            ("AMQ_SCHEDULED_DELAY", "0"),
            ("AMQ_SCHEDULED_PERIOD", "100"),
            ("AMQ_SCHEDULED_REPEAT", "3"),
        ],
    );
    let got = consumer.receive(4, WAIT);
    let ids: HashSet<&str> = got.iter().map(|m| m.must("message-id")).collect();
    assert_eq!(
        ids.len(),
        4,
        "each delivery is a message of its own: {got:?}"
    );
    let jobs: HashSet<&str> = got.iter().map(|m| m.must("scheduledJobId")).collect();
    assert_eq!(jobs.len(), 1, "all from one schedule: {got:?}");
    for m in &got {
        assert_eq!(m.text(), "tick");
        assert_eq!(m.get("AMQ_SCHEDULED_REPEAT"), None, "{m:?}");
    }
    // Three periods of quiet: there is no fifth.
    consumer.expect_silence(QUIET);
}

#[test]
fn a_period_without_repeat_delivers_once() {
    let broker = Broker::under_test();
    let q = queue("sched-period");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "once", &[("AMQ_SCHEDULED_PERIOD", "100")]);
    consumer.expect_body("once");
    consumer.expect_silence(QUIET);
}

#[test]
fn repeat_alone_schedules_nothing() {
    let broker = Broker::under_test();
    let q = queue("sched-repeat-alone");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "now", &[("AMQ_SCHEDULED_REPEAT", "2")]);
    producer.send_sync(&q, "marker", &[]);
    let m = consumer.expect_body("now");
    assert_eq!(m.get("AMQ_SCHEDULED_REPEAT"), Some("2"), "{m:?}");
    consumer.expect_body("marker");
    consumer.expect_silence(QUIET);
}

/// Ours: an ERROR naming the header (and the close). ActiveMQ fails the connection: it closes
/// it, logging `AMQ_SCHEDULED_DELAY must not be a negative value` or a
/// `NumberFormatException` (docs/compatibility.md).
#[test]
fn an_invalid_schedule_header_is_an_error_naming_it() {
    let broker = Broker::under_test();
    let q = queue("sched-invalid");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    for (header, value) in [
        ("AMQ_SCHEDULED_DELAY", "-5"),
        ("AMQ_SCHEDULED_DELAY", "soon"),
        ("AMQ_SCHEDULED_DELAY", "1.5"),
        ("AMQ_SCHEDULED_PERIOD", "-1"),
        ("AMQ_SCHEDULED_REPEAT", "-1"),
        ("AMQ_SCHEDULED_REPEAT", "x"),
    ] {
        let mut producer = broker.connect("1.2");
        let mut extra = vec![(header, value)];
        if header == "AMQ_SCHEDULED_REPEAT" {
            extra.push(("AMQ_SCHEDULED_PERIOD", "100"));
        }
        let mut frame = Frame::new("SEND")
            .header("destination", &q)
            .header("receipt", "bad");
        for (k, v) in &extra {
            frame = frame.header(*k, *v);
        }
        producer.send_frame(&frame.body("bad"));
        if target() == Target::ActiveMq {
            producer.expect_closed_maybe_error(WAIT);
        } else {
            let e = producer.expect_error_and_close(Some("bad"));
            assert_mentions(&e, &[header]);
        }
    }
    // None of them was delivered.
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "marker", &[]);
    consumer.expect_body("marker");
    consumer.expect_silence(QUIET);
}

/// Ours refuses `AMQ_SCHEDULED_CRON` (not supported); ActiveMQ schedules it.
#[test]
fn a_cron_schedule_is_refused_as_not_supported() {
    let broker = Broker::under_test();
    let q = queue("sched-cron");
    let mut producer = broker.connect("1.2");
    let frame = Frame::new("SEND")
        .header("destination", &q)
        .header("AMQ_SCHEDULED_CRON", "* * * * *")
        .header("receipt", "cron")
        .body("every minute");
    producer.send_frame(&frame);
    if target() == Target::ActiveMq {
        producer.expect("RECEIPT", WAIT);
        return;
    }
    let e = producer.expect_error_and_close(Some("cron"));
    assert_mentions(&e, &["AMQ_SCHEDULED_CRON"]);
    assert_mentions(&e, &["not supported"]);
}

/// Artemis' `AMQ_SCHEDULED_TIME` (ms since the epoch) schedules on ours; ActiveMQ ignores it
/// and delivers at once, with the header.
#[test]
fn scheduled_time_delivers_at_that_time_on_ours() {
    let broker = Broker::under_test();
    let q = queue("sched-time");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1500;
    producer.send_sync(&q, "timed", &[("AMQ_SCHEDULED_TIME", &at.to_string())]);
    producer.send_sync(&q, "marker", &[]);
    if target() == Target::ActiveMq {
        consumer.expect_body("timed");
        consumer.expect_body("marker");
    } else {
        consumer.expect_body("marker");
        let m = consumer.expect_body("timed");
        assert_eq!(m.get("AMQ_SCHEDULED_TIME"), None, "{m:?}");
    }
    consumer.expect_silence(QUIET);
}

#[test]
fn a_scheduled_send_in_a_transaction_is_scheduled_at_commit() {
    let broker = Broker::under_test();
    let q = queue("sched-tx");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.request(Frame::new("BEGIN").header("transaction", "t1"));
    producer.send_sync(
        &q,
        "scheduled",
        &[("transaction", "t1"), ("AMQ_SCHEDULED_DELAY", DELAY_MS)],
    );
    producer.send_sync(&q, "in-tx", &[("transaction", "t1")]);
    consumer.expect_silence(QUIET);
    producer.request(Frame::new("COMMIT").header("transaction", "t1"));
    consumer.expect_body("in-tx");
    producer.send_sync(&q, "after-commit", &[]);
    consumer.expect_body("after-commit");
    consumer.expect_body("scheduled");
    consumer.expect_silence(QUIET);
}

#[test]
fn an_aborted_scheduled_send_is_never_delivered() {
    let broker = Broker::under_test();
    let q = queue("sched-abort");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.request(Frame::new("BEGIN").header("transaction", "t1"));
    producer.send_sync(
        &q,
        "aborted",
        &[("transaction", "t1"), ("AMQ_SCHEDULED_DELAY", "100")],
    );
    producer.request(Frame::new("ABORT").header("transaction", "t1"));
    producer.send_sync(&q, "behind", &[("AMQ_SCHEDULED_DELAY", "300")]);
    consumer.expect_body("behind");
    consumer.expect_silence(QUIET);
}

/// The RECEIPT of a persistent scheduled SEND means its schedule is on disk: the `sqlite3`
/// shell lists it in `scheduled_messages` (and `queue_depths` counts nothing ready); after
/// kill -9 and a restart it is delivered, once per occurrence.
#[test]
fn a_persistent_schedule_survives_kill_9_and_is_delivered_once_per_occurrence() {
    let Some(mut broker) =
        Broker::own("a_persistent_schedule_survives_kill_9_and_is_delivered_once_per_occurrence")
    else {
        return;
    };
    let q = queue("sched-kill");
    let mut producer = broker.connect("1.2");
    producer.send_persistent(
        &q,
        "survivor",
        &[
            ("AMQ_SCHEDULED_DELAY", "2000"),
            ("AMQ_SCHEDULED_PERIOD", "200"),
            ("AMQ_SCHEDULED_REPEAT", "2"),
        ],
    );
    let out = Command::new(sqlite3_cli())
        .arg("-readonly")
        .arg(broker.db_path())
        .arg(format!(
            "SELECT destination, period_ms, repeats_left, body_bytes, \
                    next_delivery LIKE '____-__-__T__:__:__.___Z', next_delivery_ms > 0 \
               FROM scheduled_messages WHERE destination = '{q}'; \
             SELECT count(*) FROM queue_depths WHERE destination = '{q}' AND messages > 0;"
        ))
        .output()
        .expect("run sqlite3");
    assert!(out.status.success(), "sqlite3: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [format!("{q}|200|2|8|1|1"), "0".to_string()],
        "sqlite3 output:\n{text}"
    );
    broker.crash_and_restart();
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "client-individual", &[]);
    let got = consumer.receive(3, WAIT);
    let ids: HashSet<&str> = got.iter().map(|m| m.must("message-id")).collect();
    assert_eq!(ids.len(), 3, "{got:?}");
    for m in &got {
        assert_eq!(m.text(), "survivor");
        assert_eq!(m.get("persistent"), Some("true"), "{m:?}");
        consumer.ack(m);
    }
    consumer.expect_silence(QUIET);
    let db = broker.db();
    let left = crate::support::store::count(
        &db,
        "SELECT count(*) FROM scheduled WHERE destination = ?1",
        [&q],
    );
    assert_eq!(left, 0, "the schedule is done");
}

/// A schedule whose delivery was committed is not delivered again after kill -9: each
/// delivery is a new stored message and the schedule moves on in the same transaction.
#[test]
fn a_delivered_occurrence_is_not_delivered_again_after_kill_9() {
    let Some(mut broker) =
        Broker::own("a_delivered_occurrence_is_not_delivered_again_after_kill_9")
    else {
        return;
    };
    let q = queue("sched-once");
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "client-individual", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_persistent(
        &q,
        "first",
        &[
            ("AMQ_SCHEDULED_DELAY", "0"),
            ("AMQ_SCHEDULED_PERIOD", "60000"),
            ("AMQ_SCHEDULED_REPEAT", "1"),
        ],
    );
    let m = consumer.expect_body("first");
    let ack = consumer.settle_frame("ACK", &m);
    consumer.request(ack);
    // The one delivery is acked; the second is a minute away.
    broker.crash_and_restart();
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "marker", &[]);
    consumer.expect_body("marker");
    consumer.expect_silence(QUIET);
    let db = broker.db();
    let repeats = crate::support::store::count(
        &db,
        "SELECT repeats_left FROM scheduled_messages WHERE destination = ?1",
        [&q],
    );
    assert_eq!(repeats, 0, "one delivery left after the next");
}

/// `max_scheduled_messages` caps what is pending broker-wide: one more is an ERROR.
#[test]
fn a_scheduled_send_over_max_scheduled_messages_is_an_error() {
    let Some(broker) = Broker::own_with_config(
        "a_scheduled_send_over_max_scheduled_messages_is_an_error",
        "[destinations]\nmax_scheduled_messages = 2\n",
    ) else {
        return;
    };
    let q = queue("sched-cap");
    let mut producer = broker.connect("1.2");
    producer.send_sync(&q, "a", &[("AMQ_SCHEDULED_DELAY", "60000")]);
    producer.send_sync(&q, "b", &[("AMQ_SCHEDULED_DELAY", "60000")]);
    producer.send_frame(
        &Frame::new("SEND")
            .header("destination", &q)
            .header("AMQ_SCHEDULED_DELAY", "60000")
            .header("receipt", "over")
            .body("c"),
    );
    let e = producer.expect_error_and_close(Some("over"));
    assert_eq!(
        e.get("message"),
        Some("limit exceeded: max_scheduled_messages (2)"),
        "{e:?}"
    );
    // Unscheduled messages still go.
    let mut other = broker.connect("1.2");
    other.send_sync(&q, "plain", &[]);
}

/// A durable subscription whose consumer is away when a persistent schedule delivers to its
/// topic keeps that delivery, as it keeps any message published while it is away.
#[test]
fn a_durable_subscription_keeps_a_scheduled_delivery_made_while_it_is_away() {
    let broker = Broker::under_test();
    let t = topic("sched-durable");
    let client_id = unique("sched-durable");
    let client = [("client-id", client_id.as_str())];
    let name = [("activemq.subscriptionName", "later")];
    let mut c = broker.connect_with("1.2", &client);
    c.subscribe(&t, "later", "auto", &name);
    c.disconnect();
    let mut producer = broker.connect("1.2");
    producer.send_persistent(&t, "scheduled", &[("AMQ_SCHEDULED_DELAY", "0")]);
    producer.send_persistent(&t, "marker", &[]);
    let mut c = broker.connect_with("1.2", &client);
    c.subscribe(&t, "later", "auto", &name);
    let mut got = bodies(&c.receive(2, WAIT));
    got.sort();
    assert_eq!(got, ["marker", "scheduled"]);
    c.expect_silence(QUIET);
}

/// A wildcard subscription (`/topic/PREFIX.>`) gets a persistent scheduled delivery to a
/// topic it matches, after an unscheduled message sent later.
#[test]
fn a_wildcard_subscription_gets_a_scheduled_delivery() {
    let broker = Broker::under_test();
    let prefix = unique("sched-wild");
    let mut subscriber = broker.connect("1.2");
    subscriber.subscribe(&format!("/topic/{prefix}.>"), "w", "auto", &[]);
    let t = format!("/topic/{prefix}.orders");
    let mut producer = broker.connect("1.2");
    producer.send_persistent(&t, "delayed", &[("AMQ_SCHEDULED_DELAY", DELAY_MS)]);
    producer.send_sync(&t, "marker", &[]);
    subscriber.expect_body("marker");
    let m = subscriber.expect_body("delayed");
    assert_eq!(m.get("destination"), Some(t.as_str()), "{m:?}");
    subscriber.expect_silence(QUIET);
}
