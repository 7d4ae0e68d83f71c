//! The replay log of a failover client: every SEND, BEGIN, COMMIT and ABORT written since the
//! last RECEIPT that covers it. After a reconnect the log is written again, in order, so a
//! message the broker may not have taken is sent again: at-least-once, as ActiveMQ's
//! `trackMessages`.
//!
//! Receipts are taken as cumulative: a RECEIPT for frame N means the broker took every frame
//! before it on that connection (the broker processes a connection's frames in order; stompbox
//! even writes RECEIPTs in frame order). The one exception is an open transaction: its frames
//! stay until its COMMIT or ABORT is confirmed, because a lost connection rolls it back.
//! Sans-IO: the client pushes frames and confirmations; the log says what to resend.

use std::collections::{HashSet, VecDeque};

use crate::codec::{Command, Frame};

/// Ask for a receipt on every this many unreceipted SENDs, so the log can be trimmed.
pub const CHECKPOINT_FRAMES: usize = 128;

/// The log is full at this many frames: the client waits for receipts before sending more.
const MAX_FRAMES: usize = 4096;

/// … or at this many body bytes.
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// One logged frame.
#[derive(Debug)]
struct Entry {
    /// The receipt number it asked for, if any.
    receipt: Option<u64>,
    /// Its `transaction` header.
    tx: Option<String>,
    frame: Frame,
}

/// Frames written but not yet covered by a receipt, oldest first.
#[derive(Debug, Default)]
pub struct ReplayLog {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Frames pushed since the last one with a receipt.
    unreceipted: usize,
}

impl ReplayLog {
    /// Appends a frame just written (or about to be), with the receipt number it asked for.
    pub fn push(&mut self, receipt: Option<u64>, frame: Frame) {
        self.bytes += frame.body.len();
        self.unreceipted = if receipt.is_some() {
            0
        } else {
            self.unreceipted + 1
        };
        self.entries.push_back(Entry {
            receipt,
            tx: frame.get("transaction").map(str::to_string),
            frame,
        });
    }

    /// The frame pushed last.
    pub fn last(&self) -> Option<&Frame> {
        self.entries.back().map(|e| &e.frame)
    }

    /// True when enough SENDs went without a receipt that the next should ask for one.
    pub fn needs_checkpoint(&self) -> bool {
        self.unreceipted >= CHECKPOINT_FRAMES
    }

    /// True when the client should wait for receipts before sending more.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_FRAMES || self.bytes >= MAX_BYTES
    }

    /// The highest receipt number in the log: waiting for it trims the log.
    pub fn last_receipt(&self) -> Option<u64> {
        self.entries.iter().rev().find_map(|e| e.receipt)
    }

    /// True when `receipt` belongs to a logged frame (so a reconnect resends it).
    pub fn contains_receipt(&self, receipt: u64) -> bool {
        self.entries.iter().any(|e| e.receipt == Some(receipt))
    }

    /// The broker confirmed every receipt up to `upto`: drops what those receipts cover,
    /// except frames of transactions whose COMMIT or ABORT is not covered yet.
    pub fn confirm(&mut self, upto: u64) {
        let Some(end) = self
            .entries
            .iter()
            .rposition(|e| e.receipt.is_some_and(|r| r <= upto))
        else {
            return;
        };
        let closed: HashSet<String> = self
            .entries
            .iter()
            .take(end + 1)
            .filter(|e| matches!(e.frame.command, Command::Commit | Command::Abort))
            .filter_map(|e| e.tx.clone())
            .collect();
        let covered: Vec<Entry> = self.entries.drain(..=end).collect();
        for entry in covered.into_iter().rev() {
            match &entry.tx {
                Some(tx) if !closed.contains(tx) => self.entries.push_front(entry),
                _ => self.bytes -= entry.frame.body.len(),
            }
        }
        if self.entries.iter().all(|e| e.receipt.is_none()) {
            self.unreceipted = self.entries.len();
        }
    }

    /// The frames to write again after a reconnect, oldest first.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.entries.iter().map(|e| &e.frame)
    }

    /// True when nothing awaits confirmation.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(n: u32) -> Frame {
        Frame::new(Command::Send)
            .header("destination", "/queue/q")
            .with_body(n.to_string())
    }

    fn in_tx(command: Command, tx: &str) -> Frame {
        Frame::new(command).header("transaction", tx)
    }

    fn bodies(log: &ReplayLog) -> Vec<String> {
        log.frames()
            .map(|f| {
                if f.body.is_empty() {
                    f.command.to_string()
                } else {
                    String::from_utf8_lossy(&f.body).into_owned()
                }
            })
            .collect()
    }

    #[test]
    fn receipts_are_cumulative() {
        let mut log = ReplayLog::default();
        log.push(None, send(1));
        log.push(Some(1), send(2));
        log.push(None, send(3));
        log.push(Some(2), send(4));
        log.push(None, send(5));
        log.confirm(1);
        assert_eq!(bodies(&log), ["3", "4", "5"]);
        assert!(log.contains_receipt(2));
        assert!(!log.contains_receipt(1));
        log.confirm(2);
        assert_eq!(bodies(&log), ["5"]);
        // A confirmation that covers no logged receipt changes nothing.
        log.confirm(2);
        assert_eq!(bodies(&log), ["5"]);
    }

    #[test]
    fn open_transaction_survives_a_checkpoint() {
        let mut log = ReplayLog::default();
        log.push(None, in_tx(Command::Begin, "t1"));
        log.push(None, in_tx(Command::Send, "t1").with_body("a"));
        log.push(Some(1), send(9));
        log.push(None, in_tx(Command::Send, "t1").with_body("b"));
        log.confirm(1);
        assert_eq!(bodies(&log), ["BEGIN", "a", "b"]);
        log.push(Some(2), in_tx(Command::Commit, "t1"));
        log.confirm(2);
        assert!(log.is_empty());
    }

    #[test]
    fn committed_but_unconfirmed_transaction_keeps_its_begin() {
        let mut log = ReplayLog::default();
        log.push(None, in_tx(Command::Begin, "t1"));
        log.push(None, in_tx(Command::Send, "t1").with_body("a"));
        log.push(Some(1), send(9));
        log.push(Some(2), in_tx(Command::Commit, "t1"));
        log.confirm(1);
        assert_eq!(bodies(&log), ["BEGIN", "a", "COMMIT"]);
    }

    #[test]
    fn checkpoints_and_bytes() {
        let mut log = ReplayLog::default();
        for n in 0..CHECKPOINT_FRAMES as u32 {
            assert!(!log.needs_checkpoint());
            log.push(None, send(n));
        }
        assert!(log.needs_checkpoint());
        log.push(Some(7), send(0));
        assert!(!log.needs_checkpoint());
        assert_eq!(log.last_receipt(), Some(7));
        log.confirm(7);
        assert!(log.is_empty());
        assert_eq!(log.bytes, 0);
        log.push(
            None,
            Frame::new(Command::Send).with_body(vec![0u8; MAX_BYTES]),
        );
        assert!(log.is_full());
    }
}
