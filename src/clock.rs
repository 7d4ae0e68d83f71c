//! The wall clock, read in one place. Expiry (`expires`), lease deadlines and stored
//! timestamps are milliseconds since the Unix epoch, as STOMP's and ActiveMQ's headers are.
//! Sans-IO code takes `now` as an argument instead of calling this (see `session/`).

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
