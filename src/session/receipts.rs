//! Receipts and the end of a connection: each frame with a `receipt` gets a token, every
//! owner command it causes carries it, and the RECEIPT is written once all of them are
//! answered, in the order the frames arrived, and only after every SEND before its frame is
//! answered (the producer window, `send.rs`). DISCONNECT's receipt and the ERROR that ends a
//! connection wait in the same line, so the client learns which earlier frames took effect.

use std::collections::VecDeque;

use super::error::Error;
use super::state::{Phase, Session};
use crate::codec::{Command, Frame};
use crate::message::{ToOwner, Token};

/// A receipt waiting for the effects of its frame.
#[derive(Debug)]
struct PendingReceipt {
    token: Token,
    receipt_id: String,
    /// Owner answers still outstanding.
    remaining: usize,
    /// DISCONNECT: close once this receipt is written.
    then_close: bool,
    /// Not a RECEIPT but the ERROR that ends the connection: it waits for the receipts of
    /// earlier frames, so the client learns which of them took effect.
    error: Option<Frame>,
}

/// Tokens, and the receipts waiting for their frames' effects.
#[derive(Debug, Default)]
pub(super) struct Receipts {
    /// In the order their frames arrived, so in token order.
    pending: VecDeque<PendingReceipt>,
    next_token: u64,
}

impl Receipts {
    /// A fresh token; tokens grow in the order frames arrive.
    pub fn new_token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    /// Receipts (and a final ERROR) waiting to be written.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Removes the receipt waiting on `token` (its frame failed) and returns its id, for the
    /// ERROR's `receipt-id`.
    pub fn take(&mut self, token: Token) -> Option<String> {
        let i = self.pending.iter().position(|p| p.token == token)?;
        self.pending.remove(i).map(|p| p.receipt_id)
    }

    /// The receipt waiting on `token` waits for `more` owner answers too.
    pub fn add_effects(&mut self, token: Token, more: usize) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.token == token) {
            p.remaining += more;
        }
    }
}

impl Session {
    /// Queues the ERROR frame for `error` and moves to [`Phase::Closing`].
    ///
    /// Receipts of earlier frames still waiting for their effects are written first (the
    /// client must learn which frames took effect); meanwhile nothing more is read, and the
    /// driver gives up waiting after its linger ([`Session::give_up_waiting`]). A pending
    /// DISCONNECT receipt is dropped: the connection did not end well.
    pub fn fail(&mut self, error: &Error, receipt: Option<&str>) {
        if self.phase == Phase::Closing {
            return;
        }
        if self.failing() {
            // The first ERROR stands. The failure that brings us here may have answered what
            // it waited for (a SEND the store rejected while the broker shuts down, its receipt
            // taken away): then it goes out now, not when the driver gives up waiting.
            self.write_ready_receipts();
            return;
        }
        let frame = error.to_frame(receipt);
        self.receipts.pending.retain(|p| !p.then_close);
        if self.receipts.pending.is_empty() {
            self.outbox.write_frame(&frame, self.version);
            self.phase = Phase::Closing;
            return;
        }
        let token = self.receipts.new_token();
        self.receipts.pending.push_back(PendingReceipt {
            token,
            receipt_id: String::new(),
            remaining: 0,
            then_close: true,
            error: Some(frame),
        });
        self.phase = Phase::Disconnecting;
        self.write_ready_receipts();
    }

    /// True while an ERROR waits behind earlier receipts (see [`Session::fail`]).
    pub fn failing(&self) -> bool {
        self.receipts
            .pending
            .back()
            .is_some_and(|p| p.error.is_some())
    }

    /// The earlier receipts took too long (their effects are held, e.g. by flow control):
    /// write the ERROR now and close without them.
    pub fn give_up_waiting(&mut self) {
        if let Some(error) = self.receipts.pending.pop_back().and_then(|p| p.error) {
            self.receipts.pending.clear();
            self.outbox.write_frame(&error, self.version);
            self.phase = Phase::Closing;
        }
    }

    pub(super) fn on_disconnect(&mut self, frame: &Frame) -> Result<(), Error> {
        match frame.get("receipt") {
            None => self.phase = Phase::Closing,
            Some(receipt) => {
                // Each shard we talked to answers a barrier posted behind everything this
                // session posted to it (one FIFO mailbox per shard), once it has handled all
                // of it. Owners answer barriers at once, without waiting for the store: the
                // RECEIPT also waits for every earlier SEND to be accepted (stored ones
                // committed), as every RECEIPT does, but deletes of stored messages acked
                // without a receipt may still be on their way to disk.
                let shards: Vec<usize> = (0..self.said_hello.len())
                    .filter(|&s| self.said_hello[s])
                    .collect();
                let token = self.receipts.new_token();
                self.receipts.pending.push_back(PendingReceipt {
                    token,
                    receipt_id: receipt.to_string(),
                    remaining: shards.len(),
                    then_close: true,
                    error: None,
                });
                for shard in shards {
                    self.post(
                        shard,
                        ToOwner::Barrier {
                            session: self.id,
                            token,
                        },
                    );
                }
                self.phase = Phase::Disconnecting;
                self.write_ready_receipts();
            }
        }
        Ok(())
    }

    /// Registers the frame's receipt (if any) to be written after `effects` owner answers.
    pub(super) fn receipt_token(&mut self, frame: &Frame, effects: usize) -> Option<Token> {
        let receipt = frame.get("receipt").map(str::to_owned);
        self.register_receipt(receipt.as_deref(), effects)
    }

    /// Registers `receipt` (if any) to be written after `effects` owner answers.
    pub(super) fn register_receipt(
        &mut self,
        receipt: Option<&str>,
        effects: usize,
    ) -> Option<Token> {
        let receipt = receipt?;
        let token = self.receipts.new_token();
        self.receipts.pending.push_back(PendingReceipt {
            token,
            receipt_id: receipt.to_string(),
            remaining: effects,
            then_close: false,
            error: None,
        });
        self.write_ready_receipts();
        Some(token)
    }

    /// A frame whose effect is already complete: its receipt follows any still pending.
    pub(super) fn receipt_now(&mut self, frame: &Frame) {
        self.receipt_token(frame, 0);
    }

    /// One owner answer for `token` came.
    pub(super) fn complete(&mut self, token: Token) {
        let pending = &mut self.receipts.pending;
        if let Ok(i) = pending.binary_search_by_key(&token, |p| p.token) {
            let p = &mut pending[i];
            p.remaining = p.remaining.saturating_sub(1);
        }
        self.write_ready_receipts();
    }

    /// Writes receipts whose effects are all done, in the order their frames arrived, once
    /// every SEND before their frame is answered too.
    fn write_ready_receipts(&mut self) {
        if self.phase == Phase::Closing {
            // Past an ERROR (or the DISCONNECT's RECEIPT) the client reads no more frames.
            return;
        }
        let oldest_send = self.window.oldest();
        while self
            .receipts
            .pending
            .front()
            .is_some_and(|p| p.remaining == 0 && oldest_send.is_none_or(|t| t > p.token))
        {
            let p = self.receipts.pending.pop_front().expect("front exists");
            let frame = match p.error {
                Some(error) => error,
                None => Frame::new(Command::Receipt).header("receipt-id", p.receipt_id),
            };
            self.outbox.write_frame(&frame, self.version);
            if p.then_close {
                self.phase = Phase::Closing;
            }
            self.release_held(p.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Phase;
    use super::super::testing::{send, Pair};
    use super::super::Error;
    use crate::codec::{Command, Frame};
    use crate::message::{ToOwner, ToSession};

    #[test]
    fn a_send_rejected_while_an_error_waits_for_it_lets_the_error_out() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/e", "m").header("receipt", "r"));
        // The broker shuts down (as after a store failure) while the SEND is in flight: the
        // ERROR waits for the SEND's answer.
        c.session.fail(&Error::ShuttingDown, None);
        assert!(c.frames().is_empty());
        assert_eq!(c.session.phase(), Phase::Disconnecting);
        // The store rejects the SEND.
        let token = pair
            .take_commands()
            .into_iter()
            .find_map(|cmd| match cmd {
                ToOwner::Send { token, .. } => token,
                _ => None,
            })
            .expect("the SEND was posted");
        c.session.handle_answer(ToSession::Rejected {
            token: Some(token),
            reason: "store I/O failure".into(),
        });
        // Nothing is left to wait for: the ERROR goes out now (not after the linger), and no
        // RECEIPT for the rejected SEND.
        let frames = c.frames();
        let commands: Vec<Command> = frames.iter().map(|f| f.command).collect();
        assert_eq!(commands, [Command::Error], "{frames:?}");
        assert_eq!(c.session.phase(), Phase::Closing);
    }

    #[test]
    fn receipts_follow_effects_in_order() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/r", "1").header("receipt", "a"));
        c.send(
            Frame::new(Command::Begin)
                .header("transaction", "t")
                .header("receipt", "b"),
        );
        // The SEND's effect is not done until the owner has run, so neither receipt is out.
        assert!(c.frames().is_empty());
        pair.pump(&mut [&mut c]);
        let ids: Vec<_> = c
            .frames()
            .iter()
            .map(|f| f.get("receipt-id").unwrap().to_string())
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn receipt_waits_for_earlier_unreceipted_sends() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/r", "1"));
        c.send(
            Frame::new(Command::Begin)
                .header("transaction", "t")
                .header("receipt", "b"),
        );
        // The SEND is not answered yet, so BEGIN's receipt waits.
        assert!(c.frames().is_empty());
        pair.pump(&mut [&mut c]);
        assert_eq!(c.frames()[0].get("receipt-id"), Some("b"));
    }

    #[test]
    fn pending_receipts_stop_reading_at_their_limit() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        // A SEND whose answer has not come (its owner has not run): every later RECEIPT waits.
        c.send(send("/queue/held", "x"));
        let max = c.session.config.limits.max_pending_receipts;
        let mut n = 0;
        while c.session.wants_read() {
            let t = format!("t{n}");
            c.send(
                Frame::new(Command::Begin)
                    .header("transaction", &t)
                    .header("receipt", &t),
            );
            c.send(Frame::new(Command::Abort).header("transaction", &t));
            n += 1;
            assert!(n <= max, "still reading past max_pending_receipts");
        }
        assert_eq!(c.session.receipts.len(), max);
        pair.pump(&mut [&mut c]);
        assert_eq!(c.frames().len(), max);
        assert!(c.session.wants_read());
    }

    #[test]
    fn earlier_receipts_come_before_the_error_and_nothing_after_it() {
        let mut pair = Pair::new();
        let mut c = pair.client("1.2");
        c.send(send("/queue/e", "m").header("receipt", "r"));
        c.send(Frame::new(Command::Message));
        // The SEND is answered after the failure: its RECEIPT goes first, then the ERROR.
        assert!(c.frames().is_empty());
        pair.pump(&mut [&mut c]);
        let frames = c.frames();
        let commands: Vec<Command> = frames.iter().map(|f| f.command).collect();
        assert_eq!(commands, [Command::Receipt, Command::Error], "{frames:?}");
        assert_eq!(frames[0].get("receipt-id"), Some("r"));
        pair.pump(&mut [&mut c]);
        assert!(c.frames().is_empty());
        assert_eq!(c.session.phase(), Phase::Closing);
    }
}
