//! Messages that may not go out yet: redeliveries waiting out their policy's redelivery
//! delay. They stay in memory (and their rows in the store), counted in the queue's depth and
//! bytes, and enter their priority level when due; the owner wakes for the earliest
//! (`Ctx::wake_at`). After a restart they are ready at once: the delay paces a live consumer
//! that keeps failing, and a restart is pace enough.

use std::cmp::Ordering;

use super::Queue;
use crate::destination::consumer::Entry;
use crate::destination::ctx::Ctx;

/// An entry and when it is due (ms since the epoch).
#[derive(Debug)]
pub(super) struct Delayed {
    pub at: u64,
    pub entry: Entry,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Reversed, so the standard max-heap pops the earliest (then the lowest id) first.
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.entry.message.id).cmp(&(self.at, self.entry.message.id))
    }
}

impl Queue {
    /// Holds `entry` back until `at`.
    pub(super) fn delay(&mut self, entry: Entry, at: u64, ctx: &mut Ctx) {
        ctx.wake_at(at, &self.key);
        self.delayed.push(Delayed { at, entry });
    }

    /// Puts the delayed entries due at `now` back into their levels and dispatches.
    pub fn release_delayed(&mut self, now: u64, ctx: &mut Ctx) {
        let mut released = false;
        while self.delayed.peek().is_some_and(|d| d.at <= now) {
            let d = self.delayed.pop().expect("peeked");
            if d.entry.message.expires != 0 {
                self.expiring += 1;
            }
            self.levels[d.entry.message.priority.min(9) as usize].insert_sorted(d.entry);
            released = true;
        }
        if released {
            self.after_change(ctx);
        }
    }
}
