//! Authentication hook for CONNECT's `login` and `passcode`.
//!
//! No authentication backend exists yet, so every client is accepted; this is the one place
//! a backend plugs in, and a refusal here becomes an ERROR frame and a close.

use super::Error;

/// Decides whether a CONNECT's credentials are accepted. Currently accepts everyone.
pub fn authenticate(_login: Option<&str>, _passcode: Option<&str>) -> Result<(), Error> {
    Ok(())
}
