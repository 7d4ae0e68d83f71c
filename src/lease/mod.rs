//! The master/slave lease: one row, `broker_lease`, in the same SQLite file as the messages.
//!
//! A broker that can set itself as holder (row free, expired, or its holder's process known
//! dead) becomes master and bumps the epoch. The epoch is the fencing token: every store write
//! transaction checks, inside that transaction, that the row still names this broker and
//! epoch (`store::writer`), so a master that was paused past its lease and wakes up cannot
//! commit a single write after a takeover. `role.rs` runs the master/standby life cycle.
//!
//! Fast crash detection: the master also holds an OS file lock on `stompbox.lock`. The kernel
//! drops it the instant the process dies, so a standby blocked on that lock learns of a
//! `kill -9` at once and takes over without waiting for the lease to expire. A hung but alive
//! master keeps its file lock, and is handled by the lease TTL and fencing instead.

pub mod role;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::store::StoreError;

/// Who a broker is, as written into the lease row for operators.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Unique per process: `host:pid:start-time`.
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub admin_address: String,
}

impl Identity {
    /// This process's identity.
    pub fn new(admin_address: String) -> Identity {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        let pid = std::process::id();
        let start = now_ms();
        Identity {
            holder: format!("{host}:{pid}:{start}"),
            host,
            pid,
            admin_address,
        }
    }
}

/// The lease row, as `/api/lease` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseRow {
    pub holder: Option<String>,
    pub epoch: u64,
    pub acquired_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub admin_address: Option<String>,
    pub stomp_address: Option<String>,
}

/// Reads the lease row.
pub fn read(conn: &Connection) -> Result<LeaseRow, StoreError> {
    let row = conn.query_row(
        "SELECT holder, epoch, acquired_at, expires_at, host, pid, admin_address, stomp_address
           FROM broker_lease WHERE id = 1",
        [],
        |r| {
            Ok(LeaseRow {
                holder: r.get(0)?,
                epoch: r.get::<_, i64>(1)? as u64,
                acquired_at: r.get(2)?,
                expires_at: r.get(3)?,
                host: r.get(4)?,
                pid: r.get(5)?,
                admin_address: r.get(6)?,
                stomp_address: r.get(7)?,
            })
        },
    )?;
    Ok(row)
}

/// Takes the lease if it is free or expired, or unconditionally with `force` (the caller
/// holds the OS file lock, so no other live broker process is master). Returns the new epoch.
pub fn try_acquire(
    conn: &mut Connection,
    me: &Identity,
    ttl_ms: u64,
    force: bool,
) -> Result<Option<u64>, StoreError> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (holder, epoch, expires_at): (Option<String>, i64, Option<i64>) = tx.query_row(
        "SELECT holder, epoch, expires_at FROM broker_lease WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let free = holder.is_none() || expires_at.is_none_or(|e| e <= now);
    if !(free || force) {
        return Ok(None);
    }
    let epoch = epoch + 1;
    tx.execute(
        "UPDATE broker_lease SET holder = ?1, epoch = ?2, acquired_at = ?3, expires_at = ?4,
                host = ?5, pid = ?6, admin_address = ?7, stomp_address = NULL WHERE id = 1",
        params![
            me.holder,
            epoch,
            now,
            now + ttl_ms as i64,
            me.host,
            me.pid,
            me.admin_address
        ],
    )?;
    tx.commit()?;
    Ok(Some(epoch as u64))
}

/// Extends the lease. False if the row no longer names this holder and epoch (taken over).
/// Takes the write lock first (IMMEDIATE) so a busy store waits in SQLite's busy handler
/// instead of failing at once.
pub fn renew(
    conn: &mut Connection,
    me: &Identity,
    epoch: u64,
    ttl_ms: u64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE broker_lease SET expires_at = ?3 WHERE id = 1 AND holder = ?1 AND epoch = ?2",
        params![me.holder, epoch as i64, now_ms() + ttl_ms as i64],
    )?;
    tx.commit()?;
    Ok(n == 1)
}

/// Records the STOMP address the master serves on, for operators.
pub fn set_stomp_address(
    conn: &Connection,
    me: &Identity,
    epoch: u64,
    addr: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE broker_lease SET stomp_address = ?3 WHERE id = 1 AND holder = ?1 AND epoch = ?2",
        params![me.holder, epoch as i64, addr],
    )?;
    Ok(())
}

/// Gives the lease up (clean shutdown), so a standby takes over at once.
pub fn release(conn: &Connection, me: &Identity, epoch: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE broker_lease SET holder = NULL, expires_at = NULL, stomp_address = NULL
          WHERE id = 1 AND holder = ?1 AND epoch = ?2",
        params![me.holder, epoch as i64],
    )?;
    Ok(())
}

/// The fencing check, run inside a write transaction: does the row still name `holder` at
/// `epoch`?
pub fn holds(conn: &Connection, holder: &str, epoch: u64) -> Result<bool, rusqlite::Error> {
    let row: Option<(Option<String>, i64)> = conn
        .query_row(
            "SELECT holder, epoch FROM broker_lease WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(matches!(row, Some((Some(h), e)) if h == holder && e as u64 == epoch))
}

/// Milliseconds since the epoch (the lease is judged on the brokers' clocks, which share one
/// host: see docs/ha.md).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stompbox.db");
        crate::store::open(&path, crate::store::Durability::Relaxed).unwrap();
        (dir, path)
    }

    fn me(name: &str) -> Identity {
        Identity {
            holder: name.into(),
            host: "h".into(),
            pid: 1,
            admin_address: "a".into(),
        }
    }

    #[test]
    fn one_holder_at_a_time_and_epochs_grow() {
        let (_d, path) = db();
        let mut a = Connection::open(&path).unwrap();
        let mut b = Connection::open(&path).unwrap();
        let e1 = try_acquire(&mut a, &me("a"), 60_000, false)
            .unwrap()
            .unwrap();
        assert_eq!(try_acquire(&mut b, &me("b"), 60_000, false).unwrap(), None);
        assert!(renew(&mut a, &me("a"), e1, 60_000).unwrap());
        // b knows a is dead (file lock): it takes over and a is fenced.
        let e2 = try_acquire(&mut b, &me("b"), 60_000, true)
            .unwrap()
            .unwrap();
        assert!(e2 > e1);
        assert!(!renew(&mut a, &me("a"), e1, 60_000).unwrap());
        assert!(!holds(&a, "a", e1).unwrap());
        assert!(holds(&b, "b", e2).unwrap());
        release(&b, &me("b"), e2).unwrap();
        assert!(try_acquire(&mut a, &me("a"), 60_000, false)
            .unwrap()
            .is_some());
    }

    #[test]
    fn an_expired_lease_is_free() {
        let (_d, path) = db();
        let mut a = Connection::open(&path).unwrap();
        let mut b = Connection::open(&path).unwrap();
        try_acquire(&mut a, &me("a"), 0, false).unwrap().unwrap();
        assert!(try_acquire(&mut b, &me("b"), 60_000, false)
            .unwrap()
            .is_some());
    }
}
