//! What a failed store write means, decided in one place: which SQLite errors stop the store
//! writer for good (fail-stop: [`is_io_failure`], [`fail_stop`], [`stop_for_good`]) and which
//! fail only their request or batch ([`failed`]). The writer (`writer.rs`) calls these
//! wherever an error can happen; the answers' texts come from here.

use log::error;

use super::writer::Fence;

/// True for errors after which this connection's idea of the file cannot be trusted: an I/O
/// error while writing or syncing (every `SQLITE_IOERR_*` except a failed read) and
/// corruption. They stop the writer for good ([`fail_stop`]) wherever they happen: at BEGIN,
/// while a request is applied (SQLite writes pages to the WAL before COMMIT when a large
/// transaction spills its cache, so a failed write is the same failure whether it comes then
/// or at COMMIT), at COMMIT, or in a checkpoint (the writer runs them all and checks them:
/// `writer/checkpoint.rs`). A failed read (`SQLITE_IOERR_READ`, `_SHORT_READ`) changes
/// nothing on disk and lets the broker claim nothing: its request or batch fails and the next
/// one tries again (a page-in backs off and retries). Disk full is not one either: SQLite
/// rolls back cleanly and the next transaction may succeed once space returns.
pub(super) fn is_io_failure(e: &rusqlite::Error) -> bool {
    let Some(code) = e.sqlite_error_code() else {
        return false;
    };
    let extended = match e {
        rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
        _ => 0,
    };
    match code {
        rusqlite::ErrorCode::DatabaseCorrupt => true,
        rusqlite::ErrorCode::SystemIoFailure => !matches!(
            extended,
            rusqlite::ffi::SQLITE_IOERR_READ | rusqlite::ffi::SQLITE_IOERR_SHORT_READ
        ),
        _ => false,
    }
}

/// The text an error is answered with; an I/O failure ([`is_io_failure`]) first stops the
/// writer for good ([`fail_stop`]). `during` says where it happened, for the log and the
/// clients' ERROR frames.
pub(super) fn failed(
    stopped: &mut Option<String>,
    fence: Option<&Fence>,
    during: &str,
    e: &rusqlite::Error,
) -> String {
    match is_io_failure(e) {
        true => fail_stop(stopped, fence, during, e),
        false => e.to_string(),
    }
}

/// An I/O error (a failed write or fsync) or corruption. After a failed fsync the OS may have
/// dropped the dirty pages and a retry can "succeed" without the data ever reaching the disk
/// (PostgreSQL's fsyncgate); after a failed write SQLite has rolled the transaction back, and
/// retrying it on the same connection and then promising durability would rest on the same
/// disk that just failed. So this connection is not trusted again: the writer stops writing
/// for good, and the broker steps down and releases its lease, so a standby (or this process,
/// on a fresh connection) recovers from what is really on disk. Returns the error text for
/// the batch's answers.
pub(super) fn fail_stop(
    stopped: &mut Option<String>,
    fence: Option<&Fence>,
    during: &str,
    e: &rusqlite::Error,
) -> String {
    stop_for_good(
        stopped,
        fence,
        format!("store I/O failure {during}, no longer writing: {e}"),
    )
}

/// Stops the writer for good for `why`: every later request is answered with it, and the
/// broker is told (`on_store_failure`), so it steps down and gives its lease up at once. An
/// I/O failure ends here ([`fail_stop`]), and so do message ids about to run past a
/// reservation that could not be recorded (`ids.rs`). Returns `why`.
pub(super) fn stop_for_good(
    stopped: &mut Option<String>,
    fence: Option<&Fence>,
    why: String,
) -> String {
    error!("store: {why}; stepping down");
    *stopped = Some(why.clone());
    if let Some(f) = fence {
        (f.on_store_failure)(why.clone());
    }
    why
}
