//! Heart-beat negotiation (`heart-beat:cx,cy` → `heart-beat:sx,sy`), the broker's idle EOLs and
//! its read timeout (sy × grace). Our broker runs with `min_interval_ms = 50` and `grace = 1.5`
//! so that it takes the 100 ms heart-beats these tests ask for; an external broker runs as it
//! is. ActiveMQ mirrors the client's values (docs/compatibility.md), which the tests' 100 ms
//! cases expect of any broker.

use std::time::{Duration, Instant};

use crate::support::{queue, target, Broker, Client, Frame, Target};

const FAST_HEART_BEATS: &str = "[heart_beat]\nmin_interval_ms = 50\ngrace = 1.5\n";

fn connect_with_heart_beat(broker: &Broker, heart_beat: Option<&str>) -> (Client, Frame) {
    let mut c = broker.raw();
    let mut f = Frame::new("CONNECT")
        .header("accept-version", "1.2")
        .header("host", "localhost");
    if let Some(hb) = heart_beat {
        f = f.header("heart-beat", hb);
    }
    let connected = c.handshake(&f);
    assert_eq!(connected.command, "CONNECTED", "{connected:?}");
    (c, connected)
}

fn parse_heart_beat(f: &Frame) -> (u64, u64) {
    let hb = f.must("heart-beat");
    let (a, b) = hb
        .split_once(',')
        .unwrap_or_else(|| panic!("heart-beat is not `sx,sy`: {f:?}"));
    let num = |s: &str| {
        s.parse::<u64>()
            .unwrap_or_else(|_| panic!("heart-beat is not two integers: {f:?}"))
    };
    (num(a), num(b))
}

#[test]
fn heart_beat_reply_honours_zeroes_and_never_undercuts_the_client() {
    // Valid for any broker: sx is 0 exactly when the client wants none (cy = 0) and otherwise
    // at least cy; sy is 0 exactly when the client sends none (cx = 0) and otherwise at least cx.
    let broker = Broker::under_test();
    for (cx, cy) in [(0, 0), (0, 2000), (3000, 0), (4000, 5000)] {
        let (_c, f) = connect_with_heart_beat(&broker, Some(&format!("{cx},{cy}")));
        let (sx, sy) = parse_heart_beat(&f);
        assert_eq!(sx == 0, cy == 0, "client {cx},{cy} → {f:?}");
        assert_eq!(sy == 0, cx == 0, "client {cx},{cy} → {f:?}");
        assert!(sx >= cy, "client {cx},{cy} → {f:?}");
        assert!(sy >= cx, "client {cx},{cy} → {f:?}");
    }
}

#[test]
fn missing_heart_beat_header_means_0_0() {
    let broker = Broker::under_test();
    let (mut c, f) = connect_with_heart_beat(&broker, None);
    if let Some(hb) = f.get("heart-beat") {
        assert_eq!(hb, "0,0", "{f:?}");
    }
    // No keep-alives are sent to a client that asked for none.
    c.expect_silence(Duration::from_millis(500));
    assert_eq!(
        c.eols, 0,
        "broker sent heart-beat EOLs to a client that wanted none"
    );
}

#[test]
fn heart_beat_negotiation_applies_min_interval() {
    let broker = Broker::under_test_with_config(FAST_HEART_BEATS);
    for (client, want) in [
        ("0,0", "0,0"),
        ("20,30", "50,50"),
        ("200,300", "300,200"),
        ("0,100", "100,0"),
        ("100,0", "0,100"),
        ("10,0", "0,50"),
    ] {
        let (_c, f) = connect_with_heart_beat(&broker, Some(client));
        if target() == Target::ActiveMq {
            // ActiveMQ has no minimum: it answers `cy,cx`, the client's values swapped
            // (docs/compatibility.md).
            let (cx, cy) = client.split_once(',').expect("cx,cy");
            assert_eq!(
                f.get("heart-beat"),
                Some(format!("{cy},{cx}").as_str()),
                "client heart-beat:{client} → {f:?}"
            );
            continue;
        }
        assert_eq!(
            f.get("heart-beat"),
            Some(want),
            "client heart-beat:{client} → {f:?}"
        );
    }
}

#[test]
fn broker_sends_eols_while_idle() {
    let broker = Broker::under_test_with_config(FAST_HEART_BEATS);
    let (mut c, f) = connect_with_heart_beat(&broker, Some("0,100"));
    assert_eq!(f.get("heart-beat"), Some("100,0"), "{f:?}");
    c.eols = 0;
    c.expect_silence(Duration::from_millis(1000));
    // About 10 are due at a 100 ms interval; 4 leaves room for a loaded machine.
    assert!(
        c.eols >= 4,
        "only {} heart-beat EOLs in 1s at a 100ms interval",
        c.eols
    );
}

#[test]
fn silent_client_is_closed_after_heart_beat_grace() {
    let broker = Broker::under_test_with_config(FAST_HEART_BEATS);
    let (mut c, f) = connect_with_heart_beat(&broker, Some("100,0"));
    assert_eq!(f.get("heart-beat"), Some("0,100"), "{f:?}");
    let started = Instant::now();
    c.expect_closed_maybe_error(Duration::from_secs(5));
    // Not before the interval itself has passed (grace only ever lengthens it).
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "closed after {:?}, before the 100ms heart-beat interval",
        started.elapsed()
    );
}

#[test]
fn client_heart_beats_keep_the_connection_open() {
    let broker = Broker::under_test_with_config(FAST_HEART_BEATS);
    // The client promises a beat every 400 ms (dead after 600 ms of silence) and sends one
    // every ~40 ms for 2 s: without them counting, the broker would close it mid-way; with
    // them, a loaded machine needs a 600 ms stall of this thread to break the test.
    let (mut c, _) = connect_with_heart_beat(&broker, Some("400,0"));
    let until = Instant::now() + Duration::from_millis(2000);
    let mut crlf = false;
    while Instant::now() < until {
        // Both EOL forms count as heart-beats in 1.2.
        c.send_raw(if crlf { b"\r\n" } else { b"\n" });
        crlf = !crlf;
        c.expect_silence(Duration::from_millis(40));
    }
    let q = queue("hb-alive");
    c.send_sync(&q, "alive", &[]);
}

#[test]
fn frames_count_as_heart_beats() {
    let broker = Broker::under_test_with_config(FAST_HEART_BEATS);
    let (mut c, _) = connect_with_heart_beat(&broker, Some("100,0"));
    let q = queue("hb-frames");
    let until = Instant::now() + Duration::from_millis(1200);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        c.send_sync(&q, &format!("beat {n}"), &[]);
        std::thread::sleep(Duration::from_millis(40));
    }
    c.disconnect();
}

#[test]
fn heart_beats_between_frames_are_ignored_by_the_broker() {
    // No config needed: EOLs between frames are legal whether or not heart-beats were agreed.
    let broker = Broker::under_test();
    let mut c = broker.connect("1.2");
    let q = queue("hb-between");
    c.subscribe(&q, "s", "auto", &[]);
    c.send_raw(b"\n\n\r\n");
    c.send_raw(
        &Frame::new("SEND")
            .header("destination", q.as_str())
            .body("x")
            .encode(),
    );
    c.send_raw(b"\n\r\n\n");
    c.expect_body("x");
    c.expect_silence(Duration::from_millis(100));
}
