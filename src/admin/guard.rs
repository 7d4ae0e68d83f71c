//! The checks every admin request passes before its handler: `Host` against DNS rebinding, and
//! for a state change, `Origin` and a request header against cross-site requests (CSRF).
//!
//! On loopback the endpoint asks for no credentials (`auth.rs`; docs/admin-api.md): anyone who can open a TCP connection
//! to it can do anything. These checks only keep a web page the operator happens to visit from
//! using the operator's browser, which can reach the endpoint, as a way in:
//!
//! - A page on another site may send a "simple" cross-site POST (a form, or `fetch` without
//!   custom headers) that the browser delivers without asking the endpoint first. A state
//!   change therefore needs `X-Stompbox-Request` or `content-type: application/json`, which a
//!   browser sends cross-site only after a CORS preflight that this endpoint never grants, and
//!   a present `Origin` must be the endpoint's own.
//! - DNS rebinding: a page at `http://evil.example:8161` whose name the attacker then points at
//!   127.0.0.1 is, to the browser, same-origin with the endpoint, so it may read every answer.
//!   Its requests still say `Host: evil.example:8161`; only hosts the endpoint knows as its own
//!   are answered (421 otherwise). `GET /health` and `GET /metrics` are exempt, see
//!   [`Guard::check`].
//!
//! [`Guard::check`] decides without IO (method, URI, version and headers in; a [`Refusal`] or
//! nothing out); [`enforce`] is the axum middleware that applies it to every route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::api::{error, ApiError};
use crate::config::{AllowedHost, Authority, Host};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header that marks a state change as sent by a tool or by the console itself.
pub const REQUEST_HEADER: &str = "x-stompbox-request";

/// Which hosts (and so which origins) this endpoint answers to: built once at start from the
/// bound address and `admin.allowed_hosts`.
#[derive(Debug, Clone)]
pub struct Guard {
    bound: SocketAddr,
    allowed: Vec<AllowedHost>,
}

/// Why a request was refused, as the client sees it (status and `{"error": …}` body).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// HTTP/1.1 without `Host` (400): every HTTP/1.1 client must send one.
    #[error("missing Host header (HTTP/1.1 requires one)")]
    MissingHost,
    /// A `Host` that is not `host` or `host:port`, or more than one `Host` (400).
    #[error("malformed Host header {0:?} (expected HOST or HOST:PORT, once)")]
    MalformedHost(String),
    /// A host this endpoint does not answer to (421): how a DNS rebinding page shows.
    #[error(
        "host {host:?} is not one this admin endpoint answers to (it listens on {bound}): \
         use its address, or list the name in admin.allowed_hosts"
    )]
    UnknownHost { host: String, bound: SocketAddr },
    /// A state change whose `Origin` is not the endpoint's own (403): a cross-site request.
    #[error("cross-origin request refused: Origin {origin:?} is not this endpoint's own ({own})")]
    ForeignOrigin { origin: String, own: String },
    /// A state change without the request header or a JSON content type (403).
    #[error(
        "{method} {path} changes state: send the header X-Stompbox-Request: 1 (or \
         content-type: application/json), which a web page on another site cannot send"
    )]
    MissingRequestHeader { method: Method, path: String },
}

impl Guard {
    /// A guard for an endpoint listening on `bound` (the address actually bound, so port 0
    /// has become the real port).
    pub fn new(bound: SocketAddr, allowed: Vec<AllowedHost>) -> Guard {
        Guard { bound, allowed }
    }

    /// Decides whether a request may reach its handler.
    ///
    /// `Host` is checked on every request (reads leak data to a rebinding page too), except
    /// `GET`/`HEAD` of `/health` and `/metrics`: load balancers and Prometheus call those by
    /// whatever name they were configured with (HAProxy's `option httpchk` sends no `Host` at
    /// all), and they change nothing and show no message content. Methods other than `GET`,
    /// `HEAD` and `OPTIONS` also need the endpoint's own `Origin` (when one is sent) and the
    /// request header.
    pub fn check(
        &self,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let exempt = safe && matches!(uri.path(), "/health" | "/metrics");
        let host = if exempt {
            None
        } else {
            self.check_host(uri, version, headers)?
        };
        if safe {
            return Ok(());
        }
        check_origin(host.as_deref(), headers)?;
        if headers.contains_key(REQUEST_HEADER) || is_json(headers) {
            Ok(())
        } else {
            Err(Refusal::MissingRequestHeader {
                method: method.clone(),
                path: uri.path().to_string(),
            })
        }
    }

    /// The host the request was reached at, if it names one this endpoint answers to. `None`
    /// only for an HTTP/1.0 request without `Host` (no browser sends one).
    fn check_host(
        &self,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> Result<Option<String>, Refusal> {
        // An absolute-form request line (`GET http://host/…`) names the host the server must
        // use, whatever `Host` says (RFC 9112, section 3.2.2).
        let value = match uri.authority() {
            Some(authority) => authority.as_str().to_string(),
            None => match all(headers, header::HOST).as_slice() {
                [] if matches!(version, Version::HTTP_09 | Version::HTTP_10) => return Ok(None),
                [] => return Err(Refusal::MissingHost),
                [one] => one.clone(),
                several => return Err(Refusal::MalformedHost(several.join(", "))),
            },
        };
        let authority =
            Authority::parse(&value).map_err(|_| Refusal::MalformedHost(value.clone()))?;
        if self.admits(&authority) {
            Ok(Some(value))
        } else {
            Err(Refusal::UnknownHost {
                host: value,
                bound: self.bound,
            })
        }
    }

    /// The bound address; on a loopback or unspecified bind, `localhost`, `127.0.0.1` and
    /// `[::1]` at the bound port; on an unspecified bind (0.0.0.0, ::), any IP literal on any
    /// port (only a name can be rebound, and the address a client used is not known to a
    /// listener on every interface, nor is a port a NAT maps); and `admin.allowed_hosts`.
    fn admits(&self, a: &Authority) -> bool {
        let ip = self.bound.ip();
        let at_bound_port = a.port == self.bound.port();
        let loopback_name = match &a.host {
            Host::Ip(IpAddr::V4(v4)) => *v4 == Ipv4Addr::LOCALHOST,
            Host::Ip(IpAddr::V6(v6)) => *v6 == Ipv6Addr::LOCALHOST,
            Host::Name(n) => n == "localhost",
        };
        let own = match &a.host {
            Host::Ip(_) if ip.is_unspecified() => true,
            Host::Ip(host_ip) if *host_ip == ip && at_bound_port => true,
            _ => (ip.is_loopback() || ip.is_unspecified()) && loopback_name && at_bound_port,
        };
        own || self
            .allowed
            .iter()
            .any(|e| e.host == a.host && e.port.is_none_or(|p| p == a.port))
    }
}

/// Runs [`Guard::check`] before every handler; a refusal is answered at once as an
/// [`ApiError`] and logged.
pub async fn enforce(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let checked = guard.check(
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
    );
    match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            log::warn!(
                "admin: refused method={} path={} host={:?} origin={:?}: {refusal}",
                request.method(),
                request.uri().path(),
                all(request.headers(), header::HOST),
                all(request.headers(), header::ORIGIN),
            );
            ApiError::from(refusal).into_response()
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = match refusal {
            Refusal::MissingHost | Refusal::MalformedHost(_) => StatusCode::BAD_REQUEST,
            Refusal::UnknownHost { .. } => StatusCode::MISDIRECTED_REQUEST,
            Refusal::ForeignOrigin { .. } | Refusal::MissingRequestHeader { .. } => {
                StatusCode::FORBIDDEN
            }
        };
        error(status, &refusal.to_string())
    }
}

/// A state change's `Origin`, when sent, must be `http://` plus the host it was reached at.
/// `null` (sandboxed frames, some redirects) and several `Origin`s are foreign.
fn check_origin(host: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
    let origin = match all(headers, header::ORIGIN).as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        several => several.join(", "),
    };
    let same = match (host, origin.strip_prefix("http://")) {
        (Some(host), Some(rest)) => match (Authority::parse(rest), Authority::parse(host)) {
            (Ok(o), Ok(h)) => o == h,
            _ => false,
        },
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(Refusal::ForeignOrigin {
            origin,
            own: host.map_or("none: the request has no Host".into(), |h| {
                format!("http://{h}")
            }),
        })
    }
}

/// Every value of header `name`, as text (a byte that is not UTF-8 becomes U+FFFD, which no
/// host or origin contains, so it is refused).
fn all(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// `content-type: application/json` (any parameters): a browser sends it cross-site only
/// after a preflight.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(bound: &str, allowed: &[&str]) -> Guard {
        let allowed = allowed.iter().map(|a| a.parse().unwrap()).collect();
        Guard::new(bound.parse().unwrap(), allowed)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            // from_bytes lower-cases, so tests may spell names as clients do.
            let name = axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            h.append(name, v.parse().unwrap());
        }
        h
    }

    /// The refusal of `GET /api/destinations` with this `Host`, if any.
    fn get(g: &Guard, host: &str) -> Result<(), Refusal> {
        let uri = Uri::from_static("/api/destinations");
        g.check(
            &Method::GET,
            &uri,
            Version::HTTP_11,
            &headers(&[("host", host)]),
        )
    }

    fn post(g: &Guard, pairs: &[(&'static str, &str)]) -> Result<(), Refusal> {
        let uri = Uri::from_static("/api/purge?destination=/queue/a");
        g.check(&Method::POST, &uri, Version::HTTP_11, &headers(pairs))
    }

    fn unknown(r: Result<(), Refusal>) -> bool {
        matches!(r, Err(Refusal::UnknownHost { .. }))
    }

    #[test]
    fn a_loopback_bind_answers_its_address_and_the_loopback_names_at_its_port() {
        let g = guard("127.0.0.1:8161", &[]);
        for ok in [
            "127.0.0.1:8161",
            "localhost:8161",
            "LOCALHOST:8161",
            "[::1]:8161",
            "[0:0::1]:8161",
        ] {
            assert_eq!(get(&g, ok), Ok(()), "{ok}");
        }
        for refused in [
            "evil.example:8161",
            "evil.example",
            "localhost",
            "localhost:8162",
            "localhost.:8161",
            "127.0.0.2:8161",
            "10.0.0.5:8161",
            "[::2]:8161",
        ] {
            assert!(unknown(get(&g, refused)), "{refused}");
        }
        let v6 = guard("[::1]:8161", &[]);
        assert_eq!(get(&v6, "[::1]:8161"), Ok(()));
        assert_eq!(get(&v6, "localhost:8161"), Ok(()));
        assert!(unknown(get(&v6, "evil.example:8161")));
    }

    #[test]
    fn an_unspecified_bind_answers_any_ip_literal_but_only_listed_names() {
        for bound in ["0.0.0.0:8161", "[::]:8161"] {
            let g = guard(bound, &["broker-a"]);
            for ok in [
                "10.0.0.5:8161",
                "10.0.0.5:9000",
                "10.0.0.5",
                "[fe80::1]:8161",
                "localhost:8161",
                "broker-a:8161",
                "Broker-A",
            ] {
                assert_eq!(get(&g, ok), Ok(()), "{bound} {ok}");
            }
            for refused in ["broker-b:8161", "evil.example:8161", "localhost:9000"] {
                assert!(unknown(get(&g, refused)), "{bound} {refused}");
            }
        }
    }

    #[test]
    fn a_specific_bind_answers_only_its_address_and_the_list() {
        let g = guard("10.0.0.5:8161", &["admin.internal:443", "[fd00::1]"]);
        assert_eq!(get(&g, "10.0.0.5:8161"), Ok(()));
        assert_eq!(get(&g, "admin.internal:443"), Ok(()));
        assert_eq!(get(&g, "[fd00::1]:1"), Ok(()));
        for refused in [
            "10.0.0.5:8162",
            "10.0.0.6:8161",
            "localhost:8161",
            "127.0.0.1:8161",
            "admin.internal",
            "admin.internal:8161",
        ] {
            assert!(unknown(get(&g, refused)), "{refused}");
        }
        // No port means the http default, 80.
        let g = guard("10.0.0.5:80", &[]);
        assert_eq!(get(&g, "10.0.0.5"), Ok(()));
    }

    #[test]
    fn host_is_required_on_http_1_1_and_must_be_well_formed() {
        let g = guard("127.0.0.1:8161", &[]);
        let uri = Uri::from_static("/api/destinations");
        let none = HeaderMap::new();
        assert_eq!(
            g.check(&Method::GET, &uri, Version::HTTP_11, &none),
            Err(Refusal::MissingHost)
        );
        assert_eq!(g.check(&Method::GET, &uri, Version::HTTP_10, &none), Ok(()));
        for bad in [
            "",
            ":8161",
            "a b",
            "user@localhost:8161",
            "localhost:x",
            "localhost:70000",
        ] {
            assert!(
                matches!(get(&g, bad), Err(Refusal::MalformedHost(_))),
                "{bad:?}"
            );
        }
        let two = headers(&[("host", "localhost:8161"), ("host", "evil.example")]);
        assert!(matches!(
            g.check(&Method::GET, &uri, Version::HTTP_11, &two),
            Err(Refusal::MalformedHost(_))
        ));
        // An absolute-form request line's authority is the host, whatever Host says.
        let absolute = Uri::from_static("http://evil.example:8161/api/destinations");
        let host = headers(&[("host", "127.0.0.1:8161")]);
        assert!(unknown(g.check(
            &Method::GET,
            &absolute,
            Version::HTTP_11,
            &host
        )));
    }

    #[test]
    fn health_and_metrics_reads_skip_the_host_check() {
        let g = guard("127.0.0.1:8161", &[]);
        let evil = headers(&[("host", "evil.example")]);
        for path in ["/health", "/metrics"] {
            let uri = Uri::from_static(path);
            for method in [Method::GET, Method::HEAD] {
                assert_eq!(g.check(&method, &uri, Version::HTTP_11, &evil), Ok(()));
                let none = HeaderMap::new();
                assert_eq!(g.check(&method, &uri, Version::HTTP_11, &none), Ok(()));
            }
            assert!(unknown(g.check(
                &Method::POST,
                &uri,
                Version::HTTP_11,
                &evil
            )));
        }
        let console = Uri::from_static("/");
        assert!(unknown(g.check(
            &Method::GET,
            &console,
            Version::HTTP_11,
            &evil
        )));
    }

    #[test]
    fn a_state_change_needs_the_request_header_or_json() {
        let g = guard("127.0.0.1:8161", &[]);
        let host = ("host", "127.0.0.1:8161");
        for ok in [
            vec![host, ("x-stompbox-request", "1")],
            vec![host, ("X-Stompbox-Request", "")],
            vec![host, ("content-type", "application/json")],
            vec![host, ("content-type", "Application/JSON ; charset=utf-8")],
        ] {
            assert_eq!(post(&g, &ok), Ok(()), "{ok:?}");
        }
        for refused in [
            vec![host],
            vec![host, ("content-type", "text/plain")],
            vec![host, ("content-type", "application/x-www-form-urlencoded")],
            vec![host, ("content-type", "multipart/form-data; boundary=x")],
            vec![host, ("content-type", "application/jsonx")],
            vec![host, ("content-type", "text/plain; x=application/json")],
        ] {
            assert!(
                matches!(
                    post(&g, &refused),
                    Err(Refusal::MissingRequestHeader { .. })
                ),
                "{refused:?}"
            );
        }
        for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::TRACE] {
            let uri = Uri::from_static("/api/purge");
            let r = g.check(&method, &uri, Version::HTTP_11, &headers(&[host]));
            assert!(
                matches!(r, Err(Refusal::MissingRequestHeader { .. })),
                "{method}"
            );
        }
        let options = g.check(
            &Method::OPTIONS,
            &Uri::from_static("/api/purge"),
            Version::HTTP_11,
            &headers(&[host]),
        );
        assert_eq!(options, Ok(()));
    }

    #[test]
    fn a_state_change_from_a_foreign_origin_is_refused() {
        let g = guard("127.0.0.1:8161", &["broker-a"]);
        let own = [("x-stompbox-request", "1"), ("host", "127.0.0.1:8161")];
        let with = |origin: &'static str| {
            let mut h = own.to_vec();
            h.push(("origin", origin));
            post(&g, &h)
        };
        assert_eq!(with("http://127.0.0.1:8161"), Ok(()));
        for foreign in [
            "null",
            "http://evil.example",
            "https://127.0.0.1:8161",
            "http://127.0.0.1:8162",
            "http://127.0.0.1",
            "http://localhost:8161",
            "http://127.0.0.1:8161.evil.example",
            "http://127.0.0.1:8161/",
            "",
        ] {
            assert!(
                matches!(with(foreign), Err(Refusal::ForeignOrigin { .. })),
                "{foreign:?}"
            );
        }
        // The origin follows the host the request was reached at, in any spelling of it.
        let reached = |host: &'static str, origin: &'static str| {
            post(
                &g,
                &[
                    ("x-stompbox-request", "1"),
                    ("host", host),
                    ("origin", origin),
                ],
            )
        };
        assert_eq!(reached("localhost:8161", "http://LocalHost:8161"), Ok(()));
        assert_eq!(reached("broker-a", "http://broker-a"), Ok(()));
        assert_eq!(reached("broker-a:80", "http://broker-a"), Ok(()));
        // Two Origins, or an Origin without a Host (HTTP/1.0), prove nothing.
        let two = [
            ("x-stompbox-request", "1"),
            ("host", "127.0.0.1:8161"),
            ("origin", "http://127.0.0.1:8161"),
            ("origin", "http://127.0.0.1:8161"),
        ];
        assert!(matches!(post(&g, &two), Err(Refusal::ForeignOrigin { .. })));
        let uri = Uri::from_static("/api/purge");
        let no_host = headers(&[("x-stompbox-request", "1"), ("origin", "http://x")]);
        assert!(matches!(
            g.check(&Method::POST, &uri, Version::HTTP_10, &no_host),
            Err(Refusal::ForeignOrigin { .. })
        ));
    }
}
