//! A script of frames, pumps, partial writes, credit flushes and closes run against one to
//! three sessions and one owner: no panic, well-formed output, nothing after an ERROR,
//! bounded buffers, and no queued message vanishes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stompbox_fuzz::session::check_session(data));
