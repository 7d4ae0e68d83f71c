//! Failover clients for a [`super::pair::Pair`] (or HAProxy in front of one): a producer and a
//! consumer thread, each on the raw [`Client`], that reconnect to the next address whenever
//! their broker fails them, and what they did.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{Client, ReadError};
use super::eventually;
use super::frame::{send_frame, Frame};

/// What a failover client did, shared with the test while it runs.
#[derive(Default)]
pub struct Progress {
    /// Producer: ids whose persistent SEND got a RECEIPT. Consumer: id → deliveries.
    counts: Mutex<BTreeMap<u64, u32>>,
    /// Connections made (the first one included).
    pub connects: AtomicU64,
}

impl Progress {
    /// Distinct ids so far.
    pub fn distinct(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A copy of id → count.
    pub fn counts(&self) -> BTreeMap<u64, u32> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections made so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    fn record(&self, id: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default() += 1;
    }
}

/// A thread running a failover client until told to stop (or dropped).
pub struct FailoverClient {
    pub progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FailoverClient {
    fn spawn(body: impl FnOnce(Arc<Progress>, Arc<AtomicBool>) + Send + 'static) -> Self {
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (progress.clone(), stop.clone());
        FailoverClient {
            progress,
            stop,
            handle: Some(std::thread::spawn(move || body(p, s))),
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("client thread panicked");
        }
    }

    /// Waits until `progress.distinct()` reaches `n`.
    #[track_caller]
    pub fn wait_distinct(&self, n: usize, timeout: Duration, what: &str) {
        eventually(timeout, || {
            (self.progress.distinct() >= n).then_some(()).ok_or(what)
        });
    }
}

impl Drop for FailoverClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A failover producer: sends persistent messages `"{id}"` (0, 1, 2, …) to `destination`,
/// one at a time, each with a receipt. On any failure (refused, closed, ERROR, no RECEIPT in
/// time) it reconnects to the next address and resends the message that had no RECEIPT.
pub fn spawn_producer(addrs: Vec<SocketAddr>, destination: &str) -> FailoverClient {
    let dest = destination.to_string();
    FailoverClient::spawn(move |progress, stop| {
        let mut next = 0;
        let mut conn: Option<Client> = None;
        let mut id: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let Some(c) = conn.as_mut() else {
                conn = connect_any(&addrs, &mut next);
                match conn {
                    Some(_) => {
                        progress.connects.fetch_add(1, Ordering::SeqCst);
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
                continue;
            };
            let receipt = format!("r-{id}");
            let send = send_frame(
                &dest,
                &id.to_string(),
                &[("persistent", "true"), ("receipt", &receipt)],
            );
            let ok = c.try_send_frame(&send).is_ok()
                && wait_receipt(c, &receipt, Instant::now() + Duration::from_secs(5));
            if ok {
                progress.record(id);
                id += 1;
                // A little pacing leaves the two cores to the brokers.
                std::thread::sleep(Duration::from_millis(1));
            } else {
                conn = None;
            }
        }
    })
}

/// A failover consumer: subscribes to `destination` with `ack:client-individual` and ACKs
/// each MESSAGE after recording its id (so a failover between the two may redeliver it: a
/// duplicate). On any failure it reconnects to the next address and subscribes again.
pub fn spawn_consumer(addrs: Vec<SocketAddr>, destination: &str) -> FailoverClient {
    let dest = destination.to_string();
    FailoverClient::spawn(move |progress, stop| {
        let mut next = 0;
        let mut conn: Option<Client> = None;
        let subscribe = Frame::new("SUBSCRIBE")
            .header("id", "0")
            .header("destination", dest)
            .header("ack", "client-individual");
        while !stop.load(Ordering::SeqCst) {
            let Some(c) = conn.as_mut() else {
                conn = connect_any(&addrs, &mut next)
                    .and_then(|mut c| c.try_send_frame(&subscribe).ok().map(|()| c));
                match conn {
                    Some(_) => {
                        progress.connects.fetch_add(1, Ordering::SeqCst);
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
                continue;
            };
            match c.try_frame(Duration::from_millis(100)) {
                Ok(f) if f.command == "MESSAGE" => {
                    if let Ok(id) = f.text().parse::<u64>() {
                        progress.record(id);
                    }
                    let ack = Frame::new("ACK").header("id", f.get("ack").unwrap_or(""));
                    if c.try_send_frame(&ack).is_err() {
                        conn = None;
                    }
                }
                Ok(f) if f.command == "ERROR" => conn = None,
                Ok(_) | Err(ReadError::Timeout) => {}
                Err(_) => conn = None,
            }
        }
    })
}

/// A failover consumer that records a message only once the previous one's ACK is committed:
/// it subscribes with `activemq.prefetchSize:1` and ACKs each MESSAGE with a receipt (a
/// receipted ACK is answered after its delete is committed), holding back a MESSAGE that
/// arrives before that RECEIPT. It records every delivery, so a failover makes it record at
/// most one message twice (the one whose ACK was not yet committed): other duplicates are the
/// brokers' (or a bridge's) doing, not its own window's.
pub fn spawn_receipted_consumer(addrs: Vec<SocketAddr>, destination: &str) -> FailoverClient {
    let dest = destination.to_string();
    FailoverClient::spawn(move |progress, stop| {
        let mut next = 0;
        let mut conn: Option<Client> = None;
        let mut held: VecDeque<Frame> = VecDeque::new();
        let mut acks: u64 = 0;
        let subscribe = Frame::new("SUBSCRIBE")
            .header("id", "0")
            .header("destination", dest)
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "1");
        while !stop.load(Ordering::SeqCst) {
            let Some(c) = conn.as_mut() else {
                held.clear();
                conn = connect_any(&addrs, &mut next)
                    .and_then(|mut c| c.try_send_frame(&subscribe).ok().map(|()| c));
                match conn {
                    Some(_) => {
                        progress.connects.fetch_add(1, Ordering::SeqCst);
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
                continue;
            };
            let frame = match held.pop_front() {
                Some(f) => Ok(f),
                None => c.try_frame(Duration::from_millis(100)),
            };
            match frame {
                Ok(f) if f.command == "MESSAGE" => {
                    if let Ok(id) = f.text().parse::<u64>() {
                        progress.record(id);
                    }
                    acks += 1;
                    let receipt = format!("ack-{acks}");
                    let ack = Frame::new("ACK")
                        .header("id", f.get("ack").unwrap_or(""))
                        .header("receipt", receipt.as_str());
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let acked = c.try_send_frame(&ack).is_ok()
                        && wait_receipt_holding(c, &receipt, deadline, &mut held);
                    if !acked {
                        conn = None;
                    }
                }
                Ok(f) if f.command == "ERROR" => conn = None,
                Ok(_) | Err(ReadError::Timeout) => {}
                Err(_) => conn = None,
            }
        }
    })
}

/// Checks that every id the producer got a RECEIPT for was consumed, waiting up to `timeout`
/// for stragglers. Returns the number of duplicate deliveries.
#[track_caller]
pub fn assert_all_consumed(
    producer: &FailoverClient,
    consumer: &FailoverClient,
    timeout: Duration,
) -> u64 {
    let receipted: BTreeSet<u64> = producer.progress.counts().into_keys().collect();
    let deadline = Instant::now() + timeout;
    loop {
        let consumed = consumer.progress.counts();
        let missing: Vec<u64> = receipted
            .iter()
            .filter(|id| !consumed.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() {
            return consumed.values().map(|&n| u64::from(n - 1)).sum();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} receipted messages never consumed (lost): first ones {:?}",
            missing.len(),
            receipted.len(),
            &missing[..missing.len().min(20)]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Measures from `since` to the first successful STOMP CONNECT on `addr`, trying every
/// millisecond (a closed port refuses at once). Panics after `timeout`.
#[track_caller]
pub fn first_connect_after(addr: SocketAddr, since: Instant, timeout: Duration) -> Duration {
    loop {
        if Client::try_connect(addr, &[], Duration::from_secs(1)).is_ok() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < timeout,
            "no successful CONNECT on {addr} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads until RECEIPT `receipt` (true) or an ERROR, a close or `deadline` (false).
fn wait_receipt(c: &mut Client, receipt: &str, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.try_frame(left) {
            Ok(f) if f.command == "RECEIPT" && f.get("receipt-id") == Some(receipt) => return true,
            Ok(f) if f.command == "ERROR" => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// Like [`wait_receipt`], keeping the MESSAGE frames that arrive first in `held`.
fn wait_receipt_holding(
    c: &mut Client,
    receipt: &str,
    deadline: Instant,
    held: &mut VecDeque<Frame>,
) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.try_frame(left) {
            Ok(f) if f.command == "RECEIPT" && f.get("receipt-id") == Some(receipt) => return true,
            Ok(f) if f.command == "MESSAGE" => held.push_back(f),
            Ok(f) if f.command == "ERROR" => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// Connects to the first address (trying each in turn, starting at `*next`) that completes
/// CONNECT; leaves `*next` on the one that worked. None if none did.
fn connect_any(addrs: &[SocketAddr], next: &mut usize) -> Option<Client> {
    for _ in 0..addrs.len() {
        let addr = addrs[*next % addrs.len()];
        if let Ok(c) = Client::try_connect(addr, &[], Duration::from_secs(2)) {
            return Some(c);
        }
        *next = (*next + 1) % addrs.len();
    }
    None
}
