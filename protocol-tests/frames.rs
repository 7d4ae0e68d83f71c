//! The wire format: line ends, EOLs between frames, `content-length` bodies, header escaping per
//! version, repeated headers, malformed frames, missing required headers and size limits.

use crate::support::{assert_mentions, queue, target, Broker, Client, Frame, Target, QUIET, WAIT};

/// A 1.2 (or `version`) connection subscribed in auto mode to a fresh queue.
fn subscribed(broker: &Broker, version: &str) -> (Client, String) {
    let mut c = broker.connect(version);
    let q = queue("frames");
    if version == "1.0" {
        c.request(Frame::new("SUBSCRIBE").header("destination", q.as_str()));
    } else {
        c.subscribe(&q, "s", "auto", &[]);
    }
    (c, q)
}

// --- line ends and EOLs ------------------------------------------------------------------------

#[test]
fn crlf_line_endings_are_accepted_in_1_2() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    let raw = format!("SEND\r\ndestination:{q}\r\nx-colour:blue\r\nreceipt:r1\r\n\r\nbody\0");
    c.send_raw(raw.as_bytes());
    c.await_receipt("r1", WAIT);
    let m = c.expect_body("body");
    assert_eq!(
        m.get("x-colour"),
        Some("blue"),
        "CR leaked into the value: {m:?}"
    );
    assert_eq!(m.get("destination"), Some(q.as_str()), "{m:?}");
}

#[test]
fn crlf_connect_frame_is_accepted() {
    let broker = Broker::under_test();
    let mut c = broker.raw();
    c.send_raw(b"CONNECT\r\naccept-version:1.2\r\nhost:localhost\r\n\r\n\0");
    let f = c.expect_frame(crate::support::WAIT);
    assert_eq!(f.command, "CONNECTED", "{f:?}");
    assert_eq!(f.get("version"), Some("1.2"), "{f:?}");
}

#[test]
fn eols_before_and_after_frames_are_skipped() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    let raw = format!(
        "\n\r\n\nSEND\ndestination:{q}\n\none\0\n\n\r\nSEND\ndestination:{q}\nreceipt:r2\n\ntwo\0\r\n"
    );
    c.send_raw(raw.as_bytes());
    c.await_receipt("r2", WAIT);
    c.expect_body("one");
    c.expect_body("two");
}

#[test]
fn frame_split_across_writes_is_reassembled() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    let raw = Frame::new("SEND")
        .header("destination", q.as_str())
        .header("receipt", "r1")
        .body("in pieces")
        .encode();
    for chunk in raw.chunks(3) {
        c.send_raw(chunk);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    c.await_receipt("r1", WAIT);
    c.expect_body("in pieces");
}

// --- bodies ------------------------------------------------------------------------------------

#[test]
fn body_with_nul_bytes_round_trips_with_content_length() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    let body: &[u8] = b"a\0b\0\0c\n\0";
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("content-length", body.len().to_string())
            .header("content-type", "application/octet-stream")
            .body(body),
    );
    let m = c.expect_message();
    assert_eq!(m.body, body, "{m:?}");
    assert_eq!(
        m.get("content-length"),
        Some(body.len().to_string().as_str()),
        "a body with NULs needs content-length on MESSAGE: {m:?}"
    );
}

#[test]
fn empty_body_round_trips() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    c.send(&q, "", &[]);
    let m = c.expect_body("");
    assert!(m.body.is_empty());
}

#[test]
fn content_length_not_followed_by_nul_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("cl-short");
    let raw = format!("SEND\ndestination:{q}\ncontent-length:3\nreceipt:r1\n\nabcdef\0");
    c.send_raw(raw.as_bytes());
    if target() == Target::ActiveMq {
        // ActiveMQ finds this while it reads the frame, before it looks at the receipt
        // (docs/compatibility.md).
        let e = c.expect_error_and_close(None);
        assert_eq!(e.get("receipt-id"), None, "{e:?}");
        return;
    }
    c.expect_error_and_close(Some("r1"));
}

#[test]
fn invalid_content_length_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("cl-bad");
    let raw = format!("SEND\ndestination:{q}\ncontent-length:twelve\nreceipt:r1\n\nabc\0");
    c.send_raw(raw.as_bytes());
    c.expect_error_and_close(None);
}

#[test]
fn content_length_zero_on_a_bodyless_frame_is_accepted() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("cl-zero");
    c.request(
        Frame::new("SUBSCRIBE")
            .header("destination", q.as_str())
            .header("id", "s")
            .header("content-length", "0"),
    );
    c.send(&q, "ok", &[]);
    c.expect_body("ok");
}

#[test]
fn body_on_a_frame_that_must_not_have_one_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("sub-body");
    c.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("destination", q.as_str())
            .header("id", "s")
            .body("not allowed"),
    );
    if target() == Target::ActiveMq {
        // ActiveMQ ignores the body and subscribes (docs/compatibility.md).
        c.send_sync(&q, "subscribed", &[]);
        c.expect_body("subscribed");
        return;
    }
    c.expect_error_and_close(None);
}

// --- escaping ----------------------------------------------------------------------------------

#[test]
fn header_escapes_round_trip_in_1_2() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x-escaped", "a\\cb\\\\c\\nd\\re")
            .body("esc"),
    );
    let m = c.expect_body("esc");
    assert_eq!(m.get("x-escaped"), Some("a:b\\c\nd\re"), "{m:?}");
}

#[test]
fn header_escapes_round_trip_in_1_1() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.1");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x-escaped", "a\\cb\\\\c\\nd")
            .body("esc"),
    );
    let m = c.expect_body("esc");
    assert_eq!(m.get("x-escaped"), Some("a:b\\c\nd"), "{m:?}");
}

#[test]
fn header_names_are_unescaped_too() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x\\cname\\\\odd", "v")
            .body("names"),
    );
    let m = c.expect_body("names");
    assert_eq!(m.get("x:name\\odd"), Some("v"), "{m:?}");
}

#[test]
fn escaped_destination_is_decoded() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let name = crate::support::unique("esc:dest");
    let dest = format!("/queue/{name}");
    c.subscribe(&crate::support::escape(&dest, "1.2"), "s", "auto", &[]);
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", crate::support::escape(&dest, "1.2"))
            .body("colon"),
    );
    let m = c.expect_body("colon");
    assert_eq!(m.get("destination"), Some(dest.as_str()), "{m:?}");
}

#[test]
fn undefined_escape_is_an_error_in_1_2() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("bad-esc");
    let raw = format!("SEND\ndestination:{q}\nx-bad:a\\tb\n\nbody\0");
    c.send_raw(raw.as_bytes());
    if target() == Target::ActiveMq {
        assert_escape_kept_as_sent(&mut c, &q, "a\\tb");
        return;
    }
    let e = c.expect_error_and_close(None);
    assert_mentions(&e, &["escape"]);
}

#[test]
fn trailing_backslash_is_an_error_in_1_2() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("bad-esc-end");
    let raw = format!("SEND\ndestination:{q}\nx-bad:abc\\\n\nbody\0");
    c.send_raw(raw.as_bytes());
    if target() == Target::ActiveMq {
        assert_escape_kept_as_sent(&mut c, &q, "abc\\");
        return;
    }
    c.expect_error_and_close(None);
}

#[test]
fn cr_escape_is_an_error_in_1_1() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.1");
    let q = queue("bad-esc-11");
    let raw = format!("SEND\ndestination:{q}\nx-bad:a\\rb\n\nbody\0");
    c.send_raw(raw.as_bytes());
    if target() == Target::ActiveMq {
        assert_escape_kept_as_sent(&mut c, &q, "a\\rb");
        return;
    }
    let e = c.expect_error_and_close(None);
    assert_mentions(&e, &["escape"]);
}

/// ActiveMQ takes an escape the spec does not define as the characters sent, backslash
/// included, and delivers the message (docs/compatibility.md): `x-bad` arrives as `sent`.
fn assert_escape_kept_as_sent(c: &mut Client, q: &str, sent: &str) {
    c.subscribe(q, "s", "auto", &[]);
    let m = c.expect_body("body");
    assert_eq!(m.get("x-bad"), Some(sent), "{m:?}");
}

#[test]
fn headers_are_not_escaped_in_1_0() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.0");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x-raw", "a\\qb\\cc")
            .body("raw"),
    );
    let m = c.expect_body("raw");
    if target() == Target::ActiveMq {
        // ActiveMQ decodes the escapes it knows in 1.0 too (docs/compatibility.md).
        assert_eq!(m.get("x-raw"), Some("a\\qb:c"), "{m:?}");
        return;
    }
    assert_eq!(m.get("x-raw"), Some("a\\qb\\cc"), "{m:?}");
}

#[test]
fn header_values_are_not_trimmed_in_1_2() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x-padded", "  two spaces  ")
            .header("x-empty", "")
            .body("pad"),
    );
    let m = c.expect_body("pad");
    assert_eq!(m.get("x-padded"), Some("  two spaces  "), "{m:?}");
    assert_eq!(m.get("x-empty"), Some(""), "{m:?}");
}

#[test]
fn header_values_are_not_trimmed_in_1_1() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.1");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x-padded", " lead and trail ")
            .body("pad"),
    );
    let m = c.expect_body("pad");
    assert_eq!(m.get("x-padded"), Some(" lead and trail "), "{m:?}");
}

// --- repeated headers --------------------------------------------------------------------------

#[test]
fn repeated_destination_header_first_wins() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let first = queue("first");
    let second = queue("second");
    c.subscribe(&first, "s1", "auto", &[]);
    c.subscribe(&second, "s2", "auto", &[]);
    c.request(
        Frame::new("SEND")
            .header("destination", first.as_str())
            .header("destination", second.as_str())
            .body("to the first"),
    );
    c.send_sync(&second, "marker", &[]);
    // Two messages arrive: "to the first" on s1, and the marker on s2 and nothing else.
    let mut got = [c.expect_message(), c.expect_message()];
    got.sort_by_key(|m| m.text());
    assert_eq!(got[0].text(), "marker");
    assert_eq!(got[0].get("subscription"), Some("s2"), "{:?}", got[0]);
    assert_eq!(got[1].text(), "to the first");
    assert_eq!(got[1].get("subscription"), Some("s1"), "{:?}", got[1]);
    assert_eq!(
        got[1].get("destination"),
        Some(first.as_str()),
        "{:?}",
        got[1]
    );
    c.expect_silence(QUIET);
}

#[test]
fn repeated_user_headers_are_kept_in_order() {
    let broker = Broker::under_test();
    let (mut c, q) = subscribed(&broker, "1.2");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("x-rep", "first")
            .header("x-rep", "second")
            .body("rep"),
    );
    let m = c.expect_body("rep");
    assert_eq!(m.get("x-rep"), Some("first"), "first value must win: {m:?}");
    if target() == Target::ActiveMq {
        // ActiveMQ keeps only the first (docs/compatibility.md).
        assert_eq!(m.all("x-rep"), ["first"], "{m:?}");
        return;
    }
    assert_eq!(m.all("x-rep"), ["first", "second"], "{m:?}");
}

// --- malformed frames and errors ---------------------------------------------------------------

#[test]
fn unknown_command_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("FROB").header("receipt", "r1"));
    let e = c.expect_error_and_close(None);
    assert_mentions(&e, &["command", "frob"]);
}

#[test]
fn commands_are_case_sensitive() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("send")
            .header("destination", queue("lower"))
            .body("x"),
    );
    c.expect_error_and_close(None);
}

#[test]
fn header_line_without_colon_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("nocolon");
    let raw = format!("SEND\ndestination:{q}\nthis line has no colon\n\nx\0");
    c.send_raw(raw.as_bytes());
    if target() == Target::ActiveMq {
        // ActiveMQ takes the line as a header name with an empty value (docs/compatibility.md).
        c.subscribe(&q, "s", "auto", &[]);
        let m = c.expect_body("x");
        assert_eq!(m.get("this line has no colon"), Some(""), "{m:?}");
        return;
    }
    c.expect_error_and_close(None);
}

#[test]
fn endless_command_line_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let _ = c.try_send_raw(&[b'A'; 8192]);
    c.expect_error_and_close_mid_stream();
}

#[test]
fn error_frame_carries_message_content_type_and_body() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SEND")
            .header("receipt", "r-err")
            .body("no destination"),
    );
    let e = c.expect_refusal(Some("r-err"));
    let ct = e.must("content-type");
    assert!(ct.starts_with("text/plain"), "{e:?}");
    assert!(!e.body.is_empty(), "ERROR body should explain: {e:?}");
}

#[test]
fn send_without_destination_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("SEND").header("receipt", "r1").body("where to?"));
    let e = c.expect_refusal(Some("r1"));
    assert_mentions(&e, &["destination"]);
}

#[test]
fn subscribe_without_destination_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("id", "s")
            .header("receipt", "r1"),
    );
    let e = c.expect_refusal(Some("r1"));
    assert_mentions(&e, &["destination"]);
}

#[test]
fn subscribe_without_id_is_an_error_in_1_2() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("destination", queue("noid"))
            .header("receipt", "r1"),
    );
    let e = c.expect_refusal(Some("r1"));
    assert_mentions(&e, &["id"]);
}

#[test]
fn subscribe_without_id_is_an_error_in_1_1() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.1");
    c.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("destination", queue("noid11"))
            .header("receipt", "r1"),
    );
    c.expect_refusal(Some("r1"));
}

#[test]
fn unsubscribe_without_id_is_an_error_in_1_2() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("unsub-noid");
    c.subscribe(&q, "s", "auto", &[]);
    c.send_frame(&Frame::new("UNSUBSCRIBE").header("receipt", "r1"));
    c.expect_refusal(Some("r1"));
}

#[test]
fn ack_without_id_is_an_error_in_1_2() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("ACK").header("receipt", "r1"));
    c.expect_refusal(Some("r1"));
}

#[test]
fn nack_without_id_is_an_error_in_1_2() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("NACK").header("receipt", "r1"));
    c.expect_refusal(Some("r1"));
}

#[test]
fn ack_without_message_id_is_an_error_in_1_1() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.1");
    c.send_frame(
        &Frame::new("ACK")
            .header("subscription", "s")
            .header("receipt", "r1"),
    );
    c.expect_refusal(Some("r1"));
}

#[test]
fn send_to_an_invalid_destination_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", "/nowhere/at-all")
            .header("receipt", "r1")
            .body("x"),
    );
    if target() == Target::ActiveMq {
        // ActiveMQ takes a name it does not know for a queue of that name
        // (docs/compatibility.md).
        c.await_receipt("r1", WAIT);
        c.subscribe("/nowhere/at-all", "s", "auto", &[]);
        c.expect_body("x");
        return;
    }
    let e = c.expect_error_and_close(Some("r1"));
    assert_mentions(&e, &["destination"]);
}

#[test]
fn subscribe_to_an_invalid_destination_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("destination", "/queu/typo")
            .header("id", "s")
            .header("receipt", "r1"),
    );
    if target() == Target::ActiveMq {
        // As above: a queue named `/queu/typo`.
        c.await_receipt("r1", WAIT);
        c.send("/queu/typo", "typo", &[]);
        c.expect_body("typo");
        return;
    }
    c.expect_error_and_close(Some("r1"));
}

// --- limits ------------------------------------------------------------------------------------

/// RabbitMQ's own STOMP suite sends 16 MiB bodies, and ActiveMQ takes up to 100 MiB by default
/// (`maxDataLength`): the default limits take them too, persistent, and deliver them whole.
#[test]
fn a_sixteen_mib_body_is_taken_by_default_and_delivered_whole() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("sixteen-mib");
    c.subscribe(&q, "s", "client", &[]);
    let body: Vec<u8> = (0..16 * 1024 * 1024)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    c.request(
        Frame::new("SEND")
            .header("destination", q.as_str())
            .header("persistent", "true")
            .header("content-length", body.len().to_string())
            .body(&body),
    );
    let m = c.expect_message();
    assert_eq!(m.body.len(), body.len());
    assert!(m.body == body, "the 16 MiB body came back changed");
    c.ack(&m);
    c.disconnect();
}

const SMALL_LIMITS: &str = "[limits]\nmax_frame_bytes = 4096\nmax_body_bytes = 1024\n\
                            max_headers = 16\nmax_header_line_bytes = 256\n";

fn limited(test: &str) -> Option<(Broker, Client, String)> {
    let broker = Broker::own_with_config(test, SMALL_LIMITS)?;
    let c = broker.connect("1.2");
    let q = queue("limits");
    Some((broker, c, q))
}

#[test]
fn frame_within_all_limits_is_accepted() {
    let Some((_broker, mut c, q)) = limited("frame_within_all_limits_is_accepted") else {
        return;
    };
    c.subscribe(&q, "s", "auto", &[]);
    let body = vec![b'b'; 1024];
    // 16 headers in all: destination, content-length, receipt and 13 more.
    let mut f = Frame::new("SEND")
        .header("destination", q.as_str())
        .header("content-length", "1024");
    for i in 0..13 {
        f = f.header(format!("x-h{i}"), "v".repeat(150));
    }
    c.request(f.body(&body));
    let m = c.expect_message();
    assert_eq!(m.body, body);
}

#[test]
fn body_over_max_body_bytes_is_an_error() {
    let Some((_broker, mut c, q)) = limited("body_over_max_body_bytes_is_an_error") else {
        return;
    };
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("content-length", "1025")
            .header("receipt", "r1")
            .body(vec![b'x'; 1025]),
    );
    let e = c.expect_error_and_close(Some("r1"));
    assert_mentions(&e, &["body", "max_body_bytes", "large", "limit"]);
}

#[test]
fn body_over_max_body_bytes_without_content_length_is_an_error() {
    let Some((_broker, mut c, q)) =
        limited("body_over_max_body_bytes_without_content_length_is_an_error")
    else {
        return;
    };
    // The receipt makes a broker that wrongly accepts the frame say so.
    let _ = c.try_send_raw(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .header("receipt", "r1")
            .body(vec![b'x'; 2000])
            .encode(),
    );
    c.expect_error_and_close(None);
}

#[test]
fn oversized_content_length_is_rejected_before_the_body_arrives() {
    let Some((_broker, mut c, q)) =
        limited("oversized_content_length_is_rejected_before_the_body_arrives")
    else {
        return;
    };
    let head = format!("SEND\ndestination:{q}\ncontent-length:100000000\nreceipt:r1\n\n");
    c.send_raw(head.as_bytes());
    // No body follows: the broker must judge the announced length, not wait for 100 MB.
    c.expect_error_and_close(Some("r1"));
}

#[test]
fn too_many_headers_is_an_error() {
    let Some((_broker, mut c, q)) = limited("too_many_headers_is_an_error") else {
        return;
    };
    let mut f = Frame::new("SEND").header("destination", q.as_str());
    for i in 0..40 {
        f = f.header(format!("x-h{i}"), "v");
    }
    let _ = c.try_send_raw(&f.body("x").encode());
    let e = c.expect_error_and_close(None);
    assert_mentions(&e, &["header"]);
}

#[test]
fn header_line_over_max_header_line_bytes_is_an_error() {
    let Some((_broker, mut c, q)) = limited("header_line_over_max_header_line_bytes_is_an_error")
    else {
        return;
    };
    let f = Frame::new("SEND")
        .header("destination", q.as_str())
        .header("x-long", "v".repeat(400))
        .body("x");
    let _ = c.try_send_raw(&f.encode());
    let e = c.expect_error_and_close(None);
    assert_mentions(&e, &["header"]);
}

#[test]
fn frame_over_max_frame_bytes_is_an_error() {
    let Some((_broker, mut c, q)) = limited("frame_over_max_frame_bytes_is_an_error") else {
        return;
    };
    // Every header line and the body are within their own limits; the sum is not.
    let mut f = Frame::new("SEND")
        .header("destination", q.as_str())
        .header("content-length", "1000");
    for i in 0..13 {
        f = f.header(format!("x-h{i}"), "v".repeat(240));
    }
    let _ = c.try_send_raw(&f.body(vec![b'x'; 1000]).encode());
    let e = c.expect_error_and_close(None);
    assert_mentions(&e, &["frame", "max_frame_bytes", "large", "limit"]);
}
