//! The raw SQLite commit rate of a disk: one single-row INSERT + COMMIT after another in a WAL
//! database with `synchronous=FULL`, the settings of the store writer in `fsync` mode. Each
//! commit waits for an fsync, so this is the physical limit of a persistent producer that
//! waits for a receipt per message without group commit; group commit is how the broker
//! beats it with many producers.
//!
//! Measured three ways, one after another for the same duration each: single-row commits
//! (rate and latency percentiles: a sync producer's floor), and commits of 8 and of 64 rows
//! (rows per second: what group commit of 8 or 64 waiting producers could reach at best).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;

/// What one baseline run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SqliteBaseline {
    /// Single-row commits made.
    pub commits: u64,
    /// Wall time of the single-row loop, in seconds.
    pub elapsed_s: f64,
    /// Single-row commits per second.
    pub commits_per_s: f64,
    /// Median time of one single-row INSERT + COMMIT, in microseconds.
    pub commit_p50_us: u64,
    /// Its 99th percentile.
    pub commit_p99_us: u64,
    /// Rows per second committed 8 to a transaction.
    pub rows_per_s_8: f64,
    /// Rows per second committed 64 to a transaction.
    pub rows_per_s_64: f64,
}

/// Rows committed per transaction in the batched runs.
pub const BATCHES: [usize; 2] = [8, 64];

/// Commits single rows of `body_bytes` in a fresh database in `dir` for `duration` (after a
/// short warm-up), then deletes the database.
pub fn measure(
    dir: &Path,
    body_bytes: usize,
    duration: Duration,
) -> Result<SqliteBaseline, rusqlite::Error> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let path = dir.join(format!("stompbox-bench-baseline-{}.db", std::process::id()));
    let _cleanup = Cleanup(path.clone());
    let conn = Connection::open(&path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("sqlite baseline: journal_mode is {mode}, not wal");
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )?;
    let body = vec![b'x'; body_bytes];
    let mut insert = conn.prepare("INSERT INTO messages (body) VALUES (?1)")?;
    // Warm-up: the first commits create the WAL file and are not representative.
    for _ in 0..20 {
        insert.execute([&body])?;
    }
    let start = Instant::now();
    let mut times_us = Vec::with_capacity(65_536);
    // Autocommit: every execute is its own BEGIN … COMMIT with an fsync of the WAL.
    while start.elapsed() < duration {
        let t = Instant::now();
        insert.execute([&body])?;
        times_us.push(t.elapsed().as_micros() as u64);
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let commits = times_us.len() as u64;
    times_us.sort_unstable();
    let pct = |p: f64| {
        times_us
            .get(((times_us.len() as f64 * p) as usize).min(times_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let (commit_p50_us, commit_p99_us) = (pct(0.50), pct(0.99));
    drop(insert);
    let [rows_per_s_8, rows_per_s_64] = BATCHES.map(|rows| batched(&conn, &body, rows, duration));
    Ok(SqliteBaseline {
        commits,
        elapsed_s,
        commits_per_s: commits as f64 / elapsed_s,
        commit_p50_us,
        commit_p99_us,
        rows_per_s_8: rows_per_s_8?,
        rows_per_s_64: rows_per_s_64?,
    })
}

/// Rows per second committed `rows` to a transaction for `duration`.
fn batched(
    conn: &Connection,
    body: &[u8],
    rows: usize,
    duration: Duration,
) -> Result<f64, rusqlite::Error> {
    let mut insert = conn.prepare("INSERT INTO messages (body) VALUES (?1)")?;
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        conn.execute_batch("BEGIN")?;
        for _ in 0..rows {
            insert.execute([body])?;
        }
        conn.execute_batch("COMMIT")?;
        done += rows as u64;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

fn io_error(dir: &Path, e: std::io::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(format!("cannot create {}: {e}", dir.display()).into())
}

/// Removes the database and its WAL and shm files.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let b = measure(dir.path(), 16, Duration::from_millis(50)).unwrap();
        assert!(b.commits > 0);
        assert!(b.commits_per_s > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
