//! The store writer's checkpoints, in place of SQLite's automatic ones. SQLite's automatic
//! checkpoint (inside the COMMIT that takes the log past 1,000 pages) ignores a failed write
//! or fsync of the database file: the checkpoint that fails leaves the log as it was, but
//! pages an earlier, partial checkpoint copied may be among those the OS dropped, and a later
//! checkpoint that "succeeds" would not copy them again before the log is reused (fsyncgate,
//! in SQLite's database file). So the writer runs the same checkpoint at the same point from
//! a WAL hook and reads its result after every COMMIT (`Writer::pass`): a failed one is an I/O
//! failure like a failed COMMIT, and the writer stops for good (`failure.rs`). Every other
//! connection has automatic checkpoints off (`store::no_automatic_checkpoints`), and an idle
//! writer checkpoints what they committed (`Writer::checkpoint_idle`).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use log::warn;
use rusqlite::Connection;

use super::super::failure::is_io_failure;

/// Log pages after a commit from which the writer's connection checkpoints (SQLite's own
/// `wal_autocheckpoint` default, which this replaces).
const CHECKPOINT_PAGES: std::ffi::c_int = 1000;

/// Installs the hook on the writer's `conn`; a failed checkpoint's result code goes to
/// `failure` (0: none).
pub(super) fn take_over(conn: &mut Connection, failure: &Arc<AtomicI32>) {
    let failure = failure.clone();
    let hook = move |wal: &mut rusqlite::hooks::Wal, pages| checkpoint(wal, pages, &failure);
    if let Err(e) = conn.wal_hook(Some(hook)) {
        // rusqlite has removed every hook then: let SQLite checkpoint, unchecked.
        warn!("store: checkpoint failures go unnoticed (no WAL hook: {e})");
        let _ = conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES);
    }
}

/// The failure the hook recorded during the last COMMIT, if any (and clears it).
pub(super) fn failed(failure: &AtomicI32) -> Option<rusqlite::Error> {
    match failure.swap(0, Ordering::SeqCst) {
        0 => None,
        code => Some(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some("checkpoint failed".into()),
        )),
    }
}

/// The WAL hook: after a commit that left `pages` in the log, the PASSIVE checkpoint SQLite's
/// automatic one would run, with an I/O failure's result code kept in `failure` for the
/// writer to read after the COMMIT (a hook's own error would reach the COMMIT only as a plain
/// `SQLITE_ERROR`). A busy checkpoint (another connection checkpointing) is left for a later
/// commit, as SQLite does.
fn checkpoint(
    wal: &mut rusqlite::hooks::Wal,
    pages: std::ffi::c_int,
    failure: &AtomicI32,
) -> rusqlite::Result<()> {
    if pages < CHECKPOINT_PAGES {
        return Ok(());
    }
    if let Err(e) = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE) {
        if let (true, rusqlite::Error::SqliteFailure(f, _)) = (is_io_failure(&e), &e) {
            failure.store(f.extended_code, Ordering::SeqCst);
        }
    }
    Ok(())
}
