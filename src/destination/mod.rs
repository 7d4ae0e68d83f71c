//! Destinations, as held by their owner shard: queues (point-to-point, also the queue behind
//! each durable topic subscription) and topics (fan-out), their consumers and credit.
//! Everything here runs on the owning shard only, without locks.

mod consumer;
mod ctx;
mod queue;
mod topic;

pub use consumer::{Answer, Consumer, Entry};
pub use ctx::{expired, receipts_reply, Accounts, Ctx};
pub use queue::Queue;
pub use topic::Topic;
