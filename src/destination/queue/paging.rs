//! Paging: reading a queue level's next stored messages into memory when it runs low, and
//! backing off when the store fails to. The invariant these keep (with `Queue::admit`) is in
//! the module docs of `queue.rs`.

use std::sync::Arc;

use super::Queue;
use crate::clock::now_ms;
use crate::destination::ctx::{expired, Ctx};
use crate::destination::Entry;
use crate::message::StoredMessage;

impl Queue {
    /// The answer to a page-in request. A failed one is retried after a backoff that doubles
    /// with each failure in a row (`limits::PAGE_IN_RETRY_FIRST` up to `PAGE_IN_RETRY_MAX`),
    /// by the next dispatch or owner tick after it: asking again at once would spin the store
    /// writer and flood the log for as long as the store fails. One log line per attempt.
    pub fn paged_in(
        &mut self,
        priority: u8,
        messages: Vec<StoredMessage>,
        exhausted: bool,
        result: Result<(), Arc<str>>,
        ctx: &mut Ctx,
    ) {
        let now = now_ms();
        let level = &mut self.levels[priority.min(9) as usize];
        level.paging = false;
        if let Err(reason) = result {
            level.failures = level.failures.saturating_add(1);
            let delay = crate::limits::PAGE_IN_RETRY_FIRST
                .saturating_mul(1 << (level.failures - 1).min(16))
                .min(crate::limits::PAGE_IN_RETRY_MAX);
            level.retry_at = Some(std::time::Instant::now() + delay);
            log::warn!(
                "page-in failed queue={} priority={priority} failures={} retry_in_ms={}: {reason}",
                self.key,
                level.failures,
                delay.as_millis()
            );
            return;
        }
        if level.failures > 0 {
            log::info!(
                "page-in recovered queue={} priority={priority} after {} failures",
                self.key,
                level.failures
            );
            level.failures = 0;
            level.retry_at = None;
        }
        level.unloaded = level.unloaded.saturating_sub(messages.len() as u64);
        if exhausted {
            // Every row stored before the read was announced before this answer; whatever
            // was counted but not found is gone (e.g. purged while on disk).
            level.unloaded = 0;
        }
        for m in messages {
            level.max_loaded = level.max_loaded.max(m.message.id);
            let e = Entry {
                message: m.message,
                redelivery_count: m.redelivery_count,
                passed_at: 0,
            };
            if expired(&e.message, now) {
                self.counters.expired += 1;
                ctx.expire(&self.key, e);
                continue;
            }
            self.bytes += e.weight();
            if e.message.expires != 0 {
                self.expiring += 1;
            }
            if !self.grouped && super::dispatch::group_of(&e.message).is_some() {
                self.grouped = true;
            }
            level.insert_sorted(e);
        }
        self.dispatch(ctx);
    }

    /// Asks again for levels whose page-in failed, once their backoff has passed (the owner
    /// calls this every tick, so a failed level is retried even when nothing else happens).
    pub fn retry_page_in(&mut self, ctx: &mut Ctx) {
        if self.levels.iter().any(|l| l.retry_at.is_some()) {
            self.dispatch(ctx);
        }
    }

    /// Reads the next stored messages of level `p` when memory runs low.
    pub(super) fn request_page_in(&mut self, p: usize, ctx: &mut Ctx) {
        let over = self.full(ctx);
        let batch = ctx.config.page_batch;
        let level = &mut self.levels[p];
        if level.unloaded == 0 || level.paging || over || level.mem.len() >= batch / 2 {
            return;
        }
        if level
            .retry_at
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return;
        }
        level.paging = true;
        ctx.page_in(&self.key, p as u8, level.max_loaded, batch);
    }
}
