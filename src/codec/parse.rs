//! Streaming frame decoder.
//!
//! [`Decoder::decode`] takes what has been read so far and returns a whole frame, or `None`
//! when more bytes are needed. Partial input is normal, not an error. The decoder remembers how
//! far it has scanned, so a large body arriving in many reads is searched once, not from its
//! start on every read. Limits are checked as bytes arrive, before anything is allocated for
//! the frame: a breach is a [`ParseError`], which the session turns into an ERROR frame.
//!
//! The frame boundary is found with `memchr`; the header block, once complete, is parsed with
//! nom (`command EOL *(header EOL) EOL`).

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;
use nom::bytes::complete::tag;
use nom::combinator::{opt, recognize};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::escape::{unescape, EscapeError, Escaping};
use super::{Command, Frame, Headers, Version};
use crate::limits::{Limits, MAX_COMMAND_LINE_BYTES};

/// Why a byte stream is not valid STOMP. Every variant is fatal for the connection: the session
/// answers with an ERROR frame whose `message` is this error's text, then closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The command line is not one of the STOMP commands.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// The command line is longer than any command.
    #[error("command line exceeds {MAX_COMMAND_LINE_BYTES} bytes")]
    CommandTooLong,
    /// A header line has no colon, or an empty name.
    #[error("malformed header line {0:?}")]
    MalformedHeader(String),
    /// A header uses an escape the negotiated version does not define.
    #[error("undefined escape sequence {0} in header {1:?}")]
    UndefinedEscape(String, String),
    /// Header bytes are not UTF-8.
    #[error("header is not valid UTF-8")]
    NotUtf8,
    /// A header name or value holds a NUL octet. NUL ends a frame, so the header could not be
    /// relayed to a client that frames on NUL without cutting its frame short.
    #[error("header {0:?} contains a NUL octet")]
    NulInHeader(String),
    /// `content-length` is not a non-negative integer.
    #[error("invalid content-length {0:?}")]
    InvalidContentLength(String),
    /// The byte after a `content-length` body is not NUL.
    #[error("frame body of content-length {0} is not followed by a NUL octet")]
    MissingNul(usize),
    /// A frame that must not carry a body (anything but SEND, MESSAGE, ERROR) has one.
    #[error("{0} frame must not have a body")]
    UnexpectedBody(Command),
    /// Too many header lines.
    #[error("frame exceeds max_headers ({0} > {1})")]
    TooManyHeaders(usize, usize),
    /// One header line is too long.
    #[error("header line exceeds max_header_line_bytes ({0} > {1})")]
    HeaderLineTooLong(usize, usize),
    /// The body is too large.
    #[error("frame body exceeds max_body_bytes ({0} > {1})")]
    BodyTooLarge(usize, usize),
    /// The whole frame is too large.
    #[error("frame exceeds max_frame_bytes ({0} > {1})")]
    FrameTooLarge(usize, usize),
}

/// Where the decoder is within the current frame.
#[derive(Debug)]
enum State {
    /// Looking for the blank line that ends the header block; `scanned` bytes (after any
    /// leading EOLs) hold no complete header block yet. `lines` counts the LFs seen so far.
    Head {
        scanned: usize,
        lines: usize,
        line_start: usize,
    },
    /// Headers parsed; waiting for the body. `scanned` is how far the body has been searched
    /// for its NUL (bodies without `content-length`).
    Body {
        command: Command,
        headers: Headers,
        head_len: usize,
        content_length: Option<usize>,
        scanned: usize,
    },
}

/// Bodies at least this large that end the read buffer are split off it, not copied (see
/// `Decoder::take_body`): past two read chunks, where the reader sizes its buffer to the frame.
const SPLIT_BODY_BYTES: usize = 128 * 1024;

/// A streaming STOMP decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    state: State,
    /// The `receipt` header of the frame being decoded, once its headers are parsed, so an
    /// ERROR about its body can carry `receipt-id`. Cleared when the frame is returned: an
    /// error in a later frame must not name an earlier frame's receipt.
    receipt: Option<String>,
}

impl Decoder {
    /// A decoder that applies `limits`. Until [`Decoder::set_version`] is called, frames are
    /// decoded with 1.0 rules (only CONNECT/STOMP are legal then, and those are never escaped).
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            version: Version::V1_0,
            state: State::Head {
                scanned: 0,
                lines: 0,
                line_start: 0,
            },
            receipt: None,
        }
    }

    /// Switches escaping rules once the session has negotiated its version.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The `receipt` of the frame being decoded (or that failed), if its headers were read.
    pub fn receipt(&self) -> Option<&str> {
        self.receipt.as_deref()
    }

    /// The version whose rules the decoder applies.
    pub fn version(&self) -> Version {
        self.version
    }

    /// How many more bytes `buf` needs to hold the frame being decoded, when its headers are
    /// parsed and announced its `content-length` (None otherwise, or when it is all there).
    /// Lets a reader grow its buffer to exactly one frame instead of reading ahead into the
    /// next one.
    pub fn missing(&self, buf: &BytesMut) -> Option<usize> {
        match self.state {
            State::Body {
                head_len,
                content_length: Some(len),
                ..
            } => Some(head_len + len + 1)
                .filter(|&total| total > buf.len())
                .map(|total| total - buf.len()),
            _ => None,
        }
    }

    /// True while a frame whose size is not known yet is being read: its header block (until
    /// its `content-length` is parsed), or a body without `content-length`.
    pub fn length_unknown(&self) -> bool {
        match self.state {
            State::Head { scanned, .. } => scanned > 0,
            State::Body { content_length, .. } => content_length.is_none(),
        }
    }

    /// Removes and returns the next whole frame from `buf`, or `Ok(None)` if `buf` does not
    /// hold one yet. Heart-beat EOLs between frames are consumed silently.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ParseError> {
        if let State::Head { scanned: 0, .. } = self.state {
            skip_eols(buf);
            // A heart-beat CRLF split between reads: wait for its LF before scanning, or
            // the CR would start an empty command line.
            if buf[..] == b"\r"[..] {
                return Ok(None);
            }
        }
        if let State::Head { .. } = self.state {
            match self.scan_head(buf)? {
                None => return Ok(None),
                Some(head_len) => self.parse_head(&buf[..head_len], head_len)?,
            }
        }
        self.take_body(buf)
    }

    /// Looks for the end of the header block, checking line limits as lines arrive.
    /// Returns the header block's length (up to and including its blank line).
    fn scan_head(&mut self, buf: &BytesMut) -> Result<Option<usize>, ParseError> {
        let State::Head {
            scanned,
            lines,
            line_start,
        } = &mut self.state
        else {
            unreachable!("scan_head is only called in State::Head");
        };
        let max_line = self.limits.max_header_line_bytes;
        while let Some(offset) = memchr(b'\n', &buf[*scanned..]) {
            let lf = *scanned + offset;
            let line = &buf[*line_start..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            *scanned = lf + 1;
            if line.is_empty() && *lines > 0 {
                if lf + 1 > self.limits.max_frame_bytes {
                    return Err(ParseError::FrameTooLarge(
                        lf + 1,
                        self.limits.max_frame_bytes,
                    ));
                }
                return Ok(Some(lf + 1));
            }
            if *lines == 0 && line.len() > MAX_COMMAND_LINE_BYTES {
                return Err(ParseError::CommandTooLong);
            }
            if *lines > 0 && line.len() > max_line {
                return Err(ParseError::HeaderLineTooLong(line.len(), max_line));
            }
            *lines += 1;
            *line_start = lf + 1;
            if *lines > self.limits.max_headers + 1 {
                return Err(ParseError::TooManyHeaders(
                    *lines - 1,
                    self.limits.max_headers,
                ));
            }
        }
        *scanned = buf.len();
        let partial = buf.len() - *line_start;
        if *lines == 0 && partial > MAX_COMMAND_LINE_BYTES {
            return Err(ParseError::CommandTooLong);
        }
        if *lines > 0 && partial > max_line + 1 {
            return Err(ParseError::HeaderLineTooLong(partial, max_line));
        }
        if buf.len() > self.limits.max_frame_bytes {
            return Err(ParseError::FrameTooLarge(
                buf.len(),
                self.limits.max_frame_bytes,
            ));
        }
        Ok(None)
    }

    /// Parses a complete header block and moves to [`State::Body`].
    fn parse_head(&mut self, head: &[u8], head_len: usize) -> Result<(), ParseError> {
        let (command_line, header_lines) = split_head(head);
        let command_line = trim_end_spaces(command_line);
        let command = Command::parse(command_line);
        // The receipt is read first, so that an ERROR about anything in this frame (an
        // unknown command, a bad header) can carry its `receipt-id`.
        let escaping = Escaping::for_frame(self.version, command.unwrap_or(Command::Send));
        self.receipt = header_lines
            .iter()
            .find(|(name, _)| *name == b"receipt")
            .and_then(|(_, value)| decode_header((*value)?, escaping, b"receipt").ok());
        let command = command.ok_or_else(|| {
            ParseError::UnknownCommand(String::from_utf8_lossy(command_line).into_owned())
        })?;
        // The block is checked for UTF-8 and NULs once, not header by header: then a name or
        // value without a backslash is its own text (a dozen headers checked one by one were
        // most of the cost of decoding a small frame). Anything irregular takes the careful
        // path, header by header, which finds and names the fault.
        let clean = match memchr(0, head) {
            None => std::str::from_utf8(head).ok(),
            Some(_) => None,
        };
        let escapes = escaping != Escaping::None && memchr(b'\\', head).is_some();
        let piece = |raw: &[u8], name: &[u8]| match clean {
            Some(text) => clean_header(text, head, raw, escapes, escaping, name),
            None => decode_header(raw, escaping, name),
        };
        let mut headers = Headers(Vec::with_capacity(header_lines.len()));
        for (name, value) in header_lines {
            let name = piece(name, name)?;
            if name.is_empty() {
                return Err(ParseError::MalformedHeader(String::new()));
            }
            let Some(value) = value else {
                return Err(ParseError::MalformedHeader(name));
            };
            let value = piece(value, name.as_bytes())?;
            headers.push(name, value);
        }
        let content_length = match headers.get("content-length") {
            None => None,
            Some(v) => Some(parse_content_length(v)?),
        };
        if let Some(len) = content_length {
            if len > self.limits.max_body_bytes {
                return Err(ParseError::BodyTooLarge(len, self.limits.max_body_bytes));
            }
            if head_len + len + 1 > self.limits.max_frame_bytes {
                let total = head_len + len + 1;
                return Err(ParseError::FrameTooLarge(
                    total,
                    self.limits.max_frame_bytes,
                ));
            }
            if len > 0 && !command.may_have_body() {
                return Err(ParseError::UnexpectedBody(command));
            }
        }
        self.state = State::Body {
            command,
            headers,
            head_len,
            content_length,
            scanned: 0,
        };
        Ok(())
    }

    /// Waits for the body and its NUL, then splits the frame off `buf`.
    fn take_body(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ParseError> {
        let State::Body {
            head_len,
            content_length,
            scanned,
            command,
            ..
        } = &mut self.state
        else {
            unreachable!("take_body is only called in State::Body");
        };
        let head_len = *head_len;
        let body_len = match *content_length {
            Some(len) => {
                if buf.len() < head_len + len + 1 {
                    return Ok(None);
                }
                if buf[head_len + len] != 0 {
                    return Err(ParseError::MissingNul(len));
                }
                len
            }
            None => {
                let found = memchr(0, &buf[head_len + *scanned..]);
                let len = match found {
                    Some(offset) => *scanned + offset,
                    None => buf.len() - head_len,
                };
                // However the body arrived (one read or many), the same limits apply.
                if len > self.limits.max_body_bytes {
                    return Err(ParseError::BodyTooLarge(len, self.limits.max_body_bytes));
                }
                let total = head_len + len + usize::from(found.is_some());
                if total > self.limits.max_frame_bytes {
                    return Err(ParseError::FrameTooLarge(
                        total,
                        self.limits.max_frame_bytes,
                    ));
                }
                match found {
                    Some(_) => len,
                    None => {
                        *scanned = len;
                        return Ok(None);
                    }
                }
            }
        };
        // A frame that may not have a body is forgiven EOLs there (stomp clients that write
        // `CONNECT…\n\n\n\0` exist, and ActiveMQ and RabbitMQ accept them); they are dropped.
        let mut kept = body_len;
        if body_len > 0 && !command.may_have_body() {
            let blank = buf[head_len..head_len + body_len]
                .iter()
                .all(|b| matches!(b, b'\n' | b'\r'));
            if !blank {
                return Err(ParseError::UnexpectedBody(*command));
            }
            kept = 0;
        }
        let State::Body {
            command, headers, ..
        } = std::mem::replace(
            &mut self.state,
            State::Head {
                scanned: 0,
                lines: 0,
                line_start: 0,
            },
        )
        else {
            unreachable!("state was Body above");
        };
        self.receipt = None;
        // The body is copied out rather than split off the read buffer: a slice would keep
        // the whole buffer allocation alive as long as the message lives (a 10-byte message
        // queued for a day pinning a 64 KiB read chunk, a stored message dropped from memory
        // still pinned by the bytes read after it), memory the limits never see. Copying
        // costs one memcpy of the body, once. A large body that ends a buffer hardly larger
        // than its frame is split off instead (the reader sizes the buffer to a frame of
        // known length): the slice pins only its header bytes and that slack, and a 100 MiB
        // body is not held twice while it is copied.
        let frame_len = head_len + body_len + 1;
        let tight = buf.capacity() <= frame_len + crate::limits::READ_CHUNK_BYTES;
        let body = if kept >= SPLIT_BODY_BYTES && buf.len() == frame_len && tight {
            let mut frame = buf.split_to(frame_len);
            frame.advance(head_len);
            frame.truncate(kept);
            frame.freeze()
        } else {
            let body = Bytes::copy_from_slice(&buf[head_len..head_len + kept]);
            buf.advance(frame_len);
            body
        };
        Ok(Some(Frame {
            command,
            headers,
            body,
        }))
    }
}

/// Drops heart-beat EOLs (`\n` or `\r\n`) before a frame, and stray NULs: a client that
/// ends a frame with two NULs is sloppy, not hostile, and ActiveMQ and RabbitMQ accept it.
/// A lone trailing `\r` is kept until its `\n` arrives.
fn skip_eols(buf: &mut BytesMut) {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\n' | 0, ..] => n += 1,
            [b'\r', b'\n', ..] => n += 2,
            _ => break,
        }
    }
    buf.advance(n);
}

/// One line without its EOL (`\n` or `\r\n`). The LF is found with `memchr` (a header block
/// is mostly short lines; a byte-at-a-time `take_till` showed in profiles).
fn line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let Some(lf) = memchr(b'\n', input) else {
        return Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::TakeTill1,
        )));
    };
    let l = &input[..lf];
    Ok((&input[lf + 1..], l.strip_suffix(b"\r").unwrap_or(l)))
}

/// A blank line: the end of the header block.
fn blank_line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize(preceded(opt(tag(&b"\r"[..])), tag(&b"\n"[..]))).parse(input)
}

/// A header line split at its first colon, still escaped; a line without a colon is a name
/// without a value, which `parse_head` rejects.
type RawHeader<'a> = (&'a [u8], Option<&'a [u8]>);

/// Splits a complete header block into its command line and `(name, raw value)` lines.
fn split_head(head: &[u8]) -> (&[u8], Vec<RawHeader<'_>>) {
    // The block was delimited by scan_head, so every line ends in LF and the last is blank:
    // these parsers cannot fail on it.
    let (mut rest, command_line) = line(head).unwrap_or((&[][..], head));
    let mut headers = Vec::new();
    while blank_line(rest).is_err() {
        let Ok((next, l)) = line(rest) else { break };
        rest = next;
        match memchr(b':', l) {
            Some(colon) => headers.push((&l[..colon], Some(&l[colon + 1..]))),
            None => headers.push((l, None)),
        }
    }
    (command_line, headers)
}

/// [`decode_header`] for `raw`, a piece of the header block `head` already known to be the
/// UTF-8 `text` without NULs: a piece without a backslash (none when `escapes` is false) is
/// its own text, taken from `text` without checking it again.
fn clean_header(
    text: &str,
    head: &[u8],
    raw: &[u8],
    escapes: bool,
    escaping: Escaping,
    name: &[u8],
) -> Result<String, ParseError> {
    if escapes && memchr(b'\\', raw).is_some() {
        return decode_header(raw, escaping, name);
    }
    // Where `raw` lies in `head`: it is a slice of it, cut at ASCII bytes, so the same range
    // of `text` is on character boundaries (checked anyway: a piece from elsewhere would take
    // the careful path).
    let start = (raw.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    match text.get(start..start.wrapping_add(raw.len())) {
        Some(piece) if start <= head.len() => Ok(piece.to_owned()),
        _ => decode_header(raw, escaping, name),
    }
}

fn decode_header(raw: &[u8], escaping: Escaping, name: &[u8]) -> Result<String, ParseError> {
    if memchr(0, raw).is_some() {
        return Err(ParseError::NulInHeader(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    unescape(raw, escaping)
        .map(|s| s.into_owned())
        .map_err(|e| match e {
            EscapeError::NotUtf8 => ParseError::NotUtf8,
            EscapeError::Undefined(seq) => {
                ParseError::UndefinedEscape(seq, String::from_utf8_lossy(name).into_owned())
            }
        })
}

fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    let trimmed = v.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::InvalidContentLength(v.to_string()));
    }
    trimmed
        .parse()
        .map_err(|_| ParseError::InvalidContentLength(v.to_string()))
}

fn trim_end_spaces(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> Decoder {
        let mut d = Decoder::new(Limits::default());
        d.set_version(Version::V1_2);
        d
    }

    fn decode_all(d: &mut Decoder, input: &[u8]) -> Result<Vec<Frame>, ParseError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn missing_counts_what_a_frame_of_known_length_still_needs() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:10\n\nabc"[..]);
        // Headers not parsed yet: unknown.
        assert_eq!(d.missing(&buf), None);
        assert!(d.decode(&mut buf).unwrap().is_none());
        // 7 body bytes and the NUL to go.
        assert_eq!(d.missing(&buf), Some(8));
        buf.extend_from_slice(b"defghij\0SEND");
        assert_eq!(d.missing(&buf), None);
        let f = d.decode(&mut buf).unwrap().expect("a frame");
        assert_eq!(&f.body[..], b"abcdefghij");
        assert_eq!(&buf[..], b"SEND");
        // Without content-length the body's length is not known until its NUL.
        let mut buf = BytesMut::from(&b"SEND\na:b\n\nabc"[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert_eq!(d.missing(&buf), None);
    }

    #[test]
    fn a_large_body_is_the_same_whether_split_off_or_copied() {
        let mut d = Decoder::new(Limits::default());
        let body: Vec<u8> = (0..SPLIT_BODY_BYTES + 7).map(|i| (i % 251) as u8).collect();
        let mut frame = format!("SEND\ncontent-length:{}\n\n", body.len()).into_bytes();
        frame.extend_from_slice(&body);
        frame.push(0);
        // The frame ends the buffer: split off.
        let mut buf = BytesMut::from(&frame[..]);
        let f = d.decode(&mut buf).unwrap().expect("a frame");
        assert_eq!(&f.body[..], &body[..]);
        assert!(buf.is_empty());
        // The next frame's first bytes follow it: copied, and they stay.
        let mut buf = BytesMut::from(&frame[..]);
        buf.extend_from_slice(b"SEN");
        let f = d.decode(&mut buf).unwrap().expect("a frame");
        assert_eq!(&f.body[..], &body[..]);
        assert_eq!(&buf[..], b"SEN");
    }

    #[test]
    fn simple_frame_lf_and_crlf() {
        let frames = decode_all(
            &mut decoder(),
            b"SEND\ndestination:/queue/a\n\nhi\0\r\n\r\nSEND\r\na:b\r\n\r\n\0",
        )
        .unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].get("destination"), Some("/queue/a"));
        assert_eq!(&frames[0].body[..], b"hi");
        assert_eq!(frames[1].get("a"), Some("b"));
    }

    #[test]
    fn byte_by_byte_is_the_same() {
        let input = b"\n\nSEND\ndestination:/queue/a\ncontent-length:3\n\na\0b\0\n";
        let mut d = decoder();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].body[..], b"a\0b");
    }

    #[test]
    fn stray_nuls_between_frames_are_skipped_like_heart_beats() {
        let frames = decode_all(
            &mut decoder(),
            b"\0SEND\na:1\n\n\0\0\0\nSEND\na:2\n\nx\0\r\n\0",
        )
        .unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].get("a"), Some("1"));
        assert_eq!(&frames[1].body[..], b"x");
    }

    #[test]
    fn eols_in_the_body_of_a_frame_without_one_are_dropped_anything_else_refused() {
        let mut d = decoder();
        let f = decode_all(&mut d, b"CONNECT\naccept-version:1.2\n\n\n\0").unwrap();
        assert_eq!(f[0].command, Command::Connect);
        assert!(f[0].body.is_empty());
        let f = decode_all(&mut decoder(), b"SUBSCRIBE\nid:1\n\n\r\n\n\0").unwrap();
        assert!(f[0].body.is_empty());
        assert!(matches!(
            decode_all(&mut decoder(), b"CONNECT\n\n x\0"),
            Err(ParseError::UnexpectedBody(Command::Connect))
        ));
    }

    #[test]
    fn repeated_headers_first_wins() {
        let f = decode_all(&mut decoder(), b"SEND\nfoo:1\nfoo:2\n\n\0").unwrap();
        assert_eq!(f[0].get("foo"), Some("1"));
        assert_eq!(f[0].headers.len(), 2);
    }

    #[test]
    fn connect_is_not_unescaped() {
        let f = decode_all(&mut decoder(), b"CONNECT\npasscode:a\\b:c\n\n\0").unwrap();
        assert_eq!(f[0].get("passcode"), Some("a\\b:c"));
    }

    #[test]
    fn a_header_block_checked_whole_yields_each_header_and_names_each_fault() {
        let f = decode_all(
            &mut decoder(),
            "SEND\nnamé:v\\cé\\\\\nid:ID\\ca\\c1\nplain:€\n\n\0".as_bytes(),
        )
        .unwrap();
        let headers: Vec<_> = f[0].headers.iter().collect();
        assert_eq!(
            headers,
            [("namé", "v:é\\"), ("id", "ID:a:1"), ("plain", "€")]
        );
        assert_eq!(
            decode_all(&mut decoder(), b"SEND\nok:1\nnocolon\n\n\0"),
            Err(ParseError::MalformedHeader("nocolon".into()))
        );
        assert_eq!(
            decode_all(&mut decoder(), b"SEND\nok:1\n:v\n\n\0"),
            Err(ParseError::MalformedHeader(String::new()))
        );
        assert_eq!(
            decode_all(&mut decoder(), b"SEND\nok:\xff\n\n\0"),
            Err(ParseError::NotUtf8)
        );
        assert_eq!(
            decode_all(&mut decoder(), b"SEND\nok:1\nbad:a\x00b\n\n\0"),
            Err(ParseError::NulInHeader("bad".into()))
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            decode_all(&mut decoder(), b"FOO\n\n\0"),
            Err(ParseError::UnknownCommand(_))
        ));
        assert!(matches!(
            decode_all(&mut decoder(), b"SEND\nnocolon\n\n\0"),
            Err(ParseError::MalformedHeader(_))
        ));
        assert!(matches!(
            decode_all(&mut decoder(), b"SEND\na:\\t\n\n\0"),
            Err(ParseError::UndefinedEscape(..))
        ));
        assert!(matches!(
            decode_all(&mut decoder(), b"SEND\ncontent-length:2\n\nabc\0"),
            Err(ParseError::MissingNul(2))
        ));
        assert!(matches!(
            decode_all(&mut decoder(), b"SUBSCRIBE\nid:1\n\nbody\0"),
            Err(ParseError::UnexpectedBody(Command::Subscribe))
        ));
        assert!(matches!(
            decode_all(&mut decoder(), b"SEND\ncontent-length:-1\n\n\0"),
            Err(ParseError::InvalidContentLength(_))
        ));
    }

    #[test]
    fn limits_are_checked_before_the_body_arrives() {
        let limits = Limits {
            max_body_bytes: 10,
            max_headers: 2,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits.clone());
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:11\n\n"[..]);
        assert_eq!(d.decode(&mut buf), Err(ParseError::BodyTooLarge(11, 10)));
        let mut d = Decoder::new(limits.clone());
        let mut buf = BytesMut::from(&b"SEND\n\n0123456789ab"[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ParseError::BodyTooLarge(..))
        ));
        let mut d = Decoder::new(limits);
        let mut buf = BytesMut::from(&b"SEND\na:1\nb:2\nc:3\n"[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ParseError::TooManyHeaders(3, 2))
        ));
    }

    #[test]
    fn nul_in_a_header_is_an_error_in_every_version() {
        for version in Version::SUPPORTED {
            for input in [
                &b"SEND\nx:a\0b\n\n\0"[..],
                b"SEND\nx\0:v\n\n\0",
                b"CONNECT\nx:\0\n\n\0",
            ] {
                let mut d = Decoder::new(Limits::default());
                d.set_version(version);
                assert!(
                    matches!(decode_all(&mut d, input), Err(ParseError::NulInHeader(_))),
                    "{version} {input:?}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_command_or_bad_header_still_yields_the_receipt() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&b"FOO\nreceipt:r\\c7\n\n\0"[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ParseError::UnknownCommand(_))
        ));
        assert_eq!(d.receipt(), Some("r:7"));
        let mut d = decoder();
        let mut buf = BytesMut::from(&b"SEND\nreceipt:8\nbad:\\q\n\n\0"[..]);
        assert!(d.decode(&mut buf).is_err());
        assert_eq!(d.receipt(), Some("8"));
    }

    #[test]
    fn error_after_a_frame_does_not_carry_its_receipt() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&b"SEND\nreceipt:r1\n\n\0FOO\n\n\0"[..]);
        assert!(d.decode(&mut buf).unwrap().is_some());
        assert!(matches!(
            d.decode(&mut buf),
            Err(ParseError::UnknownCommand(_))
        ));
        assert_eq!(d.receipt(), None);
    }

    #[test]
    fn long_command_line_is_rejected_without_newline() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&vec![b'A'; 2000][..]);
        assert_eq!(d.decode(&mut buf), Err(ParseError::CommandTooLong));
    }
}
