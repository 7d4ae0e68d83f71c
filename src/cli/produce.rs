//! `stompbox produce`: send messages to a destination on any STOMP broker. Also home of
//! [`ConnectArgs`], the connection flags `produce`, `consume` and `bench` share.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::client::{BrokerUri, Client, ConnectOptions};
use crate::codec::{Command, Frame};

/// Where and how to connect (shared by `produce`, `consume` and `bench`).
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Broker URI: tcp://host:port or
    /// failover:(tcp://a:61613,tcp://b:61613)?randomize=false&maxReconnectAttempts=-1
    #[arg(long, default_value = "tcp://127.0.0.1:61613")]
    pub url: BrokerUri,
    /// CONNECT `login`.
    #[arg(long)]
    pub login: Option<String>,
    /// CONNECT `passcode`.
    #[arg(long)]
    pub passcode: Option<String>,
    /// CONNECT `client-id`.
    #[arg(long)]
    pub client_id: Option<String>,
    /// CONNECT `host` (the virtual host; RabbitMQ's default is /).
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// Heart-beats to offer, as "send_ms,receive_ms" (0 disables a direction).
    #[arg(long, default_value = "0,0", value_parser = parse_heart_beat)]
    pub heart_beat: (Duration, Duration),
}

impl ConnectArgs {
    /// The CONNECT options these flags describe.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            login: self.login.clone(),
            passcode: self.passcode.clone(),
            client_id: self.client_id.clone(),
            host: self.vhost.clone(),
            heart_beat: self.heart_beat,
            ..ConnectOptions::default()
        }
    }
}

/// `stompbox produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Destination, e.g. /queue/orders or /topic/prices.
    #[arg(long)]
    pub destination: String,
    /// How many messages to send.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Send with `persistent:true` (stored before it is acknowledged).
    #[arg(long)]
    pub persistent: bool,
    /// Ask for a RECEIPT for every message and wait for it before sending the next.
    #[arg(long)]
    pub receipt: bool,
    /// The body of every message (default: "message N").
    #[arg(long, conflicts_with = "size")]
    pub body: Option<String>,
    /// Instead of --body: a body of this many bytes.
    #[arg(long)]
    pub size: Option<usize>,
    /// Extra header NAME:VALUE (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
}

/// Sends the messages and disconnects with a receipt, so every message has reached the
/// broker when this returns.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build runtime")?;
    let sent = runtime.block_on(produce(&args))?;
    let plural = if sent == 1 { "" } else { "s" };
    println!("produced {sent} message{plural} to {}", args.destination);
    Ok(())
}

async fn produce(args: &ProduceArgs) -> anyhow::Result<u64> {
    let url = &args.connect.url;
    let mut client = Client::connect(url, args.connect.options())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let sized = args.size.map(|n| bytes::Bytes::from(vec![b'x'; n]));
    for n in 1..=args.count {
        let body = match (&args.body, &sized) {
            (Some(text), _) => bytes::Bytes::from(text.clone()),
            (None, Some(b)) => b.clone(),
            (None, None) => bytes::Bytes::from(format!("message {n}")),
        };
        let mut frame = Frame::new(Command::Send).header("destination", args.destination.as_str());
        if args.persistent {
            frame = frame.header("persistent", "true");
        }
        for (name, value) in &args.headers {
            frame = frame.header(name.as_str(), value.as_str());
        }
        let frame = frame.with_body(body);
        if args.receipt {
            client.send_with_receipt(frame).await
        } else {
            client.send(frame).await
        }
        .with_context(|| format!("sending message {n} to {}", args.destination))?;
    }
    client.disconnect().await.context("disconnect")?;
    Ok(args.count)
}

/// Parses `send_ms,receive_ms`.
fn parse_heart_beat(s: &str) -> Result<(Duration, Duration), String> {
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("invalid heart-beat {s:?} (expected send_ms,receive_ms)"))
    };
    let (x, y) = s
        .split_once(',')
        .ok_or_else(|| format!("invalid heart-beat {s:?} (expected send_ms,receive_ms)"))?;
    Ok((parse(x)?, parse(y)?))
}

/// Parses `NAME:VALUE`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("invalid header {s:?} (expected NAME:VALUE)")),
    }
}

/// Parses a duration: `10` (seconds), `1.5s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("invalid duration {s:?} (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn headers_and_heart_beats() {
        assert_eq!(
            parse_header("type:order:v2"),
            Ok(("type".into(), "order:v2".into()))
        );
        assert!(parse_header(":x").is_err());
        assert_eq!(
            parse_heart_beat("1000,0"),
            Ok((Duration::from_secs(1), Duration::ZERO))
        );
        assert!(parse_heart_beat("1000").is_err());
    }
}
