//! `browser:true` on SUBSCRIBE (ActiveMQ's queue browser): the waiting messages are shown,
//! then a MESSAGE with `browser:end`; nothing is consumed.

use crate::support::{bodies, queue, Broker, Frame, QUIET, WAIT};

#[test]
fn a_browser_sees_waiting_messages_then_browser_end_and_consumes_nothing() {
    let broker = Broker::under_test();
    let q = queue("browse");
    let mut producer = broker.connect("1.2");
    for (n, kind) in ["a", "b", "a"].iter().enumerate() {
        producer.send_sync(&q, &format!("{kind}{n}"), &[("kind", kind)]);
    }
    let mut browser = broker.connect("1.2");
    browser.subscribe(&q, "look", "auto", &[("browser", "true")]);
    let shown = browser.receive(4, WAIT);
    assert_eq!(bodies(&shown[..3]), ["a0", "b1", "a2"]);
    let end = &shown[3];
    assert_eq!(end.get("browser"), Some("end"), "{end:?}");
    assert_eq!(end.get("message-id"), Some("0"), "{end:?}");
    assert_eq!(end.get("subscription"), Some("look"), "{end:?}");
    assert!(end.text().is_empty(), "{end:?}");
    browser.expect_silence(QUIET);
    // A browser with a selector sees only what it matches.
    browser.subscribe(
        &q,
        "only-a",
        "auto",
        &[("browser", "true"), ("selector", "kind = 'a'")],
    );
    let shown = browser.receive(3, WAIT);
    assert_eq!(bodies(&shown[..2]), ["a0", "a2"]);
    assert_eq!(shown[2].get("browser"), Some("end"));
    browser.request(Frame::new("UNSUBSCRIBE").header("id", "look"));
    // Nothing was consumed: a consumer still gets all three, first time delivered.
    let mut consumer = broker.connect("1.2");
    consumer.subscribe(&q, "c", "client-individual", &[]);
    let got = consumer.receive(3, WAIT);
    assert_eq!(bodies(&got), ["a0", "b1", "a2"]);
    assert!(
        got.iter().all(|m| m.get("redelivered").is_none()),
        "{got:?}"
    );
}

#[test]
fn browsing_an_empty_queue_ends_at_once() {
    let broker = Broker::under_test();
    let mut browser = broker.connect("1.2");
    browser.subscribe(
        &queue("browse-empty"),
        "look",
        "auto",
        &[("browser", "true")],
    );
    let end = browser.expect_message();
    assert_eq!(end.get("browser"), Some("end"), "{end:?}");
}
