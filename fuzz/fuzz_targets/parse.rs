//! Any bytes, split any way, at any version: the decoder never panics, keeps its buffer within
//! the limits and decodes the same frames however the bytes are split.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stompbox_fuzz::check_parse(data));
