//! `stompbox consume`: receive messages from a destination on any STOMP broker and print
//! their bodies, one per line (or only how many arrived, with `--quiet`).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::produce::{parse_duration, ConnectArgs};
use crate::client::{AckMode, Client, SubscribeOptions};

/// `stompbox consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Destination, e.g. /queue/orders or /topic/prices.
    #[arg(long)]
    pub destination: String,
    /// Stop after this many messages (0: until interrupted or --timeout).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Ack mode: auto, client or client-individual (every message is acked once printed).
    #[arg(long, default_value = "auto")]
    pub ack: AckMode,
    /// Prefetch (activemq.prefetchSize / prefetch-count); default: the broker's.
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Stop when no message arrived for this long (e.g. 5s).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print only the number of messages received, not their bodies.
    #[arg(long)]
    pub quiet: bool,
}

/// Receives until `--count`, `--timeout` or Ctrl-C, then disconnects with a receipt (so every
/// ACK reached the broker).
pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build runtime")?;
    let received = runtime.block_on(consume(&args))?;
    if args.quiet {
        println!("{received}");
    } else {
        let plural = if received == 1 { "" } else { "s" };
        eprintln!(
            "consumed {received} message{plural} from {}",
            args.destination
        );
    }
    Ok(())
}

async fn consume(args: &ConsumeArgs) -> anyhow::Result<u64> {
    let url = &args.connect.url;
    let mut client = Client::connect(url, args.connect.options())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let options = SubscribeOptions {
        ack: args.ack,
        prefetch: args.prefetch,
        headers: Vec::new(),
    };
    client
        .subscribe(&args.destination, &options)
        .await
        .with_context(|| format!("cannot subscribe to {}", args.destination))?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut out = std::io::stdout().lock();
    let mut received = 0u64;
    while args.count == 0 || received < args.count {
        let next = tokio::select! {
            r = async {
                match args.timeout {
                    Some(t) => client.recv_timeout(t).await,
                    None => client.recv().await.map(Some),
                }
            } => r.context("receiving")?,
            _ = &mut ctrl_c => break,
        };
        let Some(delivery) = next else { break };
        received += 1;
        if !args.quiet {
            out.write_all(delivery.body())?;
            out.write_all(b"\n")?;
        }
        if args.ack != AckMode::Auto {
            client.ack(&delivery, None).await.context("ack")?;
        }
    }
    out.flush()?;
    client.disconnect().await.context("disconnect")?;
    Ok(received)
}
