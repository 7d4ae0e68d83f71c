//! Delivery marks: a queue level delivers a stored message for the first time only under a
//! committed mark.
//!
//! A consumer may receive a stored message and the broker crash before its ACK is committed;
//! after the restart the message is delivered again, and must say so (`redelivered:true`,
//! as ActiveMQ's `persistJMSRedelivered` does). So before a level delivers a stored message
//! for the first time, its id must be under the level's *delivery mark* in the store
//! (`Request::Mark`); the next start marks every row under a mark redelivered
//! (`store::settle_delivery_marks`). A new mark covers the consumers' prefetch (at least
//! `limits::DELIVERY_MARK_AHEAD_MIN`) ahead: the next that many messages in memory, or, when
//! memory holds fewer and nothing of the level is on disk, also the ids of the next arrivals
//! up to that many. So one mark serves a prefetch's worth of deliveries, and after a crash at
//! most that many messages per level that were never delivered come back marked (JMS allows
//! a false "redelivered", never a missing one). The mark is written without its own fsync
//! (like redelivery counts): a kill -9 cannot undo it, a power loss can lose the flag but no
//! message.

use std::sync::Arc;

use super::Queue;
use crate::destination::ctx::Ctx;
use crate::message::MessageId;

impl Queue {
    /// The answer to a delivery mark request: the level may deliver stored messages up to
    /// `upto` (or, when the mark could not be written, asks again after a backoff).
    pub fn marked(
        &mut self,
        priority: u8,
        upto: MessageId,
        result: Result<(), Arc<str>>,
        ctx: &mut Ctx,
    ) {
        let level = &mut self.levels[priority.min(9) as usize];
        level.marking = false;
        match result {
            Ok(()) => {
                level.marked = level.marked.max(upto);
                if level.failures == 0 {
                    level.retry_at = None;
                }
            }
            Err(reason) => {
                let delay = crate::limits::PAGE_IN_RETRY_FIRST;
                level.retry_at = Some(std::time::Instant::now() + delay);
                log::warn!(
                    "delivery mark failed queue={} priority={priority} retry_in_ms={}: {reason}",
                    self.key,
                    delay.as_millis()
                );
            }
        }
        self.dispatch(ctx);
    }

    /// True when entry `i` of level `p` (the head, unless selective dispatch looks past it)
    /// may be delivered now: it is not stored, or came back before (its redelivery count is
    /// stored), or its id is under the level's delivery mark. Asks the store for the next
    /// mark (one at a time; `marked` resumes dispatch) when the entry is past the current
    /// one, then returning false, or past its middle.
    pub(super) fn delivery_marked(&mut self, p: usize, i: usize, ctx: &mut Ctx) -> bool {
        let level = &self.levels[p];
        let head = &level.mem[i];
        if head.redelivery_count > 0 || !ctx.persists(&head.message) {
            return true;
        }
        let id = head.message.id;
        let covered = id <= level.marked;
        if covered && (id <= level.remark_after || level.marking) {
            return true;
        }
        if level.marking
            || level
                .retry_at
                .is_some_and(|t| std::time::Instant::now() < t)
        {
            return covered;
        }
        let ahead: u64 = self
            .consumers
            .iter()
            .map(|c| u64::from(c.prefetch()))
            .sum::<u64>()
            .max(crate::limits::DELIVERY_MARK_AHEAD_MIN);
        let waiting = level.mem.len() as u64;
        let (upto, remark_after) = if ahead <= waiting || level.unloaded > 0 {
            let k = ahead.min(waiting) as usize;
            (
                level.mem[k - 1].message.id,
                level.mem[(k - 1) / 2].message.id,
            )
        } else {
            // Everything in memory is covered, and so are the next arrivals up to `ahead`
            // (at most that many of this level's among the next ids).
            let last = ctx.ids.last().0;
            let extra = ahead - waiting;
            (MessageId(last + extra), MessageId(last + extra / 2))
        };
        let level = &mut self.levels[p];
        level.marking = true;
        level.remark_after = remark_after;
        ctx.mark(&self.key, p as u8, upto.max(id));
        // Past the middle of the old mark, the next one is asked for ahead of time and the
        // head still goes out under the old one.
        covered
    }
}
