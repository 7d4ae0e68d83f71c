//! Every frame decoded from any bytes, at any version, survives encode → decode unchanged
//! (where the encoder can carry it at all).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stompbox_fuzz::check_roundtrip(data));
