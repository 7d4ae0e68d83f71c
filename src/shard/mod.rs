//! Thread-per-core shards: the runtime that wires listeners, sessions and owner loops
//! together. Nothing below this module imports it.

mod accept;
mod owner;
mod runtime;

pub use owner::Owner;
pub use runtime::{lock_data_dir, Broker, StartError, LOCK_FILE};
