//! The black-box STOMP conformance suite: raw frames against the built `stompbox` binary, or
//! against any broker named by `STOMP_ADDR` (see `README.md`). One file per spec area; one
//! scenario per test, named after the behaviour.

// The harness shared with `tests/`: one raw STOMP client and one broker launcher.
#[path = "../tests/support/mod.rs"]
mod support;

mod ack;
mod advisory;
mod browse;
mod composite;
mod connect;
mod consumers;
mod destinations;
mod durable;
mod frames;
mod heartbeat;
mod hostile;
mod load;
mod prefetch;
mod queue;
mod receipt;
mod redelivery;
mod scheduled;
mod selector;
mod temp;
mod topic;
mod transaction;
mod virtual_topic;
mod wildcard;

/// Each line of `not-applicable.txt` names one test, once, and says why it needs our broker:
/// the ActiveMQ run prints the reasons, and skips by the names.
#[test]
fn not_applicable_declarations_name_each_test_once_with_a_reason() {
    let mut seen = std::collections::HashSet::new();
    for (test, why) in support::target::not_applicable_tests() {
        assert!(
            test.contains("::"),
            "{test}: not a test path (module::test)"
        );
        assert!(!why.is_empty(), "{test} is declared without a reason");
        assert!(seen.insert(test), "{test} is declared twice");
    }
}
