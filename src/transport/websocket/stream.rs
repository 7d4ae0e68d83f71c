//! A WebSocket connection as a plain byte stream, so STOMP runs over it exactly as over TCP.
//!
//! Reading: the payloads of the client's data frames (text or binary, whole messages or
//! fragments) are handed on as they arrive, unmasked, without waiting for a frame or message
//! to be complete. So a WebSocket connection holds no more than a small read buffer of its own
//! here, and every STOMP frame, however it is cut into WebSocket frames and messages, lands in
//! the session's read buffer under the same limits and the same large-frames budget as a TCP
//! connection's (`session/frame_budget.rs`). A library that collects whole messages first
//! (tungstenite's `WebSocket`) would hold up to a message outside that budget on every
//! connection; this module uses tungstenite for the frame header format and masking only.
//!
//! Pings are answered with pongs, pongs ignored, a close answered with a close and then read
//! as the end of the stream. Frames that break RFC 6455 (unmasked, reserved bits or opcodes,
//! a fragmented or oversized control frame, a continuation with no message open) are a read
//! error: the session then closes the connection.
//!
//! Writing: each write becomes one WebSocket frame (a text frame when the bytes are UTF-8,
//! binary otherwise) whose payload is those bytes; a write the socket takes only in part
//! leaves the frame open, and the next bytes written complete it. The session writes whole
//! STOMP frames, so each WebSocket message carries one or more whole STOMP frames, which every
//! STOMP-over-WebSocket client reads (stomp.js, @stomp/stompjs, stomp.py's websocket
//! transport). Pongs and the closing frame go out between data frames, never inside one.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Bytes read from the socket per read call (the read buffer's size; payloads pass through it).
const READ_CHUNK: usize = 16 * 1024;

/// Bytes read per read call when no large payload is arriving.
const SMALL_READ: usize = 4 * 1024;

/// Bytes of control frames (pongs) owed to a client past which it is not read until they
/// are written.
const MAX_CONTROL_BACKLOG: usize = 4 * 1024;

/// Longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Close status codes (RFC 6455, 7.4.1).
const CLOSE_NORMAL: u16 = 1000;

/// A data frame whose payload is being handed on.
#[derive(Debug, Clone, Copy)]
struct Incoming {
    /// Payload bytes still to come.
    left: u64,
    mask: [u8; 4],
    /// Payload bytes already unmasked (where the mask continues).
    offset: usize,
}

/// A data frame being written.
#[derive(Debug)]
struct Outgoing {
    header: [u8; 10],
    header_len: usize,
    header_sent: usize,
    /// Payload bytes still owed.
    left: u64,
}

/// A WebSocket server connection over `S`, read and written as a byte stream.
#[derive(Debug)]
pub struct WsStream<S> {
    inner: S,
    /// Bytes read from the socket and not yet consumed.
    raw: BytesMut,
    /// The data frame being read, if its header has been read and payload is left.
    incoming: Option<Incoming>,
    /// A fragmented data message is open (its first frame had FIN unset).
    in_message: bool,
    /// The client sent a close frame, or the socket ended: reads return end of stream.
    read_closed: bool,
    /// The data frame being written.
    outgoing: Option<Outgoing>,
    /// Control frames (pongs, the close) waiting to be written between data frames.
    control: BytesMut,
    /// A close frame has been queued; nothing more may be sent after it.
    close_queued: bool,
}

fn protocol_error(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("WebSocket protocol error: {why}"),
    )
}

/// Unmasks (or masks) `buf`, whose first byte is payload byte number `offset` of the frame.
fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let rotated = [
        mask[offset % 4],
        mask[(offset + 1) % 4],
        mask[(offset + 2) % 4],
        mask[(offset + 3) % 4],
    ];
    let word = u32::from_ne_bytes(rotated);
    let mut chunks = buf.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (byte, m) in chunks.into_remainder().iter_mut().zip(rotated) {
        *byte ^= m;
    }
}

/// Appends an unmasked server frame (`FIN` set) to `out`.
fn put_frame(out: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut w = out.writer();
    // Writing into a BytesMut cannot fail.
    let _ = header.format(payload.len() as u64, &mut w);
    w.into_inner().extend_from_slice(payload);
}

impl<S> WsStream<S> {
    /// Wraps a connection whose opening handshake is done; `initial` holds bytes read past the
    /// handshake (the client may send its first frames right behind its request).
    pub fn new(inner: S, initial: BytesMut) -> WsStream<S> {
        WsStream {
            inner,
            raw: initial,
            incoming: None,
            in_message: false,
            read_closed: false,
            outgoing: None,
            control: BytesMut::new(),
            close_queued: false,
        }
    }

    /// Queues the close frame (once), with `code`.
    fn queue_close(&mut self, code: u16) {
        if !self.close_queued {
            self.close_queued = true;
            put_frame(
                &mut self.control,
                OpCode::Control(Control::Close),
                &code.to_be_bytes(),
            );
        }
    }

    /// Handles a complete control frame's (unmasked) payload.
    fn control_frame(&mut self, control: Control, payload: &[u8]) -> io::Result<()> {
        match control {
            Control::Ping => {
                if !self.close_queued {
                    put_frame(&mut self.control, OpCode::Control(Control::Pong), payload);
                }
            }
            Control::Pong => {}
            Control::Close => {
                // Echo the client's status code (RFC 6455, 5.5.1); none given: 1000.
                let code = match payload {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => CLOSE_NORMAL,
                };
                self.queue_close(code);
                self.read_closed = true;
            }
            Control::Reserved(op) => return Err(protocol_error(&format!("opcode {op:#x}"))),
        }
        Ok(())
    }

    /// Parses what `raw` holds after the current frame: one frame header (and a whole control
    /// frame). Returns false when more bytes are needed.
    fn parse_next(&mut self) -> io::Result<bool> {
        let mut cursor = Cursor::new(&self.raw[..]);
        let Some((header, len)) =
            FrameHeader::parse(&mut cursor).map_err(|e| protocol_error(&e.to_string()))?
        else {
            return Ok(false);
        };
        let header_len = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(protocol_error(
                "reserved bits set (no extension was agreed)",
            ));
        }
        let Some(mask) = header.mask else {
            return Err(protocol_error("a client frame must be masked"));
        };
        match header.opcode {
            OpCode::Control(control) => {
                if !header.is_final || len > MAX_CONTROL_PAYLOAD {
                    return Err(protocol_error(
                        "control frames are at most 125 bytes, unfragmented",
                    ));
                }
                let total = header_len + len as usize;
                if self.raw.len() < total {
                    return Ok(false);
                }
                self.raw.advance(header_len);
                let mut payload = self.raw.split_to(len as usize);
                unmask(&mut payload, mask, 0);
                self.control_frame(control, &payload)?;
            }
            OpCode::Data(data) => {
                match (data, self.in_message) {
                    (Data::Continue, false) => {
                        return Err(protocol_error("continuation frame with no message open"))
                    }
                    (Data::Text | Data::Binary, true) => {
                        return Err(protocol_error("new message before the last one ended"))
                    }
                    (Data::Reserved(op), _) => {
                        return Err(protocol_error(&format!("opcode {op:#x}")))
                    }
                    _ => {}
                }
                self.in_message = !header.is_final;
                self.raw.advance(header_len);
                if len > 0 {
                    self.incoming = Some(Incoming {
                        left: len,
                        mask,
                        offset: 0,
                    });
                }
            }
        }
        Ok(true)
    }

    /// Whether no data frame is half written (control frames may go out).
    fn between_frames(&self) -> bool {
        self.outgoing.is_none()
    }
}

impl<S: AsyncWrite + Unpin> WsStream<S> {
    /// Writes queued control frames, if no data frame is half written.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.between_frames() && !self.control.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.control))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.control.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Pongs and a close reply go out as soon as the write side is between frames;
            // a socket that does not take them now keeps them queued for the next write.
            if !this.control.is_empty() {
                match this.poll_control(cx) {
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // A client that pings and never reads would otherwise grow the pongs
                    // owed to it without end: stop reading it until they are written (the
                    // write side's waker is registered).
                    Poll::Pending if this.control.len() > MAX_CONTROL_BACKLOG => {
                        return Poll::Pending
                    }
                    _ => {}
                }
            }
            if let Some(mut frame) = this.incoming {
                if !this.raw.is_empty() {
                    let n = (this.raw.len() as u64).min(frame.left) as usize;
                    let n = n.min(buf.remaining());
                    let mut chunk = this.raw.split_to(n);
                    unmask(&mut chunk, frame.mask, frame.offset);
                    buf.put_slice(&chunk);
                    frame.left -= n as u64;
                    frame.offset += n;
                    this.incoming = (frame.left > 0).then_some(frame);
                    return Poll::Ready(Ok(()));
                }
            } else if this.read_closed {
                return Poll::Ready(Ok(()));
            } else if this.parse_next()? {
                continue;
            }
            // More bytes are needed: of a payload, or of a header or control frame (at most
            // 14 + 125 bytes), so the buffer never grows past one chunk. Small until a large
            // payload streams through, as an idle connection's should be.
            let want = match this.incoming {
                Some(f) => (f.left as usize).clamp(SMALL_READ, READ_CHUNK),
                None => SMALL_READ,
            };
            if this.raw.capacity() - this.raw.len() < want / 2 {
                this.raw.reserve(want);
            }
            let before = this.raw.len();
            let spare = this.raw.spare_capacity_mut();
            let mut rb = ReadBuf::uninit(spare);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                this.read_closed = true;
                if this.incoming.is_some() || this.in_message || !this.raw.is_empty() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a WebSocket frame",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
            // SAFETY: the inner reader initialised `n` bytes of the spare capacity.
            unsafe { this.raw.set_len(before + n) };
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.outgoing.is_none() {
            ready!(this.poll_control(cx))?;
            if this.close_queued {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "WebSocket closed",
                )));
            }
            let data = match std::str::from_utf8(buf) {
                Ok(_) => Data::Text,
                Err(_) => Data::Binary,
            };
            let header = FrameHeader {
                opcode: OpCode::Data(data),
                ..FrameHeader::default()
            };
            let mut bytes = [0u8; 10];
            let mut w = Cursor::new(&mut bytes[..]);
            header
                .format(buf.len() as u64, &mut w)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let header_len = w.position() as usize;
            this.outgoing = Some(Outgoing {
                header: bytes,
                header_len,
                header_sent: 0,
                left: buf.len() as u64,
            });
        }
        let Some(out) = this.outgoing.as_mut() else {
            unreachable!("a frame was just started");
        };
        while out.header_sent < out.header_len {
            let n = ready!(Pin::new(&mut this.inner)
                .poll_write(cx, &out.header[out.header_sent..out.header_len]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.header_sent += n;
        }
        let take = (buf.len() as u64).min(out.left) as usize;
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..take]))?;
        out.left -= n as u64;
        if out.left == 0 {
            this.outgoing = None;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_control(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // A frame cut short cannot be followed by a close frame: just end the connection.
        if this.between_frames() {
            this.queue_close(CLOSE_NORMAL);
            ready!(this.poll_control(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A masked client frame.
    fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let header = FrameHeader {
            is_final: fin,
            opcode,
            mask: Some(mask),
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        header.format(payload.len() as u64, &mut out).unwrap();
        let mut body = payload.to_vec();
        unmask(&mut body, mask, 0);
        out.extend_from_slice(&body);
        out
    }

    const TEXT: OpCode = OpCode::Data(Data::Text);
    const BINARY: OpCode = OpCode::Data(Data::Binary);
    const CONTINUE: OpCode = OpCode::Data(Data::Continue);

    /// Reads everything the stream yields from `wire` (fed in pieces of `piece` bytes) until
    /// end of stream or an error.
    async fn read_all(wire: Vec<u8>, piece: usize) -> (Vec<u8>, Option<io::Error>, Vec<u8>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (mut client_rx, mut client_tx) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            // The server may stop reading (and drop its end) at an error: writes then fail.
            for chunk in wire.chunks(piece.max(1)) {
                if client_tx.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            let _ = client_tx.shutdown().await;
        });
        let mut ws = WsStream::new(server, BytesMut::new());
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        let err = loop {
            match ws.read(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e),
            }
        };
        let _ = ws.shutdown().await;
        drop(ws);
        writer.await.unwrap();
        let mut back = Vec::new();
        client_rx.read_to_end(&mut back).await.unwrap();
        (got, err, back)
    }

    #[tokio::test]
    async fn payloads_of_every_shape_come_through_as_one_stream() {
        let mut wire = Vec::new();
        wire.extend(client_frame(
            TEXT,
            true,
            b"SEND\ndestination:/queue/a\n\nhi\0",
        ));
        // One STOMP frame over a fragmented message, with a ping in the middle.
        wire.extend(client_frame(BINARY, false, b"SEND\ndest"));
        wire.extend(client_frame(OpCode::Control(Control::Ping), true, b"p"));
        wire.extend(client_frame(CONTINUE, false, b""));
        wire.extend(client_frame(CONTINUE, true, b"ination:/queue/b\n\n\xff\0"));
        // Two STOMP frames in one message.
        wire.extend(client_frame(TEXT, true, b"\nA\n\n\0B\n\n\0"));
        let expected: &[u8] =
            b"SEND\ndestination:/queue/a\n\nhi\0SEND\ndestination:/queue/b\n\n\xff\0\nA\n\n\0B\n\n\0";
        for piece in [1, 2, 3, 5, 13, 1 << 20] {
            let (got, err, back) = read_all(wire.clone(), piece).await;
            assert!(err.is_none(), "piece {piece}: {err:?}");
            assert_eq!(got, expected, "piece {piece}");
            // The pong (unmasked, FIN, opcode 0xA, payload "p") then the close (1000).
            assert_eq!(back, b"\x8a\x01p\x88\x02\x03\xe8", "piece {piece}");
        }
    }

    #[tokio::test]
    async fn a_large_frame_passes_through_without_being_collected() {
        let payload: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let wire = client_frame(BINARY, true, &payload);
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_rx, mut tx) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            tx.write_all(&wire).await.unwrap();
            tx.shutdown().await.unwrap();
        });
        let mut ws = WsStream::new(server, BytesMut::new());
        let mut got = Vec::with_capacity(payload.len());
        let mut buf = vec![0u8; 100_000];
        loop {
            let n = ws.read(&mut buf).await.unwrap();
            // What the stream holds itself stays one read chunk, however large the frame.
            assert!(ws.raw.capacity() <= 2 * READ_CHUNK, "{}", ws.raw.capacity());
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert!(got == payload);
    }

    #[tokio::test]
    async fn a_client_that_pings_and_never_reads_is_not_read_without_end() {
        let (client, server) = tokio::io::duplex(1024);
        let (_rx, mut tx) = tokio::io::split(client);
        let ping = client_frame(OpCode::Control(Control::Ping), true, &[7; 100]);
        let writer = tokio::spawn(async move {
            for _ in 0..2000 {
                if tx.write_all(&ping).await.is_err() {
                    return;
                }
            }
        });
        let mut ws = WsStream::new(server, BytesMut::new());
        let mut buf = [0u8; 64];
        // The pongs cannot be written (nobody reads them): once a few KiB are owed, the
        // stream stops reading instead of queueing more.
        let read = tokio::time::timeout(Duration::from_millis(300), ws.read(&mut buf)).await;
        assert!(read.is_err(), "a read finished: {read:?}");
        assert!(
            ws.control.len() <= MAX_CONTROL_BACKLOG + 128,
            "{}",
            ws.control.len()
        );
        assert!(!writer.is_finished(), "all 2,000 pings were taken in");
        writer.abort();
    }

    #[tokio::test]
    async fn a_close_ends_the_stream_and_is_echoed() {
        let mut wire = client_frame(TEXT, true, b"x");
        wire.extend(client_frame(
            OpCode::Control(Control::Close),
            true,
            &1001u16.to_be_bytes(),
        ));
        wire.extend(client_frame(TEXT, true, b"after close"));
        let (got, err, back) = read_all(wire, 4).await;
        assert!(err.is_none());
        assert_eq!(got, b"x");
        assert_eq!(back, b"\x88\x02\x03\xe9");
    }

    #[tokio::test]
    async fn protocol_violations_are_read_errors() {
        let unmasked = {
            let mut f = Vec::new();
            FrameHeader {
                opcode: TEXT,
                ..FrameHeader::default()
            }
            .format(1, &mut f)
            .unwrap();
            f.push(b'x');
            f
        };
        let mut rsv = client_frame(TEXT, true, b"x");
        rsv[0] |= 0x40;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", unmasked),
            ("reserved bit", rsv),
            ("continuation first", client_frame(CONTINUE, true, b"x")),
            (
                "long ping",
                client_frame(OpCode::Control(Control::Ping), true, &[0; 126]),
            ),
            (
                "fragmented ping",
                client_frame(OpCode::Control(Control::Ping), false, b""),
            ),
            (
                "reserved opcode",
                client_frame(OpCode::Data(Data::Reserved(3)), true, b""),
            ),
            ("new message inside one", {
                let mut w = client_frame(TEXT, false, b"a");
                w.extend(client_frame(TEXT, true, b"b"));
                w
            }),
            (
                "cut short",
                client_frame(TEXT, true, b"abcdef")[..5].to_vec(),
            ),
        ];
        for (name, wire) in cases {
            let (_, err, _) = read_all(wire, 3).await;
            assert!(err.is_some(), "{name}: expected an error");
        }
    }

    #[tokio::test]
    async fn writes_become_text_or_binary_frames_and_partial_writes_continue_one() {
        let (client, server) = tokio::io::duplex(8);
        let mut ws = WsStream::new(server, BytesMut::new());
        let (mut rx, _tx) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            rx.read_to_end(&mut all).await.unwrap();
            all
        });
        let big = vec![b'm'; 300];
        ws.write_all(b"MESSAGE\n\n\0").await.unwrap();
        ws.write_all(&[0xff, 0]).await.unwrap();
        // Through an 8-byte pipe: the socket takes it in pieces, still one frame.
        ws.write_all(&big).await.unwrap();
        ws.shutdown().await.unwrap();
        drop(ws);
        let all = reader.await.unwrap();
        let mut expected = vec![0x81, 10];
        expected.extend_from_slice(b"MESSAGE\n\n\0");
        expected.extend_from_slice(&[0x82, 2, 0xff, 0]);
        expected.extend_from_slice(&[0x81, 126, 1, 44]);
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\x88\x02\x03\xe8");
        assert_eq!(all, expected);
    }
}
