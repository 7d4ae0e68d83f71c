//! Header escaping, which differs per protocol version (spec 1.2, "Value Encoding").
//!
//! | seq  | 1.0  | 1.1   | 1.2 |
//! |------|------|-------|-----|
//! | `\n` | none | LF    | LF  |
//! | `\c` | none | `:`   | `:` |
//! | `\\` | none | `\`   | `\` |
//! | `\r` | none | error | CR  |
//!
//! Any other escape is a fatal error in 1.1 and 1.2. CONNECT, STOMP and CONNECTED frames are
//! never escaped, whatever the version.

use std::borrow::Cow;

use bytes::BufMut;

use super::{Command, Version};

/// Which escaping rules apply to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// No escapes: STOMP 1.0, and CONNECT/STOMP/CONNECTED frames of any version.
    None,
    /// `\n`, `\c`, `\\`.
    V1_1,
    /// `\n`, `\c`, `\\`, `\r`.
    V1_2,
}

impl Escaping {
    /// The rules for a frame with `command` on a session speaking `version`.
    pub fn for_frame(version: Version, command: Command) -> Escaping {
        if command.exempt_from_escaping() {
            return Escaping::None;
        }
        match version {
            Version::V1_0 => Escaping::None,
            Version::V1_1 => Escaping::V1_1,
            Version::V1_2 => Escaping::V1_2,
        }
    }
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscapeError {
    /// A backslash followed by something the version does not define (or by nothing).
    Undefined(String),
    /// The bytes are not UTF-8 (STOMP 1.1+ headers are UTF-8; we ask the same of 1.0).
    NotUtf8,
}

/// Decodes one header name or value. Returns the input borrowed when there is nothing to do.
pub fn unescape(raw: &[u8], escaping: Escaping) -> Result<Cow<'_, str>, EscapeError> {
    let text = std::str::from_utf8(raw).map_err(|_| EscapeError::NotUtf8)?;
    let first = match escaping {
        Escaping::None => None,
        _ => memchr::memchr(b'\\', raw),
    };
    let Some(first) = first else {
        return Ok(Cow::Borrowed(text));
    };
    // Runs between escapes are copied whole (ids with escaped colons are common: a network
    // id, an ActiveMQ message id).
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at = first;
    loop {
        out.push_str(&rest[..at]);
        let unescaped = match rest.as_bytes().get(at + 1) {
            Some(b'n') => '\n',
            Some(b'c') => ':',
            Some(b'\\') => '\\',
            Some(b'r') if escaping == Escaping::V1_2 => '\r',
            Some(_) => {
                let other = rest[at + 1..].chars().next().unwrap_or_default();
                return Err(EscapeError::Undefined(format!("\\{other}")));
            }
            None => return Err(EscapeError::Undefined("\\".to_string())),
        };
        out.push(unescaped);
        rest = &rest[at + 2..];
        match memchr::memchr(b'\\', rest.as_bytes()) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Appends `text` to `out`, escaped for `escaping`. With [`Escaping::None`] a raw LF or CR would
/// end the header line early, so those two (and a `:` in a header name) are still written as
/// `\n`, `\r` and `\c`: a 1.0 peer sees the escape text rather than a broken frame.
pub fn escape_into<B: BufMut>(out: &mut B, text: &str, escaping: Escaping, is_name: bool) {
    let needs: &[bool; 256] = match escaping {
        Escaping::None if is_name => &NEEDS_NONE_NAME,
        Escaping::None => &NEEDS_NONE,
        Escaping::V1_1 => &NEEDS_V1_1,
        Escaping::V1_2 => &NEEDS_V1_2,
    };
    // Runs between escapes are copied whole: a message id or a network id has colons, and a
    // byte-at-a-time copy of it showed in a bridge's profile.
    let mut rest = text.as_bytes();
    while let Some(i) = rest.iter().position(|&b| needs[b as usize]) {
        out.put_slice(&rest[..i]);
        out.put_slice(match rest[i] {
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b':' => b"\\c",
            _ => b"\\\\",
        });
        rest = &rest[i + 1..];
    }
    out.put_slice(rest);
}

/// Which bytes [`escape_into`] escapes, per rule set.
const fn needs_table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}
static NEEDS_NONE: [bool; 256] = needs_table(b"\n\r");
static NEEDS_NONE_NAME: [bool; 256] = needs_table(b"\n\r:");
static NEEDS_V1_1: [bool; 256] = needs_table(b"\n:\\");
static NEEDS_V1_2: [bool; 256] = needs_table(b"\n:\\\r");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_per_version() {
        assert_eq!(
            unescape(b"a\\nb\\cc\\\\", Escaping::V1_1).unwrap(),
            "a\nb:c\\"
        );
        assert_eq!(unescape(b"a\\rb", Escaping::V1_2).unwrap(), "a\rb");
        assert!(unescape(b"a\\rb", Escaping::V1_1).is_err());
        assert!(unescape(b"a\\tb", Escaping::V1_2).is_err());
        assert!(unescape(b"trailing\\", Escaping::V1_2).is_err());
        assert_eq!(unescape(b"a\\tb", Escaping::None).unwrap(), "a\\tb");
    }

    #[test]
    fn runs_between_escapes_are_kept_whole_and_faults_named() {
        assert_eq!(
            unescape("ID\\cé-1\\c2\\\\\\n€".as_bytes(), Escaping::V1_2).unwrap(),
            "ID:é-1:2\\\n€"
        );
        assert_eq!(unescape("\\c\\c".as_bytes(), Escaping::V1_2).unwrap(), "::");
        assert_eq!(
            unescape("a\\éb".as_bytes(), Escaping::V1_2),
            Err(EscapeError::Undefined("\\é".into()))
        );
        assert_eq!(
            unescape(b"ok\\cthen\\", Escaping::V1_1),
            Err(EscapeError::Undefined("\\".into()))
        );
        assert_eq!(
            unescape(b"a\\rb", Escaping::V1_1),
            Err(EscapeError::Undefined("\\r".into()))
        );
        assert!(matches!(
            unescape(b"plain", Escaping::V1_2),
            Ok(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn encodes_per_version() {
        let mut out = Vec::new();
        escape_into(&mut out, "a:b\\c\nd\re", Escaping::V1_2, false);
        assert_eq!(out, b"a\\cb\\\\c\\nd\\re");
        out.clear();
        escape_into(&mut out, "a:b\\c\n", Escaping::None, false);
        assert_eq!(out, b"a:b\\c\\n");
    }
}
