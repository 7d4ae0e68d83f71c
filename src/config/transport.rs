//! `[websocket]` and `[tls]`: the client listeners beyond plain TCP (docs/transports.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Config;

/// STOMP over WebSocket (docs/transports.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Serve STOMP over WebSocket on `bind`.
    pub enabled: bool,
    /// Address of the WebSocket listener (ActiveMQ's default port too). (flag: --ws-bind)
    pub bind: SocketAddr,
    /// Address of a `wss://` listener (WebSocket over TLS, certificate from `[tls]`); none
    /// when unset.
    pub tls_bind: Option<SocketAddr>,
    /// Request paths upgraded to STOMP; other paths get 404.
    pub paths: Vec<String>,
    /// Web page origins (`scheme://host[:port]`) whose pages may connect, besides pages
    /// served from this listener's own address; `"*"` admits every origin (ActiveMQ's
    /// behaviour). Requests without `Origin` (programs, not browsers) are always admitted.
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 61614)),
            tls_bind: None,
            paths: vec!["/".into(), "/stomp".into()],
            allowed_origins: Vec::new(),
        }
    }
}

/// TLS settings (docs/transports.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the STOMP-over-TLS listener (`ssl://`, `stomp+ssl://`; ActiveMQ uses
    /// 61612); none when unset.
    pub bind: Option<SocketAddr>,
    /// PEM file with the server certificate, then its intermediates.
    pub cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Client certificates: `none` (not asked for), `optional` (verified when sent) or
    /// `required` (a client without a valid one cannot connect).
    pub client_auth: ClientAuth,
    /// PEM file with the CA certificates client certificates must chain to.
    pub client_ca: Option<PathBuf>,
}

/// Whether TLS clients present certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    None,
    Optional,
    Required,
}

/// `[websocket]` and `[tls]`: origins and paths well formed, a certificate and key for
/// every TLS listener, a CA for client certificates.
pub(super) fn check(config: &Config) -> Result<(), String> {
    let ws = &config.websocket;
    for origin in ws.allowed_origins.iter().filter(|o| *o != "*") {
        crate::transport::websocket::origin_authority(origin)
            .map_err(|e| format!("websocket.allowed_origins: {e}"))?;
    }
    if ws.enabled && ws.paths.is_empty() {
        return Err("websocket.paths is empty: list at least one, e.g. [\"/\"]".into());
    }
    if let Some(p) = ws
        .paths
        .iter()
        .find(|p| !p.starts_with('/') || p.contains('?'))
    {
        return Err(format!(
            "websocket.paths: {p:?} must start with / (no query)"
        ));
    }
    let tls = &config.tls;
    if config.tls_listeners() && (tls.cert.is_none() || tls.key.is_none()) {
        return Err(
            "tls.bind or websocket.tls_bind is set: tls.cert and tls.key are needed".into(),
        );
    }
    if tls.client_auth != ClientAuth::None && tls.client_ca.is_none() {
        return Err("tls.client_auth verifies client certificates: set tls.client_ca".into());
    }
    Ok(())
}
