//! The `stompbox` command line (clap derive). Each subcommand parses its flags, builds typed
//! config and calls into the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::reload::Reloadable;

mod admin;
mod bench;
mod consume;
mod produce;

/// A STOMP-first message broker.
#[derive(Debug, Parser)]
#[command(name = "stompbox", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Print an argon2id hash of a password for `[[security.users]]` (`password_hash`).
    /// Asks for it twice on a terminal; otherwise reads one line from stdin.
    Passwd,
    /// Load and validate a config file, print the effective configuration, and exit.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Send messages to a destination (any STOMP broker; failover URIs too).
    Produce(produce::ProduceArgs),
    /// Receive messages from a destination and print their bodies (or a count).
    Consume(consume::ConsumeArgs),
    /// Load generator: producers, consumers, latency, lost and duplicated messages.
    Bench(bench::BenchArgs),
    /// Print the depth of every stored queue (from the store; safe while the broker runs).
    Queues(admin::StoreArgs),
    /// Print the network bridges of a running broker (from its admin endpoint).
    Network(admin::NetworkArgs),
    /// Delete every stored message of a queue (the broker must be stopped).
    Purge {
        /// The queue, e.g. /queue/orders (or the topic of a durable subscription).
        destination: String,
        /// A durable subscription of the topic, as CLIENT_ID:NAME.
        #[arg(long)]
        subscription: Option<String>,
        #[command(flatten)]
        store: admin::StoreArgs,
    },
}

/// `stompbox serve`: flags override the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see config/stompbox.toml); defaults apply without one.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the STOMP TCP listener (config `bind`).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Directory for stompbox.db and other files (config `data_dir`); created if missing.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of shards, 0 = one per CPU (config `shards`; `--cores` still works).
    #[arg(long, alias = "cores")]
    pub shards: Option<usize>,
    /// Address of the admin HTTP listener (config `admin.bind`).
    #[arg(long)]
    pub admin_bind: Option<SocketAddr>,
    /// Address of the STOMP-over-WebSocket listener (config `websocket.bind`).
    #[arg(long)]
    pub ws_bind: Option<SocketAddr>,
}

impl ServeArgs {
    /// The effective configuration: the file (or defaults), then the flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(shards) = self.shards {
            config.shards = shards;
        }
        if let Some(bind) = self.admin_bind {
            config.admin.bind = bind;
        }
        if let Some(bind) = self.ws_bind {
            config.websocket.bind = bind;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Queues(args) => admin::queues(&args),
        Command::Network(args) => admin::network(&args),
        Command::Purge {
            destination,
            subscription,
            store,
        } => admin::purge(&store, &destination, subscription.as_deref()),
        Command::Passwd => passwd(),
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            println!(
                "{}",
                toml::to_string_pretty(&config).context("cannot print config")?
            );
            eprintln!("{}: ok", file.display());
            Ok(())
        }
    }
}

/// Serves until SIGINT or SIGTERM, then shuts down gracefully; a second signal exits at
/// once. The broker is a standby until it holds the lease (see `role`).
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    // Certificate and users problems stop the process at once, also on a standby.
    let loaded = Reloadable::load(&config)?;
    let (events_tx, events) = std::sync::mpsc::channel();
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build signal runtime")?;
    // Register the handlers before announcing anything, so a signal sent right after the
    // listening line is never taken by the default action.
    let (mut term, mut int, mut hup) = signals.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    let signal_tx = events_tx.clone();
    let reload = loaded.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            signals.block_on(async {
                let mut stopping = false;
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                        _ = hup.recv() => {
                            reload.reload();
                            continue;
                        }
                    }
                    if stopping {
                        log::warn!("second signal: exiting without a graceful shutdown");
                        std::process::exit(130);
                    }
                    stopping = true;
                    log::info!("signal received, shutting down (send another to force)");
                    let _ = signal_tx.send(crate::role::Event::Signal);
                }
            });
        })?;
    crate::role::run(config, loaded, events_tx, events)
}

/// `stompbox passwd`: the hash of a password read without echo (or from a pipe).
fn passwd() -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal};
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let again = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(first == again, "the two passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    let hash = crate::security::users::hash_password(&password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}
