//! The checks behind the `uri` fuzz target: the client's broker URI parser
//! (`src/client/uri.rs`: `tcp://host:port`, `failover:(...)?options`).
//!
//! `fuzz_targets/uri.rs` calls [`check_uri`]; `tests/fuzz_corpus.rs` includes this file and
//! replays `fuzz/corpus/uri/` through it in `cargo test`.

use stompbox::client::BrokerUri;

/// Any text: parsing never panics, and a URI that parses displays as a URI that parses back
/// to the same addresses and kind. `Display` leaves the failover options out, so those are not
/// compared; displaying the re-parsed URI gives the same text again.
pub fn check_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = text.parse::<BrokerUri>() else {
        return;
    };
    assert!(!uri.addrs.is_empty(), "{text:?} parsed to no address");
    let shown = uri.to_string();
    let again: BrokerUri = shown.parse().unwrap_or_else(|e| {
        panic!("{text:?} parsed to {uri:?}, displayed as {shown:?}, which does not parse: {e}")
    });
    assert_eq!(again.addrs, uri.addrs, "{text:?} displayed as {shown:?}");
    assert_eq!(
        again.is_failover(),
        uri.is_failover(),
        "{text:?} displayed as {shown:?}"
    );
    assert_eq!(
        again.to_string(),
        shown,
        "{text:?}: display is not a fixed point"
    );
}
