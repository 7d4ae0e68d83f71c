//! How an accepted TCP connection becomes a session: the per-shard accept loop's step, the
//! connection slots (`limits.max_connections`, per-address limits), the PROXY header, then the
//! TLS handshake and the WebSocket upgrade for those listeners, and `session::run` over
//! whatever byte stream that gives.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use log::{debug, warn};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::runtime::Shared;
use crate::codec::{encode, Version};
use crate::message::SessionId;
use crate::security::subject::Subject;
use crate::session::{self, SessionContext};
use crate::transport::tls::Tls;
use crate::transport::{proxy, websocket, Kind, Rewind};

/// How connections of each listener kind get to a byte stream: the TLS acceptor and the
/// WebSocket listeners' handshake policies.
pub(super) struct Transports {
    pub(super) tls: Option<Arc<Tls>>,
    pub(super) ws: Option<Arc<websocket::Policy>>,
    pub(super) wss: Option<Arc<websocket::Policy>>,
}

/// Releases a connection slot when the connection ends.
struct ConnectionSlot(Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The next connection on any of a shard's listeners, trying them in turn from `next` so a
/// flood on one listener does not starve the others.
pub(super) async fn accept_any(
    listeners: &[(Kind, TcpListener)],
    next: &mut usize,
) -> (Kind, std::io::Result<(TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for k in 0..n {
            let i = (*next + k) % n;
            let (kind, listener) = &listeners[i];
            if let std::task::Poll::Ready(r) = listener.poll_accept(cx) {
                *next = (i + 1) % n;
                return std::task::Poll::Ready((*kind, r));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

pub(super) fn accept(
    shared: &Arc<Shared>,
    sessions: &mut JoinSet<()>,
    shutdown: &watch::Receiver<bool>,
    kind: Kind,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    // Reap half-open connections (peers gone behind a load balancer) even without heart-beats.
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    let _ = SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    let max = shared.config.limits.max_connections;
    if shared.connections.fetch_add(1, Ordering::Relaxed) >= max {
        shared.connections.fetch_sub(1, Ordering::Relaxed);
        warn!("peer={peer} refused: max_connections={max} reached");
        if kind != Kind::Stomp {
            // A TLS or WebSocket client would not understand a bare ERROR frame.
            return;
        }
        sessions.spawn_local(async move {
            let frame = session::Error::TooManyConnections(max).to_frame(None);
            let mut stream = stream;
            let _ = stream.write_all(&encode(&frame, Version::V1_0)).await;
            let _ = stream.shutdown().await;
        });
        return;
    }
    metrics::counter!("stompbox_connections_accepted_total").increment(1);
    let slot = ConnectionSlot(shared.clone());
    let id = SessionId(shared.next_session.fetch_add(1, Ordering::Relaxed));
    let services = shared.services.clone();
    let shutdown = shutdown.clone();
    let proxy = shared.config.proxy_protocol;
    let timeout = shared.config.connect_timeout();
    let shared = shared.clone();
    debug!("conn={} peer={peer} accepted on {}", id.0, kind.name());
    sessions.spawn_local(async move {
        let mut stream = stream;
        let (peer, ip, initial) = if proxy {
            match proxy::read_header(&mut stream, timeout).await {
                Ok((client, rest)) => {
                    let label = match client {
                        Some(c) => format!("{c} (via {peer})"),
                        None => peer.to_string(),
                    };
                    (label, client.unwrap_or(peer).ip(), rest)
                }
                Err(e) => {
                    warn!("conn={} peer={peer} refused: {e}", id.0);
                    return;
                }
            }
        } else {
            (peer.to_string(), peer.ip(), BytesMut::new())
        };
        // Per-address limits, on the real client's address (PROXY header) when there is one.
        let _address_slot = match shared.addresses.admit(ip, std::time::Instant::now()) {
            Ok(slot) => slot,
            Err(breach) => {
                refuse_address(id, &peer, kind, breach, stream).await;
                return;
            }
        };
        let peer = match kind {
            Kind::Stomp => peer,
            _ => format!("{peer} ({})", kind.name()),
        };
        let mut ctx = SessionContext {
            id,
            services,
            shutdown,
            peer,
            initial: BytesMut::new(),
            ip: Some(ip),
            certificate: None,
        };
        let t = &shared.transports;
        // The address the client reached (the WebSocket Origin check's "own" on 0.0.0.0).
        let local = stream.local_addr().ok().map(|a| a.ip());
        match kind {
            Kind::Stomp => session::run(stream, SessionContext { initial, ..ctx }).await,
            Kind::Ssl | Kind::Wss => {
                let Some(tls) = &t.tls else { return };
                let handshake = tls.acceptor().accept(Rewind::new(initial, stream));
                let stream = match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        warn!("conn={} peer={} TLS handshake failed: {e}", id.0, ctx.peer);
                        return;
                    }
                    Err(_) => {
                        warn!(
                            "conn={} peer={} no TLS handshake within {timeout:?}",
                            id.0, ctx.peer
                        );
                        return;
                    }
                };
                ctx.certificate = client_certificate(stream.get_ref().1, id, &ctx.peer);
                // Boxed, as the WebSocket one below: a connection's task is as large as its
                // largest branch, so inline these made every plain STOMP connection carry
                // the room of a TLS or WebSocket session (8.1 KB of task instead of 3.8 KB).
                match kind {
                    Kind::Wss => {
                        Box::pin(serve_websocket(
                            stream,
                            BytesMut::new(),
                            t.wss.as_deref(),
                            ctx,
                            timeout,
                            local,
                        ))
                        .await
                    }
                    _ => Box::pin(session::run(stream, ctx)).await,
                }
            }
            Kind::Ws => {
                Box::pin(serve_websocket(
                    stream,
                    initial,
                    t.ws.as_deref(),
                    ctx,
                    timeout,
                    local,
                ))
                .await
            }
        }
        drop(slot);
    });
}

/// The subject of the client certificate of a finished TLS handshake. rustls hands out
/// a client's certificates only once it verified them against `tls.client_ca`, so a client
/// that sent none (`client_auth = "optional"`) or a server that asks for none has none.
fn client_certificate(
    tls: &tokio_rustls::rustls::ServerConnection,
    id: SessionId,
    peer: &str,
) -> Option<Subject> {
    let end_entity = tls.peer_certificates()?.first()?;
    match Subject::of_certificate(end_entity) {
        Ok(subject) => {
            debug!("conn={} peer={peer} client certificate {subject}", id.0);
            Some(subject)
        }
        Err(e) => {
            // webpki parsed it, so this is unlikely; the connection goes on without a subject.
            warn!(
                "conn={} peer={peer} client certificate unreadable: {e}",
                id.0
            );
            None
        }
    }
}

/// A connection over a per-address limit: an ERROR on plain STOMP (TLS and WebSocket clients
/// would not read one before their handshake), then closed; logged and counted.
async fn refuse_address(
    id: SessionId,
    peer: &str,
    kind: Kind,
    breach: crate::security::addresses::Breach,
    mut stream: TcpStream,
) {
    warn!(
        "conn={} peer={peer} refused: {} ({}) reached",
        id.0,
        breach.key(),
        breach.limit()
    );
    metrics::counter!("stompbox_connections_refused_total", "reason" => breach.key()).increment(1);
    if kind == Kind::Stomp {
        let frame = session::Error::Limit(breach.key(), breach.limit()).to_frame(None);
        let _ = stream.write_all(&encode(&frame, Version::V1_0)).await;
    }
    let _ = stream.shutdown().await;
}

/// Upgrades a connection to WebSocket and serves STOMP over it.
async fn serve_websocket<S>(
    mut stream: S,
    initial: BytesMut,
    policy: Option<&websocket::Policy>,
    ctx: SessionContext,
    timeout: Duration,
    local: Option<std::net::IpAddr>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(policy) = policy else { return };
    match websocket::accept(&mut stream, initial, policy, timeout, local).await {
        Ok((protocol, rest)) => {
            debug!(
                "conn={} peer={} WebSocket subprotocol={}",
                ctx.id.0,
                ctx.peer,
                protocol.unwrap_or("none")
            );
            session::run(websocket::WsStream::new(stream, rest), ctx).await;
        }
        Err(e) => warn!("conn={} peer={} WebSocket upgrade: {e}", ctx.id.0, ctx.peer),
    }
}
