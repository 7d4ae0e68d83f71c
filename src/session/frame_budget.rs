//! The broker-wide budget for large frames (`limits.large_frames_budget_bytes`).
//!
//! Each connection reads small frames out of a buffer of its own (frames of known length up
//! to 256 KiB, frames without `content-length` up to a 64 KiB chunk) and may have `producer_window_bytes` of SENDs on their way to destinations; both
//! are per-connection allowances. Anything beyond them — a read buffer grown for a frame
//! larger than that, and posted SENDs past the window (one frame larger than the window is
//! always let through) — is charged to this budget, shared by every connection. A connection
//! that would need more than is free stops reading its socket until other connections give
//! some back, so the memory that large frames take is bounded broker-wide, not per connection:
//! 10,000 connections each sending a 100 MiB frame hold at most the budget, not a terabyte.
//!
//! How it avoids waiting while holding: a frame is charged its whole size before more of it
//! is read (its `content-length`, or, for a frame of unknown length that outgrows a chunk,
//! `max_frame_bytes` and a chunk), and that charge never rises while the frame is read, so a
//! connection never waits for budget in the middle of a frame it holds budget for. Waiters
//! are served first come, first served (tokio's semaphore is fair), so a large frame is not
//! starved by a stream of smaller ones. `max_frame_bytes` may not exceed the budget (checked
//! in config), so every frame fits eventually, and no connection asks for more than the
//! whole budget. Nothing before CONNECT is charged (a larger frame there is an ERROR), and a
//! closing connection gives its share back at once.
//!
//! What it does not stop (docs/architecture.md, "Large frames share one budget"):
//! - a client that announces a large frame and sends it slowly holds its share until it
//!   finishes, or until `frame_stall_timeout_ms` without a byte closes it;
//! - a SEND held by flow control keeps its charge while held, so large non-persistent
//!   producers parked on a full destination hold budget that other large frames wait for;
//!   if that destination's consumer must itself send a large frame before it acknowledges,
//!   it waits until the budget frees (persistent messages are never parked: they go to disk).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// The budget, counted in KiB (tokio's semaphore counts permits in `u32`).
#[derive(Debug)]
pub struct FrameBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

/// KiB needed to cover `bytes`, rounded up.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl FrameBudget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub fn new(bytes: u64) -> FrameBudget {
        let total_kib = kib(bytes);
        FrameBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Bytes currently held by connections.
    pub fn used_bytes(&self) -> u64 {
        let free = self
            .permits
            .available_permits()
            .min(self.total_kib as usize) as u64;
        (self.total_kib as u64 - free) * 1024
    }

    /// The budget's size in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_kib as u64 * 1024
    }

    /// A connection's share, holding nothing yet.
    pub fn share(self: &Arc<Self>) -> Share {
        Share {
            budget: self.clone(),
            held_kib: 0,
            pending: None,
        }
    }
}

impl Default for FrameBudget {
    fn default() -> Self {
        FrameBudget::new(crate::limits::Limits::default().large_frames_budget_bytes as u64)
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// What one connection holds of the budget, and the request it waits on. Gives everything
/// back when dropped (the connection ended).
pub struct Share {
    budget: Arc<FrameBudget>,
    held_kib: u32,
    /// A request waiting for budget, and the KiB it asks for. It keeps its place in the
    /// queue across the driver's loop turns.
    pending: Option<(Acquire, u32)>,
}

impl Share {
    /// Makes this connection hold what covering `bytes` needs: a surplus is given back at
    /// once (and a waiting request dropped); a shortfall is taken if it is free now, or asked
    /// for (see [`Share::granted`]). True when the share covers `bytes`.
    pub fn cover(&mut self, bytes: u64) -> bool {
        // No connection asks for more than the whole budget (one that holds all of it may
        // hold a little more than it is charged: one frame larger than the budget, sent past
        // a producer window, is let through like any other).
        let want = kib(bytes).min(self.budget.total_kib);
        if want <= self.held_kib {
            self.pending = None;
            let surplus = self.held_kib - want;
            if surplus > 0 {
                self.budget.permits.add_permits(surplus as usize);
                self.held_kib = want;
            }
            return true;
        }
        if self.pending.is_some() {
            return false;
        }
        let short = want - self.held_kib;
        match self.budget.permits.clone().try_acquire_many_owned(short) {
            Ok(permit) => {
                permit.forget();
                self.held_kib = want;
                true
            }
            Err(_) => {
                let mut acquire: Acquire =
                    Box::pin(self.budget.permits.clone().acquire_many_owned(short));
                // Polled once now, so the request takes its place in the queue (and what is
                // free) from the moment it is made, not from the driver's next wait.
                let mut cx = Context::from_waker(Waker::noop());
                match acquire.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok(permit)) => {
                        permit.forget();
                        self.held_kib = want;
                        true
                    }
                    Poll::Pending => {
                        self.pending = Some((acquire, short));
                        false
                    }
                    // The semaphore is never closed.
                    Poll::Ready(Err(_)) => false,
                }
            }
        }
    }

    /// Completes when the waiting request is granted (the caller then covers again); never,
    /// when nothing is asked for.
    pub async fn granted(&mut self) {
        match self.pending.as_mut() {
            Some((acquire, short)) => {
                let short = *short;
                // The semaphore is never closed, so this only fails if that changes; then
                // nothing is held and the caller asks again.
                if let Ok(permit) = acquire.as_mut().await {
                    permit.forget();
                    self.held_kib += short;
                }
                self.pending = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Bytes this connection holds.
    pub fn held_bytes(&self) -> u64 {
        self.held_kib as u64 * 1024
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if self.held_kib > 0 {
            self.budget.permits.add_permits(self.held_kib as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test]
    async fn shares_take_what_is_free_and_wait_for_the_rest_in_turn() {
        let budget = Arc::new(FrameBudget::new(10 * MIB));
        let mut a = budget.share();
        let mut b = budget.share();
        let mut c = budget.share();
        assert!(a.cover(6 * MIB));
        assert_eq!(budget.used_bytes(), 6 * MIB);
        // B asks for more than is free: it waits, holding nothing.
        assert!(!b.cover(8 * MIB));
        assert_eq!(b.held_bytes(), 0);
        // C asks for what is free, but B asked first: C waits too (no starving B).
        assert!(!c.cover(MIB));
        // A's frame is out: what it gives back goes to B first.
        assert!(a.cover(0));
        b.granted().await;
        assert!(b.cover(8 * MIB));
        assert_eq!(b.held_bytes(), 8 * MIB);
        // C's request was served from the rest as soon as B's was.
        assert_eq!(budget.used_bytes(), 9 * MIB);
        c.granted().await;
        assert!(c.cover(MIB));
        assert_eq!(budget.used_bytes(), 9 * MIB);
        // Dropped shares give everything back.
        drop(b);
        drop(c);
        assert_eq!(budget.used_bytes(), 0);
    }

    #[tokio::test]
    async fn a_share_that_needs_less_drops_its_request_and_gives_back() {
        let budget = Arc::new(FrameBudget::new(4 * MIB));
        let mut a = budget.share();
        let mut b = budget.share();
        assert!(a.cover(3 * MIB));
        assert!(b.cover(MIB));
        assert!(!b.cover(3 * MIB));
        // B's SEND was taken meanwhile: it needs nothing now.
        assert!(b.cover(0));
        assert_eq!(budget.used_bytes(), 3 * MIB);
        assert!(a.cover(4 * MIB));
        assert_eq!(budget.used_bytes(), 4 * MIB);
    }
}
