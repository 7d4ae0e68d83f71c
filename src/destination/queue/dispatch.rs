//! Dispatch: handing waiting messages to consumers with credit.
//!
//! The common queue (no selectors, no exclusive consumer, one consumer priority, no message
//! groups) takes the fast path: the head of the highest non-empty priority level goes to the
//! next consumer with credit, round-robin. Otherwise each message is offered to the
//! consumers that may take it:
//!
//! - **Selectors**: a consumer receives only messages its selector is true for. A message no
//!   consumer wants stays where it is and does not block the messages behind it: dispatch
//!   looks past it (up to [`DISPATCH_SCAN`] messages per level and pass), and remembers that
//!   nobody wants it until the consumers change (`Entry::passed_at`), so it costs one
//!   comparison per pass, not a selector evaluation per consumer.
//! - **Exclusive consumers** (`activemq.exclusive`): while one is attached, the first of them
//!   (highest priority, then earliest) receives every message; when it leaves, the next one
//!   takes over, with the unacked messages of the first coming back redelivered.
//! - **Consumer priority** (`activemq.priority`): consumers are kept highest priority first;
//!   a message goes to the highest-priority consumers that want it and have credit,
//!   round-robin among equals, and lower ones are served only while those are full.
//! - **Message groups** (`JMSXGroupID`): the first message of a group pins it to the wanting
//!   consumer with credit that holds the fewest groups (so groups spread evenly); later
//!   messages of the group go to that consumer only, in order, and wait while it has no
//!   credit. A message with `JMSXGroupSeq` -1 closes its group after it is delivered; a
//!   consumer that leaves releases its groups, which are pinned again by their next message.

use std::sync::Arc;

use super::Queue;
use crate::clock::now_ms;
use crate::destination::consumer::Entry;
use crate::destination::ctx::{expired, Ctx};
use crate::message::Message;

/// Messages of one level one dispatch pass looks at, at most, past messages no consumer with
/// credit takes: the bound on a pass's work while selective consumers wait for matching
/// messages behind many that nobody wants (ActiveMQ bounds this with `maxPageSize`, 200).
pub const DISPATCH_SCAN: usize = 1000;

/// Where a message may go now.
enum Pick {
    /// To this consumer.
    To(usize),
    /// A consumer that wants it has no credit: ask again later.
    Wait,
    /// No consumer attached wants it.
    Nobody,
}

/// The message group of `message`: its `JMSXGroupID`, if any.
pub(super) fn group_of(message: &Message) -> Option<&str> {
    message
        .headers
        .iter()
        .find(|(k, _)| k == "JMSXGroupID")
        .map(|(_, v)| v.as_str())
}

/// `JMSXGroupSeq` -1: the last message of its group.
fn closes_group(message: &Message) -> bool {
    message
        .headers
        .iter()
        .any(|(k, v)| k == "JMSXGroupSeq" && v.trim() == "-1")
}

impl Queue {
    /// After consumers came or went: what dispatch may skip no longer holds, and groups
    /// pinned to consumers that left are released.
    pub(super) fn consumers_changed(&mut self) {
        self.consumers_gen = self.consumers_gen.wrapping_add(1).max(1);
        self.cursor = 0;
        let first = self.consumers.first().map(|c| c.priority());
        self.selective = self
            .consumers
            .iter()
            .any(|c| c.selective() || c.exclusive() || Some(c.priority()) != first);
        let consumers = &self.consumers;
        self.groups
            .retain(|_, (session, sub)| consumers.iter().any(|c| c.is(*session, *sub)));
    }

    /// Hands waiting messages to consumers with credit.
    pub(super) fn dispatch(&mut self, ctx: &mut Ctx) {
        if self.selective || self.grouped {
            self.dispatch_selective(ctx);
        } else {
            self.dispatch_next(ctx);
        }
    }

    /// The fast path: round-robin, highest priority first. A level whose head is still on
    /// disk stops dispatch until its page-in arrives, so priority order holds while paging.
    fn dispatch_next(&mut self, ctx: &mut Ctx) {
        let now = now_ms();
        while !self.consumers.is_empty() {
            let Some(p) = (0..10).rev().find(|&p| {
                let l = &self.levels[p];
                !l.mem.is_empty() || l.unloaded > 0
            }) else {
                return;
            };
            self.request_page_in(p, ctx);
            if self.levels[p].mem.is_empty() {
                return;
            }
            let n = self.consumers.len();
            let Some(idx) = (0..n)
                .map(|i| (self.cursor + i) % n)
                .find(|&i| self.consumers[i].has_credit())
            else {
                return;
            };
            if !self.delivery_marked(p, 0, ctx) {
                return;
            }
            let entry = self.levels[p].mem.pop_front().expect("level is not empty");
            if entry.message.expires != 0 {
                self.expiring -= 1;
                if expired(&entry.message, now) {
                    self.bytes -= entry.weight();
                    self.counters.expired += 1;
                    ctx.expire(&self.key, entry);
                    continue;
                }
            }
            if let Err(entry) = self.deliver_to(idx, entry, ctx) {
                if entry.message.expires != 0 {
                    self.expiring += 1;
                }
                self.levels[p].insert_sorted(entry);
            }
        }
    }

    /// The selective path (see the module docs): each level from the highest priority, each
    /// message in order, offered to the consumers that may take it.
    fn dispatch_selective(&mut self, ctx: &mut Ctx) {
        let now = now_ms();
        'levels: for p in (0..10).rev() {
            if self.levels[p].mem.is_empty() {
                if self.levels[p].unloaded > 0 {
                    self.request_page_in(p, ctx);
                    return;
                }
                continue;
            }
            self.request_page_in(p, ctx);
            let mut i = 0;
            let mut looked = 0;
            while i < self.levels[p].mem.len() && looked < DISPATCH_SCAN {
                if !self.consumers.iter().any(|c| c.has_credit()) {
                    return;
                }
                looked += 1;
                let e = &self.levels[p].mem[i];
                if e.message.expires != 0 && expired(&e.message, now) {
                    let entry = self.levels[p].mem.remove(i).expect("index is in range");
                    self.expiring -= 1;
                    self.bytes -= entry.weight();
                    self.counters.expired += 1;
                    ctx.expire(&self.key, entry);
                    continue;
                }
                if e.passed_at == self.consumers_gen {
                    i += 1;
                    continue;
                }
                match self.pick(&e.message.clone()) {
                    Pick::Nobody => {
                        self.levels[p].mem[i].passed_at = self.consumers_gen;
                        i += 1;
                    }
                    Pick::Wait => i += 1,
                    Pick::To(idx) => {
                        if !self.delivery_marked(p, i, ctx) {
                            continue 'levels;
                        }
                        let entry = self.levels[p].mem.remove(i).expect("index is in range");
                        if entry.message.expires != 0 {
                            self.expiring -= 1;
                        }
                        if let Err(entry) = self.deliver_to(idx, entry, ctx) {
                            if entry.message.expires != 0 {
                                self.expiring += 1;
                            }
                            self.levels[p].insert_sorted(entry);
                        }
                    }
                }
            }
        }
    }

    /// Delivers `entry` to consumer `idx`, keeping its group pinned (or closing it). A
    /// consumer whose session is gone is removed (its Goodbye is on the way) and the entry
    /// handed back.
    fn deliver_to(&mut self, idx: usize, entry: Entry, ctx: &mut Ctx) -> Result<(), Entry> {
        let group = match self.grouped {
            true => group_of(&entry.message)
                .map(|g| (Arc::<str>::from(g), closes_group(&entry.message))),
            false => None,
        };
        match self.consumers[idx].deliver(entry) {
            Ok(()) => {
                self.cursor = idx + 1;
                self.counters.delivered += 1;
                if let Some((g, close)) = group {
                    if close {
                        self.groups.remove(&g);
                    } else {
                        let c = &self.consumers[idx];
                        self.groups.insert(g, (c.session, c.sub));
                    }
                }
                Ok(())
            }
            Err(entry) => {
                let dead = self.consumers.remove(idx);
                self.consumers_changed();
                self.take_back(dead, ctx);
                Err(entry)
            }
        }
    }

    /// Who may take `message` now.
    fn pick(&self, message: &Message) -> Pick {
        let consumers = &self.consumers;
        // An exclusive consumer takes everything while it is attached.
        if let Some(x) = consumers.iter().position(|c| c.exclusive()) {
            let c = &consumers[x];
            return match (c.wants(message, None), c.has_credit()) {
                (false, _) => Pick::Nobody,
                (true, true) => Pick::To(x),
                (true, false) => Pick::Wait,
            };
        }
        let group = if self.grouped {
            group_of(message)
        } else {
            None
        };
        if let Some(g) = group {
            if let Some((session, sub)) = self.groups.get(g) {
                if let Some(x) = consumers.iter().position(|c| c.is(*session, *sub)) {
                    let c = &consumers[x];
                    if c.wants(message, None) {
                        return if c.has_credit() {
                            Pick::To(x)
                        } else {
                            Pick::Wait
                        };
                    }
                    // Its owner's selector refuses it: it goes to whoever wants it, and the
                    // group follows.
                }
            }
            return self.pin_group(message);
        }
        // Highest priority first; round-robin among equals.
        let mut wanted = false;
        let mut start = 0;
        while start < consumers.len() {
            let priority = consumers[start].priority();
            let len = consumers[start..]
                .iter()
                .take_while(|c| c.priority() == priority)
                .count();
            for k in 0..len {
                let x = start + (self.cursor + k) % len;
                let c = &consumers[x];
                if c.wants(message, None) {
                    if c.has_credit() {
                        return Pick::To(x);
                    }
                    wanted = true;
                }
            }
            start += len;
        }
        if wanted {
            Pick::Wait
        } else {
            Pick::Nobody
        }
    }

    /// The consumer a new group goes to: among the highest-priority consumers that want the
    /// message and have credit, the one holding the fewest groups.
    fn pin_group(&self, message: &Message) -> Pick {
        let consumers = &self.consumers;
        let held = |x: usize| {
            let c = &consumers[x];
            self.groups
                .values()
                .filter(|(session, sub)| c.is(*session, *sub))
                .count()
        };
        let mut wanted = false;
        let mut best: Option<(i8, usize, usize)> = None;
        for (x, c) in consumers.iter().enumerate() {
            if !c.wants(message, None) {
                continue;
            }
            wanted = true;
            if !c.has_credit() {
                continue;
            }
            let h = held(x);
            let better = match best {
                None => true,
                Some((priority, groups, _)) => {
                    c.priority() > priority || (c.priority() == priority && h < groups)
                }
            };
            if better {
                best = Some((c.priority(), h, x));
            }
        }
        match (best, wanted) {
            (Some((_, _, x)), _) => Pick::To(x),
            (None, true) => Pick::Wait,
            (None, false) => Pick::Nobody,
        }
    }
}
