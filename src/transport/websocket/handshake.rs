//! The WebSocket opening handshake (RFC 6455, section 4.2) for STOMP: which requests are
//! upgraded, with which subprotocol, and the HTTP answer to those that are not.
//!
//! [`answer`] decides without IO (request bytes in, an upgrade or a refusal out); [`accept`]
//! reads the request, bounded in bytes and time, and writes the answer.
//!
//! - Paths: `websocket.paths` (`/` and `/stomp` by default; a query string is ignored), else
//!   404.
//! - Subprotocols: the client's offer is searched for `v12.stomp`, `v11.stomp`, `v10.stomp`
//!   (and `stomp`) and the highest is chosen; a client that offers none is upgraded without
//!   one (RabbitMQ does the same); the STOMP version itself is still agreed by CONNECT's
//!   `accept-version`.
//! - `Origin`: a browser sends one with every WebSocket request, and WebSockets are not bound
//!   by the same-origin policy, so any web page a user visits could otherwise talk STOMP to a
//!   broker the user's machine can reach. A request with an `Origin` is upgraded only when the
//!   origin's host is this listener's own address (on a 0.0.0.0 bind, the address the client
//!   connected to; on a loopback or 0.0.0.0 bind also `localhost`, `127.0.0.1` and
//!   `[::1]`), on any port — so the
//!   page the admin endpoint serves works — or it is listed in `websocket.allowed_origins`
//!   (`"*"` admits all, ActiveMQ's behaviour). Requests without `Origin` (programs, not
//!   browsers) are upgraded. Refused: 403.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tungstenite::handshake::derive_accept_key;

use crate::config::{AllowedHost, Authority, Host, WebSocketConfig};

/// Longest request head accepted (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Most headers in a request.
const MAX_HEADERS: usize = 64;

/// The subprotocols spoken, best first.
const SUBPROTOCOLS: [&str; 4] = ["v12.stomp", "v11.stomp", "v10.stomp", "stomp"];

/// Which requests a listener upgrades: built once per listener from its bound address and
/// `[websocket]`.
#[derive(Debug, Clone)]
pub struct Policy {
    bound: SocketAddr,
    paths: Vec<String>,
    any_origin: bool,
    origins: Vec<AllowedHost>,
}

/// A request that is upgraded.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The `101 Switching Protocols` answer.
    pub response: String,
    /// The subprotocol chosen, if the client offered one we speak.
    pub protocol: Option<&'static str>,
    /// Bytes of the request head; what follows is WebSocket frames.
    pub head_len: usize,
}

/// A request that is not upgraded: the HTTP status and why (also the answer's body).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    /// The HTTP answer.
    pub fn response(&self) -> String {
        let text = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let extra = match self.status {
            426 => "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
            _ => "",
        };
        format!(
            "HTTP/1.1 {} {text}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{}\n",
            self.status,
            self.reason.len() + 1,
            self.reason
        )
    }
}

/// Why a WebSocket connection did not get past its handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("refused with {0}")]
    Refused(Refusal),
    #[error("no complete WebSocket upgrade request within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before a complete upgrade request")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Policy {
    /// The policy of a listener bound to `bound` (the real address, port 0 resolved).
    pub fn new(bound: SocketAddr, config: &WebSocketConfig) -> Policy {
        Policy {
            bound,
            paths: config.paths.clone(),
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            origins: config
                .allowed_origins
                .iter()
                .filter(|o| *o != "*")
                .filter_map(|o| origin_authority(o).ok())
                .map(|a| AllowedHost {
                    host: a.host,
                    port: Some(a.port),
                })
                .collect(),
        }
    }

    /// Whether a request from a page at `origin` may be upgraded.
    /// `local` is the address the client connected to, which is what "own" means on a
    /// listener bound to every interface.
    fn admits_origin(&self, origin: &str, local: Option<IpAddr>) -> bool {
        if self.any_origin {
            return true;
        }
        let Ok(a) = origin_authority(origin) else {
            return false;
        };
        let ip = match local {
            Some(l) if self.bound.ip().is_unspecified() => l,
            _ => self.bound.ip(),
        };
        let own = match &a.host {
            Host::Ip(host) if *host == ip => true,
            Host::Ip(IpAddr::V4(v4)) => *v4 == Ipv4Addr::LOCALHOST && loopback_or_any(ip),
            Host::Ip(IpAddr::V6(v6)) => *v6 == Ipv6Addr::LOCALHOST && loopback_or_any(ip),
            Host::Name(n) => n == "localhost" && loopback_or_any(ip),
        };
        own || self
            .origins
            .iter()
            .any(|e| e.host == a.host && e.port.is_none_or(|p| p == a.port))
    }
}

/// A loopback or all-interfaces bind, where `localhost` is this listener.
fn loopback_or_any(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

/// The host and port of an origin (`scheme://host[:port]`), the scheme's default port when
/// none is given. Also used to check `websocket.allowed_origins` when the config loads.
pub fn origin_authority(origin: &str) -> Result<Authority, String> {
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| format!("{origin:?} is not an origin (scheme://host[:port])"))?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        other => return Err(format!("{origin:?}: unknown scheme {other:?}")),
    };
    let explicit = rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !rest.ends_with(']');
    let mut a =
        Authority::parse(rest.trim_end_matches('/')).map_err(|why| format!("{origin:?}: {why}"))?;
    if !explicit {
        a.port = default;
    }
    Ok(a)
}

/// Decides on the request head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn answer(
    buf: &[u8],
    policy: &Policy,
    local: Option<IpAddr>,
) -> Result<Option<Upgrade>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_BYTES => {
            return Err(Refusal::new(
                431,
                format!("request head longer than {MAX_REQUEST_BYTES} bytes"),
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(
                431,
                format!("more than {MAX_HEADERS} headers"),
            ))
        }
        Err(e) => return Err(Refusal::new(400, format!("not an HTTP request: {e}"))),
    };
    if head_len > MAX_REQUEST_BYTES {
        return Err(Refusal::new(
            431,
            format!("request head longer than {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    if request.method != Some("GET") {
        return Err(Refusal::new(405, "a WebSocket upgrade is a GET request"));
    }
    let path = request.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if !policy.paths.iter().any(|p| p == path) {
        return Err(Refusal::new(
            404,
            format!(
                "no STOMP WebSocket endpoint at {path:?} (paths: {})",
                policy.paths.join(", ")
            ),
        ));
    }
    let header = |name: &str| -> Vec<String> {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect()
    };
    let tokens = |name: &str| {
        header(name)
            .into_iter()
            .flat_map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    if !tokens("upgrade").iter().any(|t| t == "websocket")
        || !tokens("connection").iter().any(|t| t == "upgrade")
    {
        return Err(Refusal::new(
            426,
            "this port speaks STOMP over WebSocket: send a WebSocket upgrade request",
        ));
    }
    if !header("sec-websocket-version").iter().any(|v| v == "13") {
        return Err(Refusal::new(
            426,
            "unsupported Sec-WebSocket-Version (13 is spoken)",
        ));
    }
    let key = match header("sec-websocket-key").as_slice() {
        [one] if !one.is_empty() => one.clone(),
        _ => return Err(Refusal::new(400, "expected one Sec-WebSocket-Key header")),
    };
    let origins = header("origin");
    if let Some(origin) = origins.iter().find(|o| !policy.admits_origin(o, local)) {
        return Err(Refusal::new(
            403,
            format!(
                "Origin {origin:?} is not allowed: list it in websocket.allowed_origins \
                 (the listener is {})",
                policy.bound
            ),
        ));
    }
    let offered = tokens("sec-websocket-protocol");
    let protocol = SUBPROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied();
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = protocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    response.push_str("\r\n");
    Ok(Some(Upgrade {
        response,
        protocol,
        head_len,
    }))
}

/// Reads the upgrade request (after `initial`, bytes already read) and answers it. Returns
/// the subprotocol chosen and the bytes read past the request.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    initial: BytesMut,
    policy: &Policy,
    timeout: Duration,
    local: Option<IpAddr>,
) -> Result<(Option<&'static str>, BytesMut), HandshakeError> {
    let mut buf = initial;
    let read = async {
        loop {
            match answer(&buf, policy, local) {
                Ok(Some(upgrade)) => return Ok(upgrade),
                Ok(None) => {}
                Err(refusal) => return Err(HandshakeError::Refused(refusal)),
            }
            buf.reserve(1024);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(HandshakeError::Closed);
            }
        }
    };
    let decided = match tokio::time::timeout(timeout, read).await {
        Ok(decided) => decided,
        Err(_) => return Err(HandshakeError::Timeout(timeout)),
    };
    match decided {
        Ok(upgrade) => {
            stream.write_all(upgrade.response.as_bytes()).await?;
            let _ = buf.split_to(upgrade.head_len);
            Ok((upgrade.protocol, buf))
        }
        Err(HandshakeError::Refused(refusal)) => {
            let _ = stream.write_all(refusal.response().as_bytes()).await;
            let _ = stream.shutdown().await;
            Err(HandshakeError::Refused(refusal))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bound: &str, origins: &[&str]) -> Policy {
        let config = WebSocketConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..WebSocketConfig::default()
        };
        Policy::new(bound.parse().unwrap(), &config)
    }

    fn request(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:61614\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn an_upgrade_gets_the_rfc_accept_key_and_the_best_subprotocol() {
        let p = policy("127.0.0.1:61614", &[]);
        let req = request(
            "/stomp",
            "Sec-WebSocket-Protocol: v10.stomp, v12.stomp,v11.stomp\r\n",
        );
        let up = answer(req.as_bytes(), &p, None).unwrap().unwrap();
        assert_eq!(up.protocol, Some("v12.stomp"));
        assert_eq!(up.head_len, req.len());
        // RFC 6455's own example key and answer.
        assert!(up
            .response
            .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(up
            .response
            .contains("Sec-WebSocket-Protocol: v12.stomp\r\n"));
        let none = answer(request("/?x=1", "").as_bytes(), &p, None)
            .unwrap()
            .unwrap();
        assert_eq!(none.protocol, None);
        assert!(!none.response.contains("Sec-WebSocket-Protocol"));
        assert_eq!(answer(&req.as_bytes()[..40], &p, None), Ok(None));
    }

    #[test]
    fn wrong_requests_get_the_right_status() {
        let p = policy("127.0.0.1:61614", &[]);
        let status = |req: String| answer(req.as_bytes(), &p, None).unwrap_err().status;
        assert_eq!(status(request("/other", "")), 404);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: x\r\n\r\n".into()), 405);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n".into()), 426);
        assert_eq!(status("CONNECT\naccept-version:1.2\n\n\0".into()), 400);
        assert_eq!(
            status(request("/", "").replace("Version: 13", "Version: 8")),
            426
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_REQUEST_BYTES));
        assert_eq!(status(long), 431);
        let refusal = answer(request("/other", "").as_bytes(), &p, None).unwrap_err();
        assert!(refusal.response().starts_with("HTTP/1.1 404 Not Found\r\n"));
    }

    #[test]
    fn origins_are_the_listeners_own_or_listed() {
        let local = policy("127.0.0.1:61614", &["https://app.example.com"]);
        let ok_at = |p: &Policy, origin: &str, local: Option<&str>| {
            let local = local.map(|l| l.parse().unwrap());
            answer(
                request("/", &format!("Origin: {origin}\r\n")).as_bytes(),
                p,
                local,
            )
            .is_ok()
        };
        let ok = |p: &Policy, origin: &str| ok_at(p, origin, None);
        assert!(ok(&local, "http://127.0.0.1:8161"));
        assert!(ok(&local, "http://localhost"));
        assert!(ok(&local, "https://app.example.com"));
        assert!(ok(&local, "https://app.example.com:443"));
        assert!(!ok(&local, "http://app.example.com"));
        assert!(!ok(&local, "https://evil.example"));
        assert!(!ok(&local, "null"));
        let any = policy("127.0.0.1:61614", &["*"]);
        assert!(ok(&any, "https://evil.example"));
        let public = policy("10.1.2.3:61614", &[]);
        assert!(ok(&public, "http://10.1.2.3:8161"));
        assert!(!ok(&public, "http://localhost:8161"));
        // Bound to every interface: the address the client connected to is the own one.
        let all = policy("0.0.0.0:61614", &[]);
        assert!(ok_at(&all, "http://192.168.1.9", Some("192.168.1.9")));
        assert!(!ok_at(&all, "http://203.0.113.5", Some("192.168.1.9")));
        assert!(ok_at(&all, "http://localhost:8161", Some("127.0.0.1")));
        assert!(!ok(&all, "http://evil.example"));
    }
}
