//! The checks behind the codec fuzz targets.
//!
//! `fuzz_targets/parse.rs` calls [`check_parse`] and `fuzz_targets/roundtrip.rs` calls
//! [`check_roundtrip`]; `tests/codec_roundtrip.rs` includes this file as a module and runs the
//! same checks over the seed corpus and over proptest input. A check panics when a property
//! breaks, which is how both libFuzzer and the test harness notice.
//!
//! The bounds are the codec's contract: a buffer never exceeds `max_frame_bytes`, a body never
//! exceeds `max_body_bytes`, and how the input is split into reads never changes the outcome.

use bytes::BytesMut;
use stompbox::codec::{encode, Decoder, Escaping, Frame, ParseError, Version};
use stompbox::limits::Limits;

/// What one decoder made of one byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Frames in the order they were decoded.
    pub frames: Vec<Frame>,
    /// The error that stopped decoding, if any.
    pub error: Option<ParseError>,
    /// Bytes still buffered at the end: an incomplete frame, or everything after the error.
    pub rest: usize,
}

/// Limits small enough that short fuzz inputs reach every limit check.
pub fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 512,
        max_body_bytes: 256,
        max_headers: 8,
        max_header_line_bytes: 64,
        ..Limits::default()
    }
}

/// Any bytes, split any way, decoded at any version: the decoder must not panic, must keep its
/// buffer within [`buffer_bound`], must return only frames within the body and header limits,
/// and must decode the same frames however the bytes are split (see [`assert_consistent`]).
pub fn check_parse(data: &[u8]) {
    let limits = small_limits();
    for version in Version::SUPPORTED {
        let whole = decode_chunks(version, &limits, [data]);
        for chunks in [one_byte_chunks(data), pseudo_random_chunks(data)] {
            let split = decode_chunks(version, &limits, chunks);
            assert_consistent(&whole, &split);
        }
    }
}

/// Every frame the decoder reads from `data` that the encoder can carry (see
/// [`representable`]) survives encode → decode, at every version: decode → encode → decode
/// yields the first decode's frame, up to [`expected_after_round_trip`].
pub fn check_roundtrip(data: &[u8]) {
    let limits = Limits::default();
    // The encoder may add a `content-length` header: one more header, one more line.
    let reread_limits = Limits {
        max_headers: limits.max_headers + 1,
        max_frame_bytes: limits.max_frame_bytes + 64,
        ..limits.clone()
    };
    for version in Version::SUPPORTED {
        let first = decode_chunks(version, &limits, [data]);
        for frame in first.frames.iter().filter(|f| representable(f, version)) {
            let wire = encode(frame, version);
            let again = decode_chunks(version, &reread_limits, [&wire[..]]);
            let expected = Run {
                frames: vec![expected_after_round_trip(frame)],
                error: None,
                rest: 0,
            };
            assert_eq!(
                again, expected,
                "{version} round trip of {frame:?} via {wire:?}"
            );
        }
    }
}

/// Feeds `chunks` one at a time to a fresh decoder for `version`, decoding after each chunk
/// until the decoder needs more bytes, and stops at the first error. Panics if the decoder
/// holds more than [`buffer_bound`] bytes while waiting, or returns a frame over
/// `max_headers` or with a body longer than [`body_bound`].
pub fn decode_chunks<'a>(
    version: Version,
    limits: &Limits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Run {
    let mut decoder = Decoder::new(limits.clone());
    decoder.set_version(version);
    let bound = buffer_bound(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let longest_body = body_bound(limits, &frame, chunk);
                    assert!(
                        frame.body.len() <= longest_body,
                        "body of {} bytes passed its bound {longest_body}",
                        frame.body.len(),
                    );
                    assert!(
                        frame.headers.len() <= limits.max_headers,
                        "{} headers passed max_headers {}",
                        frame.headers.len(),
                        limits.max_headers
                    );
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= bound,
                        "decoder waits with {} bytes buffered, over the bound {bound}",
                        buf.len()
                    );
                    break;
                }
                Err(error) => {
                    return Run {
                        frames,
                        error: Some(error),
                        rest: buf.len(),
                    }
                }
            }
        }
    }
    Run {
        frames,
        error: None,
        rest: buf.len(),
    }
}

/// The most bytes the decoder may hold while it waits for the rest of a frame: the
/// contract is `max_frame_bytes`, however the bytes arrive.
pub fn buffer_bound(limits: &Limits) -> usize {
    limits.max_frame_bytes
}

/// The longest body the decoder may return: `max_body_bytes`, with or without
/// `content-length`, however the body arrives.
fn body_bound(limits: &Limits, _frame: &Frame, _chunk: &[u8]) -> usize {
    limits.max_body_bytes
}

/// Asserts that two runs over the same bytes, split differently, decoded the same frames and
/// ended the same way (the decoder's outcome does not depend on how reads cut the input).
pub fn assert_consistent(a: &Run, b: &Run) {
    assert_same_outcome(a, b);
}

/// Asserts that two runs over the same bytes, split differently, agree on everything but the
/// numbers inside an error (a partial line's length depends on how much of it has arrived).
pub fn assert_same_outcome(a: &Run, b: &Run) {
    assert_eq!(a.frames, b.frames, "two splits decode different frames");
    assert_eq!(
        a.error.is_some(),
        b.error.is_some(),
        "one split fails and the other does not: {:?} vs {:?}",
        a.error,
        b.error
    );
    if a.error.is_none() {
        assert_eq!(a.rest, b.rest, "two splits leave different bytes buffered");
    }
}

/// Whether `encode` writes `frame`'s headers at `version` so that the decoder reads them back
/// unchanged. Without escaping (1.0, and CONNECT, STOMP and CONNECTED at any version) the
/// encoder writes CR and LF as the text `\r` and `\n`, and a colon in a name as `\c`, so those
/// change; in 1.1, which has no escape for CR, a value ending in CR reads back as a CRLF line
/// end.
pub fn representable(frame: &Frame, version: Version) -> bool {
    match Escaping::for_frame(version, frame.command) {
        Escaping::None => frame.headers.iter().all(|(name, value)| {
            !name.contains(['\r', '\n', ':']) && !value.contains(['\r', '\n'])
        }),
        Escaping::V1_1 => frame
            .headers
            .iter()
            .all(|(_, value)| !value.ends_with('\r')),
        Escaping::V1_2 => true,
    }
}

/// The frame the decoder reads back after `encode(frame)`: the encoder keeps only the first
/// `content-length` header, and adds one after the others when the body is not empty.
pub fn expected_after_round_trip(frame: &Frame) -> Frame {
    let mut expected = frame.clone();
    let mut has_length = false;
    expected.headers.0.retain(|(name, _)| {
        let repeated_length = name == "content-length" && has_length;
        has_length |= name == "content-length";
        !repeated_length
    });
    if !has_length && !frame.body.is_empty() {
        expected
            .headers
            .push("content-length", frame.body.len().to_string());
    }
    expected
}

/// `data` one byte at a time.
pub fn one_byte_chunks(data: &[u8]) -> Vec<&[u8]> {
    data.chunks(1).collect()
}

/// `data` in chunks of 1 to 64 bytes, sizes drawn from a generator seeded by the data itself,
/// so a fuzz input always splits the same way and a crash reproduces.
pub fn pseudo_random_chunks(data: &[u8]) -> Vec<&[u8]> {
    // FNV-1a for the seed, xorshift64 for the sizes: deterministic, no dependency.
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (state % 64) as usize + 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}
