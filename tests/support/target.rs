//! Which broker the protocol suite is testing, and which of its tests cannot apply to a broker
//! other than ours.
//!
//! By default the suite starts our binary ([`Target::Stompbox`]). `STOMP_ADDR` points it at an
//! external broker instead; `STOMP_TARGET` says which one it is, so that a test can assert what
//! that broker is documented to do where it differs from us (`docs/compatibility.md`, "Where we
//! differ from ActiveMQ, and why"). Tests that need our own broker (its config, its process) are
//! declared in `protocol-tests/not-applicable.txt` with the reason, in one place: the ActiveMQ
//! run (`make test-against-activemq`) excludes them by name, and [`not_applicable`] refuses a
//! test that needs our broker but is not declared there, also in `make test`.

use std::sync::OnceLock;

use super::broker::STOMP_ADDR;

/// The environment variable naming the kind of broker at `STOMP_ADDR` (`activemq`).
pub const STOMP_TARGET: &str = "STOMP_TARGET";

/// The broker under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Our binary, started by each test (no `STOMP_ADDR`).
    Stompbox,
    /// ActiveMQ Classic 5.17 at `STOMP_ADDR` (`STOMP_TARGET=activemq`): tests assert its
    /// documented differences where it departs from the spec or from our contract.
    ActiveMq,
    /// Another broker at `STOMP_ADDR` (no `STOMP_TARGET`): held to the spec and our contract,
    /// with no documented differences; expect failures where it departs from them.
    Other,
}

/// The broker under test, from `STOMP_ADDR` and `STOMP_TARGET`. Panics on a `STOMP_TARGET` it
/// does not know, or one that names an external broker while `STOMP_ADDR` is unset.
pub fn target() -> Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let external = std::env::var(STOMP_ADDR).is_ok_and(|a| !a.trim().is_empty());
        let named = std::env::var(STOMP_TARGET).unwrap_or_default();
        match (named.trim(), external) {
            ("" | "stompbox", false) => Target::Stompbox,
            ("", true) => Target::Other,
            ("activemq", true) => Target::ActiveMq,
            ("activemq", false) => {
                panic!("{STOMP_TARGET}=activemq needs {STOMP_ADDR}: the ActiveMQ to test")
            }
            (other, _) => panic!(
                "{STOMP_TARGET}={other:?} is not a known broker (known: activemq; leave it \
                 unset for our own broker or an unknown external one)"
            ),
        }
    })
}

/// The file declaring the tests that cannot apply to an external broker: one a line, the test's
/// path as `cargo test -- --list` prints it, then why.
pub const NOT_APPLICABLE_FILE: &str = "protocol-tests/not-applicable.txt";

const NOT_APPLICABLE: &str = include_str!("../../protocol-tests/not-applicable.txt");

/// Why the running test (named by its thread, as libtest names it) cannot apply to an external
/// broker, as declared in [`NOT_APPLICABLE_FILE`]. A test that needs our own broker calls this
/// against every target; it fails, saying what to do, when the test is not declared.
#[track_caller]
pub fn not_applicable() -> &'static str {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed thread>");
    match not_applicable_reason(test) {
        Some(why) => why,
        None => panic!(
            "{test} needs our own broker (its config or its process), so it cannot run against \
             {STOMP_ADDR}; declare it in {NOT_APPLICABLE_FILE} with the reason, or make it hold \
             for an external broker"
        ),
    }
}

/// The declared reason for `test` (its full path), if any.
pub fn not_applicable_reason(test: &str) -> Option<&'static str> {
    not_applicable_tests().find_map(|(t, why)| (t == test).then_some(why))
}

/// Every declared test with its reason, in file order.
pub fn not_applicable_tests() -> impl Iterator<Item = (&'static str, &'static str)> {
    NOT_APPLICABLE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((test, why)) => (test, why.trim()),
            None => (l, ""),
        })
}
