//! Codec micro-benchmarks: decoder and encoder throughput, in bytes of wire format per second.
//!
//! Each decode case copies the frame into a reused read buffer and decodes it, as a session does
//! after a socket read; the chunked cases copy 4 KiB at a time and call the decoder after each,
//! so the ratio of a chunked case to its whole-buffer baseline is the cost of decoding
//! incrementally. Each encode case writes into a reused buffer, as the outbox does.
//!
//! `cargo bench --bench codec` runs everything in about half a minute; pass criterion's own
//! flags (`-- --quick`, `-- --measurement-time 2`, a name filter) for shorter runs.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stompbox::codec::{encode, encode_into, Command, Decoder, Frame, Version};
use stompbox::limits::Limits;

const BIG_BODY_BYTES: usize = 64 * 1024;
const CHUNK_BYTES: usize = 4 * 1024;

fn decode(c: &mut Criterion) {
    let cases = [
        ("small_send", encode(&small_send(), Version::V1_2), None),
        (
            "forwarded_message",
            encode(&forwarded_message(), Version::V1_2),
            None,
        ),
        (
            "64k_content_length",
            encode(&big_send(), Version::V1_2),
            None,
        ),
        ("64k_nul_terminated", nul_terminated_send(), None),
        (
            "64k_content_length_4k_chunks",
            encode(&big_send(), Version::V1_2),
            Some(CHUNK_BYTES),
        ),
        (
            "64k_nul_terminated_4k_chunks",
            nul_terminated_send(),
            Some(CHUNK_BYTES),
        ),
    ];
    let mut group = c.benchmark_group("decode");
    for (name, wire, chunk) in cases {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut decoder = Decoder::new(Limits::default());
        decoder.set_version(Version::V1_2);
        let chunk = chunk.unwrap_or(wire.len());
        let mut buf = BytesMut::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                // Once the previous frame is dropped the buffer holds its allocation alone,
                // so this reclaims it rather than allocating: a session's read buffer, reused.
                buf.reserve(wire.len());
                let mut frame = None;
                for piece in wire.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    frame = decoder
                        .decode(&mut buf)
                        .expect("benchmark frames are valid");
                }
                black_box(frame.expect("the last chunk completes the frame"))
            })
        });
    }
    group.finish();
}

fn encode_frames(c: &mut Criterion) {
    let mut unlabelled = big_send();
    unlabelled
        .headers
        .0
        .retain(|(name, _)| name != "content-length");
    let cases = [
        ("small_send", small_send()),
        ("64k_content_length", big_send()),
        ("64k_content_length_added", unlabelled),
    ];
    let mut group = c.benchmark_group("encode");
    for (name, frame) in cases {
        group.throughput(Throughput::Bytes(encode(&frame, Version::V1_2).len() as u64));
        let mut out = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_into(&mut out, black_box(&frame), Version::V1_2);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// A typical producer frame: five headers and a 100-byte text body.
fn small_send() -> Frame {
    Frame::new(Command::Send)
        .header("destination", "/queue/orders")
        .header("content-type", "application/json")
        .header("receipt", "r-1042")
        .header("persistent", "true")
        .header("correlation-id", "c0ffee-42")
        .with_body(vec![b'a'; 100])
}

/// A MESSAGE as a bridge receives it from its own broker and as the peer's consumers get it:
/// a dozen headers, ids with escaped colons, a 256-byte body.
fn forwarded_message() -> Frame {
    Frame::new(Command::Message)
        .header("subscription", "stompbox-network-1")
        .header("destination", "/queue/bench.hop1.np")
        .header("message-id", "ID:a-1796408695875:1:42")
        .header("ack", "a-1796408695875:1:42")
        .header("expires", "0")
        .header("priority", "4")
        .header("stompbox-bench-producer", "p0")
        .header("stompbox-bench-seq", "41872")
        .header("stompbox-bench-sent-us", "1796408695875123")
        .header("timestamp", "1796408695875")
        .header("stompbox-broker-path", "a")
        .header("stompbox-network-id", "a:ID:a-1796408695875:1:42")
        .with_body(vec![b'x'; 256])
}

/// A 64 KiB binary body (NULs included) with `content-length`.
fn big_send() -> Frame {
    let body: Vec<u8> = (0..BIG_BODY_BYTES).map(|i| (i % 251) as u8).collect();
    Frame::new(Command::Send)
        .header("destination", "/queue/blobs")
        .header("content-length", BIG_BODY_BYTES.to_string())
        .with_body(body)
}

/// A 64 KiB body without `content-length`, so the decoder scans it for its NUL. Written by
/// hand: the encoder always adds `content-length` to a body.
fn nul_terminated_send() -> Vec<u8> {
    let mut wire = b"SEND\ndestination:/queue/blobs\n\n".to_vec();
    wire.extend((0..BIG_BODY_BYTES).map(|i| (i % 255) as u8 + 1));
    wire.push(0);
    wire
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = decode, encode_frames
}
criterion_main!(benches);
