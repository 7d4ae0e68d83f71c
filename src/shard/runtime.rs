//! Thread-per-core runtime: one thread per shard, each running a single-threaded tokio
//! runtime with its owner loop, its listener (bound with `SO_REUSEPORT`, so the kernel spreads
//! connections over shards) and the sessions it accepted. Beside them, one store writer thread.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{debug, error, info, warn};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinSet, LocalSet};

use super::accept::{accept, accept_any, Transports};
use super::owner::Owner;
use crate::config::Config;
use crate::destination::{Accounts, Ctx};
use crate::message::audit::NetworkAudit;
use crate::message::schedule::ScheduleCmd;
use crate::message::virtual_topic::VirtualTopics;
use crate::message::{DestinationName, IdAllocator, QueueKey, Router, ToOwner};
use crate::reload::Reloadable;
use crate::session::{ClientIds, Connections, FrameBudget, Services};
use crate::store::{self, Fence, IdReservation, Request, StoreError, StoreTx, WriterConfig};
use crate::transport::{websocket, Kind};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A shard thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
    /// The store could not be opened or recovered.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// TLS listeners are configured but no certificate was loaded.
    #[error("tls listeners configured, but no TLS certificate loaded")]
    NoTls,
    /// Another broker process holds the data directory.
    #[error("data_dir {0} is in use by another broker process (lock file {1})")]
    Locked(PathBuf, PathBuf),
}

/// The lock file that marks a data directory as in use by a running broker.
pub const LOCK_FILE: &str = "stompbox.lock";

/// Takes the data directory's lock: an OS file lock, which the kernel drops the instant the
/// holding process dies, however it dies. Fails if another process holds it.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StartError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => Err(StartError::Locked(dir.to_path_buf(), path)),
    }
}

/// A running broker: its shards, its store writer and how to stop them.
pub struct Broker {
    stomp_addr: SocketAddr,
    /// Every client listener's kind and bound address, STOMP first.
    listening: Vec<(Kind, SocketAddr)>,
    router: Arc<Router>,
    services: Arc<Services>,
    store: StoreTx,
    writer: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    idle: std::sync::mpsc::Receiver<usize>,
    threads: Vec<JoinHandle<()>>,
    /// The network bridges' thread, when `[[network]]` connectors are configured.
    network: Option<JoinHandle<()>>,
}

impl Broker {
    /// Opens and recovers the store, binds the listeners and starts every shard. Returns once
    /// the broker accepts clients. `fence` is the lease it writes under (see `lease`); the
    /// caller holds that lease, which is what keeps two brokers off one store.
    /// `loaded` holds the TLS certificate (required when `config` has TLS listeners) and
    /// the users, loaded by the caller once per process (and reloaded by it on SIGHUP).
    pub fn start(
        config: Config,
        fence: Option<Fence>,
        loaded: &Reloadable,
    ) -> Result<Broker, StartError> {
        let tls = loaded.tls.clone();
        if config.tls_listeners() && tls.is_none() {
            return Err(StartError::NoTls);
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let shards = config.shard_count();
        let mut conn = store::open_writer(&config.db_path(), config.durability)?;
        let marked = store::settle_delivery_marks(&mut conn)?;
        if marked > 0 {
            info!("store: {marked} messages the previous broker may have delivered come back marked redelivered");
        }
        let recovered = store::recover(&conn)?;
        info!(
            "store {} recovered: {} queues with stored messages, {} durable subscriptions",
            config.db_path().display(),
            recovered.queues.len(),
            recovered.durables.len()
        );
        // Ids continue above every id a broker of this file may have handed out, stored or
        // not, and this broker's are reserved on disk before it accepts a connection.
        let epoch = fence.as_ref().map(|f| f.epoch);
        let reservation = store::reserve_at_start(&mut conn, recovered.max_id, epoch)?;
        info!(
            "store: message ids continue above {}, reserved through {}",
            reservation.after, reservation.through
        );
        let ids = Arc::new(IdAllocator::new(reservation.after));
        let ws = &config.websocket;
        let wanted = [
            (Kind::Stomp, Some(config.bind)),
            (Kind::Ssl, config.tls.bind),
            (Kind::Ws, ws.enabled.then_some(ws.bind)),
            (Kind::Wss, ws.tls_bind.filter(|_| ws.enabled)),
        ];
        // Per shard, one listener of each kind.
        let mut listeners: Vec<Vec<(Kind, std::net::TcpListener)>> =
            (0..shards).map(|_| Vec::new()).collect();
        let mut listening = Vec::new();
        for (kind, addr) in wanted {
            let Some(addr) = addr else { continue };
            let bound = bind_reuseport(addr, shards)?;
            let actual = bound[0]
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            listening.push((kind, actual));
            for (shard, l) in bound.into_iter().enumerate() {
                listeners[shard].push((kind, l));
            }
        }
        let stomp_addr = listening[0].1;
        let policy = |kind: Kind| {
            let addr = listening.iter().find(|(k, _)| *k == kind)?.1;
            Some(Arc::new(websocket::Policy::new(addr, &config.websocket)))
        };
        let transports = Transports {
            tls,
            ws: policy(Kind::Ws),
            wss: policy(Kind::Wss),
        };
        let (senders, mailboxes): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
        let router = Arc::new(Router::new(senders));
        // Recovery goes first in every owner's mailbox, before any session can post.
        let mut queues: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
        let mut durables: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
        for (key, counts) in recovered.queues {
            queues[router.owner_of(&key.destination)].push((key, counts));
        }
        // Durable routes of connectors gone from the config: deleted once the bridges start.
        let orphans = crate::network::orphaned_routes(&config, &recovered.durables);
        for (d, topic, selector) in recovered.durables {
            durables[router.owner_of(&topic)].push((d, topic, selector));
        }
        // Virtual topics' consumer queues exist until deleted: read back from the store.
        let virtual_topics = Arc::new(VirtualTopics::default());
        let naming = config.destinations.virtual_topics();
        // They are listed while they exist, also when empty.
        let stored: HashSet<QueueKey> = queues.iter().flatten().map(|(k, _)| k.clone()).collect();
        for name in &recovered.queue_names {
            if let Ok(queue) = DestinationName::parse(name) {
                if let Some(topic) = naming.topic_of(&queue) {
                    virtual_topics.add(topic, &queue);
                    let key = QueueKey::queue(queue);
                    if !stored.contains(&key) {
                        queues[router.owner_of(&key.destination)].push((key, [0; 10]));
                    }
                }
            }
        }
        let mut scheduled: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
        let recovered_schedules = recovered.scheduled.len();
        for pending in recovered.scheduled {
            scheduled[router.owner_of(&pending.destination)].push(pending);
        }
        // The duplicate filter of each shard, from its destinations' stored forwarded
        // messages in the order they were stored: a bridge's resend of one is still caught.
        let d = &config.destinations;
        let mut audits: Vec<_> = (0..shards)
            .map(|_| NetworkAudit::new(d.network_audit_depth, d.network_audit_producers))
            .collect();
        store::recover_network_ids(&conn, |network_id, destination| {
            audits[router.owner_of(&destination)].record(network_id, &destination);
        })?;
        let audits = audits.into_iter().map(Some);
        for (shard, ((queues, durables), audit)) in
            queues.into_iter().zip(durables).zip(audits).enumerate()
        {
            router.post(
                shard,
                ToOwner::Recover {
                    queues,
                    durables,
                    audit,
                },
            );
        }
        for (shard, pending) in scheduled.into_iter().enumerate() {
            if !pending.is_empty() {
                router.post(shard, ToOwner::Schedule(ScheduleCmd::Recovered(pending)));
            }
        }
        if recovered_schedules > 0 {
            info!("store: {recovered_schedules} scheduled messages pending");
        }
        let writer_config = WriterConfig {
            max_batch: config.store_max_batch,
            sweep_expired: !config.destinations.expired_to_dlq,
            fence,
            durability: config.durability,
            ids: Some(IdReservation {
                allocator: ids.clone(),
                through: reservation.through,
            }),
        };
        let (store_tx, writer) =
            store::spawn_writer(conn, writer_config).map_err(StartError::Thread)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (idle_tx, idle) = std::sync::mpsc::channel();
        let config = Arc::new(config);
        let memory = Arc::new(AtomicU64::new(0));
        let services = Arc::new(Services {
            router: router.clone(),
            config: config.clone(),
            ids,
            store: Some(store_tx.clone()),
            client_ids: Arc::new(ClientIds::default()),
            connections: Arc::new(Connections::default()),
            memory: memory.clone(),
            virtual_topics: virtual_topics.clone(),
            advisory_listeners: Arc::default(),
            durables: Arc::default(),
            frames: Arc::new(FrameBudget::new(
                config.limits.large_frames_budget_bytes as u64,
            )),
            network: Arc::default(),
            auth: loaded.auth.clone(),
        });
        let addresses = crate::security::addresses::AddressLimits::new(&config.limits);
        let shared = Arc::new(Shared {
            config,
            services,
            next_session: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            memory,
            durables: Arc::default(),
            scheduled: Arc::default(),
            addresses,
            virtual_topics,
            transports,
        });
        let mut threads = Vec::with_capacity(shards);
        for (shard, (listener, mailbox)) in listeners.into_iter().zip(mailboxes).enumerate() {
            let shared = shared.clone();
            let shutdown = shutdown_rx.clone();
            let idle_tx = idle_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("shard-{shard}"))
                .spawn(move || run_shard(shard, shared, listener, mailbox, shutdown, idle_tx))
                .map_err(StartError::Thread)?;
            threads.push(handle);
        }
        info!("listening {} shards={shards}", listening_fields(&listening));
        // Bridges connect to this broker like clients: to loopback when it listens on all
        // addresses.
        let mut local = stomp_addr;
        if local.ip().is_unspecified() {
            local.set_ip(match local {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let network = crate::network::spawn(
            &shared.config,
            local,
            shutdown_rx.clone(),
            shared.services.network.clone(),
            orphans,
        )
        .map_err(StartError::Thread)?;
        Ok(Broker {
            stomp_addr,
            listening,
            router,
            services: shared.services.clone(),
            store: store_tx,
            writer,
            shutdown,
            idle,
            threads,
            network,
        })
    }

    /// What sessions share (router, registries): the admin API reads through it.
    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    /// The address the STOMP listener is bound to (the real port when port 0 was asked).
    pub fn stomp_addr(&self) -> SocketAddr {
        self.stomp_addr
    }

    /// Every client listener as `stomp=ADDR ws=ADDR …` (the `stompbox listening` line).
    pub fn listening(&self) -> String {
        listening_fields(&self.listening)
    }

    /// Graceful shutdown: stop accepting, tell every session (each sends an ERROR and flushes
    /// what it has, within `shutdown_timeout_ms`), stop the owner loops, join the shard
    /// threads, then let the store writer commit what is left and stop. Consumes the broker.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // The bridges end their connections here first, like any client.
        if let Some(network) = self.network {
            if network.join().is_err() {
                error!("the network bridges' thread panicked during shutdown");
            }
        }
        // Owners keep serving until every shard's sessions are gone: a closing session still
        // posts Goodbye to other shards.
        for _ in 0..self.threads.len() {
            if self.idle.recv().is_err() {
                break;
            }
        }
        for shard in 0..self.router.shards() {
            self.router.post(shard, ToOwner::Stop);
        }
        for t in self.threads {
            if t.join().is_err() {
                error!("a shard thread panicked during shutdown");
            }
        }
        // Owners flushed their last deletes before stopping; the writer commits what is left.
        let _ = self.store.send(Request::Stop);
        if self.writer.join().is_err() {
            error!("the store writer panicked during shutdown");
        }
        info!("shutdown complete");
    }
}

/// What every shard shares: read-only config, the session services and two counters.
pub(super) struct Shared {
    pub(super) config: Arc<Config>,
    pub(super) services: Arc<Services>,
    pub(super) next_session: AtomicU64,
    /// Live client connections, for `limits.max_connections`.
    pub(super) connections: AtomicUsize,
    /// Bytes of messages held in memory by all destinations and open transactions
    /// (`global_memory_limit_bytes`).
    pub(super) memory: Arc<AtomicU64>,
    /// Durable subscriptions on all shards (`max_durable_subscriptions`).
    pub(super) durables: Arc<std::sync::atomic::AtomicUsize>,
    /// Pending scheduled messages on all shards (`max_scheduled_messages`).
    pub(super) scheduled: Arc<std::sync::atomic::AtomicUsize>,
    /// Virtual topics' consumer queues.
    pub(super) virtual_topics: Arc<VirtualTopics>,
    /// TLS and WebSocket handshakes.
    pub(super) transports: Transports,
    /// Connections and connect rates per client address.
    pub(super) addresses: Arc<crate::security::addresses::AddressLimits>,
}

/// `stomp=127.0.0.1:61613 ws=127.0.0.1:61614 …`
fn listening_fields(listening: &[(Kind, SocketAddr)]) -> String {
    let fields: Vec<String> = listening
        .iter()
        .map(|(kind, addr)| format!("{}={addr}", kind.name()))
        .collect();
    fields.join(" ")
}

fn run_shard(
    shard: usize,
    shared: Arc<Shared>,
    listeners: Vec<(Kind, std::net::TcpListener)>,
    mailbox: mpsc::UnboundedReceiver<ToOwner>,
    mut shutdown: watch::Receiver<bool>,
    idle: std::sync::mpsc::Sender<usize>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("shard={shard} cannot build runtime: {e}");
            let _ = idle.send(shard);
            return;
        }
    };
    let local = LocalSet::new();
    local.block_on(&rt, async move {
        let s = &shared.services;
        let ctx = Ctx::new(
            shard,
            s.router.clone(),
            s.store.clone(),
            s.ids.clone(),
            Arc::new(crate::config::DestinationConfig {
                broker_name: shared.config.broker_name.clone(),
                ..shared.config.destinations.clone()
            }),
            Accounts {
                memory: shared.memory.clone(),
                durables: shared.durables.clone(),
                scheduled: shared.scheduled.clone(),
                virtual_topics: shared.virtual_topics.clone(),
                advisory_listeners: shared.services.advisory_listeners.clone(),
                durable_subscriptions: shared.services.durables.clone(),
            },
        );
        let owner = tokio::task::spawn_local(Owner::new(ctx).run(mailbox));
        let mut registered = Vec::with_capacity(listeners.len());
        for (kind, listener) in listeners {
            match TcpListener::from_std(listener) {
                Ok(l) => registered.push((kind, l)),
                Err(e) => {
                    error!("shard={shard} cannot register {} listener: {e}", kind.name());
                    let _ = idle.send(shard);
                    let _ = owner.await;
                    return;
                }
            }
        }
        let listeners = registered;
        let mut next = 0;
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                (kind, accepted) = accept_any(&listeners, &mut next) => match accepted {
                    Ok((stream, peer)) => accept(&shared, &mut sessions, &shutdown, kind, stream, peer),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!("shard={shard} accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(listeners);
        while sessions.join_next().await.is_some() {}
        debug!("shard={shard} sessions drained");
        let _ = idle.send(shard);
        let _ = owner.await;
    });
}

/// Binds `count` listeners on one address with `SO_REUSEPORT`. The first takes the asked
/// address (port 0 picks a free port); the rest join it on the port it got.
fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(count);
    let mut actual = addr;
    for _ in 0..count {
        let err = |source| StartError::Bind {
            addr: actual,
            source,
        };
        let socket = Socket::new(
            Domain::for_address(actual),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(err)?;
        socket.set_reuse_address(true).map_err(err)?;
        socket.set_reuse_port(true).map_err(err)?;
        socket.set_nonblocking(true).map_err(err)?;
        socket.bind(&actual.into()).map_err(err)?;
        socket.listen(1024).map_err(err)?;
        let listener: std::net::TcpListener = socket.into();
        if out.is_empty() {
            actual = listener.local_addr().map_err(err)?;
        }
        out.push(listener);
    }
    Ok(out)
}
