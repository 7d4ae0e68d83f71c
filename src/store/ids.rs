//! Message ids that never repeat on one store: a reservation kept in the `message_ids` row
//! (hi/lo).
//!
//! Ids are handed out in memory ([`IdAllocator::next`] is one atomic add, no I/O), and most
//! are never stored: a consumed message's row is deleted, a non-persistent message never has
//! one. So the largest stored id does not say where the last broker's ids stopped, and a
//! restart (or the standby of a pair taking over the same file) that continued above it would
//! hand the same ids out again; a client that deduplicates by `message-id` would drop the new
//! message as a copy of the old one.
//!
//! Invariant: every id a broker of this file has handed out is at most `reserved_through`, as
//! committed to disk. A master keeps it so:
//!
//! - At start, before it accepts connections, it continues above the larger of the largest
//!   stored id and `reserved_through`, and records [`MESSAGE_ID_RESERVATION`] ids above that
//!   ([`reserve_at_start`]). Only the master (the writer's connection) writes it; a standby
//!   that takes over does the same when it starts, so it begins above every id the old master
//!   could hand out, even one that is paused and resumes (fencing stops its writes, and its
//!   ids stay under the reservation it recorded).
//! - While it runs, the store writer looks at the allocator about once a second (the tick of
//!   its expiry sweep, which comes with or without traffic, so a broker that only carries
//!   non-persistent messages keeps its reservation ahead too) and, once half of the recorded
//!   reservation is used, records the next one through its normal path
//!   ([`Request::ReserveIds`](super::Request::ReserveIds)), in a batch that is fsynced
//!   whatever the `durability`. That is one small commit per 2^31 ids: nothing per message.
//!
//! A reservation that cannot be recorded (the store fails) is logged and asked for again at
//! the next tick. The allocator cannot refuse to pass an unrecorded reservation (that would be
//! a check on every SEND), so the broker stops handing out ids instead: when only a quarter of
//! the recorded reservation is left and no newer one could be recorded, the writer stops
//! writing and the broker steps down (its clients are closed) and gives its lease up, as on
//! an I/O failure (`failure.rs`); the standby, or this broker once it serves again, continues
//! above what is recorded. A quarter is 2^30 ids: no broker hands that many out between two
//! ticks, so allocation never reaches an unrecorded reservation, and a failing store has the
//! other quarter, retried every second, to recover in before the broker gives up (18 minutes
//! at a million messages a second; forever for a broker that sends nothing).
//!
//! `shard::Broker::start` calls [`reserve_at_start`] and hands the store writer an
//! [`IdReservation`]; from then on only the writer thread reads and records it.

use rusqlite::{params, Connection};

use super::StoreError;
use crate::limits::MESSAGE_ID_RESERVATION;
use crate::message::IdAllocator;

/// The largest id SQLite's INTEGER holds (`messages.message_id` is one).
pub const MAX_MESSAGE_ID: u64 = i64::MAX as u64;

/// The ids a master may hand out: those above `after`, up to `through` (recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Where the allocator starts: its first id is `after + 1` ([`IdAllocator::new`]).
    pub after: u64,
    /// The recorded `reserved_through`.
    pub through: u64,
}

/// At start, on the writer's connection and before the broker accepts connections: reads the
/// recorded reservation, continues above it and `stored` (the largest stored id), and records
/// the next reservation, fsynced whatever `synchronous` the connection has. `epoch` is the
/// lease epoch the master writes under, recorded for operators.
pub fn reserve_at_start(
    conn: &mut Connection,
    stored: u64,
    epoch: Option<u64>,
) -> Result<Reservation, StoreError> {
    // Under `durability = "relaxed"` the connection commits without an fsync; this commit
    // needs one, or a power loss could take the reservation back after ids were handed out.
    let usual: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let reserved = reserve_in_transaction(conn, stored, epoch);
    conn.pragma_update(None, "synchronous", usual)?;
    reserved
}

/// [`reserve_at_start`]'s read and write, in one write transaction (the row is read under the
/// write lock, so no other writer's reservation can land between the two).
fn reserve_in_transaction(
    conn: &mut Connection,
    stored: u64,
    epoch: Option<u64>,
) -> Result<Reservation, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let after = stored.max(reserved(&tx)?);
    let through = after
        .checked_add(MESSAGE_ID_RESERVATION)
        .filter(|t| *t <= MAX_MESSAGE_ID)
        .ok_or(StoreError::IdsExhausted(after))?;
    let now = crate::clock::now_ms() as i64;
    record(&tx, through, now, epoch.map(|e| e as i64))?;
    tx.commit()?;
    Ok(Reservation { after, through })
}

/// The recorded `reserved_through` (0 before a master first started on the file).
pub fn reserved(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let through: i64 = conn.query_row(
        "SELECT coalesce(max(reserved_through), 0) FROM message_ids",
        [],
        |r| r.get(0),
    )?;
    Ok(through.max(0) as u64)
}

/// Records `through` in the caller's transaction. It only ever raises the row: a late or
/// fenced writer cannot lower what another recorded. Recreates the row if an operator deleted
/// it.
pub(super) fn record(
    tx: &Connection,
    through: u64,
    now: i64,
    epoch: Option<i64>,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO message_ids (id, reserved_through, reserved_at, epoch) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE
            SET reserved_through = excluded.reserved_through,
                reserved_at = excluded.reserved_at, epoch = excluded.epoch
          WHERE excluded.reserved_through > message_ids.reserved_through",
    )?
    .execute(params![through.min(MAX_MESSAGE_ID) as i64, now, epoch])?;
    Ok(())
}

/// The store writer's view of the reservation: the allocator it keeps ahead of, and what it
/// last recorded.
pub struct IdReservation {
    /// The broker's allocator (the writer only reads [`IdAllocator::last`]).
    pub allocator: std::sync::Arc<IdAllocator>,
    /// The recorded `reserved_through`: from [`reserve_at_start`], then raised by the writer
    /// after each commit of a [`Request::ReserveIds`](super::Request::ReserveIds).
    pub through: u64,
}

/// What the store writer does about the reservation, given the last id handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// More than half of the reservation is left.
    Nothing,
    /// Half is used: record this one (a full reservation above the last id).
    Extend(u64),
    /// A quarter or less is left and no newer one is recorded: stop before the allocator can
    /// reach it.
    StepDown,
}

impl IdReservation {
    /// What to do now (see the module docs).
    pub(super) fn due(&self) -> Due {
        due(self.allocator.last().0, self.through)
    }
}

/// [`IdReservation::due`] for `last` handed out and `through` recorded.
pub(super) fn due(last: u64, through: u64) -> Due {
    let left = through.saturating_sub(last);
    if left <= MESSAGE_ID_RESERVATION / 4 {
        return Due::StepDown;
    }
    if left > MESSAGE_ID_RESERVATION / 2 {
        return Due::Nothing;
    }
    // Near SQLite's limit there may be nothing left to extend into: then the broker steps
    // down at a quarter left, and the next start refuses (`StoreError::IdsExhausted`).
    let next = last
        .saturating_add(MESSAGE_ID_RESERVATION)
        .min(MAX_MESSAGE_ID);
    match next > through {
        true => Due::Extend(next),
        false => Due::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: u64 = MESSAGE_ID_RESERVATION;

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        conn
    }

    fn row(conn: &Connection) -> (i64, Option<i64>) {
        conn.query_row(
            "SELECT reserved_through, epoch FROM message_ids WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn a_new_file_starts_at_one_and_records_a_reservation_above() {
        let mut conn = store();
        assert_eq!(reserved(&conn).unwrap(), 0);
        let r = reserve_at_start(&mut conn, 0, Some(1)).unwrap();
        assert_eq!(
            r,
            Reservation {
                after: 0,
                through: R
            }
        );
        assert_eq!(row(&conn), (R as i64, Some(1)));
    }

    #[test]
    fn each_start_continues_above_the_last_reservation_though_nothing_is_stored() {
        let mut conn = store();
        let first = reserve_at_start(&mut conn, 0, None).unwrap();
        let second = reserve_at_start(&mut conn, 0, None).unwrap();
        assert_eq!(second.after, first.through);
        assert_eq!(second.through, first.through + R);
        assert_eq!(reserved(&conn).unwrap(), second.through);
    }

    #[test]
    fn a_file_from_before_the_reservation_continues_above_its_stored_ids() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::apply(&mut conn, &crate::store::MIGRATIONS[..6]).unwrap();
        conn.execute_batch(
            "INSERT INTO messages (message_id, destination, created_at, body)
             VALUES (7000, '/queue/q', 0, x'');",
        )
        .unwrap();
        crate::store::migrate(&mut conn).unwrap();
        assert_eq!(reserved(&conn).unwrap(), 0, "migration 7 reserves nothing");
        let stored = crate::store::recover(&conn).unwrap().max_id;
        let r = reserve_at_start(&mut conn, stored, None).unwrap();
        assert_eq!(
            r,
            Reservation {
                after: 7_000,
                through: 7_000 + R
            }
        );
    }

    #[test]
    fn the_row_only_goes_up_and_comes_back_if_deleted() {
        let conn = store();
        record(&conn, 500, 1, Some(2)).unwrap();
        record(&conn, 300, 2, Some(1)).unwrap();
        assert_eq!(row(&conn), (500, Some(2)));
        conn.execute("DELETE FROM message_ids", []).unwrap();
        assert_eq!(reserved(&conn).unwrap(), 0);
        record(&conn, 900, 3, Some(3)).unwrap();
        assert_eq!(row(&conn), (900, Some(3)));
    }

    #[test]
    fn a_start_refuses_when_sqlite_has_no_ids_left() {
        let mut conn = store();
        record(&conn, MAX_MESSAGE_ID - R / 2, 1, None).unwrap();
        let err = reserve_at_start(&mut conn, 0, None).unwrap_err();
        assert!(matches!(err, StoreError::IdsExhausted(_)), "{err}");
    }

    #[test]
    fn the_reservation_moves_ahead_at_half_and_the_broker_stops_at_a_quarter() {
        let through = 10 * R;
        assert_eq!(due(through - R, through), Due::Nothing);
        assert_eq!(due(through - R / 2 - 1, through), Due::Nothing);
        assert_eq!(
            due(through - R / 2, through),
            Due::Extend(through - R / 2 + R)
        );
        assert_eq!(
            due(through - R / 4 - 1, through),
            Due::Extend(through - R / 4 - 1 + R)
        );
        assert_eq!(due(through - R / 4, through), Due::StepDown);
        assert_eq!(due(through + 5, through), Due::StepDown);
    }

    #[test]
    fn near_the_end_of_sqlite_integers_nothing_is_extended_past_it() {
        let through = MAX_MESSAGE_ID;
        assert_eq!(due(through - R / 2, through), Due::Nothing);
        assert_eq!(due(through - R / 4, through), Due::StepDown);
        let through = MAX_MESSAGE_ID - R / 2;
        assert_eq!(due(through - R / 2, through), Due::Extend(MAX_MESSAGE_ID));
    }

    #[test]
    fn reserve_at_start_restores_relaxed_synchronous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stompbox.db");
        let mut conn = crate::store::open(&path, crate::config::Durability::Relaxed).unwrap();
        reserve_at_start(&mut conn, 0, None).unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL again after the fsynced reservation");
    }
}
