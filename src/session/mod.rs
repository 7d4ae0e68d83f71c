//! Sessions: one per client connection, living on the shard that accepted it.
//!
//! `state.rs` holds the protocol rules (sans-IO), `task.rs` drives a socket, `error.rs` is
//! the catalogue of ERROR frames, `auth.rs` the authentication hook.

mod auth;
mod error;
mod services;
mod state;
mod task;

pub use error::Error;
pub use services::{ClientIds, ConnectionInfo, Connections, Services, SubscriptionInfo};
pub use state::{HeartBeat, Phase, Session, SERVER};
pub use task::{run, SessionContext};
