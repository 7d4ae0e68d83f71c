//! Any text parsed as a JMS selector: no panic, positions inside the text, and the canonical
//! text parses back to the same tree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stompbox_fuzz::selector::check_selector(data));
