//! One TCP connection to one broker: the CONNECT handshake, buffered frame writes, frame reads
//! and heart-beats. It knows nothing of failover; [`super::Client`] replaces a broken
//! connection with a new one.
//!
//! Heart-beats are driven by the caller's awaits: while a read or a flush is pending, the
//! connection sends an EOL when it has written nothing for the negotiated interval and fails
//! with [`ClientError::HeartbeatTimeout`] when the broker has been silent for twice its
//! interval. A client that awaits nothing for longer than its interval should not ask for
//! heart-beats.

use std::io::ErrorKind;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ClientError, ConnectOptions};
use crate::codec::{encode_into, Command, Decoder, Frame, Version};
use crate::limits::Limits;

/// Buffered frames are written once this many bytes wait, or when the caller waits for an
/// answer; small frames sent flat out then share one write(2).
const FLUSH_BYTES: usize = 32 * 1024;

/// Initial read buffer; it grows only while a larger frame is in flight.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What a flush reads at most while the socket is not writable (frames the caller has not
/// taken yet): beyond it the flush only waits to write.
const FLUSH_READ_BYTES: usize = 64 * 1024 * 1024;

/// How many silent broker intervals we tolerate before declaring the connection dead. The
/// spec leaves the grace to the receiver; 2 is the usual client choice (stomp.py, stompit).
const HEARTBEAT_GRACE: u32 = 2;

/// An open, CONNECTED connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written.
    wpos: usize,
    version: Version,
    /// We must write something at least this often (negotiated), if at all.
    send_every: Option<Duration>,
    /// The broker writes something at least this often (negotiated), if at all.
    expect_every: Option<Duration>,
    last_write: Instant,
    last_read: Instant,
    /// The CONNECTED `server` header, if any.
    server: Option<String>,
    broker_name: Option<String>,
    /// See [`ConnectOptions::write_timeout`].
    write_timeout: Option<Duration>,
}

impl Connection {
    /// Connects to `addr` and completes the STOMP handshake within `options.connect_timeout`.
    pub async fn open(addr: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        tokio::time::timeout(options.connect_timeout, Self::handshake(addr, options))
            .await
            .map_err(|_| ClientError::ConnectTimeout(addr.to_string()))?
    }

    async fn handshake(addr: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let now = Instant::now();
        let mut conn = Connection {
            stream,
            decoder: Decoder::new(Limits::default()),
            rbuf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            wbuf: Vec::with_capacity(FLUSH_BYTES * 2),
            wpos: 0,
            version: Version::V1_0,
            send_every: None,
            expect_every: None,
            last_write: now,
            last_read: now,
            server: None,
            broker_name: None,
            write_timeout: options.write_timeout,
        };
        let (cx, cy) = options.heart_beat;
        let mut connect = Frame::new(Command::Connect)
            .header("accept-version", "1.0,1.1,1.2")
            .header("host", options.host.as_str())
            .header(
                "heart-beat",
                format!("{},{}", cx.as_millis(), cy.as_millis()),
            );
        if let Some(login) = &options.login {
            connect = connect.header("login", login.as_str());
        }
        if let Some(passcode) = &options.passcode {
            connect = connect.header("passcode", passcode.as_str());
        }
        if let Some(token) = &options.bridge_token {
            connect = connect.header(crate::network::status::BRIDGE_TOKEN, token.as_str());
        }
        if let Some(client_id) = &options.client_id {
            connect = connect.header("client-id", client_id.as_str());
        }
        conn.queue(&connect);
        let reply = conn.read_frame(None).await?.ok_or(ClientError::Closed)?;
        match reply.command {
            Command::Connected => {}
            Command::Error => return Err(ClientError::from_error_frame(&reply)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected CONNECTED, got {other}"
                )))
            }
        }
        conn.version = match reply.get("version") {
            None => Version::V1_0,
            Some(v) => Version::parse(v).ok_or_else(|| {
                ClientError::Protocol(format!("broker chose unknown version {v:?}"))
            })?,
        };
        conn.decoder.set_version(conn.version);
        conn.server = reply.get("server").map(str::to_string);
        conn.broker_name = reply
            .get(crate::message::network::BROKER_NAME)
            .map(str::to_string);
        if let Some((sx, sy)) = reply.get("heart-beat").and_then(parse_heart_beat) {
            // Spec 1.2 "Heart-beating": each side's interval is the larger of what one
            // offers and the other wants, and zero on either side disables that direction.
            if !cx.is_zero() && !sy.is_zero() {
                conn.send_every = Some(cx.max(sy));
            }
            if !cy.is_zero() && !sx.is_zero() {
                conn.expect_every = Some(cy.max(sx));
            }
        }
        Ok(conn)
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The broker's `server` header from CONNECTED.
    pub fn server(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// The broker's name in a network of brokers (stompbox's CONNECTED says it).
    pub fn broker_name(&self) -> Option<&str> {
        self.broker_name.as_deref()
    }

    /// Appends `frame` to the write buffer. Nothing is written until [`Connection::write`]
    /// decides the buffer is large enough, or a flush or read happens.
    pub fn queue(&mut self, frame: &Frame) {
        encode_into(&mut self.wbuf, frame, self.version);
    }

    /// Queues `frame` and writes the buffer if it has grown past [`FLUSH_BYTES`].
    pub async fn write(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.queue(frame);
        if self.wbuf.len() - self.wpos >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes everything buffered. While the socket is not writable it keeps reading into the
    /// read buffer, so a broker that is blocked writing to us (receipts, messages) can never
    /// deadlock with us blocked writing to it; up to [`FLUSH_READ_BYTES`], so that a broker
    /// that writes and never reads cannot make it grow without bound. With a `write_timeout`,
    /// a broker that takes no byte for that long is given up ([`ClientError::WriteStalled`])
    /// rather than waited for forever.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        let stall_after = self.write_timeout;
        let mut progress = Instant::now();
        while self.wpos < self.wbuf.len() {
            let stalled = async {
                match stall_after {
                    Some(after) => tokio::time::sleep_until(progress + after).await,
                    None => std::future::pending().await,
                }
            };
            let read_more = self.rbuf.len() < FLUSH_READ_BYTES;
            tokio::select! {
                ready = self.stream.writable() => {
                    ready?;
                    match self.stream.try_write(&self.wbuf[self.wpos..]) {
                        Ok(0) => return Err(ClientError::Closed),
                        Ok(n) => {
                            self.wpos += n;
                            progress = Instant::now();
                            self.last_write = progress;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                ready = self.stream.readable(), if read_more => {
                    ready?;
                    self.try_fill()?;
                }
                _ = stalled => {
                    return Err(ClientError::WriteStalled(stall_after.unwrap_or_default()));
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// The next frame, waiting until `deadline` (`None`: no deadline) for it; `Ok(None)` when
    /// the deadline passes first. Buffered writes are flushed first, and heart-beats are sent
    /// and checked while waiting.
    pub async fn read_frame(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(Some(frame));
            }
            self.flush().await?;
            let now = Instant::now();
            if let Some(every) = self.expect_every {
                if now.duration_since(self.last_read) > every * HEARTBEAT_GRACE {
                    return Err(ClientError::HeartbeatTimeout(every * HEARTBEAT_GRACE));
                }
            }
            if let Some(every) = self.send_every {
                if now.duration_since(self.last_write) >= every {
                    self.wbuf.push(b'\n');
                    self.flush().await?;
                }
            }
            // A flush reads while the socket is not writable: what it read may hold a whole
            // frame, and the socket may have nothing more to wake us with.
            if let Some(frame) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(Some(frame));
            }
            let wake = [
                deadline,
                self.send_every.map(|e| self.last_write + e),
                self.expect_every
                    .map(|e| self.last_read + e * HEARTBEAT_GRACE + Duration::from_millis(1)),
            ]
            .into_iter()
            .flatten()
            .min();
            match wake {
                Some(wake) => {
                    tokio::select! {
                        ready = self.stream.readable() => {
                            ready?;
                            self.try_fill()?;
                        }
                        _ = tokio::time::sleep_until(wake) => {
                            if deadline.is_some_and(|d| Instant::now() >= d) {
                                return Ok(None);
                            }
                        }
                    }
                }
                None => {
                    self.stream.readable().await?;
                    self.try_fill()?;
                }
            }
        }
    }

    /// A frame already in the read buffer, without any I/O.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        Ok(self.decoder.decode(&mut self.rbuf)?)
    }

    /// A frame already received, without waiting: decodes what is buffered and reads what the
    /// socket holds. Producers call it between sends to pick up receipts and ERROR frames.
    pub fn try_read_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        if let Some(frame) = self.decoder.decode(&mut self.rbuf)? {
            return Ok(Some(frame));
        }
        if self.try_fill()? {
            return Ok(self.decoder.decode(&mut self.rbuf)?);
        }
        Ok(None)
    }

    /// Reads whatever the socket holds without blocking. Returns whether anything was read;
    /// end of stream is [`ClientError::Closed`].
    fn try_fill(&mut self) -> Result<bool, ClientError> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(READ_BUFFER_BYTES);
        }
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Err(ClientError::Closed),
            Ok(_) => {
                self.last_read = Instant::now();
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Parses `heart-beat:x,y` into two durations.
fn parse_heart_beat(value: &str) -> Option<(Duration, Duration)> {
    let (x, y) = value.split_once(',')?;
    Some((
        Duration::from_millis(x.trim().parse().ok()?),
        Duration::from_millis(y.trim().parse().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame that arrives while the client is flushing a large write is read into the
    /// buffer by the flush; the read that follows must return it rather than wait for more
    /// bytes that never come. (A network bridge stalled on this: its ACKs were being flushed
    /// when the last MESSAGE of a stream arrived.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_frame_read_during_a_flush_is_returned() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"CONNECT"));
            s.write_all(b"CONNECTED\nversion:1.2\n\n\0").await.unwrap();
            // The client is now writing more than the socket buffers hold: send the one
            // frame it waits for, then let its write drain, and send nothing more.
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.write_all(b"MESSAGE\ndestination:/queue/a\nmessage-id:1\nsubscription:s\n\nhi\0")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            while s.read(&mut buf).await.unwrap() > 0 {}
        });
        let mut conn = Connection::open(&addr, &ConnectOptions::default())
            .await
            .unwrap();
        let big = Frame::new(Command::Send)
            .header("destination", "/queue/big")
            .with_body(vec![b'x'; 64 * 1024 * 1024]);
        conn.queue(&big);
        let frame = tokio::time::timeout(Duration::from_secs(20), conn.read_frame(None))
            .await
            .expect("the MESSAGE read during the flush is returned")
            .unwrap()
            .unwrap();
        assert_eq!(frame.command, Command::Message);
        assert_eq!(&frame.body[..], b"hi");
        drop(conn);
        server.await.unwrap();
    }

    /// A broker that keeps its side alive (heart-beats) but never reads: a flush that cannot
    /// write ends with `WriteStalled` after the `write_timeout`, instead of waiting forever. (A network bridge to such a peer
    /// hung for good before.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_broker_that_never_reads_fails_the_flush() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"CONNECT"));
            s.write_all(b"CONNECTED\nversion:1.2\nheart-beat:50,50\n\n\0")
                .await
                .unwrap();
            // Heart-beats, and never a read.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {
                        if s.write_all(b"\n").await.is_err() {
                            return;
                        }
                    }
                    _ = &mut stopped => return,
                }
            }
        });
        let options = ConnectOptions {
            heart_beat: (Duration::from_millis(50), Duration::from_millis(50)),
            write_timeout: Some(Duration::from_millis(200)),
            ..ConnectOptions::default()
        };
        let mut conn = Connection::open(&addr, &options).await.unwrap();
        let big = Frame::new(Command::Send)
            .header("destination", "/queue/big")
            .with_body(vec![b'x'; 64 * 1024 * 1024]);
        conn.queue(&big);
        let outcome = tokio::time::timeout(Duration::from_secs(60), conn.flush())
            .await
            .expect("the flush gives up on a broker that never reads");
        assert!(
            matches!(outcome, Err(ClientError::WriteStalled(_))),
            "{outcome:?}"
        );
        assert!(ClientError::WriteStalled(Duration::ZERO).is_transport());
        let _ = stop.send(());
        server.await.unwrap();
    }

    #[test]
    fn heart_beat_header() {
        assert_eq!(
            parse_heart_beat("0, 1000"),
            Some((Duration::ZERO, Duration::from_secs(1)))
        );
        assert_eq!(parse_heart_beat("10"), None);
        assert_eq!(parse_heart_beat("a,b"), None);
    }
}
