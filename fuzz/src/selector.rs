//! The checks behind the `selector` fuzz target: JMS selectors (`src/selector/`).
//!
//! `fuzz_targets/selector.rs` calls [`check_selector`]; `tests/fuzz_corpus.rs` includes this
//! file and replays `fuzz/corpus/selector/` through it in `cargo test`.

use stompbox::selector::{Selector, Subject};

/// A message as a selector sees it, with headers that make numbers, booleans and strings.
struct Probe {
    headers: &'static [(&'static str, &'static str)],
    priority: u8,
    id: u64,
    expires: u64,
    persistent: bool,
}

impl Subject for Probe {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
    fn priority(&self) -> u8 {
        self.priority
    }
    fn message_id(&self) -> u64 {
        self.id
    }
    fn expires(&self) -> u64 {
        self.expires
    }
    fn persistent(&self) -> bool {
        self.persistent
    }
}

const PROBES: [Probe; 3] = [
    Probe {
        headers: &[
            ("a", "1"),
            ("b", "x"),
            ("c", "true"),
            ("d", "2.5"),
            ("e", ""),
        ],
        priority: 4,
        id: 1,
        expires: 0,
        persistent: false,
    },
    Probe {
        headers: &[
            ("a", "-9223372036854775808"),
            ("b", "%_!"),
            ("c", "FALSE"),
            ("x.y", "9"),
        ],
        priority: 9,
        id: u64::MAX,
        expires: u64::MAX,
        persistent: true,
    },
    Probe {
        headers: &[],
        priority: 0,
        id: 0,
        expires: 0,
        persistent: false,
    },
];

/// Any text: parsing never panics (nor overflows the stack), a refusal names a position
/// inside the text (or just past it), evaluation never panics, and the canonical text of a
/// parsed selector parses back to the same tree and matches the same messages.
pub fn check_selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let selector = match Selector::parse(text) {
        Ok(selector) => selector,
        Err(e) => {
            let chars = text.chars().count();
            assert!(
                (1..=chars + 1).contains(&e.position),
                "{text:?}: position {} outside 1..={}",
                e.position,
                chars + 1
            );
            return;
        }
    };
    let shown = selector.expr().to_string();
    let again = match Selector::parse(&shown) {
        Ok(again) => again,
        // Full parentheses can nest one level more than the original did.
        Err(e) if e.reason.contains("deeper") => return,
        Err(e) => panic!("{text:?} shown as {shown:?}, which does not parse: {e}"),
    };
    assert_eq!(again.expr(), selector.expr(), "{text:?} shown as {shown:?}");
    for probe in &PROBES {
        assert_eq!(
            selector.matches(probe),
            again.matches(probe),
            "{text:?} and {shown:?} disagree"
        );
    }
}
