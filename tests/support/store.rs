//! The broker's SQLite file as an operator sees it: a read-only connection, one-number
//! queries, and the `sqlite3` shell (`make test` installs it; tests that use it never skip).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A read-only connection to the store at `path`, waiting up to 5 s for the writer's locks.
/// Open it while the broker runs: a read-only connection cannot recover a WAL that a killed
/// broker left behind.
pub fn open_read_only(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy_timeout");
    conn
}

/// The one number `sql` selects (a `count(*)`, a depth), with `params`; fails the test if the
/// query does.
#[track_caller]
pub fn count(db: &rusqlite::Connection, sql: &str, params: impl rusqlite::Params) -> i64 {
    db.query_row(sql, params, |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The `sqlite3` shell on PATH: the operator's view is part of what is tested, so its absence
/// fails the test.
#[track_caller]
pub fn sqlite3_cli() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("sqlite3"))
        .find(|p| p.is_file())
        .expect(
            "the sqlite3 shell is not on PATH; `make test` installs it (apt-get install sqlite3)",
        )
}
