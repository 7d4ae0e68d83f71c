//! Property tests of the codec as a whole: every frame the encoder writes decodes back to
//! itself, at every version, however the bytes are split; and no input, however broken, panics
//! the decoder or makes it buffer past its limits.
//!
//! The checks shared with the fuzz targets live in `fuzz/src/codec.rs`, included here as
//! [`fuzz_checks`], so the fuzz seed corpus is a regression suite in `cargo test`. The tests
//! at the bottom pin codec bugs these properties found.

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use stompbox::codec::{encode, Command, Decoder, Escaping, Frame, Headers, ParseError, Version};
use stompbox::limits::Limits;

#[path = "../fuzz/src/codec.rs"]
mod fuzz_checks;

use fuzz_checks::{
    assert_same_outcome, check_parse, check_roundtrip, decode_chunks, expected_after_round_trip,
    one_byte_chunks, pseudo_random_chunks, small_limits,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip_at_every_version_however_the_bytes_are_split(
        stream in stream(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let cuts = cuts.iter().map(|cut| cut.index(stream.wire.len() + 1)).collect();
        let chunks = split(&stream, cuts);
        let run = decode_chunks(stream.version, &Limits::default(), chunks);
        prop_assert_eq!(run.error, None);
        prop_assert_eq!(run.frames, stream.expected);
        prop_assert_eq!(run.rest, 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder_nor_overfill_its_buffer(
        data in prop_oneof![prop::collection::vec(any::<u8>(), 0..2048), stomp_noise()],
    ) {
        check_parse(&data);
    }

    #[test]
    fn decode_encode_decode_gives_back_the_decoded_frame(data in frames_read_at_any_version()) {
        check_roundtrip(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip_at_every_version_fed_one_byte_at_a_time(stream in stream()) {
        let chunks = split(&stream, (0..=stream.wire.len()).collect());
        let run = decode_chunks(stream.version, &Limits::default(), chunks);
        prop_assert_eq!(run.error, None);
        prop_assert_eq!(run.frames, stream.expected);
        prop_assert_eq!(run.rest, 0);
    }

    #[test]
    fn decoding_does_not_depend_on_how_the_bytes_are_split(data in stomp_noise()) {
        for version in Version::SUPPORTED {
            let whole = decode_chunks(version, &small_limits(), [&data[..]]);
            for chunks in [one_byte_chunks(&data), pseudo_random_chunks(&data)] {
                assert_same_outcome(&whole, &decode_chunks(version, &small_limits(), chunks));
            }
        }
    }
}

#[test]
fn seed_corpus_decodes_cleanly_and_passes_the_fuzz_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut seeds = 0;
    for entry in fs::read_dir(&dir).expect("fuzz/corpus/parse is readable") {
        let path = entry.expect("corpus entry is readable").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let data = fs::read(&path).expect("corpus file is readable");
        let run = decode_chunks(Version::V1_2, &Limits::default(), [&data[..]]);
        assert!(
            run.error.is_none() && !run.frames.is_empty() && run.rest == 0,
            "{} is not a clean STOMP 1.2 stream: {run:?}",
            path.display()
        );
        check_parse(&data);
        check_roundtrip(&data);
        seeds += 1;
    }
    assert!(seeds >= 15, "only {seeds} seeds in {}", dir.display());
}

// Codec bugs found by these properties, each pinned by the test that failed before its fix.

#[test]
fn crlf_heart_beat_split_between_cr_and_lf_is_skipped() {
    let chunks: [&[u8]; 2] = [b"SEND\n\nx\0\r", b"\nSEND\n\ny\0"];
    let run = decode_chunks(Version::V1_2, &Limits::default(), chunks);
    assert_eq!(run.error, None);
    assert_eq!(run.frames.len(), 2);
}

#[test]
fn nul_terminated_body_counts_towards_max_frame_bytes() {
    let limits = Limits {
        max_frame_bytes: 64,
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let mut wire = b"SEND\n\n".to_vec();
    wire.extend_from_slice(&[b'x'; 200]);
    wire.push(0);
    let mut decoder = Decoder::new(limits);
    let result = decoder.decode(&mut BytesMut::from(&wire[..]));
    assert!(
        matches!(result, Err(ParseError::FrameTooLarge(..))),
        "a 207-byte frame passed max_frame_bytes 64: {result:?}"
    );
}

#[test]
fn nul_terminated_body_over_max_body_bytes_is_rejected_however_it_arrives() {
    let limits = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    let mut wire = b"SEND\n\n".to_vec();
    wire.extend_from_slice(&[b'x'; 100]);
    wire.push(0);
    // One byte at a time the decoder answers BodyTooLarge(11, 10); all at once it returns the
    // 100-byte body.
    for chunks in [one_byte_chunks(&wire), vec![&wire[..]]] {
        let run = decode_chunks(Version::V1_2, &limits, chunks);
        assert!(
            matches!(run.error, Some(ParseError::BodyTooLarge(..))),
            "a 100-byte body passed max_body_bytes 10: {run:?}"
        );
    }
}

#[test]
fn header_block_over_max_frame_bytes_is_rejected_however_it_arrives() {
    let limits = Limits {
        max_frame_bytes: 64,
        ..Limits::default()
    };
    let mut wire = b"SEND\n".to_vec();
    for i in 0..10 {
        wire.extend_from_slice(format!("header{i}:value{i}\n").as_bytes());
    }
    wire.extend_from_slice(b"\n\0");
    // One byte at a time the decoder answers FrameTooLarge(65, 64); all at once it accepts the
    // 157-byte frame.
    for chunks in [one_byte_chunks(&wire), vec![&wire[..]]] {
        let run = decode_chunks(Version::V1_2, &limits, chunks);
        assert!(
            matches!(run.error, Some(ParseError::FrameTooLarge(..))),
            "a 157-byte header block passed max_frame_bytes 64: {run:?}"
        );
    }
}

/// Encoded frames with heart-beats around them, and what decoding them must give.
#[derive(Debug, Clone)]
struct Stream {
    version: Version,
    wire: Vec<u8>,
    expected: Vec<Frame>,
}

/// One to three frames for one version, each preceded by zero to two heart-beat EOLs, with
/// more heart-beats after the last.
fn stream() -> impl Strategy<Value = Stream> {
    select(Version::SUPPORTED.to_vec()).prop_flat_map(|version| {
        let beats = || prop::collection::vec(select(vec![&b"\n"[..], &b"\r\n"[..]]), 0..3);
        (
            Just(version),
            prop::collection::vec((beats(), frame(version)), 1..4),
            beats(),
        )
            .prop_map(|(version, frames, trailing)| {
                let mut stream = Stream {
                    version,
                    wire: Vec::new(),
                    expected: Vec::new(),
                };
                let push_beats = |stream: &mut Stream, beats: &[&[u8]]| {
                    for beat in beats {
                        stream.wire.extend_from_slice(beat);
                    }
                };
                for (beats, frame) in frames {
                    push_beats(&mut stream, &beats);
                    stream.wire.extend_from_slice(&encode(&frame, version));
                    stream.expected.push(expected_after_round_trip(&frame));
                }
                push_beats(&mut stream, &trailing);
                stream
            })
    })
}

/// Splits the stream's bytes at `cuts` (anywhere, also between the CR and LF of a heart-beat,
/// once a codec bug: `crlf_heart_beat_split_between_cr_and_lf_is_skipped`).
fn split(stream: &Stream, mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.push(stream.wire.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut start = 0;
    cuts.into_iter()
        .map(|cut| {
            let chunk = &stream.wire[start..cut];
            start = cut;
            chunk
        })
        .collect()
}

const COMMANDS: [Command; 15] = [
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Ack,
    Command::Nack,
    Command::Disconnect,
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

/// Any frame `version` can carry: headers drawn from what its escaping can represent, a
/// binary body only on commands that may have one, and sometimes a correct `content-length`.
fn frame(version: Version) -> impl Strategy<Value = Frame> {
    select(COMMANDS.to_vec())
        .prop_flat_map(move |command| {
            let escaping = Escaping::for_frame(version, command);
            let header = (header_text(escaping, true), header_text(escaping, false));
            let body = if command.may_have_body() {
                prop::collection::vec(
                    prop_oneof![4 => any::<u8>(), 1 => Just(0u8), 1 => Just(b'\n')],
                    0..300,
                )
                .boxed()
            } else {
                Just(Vec::new()).boxed()
            };
            (
                Just(command),
                prop::collection::vec(header, 0..6),
                body,
                any::<Option<Index>>(),
            )
        })
        .prop_map(|(command, headers, body, length_at)| {
            let mut headers = Headers(headers);
            if let Some(at) = length_at {
                let at = at.index(headers.len() + 1);
                headers
                    .0
                    .insert(at, ("content-length".into(), body.len().to_string()));
            }
            Frame {
                command,
                headers,
                body: body.into(),
            }
        })
}

/// A header name (never empty) or value, leaning on the characters that need escaping.
/// Without escaping, CR and LF cannot be carried at all and a colon only in a value; in 1.1 a
/// value cannot end in CR, which would read as part of a CRLF line end. Names are at most 11
/// characters, so none is `content-length`. NUL is refused in any header (it ends a frame), so
/// it is left to the bodies and to `stomp_noise`.
fn header_text(escaping: Escaping, is_name: bool) -> impl Strategy<Value = String> {
    let mut special = vec!['\\', ' ', '\t'];
    match escaping {
        Escaping::None if is_name => {}
        Escaping::None => special.push(':'),
        Escaping::V1_1 | Escaping::V1_2 => special.extend([':', '\n', '\r']),
    }
    let char = prop_oneof![
        4 => prop::char::range('a', 'z'),
        1 => select(vec!['A', 'Z', '0', '9', '-', '/', '=', 'é', '€', '🎺']),
        3 => select(special),
    ];
    let min_len = usize::from(is_name);
    prop::collection::vec(char, min_len..12).prop_map(move |chars| {
        let mut text = String::from_iter(chars);
        if escaping == Escaping::V1_1 && !is_name && text.ends_with('\r') {
            text.push('.');
        }
        text
    })
}

/// Bytes shaped like STOMP, so the decoder gets past the command line: frames whose command,
/// header lines, `content-length` (right or a little off) and body are drawn from pieces that
/// reach every branch and limit, mixed with arbitrary bytes.
fn stomp_noise() -> impl Strategy<Value = Vec<u8>> {
    let loose = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => select(vec![&b"\n"[..], b"\r", b"\0", b"\r\n", b"\0\n"]).prop_map(|p| p.to_vec()),
    ];
    prop::collection::vec(prop_oneof![10 => frame_like(), 1 => loose], 1..5)
        .prop_map(|parts| parts.concat())
}

/// One frame-shaped piece of [`stomp_noise`]. Most pieces are well formed, so the decoder
/// reaches the body and the next frame; a few break one rule or one limit.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    let bytes = |pieces: &[&'static [u8]]| select(pieces.to_vec()).prop_map(|p| p.to_vec());
    let eol = || bytes(&[b"\n", b"\r\n"]);
    let command = prop_oneof![
        12 => select(COMMANDS.to_vec()).prop_map(|c| c.as_str().as_bytes().to_vec()),
        1 => bytes(&[b"SEND \t", b"send", b""]),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ];
    let piece = prop_oneof![
        24 => bytes(&[b"destination", b"/queue/a", b"content-length", b"id", b"a", b" 3 ", b"caf\xc3\xa9"]),
        6 => bytes(&[b"\\n", b"\\c", b"\\\\", b"\r", b"\0", b"\t"]),
        1 => bytes(&[b"\\r", b"\\t", b"\\", b"\xff\xfe", b":"]),
        1 => (1usize..70).prop_map(|n| vec![b'h'; n]),
    ];
    let text =
        move |min| prop::collection::vec(piece.clone(), min..3).prop_map(|parts| parts.concat());
    let header_line = prop_oneof![
        12 => (text(1), text(0)).prop_map(|(name, value)| [name, value].join(&b':')),
        1 => text(0),
    ];
    let body = prop_oneof![
        3 => Just(Vec::new()),
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (1usize..600).prop_map(|n| vec![b'x'; n]),
    ];
    (
        command,
        eol(),
        prop::collection::vec((header_line, eol()), 0..8),
        prop::option::of(-2i64..=2),
        prop::bool::weighted(0.1),
        eol(),
        body,
        prop_oneof![12 => bytes(&[b"\0", b"\0\n", b"\0\r\n"]), 1 => Just(Vec::new())],
    )
        .prop_map(
            |(command, eol, headers, length_off, body_anyway, blank, mut body, end)| {
                if !body_anyway && Command::parse(&command).is_some_and(|c| !c.may_have_body()) {
                    body.clear();
                }
                let mut out = command;
                out.extend(eol);
                for (line, eol) in headers {
                    out.extend(line);
                    out.extend(eol);
                }
                if let Some(off) = length_off {
                    let length = (body.len() as i64 + off).max(0);
                    out.extend(format!("content-length:{length}\n").into_bytes());
                }
                out.extend(blank);
                out.extend(body);
                out.extend(end);
                out
            },
        )
}

/// Frames encoded for one version and read at another (so escapes go unread, or CRs arrive
/// raw), mixed with noise: input that decodes to frames the encoder did not write.
fn frames_read_at_any_version() -> impl Strategy<Value = Vec<u8>> {
    let encoded = select(Version::SUPPORTED.to_vec())
        .prop_flat_map(|version| (Just(version), frame(version)))
        .prop_map(|(version, frame)| encode(&frame, version));
    let part = prop_oneof![4 => encoded, 1 => stomp_noise()];
    prop::collection::vec(part, 1..4).prop_map(|parts| parts.concat())
}
