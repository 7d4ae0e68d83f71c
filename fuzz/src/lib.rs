//! The checks behind the fuzz targets, kept in a library so `cargo test` runs them too.
//!
//! Each module holds one family of checks and is self-contained (it imports nothing from its
//! siblings), so a test in the main crate can include exactly the file it replays:
//!
//! - [`codec`]: `parse` and `roundtrip`, replayed by `tests/codec_roundtrip.rs`;
//! - [`session`]: `session`, sessions and an owner pumped by hand, replayed by
//!   `tests/fuzz_corpus.rs`;
//! - [`selector`]: `selector`, JMS selectors, replayed by `tests/fuzz_corpus.rs`;
//! - [`uri`]: `uri`, the client's broker URI parser, replayed by `tests/fuzz_corpus.rs`.
//!
//! A check panics when a property breaks, which is how both libFuzzer and the test harness
//! notice.

pub mod codec;
pub mod selector;
pub mod session;
pub mod uri;

pub use codec::*;
