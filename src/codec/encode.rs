//! Frame encoder: the inverse of the decoder, with the same escaping rules. Also the one
//! MESSAGE encoder: [`encode_message`] writes a delivery without building a [`Frame`].

use bytes::BufMut;

use super::escape::{escape_into, Escaping};
use super::{Command, Frame, Version};

/// Encodes `frame` for a peer speaking `version`.
pub fn encode(frame: &Frame, version: Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(frame));
    encode_into(&mut out, frame, version);
    out
}

/// Appends the encoding of `frame` to `out`. A frame with a non-empty body always carries
/// `content-length` (added if the frame lacks one), so bodies containing NUL survive.
pub fn encode_into<B: BufMut>(out: &mut B, frame: &Frame, version: Version) {
    let escaping = Escaping::for_frame(version, frame.command);
    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    let mut has_length = false;
    for (name, value) in frame.headers.iter() {
        if name == "content-length" {
            if has_length {
                continue;
            }
            has_length = true;
        }
        escape_into(out, name, escaping, true);
        out.put_u8(b':');
        escape_into(out, value, escaping, false);
        out.put_u8(b'\n');
    }
    if !has_length && !frame.body.is_empty() {
        out.put_slice(b"content-length:");
        out.put_slice(decimal(frame.body.len() as u64, &mut [0; 20]));
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
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

/// One delivery as a MESSAGE frame: the headers the broker sets, then the message's own.
#[derive(Debug, Clone, Copy)]
pub struct MessageFrame<'a> {
    /// The `subscription` header: the SUBSCRIBE's `id`.
    pub subscription: &'a str,
    pub destination: &'a str,
    pub message_id: u64,
    /// The `ack` header, written when present (the session sets it for 1.2 client modes).
    pub ack: Option<&'a str>,
    /// Above 0: `redelivered:true` and `redelivery-count`.
    pub redelivery_count: u32,
    /// `expires` (0 = never), `priority` and, when true, `persistent:true`: the headers
    /// ActiveMQ's clients read on every MESSAGE, written from the message's fields.
    pub expires: u64,
    pub priority: u8,
    pub persistent: bool,
    /// The SEND's headers, without those the broker owns (`content-length` among them).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl MessageFrame<'_> {
    /// A close upper bound of the encoded size, for buffer reservation.
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum();
        let ack = self.ack.map_or(0, |a| a.len() + 5);
        192 + self.subscription.len() + self.destination.len() + ack + headers + self.body.len()
    }
}

/// Appends `m` as a MESSAGE frame to `out`: the delivery hot path, so it builds no [`Frame`]
/// and allocates nothing. The bytes are those [`encode_into`] writes for the frame with the
/// headers `subscription`, `destination`, `message-id`, `ack`, `redelivered`,
/// `redelivery-count`, `expires`, `priority`, `persistent`, the message's headers and
/// `content-length`, in that order.
/// `content-length` is always written (even for an empty body), so a client need never scan
/// a body for its NUL.
pub fn encode_message<B: BufMut>(out: &mut B, m: &MessageFrame<'_>, version: Version) {
    let esc = Escaping::for_frame(version, Command::Message);
    let mut digits = [0u8; 20];
    out.put_slice(b"MESSAGE\nsubscription:");
    escape_into(out, m.subscription, esc, false);
    out.put_slice(b"\ndestination:");
    escape_into(out, m.destination, esc, false);
    out.put_slice(b"\nmessage-id:");
    out.put_slice(decimal(m.message_id, &mut digits));
    if let Some(ack) = m.ack {
        out.put_slice(b"\nack:");
        escape_into(out, ack, esc, false);
    }
    if m.redelivery_count > 0 {
        out.put_slice(b"\nredelivered:true\nredelivery-count:");
        out.put_slice(decimal(u64::from(m.redelivery_count), &mut digits));
    }
    out.put_slice(b"\nexpires:");
    out.put_slice(decimal(m.expires, &mut digits));
    out.put_slice(b"\npriority:");
    out.put_slice(decimal(u64::from(m.priority), &mut digits));
    if m.persistent {
        out.put_slice(b"\npersistent:true");
    }
    for (k, v) in m.headers {
        out.put_u8(b'\n');
        escape_into(out, k, esc, true);
        out.put_u8(b':');
        escape_into(out, v, esc, false);
    }
    out.put_slice(b"\ncontent-length:");
    out.put_slice(decimal(m.body.len() as u64, &mut digits));
    out.put_slice(b"\n\n");
    out.put_slice(m.body);
    out.put_u8(0);
}

/// Formats `n` in decimal into `buf` without allocating; returns the digits.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame [`encode_message`] stands for.
    fn as_frame(m: &MessageFrame<'_>) -> Frame {
        let mut f = Frame::new(Command::Message)
            .header("subscription", m.subscription)
            .header("destination", m.destination)
            .header("message-id", m.message_id.to_string());
        if let Some(ack) = m.ack {
            f = f.header("ack", ack);
        }
        if m.redelivery_count > 0 {
            f = f
                .header("redelivered", "true")
                .header("redelivery-count", m.redelivery_count.to_string());
        }
        f = f
            .header("expires", m.expires.to_string())
            .header("priority", m.priority.to_string());
        if m.persistent {
            f = f.header("persistent", "true");
        }
        for (k, v) in m.headers {
            f = f.header(k.as_str(), v.as_str());
        }
        f.header("content-length", m.body.len().to_string())
            .with_body(m.body.to_vec())
    }

    #[test]
    fn message_bytes_equal_the_frame_encoding_in_every_version() {
        let headers = vec![
            ("content-type".to_string(), "text/plain".to_string()),
            ("odd:name".to_string(), "line\nbreak\\and\rcr".to_string()),
        ];
        let bodies: [&[u8]; 3] = [b"", b"hello", b"nul\0inside"];
        for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
            for body in bodies {
                for (ack, redelivery_count, persistent) in
                    [(None, 0, false), (Some("42-1"), 3, true)]
                {
                    let m = MessageFrame {
                        subscription: "sub:1",
                        destination: "/queue/a\\b",
                        message_id: 42,
                        ack,
                        redelivery_count,
                        expires: u64::from(redelivery_count) * 1_700_000_000_000,
                        priority: 9,
                        persistent,
                        headers: &headers,
                        body,
                    };
                    let mut fast = Vec::new();
                    encode_message(&mut fast, &m, version);
                    assert_eq!(fast, encode(&as_frame(&m), version), "{version:?} {m:?}");
                }
            }
        }
    }

    #[test]
    fn decimal_formats_the_extremes() {
        let mut buf = [0; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }
}
