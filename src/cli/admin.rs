//! Operator commands that read (or, with the broker stopped, change) the store directly:
//! `stompbox queues` and `stompbox purge`; and `stompbox network`, which asks a running
//! broker's admin endpoint.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::config::Config;
use crate::message::DestinationName;
use crate::shard::lock_data_dir;
use crate::store;

/// Where to find the store: a config file or a data directory.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Config file whose `data_dir` holds the store.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The broker's data directory (overrides the config's).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        Ok(config.data_dir)
    }

    fn db(&self) -> anyhow::Result<PathBuf> {
        let dir = self.data_dir()?;
        let db = dir.join(crate::config::DB_FILE);
        if !db.exists() {
            bail!(
                "no store at {} (is --data-dir right? the broker creates it on first start)",
                db.display()
            );
        }
        Ok(db)
    }
}

/// `stompbox queues`: depth of every stored queue, from the `queue_depths` view. Safe while
/// the broker runs (WAL readers never block the writer). Counts stored (persistent) messages,
/// including delivered-but-unacked ones; non-persistent messages live only in the broker's
/// memory.
pub fn queues(args: &StoreArgs) -> anyhow::Result<()> {
    let db = args.db()?;
    let conn = store::open_read_only(&db)?;
    let mut stmt = conn
        .prepare("SELECT destination, subscription, messages, bytes, coalesce(oldest, '') FROM queue_depths ORDER BY destination, subscription")
        .context("cannot read queue_depths (is this a stompbox store?)")?;
    let rows: Vec<(String, String, i64, i64, String)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let width = rows
        .iter()
        .map(|r| display_name(&r.0, &r.1).len())
        .max()
        .unwrap_or(0)
        .max(11);
    println!(
        "{:<width$}  {:>10}  {:>12}  oldest",
        "destination", "messages", "bytes"
    );
    for (dest, sub, messages, bytes, oldest) in rows {
        println!(
            "{:<width$}  {messages:>10}  {bytes:>12}  {oldest}",
            display_name(&dest, &sub)
        );
    }
    Ok(())
}

/// `stompbox purge DESTINATION`: deletes every stored message of a queue (or of a durable
/// subscription, `--subscription CLIENT_ID:NAME`). Refuses while a broker holds the data
/// directory, since it would keep serving the messages it has in memory.
pub fn purge(
    args: &StoreArgs,
    destination: &str,
    subscription: Option<&str>,
) -> anyhow::Result<()> {
    DestinationName::parse(destination)?;
    let db = args.db()?;
    let dir = args.data_dir()?;
    let _lock = lock_data_dir(&dir).map_err(|_| {
        anyhow::anyhow!(
            "a broker is running on {} (it holds {}); stop it before purging from the command line",
            dir.display(),
            dir.join(crate::shard::LOCK_FILE).display()
        )
    })?;
    let n = purge_rows(&db, destination, subscription.unwrap_or(""))?;
    println!(
        "purged {n} messages from {destination}{}",
        subscription.map(|s| format!(" [{s}]")).unwrap_or_default()
    );
    Ok(())
}

fn purge_rows(db: &Path, destination: &str, subscription: &str) -> anyhow::Result<usize> {
    let conn = store::open(db, crate::config::Durability::Fsync)?;
    let n = conn.execute(
        "DELETE FROM messages WHERE destination = ?1 AND subscription = ?2",
        [destination, subscription],
    )?;
    Ok(n)
}

fn display_name(dest: &str, sub: &str) -> String {
    if sub.is_empty() {
        dest.to_string()
    } else {
        format!("{dest} [{sub}]")
    }
}

/// Where `stompbox network` asks.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// The broker's admin endpoint (config `admin.bind`).
    #[arg(long, default_value = "http://127.0.0.1:8161")]
    pub admin: String,
    /// Print the JSON of `/api/network` instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `stompbox network`: the bridges of a running broker, from `GET /api/network`.
pub fn network(args: &NetworkArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/network", args.admin.trim_end_matches('/'));
    let body = ureq::get(&url)
        .call()
        .with_context(|| format!("cannot read {url} (is the broker running, and master?)"))?
        .into_body()
        .read_to_string()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    let bridges: Vec<crate::network::status::BridgeStatus> =
        serde_json::from_str(&body).with_context(|| format!("{url} did not answer bridges"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bridges)?);
        return Ok(());
    }
    if bridges.is_empty() {
        println!("no network connectors (see docs/network.md)");
        return Ok(());
    }
    for b in &bridges {
        println!(
            "{} -> {} ({}): {}, {} forwarded, {} in flight, {} waiting, {} link(s)",
            b.connector,
            b.peer,
            b.peer_name.as_deref().unwrap_or("?"),
            b.state,
            b.forwarded,
            b.in_flight,
            b.backlog,
            b.links
        );
        for r in &b.routes {
            match &r.selector {
                Some(s) => println!("  {:<7} {}  [{s}]", r.kind, r.destination),
                None => println!("  {:<7} {}", r.kind, r.destination),
            }
        }
        if let Some(e) = &b.last_error {
            println!("  last error: {e}");
        }
    }
    Ok(())
}
