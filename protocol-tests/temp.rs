//! Temporary destinations and request/reply: `/temp-queue/NAME` and `/temp-topic/NAME` belong
//! to the connection that uses them; others see and address them as `/remote-temp-queue/ID:…`
//! and `/remote-temp-topic/ID:…` (in the `reply-to` of what they receive), and they are
//! deleted when that connection closes.

use crate::support::{queue, target, topic, unique, Broker, Client, Frame, Target, QUIET, WAIT};

/// A responder on `requests`: it receives the request and answers to its `reply-to` with the
/// request's `correlation-id`. Returns the request as it arrived.
fn respond(responder: &mut Client, reply_body: &str) -> Frame {
    let request = responder.expect_message();
    let reply_to = request.must("reply-to").to_string();
    let correlation = request.must("correlation-id").to_string();
    responder.send_sync(&reply_to, reply_body, &[("correlation-id", &correlation)]);
    request
}

/// A connection that subscribes to `requests` (auto ack).
fn responder_on(broker: &Broker, requests: &str) -> Client {
    let mut responder = broker.connect("1.2");
    responder.subscribe(requests, "requests", "auto", &[]);
    responder
}

/// The `reply-to` a request sent by `requester` with `reply-to:<local>` arrives with.
fn remote_name(
    requester: &mut Client,
    responder: &mut Client,
    requests: &str,
    local: &str,
) -> String {
    requester.send_sync(
        requests,
        "who am I",
        &[("reply-to", local), ("correlation-id", "n")],
    );
    responder
        .expect_body("who am I")
        .must("reply-to")
        .to_string()
}

#[test]
fn request_and_reply_through_a_temp_queue() {
    let broker = Broker::under_test();
    let requests = queue("temp-requests");
    let mut responder = responder_on(&broker, &requests);
    let mut requester = broker.connect("1.2");
    requester.subscribe("/temp-queue/replies", "replies", "auto", &[]);
    requester.send_sync(
        &requests,
        "ping",
        &[
            ("reply-to", "/temp-queue/replies"),
            ("correlation-id", "c-1"),
        ],
    );
    let request = respond(&mut responder, "pong");
    let reply_to = request.must("reply-to");
    assert!(
        reply_to.starts_with("/remote-temp-queue/ID:"),
        "others see the remote form: {request:?}"
    );
    assert_eq!(request.get("correlation-id"), Some("c-1"), "{request:?}");
    let reply = requester.expect_body("pong");
    assert_eq!(reply.get("correlation-id"), Some("c-1"), "{reply:?}");
    assert_eq!(reply.get("subscription"), Some("replies"), "{reply:?}");
    assert_eq!(
        reply.get("destination"),
        Some("/temp-queue/replies"),
        "its own connection sees the name it gave: {reply:?}"
    );
    requester.expect_silence(QUIET);
}

#[test]
fn request_and_reply_through_a_temp_topic() {
    let broker = Broker::under_test();
    let requests = topic("temp-topic-requests");
    let mut responder = responder_on(&broker, &requests);
    let mut requester = broker.connect("1.2");
    requester.subscribe("/temp-topic/answers", "answers", "auto", &[]);
    requester.send_sync(
        &requests,
        "ping",
        &[
            ("reply-to", "/temp-topic/answers"),
            ("correlation-id", "c-2"),
        ],
    );
    let request = respond(&mut responder, "pong");
    assert!(
        request
            .must("reply-to")
            .starts_with("/remote-temp-topic/ID:"),
        "{request:?}"
    );
    let reply = requester.expect_body("pong");
    assert_eq!(reply.get("correlation-id"), Some("c-2"), "{reply:?}");
    assert_eq!(
        reply.get("destination"),
        Some("/temp-topic/answers"),
        "{reply:?}"
    );
}

#[test]
fn a_temp_name_is_one_destination_per_connection_and_another_on_each_connection() {
    let broker = Broker::under_test();
    let requests = queue("temp-names");
    let mut responder = responder_on(&broker, &requests);
    let mut a = broker.connect("1.2");
    let mut b = broker.connect("1.2");
    let first = remote_name(&mut a, &mut responder, &requests, "/temp-queue/r");
    let again = remote_name(&mut a, &mut responder, &requests, "/temp-queue/r");
    let other_name = remote_name(&mut a, &mut responder, &requests, "/temp-queue/s");
    let other_connection = remote_name(&mut b, &mut responder, &requests, "/temp-queue/r");
    assert_eq!(first, again, "the same name on the same connection");
    assert_ne!(first, other_name, "another name on the same connection");
    assert_ne!(
        first, other_connection,
        "the same name on another connection"
    );
    // Each reaches its own connection only.
    responder.send_sync(&other_connection, "for b", &[]);
    responder.send_sync(&first, "for a", &[]);
    b.subscribe("/temp-queue/r", "r", "auto", &[]);
    a.subscribe("/temp-queue/r", "r", "auto", &[]);
    b.expect_body("for b");
    a.expect_body("for a");
    a.expect_silence(QUIET);
    b.expect_silence(QUIET);
}

#[test]
fn replies_sent_before_the_requester_subscribes_wait_in_its_temp_queue() {
    let broker = Broker::under_test();
    let requests = queue("temp-early");
    let mut responder = responder_on(&broker, &requests);
    let mut requester = broker.connect("1.2");
    // Naming it in reply-to creates it: the reply waits for the SUBSCRIBE.
    requester.send_sync(
        &requests,
        "ping",
        &[("reply-to", "/temp-queue/later"), ("correlation-id", "c-3")],
    );
    respond(&mut responder, "waited");
    requester.subscribe("/temp-queue/later", "later", "auto", &[]);
    let reply = requester.expect_body("waited");
    assert_eq!(
        reply.get("destination"),
        Some("/temp-queue/later"),
        "{reply:?}"
    );
}

#[test]
fn a_request_the_requester_receives_itself_shows_its_own_reply_to() {
    let broker = Broker::under_test();
    let requests = queue("temp-self");
    let mut client = broker.connect("1.2");
    client.subscribe(&requests, "requests", "auto", &[]);
    client.send_sync(&requests, "to myself", &[("reply-to", "/temp-queue/mine")]);
    let m = client.expect_body("to myself");
    assert_eq!(m.get("reply-to"), Some("/temp-queue/mine"), "{m:?}");
}

#[test]
fn another_connection_cannot_subscribe_to_a_temp_queue() {
    let broker = Broker::under_test();
    let requests = queue("temp-isolation");
    let mut responder = responder_on(&broker, &requests);
    let mut owner = broker.connect("1.2");
    owner.subscribe("/temp-queue/private", "private", "auto", &[]);
    let name = remote_name(&mut owner, &mut responder, &requests, "/temp-queue/private");
    let mut intruder = broker.connect("1.2");
    let receipt = intruder.receipt_id();
    intruder.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("destination", name.as_str())
            .header("id", "steal")
            .header("receipt", receipt.as_str()),
    );
    if target() == Target::ActiveMq {
        // ActiveMQ lets any STOMP connection consume from another's temporary queue
        // (docs/compatibility.md).
        intruder.await_receipt(&receipt, WAIT);
        return;
    }
    let e = intruder.expect_error_and_close(Some(&receipt));
    assert!(
        e.must("message").contains(&name),
        "names the destination: {e:?}"
    );
    // The owner still gets what is sent to it.
    responder.send_sync(&name, "still mine", &[]);
    owner.expect_body("still mine");
}

#[test]
fn a_temp_queue_is_deleted_with_its_messages_when_its_connection_closes() {
    let broker = Broker::under_test();
    let requests = queue("temp-deleted");
    let mut responder = responder_on(&broker, &requests);
    let mut owner = broker.connect("1.2");
    let name = remote_name(&mut owner, &mut responder, &requests, "/temp-queue/gone");
    responder.send_sync(&name, "never read", &[("persistent", "true")]);
    let listed = |broker: &Broker| {
        broker
            .admin_get("/api/destinations")
            .map(|json| json.contains(&format!("\"{name}\"")))
    };
    if let Some(before) = listed(&broker) {
        assert!(before, "/api/destinations lists {name} while it exists");
    }
    owner.disconnect();

    // Ours deletes it before the close that follows the DISCONNECT's RECEIPT; ActiveMQ a
    // moment after.
    expect_gone(&broker, &name, target() == Target::ActiveMq);
    if let Some(after) = listed(&broker) {
        assert!(!after, "/api/destinations no longer lists {name}");
    }
    if target() == Target::Stompbox {
        let rows: i64 = broker
            .db()
            .query_row(
                "SELECT count(*) FROM messages WHERE destination LIKE '/remote-temp-%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0, "temporary destinations are never stored");
    }
}

#[test]
fn a_temp_queue_is_deleted_when_its_connection_drops_without_disconnect() {
    let broker = Broker::under_test();
    let requests = queue("temp-dropped");
    let mut responder = responder_on(&broker, &requests);
    let mut owner = broker.connect("1.2");
    owner.subscribe("/temp-queue/dropped", "d", "client-individual", &[]);
    let name = remote_name(&mut owner, &mut responder, &requests, "/temp-queue/dropped");
    responder.send_sync(&name, "unacked", &[]);
    owner.expect_body("unacked");
    owner.abort();
    // Either broker notices the drop a moment later.
    expect_gone(&broker, &name, true);
}

#[test]
fn a_temp_queue_is_deleted_when_its_connection_misses_its_heart_beats() {
    let broker = Broker::under_test();
    let requests = queue("temp-heart-beat");
    let mut responder = responder_on(&broker, &requests);
    // It promises a heart-beat every second, sends one request at once, then falls silent.
    let mut owner = broker.raw();
    let connected = owner.handshake(
        &Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("host", "localhost")
            .header("heart-beat", "1000,0"),
    );
    assert_eq!(connected.command, "CONNECTED", "{connected:?}");
    let name = remote_name(&mut owner, &mut responder, &requests, "/temp-queue/silent");
    owner.expect_closed_maybe_error(WAIT);
    expect_gone(&broker, &name, true);
}

/// A SEND to `name` from a new connection is an ERROR naming it (after RECEIPTs, while
/// `retry` and it still exists).
fn expect_gone(broker: &Broker, name: &str, retry: bool) {
    let mut late = broker.connect("1.2");
    let deadline = std::time::Instant::now() + WAIT;
    let e = loop {
        let receipt = late.receipt_id();
        let send = Frame::new("SEND")
            .header("destination", name)
            .header("receipt", receipt.as_str())
            .body("too late");
        late.send_frame(&send);
        if !retry {
            break late.expect_refusal(Some(&receipt));
        }
        let f = late.expect_frame(WAIT);
        if f.command == "RECEIPT" && std::time::Instant::now() < deadline {
            std::thread::sleep(QUIET);
            continue;
        }
        assert_eq!(
            f.command, "ERROR",
            "{name} still exists after {WAIT:?}: {f:?}"
        );
        assert_eq!(f.get("receipt-id"), Some(receipt.as_str()), "{f:?}");
        break f;
    };
    let id = &name["/remote-temp-queue/".len()..];
    assert!(
        e.must("message").contains(id),
        "names the destination: {e:?}"
    );
}

#[test]
fn a_send_to_a_temp_queue_that_never_existed_is_an_error() {
    let broker = Broker::under_test();
    let mut client = broker.connect("1.2");
    let name = format!("/remote-temp-queue/ID:{}:1", unique("nobody"));
    let receipt = client.receipt_id();
    client.send_frame(
        &Frame::new("SEND")
            .header("destination", name.as_str())
            .header("receipt", receipt.as_str())
            .body("nowhere"),
    );
    let e = client.expect_refusal(Some(&receipt));
    let id = &name["/remote-temp-queue/".len()..];
    assert!(
        e.must("message").contains(id),
        "names the destination: {e:?}"
    );
}

#[test]
fn a_reconnected_client_gets_a_fresh_temp_queue() {
    let broker = Broker::under_test();
    let requests = queue("temp-reconnect");
    let mut responder = responder_on(&broker, &requests);
    let mut first = broker.connect("1.2");
    first.subscribe("/temp-queue/r", "r", "auto", &[]);
    let old = remote_name(&mut first, &mut responder, &requests, "/temp-queue/r");
    first.disconnect();
    let mut second = broker.connect("1.2");
    second.subscribe("/temp-queue/r", "r", "auto", &[]);
    let new = remote_name(&mut second, &mut responder, &requests, "/temp-queue/r");
    assert_ne!(
        old, new,
        "a new connection's /temp-queue/r is a new destination"
    );
    responder.send_sync(&new, "fresh", &[]);
    let m = second.expect_body("fresh");
    assert_eq!(m.get("destination"), Some("/temp-queue/r"), "{m:?}");
}

#[test]
fn a_persistent_message_to_a_temp_queue_says_persistent_and_is_kept_in_memory() {
    let broker = Broker::under_test();
    let mut client = broker.connect("1.2");
    client.send_persistent("/temp-queue/p", "kept in memory", &[]);
    client.subscribe("/temp-queue/p", "p", "auto", &[]);
    let m = client.expect_body("kept in memory");
    assert_eq!(m.get("persistent"), Some("true"), "{m:?}");
    assert_eq!(m.all("persistent").len(), 1, "once: {m:?}");
    if target() == Target::Stompbox {
        let rows: i64 = broker
            .db()
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "temporary destinations are never stored");
    }
}

#[test]
fn reply_to_and_correlation_id_pass_through_unchanged() {
    let broker = Broker::under_test();
    let (requests, replies, events) =
        (queue("temp-plain"), queue("temp-plain-replies"), topic("x"));
    let mut responder = responder_on(&broker, &requests);
    let mut requester = broker.connect("1.2");
    for reply_to in [replies.as_str(), events.as_str()] {
        requester.send_sync(
            &requests,
            "plain",
            &[
                ("reply-to", reply_to),
                ("correlation-id", "ID:some-client-1:2:3"),
            ],
        );
        let m = responder.expect_body("plain");
        assert_eq!(m.get("reply-to"), Some(reply_to), "{m:?}");
        assert_eq!(
            m.get("correlation-id"),
            Some("ID:some-client-1:2:3"),
            "{m:?}"
        );
    }
}

#[test]
fn temp_destinations_per_connection_are_capped() {
    // Our default max_temp_destinations_per_connection is 100.
    const CAP: usize = 100;
    let broker = Broker::under_test();
    let mut client = broker.connect("1.2");
    for n in 0..CAP {
        client.send(&format!("/temp-queue/t{n}"), "x", &[]);
    }
    let receipt = client.receipt_id();
    client.send_frame(
        &Frame::new("SEND")
            .header("destination", format!("/temp-queue/t{CAP}"))
            .header("receipt", receipt.as_str())
            .body("one too many"),
    );
    if target() == Target::ActiveMq {
        // ActiveMQ has no such limit (docs/compatibility.md).
        client.await_receipt(&receipt, WAIT);
        return;
    }
    let e = client.expect_error_and_close(Some(&receipt));
    assert!(
        e.must("message")
            .contains("max_temp_destinations_per_connection"),
        "{e:?}"
    );
    // Those it had are gone with it; the broker serves on.
    let mut other = broker.connect("1.2");
    other.send_sync("/temp-queue/t0", "fine", &[]);
}

/// A message scheduled for a temporary queue whose connection then closes does not bring the
/// queue back when its delay is up: nobody could ever consume it there.
#[test]
fn a_scheduled_message_does_not_bring_back_a_closed_temp_queue() {
    let Some(broker) = Broker::own("a_scheduled_message_does_not_bring_back_a_closed_temp_queue")
    else {
        return;
    };
    let requests = queue("temp-scheduled");
    let mut responder = responder_on(&broker, &requests);
    let mut owner = broker.connect("1.2");
    let name = remote_name(&mut owner, &mut responder, &requests, "/temp-queue/later");
    responder.send_sync(&name, "too late", &[("AMQ_SCHEDULED_DELAY", "300")]);
    owner.disconnect();
    // A probe scheduled after it, to a plain queue: once it arrives, the other's delay is up.
    let probe = queue("temp-scheduled-probe");
    let mut watcher = broker.connect("1.2");
    watcher.subscribe(&probe, "p", "auto", &[]);
    responder.send_sync(&probe, "probe", &[("AMQ_SCHEDULED_DELAY", "300")]);
    watcher.expect_body("probe");
    std::thread::sleep(QUIET);
    let listed = broker
        .admin_get("/api/destinations")
        .expect("our admin API");
    assert!(
        !listed.contains(&format!("\"{name}\"")),
        "{name} came back: {listed}"
    );
    expect_gone(&broker, &name, false);
}
