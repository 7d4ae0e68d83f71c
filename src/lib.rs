//! Stompbox: a STOMP-first message broker.
pub mod codec;
pub mod limits;
