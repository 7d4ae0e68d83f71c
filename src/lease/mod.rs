//! The master/slave lease: one row, `broker_lease`, in the same SQLite file as the messages.
//!
//! A broker that can set itself as holder (row free, expired, or its holder's process known
//! dead) becomes master and bumps the epoch. The epoch is the fencing token: every store write
//! transaction checks, inside that transaction, that the row still names this broker and
//! epoch (`store::Fence`), so a master that was paused past its lease and wakes up cannot
//! commit a single write after a takeover. This module is the row only; `crate::role` runs
//! the master/standby life cycle.
//!
//! Fast crash detection: the master also holds an OS file lock on `stompbox.lock`. The kernel
//! drops it the instant the process dies, so a standby blocked on that lock learns of a
//! `kill -9` at once and takes over without waiting for the lease to expire. A hung but alive
//! master keeps its file lock, and is handled by the lease TTL and fencing instead.

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

/// What this broker knows about the OS file lock on `stompbox.lock` when it tries for the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileLock {
    /// This process holds it.
    Held,
    /// Another process holds it (or this process is still waiting for it).
    Waiting,
    /// The file system does not support it: only the lease row and its TTL decide.
    Unsupported,
}

/// The outcome of [`try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The lease is ours, at this epoch.
    Acquired(u64),
    /// A live master holds it.
    Held,
    /// A live master holds the lease but not the file lock, which this broker holds: give
    /// the file lock up so the master can take it, or a crash of the master would only be
    /// noticed when its lease expires.
    YieldFileLock,
}

/// Takes the lease when it is safe to:
///
/// - the holder's lease expired (a hung or dead master; fencing stops it if it wakes);
/// - or this broker holds the file lock and the holder is none, or a holder that recorded
///   holding the file lock itself (so it is dead or has stepped down: the kernel gave us the
///   lock it had);
/// - or, where file locks are unsupported, the lease is free.
///
/// A free lease without the file lock is left alone: the broker holding (or about to get) the
/// file lock takes it, so two brokers starting together elect one master without a takeover.
pub fn try_acquire(
    conn: &mut Connection,
    me: &Identity,
    ttl_ms: u64,
    file_lock: FileLock,
) -> Result<Acquire, StoreError> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (holder, epoch, expires_at, holder_locked): (Option<String>, i64, Option<i64>, bool) = tx
        .query_row(
        "SELECT holder, epoch, expires_at, file_lock FROM broker_lease WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0)),
    )?;
    let expired = holder.is_some() && expires_at.is_none_or(|e| e <= now);
    let take = match file_lock {
        _ if expired => true,
        FileLock::Held => {
            holder.is_none() || holder_locked || holder.as_deref() == Some(&me.holder)
        }
        FileLock::Waiting => false,
        FileLock::Unsupported => holder.is_none(),
    };
    if !take {
        let yield_lock = file_lock == FileLock::Held && holder.is_some() && !holder_locked;
        return Ok(if yield_lock {
            Acquire::YieldFileLock
        } else {
            Acquire::Held
        });
    }
    let epoch = epoch + 1;
    tx.execute(
        "UPDATE broker_lease SET holder = ?1, epoch = ?2, acquired_at = ?3, expires_at = ?4,
                host = ?5, pid = ?6, admin_address = ?7, stomp_address = NULL, file_lock = ?8
          WHERE id = 1",
        params![
            me.holder,
            epoch,
            now,
            now + ttl_ms as i64,
            me.host,
            me.pid,
            me.admin_address,
            file_lock == FileLock::Held
        ],
    )?;
    tx.commit()?;
    Ok(Acquire::Acquired(epoch as u64))
}

/// Records that the master now holds the file lock too (it became master through an expired
/// lease, and got the lock later), so a standby that gets the lock next may take over at once.
pub fn set_file_lock(conn: &Connection, me: &Identity, epoch: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE broker_lease SET file_lock = 1 WHERE id = 1 AND holder = ?1 AND epoch = ?2",
        params![me.holder, epoch as i64],
    )?;
    Ok(())
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
        "UPDATE broker_lease SET holder = NULL, expires_at = NULL, stomp_address = NULL,
                file_lock = 0
          WHERE id = 1 AND holder = ?1 AND epoch = ?2",
        params![me.holder, epoch as i64],
    )?;
    Ok(())
}

/// The fencing check, run inside a write transaction: does the row still name `holder` at
/// `epoch`?
pub fn holds(conn: &Connection, holder: &str, epoch: u64) -> Result<bool, rusqlite::Error> {
    // Cached: the store writer asks this in every transaction (no parse per commit).
    let row: Option<(Option<String>, i64)> = conn
        .prepare_cached("SELECT holder, epoch FROM broker_lease WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(matches!(row, Some((Some(h), e)) if h == holder && e as u64 == epoch))
}

/// Milliseconds since the epoch, as the lease row stores them (the lease is judged on the
/// brokers' clocks, which share one host: see docs/ha.md).
pub fn now_ms() -> i64 {
    crate::clock::now_ms() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stompbox.db");
        crate::store::open(&path, crate::config::Durability::Relaxed).unwrap();
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

    fn acquired(r: Acquire) -> u64 {
        match r {
            Acquire::Acquired(e) => e,
            other => panic!("expected the lease, got {other:?}"),
        }
    }

    #[test]
    fn one_holder_at_a_time_and_epochs_grow() {
        let (_d, path) = db();
        let mut a = Connection::open(&path).unwrap();
        let mut b = Connection::open(&path).unwrap();
        let e1 = acquired(try_acquire(&mut a, &me("a"), 60_000, FileLock::Held).unwrap());
        assert_eq!(
            try_acquire(&mut b, &me("b"), 60_000, FileLock::Waiting).unwrap(),
            Acquire::Held
        );
        assert!(renew(&mut a, &me("a"), e1, 60_000).unwrap());
        // a held the file lock and b now has it: a is gone, b takes over and a is fenced.
        let e2 = acquired(try_acquire(&mut b, &me("b"), 60_000, FileLock::Held).unwrap());
        assert!(e2 > e1);
        assert!(!renew(&mut a, &me("a"), e1, 60_000).unwrap());
        assert!(!holds(&a, "a", e1).unwrap());
        assert!(holds(&b, "b", e2).unwrap());
        release(&b, &me("b"), e2).unwrap();
        // A free lease goes to the broker with the file lock, not to one still waiting for it.
        assert_eq!(
            try_acquire(&mut a, &me("a"), 60_000, FileLock::Waiting).unwrap(),
            Acquire::Held
        );
        acquired(try_acquire(&mut a, &me("a"), 60_000, FileLock::Held).unwrap());
    }

    #[test]
    fn an_expired_lease_is_free_and_its_taker_keeps_it_from_a_lock_holder() {
        let (_d, path) = db();
        let mut a = Connection::open(&path).unwrap();
        let mut b = Connection::open(&path).unwrap();
        acquired(try_acquire(&mut a, &me("a"), 0, FileLock::Held).unwrap());
        // a hung: its lease expired; b takes it without the file lock a still holds.
        let e = acquired(try_acquire(&mut b, &me("b"), 60_000, FileLock::Waiting).unwrap());
        // a wakes, steps down, and later holds the file lock as a standby: b is alive and
        // did not hold the lock, so a must not take over; it should yield the lock instead.
        assert_eq!(
            try_acquire(&mut a, &me("a"), 60_000, FileLock::Held).unwrap(),
            Acquire::YieldFileLock
        );
        set_file_lock(&b, &me("b"), e).unwrap();
        acquired(try_acquire(&mut a, &me("a"), 60_000, FileLock::Held).unwrap());
    }

    #[test]
    fn without_file_locks_a_free_lease_is_taken() {
        let (_d, path) = db();
        let mut a = Connection::open(&path).unwrap();
        acquired(try_acquire(&mut a, &me("a"), 60_000, FileLock::Unsupported).unwrap());
    }
}
