//! CONNECT / STOMP / CONNECTED: version negotiation, the one-CONNECT rule, the CONNECT
//! timeout and shutdown.

use std::time::Duration;

use crate::support::{assert_mentions, queue, target, Broker, Frame, Target, WAIT};

#[test]
fn connect_1_2_answers_connected_with_version_session_server_and_heart_beat() {
    let broker = Broker::under_test();
    let mut c = broker.raw();
    let f = c.handshake(
        &Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("host", "localhost"),
    );
    assert_eq!(f.command, "CONNECTED", "{f:?}");
    assert_eq!(f.get("version"), Some("1.2"), "{f:?}");
    assert!(f.get("session").is_some_and(|s| !s.is_empty()), "{f:?}");
    assert!(f.get("heart-beat").is_some(), "{f:?}");
    let server = f.must("server");
    if !Broker::is_external() {
        assert!(server.starts_with("stompbox/"), "server header: {f:?}");
    }
}

#[test]
fn each_connection_gets_its_own_session() {
    let broker = Broker::under_test();
    let a = broker
        .raw()
        .handshake(&Frame::new("CONNECT").header("accept-version", "1.2"));
    let b = broker
        .raw()
        .handshake(&Frame::new("CONNECT").header("accept-version", "1.2"));
    assert_ne!(a.must("session"), b.must("session"));
}

#[test]
fn stomp_command_is_treated_like_connect() {
    let broker = Broker::under_test();
    let mut c = broker.raw();
    let f = c.handshake(
        &Frame::new("STOMP")
            .header("accept-version", "1.2")
            .header("host", "localhost"),
    );
    assert_eq!(f.command, "CONNECTED", "{f:?}");
    assert_eq!(f.get("version"), Some("1.2"));
    // The connection is usable afterwards.
    let q = queue("stomp-cmd");
    c.send_sync(&q, "after STOMP", &[]);
}

#[test]
fn missing_accept_version_negotiates_1_0() {
    let broker = Broker::under_test();
    let mut c = broker.raw();
    let f = c.handshake(&Frame::new("CONNECT"));
    assert_eq!(f.command, "CONNECTED", "{f:?}");
    assert_eq!(f.get("version"), Some("1.0"), "{f:?}");
}

#[test]
fn highest_common_version_is_chosen() {
    let broker = Broker::under_test();
    for (accept, want) in [
        ("1.0,1.1,1.2", "1.2"),
        ("1.2,1.0", "1.2"),
        ("1.0,1.1", "1.1"),
        ("1.1", "1.1"),
        ("1.0", "1.0"),
        ("1.1,2.0", "1.1"),
    ] {
        let mut c = broker.raw();
        let f = c.handshake(&Frame::new("CONNECT").header("accept-version", accept));
        assert_eq!(f.command, "CONNECTED", "accept-version:{accept} → {f:?}");
        assert_eq!(
            f.get("version"),
            Some(want),
            "accept-version:{accept} → {f:?}"
        );
    }
}

#[test]
fn no_common_version_is_an_error_listing_supported_versions() {
    let broker = Broker::under_test();
    let mut c = broker.raw();
    c.send_frame(&Frame::new("CONNECT").header("accept-version", "2.0,3.1"));
    let e = c.expect_error_and_close(None);
    if target() == Target::ActiveMq {
        // ActiveMQ lists them in the message only (docs/compatibility.md).
        assert_eq!(e.get("version"), None, "{e:?}");
        assert_mentions(&e, &["1.2, 1.1, 1.0"]);
        return;
    }
    let mut versions: Vec<&str> = e.must("version").split(',').collect();
    versions.sort_unstable();
    assert_eq!(versions, ["1.0", "1.1", "1.2"], "{e:?}");
}

#[test]
fn frame_before_connect_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.raw();
    c.send_frame(
        &Frame::new("SEND")
            .header("destination", queue("early"))
            .header("receipt", "r1")
            .body("too early"),
    );
    c.expect_refusal(None);
    if target() == Target::ActiveMq {
        // The connection it kept open still takes the CONNECT.
        c.connect("1.2");
    }
}

#[test]
fn second_connect_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    c.send_frame(&Frame::new("CONNECT").header("accept-version", "1.2"));
    let e = c.expect_refusal(None);
    assert_mentions(&e, &["connect"]);
}

#[test]
fn second_stomp_frame_is_an_error() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.1");
    c.send_frame(&Frame::new("STOMP").header("accept-version", "1.1"));
    c.expect_refusal(None);
}

#[test]
fn connect_headers_are_not_unescaped() {
    // CONNECT is exempt from escaping: a raw colon and a backslash in a passcode are legal and
    // `\q` is not an undefined escape there.
    let broker = Broker::under_test();
    let mut c = broker.raw();
    let f = c.handshake(
        &Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("host", "localhost")
            .header("login", "us\\qer")
            .header("passcode", "pa:ss\\word"),
    );
    assert_eq!(f.command, "CONNECTED", "{f:?}");
}

#[test]
fn connected_client_can_use_1_0_without_a_host_header() {
    let broker = Broker::under_test();
    let mut c = broker.connect("1.0");
    let q = queue("v10");
    c.send_sync(&q, "hello 1.0", &[]);
}

#[test]
fn silent_client_is_closed_after_connect_timeout() {
    let Some(broker) = Broker::own_with_config(
        "silent_client_is_closed_after_connect_timeout",
        "connect_timeout_ms = 500\n",
    ) else {
        return;
    };
    let mut c = broker.raw();
    c.expect_closed_maybe_error(Duration::from_secs(5));
}

#[test]
fn half_sent_connect_is_closed_after_connect_timeout() {
    let Some(broker) = Broker::own_with_config(
        "half_sent_connect_is_closed_after_connect_timeout",
        "connect_timeout_ms = 500\n",
    ) else {
        return;
    };
    let mut c = broker.raw();
    c.send_raw(b"CONNECT\naccept-version:1.2\n");
    c.expect_closed_maybe_error(Duration::from_secs(5));
}

#[test]
fn connect_timeout_does_not_apply_after_connected() {
    let Some(broker) = Broker::own_with_config(
        "connect_timeout_does_not_apply_after_connected",
        "connect_timeout_ms = 500\n",
    ) else {
        return;
    };
    let mut c = broker.connect("1.2");
    c.expect_silence(Duration::from_millis(1200));
    let q = queue("after-timeout");
    c.send_sync(&q, "still here", &[]);
}

#[test]
fn sigterm_closes_connections_and_exits_zero() {
    let Some(mut broker) = Broker::own("sigterm_closes_connections_and_exits_zero") else {
        return;
    };
    let mut c = broker.connect("1.2");
    let q = queue("sigterm");
    c.subscribe(&q, "s1", "auto", &[]);
    broker.signal(libc::SIGTERM);
    // The client sees the close (an ERROR first is acceptable).
    c.expect_closed_maybe_error(WAIT);
    let (exit, _) = broker.wait_exit(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM: {exit:?}");
}
