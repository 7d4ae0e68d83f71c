//! Destinations, as held by their owner shard: queues (point-to-point) and topics (fan-out),
//! their consumers and credit. Everything here runs on the owning shard only, without locks.

mod consumer;
mod name;
mod queue;
mod topic;

pub use consumer::{Consumer, Entry};
pub use name::{DestinationName, Kind, NameError};
pub use queue::Queue;
pub use topic::Topic;
