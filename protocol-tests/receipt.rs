//! RECEIPT: one for every frame that asks, in order, after the frame's effect; DISCONNECT with
//! a receipt is answered and then closed.

use crate::support::{queue, unique, Broker, Frame, WAIT};

#[test]
fn every_client_frame_type_gets_its_receipt() {
    let broker = Broker::under_test();
    let q = queue("every");
    let mut c = broker.connect("1.2");
    c.subscribe(&q, "s", "client-individual", &[]);
    c.send_sync(&q, "one", &[]);
    c.send_sync(&q, "two", &[]);
    let one = c.expect_body("one");
    let two = c.expect_body("two");
    c.request(Frame::new("ACK").header("id", one.must("ack")));
    c.request(Frame::new("NACK").header("id", two.must("ack")));
    let tx = unique("tx");
    c.request(Frame::new("BEGIN").header("transaction", tx.as_str()));
    c.request(Frame::new("COMMIT").header("transaction", tx.as_str()));
    c.request(Frame::new("BEGIN").header("transaction", tx.as_str()));
    c.request(Frame::new("ABORT").header("transaction", tx.as_str()));
    c.request(Frame::new("UNSUBSCRIBE").header("id", "s"));
    c.disconnect();
}

#[test]
fn receipts_arrive_in_request_order() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    // Frames for several destinations (likely owned by different shards) and for the session.
    let queues: Vec<String> = (0..8).map(|i| queue(&format!("order{i}"))).collect();
    let mut ids = Vec::new();
    let mut out = Vec::new();
    for i in 0..200 {
        let id = format!("r{i}");
        let f = match i % 4 {
            0 | 1 => Frame::new("SEND")
                .header("destination", queues[i % queues.len()].as_str())
                .body(format!("m{i}")),
            2 => Frame::new("SUBSCRIBE")
                .header("destination", queues[(i / 4) % queues.len()].as_str())
                .header("id", format!("sub{i}"))
                .header("ack", "client-individual")
                .header("activemq.prefetchSize", "1"),
            _ => Frame::new("UNSUBSCRIBE").header("id", format!("sub{}", i - 1)),
        };
        f.header("receipt", id.clone()).encode_into(&mut out);
        ids.push(id);
    }
    c.send_raw(&out);
    for id in &ids {
        c.await_receipt(id, WAIT);
    }
}

#[test]
fn subscribe_receipt_arrives_before_its_messages() {
    let broker = Broker::under_test();
    let q = queue("sub-first");
    let mut p = broker.connect("1.2");
    for i in 0..9 {
        p.send(&q, &format!("m{i}"), &[]);
    }
    p.send_sync(&q, "m9", &[]);
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("destination", q.as_str())
            .header("id", "s")
            .header("receipt", "sub-receipt"),
    );
    let first = c.expect_frame(WAIT);
    assert_eq!(
        first.command, "RECEIPT",
        "the RECEIPT must precede any MESSAGE: {first:?}"
    );
    assert_eq!(first.get("receipt-id"), Some("sub-receipt"));
    for i in 0..10 {
        c.expect_body(&format!("m{i}"));
    }
}

#[test]
fn send_receipt_means_the_message_is_in_the_queue() {
    let broker = Broker::under_test();
    let queues: Vec<String> = (0..16).map(|i| queue(&format!("stored{i}"))).collect();
    let mut p = broker.connect("1.2");
    for q in &queues {
        p.send_sync(q, q, &[]);
    }
    p.disconnect();
    for q in &queues {
        let mut c = broker.connect("1.2");
        c.subscribe(q, "s", "auto", &[]);
        c.expect_body(q);
    }
}

#[test]
fn receipt_id_is_escaped_like_any_header() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("esc-receipt");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("receipt", "r\\c1\\\\x")
            .body("x"),
    );
    let r = c.expect("RECEIPT", WAIT);
    assert_eq!(r.get("receipt-id"), Some("r:1\\x"), "{r:?}");
}

#[test]
fn disconnect_with_receipt_gets_receipt_then_close() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("DISCONNECT").header("receipt", "bye"));
    let r = c.expect("RECEIPT", WAIT);
    assert_eq!(r.get("receipt-id"), Some("bye"), "{r:?}");
    c.expect_closed(WAIT);
}

#[test]
fn disconnect_without_receipt_closes() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("DISCONNECT"));
    c.expect_closed(WAIT);
}

#[test]
fn disconnect_receipt_follows_earlier_receipts() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.1");
    let q = queue("disc-order");
    let mut out = Vec::new();
    for i in 0..20 {
        Frame::new("SEND")
            .header("destination", q.as_str())
            .header("receipt", format!("s{i}"))
            .body("x")
            .encode_into(&mut out);
    }
    Frame::new("DISCONNECT")
        .header("receipt", "last")
        .encode_into(&mut out);
    c.send_raw(&out);
    for i in 0..20 {
        c.await_receipt(&format!("s{i}"), WAIT);
    }
    c.await_receipt("last", WAIT);
    c.expect_closed(WAIT);
}
