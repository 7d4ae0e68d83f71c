//! BEGIN / COMMIT / ABORT: transactional SEND, ACK and NACK, implicit abort on disconnect, and
//! errors for unknown or duplicate transaction ids.

use crate::support::{queue, target, unique, Broker, Client, Frame, Target, QUIET, WAIT};

fn begin(c: &mut Client) -> String {
    let tx = unique("tx");
    c.request(Frame::new("BEGIN").header("transaction", tx.as_str()));
    tx
}

fn tx_send(c: &mut Client, q: &str, tx: &str, body: &str) {
    c.request(
        Frame::new("SEND")
            .header("destination", q)
            .header("transaction", tx)
            .body(body),
    );
}

fn commit(c: &mut Client, tx: &str) {
    c.request(Frame::new("COMMIT").header("transaction", tx));
}

fn abort_tx(c: &mut Client, tx: &str) {
    c.request(Frame::new("ABORT").header("transaction", tx));
}

fn consumer(broker: &Broker, q: &str, ack: &str) -> Client {
    let mut c = broker.connect("1.2");
    c.subscribe(q, "s", ack, &[]);
    c
}

#[test]
fn send_in_transaction_is_invisible_until_commit() {
    let broker = Broker::under_test();
    let q = queue("tx-invisible");
    let mut c = consumer(&broker, &q, "auto");
    let mut p = broker.connect("1.2");
    let tx = begin(&mut p);
    tx_send(&mut p, &q, &tx, "inside");
    p.send_sync(&q, "outside", &[]);
    // The queue is FIFO: had "inside" been visible, it would arrive first.
    c.expect_body("outside");
    c.expect_silence(QUIET);
    commit(&mut p, &tx);
    c.expect_body("inside");
}

#[test]
fn commit_delivers_transactional_sends_in_order() {
    let broker = Broker::under_test();
    let q = queue("tx-order");
    let mut c = consumer(&broker, &q, "auto");
    let mut p = broker.connect("1.2");
    let tx = begin(&mut p);
    for i in 0..5 {
        tx_send(&mut p, &q, &tx, &format!("t{i}"));
    }
    commit(&mut p, &tx);
    for i in 0..5 {
        let m = c.expect_body(&format!("t{i}"));
        assert_eq!(
            m.get("transaction"),
            None,
            "transaction header leaked: {m:?}"
        );
    }
}

#[test]
fn abort_discards_transactional_sends() {
    let broker = Broker::under_test();
    let q = queue("tx-abort");
    let mut c = consumer(&broker, &q, "auto");
    let mut p = broker.connect("1.2");
    let tx = begin(&mut p);
    tx_send(&mut p, &q, &tx, "discarded 1");
    tx_send(&mut p, &q, &tx, "discarded 2");
    abort_tx(&mut p, &tx);
    p.send_sync(&q, "marker", &[]);
    c.expect_body("marker");
    c.expect_silence(QUIET);
}

/// As in ActiveMQ: ABORT undoes the ACK, so the delivery is unacked again under the same ack
/// id; nothing is resent on this connection, and it comes back (redelivered) once the
/// consumer leaves without acking it.
#[test]
fn abort_returns_acked_messages_to_unacked() {
    let broker = Broker::under_test();
    let q = queue("tx-abort-ack");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "m1", &[]);
    let m = c.expect_body("m1");
    let tx = begin(&mut c);
    c.request(
        Frame::new("ACK")
            .header("id", m.must("ack"))
            .header("transaction", tx.as_str()),
    );
    abort_tx(&mut c, &tx);
    c.expect_silence(QUIET);
    drop(c);
    let mut d = consumer(&broker, &q, "client-individual");
    let again = d.expect_body("m1");
    assert_eq!(again.get("redelivered"), Some("true"), "{again:?}");
}

#[test]
fn committed_ack_is_final() {
    let broker = Broker::under_test();
    let q = queue("tx-commit-ack");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "m1", &[]);
    let m = c.expect_body("m1");
    let tx = begin(&mut c);
    c.request(
        Frame::new("ACK")
            .header("id", m.must("ack"))
            .header("transaction", tx.as_str()),
    );
    commit(&mut c, &tx);
    c.disconnect();
    let mut d = consumer(&broker, &q, "auto");
    d.send(&q, "marker", &[]);
    d.expect_body("marker");
}

#[test]
fn uncommitted_ack_is_undone_by_disconnect() {
    let broker = Broker::under_test();
    let q = queue("tx-disc-ack");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "m1", &[]);
    let m = c.expect_body("m1");
    let tx = begin(&mut c);
    c.request(
        Frame::new("ACK")
            .header("id", m.must("ack"))
            .header("transaction", tx.as_str()),
    );
    c.disconnect();
    let mut d = consumer(&broker, &q, "auto");
    let again = d.expect_body("m1");
    assert_eq!(again.get("redelivered"), Some("true"), "{again:?}");
}

#[test]
fn nack_in_transaction_takes_effect_on_commit() {
    let broker = Broker::under_test();
    let q = queue("tx-nack");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "m1", &[]);
    let m = c.expect_body("m1");
    let tx = begin(&mut c);
    let nack = Frame::new("NACK")
        .header("id", m.must("ack"))
        .header("transaction", tx.as_str());
    if target() == Target::ActiveMq {
        // ActiveMQ refuses it: "Poison ack cannot be transacted" (docs/compatibility.md). The
        // transaction still commits, and nothing is redelivered.
        c.send_frame(&nack.header("receipt", "r-nack"));
        let e = c.expect_refusal(Some("r-nack"));
        crate::support::assert_mentions(&e, &["transacted"]);
        commit(&mut c, &tx);
        c.expect_silence(QUIET);
        return;
    }
    c.request(nack);
    c.expect_silence(QUIET);
    commit(&mut c, &tx);
    let again = c.expect_body("m1");
    assert_eq!(again.get("redelivered"), Some("true"), "{again:?}");
}

#[test]
fn disconnect_aborts_open_transaction() {
    let broker = Broker::under_test();
    let q = queue("tx-disc");
    let mut p = broker.connect("1.2");
    let tx = begin(&mut p);
    tx_send(&mut p, &q, &tx, "never");
    p.disconnect();
    let mut c = consumer(&broker, &q, "auto");
    c.send_sync(&q, "marker", &[]);
    c.expect_body("marker");
    c.expect_silence(QUIET);
}

#[test]
fn dropped_connection_aborts_open_transaction() {
    let broker = Broker::under_test();
    let q = queue("tx-drop");
    let mut p = broker.connect("1.2");
    let tx = begin(&mut p);
    tx_send(&mut p, &q, &tx, "never");
    p.abort();
    let mut c = consumer(&broker, &q, "auto");
    c.send_sync(&q, "marker", &[]);
    c.expect_body("marker");
    c.expect_silence(QUIET);
}

#[test]
fn transaction_ids_are_per_connection() {
    let broker = Broker::under_test();
    let q = queue("tx-scope");
    let mut c = consumer(&broker, &q, "auto");
    let mut a = broker.connect("1.2");
    let mut b = broker.connect("1.2");
    let tx = unique("shared-name");
    a.request(Frame::new("BEGIN").header("transaction", tx.as_str()));
    b.request(Frame::new("BEGIN").header("transaction", tx.as_str()));
    tx_send(&mut a, &q, &tx, "from a");
    tx_send(&mut b, &q, &tx, "from b");
    commit(&mut b, &tx);
    c.expect_body("from b");
    c.expect_silence(QUIET);
    commit(&mut a, &tx);
    c.expect_body("from a");
}

#[test]
fn transaction_id_can_be_reused_after_commit() {
    let broker = Broker::under_test();
    let q = queue("tx-reuse");
    let mut c = consumer(&broker, &q, "auto");
    let mut p = broker.connect("1.2");
    let tx = begin(&mut p);
    tx_send(&mut p, &q, &tx, "first");
    commit(&mut p, &tx);
    p.request(Frame::new("BEGIN").header("transaction", tx.as_str()));
    tx_send(&mut p, &q, &tx, "second");
    commit(&mut p, &tx);
    c.expect_body("first");
    c.expect_body("second");
}

#[test]
fn commit_of_unknown_transaction_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("COMMIT")
            .header("transaction", "never-begun")
            .header("receipt", "r1"),
    );
    let e = c.expect_refusal(Some("r1"));
    crate::support::assert_mentions(&e, &["transaction"]);
}

#[test]
fn abort_of_unknown_transaction_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("ABORT")
            .header("transaction", "never-begun")
            .header("receipt", "r1"),
    );
    c.expect_refusal(Some("r1"));
}

#[test]
fn commit_twice_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let tx = begin(&mut c);
    commit(&mut c, &tx);
    c.send_frame(
        &Frame::new("COMMIT")
            .header("transaction", tx.as_str())
            .header("receipt", "r-again"),
    );
    c.expect_refusal(Some("r-again"));
}

#[test]
fn send_in_unknown_transaction_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", queue("tx-unknown"))
            .header("transaction", "never-begun")
            .header("receipt", "r1")
            .body("x"),
    );
    c.expect_refusal(Some("r1"));
}

#[test]
fn ack_in_unknown_transaction_is_an_error() {
    let broker = Broker::under_test();
    let q = queue("tx-unknown-ack");
    let mut c = consumer(&broker, &q, "client-individual");
    c.send(&q, "m", &[]);
    let m = c.expect_body("m");
    c.send_frame(
        &Frame::new("ACK")
            .header("id", m.must("ack"))
            .header("transaction", "never-begun")
            .header("receipt", "r1"),
    );
    if target() == Target::ActiveMq {
        // ActiveMQ sometimes sends the message again (same message-id) before its ERROR
        // (docs/compatibility.md, "A refused transactional ACK").
        let e = loop {
            let f = c.expect_frame(WAIT);
            if f.command != "MESSAGE" {
                break f;
            }
            assert_eq!(f.get("message-id"), m.get("message-id"), "{f:?}");
        };
        assert_eq!(e.command, "ERROR", "{e:?}");
        assert_eq!(e.get("receipt-id"), Some("r1"), "{e:?}");
        return;
    }
    c.expect_refusal(Some("r1"));
}

#[test]
fn begin_of_duplicate_transaction_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let tx = begin(&mut c);
    c.send_frame(
        &Frame::new("BEGIN")
            .header("transaction", tx.as_str())
            .header("receipt", "r-dup"),
    );
    c.expect_refusal(Some("r-dup"));
}

#[test]
fn begin_without_transaction_header_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("BEGIN").header("receipt", "r1"));
    let e = c.expect_refusal(Some("r1"));
    crate::support::assert_mentions(&e, &["transaction"]);
}
