//! STOMP frames as the tests see them: built with headers exactly as they go on the wire, read
//! with headers decoded for the connection's version, and a parser that takes one frame off the
//! front of a buffer. Used by [`super::client`]; nothing here does I/O.

use std::fmt;

/// A STOMP frame. Built by tests with header names and values written exactly as they go on
/// the wire (no escaping is added: [`escape`] is there for the tests that want it); read from
/// the broker with them decoded per the connection's version (1.1: `\n \c \\`, 1.2: also `\r`;
/// never for CONNECTED or 1.0).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    /// A frame of `command` without headers or body.
    pub fn new(command: &str) -> Frame {
        Frame {
            command: command.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends a header (wire text; repeated names are kept, in order).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends each of `headers`.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Frame {
        for (k, v) in headers {
            self.headers.push((k.to_string(), v.to_string()));
        }
        self
    }

    /// Sets the body (bytes as given; no `content-length` is added).
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Frame {
        self.body = body.as_ref().to_vec();
        self
    }

    /// The first value of header `name` (the one the spec says receivers use).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in wire order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `name`, or a panic that shows the whole frame.
    #[track_caller]
    pub fn must(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("{} frame has no `{name}` header: {self:?}", self.command))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The wire form: command, headers as given, blank line, body, NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.body.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire form to `out` (for pipelining many frames in one write).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.command)?;
        for (k, v) in &self.headers {
            write!(f, " {k}:{v:?}")?;
        }
        let body = String::from_utf8_lossy(&self.body);
        if body.chars().count() > 200 {
            let short: String = body.chars().take(200).collect();
            write!(f, " body({} bytes)={short:?}...", self.body.len())
        } else {
            write!(f, " body={body:?}")
        }
    }
}

/// A SEND frame of `body` to `dest` with `extra` headers.
pub fn send_frame(dest: &str, body: &str, extra: &[(&str, &str)]) -> Frame {
    Frame::new("SEND")
        .header("destination", dest)
        .headers(extra)
        .body(body)
}

/// The CONNECT frame a client at `version` sends: `accept-version`, `host` and no heart-beats
/// from 1.1 on (1.0 has no such headers), then `extra`.
pub fn connect_frame(version: &str, extra: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new("CONNECT");
    if version != "1.0" {
        f = f
            .header("accept-version", version)
            .header("host", "localhost")
            .header("heart-beat", "0,0");
    }
    f.headers(extra)
}

/// The bodies of `messages`, as text.
pub fn bodies(messages: &[Frame]) -> Vec<String> {
    messages.iter().map(Frame::text).collect()
}

/// Escapes a header name or value for `version` (what a client must put on the wire).
pub fn escape(text: &str, version: &str) -> String {
    if version == "1.0" {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ':' => out.push_str("\\c"),
            '\n' => out.push_str("\\n"),
            '\r' if version == "1.2" => out.push_str("\\r"),
            other => out.push(other),
        }
    }
    out
}

fn unescape(raw: &str, version: &str) -> Result<String, String> {
    if version == "1.0" || !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('c') => out.push(':'),
            Some('n') => out.push('\n'),
            Some('r') if version == "1.2" => out.push('\r'),
            other => {
                return Err(format!(
                    "undefined escape \\{} in {raw:?} (version {version})",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    Ok(out)
}

/// Result of trying to take one frame off the front of a buffer.
pub(crate) enum Parsed {
    /// Need more bytes. `eols` heart-beat EOLs at the front were consumed already.
    Incomplete { eols: usize, consumed: usize },
    /// A whole frame; `consumed` covers the EOLs behind its NUL that were buffered with it,
    /// which end the frame (`NULL *(EOL)` in the spec's grammar) and are not heart-beats.
    Frame {
        frame: Frame,
        eols: usize,
        consumed: usize,
    },
}

/// Parses one frame from `buf` (leading EOLs are skipped and counted as heart-beats; EOLs right
/// behind the NUL, as far as buffered, end the frame). `version` decides header decoding. A
/// frame the broker should never have sent is an `Err` with the reason.
pub(crate) fn parse(buf: &[u8], version: &str) -> Result<Parsed, String> {
    let mut i = 0;
    let mut eols = 0;
    loop {
        match buf.get(i) {
            Some(b'\n') => {
                i += 1;
                eols += 1;
            }
            Some(b'\r') => match buf.get(i + 1) {
                Some(b'\n') => {
                    i += 2;
                    eols += 1;
                }
                None => return Ok(Parsed::Incomplete { eols, consumed: i }),
                Some(_) => break,
            },
            None => return Ok(Parsed::Incomplete { eols, consumed: i }),
            Some(_) => break,
        }
    }
    let start = i;
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut pos = start;
    // The header block ends at the first empty line (lines end in LF or CRLF).
    let body_start = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return Ok(Parsed::Incomplete { eols, consumed: i });
        };
        let mut line = &buf[pos..pos + nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        if line.is_empty() {
            break pos;
        }
        lines.push(line);
    };
    let command = String::from_utf8(lines[0].to_vec())
        .map_err(|_| format!("command is not UTF-8: {:?}", lines[0]))?;
    let decode = command != "CONNECTED";
    let mut headers = Vec::with_capacity(lines.len() - 1);
    let mut content_length = None;
    for line in &lines[1..] {
        let line =
            std::str::from_utf8(line).map_err(|_| format!("header is not UTF-8: {line:?}"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without ':' in {command}: {line:?}"))?;
        let (name, value) = if decode {
            (unescape(name, version)?, unescape(value, version)?)
        } else {
            (name.to_string(), value.to_string())
        };
        if name == "content-length" && content_length.is_none() {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad content-length {value:?} in {command}"))?,
            );
        }
        headers.push((name, value));
    }
    let (body, end) = match content_length {
        Some(n) => {
            if buf.len() < body_start + n + 1 {
                return Ok(Parsed::Incomplete { eols, consumed: i });
            }
            if buf[body_start + n] != 0 {
                return Err(format!(
                    "{command} body of content-length {n} is not followed by NUL: {:?}",
                    String::from_utf8_lossy(&buf[start..(body_start + n + 1).min(buf.len())])
                ));
            }
            (buf[body_start..body_start + n].to_vec(), body_start + n + 1)
        }
        None => match buf[body_start..].iter().position(|&b| b == 0) {
            None => return Ok(Parsed::Incomplete { eols, consumed: i }),
            Some(n) => (buf[body_start..body_start + n].to_vec(), body_start + n + 1),
        },
    };
    // `frame = command EOL *(header EOL) EOL *OCTET NULL *(EOL)`: EOLs sent with the frame,
    // right behind its NUL, belong to it (ActiveMQ ends every frame with NUL and LF). One that
    // arrives in a later read cannot be told from a heart-beat, and is counted as one.
    let mut end = end;
    loop {
        match (buf.get(end), buf.get(end + 1)) {
            (Some(b'\n'), _) => end += 1,
            (Some(b'\r'), Some(b'\n')) => end += 2,
            _ => break,
        }
    }
    Ok(Parsed::Frame {
        frame: Frame {
            command,
            headers,
            body,
        },
        eols,
        consumed: end,
    })
}
