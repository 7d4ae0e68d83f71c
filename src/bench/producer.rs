//! One producer's loop: numbered, timestamped messages at a fixed rate or flat out, in the
//! configured send mode, until its quota or the deadline; then a DISCONNECT whose RECEIPT
//! means the broker took everything it sent.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::run::{new_histogram, now_us, Shared};
use super::{BenchConfig, SendMode, PRODUCER_HEADER, SENT_HEADER, SEQ_HEADER};
use crate::client::{Client, ClientError};
use crate::codec::{Command, Frame};

/// What a producer reports when it is done.
#[derive(Debug)]
pub struct ProducerOutcome {
    /// Receipt round trips (sync: per message; batch: per COMMIT), in microseconds.
    pub confirm: Histogram<u64>,
    /// Reconnects after failures.
    pub reconnects: u64,
}

/// Everything one producer needs.
pub struct Producer {
    pub client: Client,
    pub index: usize,
    pub config: Arc<BenchConfig>,
    pub shared: Arc<Shared>,
    /// Messages to send; `None` means until the deadline.
    pub quota: Option<u64>,
    pub deadline: Option<Instant>,
    pub body: Bytes,
}

impl Producer {
    /// Runs the loop. Messages already sent stay counted when it fails.
    pub async fn run(mut self) -> Result<ProducerOutcome, ClientError> {
        let producer_id = format!("{}-{}", self.shared.run_id, self.index);
        let per_producer_rate = self
            .config
            .rate
            .map(|r| r / self.config.producers.max(1) as f64);
        let mut confirm = new_histogram();
        let start = Instant::now();
        let mut seq = 0u64;
        loop {
            let remaining = self.quota.map_or(u64::MAX, |q| q - seq);
            if remaining == 0
                || self.deadline.is_some_and(|d| Instant::now() >= d)
                || self.shared.stop.load(Ordering::Relaxed)
            {
                break;
            }
            if let Some(rate) = per_producer_rate {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                if due > Instant::now() {
                    self.client.flush().await?;
                    tokio::time::sleep_until(due).await;
                }
            }
            match self.config.send_mode {
                SendMode::Async => {
                    let frame = self.message(&producer_id, seq, None);
                    self.client.send(frame).await?;
                    self.count(1);
                    seq += 1;
                }
                SendMode::Sync => {
                    let frame = self.message(&producer_id, seq, None);
                    let t0 = Instant::now();
                    self.client.send_with_receipt(frame).await?;
                    confirm.saturating_record(t0.elapsed().as_micros() as u64);
                    self.count(1);
                    seq += 1;
                }
                SendMode::Batch(k) => {
                    let n = remaining.min(u64::from(k));
                    let t0 = Instant::now();
                    let tx = self.client.begin().await?;
                    for i in 0..n {
                        let frame = self.message(&producer_id, seq + i, Some(tx.as_str()));
                        self.client.send(frame).await?;
                    }
                    self.client.commit(tx).await?;
                    confirm.saturating_record(t0.elapsed().as_micros() as u64);
                    self.count(n);
                    seq += n;
                }
            }
        }
        let reconnects = self.client.reconnects();
        self.client.disconnect().await?;
        Ok(ProducerOutcome {
            confirm,
            reconnects,
        })
    }

    fn message(&self, producer_id: &str, seq: u64, tx: Option<&str>) -> Frame {
        let mut frame = Frame::new(Command::Send)
            .header("destination", self.config.destination.as_str())
            .header(PRODUCER_HEADER, producer_id)
            .header(SEQ_HEADER, seq.to_string())
            .header(SENT_HEADER, now_us().to_string());
        if self.config.persistent {
            frame = frame.header("persistent", "true");
        }
        if let Some(tx) = tx {
            frame = frame.header("transaction", tx);
        }
        frame.with_body(self.body.clone())
    }

    fn count(&self, n: u64) {
        self.shared.produced.fetch_add(n, Ordering::Relaxed);
        self.shared
            .produced_bytes
            .fetch_add(n * self.body.len() as u64, Ordering::Relaxed);
    }
}
