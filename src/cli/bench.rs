//! `stompbox bench`: flags into a [`BenchConfig`], then [`crate::bench::run`], then the report
//! as text or one JSON line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::produce::{parse_duration, ConnectArgs};
use crate::bench::{Amount, BenchConfig, Mode, SendMode};
use crate::client::{AckMode, BrokerUri};

/// Messages sent when neither --count nor --duration is given.
const DEFAULT_COUNT: u64 = 100_000;

/// `stompbox bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Broker URI the consumers connect to, when not --url's: send to one broker and consume
    /// from another to measure a network of brokers (the same --login, --passcode, --vhost).
    #[arg(long)]
    pub consume_url: Option<BrokerUri>,
    /// Destination: /queue/NAME or /topic/NAME (every consumer of a topic gets every message).
    #[arg(long, default_value = "/queue/stompbox.bench")]
    pub destination: String,
    /// both (produce and consume), fill (produce only), drain (consume only), idle (only
    /// hold --idle-conns), sqlite (only the --sqlite-baseline).
    #[arg(long, default_value = "both")]
    pub mode: Mode,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Send with persistent:true.
    #[arg(long)]
    pub persistent: bool,
    /// async (no receipts), sync (a receipt per message), batch:K (transactions of K).
    #[arg(long, default_value = "async")]
    pub send: SendMode,
    /// Consumer ack mode: auto, client, client-individual.
    #[arg(long, default_value = "auto")]
    pub ack: AckMode,
    /// Consumer prefetch; default: the broker's.
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Total send rate in messages/s over all producers; default: flat out.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Messages to send in total (drain: to expect). Default 100000 unless --duration.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Send (drain: receive; idle: hold) for this long, e.g. 10s.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Extra connections that CONNECT and stay idle during the run.
    #[arg(long, default_value_t = 0)]
    pub idle_conns: usize,
    /// Threads running the clients.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Consumers stop when nothing arrived for this long after the producers finished.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Also measure the raw SQLite commit rate (WAL, synchronous=FULL) in this directory.
    #[arg(long)]
    pub sqlite_baseline: Option<PathBuf>,
    /// How long the SQLite baseline runs.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub sqlite_duration: Duration,
    /// Print one line of JSON instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// No live progress line.
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchArgs {
    /// The typed configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<BenchConfig> {
        if self.mode == Mode::Sqlite && self.sqlite_baseline.is_none() {
            anyhow::bail!("--mode sqlite needs --sqlite-baseline DIR");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            anyhow::bail!("--rate must be a positive number of messages per second");
        }
        let amount = match (self.count, self.duration) {
            (Some(n), _) => Amount::Count(n),
            (None, Some(d)) => Amount::Duration(d),
            (None, None) => Amount::Count(DEFAULT_COUNT),
        };
        Ok(BenchConfig {
            uri: self.connect.url.clone(),
            consume_uri: self.consume_url.clone(),
            connect: self.connect.options(),
            destination: self.destination.clone(),
            mode: self.mode,
            producers: self.producers,
            consumers: self.consumers,
            size: self.size,
            persistent: self.persistent,
            send_mode: self.send,
            ack: self.ack,
            prefetch: self.prefetch,
            rate: self.rate,
            amount,
            idle_conns: self.idle_conns,
            threads: self.threads.max(1),
            drain_timeout: self.drain_timeout,
            sqlite_baseline: self.sqlite_baseline.clone(),
            sqlite_duration: self.sqlite_duration,
            progress: !self.no_progress,
        })
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let report = crate::bench::run(config).context("bench")?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(())
}
