//! Transports in front of the codec: plain TCP, TLS (`tls.rs`), WebSocket (`websocket/`) and
//! WebSocket over TLS, each optionally preceded by a PROXY protocol header from a load
//! balancer (`proxy.rs`). Whatever the transport, the session sees a byte stream and applies
//! the same limits, heart-beats and budgets.

pub mod proxy;
mod rewind;
pub mod tls;
pub mod websocket;

pub use rewind::Rewind;

/// The kinds of client listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// STOMP over TCP (`bind`).
    Stomp,
    /// STOMP over TLS (`tls.bind`).
    Ssl,
    /// STOMP over WebSocket (`websocket.bind`).
    Ws,
    /// STOMP over WebSocket over TLS (`websocket.tls_bind`).
    Wss,
}

impl Kind {
    /// The name in the `stompbox listening` line and in logs: `stomp`, `ssl`, `ws`, `wss`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stomp => "stomp",
            Kind::Ssl => "ssl",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Kind::Ssl | Kind::Wss)
    }

    pub fn websocket(self) -> bool {
        matches!(self, Kind::Ws | Kind::Wss)
    }
}
