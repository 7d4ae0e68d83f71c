//! Sessions: one per client connection, living on the shard that accepted it.
//!
//! `state.rs` holds the thin [`Session`] that dispatches frames to the file of their concern
//! (`connect.rs`, `authorize.rs`, `send.rs`, `subscriptions.rs`, `acks.rs`, `transactions.rs`, `receipts.rs`,
//! `outbox.rs`; the table in `state.rs` says which owns what). All of it is sans-IO: frames,
//! owner answers and `now` in; bytes to write and commands to post out. `task.rs` alone does
//! I/O, time and posting. `error.rs` is the catalogue of ERROR frames (authentication is
//! `crate::security`'s), `services.rs` what sessions share with the rest of the broker, `frame_budget.rs` the
//! broker-wide budget for large frames.

mod acks;
mod authorize;
mod connect;
mod error;
mod frame_budget;
mod outbox;
mod receipts;
mod send;
mod services;
mod state;
mod subscriptions;
mod task;
mod temp;
#[cfg(test)]
mod testing;
mod transactions;

pub use connect::{HeartBeat, SERVER};
pub use error::Error;
pub use frame_budget::{FrameBudget, Share};
pub use services::{ClientIds, ConnectionInfo, Connections, Services, SubscriptionInfo};
pub use state::{Phase, Post, Session};
pub use task::{run, SessionContext};
pub use transactions::StoreCommit;
