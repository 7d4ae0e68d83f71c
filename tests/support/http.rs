//! The admin endpoint over raw HTTP/1.1 (one request per connection, `Connection: close`) and
//! its Prometheus text: what `/health`, `/api/...` and `/metrics` answer.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::WAIT;

/// One HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body as JSON; fails the test if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// The header our own callers (console, docs' curl examples) add to every state change.
pub const OWN_HEADER: (&str, &str) = ("X-Stompbox-Request", "1");

/// `GET path`; fails the test if the endpoint does not answer within [`WAIT`].
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path)
}

/// `POST path` as the in-repo callers send it (see [`request`]).
#[track_caller]
pub fn post(addr: SocketAddr, path: &str) -> Response {
    request(addr, "POST", path)
}

/// One request as the in-repo callers send it: `Host` is the admin address, and a state
/// change carries [`OWN_HEADER`].
#[track_caller]
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let host = addr.to_string();
    let mut headers = vec![("Host", host.as_str())];
    if method != "GET" {
        headers.push(OWN_HEADER);
    }
    request_with(addr, method, path, &headers, "")
}

/// One request with exactly `headers` (no `Host` unless given) and `body`; fails the test if
/// the endpoint does not answer within [`WAIT`].
#[track_caller]
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    try_request(addr, method, path, headers, body, WAIT)
        .unwrap_or_else(|e| panic!("{method} {path} on admin {addr}: {e}"))
}

/// `GET path` with `Host` set, each of connecting and reading within `timeout`; None if the
/// endpoint does not answer (a standby being started, a stopped process).
pub fn try_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<Response> {
    let host = addr.to_string();
    try_request(addr, "GET", path, &[("Host", &host)], "", timeout).ok()
}

/// One HTTP/1.1 request with exactly `headers` and `body` (see [`try_exchange`]).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> io::Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    try_exchange(addr, &head, body, timeout)
}

/// Sends `head` (request line and headers, any HTTP version) plus `Connection: close`,
/// `Content-Length` and `body`; fails the test if the endpoint does not answer within
/// [`WAIT`].
#[track_caller]
pub fn exchange(addr: SocketAddr, head: &str, body: &str) -> Response {
    let what = head.lines().next().unwrap_or_default();
    try_exchange(addr, head, body, WAIT).unwrap_or_else(|e| panic!("{what} on admin {addr}: {e}"))
}

/// Like [`exchange`] on a connection of its own, each of connecting and reading within
/// `timeout`; reads the response to the end (chunked bodies are decoded).
pub fn try_exchange(
    addr: SocketAddr,
    head: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad(format!("no header end in {raw:?}")))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("a bad chunk size".into()))?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).map_err(|_| bad("a body that is not UTF-8".into()))?,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())?;
        if size == 0 {
            break;
        }
        out.extend_from_slice(rest.get(eol + 2..eol + 2 + size)?);
        rest = rest.get(eol + 2 + size + 2..)?;
    }
    Some(out)
}

// --- Prometheus text ----------------------------------------------------------------------------

/// One `/metrics` scrape.
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    /// `GET /metrics`, which must answer 200 with a `text/plain` body.
    #[track_caller]
    pub fn scrape(admin: SocketAddr) -> Metrics {
        let r = get(admin, "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.content_type()
                .is_some_and(|t| t.starts_with("text/plain")),
            "{:?}",
            r.content_type()
        );
        Metrics { text: r.body }
    }

    /// True when the scrape declares `family` (`# TYPE family …`).
    pub fn has_family(&self, family: &str) -> bool {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .any(|l| l.split_whitespace().next() == Some(family))
    }

    /// The value of the sample `name` whose labels include `labels` (the first one).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(sample)
            .find(|(n, ls, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| ls.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
    }
}

/// `name{k="v",…} value` → (name, labels, value). Label values here hold no `"` or `,`.
fn sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    Some((name.to_string(), labels, value))
}
