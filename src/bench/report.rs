//! The result of a run: counts, rates, latency percentiles, lost and duplicated messages and
//! the SQLite baseline, as a few lines of text or one flat JSON line (`--json`) that scripts
//! can read without a JSON library.

use std::fmt;

use hdrhistogram::Histogram;
use serde_json::json;

use super::sqlite::SqliteBaseline;
use super::{BenchConfig, Mode, SendMode};

/// Percentiles of a histogram of microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    /// The percentiles, or `None` for an empty histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        })
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub mode: String,
    pub destination: String,
    pub producers: usize,
    pub consumers: usize,
    pub size: usize,
    pub persistent: bool,
    pub send: String,
    pub ack: String,
    pub prefetch: Option<u32>,
    pub rate: Option<f64>,
    pub produced: u64,
    pub produced_bytes: u64,
    pub produced_elapsed_s: f64,
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub consumed_elapsed_s: f64,
    /// Distinct messages received (per subscriber, summed, for a topic).
    pub unique: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Messages from other runs found in the destination (not counted above).
    pub foreign: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub idle_conns: usize,
    /// End-to-end latency: send to receipt by a consumer.
    pub latency: Option<Latency>,
    /// Producer receipt round trips (sync: per message; batch: per COMMIT).
    pub confirm: Option<Latency>,
    pub sqlite_commits_per_s: Option<f64>,
    /// The whole SQLite baseline, when measured.
    pub sqlite: Option<SqliteBaseline>,
    pub first_errors: Vec<String>,
    batch: Option<u32>,
}

impl Report {
    /// An empty report describing `config`.
    pub fn new(config: &BenchConfig) -> Report {
        Report {
            mode: config.mode.to_string(),
            destination: config.destination.clone(),
            producers: match config.mode {
                Mode::Both | Mode::Fill => config.producers,
                _ => 0,
            },
            consumers: match config.mode {
                Mode::Both | Mode::Drain => config.consumers,
                _ => 0,
            },
            size: config.size,
            persistent: config.persistent,
            send: config.send_mode.to_string(),
            ack: config.ack.to_string(),
            prefetch: config.prefetch,
            rate: config.rate,
            batch: match config.send_mode {
                SendMode::Batch(k) => Some(k),
                _ => None,
            },
            ..Report::default()
        }
    }

    /// Records the SQLite baseline.
    pub fn set_sqlite(&mut self, baseline: &SqliteBaseline) {
        self.sqlite_commits_per_s = Some(baseline.commits_per_s);
        self.sqlite = Some(baseline.clone());
    }

    /// Produced messages per second.
    pub fn produced_per_s(&self) -> f64 {
        per_s(self.produced as f64, self.produced_elapsed_s)
    }

    /// Consumed messages per second (every delivery; a topic's fan-out counts each copy).
    pub fn consumed_per_s(&self) -> f64 {
        per_s(self.consumed as f64, self.consumed_elapsed_s)
    }

    /// Produced rate over the SQLite commit rate: how far group commit (or batching) goes
    /// beyond one fsync per message.
    pub fn produced_vs_sqlite(&self) -> Option<f64> {
        self.sqlite_commits_per_s
            .filter(|c| *c > 0.0 && self.produced > 0)
            .map(|c| self.produced_per_s() / c)
    }

    /// One line of flat JSON.
    pub fn to_json(&self) -> String {
        let lat = |l: Option<Latency>, f: fn(&Latency) -> u64| l.as_ref().map(f);
        json!({
            "mode": self.mode,
            "destination": self.destination,
            "producers": self.producers,
            "consumers": self.consumers,
            "size": self.size,
            "persistent": self.persistent,
            "send": self.send,
            "ack": self.ack,
            "prefetch": self.prefetch,
            "rate": self.rate,
            "produced": self.produced,
            "produced_elapsed_s": round(self.produced_elapsed_s, 6),
            "produced_per_s": round(self.produced_per_s(), 1),
            "produced_mb_per_s": round(mb_per_s(self.produced_bytes, self.produced_elapsed_s), 3),
            "consumed": self.consumed,
            "consumed_elapsed_s": round(self.consumed_elapsed_s, 6),
            "consumed_per_s": round(self.consumed_per_s(), 1),
            "consumed_mb_per_s": round(mb_per_s(self.consumed_bytes, self.consumed_elapsed_s), 3),
            "unique": self.unique,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "foreign": self.foreign,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "idle_conns": self.idle_conns,
            "latency_p50_us": lat(self.latency, |l| l.p50_us),
            "latency_p99_us": lat(self.latency, |l| l.p99_us),
            "latency_p999_us": lat(self.latency, |l| l.p999_us),
            "latency_max_us": lat(self.latency, |l| l.max_us),
            "confirm_p50_us": lat(self.confirm, |l| l.p50_us),
            "confirm_p99_us": lat(self.confirm, |l| l.p99_us),
            "confirm_max_us": lat(self.confirm, |l| l.max_us),
            "sqlite_commits_per_s": self.sqlite_commits_per_s.map(|c| round(c, 1)),
            "sqlite_commit_p50_us": self.sqlite.as_ref().map(|s| s.commit_p50_us),
            "sqlite_commit_p99_us": self.sqlite.as_ref().map(|s| s.commit_p99_us),
            "sqlite_rows_per_s_8": self.sqlite.as_ref().map(|s| round(s.rows_per_s_8, 1)),
            "sqlite_rows_per_s_64": self.sqlite.as_ref().map(|s| round(s.rows_per_s_64, 1)),
            "produced_vs_sqlite": self.produced_vs_sqlite().map(|r| round(r, 3)),
            "first_error": self.first_errors.first(),
        })
        .to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.sqlite, self.sqlite_commits_per_s) {
            (Some(s), _) => writeln!(
                f,
                "sqlite     {:.0} commits/s (single-row INSERT + COMMIT, WAL, synchronous=FULL; \
                 p50 {} us, p99 {} us); {:.0} rows/s at 8 rows per commit, {:.0} at 64",
                s.commits_per_s, s.commit_p50_us, s.commit_p99_us, s.rows_per_s_8, s.rows_per_s_64
            )?,
            (None, Some(c)) => writeln!(
                f,
                "sqlite     {c:.0} commits/s (single-row INSERT + COMMIT, WAL, synchronous=FULL)"
            )?,
            (None, None) => {}
        }
        if self.mode == "sqlite" {
            return Ok(());
        }
        if self.mode == "idle" {
            return writeln!(f, "idle       {} connections held", self.idle_conns);
        }
        let prefetch = self
            .prefetch
            .map_or("default".to_string(), |p| p.to_string());
        let producers = format!(
            "{} producers ({}{})",
            self.producers,
            self.send,
            if self.persistent { ", persistent" } else { "" }
        );
        let consumers = format!(
            "{} consumers (ack {}, prefetch {prefetch})",
            self.consumers, self.ack
        );
        let who = match self.mode.as_str() {
            "fill" => producers,
            "drain" => consumers,
            _ => format!("{producers}, {consumers}"),
        };
        let size = match self.mode.as_str() {
            "drain" => String::new(),
            _ => format!(", {} B", self.size),
        };
        writeln!(
            f,
            "bench      {} {}: {who}{size}{}",
            self.mode,
            self.destination,
            self.rate.map_or(String::new(), |r| format!(", {r} msg/s")),
        )?;
        if self.producers > 0 {
            writeln!(
                f,
                "produced   {} msgs in {:.2} s: {:.0} msg/s, {:.2} MB/s{}",
                self.produced,
                self.produced_elapsed_s,
                self.produced_per_s(),
                mb_per_s(self.produced_bytes, self.produced_elapsed_s),
                self.produced_vs_sqlite().map_or(String::new(), |r| format!(
                    " ({r:.2}x the sqlite commit rate)"
                )),
            )?;
        }
        if self.consumers > 0 {
            writeln!(
                f,
                "consumed   {} msgs in {:.2} s: {:.0} msg/s, {:.2} MB/s",
                self.consumed,
                self.consumed_elapsed_s,
                self.consumed_per_s(),
                mb_per_s(self.consumed_bytes, self.consumed_elapsed_s),
            )?;
        }
        if let Some(l) = self.latency {
            writeln!(f, "latency    {}", format_latency(&l))?;
        }
        if let Some(l) = self.confirm {
            let what = if self.batch.is_some() {
                "per commit"
            } else {
                "per message"
            };
            writeln!(f, "receipts   {} ({what})", format_latency(&l))?;
        }
        write!(
            f,
            "checks     lost {}  duplicated {}  errors {}  reconnects {}",
            self.lost, self.duplicated, self.errors, self.reconnects
        )?;
        if self.foreign > 0 {
            write!(f, "  foreign {} (left by earlier runs)", self.foreign)?;
        }
        if self.idle_conns > 0 {
            write!(f, "  idle connections {}", self.idle_conns)?;
        }
        writeln!(f)?;
        for e in &self.first_errors {
            writeln!(f, "error      {e}")?;
        }
        Ok(())
    }
}

fn format_latency(l: &Latency) -> String {
    format!(
        "p50 {}  p99 {}  p99.9 {}  max {}",
        us(l.p50_us),
        us(l.p99_us),
        us(l.p999_us),
        us(l.max_us)
    )
}

fn us(v: u64) -> String {
    if v >= 1_000_000 {
        format!("{:.2} s", v as f64 / 1e6)
    } else if v >= 1000 {
        format!("{:.2} ms", v as f64 / 1e3)
    } else {
        format!("{v} µs")
    }
}

fn per_s(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    per_s(bytes as f64 / 1e6, secs)
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_flat_line() {
        let r = Report {
            mode: "both".into(),
            producers: 1,
            consumers: 1,
            produced: 1000,
            produced_bytes: 256_000,
            produced_elapsed_s: 0.5,
            consumed: 1000,
            consumed_elapsed_s: 0.5,
            latency: Some(Latency {
                p50_us: 10,
                p99_us: 20,
                p999_us: 30,
                max_us: 40,
            }),
            sqlite_commits_per_s: Some(500.0),
            ..Report::default()
        };
        let line = r.to_json();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["produced_per_s"], 2000.0);
        assert_eq!(v["produced_mb_per_s"], 0.512);
        assert_eq!(v["latency_p99_us"], 20);
        assert_eq!(v["produced_vs_sqlite"], 4.0);
        assert!(v["confirm_p50_us"].is_null());
        assert_eq!(r.to_string().lines().count(), 6);
    }

    #[test]
    fn units() {
        assert_eq!(us(999), "999 µs");
        assert_eq!(us(1500), "1.50 ms");
        assert_eq!(us(2_500_000), "2.50 s");
    }
}
