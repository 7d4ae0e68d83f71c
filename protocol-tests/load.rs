//! Load: 50 producers × 10,000 small messages into one destination.
//!
//! Queue: 5 consumers in client-individual mode ACK every message; every message must be
//! received exactly once overall. Topic: 5 subscribers; each must receive every message
//! exactly once. In both, each consumer must see one producer's messages in the order sent.
//! Consumers subscribe (with a receipt) before any producer starts; producers put a receipt on
//! their last message only. Everything runs against one deadline and ends with a summary, so a
//! stuck broker fails the test with counts instead of hanging the suite.
//!
//! `STOMP_LOAD_MESSAGES=<n>` changes the per-producer count (default 10,000).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{queue, topic, Broker, Client, Fill};

const PRODUCERS: usize = 50;
const CONSUMERS: usize = 5;
/// The whole test (produce and consume) must finish within this.
const DEADLINE: Duration = Duration::from_secs(100);
/// After a consumer has its count, it keeps reading this long to catch duplicates.
const LINGER: Duration = Duration::from_millis(500);
/// Producers write this many bytes at a time.
const BATCH_BYTES: usize = 32 * 1024;

/// The two load tests share two cores; running them one after the other keeps each inside
/// its deadline and makes their timings comparable.
static SERIAL: Mutex<()> = Mutex::new(());

fn per_producer() -> usize {
    std::env::var("STOMP_LOAD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn queue_load_delivers_every_message_exactly_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let broker = Broker::under_test();
    let q = queue("load");
    let run = Run::new(per_producer(), Mode::Queue);
    let report = run.execute(&broker, &q);
    eprintln!("{report}");
    assert!(report.ok(), "{report}");
}

#[test]
fn topic_load_delivers_every_message_to_every_subscriber_exactly_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let broker = Broker::under_test();
    let t = topic("load");
    let run = Run::new(per_producer(), Mode::Topic);
    let report = run.execute(&broker, &t);
    eprintln!("{report}");
    assert!(report.ok(), "{report}");
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Shared work: the consumers together receive each message once; they ACK each one.
    Queue,
    /// Fan-out: each subscriber receives each message once (auto ack).
    Topic,
}

struct Run {
    per: usize,
    mode: Mode,
}

/// What one consumer saw.
struct Seen {
    /// Deliveries per message, indexed `producer * per + seq`.
    counts: Vec<u16>,
    received: usize,
    out_of_order: usize,
    /// First few out-of-order deliveries, as (producer, previous seq, this seq).
    out_of_order_examples: Vec<(usize, usize, usize)>,
    malformed: Vec<String>,
    error: Option<String>,
    finished_after: Duration,
}

struct Report {
    mode: Mode,
    per: usize,
    produce_errors: Vec<String>,
    producers_done: usize,
    produce_time: Option<Duration>,
    consumers: Vec<Result<Seen, String>>,
    elapsed: Duration,
    /// (time since start, deliveries to all consumers so far), sampled every 200 ms.
    progress: Vec<(Duration, usize)>,
}

impl Run {
    fn new(per: usize, mode: Mode) -> Run {
        Run { per, mode }
    }

    fn execute(&self, broker: &Broker, dest: &str) -> Report {
        let started = Instant::now();
        let deadline = started + DEADLINE;
        let delivered = Arc::new(AtomicUsize::new(0));

        // Consumers first, each subscribed (receipt awaited) before any producer starts.
        let (ctx, crx) = mpsc::channel();
        for i in 0..CONSUMERS {
            let mut c = broker.connect("1.2");
            let ack = match self.mode {
                Mode::Queue => "client-individual",
                Mode::Topic => "auto",
            };
            c.subscribe(dest, &format!("load-{i}"), ack, &[]);
            let (ctx, delivered, per, mode) = (ctx.clone(), delivered.clone(), self.per, self.mode);
            std::thread::spawn(move || {
                let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    consume(c, mode, per, &delivered, deadline, started)
                }))
                .map_err(|p| format!("consumer {i} panicked: {}", panic_text(&p)));
                let _ = ctx.send((i, seen));
            });
        }
        drop(ctx);

        // A sampler records overall progress, so a report can tell a stall from slowness.
        let progress = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (progress, stop, delivered) = (progress.clone(), stop.clone(), delivered.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                    let sample = (started.elapsed(), delivered.load(Ordering::Relaxed));
                    progress
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(sample);
                }
            });
        }

        let (ptx, prx) = mpsc::channel();
        for p in 0..PRODUCERS {
            let (ptx, addr, dest, per) = (ptx.clone(), broker.addr(), dest.to_string(), self.per);
            std::thread::spawn(move || {
                let result = std::panic::catch_unwind(|| produce(addr, &dest, p, per, deadline))
                    .unwrap_or_else(|e| Err(format!("panicked: {}", panic_text(&e))));
                let _ = ptx.send((p, result));
            });
        }
        drop(ptx);

        let mut produce_errors = Vec::new();
        let mut producers_done = 0;
        let mut last_receipt = None;
        while producers_done < PRODUCERS {
            let left =
                (deadline + Duration::from_secs(5)).saturating_duration_since(Instant::now());
            match prx.recv_timeout(left) {
                Ok((_, Ok(()))) => {
                    producers_done += 1;
                    last_receipt = Some(started.elapsed());
                }
                Ok((p, Err(e))) => {
                    producers_done += 1;
                    produce_errors.push(format!("producer {p}: {e}"));
                }
                Err(_) => {
                    produce_errors.push(format!(
                        "{} producers did not finish by the deadline",
                        PRODUCERS - producers_done
                    ));
                    break;
                }
            }
        }
        let produce_time = if produce_errors.is_empty() {
            last_receipt
        } else {
            None
        };

        let mut consumers: Vec<Result<Seen, String>> = (0..CONSUMERS)
            .map(|i| Err(format!("consumer {i} did not report")))
            .collect();
        for _ in 0..CONSUMERS {
            let left =
                (deadline + Duration::from_secs(5)).saturating_duration_since(Instant::now());
            match crx.recv_timeout(left) {
                Ok((i, seen)) => consumers[i] = seen,
                Err(_) => break,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let progress = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Report {
            mode: self.mode,
            per: self.per,
            produce_errors,
            producers_done,
            produce_time,
            consumers,
            elapsed: started.elapsed(),
            progress,
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Sends `per` messages `"<p>:<seq>"` to `dest`, the last with a receipt, and waits for it.
fn produce(
    addr: SocketAddr,
    dest: &str,
    p: usize,
    per: usize,
    deadline: Instant,
) -> Result<(), String> {
    let mut c = Client::open(addr);
    c.connect("1.2");
    let receipt = format!("done-{p}");
    let mut out = Vec::with_capacity(BATCH_BYTES + 256);
    for seq in 0..per {
        out.extend_from_slice(b"SEND\ndestination:");
        out.extend_from_slice(dest.as_bytes());
        if seq + 1 == per {
            out.extend_from_slice(b"\nreceipt:");
            out.extend_from_slice(receipt.as_bytes());
        }
        out.extend_from_slice(format!("\n\n{p}:{seq}\0").as_bytes());
        if out.len() >= BATCH_BYTES || seq + 1 == per {
            if Instant::now() > deadline {
                return Err(format!("deadline passed after {seq} messages were written"));
            }
            c.try_send_raw(&out)
                .map_err(|e| format!("write failed after ~{seq} messages: {e}"))?;
            out.clear();
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match c.next_frame(left) {
        Some(f) if f.command == "RECEIPT" && f.get("receipt-id") == Some(&receipt) => {}
        Some(f) => return Err(format!("expected RECEIPT {receipt}, got {f:?}")),
        None if c.is_closed() => return Err(format!("connection closed before RECEIPT {receipt}")),
        None => return Err(format!("no RECEIPT {receipt} by the deadline")),
    }
    let _ = c.try_send_raw(b"DISCONNECT\n\n\0");
    Ok(())
}

fn consume(
    mut c: Client,
    mode: Mode,
    per: usize,
    delivered: &AtomicUsize,
    deadline: Instant,
    started: Instant,
) -> Seen {
    let total = PRODUCERS * per;
    let mut seen = Seen {
        counts: vec![0; total],
        received: 0,
        out_of_order: 0,
        out_of_order_examples: Vec::new(),
        malformed: Vec::new(),
        error: None,
        finished_after: Duration::ZERO,
    };
    let mut last_seq: Vec<Option<usize>> = vec![None; PRODUCERS];
    let mut acks = Vec::with_capacity(64 * 1024);
    let mut done_at: Option<Instant> = None;
    'outer: loop {
        while let Some(f) = c.next_buffered() {
            if f.command != "MESSAGE" {
                seen.error = Some(format!("unexpected frame {f:?}"));
                break 'outer;
            }
            let Some((p, seq)) = parse_body(&f.body, per) else {
                if seen.malformed.len() < 5 {
                    seen.malformed.push(format!("{f:?}"));
                }
                continue;
            };
            let slot = &mut seen.counts[p * per + seq];
            *slot = slot.saturating_add(1);
            seen.received += 1;
            delivered.fetch_add(1, Ordering::Relaxed);
            if let Some(prev) = last_seq[p] {
                if seq <= prev {
                    seen.out_of_order += 1;
                    if seen.out_of_order_examples.len() < 5 {
                        seen.out_of_order_examples.push((p, prev, seq));
                    }
                }
            }
            last_seq[p] = Some(seq);
            if mode == Mode::Queue {
                let Some(id) = f.get("ack") else {
                    seen.error = Some(format!("MESSAGE without `ack` header: {f:?}"));
                    break 'outer;
                };
                acks.extend_from_slice(b"ACK\nid:");
                acks.extend_from_slice(id.as_bytes());
                acks.extend_from_slice(b"\n\n\0");
            }
        }
        if !acks.is_empty() {
            if let Err(e) = c.try_send_raw(&acks) {
                seen.error = Some(format!("ACK write failed: {e}"));
                break;
            }
            acks.clear();
        }
        let complete = match mode {
            Mode::Queue => delivered.load(Ordering::Relaxed) >= total,
            Mode::Topic => seen.received >= total,
        };
        let now = Instant::now();
        if complete && done_at.is_none() {
            done_at = Some(now);
            seen.finished_after = started.elapsed();
        }
        if done_at.is_some_and(|t| now >= t + LINGER) {
            break;
        }
        if now >= deadline {
            seen.error = Some("deadline passed".into());
            seen.finished_after = started.elapsed();
            break;
        }
        if let Fill::Closed = c.fill() {
            // Take what arrived before the close, then stop.
            if c.next_buffered().is_some() {
                seen.error = Some("connection closed (frames were still arriving)".into());
            } else {
                seen.error = Some("connection closed by the broker".into());
            }
            break;
        }
    }
    seen
}

/// `"<producer>:<seq>"` within range.
fn parse_body(body: &[u8], per: usize) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(body).ok()?;
    let (p, s) = text.split_once(':')?;
    let (p, s) = (p.parse::<usize>().ok()?, s.parse::<usize>().ok()?);
    (p < PRODUCERS && s < per).then_some((p, s))
}

impl Report {
    fn ok(&self) -> bool {
        self.produce_errors.is_empty() && self.problems().is_empty()
    }

    /// Every inconsistency found, in words.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let total = PRODUCERS * self.per;
        let mut ok_consumers = Vec::new();
        for (i, c) in self.consumers.iter().enumerate() {
            match c {
                Err(e) => out.push(e.clone()),
                Ok(s) => {
                    if let Some(e) = &s.error {
                        out.push(format!("consumer {i}: {e} (after {} messages)", s.received));
                    }
                    if !s.malformed.is_empty() {
                        out.push(format!("consumer {i}: malformed bodies: {:?}", s.malformed));
                    }
                    if s.out_of_order > 0 {
                        out.push(format!(
                            "consumer {i}: {} deliveries out of producer order, e.g. \
                             (producer, previous seq, seq) {:?}",
                            s.out_of_order, s.out_of_order_examples
                        ));
                    }
                    ok_consumers.push((i, s));
                }
            }
        }
        let check = |label: &str, counts: &dyn Fn(usize) -> u32, out: &mut Vec<String>| {
            let mut missing = Vec::new();
            let mut missing_n = 0usize;
            let mut dup = Vec::new();
            let mut dup_n = 0usize;
            for idx in 0..total {
                match counts(idx) {
                    1 => {}
                    0 => {
                        missing_n += 1;
                        if missing.len() < 10 {
                            missing.push((idx / self.per, idx % self.per));
                        }
                    }
                    n => {
                        dup_n += 1;
                        if dup.len() < 10 {
                            dup.push((idx / self.per, idx % self.per, n));
                        }
                    }
                }
            }
            if missing_n > 0 {
                out.push(format!(
                    "{label}: {missing_n} of {total} messages never received, e.g. \
                     (producer, seq) {missing:?}"
                ));
            }
            if dup_n > 0 {
                out.push(format!(
                    "{label}: {dup_n} messages received more than once, e.g. \
                     (producer, seq, times) {dup:?}"
                ));
            }
        };
        match self.mode {
            Mode::Queue => {
                let counts = |idx: usize| -> u32 {
                    ok_consumers
                        .iter()
                        .map(|(_, s)| u32::from(s.counts[idx]))
                        .sum()
                };
                check("all consumers together", &counts, &mut out);
            }
            Mode::Topic => {
                for (i, s) in &ok_consumers {
                    let counts = |idx: usize| -> u32 { u32::from(s.counts[idx]) };
                    check(&format!("subscriber {i}"), &counts, &mut out);
                }
            }
        }
        out
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = PRODUCERS * self.per;
        writeln!(
            f,
            "{:?} load: {PRODUCERS} producers × {} = {total} messages, {CONSUMERS} {}, {:.1}s",
            self.mode,
            self.per,
            if self.mode == Mode::Queue {
                "consumers"
            } else {
                "subscribers"
            },
            self.elapsed.as_secs_f64()
        )?;
        match self.produce_time {
            Some(t) => writeln!(
                f,
                "  producers: all receipted after {:.1}s",
                t.as_secs_f64()
            )?,
            None => writeln!(
                f,
                "  producers: {} of {PRODUCERS} finished; errors: {:#?}",
                self.producers_done, self.produce_errors
            )?,
        }
        for (i, c) in self.consumers.iter().enumerate() {
            match c {
                Ok(s) => writeln!(
                    f,
                    "  consumer {i}: {} messages, done after {:.1}s{}",
                    s.received,
                    s.finished_after.as_secs_f64(),
                    s.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )?,
                Err(e) => writeln!(f, "  consumer {i}: {e}")?,
            }
        }
        if let Some(&(_, last)) = self.progress.last() {
            let since = self
                .progress
                .iter()
                .find(|(_, n)| *n == last)
                .map(|(t, _)| t.as_secs_f64())
                .unwrap_or_default();
            let every_10s: Vec<String> = self
                .progress
                .iter()
                .step_by(50)
                .map(|(t, n)| format!("{:.0}s:{n}", t.as_secs_f64()))
                .collect();
            writeln!(
                f,
                "  deliveries (all consumers): {last}, unchanged since {since:.1}s; \
                 timeline {every_10s:?}"
            )?;
        }
        let problems = self.problems();
        if problems.is_empty() {
            writeln!(f, "  OK: every message exactly once, in producer order")
        } else {
            for p in problems {
                writeln!(f, "  PROBLEM: {p}")?;
            }
            Ok(())
        }
    }
}
