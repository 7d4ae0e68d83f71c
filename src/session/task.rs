//! The thin tokio driver of one connection: moves bytes between the socket, the decoder and
//! [`Session`], posts the commands the session queues, reads the clock and runs the connect and
//! heart-beat timers. All protocol decisions are made in the sans-IO session (`state.rs` and
//! the files it dispatches to); this is the only part of a session that does I/O.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use log::{debug, info};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::state::{Phase, Post, Session};
use super::{Error, Services, StoreCommit};
use crate::clock::now_ms;
use crate::codec::Decoder;
use crate::limits::{INITIAL_READ_BUFFER_BYTES, READ_CHUNK_BYTES};
use crate::message::{Router, SessionId, StoredMessage, ToOwner, ToSession};
use crate::store::{Reply, Request};

/// Owner answers taken from the channel in one go before the driver writes again.
const ANSWER_BATCH: usize = 256;

/// Everything a connection needs from its shard.
pub struct SessionContext {
    pub id: SessionId,
    pub services: Arc<Services>,
    pub shutdown: watch::Receiver<bool>,
    /// A label for logs, e.g. the peer address.
    pub peer: String,
    /// Bytes already read from the connection (after a PROXY header).
    pub initial: BytesMut,
    /// The client's address (the PROXY header's, behind a load balancer).
    pub ip: Option<std::net::IpAddr>,
    /// The subject of the client certificate verified at the TLS handshake, if any.
    pub certificate: Option<crate::security::subject::Subject>,
}

/// Serves one client connection until it closes. Never panics on client input.
pub async fn run<S>(stream: S, ctx: SessionContext)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = ctx.services.config.clone();
    let mut session = Session::new(ctx.id, &ctx.services, tx);
    session.set_peer(&ctx.peer);
    session.set_peer_ip(ctx.ip);
    session.set_certificate(ctx.certificate);
    let mut decoder = Decoder::new(config.limits.clone());
    let mut shutdown = ctx.shutdown.clone();
    let mut rbuf = ctx.initial;
    rbuf.reserve(INITIAL_READ_BUFFER_BYTES);
    // The size of the allocation behind `rbuf` (its `capacity()` shrinks as frames are taken
    // off its front, though the allocation stays).
    let mut allocated = rbuf.capacity();
    let mut writing = Bytes::new();
    // Written bytes the stream may still hold (TLS records rustls took but the socket did
    // not yet): flushed once nothing else is being written, or a MESSAGE or RECEIPT could
    // wait in the TLS layer until the next write, which may never come.
    let mut unflushed = false;
    let started = Instant::now();
    let mut last_read = started;
    let mut last_write = started;
    let conn = ctx.id.0;
    let grace = config.heart_beat.grace;
    let connect_timeout = config.connect_timeout();
    let mut closing_since: Option<Instant> = None;
    let linger = Duration::from_millis(config.shutdown_timeout_ms);

    // Bytes already read but not yet decoded (a PROXY header's tail, or frames left when the
    // session stopped reading mid-buffer).
    let mut pending = !rbuf.is_empty();
    // What this connection holds of the large-frames budget.
    let mut share = ctx.services.frames.share();
    let max_frame = config.limits.max_frame_bytes;
    let stall_timeout = Duration::from_millis(config.limits.frame_stall_timeout_ms);
    // Since when a frame holding budget has been read with no byte arriving.
    let mut stalled_since: Option<Instant> = None;
    loop {
        if pending && session.wants_read() {
            pending = pump(&mut decoder, &mut rbuf, &mut session, &ctx.peer, conn);
        }
        // The read buffer is sized for what comes next, once the budget covers it and the
        // SENDs past the producer window; until then the socket is not read. A closing
        // connection reads no more and gives its share back.
        let ending = session.phase() == Phase::Closing || session.failing();
        let wants = session.wants_read() && !ending;
        let (resize, mut charge) = plan_read_buffer(&rbuf, allocated, &decoder, max_frame, wants);
        if charge > 0 && session.phase() == Phase::Connecting {
            // Nothing before CONNECT may take a share: a CONNECT fits the allowance.
            session.fail(
                &Error::Limit("frame size before CONNECT", READ_ALLOWANCE_BYTES),
                decoder.receipt(),
            );
            charge = 0;
        }
        let covered = match ending || session.phase() == Phase::Connecting {
            true => share.cover(0),
            false => share.cover(charge + session.sends_past_window()),
        };
        let reading = wants && covered && session.phase() != Phase::Closing;
        match reading && charge > 0 && !stall_timeout.is_zero() {
            true => _ = stalled_since.get_or_insert_with(Instant::now),
            false => stalled_since = None,
        }
        // Silence is the client's fault only while we read it, or while we stopped because
        // it does not read what we write; not while flow control or the budget holds it.
        let unjudged = !reading && session.wants_answers();
        if unjudged {
            last_read = Instant::now();
        }
        if let (true, Some(size)) = (covered, resize) {
            // A buffer that grows does so in place when it can (frames taken off its front
            // leave room, as most reads of small frames find), else exactly as planned; one
            // cut back gets a new, smaller allocation.
            let grows = size > READ_CHUNK_BYTES || allocated <= 2 * READ_CHUNK_BYTES;
            if !(grows && size <= READ_ALLOWANCE_BYTES && rbuf.try_reclaim(size - rbuf.len())) {
                allocated = size;
                let mut resized = BytesMut::with_capacity(size);
                resized.extend_from_slice(&rbuf);
                rbuf = resized;
            }
        }
        if writing.is_empty() && session.has_output() {
            writing = session.take_output();
        }
        if session.phase() == Phase::Closing && writing.is_empty() {
            break;
        }
        // Everything the session queued since the last wait goes out before the next one:
        // an answer it waits for can only come once its command is posted.
        post(&mut session, &ctx.services);
        let deadline = next_deadline(
            &session,
            started,
            last_read,
            last_write,
            grace,
            connect_timeout,
        )
        .min(closing_since.map_or(far_future(), |t| t + linger))
        .min(stalled_since.map_or(far_future(), |t| t + stall_timeout));
        let answering = session.wants_answers();
        tokio::select! {
            r = reader.read_buf(&mut rbuf), if reading => {
                match r {
                    Ok(0) | Err(_) => {
                        debug!("conn={conn} peer closed");
                        break;
                    }
                    Ok(_) => {
                        last_read = Instant::now();
                        stalled_since = None;
                        pending = pump(&mut decoder, &mut rbuf, &mut session, &ctx.peer, conn);
                    }
                }
            }
            r = async {
                match writing.is_empty() {
                    false => writer.write(&writing).await.map(Some),
                    true => writer.flush().await.map(|()| None),
                }
            }, if !writing.is_empty() || (unflushed && !session.has_output()) => {
                match r {
                    Ok(Some(0)) | Err(_) => break,
                    Ok(Some(n)) => {
                        writing.advance(n);
                        session.wrote(n);
                        last_write = Instant::now();
                        unflushed = true;
                    }
                    Ok(None) => unflushed = false,
                }
            }
            answer = rx.recv(), if answering => {
                // The session holds a sender, so the channel never closes while we run.
                if let Some(a) = answer {
                    session.handle_answer(a);
                    for _ in 0..ANSWER_BATCH {
                        if !session.wants_answers() {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(a) => session.handle_answer(a),
                            Err(_) => break,
                        }
                    }
                }
            }
            // Budget freed for this connection's frame: size its buffer and read on.
            _ = share.granted(), if !covered => {}
            _ = shutdown.changed(), if closing_since.is_none() => {
                session.fail(&Error::ShuttingDown, None);
                closing_since = Some(Instant::now());
            }
            _ = sleep_until(deadline) => {
                let now = Instant::now();
                if closing_since.is_some_and(|t| now >= t + linger) {
                    if !session.failing() {
                        break;
                    }
                    // An ERROR waited this long for earlier receipts: send it without them.
                    session.give_up_waiting();
                    closing_since = Some(now);
                }
                if stalled_since.is_some_and(|t| now >= t + stall_timeout) {
                    info!("conn={conn} peer={} large frame stalled", ctx.peer);
                    metrics::counter!("stompbox_large_frame_stalls_total").increment(1);
                    let ms = stall_timeout.as_millis() as u64;
                    session.fail(&Error::FrameStalled(ms), decoder.receipt());
                    stalled_since = None;
                }
                match session.phase() {
                    Phase::Connecting if now >= started + connect_timeout => {
                        session.fail(&Error::ConnectTimeout(connect_timeout.as_millis() as u64), None);
                    }
                    Phase::Connected | Phase::Disconnecting => {
                        let hb = session.heart_beat();
                        if unjudged {
                            last_read = now;
                        }
                        let silence = now - last_read;
                        if hb.expect_ms > 0 && silence >= expect_window(hb.expect_ms, grace) {
                            info!("conn={conn} peer={} heart-beat timeout", ctx.peer);
                            session.fail(&Error::HeartBeatTimeout(silence.as_millis() as u64), None);
                        } else if hb.send_ms > 0
                            && writing.is_empty()
                            && !session.has_output()
                            && now - last_write >= send_interval(hb.send_ms)
                        {
                            session.write_heart_beat();
                        }
                    }
                    _ => {}
                }
                if session.phase() == Phase::Closing && closing_since.is_none() {
                    closing_since = Some(now);
                }
            }
        }
        session.flush_credits();
        if (session.phase() == Phase::Closing || session.failing()) && closing_since.is_none() {
            closing_since = Some(Instant::now());
        }
    }
    // Goodbye to the owners before the FIN: a client that sees the close may reconnect at
    // once, and its new frames must reach each owner after the Goodbye, or a queue can still
    // hand a message to this session's gone consumer (it is not lost: unwritten, it comes back
    // with the Goodbye, but the reconnected client's SUBSCRIBE would find it taken).
    session.close();
    post(&mut session, &ctx.services);
    // A client that reads nothing cannot hold the session (and a graceful shutdown) here:
    // TLS and WebSocket shutdowns write before they end.
    let _ = tokio::time::timeout(linger, writer.shutdown()).await;
    // Our side is shut (FIN) after the ERROR or the DISCONNECT's RECEIPT. Closing now with
    // bytes of the client's still unread would reset the connection, and a reset can discard
    // the ERROR before the client has read it: a client still writing the frame that was
    // refused (a body over max_body_bytes, a network bridge forwarding one) would see only a
    // broken pipe, and send it again. So what the client still sends is read and dropped
    // until it closes too, or is silent for CLOSE_DRAIN_IDLE, or CLOSE_DRAIN_MAX or
    // CLOSE_DRAIN_BYTES pass. Not when the broker stops: it does not wait for its clients.
    if !*shutdown.borrow() {
        drain(&mut reader).await;
    }
    debug!("conn={conn} closed");
}

/// See the end of [`run`].
const CLOSE_DRAIN_IDLE: Duration = Duration::from_millis(100);
const CLOSE_DRAIN_MAX: Duration = Duration::from_secs(2);
const CLOSE_DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Reads and drops what `reader` still delivers, within the bounds above.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let until = Instant::now() + CLOSE_DRAIN_MAX;
    let mut scratch = vec![0u8; 16 * 1024];
    let mut total = 0;
    while total < CLOSE_DRAIN_BYTES {
        let idle = (Instant::now() + CLOSE_DRAIN_IDLE).min(until);
        match tokio::time::timeout_at(idle, reader.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

/// Posts what the session queued, in order.
fn post(session: &mut Session, services: &Services) {
    for p in session.take_posts() {
        match p {
            Post::Owner(shard, cmd) => services.router.post(shard, cmd),
            Post::Authenticate(job) => services.auth.submit(job),
            Post::Store(commit) => {
                // The session queues store requests only when the services have a store.
                if let Some(store) = &services.store {
                    let _ = store.send(commit_request(commit, &services.router));
                }
            }
        }
    }
}

/// A COMMIT's store transaction with its reply. Once it is committed, the reply hands each
/// queue send to its owner (`ToOwner::Adopt`) and then tells the session. It runs on the
/// store writer thread, in commit order, so a queue adopts a send before any later page-in
/// can read its row; and before the session hears `Committed`, so nothing the session posts
/// after it overtakes the sends.
fn commit_request(commit: StoreCommit, router: &Arc<Router>) -> Request {
    let StoreCommit {
        sends,
        deletes,
        session,
        token,
    } = commit;
    let inserts = sends
        .iter()
        .map(|(key, _, message)| (key.clone(), message.clone()))
        .collect();
    let router = router.clone();
    let reply = Reply::new(move |result: Result<(), Arc<str>>| {
        if result.is_ok() {
            for (key, shard, message) in sends {
                let message = StoredMessage {
                    message,
                    redelivery_count: 0,
                };
                router.post(shard, ToOwner::Adopt { key, message });
            }
        }
        let _ = session.send(ToSession::Committed { token, result });
    });
    Request::Commit {
        sends: inserts,
        deletes,
        reply,
    }
}

/// Decodes and handles buffered frames until more bytes are needed (returns false), the
/// session stops reading (returns true: frames may remain), or the input is bad (the ERROR is
/// queued; returns false). The frames are stamped with one reading of the wall clock: they
/// arrived together.
fn pump(
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
    session: &mut Session,
    peer: &str,
    conn: u64,
) -> bool {
    let now = now_ms();
    loop {
        if !session.wants_read() {
            return !rbuf.is_empty();
        }
        match decoder.decode(rbuf) {
            Ok(Some(frame)) => {
                let cmd = frame.command;
                if let Err(e) = session.handle_frame(frame, now) {
                    info!("conn={conn} peer={peer} error on {cmd}: {}", e.message());
                    return false;
                }
                if decoder.version() != session.version() {
                    decoder.set_version(session.version());
                }
            }
            Ok(None) => return false,
            Err(e) => {
                let e = Error::from(e);
                info!("conn={conn} peer={peer} {}", e.message());
                session.fail(&e, decoder.receipt());
                return false;
            }
        }
    }
}

/// Bytes of read buffer each connection has without charge to the large-frames budget: room
/// for small frames, which never wait for the budget (frames of known length up to this
/// size, frames without `content-length` up to a chunk).
const READ_ALLOWANCE_BYTES: usize = 4 * READ_CHUNK_BYTES;

/// Plans the read buffer for what comes next: the size to give it, if it should change, and
/// the bytes charged for it to the large-frames budget (`session/frame_budget.rs`). It only
/// grows while the session `wants` to read.
///
/// A frame whose `content-length` is known gets room for exactly the rest of it, so the reads
/// that finish it never pull in the next frame: a producer that flow control then stops
/// reading has nothing of its next frame here, and a 10 MiB frame costs a 10 MiB buffer, not
/// the 16 MiB that doubling would reach; the whole frame is charged before any more of it is
/// read. A frame of unknown length (a header block being read, a body without
/// `content-length`) grows by doubling, never past `max_frame` and a chunk of room, and once
/// it outgrows a chunk it is charged that ceiling at once: charged piece by piece, frames
/// could each hold part of the budget and wait for more. The charge of a frame never rises
/// while it is read, so a connection never waits for budget in the middle of a frame it
/// holds budget for. A buffer grown for a large frame is given back once that frame is out,
/// so an idle or held connection keeps a chunk, not its largest frame. `allocated` is the
/// size of the allocation behind `rbuf` (its `capacity()` shrinks as frames are taken off
/// its front).
fn plan_read_buffer(
    rbuf: &BytesMut,
    allocated: usize,
    decoder: &Decoder,
    max_frame: usize,
    wants: bool,
) -> (Option<usize>, u64) {
    let len = rbuf.len();
    let spare = rbuf.capacity() - len;
    let unknown = decoder.length_unknown() && len > READ_CHUNK_BYTES;
    let ceiling = max_frame + READ_CHUNK_BYTES;
    let resize = match decoder.missing(rbuf) {
        Some(missing) if wants && missing > spare => Some(len + missing),
        Some(_) => None,
        None if allocated > 2 * READ_CHUNK_BYTES && len <= READ_CHUNK_BYTES => {
            Some(READ_CHUNK_BYTES)
        }
        None if wants && spare < 1024 && unknown => {
            Some(ceiling.min(2 * len.max(allocated)).max(len + 1024))
        }
        None if wants && spare < 1024 => Some(len + READ_CHUNK_BYTES),
        None => None,
    };
    let charge = match unknown {
        true => ceiling.max(allocated),
        false => resize.unwrap_or(allocated),
    };
    (resize, charge.saturating_sub(READ_ALLOWANCE_BYTES) as u64)
}

/// The client→broker window: the promised interval times the grace factor.
fn expect_window(expect_ms: u64, grace: f64) -> Duration {
    Duration::from_millis((expect_ms as f64 * grace) as u64)
}

/// Send a heart-beat a little before the interval is up, so network jitter does not make us
/// late by the peer's clock (a late heart-beat is what gets clients disconnected).
fn send_interval(send_ms: u64) -> Duration {
    Duration::from_millis(send_ms - send_ms / 10)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn next_deadline(
    session: &Session,
    started: Instant,
    last_read: Instant,
    last_write: Instant,
    grace: f64,
    connect_timeout: Duration,
) -> Instant {
    match session.phase() {
        Phase::Connecting => started + connect_timeout,
        Phase::Connected | Phase::Disconnecting => {
            let hb = session.heart_beat();
            let mut d = far_future();
            if hb.expect_ms > 0 {
                d = d.min(last_read + expect_window(hb.expect_ms, grace));
            }
            if hb.send_ms > 0 {
                d = d.min(last_write + send_interval(hb.send_ms));
            }
            d
        }
        Phase::Closing => far_future(),
    }
}
