//! Any text parsed as a broker URI: no panic, and parse → display → parse keeps the addresses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stompbox_fuzz::uri::check_uri(data));
