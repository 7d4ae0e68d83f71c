//! Prefetch (credit): a consumer gets a new message only while its unacked count is below its
//! prefetch (`activemq.prefetchSize` or `prefetch-count`; default 1000 for queues).

use crate::support::{queue, Broker, Client, Frame, QUIET};

fn fill(broker: &Broker, q: &str, n: usize) {
    let mut p = broker.connect("1.2");
    for i in 1..n {
        p.send(q, &format!("m{i}"), &[]);
    }
    p.send_sync(q, &format!("m{n}"), &[]);
}

fn consumer(broker: &Broker, q: &str, ack: &str, extra: &[(&str, &str)]) -> Client {
    let mut c = broker.connect("1.2");
    c.subscribe(q, "s", ack, extra);
    c
}

#[test]
fn prefetch_size_1_holds_the_next_message_until_ack() {
    let broker = Broker::under_test();
    let q = queue("pf1");
    fill(&broker, &q, 3);
    let mut c = consumer(
        &broker,
        &q,
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    for i in 1..=3 {
        let m = c.expect_body(&format!("m{i}"));
        c.expect_silence(QUIET);
        c.ack(&m);
    }
    c.expect_silence(QUIET);
}

#[test]
fn prefetch_count_header_is_honoured() {
    let broker = Broker::under_test();
    let q = queue("pfc");
    fill(&broker, &q, 3);
    let mut c = consumer(&broker, &q, "client-individual", &[("prefetch-count", "2")]);
    let m1 = c.expect_body("m1");
    c.expect_body("m2");
    c.expect_silence(QUIET);
    c.ack(&m1);
    c.expect_body("m3");
}

#[test]
fn consumer_without_credit_is_skipped() {
    let broker = Broker::under_test();
    let q = queue("skip");
    let mut slow = consumer(
        &broker,
        &q,
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    fill(&broker, &q, 3);
    slow.expect_body("m1");
    let mut fast = broker.connect("1.2");
    fast.subscribe(
        &q,
        "f",
        "client-individual",
        &[("activemq.prefetchSize", "10")],
    );
    fast.expect_body("m2");
    fast.expect_body("m3");
    slow.expect_silence(QUIET);
}

#[test]
fn cumulative_ack_frees_credit_for_every_message_it_covers() {
    let broker = Broker::under_test();
    let q = queue("pf-client");
    fill(&broker, &q, 4);
    let mut c = consumer(&broker, &q, "client", &[("activemq.prefetchSize", "2")]);
    c.expect_body("m1");
    let m2 = c.expect_body("m2");
    c.expect_silence(QUIET);
    c.send_frame(&Frame::new("ACK").header("id", m2.must("ack")));
    c.expect_body("m3");
    c.expect_body("m4");
}

#[test]
fn nack_frees_credit() {
    let broker = Broker::under_test();
    let q = queue("pf-nack");
    fill(&broker, &q, 2);
    let mut c = consumer(
        &broker,
        &q,
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    let m1 = c.expect_body("m1");
    c.expect_silence(QUIET);
    c.nack(&m1);
    // m1 is back in the queue and the credit is free again: one of them arrives next.
    let next = c.expect_message();
    assert!(["m1", "m2"].contains(&next.text().as_str()), "{next:?}");
}

#[test]
fn auto_ack_consumer_is_not_held_by_prefetch() {
    let broker = Broker::under_test();
    let q = queue("pf-auto");
    fill(&broker, &q, 5);
    let mut c = consumer(&broker, &q, "auto", &[("activemq.prefetchSize", "1")]);
    for i in 1..=5 {
        c.expect_body(&format!("m{i}"));
    }
}

#[test]
fn default_queue_prefetch_is_1000() {
    let broker = Broker::under_test();
    let q = queue("pf-default");
    fill(&broker, &q, 1005);
    let mut c = consumer(&broker, &q, "client-individual", &[]);
    let mut first = None;
    for i in 1..=1000 {
        let m = c.expect_body(&format!("m{i}"));
        first.get_or_insert(m);
    }
    c.expect_silence(QUIET);
    c.ack(&first.expect("received at least one"));
    c.expect_body("m1001");
    c.expect_silence(QUIET);
}
