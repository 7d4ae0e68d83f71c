//! The phases of a run: the SQLite baseline (if asked), idle connections, consumers connect
//! and subscribe (so a topic's subscribers miss nothing), producers connect, then the clock
//! starts and everyone runs until done; outcomes are merged into a [`Report`].
//!
//! Clients run on `threads` threads, each driving a single-threaded tokio runtime; the
//! coordinator (the caller's thread) spawns them there and draws the progress line. A client
//! stays on the runtime that connected it, since its socket is registered there.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::consumer::{Consumer, ConsumerOutcome};
use super::producer::{Producer, ProducerOutcome};
use super::progress::Progress;
use super::report::{Latency, Report};
use super::seen::Seen;
use super::{sqlite, Amount, BenchConfig, Mode};
use crate::client::{BrokerUri, Client, ClientError, SubscribeOptions};

/// Most first errors kept for the report.
const MAX_ERRORS_KEPT: usize = 5;

/// Why a run could not produce a report at all. Failures of single clients during the run
/// are counted in the report instead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A client could not connect or subscribe before the run started.
    #[error("setup failed: {0}")]
    Setup(ClientError),
    /// The SQLite baseline failed.
    #[error("sqlite baseline failed: {0}")]
    Sqlite(rusqlite::Error),
    /// A runtime or thread could not be created.
    #[error("cannot start bench threads: {0}")]
    Runtime(std::io::Error),
    /// A client task panicked.
    #[error("a bench task panicked")]
    Panicked,
}

// By hand rather than `#[from]`, which would also make the cause a `source()` and print its
// text twice in an anyhow chain.
impl From<ClientError> for BenchError {
    fn from(e: ClientError) -> Self {
        BenchError::Setup(e)
    }
}

impl From<rusqlite::Error> for BenchError {
    fn from(e: rusqlite::Error) -> Self {
        BenchError::Sqlite(e)
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError::Runtime(e)
    }
}

/// Counters shared by every client of a run. Atomics, so the progress line can read them.
#[derive(Debug)]
pub struct Shared {
    /// Prefix of this run's producer ids, `<run id>-`; earlier runs' leftovers differ.
    pub run_prefix: String,
    /// This run's id.
    pub run_id: String,
    /// When the clock started.
    pub start: Instant,
    pub produced: AtomicU64,
    pub produced_bytes: AtomicU64,
    /// Messages received (duplicates included), from this run only.
    pub consumed: AtomicU64,
    pub consumed_bytes: AtomicU64,
    /// Messages received that another run (or another tool) left in the destination.
    pub foreign: AtomicU64,
    pub errors: AtomicU64,
    /// Producers still running; the consumers' stop rule depends on it.
    pub producers_left: AtomicUsize,
    /// Microseconds from `start` to when the last producer finished.
    pub producers_done_us: AtomicU64,
    /// Microseconds from `start` to the last message received.
    pub last_consume_us: AtomicU64,
    /// Set on Ctrl-C: everyone stops and the report covers what happened so far.
    pub stop: AtomicBool,
    first_errors: Mutex<Vec<String>>,
}

impl Shared {
    /// Microseconds since the clock started.
    pub fn elapsed_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn record_error(&self, who: &str, e: &dyn fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        log::warn!("{who}: {e}");
        let mut kept = self.first_errors.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_ERRORS_KEPT {
            kept.push(format!("{who}: {e}"));
        }
    }
}

/// Runs the benchmark described by `config` and returns its report.
pub fn run(config: BenchConfig) -> Result<Report, BenchError> {
    let mut report = Report::new(&config);
    if let Some(dir) = &config.sqlite_baseline {
        let baseline = sqlite::measure(dir, config.size, config.sqlite_duration)?;
        report.set_sqlite(&baseline);
    }
    if config.mode == Mode::Sqlite {
        return Ok(report);
    }
    let pool = Pool::start(config.threads.max(1))?;
    let coordinator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = coordinator.block_on(drive(Arc::new(config), &pool, &mut report));
    pool.stop();
    result.map(|()| report)
}

async fn drive(
    config: Arc<BenchConfig>,
    pool: &Pool,
    report: &mut Report,
) -> Result<(), BenchError> {
    let deadline_after = match config.amount {
        Amount::Duration(d) => Some(d),
        Amount::Count(_) => None,
    };

    // Idle connections first, so they are open during the whole measured run.
    let idle = connect_all(pool, &config, &config.uri, config.idle_conns, 0, None).await?;
    report.idle_conns = idle.len();
    if config.mode == Mode::Idle {
        eprintln!("stompbox bench: {} idle connections open", idle.len());
        tokio::time::sleep(deadline_after.unwrap_or(Duration::from_secs(5))).await;
        drop(idle);
        return Ok(());
    }

    let consumers = if config.mode == Mode::Fill {
        0
    } else {
        config.consumers
    };
    let producers = if config.mode == Mode::Drain {
        0
    } else {
        config.producers
    };
    let subscribe = SubscribeOptions {
        ack: config.ack,
        prefetch: config.prefetch,
        headers: Vec::new(),
    };
    let consumer_clients = connect_all(
        pool,
        &config,
        config.consumer_uri(),
        consumers,
        0,
        Some(subscribe),
    )
    .await?;
    let producer_clients =
        connect_all(pool, &config, &config.uri, producers, consumers, None).await?;

    let run_id = run_id();
    let shared = Arc::new(Shared {
        run_prefix: format!("{run_id}-"),
        run_id,
        start: Instant::now(),
        produced: AtomicU64::new(0),
        produced_bytes: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        consumed_bytes: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        producers_left: AtomicUsize::new(producers),
        producers_done_us: AtomicU64::new(0),
        last_consume_us: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        first_errors: Mutex::new(Vec::new()),
    });
    let deadline = deadline_after.map(|d| tokio::time::Instant::now() + d);
    let queue_seen = Arc::new(Mutex::new(Seen::default()));
    let mut seens = Vec::new();

    let mut consumer_tasks = Vec::new();
    for (i, client) in consumer_clients.into_iter().enumerate() {
        let seen = if config.is_topic() {
            Arc::new(Mutex::new(Seen::default()))
        } else {
            queue_seen.clone()
        };
        seens.push(seen.clone());
        let consumer = Consumer {
            client,
            config: config.clone(),
            shared: shared.clone(),
            seen,
            // With producers, consumers run until they have what was sent (or it stops
            // coming): a deadline would cut off messages still in flight and call them lost.
            deadline: deadline.filter(|_| config.mode == Mode::Drain),
        };
        let shared = shared.clone();
        consumer_tasks.push(pool.spawn(i, async move {
            let outcome = consumer.run().await;
            if let Err(e) = &outcome {
                shared.record_error(&format!("consumer {i}"), e);
            }
            outcome.ok()
        }));
    }

    let body = Bytes::from(body(config.size));
    let quotas = split(config.amount, producers);
    let mut producer_tasks = Vec::new();
    for (i, client) in producer_clients.into_iter().enumerate() {
        let producer = Producer {
            client,
            index: i,
            config: config.clone(),
            shared: shared.clone(),
            quota: quotas.get(i).copied().flatten(),
            deadline,
            body: body.clone(),
        };
        let shared = shared.clone();
        producer_tasks.push(pool.spawn(consumers + i, async move {
            let outcome = producer.run().await;
            if let Err(e) = &outcome {
                shared.record_error(&format!("producer {i}"), e);
            }
            shared
                .producers_done_us
                .fetch_max(shared.elapsed_us(), Ordering::AcqRel);
            shared.producers_left.fetch_sub(1, Ordering::AcqRel);
            outcome.ok()
        }));
    }

    let mut progress = Progress::new(config.progress, &shared);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while !producer_tasks.iter().all(JoinHandle::is_finished)
        || !consumer_tasks.iter().all(JoinHandle::is_finished)
    {
        tokio::select! {
            _ = tick.tick() => progress.update(),
            _ = &mut ctrl_c => {
                eprintln!("stompbox bench: interrupted, stopping");
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
    }
    progress.finish();

    let mut producer_outcomes: Vec<ProducerOutcome> = Vec::new();
    for task in producer_tasks {
        producer_outcomes.extend(task.await.map_err(|_| BenchError::Panicked)?);
    }
    let mut consumer_outcomes: Vec<ConsumerOutcome> = Vec::new();
    for task in consumer_tasks {
        consumer_outcomes.extend(task.await.map_err(|_| BenchError::Panicked)?);
    }
    drop(idle);

    let mut latency = new_histogram();
    let mut confirm = new_histogram();
    let mut reconnects = 0;
    for o in &consumer_outcomes {
        // Histograms of one shape never fail to add.
        let _ = latency.add(&o.latency);
        reconnects += o.reconnects;
    }
    for o in &producer_outcomes {
        let _ = confirm.add(&o.confirm);
        reconnects += o.reconnects;
    }
    let (unique, received) = if config.is_topic() {
        seens.iter().fold((0, 0), |(u, r), s| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            (u + s.unique(), r + s.received())
        })
    } else {
        let s = queue_seen.lock().unwrap_or_else(|e| e.into_inner());
        (s.unique(), s.received())
    };
    let produced = shared.produced.load(Ordering::Relaxed);
    let groups = if config.is_topic() {
        consumers as u64
    } else {
        1
    };
    let expected = match (config.mode, config.amount) {
        (Mode::Fill, _) => 0,
        (Mode::Drain, Amount::Count(n)) => n * groups,
        (Mode::Drain, Amount::Duration(_)) => unique,
        _ => produced * groups,
    };
    report.produced = produced;
    report.produced_bytes = shared.produced_bytes.load(Ordering::Relaxed);
    report.produced_elapsed_s = secs(shared.producers_done_us.load(Ordering::Relaxed));
    report.consumed = shared.consumed.load(Ordering::Relaxed);
    report.consumed_bytes = shared.consumed_bytes.load(Ordering::Relaxed);
    report.consumed_elapsed_s = secs(shared.last_consume_us.load(Ordering::Relaxed));
    report.unique = unique;
    report.lost = expected.saturating_sub(unique);
    report.duplicated = received - unique;
    report.foreign = shared.foreign.load(Ordering::Relaxed);
    report.errors = shared.errors.load(Ordering::Relaxed);
    report.reconnects = reconnects;
    report.latency = Latency::from_histogram(&latency);
    report.confirm = Latency::from_histogram(&confirm);
    report.first_errors = shared
        .first_errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(())
}

/// Connects `n` clients to `uri` (the `offset`-th onward on the pool's threads), subscribing
/// each when `subscribe` is given. Fails if any fails: a run with missing clients measures
/// nothing.
async fn connect_all(
    pool: &Pool,
    config: &Arc<BenchConfig>,
    uri: &BrokerUri,
    n: usize,
    offset: usize,
    subscribe: Option<SubscribeOptions>,
) -> Result<Vec<Client>, BenchError> {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (config, uri) = (config.clone(), uri.clone());
        let subscribe = subscribe.clone();
        tasks.push(pool.spawn(offset + i, async move {
            let mut client = Client::connect(&uri, config.connect.clone()).await?;
            if let Some(options) = subscribe {
                client.subscribe(&config.destination, &options).await?;
            }
            Ok::<_, ClientError>(client)
        }));
    }
    let mut clients = Vec::with_capacity(n);
    for task in tasks {
        clients.push(task.await.map_err(|_| BenchError::Panicked)??);
    }
    Ok(clients)
}

/// Per-producer quotas: a count split evenly (the first ones take the remainder), or `None`
/// each for a duration.
fn split(amount: Amount, producers: usize) -> Vec<Option<u64>> {
    match amount {
        Amount::Duration(_) => vec![None; producers],
        Amount::Count(n) => {
            let p = producers.max(1) as u64;
            (0..p)
                .map(|i| Some(n / p + u64::from(i < n % p)))
                .take(producers)
                .collect()
        }
    }
}

/// A body of `size` printable bytes.
fn body(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A histogram for microseconds from 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy hdrhistogram's rules (low >= 1, high >= 2 * low).
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Wall-clock microseconds since the Unix epoch (comparable across processes on one host).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// A short id that differs between runs.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:x}",
        (nanos ^ (u64::from(std::process::id()) << 40)) & 0xffff_ffff_ffff
    )
}

/// Threads that each drive a single-threaded tokio runtime.
struct Pool {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn start(n: usize) -> Result<Pool, std::io::Error> {
        let mut pool = Pool {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            pool.handles.push(rt.handle().clone());
            pool.stops.push(stop);
            pool.threads.push(
                std::thread::Builder::new()
                    .name(format!("bench-{i}"))
                    .spawn(move || {
                        rt.block_on(async {
                            let _ = stopped.await;
                        })
                    })?,
            );
        }
        Ok(pool)
    }

    /// Spawns `task` on thread `slot % threads`.
    fn spawn<F>(&self, slot: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[slot % self.handles.len()].spawn(task)
    }

    fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_add_up() {
        assert_eq!(split(Amount::Count(10), 3), vec![Some(4), Some(3), Some(3)]);
        assert_eq!(split(Amount::Count(2), 3), vec![Some(1), Some(1), Some(0)]);
        assert_eq!(
            split(Amount::Duration(Duration::from_secs(1)), 2),
            vec![None, None]
        );
        assert!(split(Amount::Count(5), 0).is_empty());
    }

    #[test]
    fn body_has_the_size_asked() {
        assert_eq!(body(0).len(), 0);
        assert_eq!(&body(28)[..3], b"abc");
        assert_eq!(body(1024).len(), 1024);
    }
}
