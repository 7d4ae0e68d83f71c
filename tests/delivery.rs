//! Delivery guarantees (issue 8), end to end against the built binary: an auto-ack delivery is
//! consumed only once its bytes reached the socket, a RECEIPT means every earlier frame of the
//! connection took effect (persistent SENDs committed included), and ABORT of a transaction
//! that holds ACKs returns those deliveries to "delivered, not acked" under the same ack ids.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{send_frame, Broker, Client, Frame, QUIET, WAIT};

/// 64 KiB bodies: a few dozen fill the socket buffers and the session's write buffer, so most
/// of the prefetch window waits inside the broker when the subscription ends.
const BODY_BYTES: usize = 64 * 1024;

/// A body of `BODY_BYTES` that starts with its index.
fn body(i: usize) -> String {
    let mut b = format!("{i:06}:");
    b.extend(std::iter::repeat_n('x', BODY_BYTES - b.len()));
    b
}

fn index(m: &Frame) -> usize {
    m.text()[..6].parse().expect("body starts with its index")
}

/// Stores `n` persistent messages in `dest` (one RECEIPT at the end: see
/// `receipt_after_unreceipted_persistent_sends_means_they_are_on_disk`).
fn fill(broker: &Broker, dest: &str, n: usize) {
    let mut p = broker.connect("1.2");
    for i in 0..n {
        p.send(dest, &body(i), &[("persistent", "true")]);
    }
    p.disconnect();
}

/// Reads every frame until the RECEIPT `id`, returning the MESSAGE indexes before it.
fn messages_until_receipt(c: &mut Client, id: &str) -> Vec<usize> {
    let mut got = Vec::new();
    loop {
        let f = c.expect_frame(WAIT);
        match f.command.as_str() {
            "MESSAGE" => got.push(index(&f)),
            "RECEIPT" if f.get("receipt-id") == Some(id) => return got,
            _ => panic!("expected MESSAGE or RECEIPT {id}, got {f:?}"),
        }
    }
}

/// Drains `dest` with a client-individual consumer; returns the indexes in arrival order.
fn drain(broker: &Broker, dest: &str) -> Vec<usize> {
    let mut c = broker.connect("1.2");
    c.subscribe(dest, "drain", "client-individual", &[]);
    let mut got = Vec::new();
    // ACK each as it comes: the queue pages the rest in as memory frees up.
    while let Ok(m) = c.try_frame(Duration::from_secs(2)) {
        assert_eq!(m.command, "MESSAGE", "{m:?}");
        c.ack(&m);
        got.push(index(&m));
    }
    c.disconnect();
    got
}

/// Every index in `0..n` exactly once across `parts`, and each part in order.
fn assert_exactly_once(n: usize, parts: &[&[usize]]) {
    for p in parts {
        assert!(p.windows(2).all(|w| w[0] < w[1]), "out of order: {p:?}");
    }
    let all: Vec<usize> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let set: BTreeSet<usize> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "duplicates delivered");
    let missing: Vec<usize> = (0..n).filter(|i| !set.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} messages lost, the first: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// An auto-ack subscriber that reads slowly, then ends its subscription: what it received,
/// plus what a later consumer drains, is every message once.
fn auto_ack_end_loses_nothing(end: &str) {
    const N: usize = 1500;
    let broker = Broker::start_with_config("durability = \"relaxed\"\n");
    let dest = "/queue/auto-end";
    fill(&broker, dest, N);

    let mut c = broker.connect("1.2");
    c.subscribe(dest, "s", "auto", &[]);
    // Read a little, then stall: the broker's buffers and channels fill up with deliveries.
    let first: Vec<usize> = c.receive(20, WAIT).iter().map(index).collect();
    std::thread::sleep(QUIET);
    let id = c.receipt_id();
    let frame = match end {
        "UNSUBSCRIBE" => Frame::new("UNSUBSCRIBE").header("id", "s"),
        _ => Frame::new("DISCONNECT"),
    };
    c.send_frame(&frame.header("receipt", id.clone()));
    let mut received = first;
    received.extend(messages_until_receipt(&mut c, &id));
    drop(c);

    let rest = drain(&broker, dest);
    eprintln!(
        "{end}: {} received by the auto-ack subscriber, {} drained after",
        received.len(),
        rest.len()
    );
    assert_exactly_once(N, &[&received, &rest]);
}

#[test]
fn auto_ack_unsubscribe_returns_undelivered_messages_to_the_queue() {
    auto_ack_end_loses_nothing("UNSUBSCRIBE");
}

#[test]
fn auto_ack_disconnect_returns_undelivered_messages_to_the_queue() {
    auto_ack_end_loses_nothing("DISCONNECT");
}

/// The kernel's largest socket send plus receive buffer: what a dropped connection may take
/// with it (those bytes were written, so auto-ack counts them as consumed).
fn socket_buffer_bytes() -> usize {
    let max = |f: &str| -> usize {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|s| s.split_whitespace().last()?.parse().ok())
            .unwrap_or(8 << 20)
    };
    max("/proc/sys/net/ipv4/tcp_wmem") + max("/proc/sys/net/ipv4/tcp_rmem")
}

#[test]
fn auto_ack_dropped_connection_loses_only_what_reached_the_socket() {
    const N: usize = 1500;
    let broker = Broker::start_with_config("durability = \"relaxed\"\n");
    let dest = "/queue/auto-drop";
    fill(&broker, dest, N);

    let mut c = broker.connect("1.2");
    c.subscribe(dest, "s", "auto", &[]);
    let received: Vec<usize> = c.receive(20, WAIT).iter().map(index).collect();
    std::thread::sleep(QUIET);
    c.abort();

    let rest = drain(&broker, dest);
    let in_sockets = socket_buffer_bytes() / BODY_BYTES + 2;
    let seen: BTreeSet<usize> = received.iter().chain(&rest).copied().collect();
    let lost: Vec<usize> = (0..N).filter(|i| !seen.contains(i)).collect();
    eprintln!(
        "dropped: {} received, {} drained after, {} in flight in socket buffers (at most {})",
        received.len(),
        rest.len(),
        lost.len(),
        in_sockets
    );
    assert!(
        lost.len() <= in_sockets,
        "{} messages gone, more than the socket buffers hold ({in_sockets}); the first: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        rest.windows(2).all(|w| w[0] < w[1]),
        "out of order: {rest:?}"
    );
}

/// Pipelines `n` persistent SENDs without receipts and then `last` (which carries a receipt),
/// waits for that RECEIPT and kills the broker at once: every SEND must be on disk.
fn receipt_implies_earlier_sends_stored(dest: &str, n: usize, last: Frame, what: &str) {
    let mut broker = Broker::start_with_config("durability = \"fsync\"\n");
    let mut p = broker.connect("1.2");
    let mut bytes = Vec::new();
    for i in 0..n {
        let f = send_frame(dest, &format!("{i:06}"), &[("persistent", "true")]);
        bytes.extend_from_slice(&f.encode());
    }
    let id = p.receipt_id();
    bytes.extend_from_slice(&last.header("receipt", id.clone()).encode());
    p.try_send_raw(&bytes).expect("write the SENDs");
    p.await_receipt(&id, Duration::from_secs(60));
    // The RECEIPT promises all of them are stored: a crash right now must not lose one.
    broker.kill9();
    broker.start_again();
    let rows: i64 = broker
        .db()
        .query_row(
            "select count(*) from messages where destination = ?1",
            [dest],
            |r| r.get(0),
        )
        .expect("count rows");
    assert_eq!(rows, n as i64, "rows on disk after {what}'s RECEIPT");
}

#[test]
fn receipt_after_unreceipted_persistent_sends_means_they_are_on_disk() {
    let disconnect = Frame::new("DISCONNECT");
    receipt_implies_earlier_sends_stored("/queue/barrier", 3000, disconnect, "DISCONNECT");
}

/// BEGIN takes effect at once in the session, but its RECEIPT still promises everything
/// before it, including the SENDs.
#[test]
fn receipt_of_any_frame_waits_for_earlier_persistent_sends() {
    let begin = Frame::new("BEGIN").header("transaction", "t");
    receipt_implies_earlier_sends_stored("/queue/barrier-begin", 2000, begin, "BEGIN");
}

/// ABORT of a transaction holding an ACK: nothing is sent, the delivery is unacked again under
/// its ack id, and an ACK of it right behind the ABORT (same TCP segment) is accepted.
fn abort_restores_ack(version: &str) {
    let broker = Broker::start();
    let dest = format!("/queue/abort-ack-{}", version.replace('.', ""));
    let mut c = broker.connect(version);
    c.subscribe(&dest, "s", "client-individual", &[]);
    c.send(&dest, "m1", &[]);
    let m = c.expect_message();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&Frame::new("BEGIN").header("transaction", "t").encode());
    bytes.extend_from_slice(
        &c.settle_frame("ACK", &m)
            .header("transaction", "t")
            .encode(),
    );
    bytes.extend_from_slice(&Frame::new("ABORT").header("transaction", "t").encode());
    bytes.extend_from_slice(
        &c.settle_frame("ACK", &m)
            .header("receipt", "re-ack")
            .encode(),
    );
    c.try_send_raw(&bytes).expect("write");
    // No redelivery, no ERROR: just the receipt of the second ACK.
    let f = c.expect_frame(WAIT);
    assert_eq!(f.command, "RECEIPT", "{version}: {f:?}");
    assert_eq!(f.get("receipt-id"), Some("re-ack"));
    c.expect_silence(QUIET);
    c.disconnect();
    // The ACK after the ABORT was final: a new consumer gets nothing.
    let mut d = broker.connect(version);
    d.subscribe(&dest, "d", "client-individual", &[]);
    d.expect_silence(QUIET);
}

#[test]
fn abort_returns_acked_deliveries_to_unacked_1_0() {
    abort_restores_ack("1.0");
}

#[test]
fn abort_returns_acked_deliveries_to_unacked_1_1() {
    abort_restores_ack("1.1");
}

#[test]
fn abort_returns_acked_deliveries_to_unacked_1_2() {
    abort_restores_ack("1.2");
}

/// The other order: ABORT first in its own write, then the ACK later.
#[test]
fn ack_after_abort_in_a_later_read_is_accepted() {
    let broker = Broker::start();
    let dest = "/queue/abort-ack-later";
    let mut c = broker.connect("1.2");
    c.subscribe(dest, "s", "client", &[]);
    c.send(dest, "m1", &[]);
    c.send(dest, "m2", &[]);
    let m1 = c.expect_message();
    let m2 = c.expect_message();
    c.request(Frame::new("BEGIN").header("transaction", "t"));
    // Cumulative: acks m1 and m2 in the transaction.
    c.send_frame(&c.settle_frame("ACK", &m2).header("transaction", "t"));
    c.request(Frame::new("ABORT").header("transaction", "t"));
    c.expect_silence(QUIET);
    // Both are unacked again: the cumulative ACK of m1 alone leaves m2 in flight.
    c.request(c.settle_frame("ACK", &m1));
    c.request(c.settle_frame("ACK", &m2));
    c.disconnect();
    let mut d = broker.connect("1.2");
    d.subscribe(dest, "d", "client-individual", &[]);
    d.expect_silence(QUIET);
}

/// A consumer that leaves after ABORT without acking gets its deliveries redelivered to the
/// next consumer (they were never acked).
#[test]
fn aborted_ack_then_disconnect_redelivers() {
    let broker = Broker::start();
    let dest = "/queue/abort-then-leave";
    let mut c = broker.connect("1.2");
    c.subscribe(dest, "s", "client-individual", &[]);
    c.send(dest, "m1", &[]);
    let m = c.expect_message();
    c.request(Frame::new("BEGIN").header("transaction", "t"));
    c.send_frame(&c.settle_frame("ACK", &m).header("transaction", "t"));
    c.request(Frame::new("ABORT").header("transaction", "t"));
    c.disconnect();
    let mut d = broker.connect("1.2");
    d.subscribe(dest, "d", "client-individual", &[]);
    let again = d.expect_message();
    assert_eq!(again.text(), "m1");
    assert_eq!(again.get("redelivered"), Some("true"), "{again:?}");
}

/// A RECEIPT for an ACK means the message will not come back, even after kill -9 right then.
#[test]
fn receipted_ack_is_final_across_a_crash() {
    acks_are_final_across_a_crash(true);
}

/// So does the RECEIPT of a later frame (DISCONNECT here) for ACKs sent without a receipt:
/// a RECEIPT implies every earlier frame took effect, acks' deletes committed included.
#[test]
fn disconnect_receipt_makes_earlier_unreceipted_acks_final_across_a_crash() {
    acks_are_final_across_a_crash(false);
}

/// Pipelines an ACK for each of 300 stored messages under write load, each with a receipt
/// (`each`) or none and then DISCONNECT with one; kills -9 on the last RECEIPT; none of the
/// acked messages may come back.
fn acks_are_final_across_a_crash(each: bool) {
    const N: usize = 300;
    let mut broker = Broker::start_with_config("durability = \"fsync\"\n");
    let dest = "/queue/acked-then-crash";
    let mut p = broker.connect("1.2");
    for i in 0..N {
        p.send(dest, &format!("{i:06}"), &[("persistent", "true")]);
    }
    p.disconnect();
    let mut c = broker.connect("1.2");
    c.subscribe(
        dest,
        "s",
        "client-individual",
        &[("activemq.prefetchSize", "1000")],
    );
    let msgs = c.receive(N, WAIT);
    // Keep the store writer busy with fsynced batches, as a loaded broker's is.
    let addr = broker.addr();
    let busy = std::thread::spawn(move || {
        let Ok(mut b) = Client::try_open(addr, WAIT) else {
            return;
        };
        let _ = b.try_send_raw(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0");
        let body = "y".repeat(64 * 1024);
        for _ in 0..2000 {
            let f = send_frame("/queue/busy", &body, &[("persistent", "true")]);
            if b.try_send_frame(&f).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(QUIET);
    // Every ACK pipelined in one write; kill -9 on the last RECEIPT.
    let mut bytes = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let mut f = c.settle_frame("ACK", m);
        if each {
            f = f.header("receipt", format!("ack-{i}"));
        }
        bytes.extend_from_slice(&f.encode());
    }
    let last = if each {
        format!("ack-{}", N - 1)
    } else {
        let f = Frame::new("DISCONNECT").header("receipt", "bye");
        bytes.extend_from_slice(&f.encode());
        "bye".to_string()
    };
    c.try_send_raw(&bytes).expect("write the ACKs");
    loop {
        let f = c.expect("RECEIPT", WAIT);
        if f.get("receipt-id") == Some(last.as_str()) {
            break;
        }
    }
    broker.kill9();
    let _ = busy.join();
    broker.start_again();
    let back = drain(&broker, dest);
    assert!(
        back.is_empty(),
        "{} ACKs before RECEIPT {last:?} undone by the crash: {:?}",
        back.len(),
        &back[..back.len().min(20)]
    );
}
