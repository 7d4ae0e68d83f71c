//! The black-box STOMP conformance suite: raw frames against the built `stompbox` binary, or
//! against any broker named by `STOMP_ADDR` (see `README.md`). One file per spec area; one
//! scenario per test, named after the behaviour.

// The harness shared with `tests/`: one raw STOMP client and one broker launcher.
#[path = "../tests/support/mod.rs"]
mod support;

mod ack;
mod connect;
mod consumers;
mod frames;
mod heartbeat;
mod hostile;
mod load;
mod prefetch;
mod queue;
mod receipt;
mod redelivery;
mod selector;
mod topic;
mod transaction;
