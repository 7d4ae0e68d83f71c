//! STOMP over WebSocket: the opening handshake (`handshake.rs`) and the connection as a byte
//! stream (`stream.rs`), which the session reads and writes exactly as a TCP connection.

mod handshake;
mod stream;

pub use handshake::{accept, origin_authority, HandshakeError, Policy, Refusal};
pub use stream::WsStream;
