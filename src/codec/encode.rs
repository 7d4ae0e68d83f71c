//! Frame encoder: the inverse of the decoder, with the same escaping rules.

use super::escape::{escape_into, Escaping};
use super::{Frame, Version};

/// Encodes `frame` for a peer speaking `version`.
pub fn encode(frame: &Frame, version: Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(frame));
    encode_into(&mut out, frame, version);
    out
}

/// Appends the encoding of `frame` to `out`. A frame with a non-empty body always carries
/// `content-length` (added if the frame lacks one), so bodies containing NUL survive.
pub fn encode_into(out: &mut Vec<u8>, frame: &Frame, version: Version) {
    let escaping = Escaping::for_frame(version, frame.command);
    out.extend_from_slice(frame.command.as_str().as_bytes());
    out.push(b'\n');
    let mut has_length = false;
    for (name, value) in frame.headers.iter() {
        if name == "content-length" {
            if has_length {
                continue;
            }
            has_length = true;
        }
        escape_into(out, name, escaping, true);
        out.push(b':');
        escape_into(out, value, escaping, false);
        out.push(b'\n');
    }
    if !has_length && !frame.body.is_empty() {
        out.extend_from_slice(b"content-length:");
        out.extend_from_slice(frame.body.len().to_string().as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&frame.body);
    out.push(0);
}

/// A close upper bound of the encoded size, for buffer reservation.
pub fn encoded_len(frame: &Frame) -> usize {
    let headers: usize = frame
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    frame.command.as_str().len() + headers + frame.body.len() + 32
}
