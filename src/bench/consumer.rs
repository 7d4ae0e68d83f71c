//! One consumer's loop: receive, record latency and sequence, ack per the ack mode, and stop
//! when its group has every message the producers sent, when nothing arrived for
//! `drain_timeout` after they finished, or at the deadline.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::run::{new_histogram, now_us, Shared};
use super::seen::Seen;
use super::{Amount, BenchConfig, Mode, PRODUCER_HEADER, SENT_HEADER, SEQ_HEADER};
use crate::client::{AckMode, Client, ClientError, Delivery};

/// How often an idle consumer looks at the stop conditions.
const POLL: Duration = Duration::from_millis(100);

/// What a consumer reports when it is done.
#[derive(Debug)]
pub struct ConsumerOutcome {
    /// End-to-end latency (send header to receipt by this consumer), in microseconds.
    pub latency: Histogram<u64>,
    /// Reconnects after failures.
    pub reconnects: u64,
}

/// Everything one consumer needs.
pub struct Consumer {
    pub client: Client,
    pub config: Arc<BenchConfig>,
    pub shared: Arc<Shared>,
    /// The group's seen set: shared by a queue's consumers, one per topic subscriber.
    pub seen: Arc<Mutex<Seen>>,
    /// Drain mode only: stop receiving at this time.
    pub deadline: Option<Instant>,
}

impl Consumer {
    /// Runs the loop.
    pub async fn run(mut self) -> Result<ConsumerOutcome, ClientError> {
        let mut latency = new_histogram();
        let ack_every = self.config.prefetch.map_or(100, |p| (p / 2).clamp(1, 1000));
        let mut unacked: Option<Delivery> = None;
        let mut unacked_count = 0u32;
        let mut last_message = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Relaxed)
                || self.deadline.is_some_and(|d| Instant::now() >= d)
            {
                break;
            }
            let Some(delivery) = self.client.recv_timeout(POLL).await? else {
                if let Some(d) = unacked.take() {
                    self.client.ack(&d, None).await?;
                    unacked_count = 0;
                }
                if self.done(None) || self.idle_for(last_message) >= self.config.drain_timeout {
                    break;
                }
                continue;
            };
            last_message = Instant::now();
            let unique = self.record(&delivery, &mut latency);
            match self.config.ack {
                AckMode::Auto => {}
                AckMode::ClientIndividual => self.client.ack(&delivery, None).await?,
                AckMode::Client => {
                    unacked_count += 1;
                    if unacked_count >= ack_every {
                        self.client.ack(&delivery, None).await?;
                        unacked_count = 0;
                        unacked = None;
                    } else {
                        unacked = Some(delivery);
                    }
                }
            }
            if self.done(unique) {
                break;
            }
        }
        if let Some(d) = unacked.take() {
            self.client.ack(&d, None).await?;
        }
        let reconnects = self.client.reconnects();
        self.client.disconnect().await?;
        Ok(ConsumerOutcome {
            latency,
            reconnects,
        })
    }

    /// Counts a delivery; returns the group's unique count, or `None` for a message that is
    /// not from this run (left over in the destination by an earlier one).
    fn record(&self, delivery: &Delivery, latency: &mut Histogram<u64>) -> Option<u64> {
        let producer = delivery.get(PRODUCER_HEADER);
        let seq = delivery.get(SEQ_HEADER).and_then(|s| s.parse::<u64>().ok());
        let ours = producer.is_some_and(|p| {
            self.config.mode == Mode::Drain || p.starts_with(&self.shared.run_prefix)
        });
        let (Some(producer), Some(seq), true) = (producer, seq, ours) else {
            self.shared.foreign.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if let Some(sent) = delivery
            .get(SENT_HEADER)
            .and_then(|s| s.parse::<u64>().ok())
        {
            latency.saturating_record(now_us().saturating_sub(sent).max(1));
        }
        let unique = {
            // No await while held; the lock is per message and short (see `Seen`).
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.insert(producer, seq);
            seen.unique()
        };
        self.shared.consumed.fetch_add(1, Ordering::Relaxed);
        self.shared
            .consumed_bytes
            .fetch_add(delivery.body().len() as u64, Ordering::Relaxed);
        self.shared
            .last_consume_us
            .fetch_max(self.shared.elapsed_us(), Ordering::Relaxed);
        Some(unique)
    }

    /// True when the group has every message it can expect.
    fn done(&self, unique: Option<u64>) -> bool {
        let expected = match (self.config.mode, self.config.amount) {
            (Mode::Drain, Amount::Count(n)) => n,
            (Mode::Drain, Amount::Duration(_)) => return false,
            _ if self.shared.producers_left.load(Ordering::Acquire) > 0 => return false,
            _ => self.shared.produced.load(Ordering::Relaxed),
        };
        let unique = match unique {
            Some(u) => u,
            None => self.seen.lock().unwrap_or_else(|e| e.into_inner()).unique(),
        };
        unique >= expected
    }

    /// How long the consumer has waited for a message that may still come: since its last
    /// message or since the producers finished, whichever is later. Zero while producers run.
    fn idle_for(&self, last_message: Instant) -> Duration {
        if self.config.mode != Mode::Drain {
            if self.shared.producers_left.load(Ordering::Acquire) > 0 {
                return Duration::ZERO;
            }
            let done_at =
                Duration::from_micros(self.shared.producers_done_us.load(Ordering::Acquire));
            let since_done = self.shared.start.elapsed().saturating_sub(done_at);
            return since_done.min(last_message.elapsed());
        }
        last_message.elapsed()
    }
}
