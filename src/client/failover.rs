//! [`Client`]: one logical STOMP connection over a [`BrokerUri`].
//!
//! With a `tcp://` URI it is a plain connection and any failure is returned. With a
//! `failover:` URI a transport failure makes it reconnect (with [`Backoff`]), subscribe again
//! with the same ids and headers, and write the [`ReplayLog`] again: every SEND not yet
//! covered by a RECEIPT and every open transaction. Delivery is therefore at-least-once: a
//! message may arrive twice, none that a RECEIPT confirmed (or that was sent before the
//! failure) is lost. ACKs written on a lost connection are dropped: the broker redelivers
//! those messages.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::Connection;
use super::replay::ReplayLog;
use super::{Backoff, BrokerUri, ClientError, ConnectOptions, SubscribeOptions};
use crate::codec::{Command, Frame, Version};

/// A transaction begun with [`Client::begin`]; put [`TxId::as_str`] in a SEND's
/// `transaction` header to include it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxId(String);

impl TxId {
    /// The `transaction` header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A MESSAGE frame received by a [`Client`], with the connection it arrived on (an ACK is
/// only meaningful on that connection).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The MESSAGE frame.
    pub frame: Frame,
    generation: u64,
}

impl Delivery {
    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.frame.get(name)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.frame.body
    }
}

/// One logical connection to a broker (or a failover list of brokers). Driven by one task.
#[derive(Debug)]
pub struct Client {
    uri: BrokerUri,
    options: ConnectOptions,
    /// `None` after a failure the client could not recover from.
    conn: Option<Connection>,
    /// Bumped on each (re)connect; tags deliveries.
    generation: u64,
    /// Live subscriptions: their SUBSCRIBE frames (without receipt), in subscribe order.
    subscriptions: Vec<(String, Frame)>,
    next_subscription: u64,
    next_tx: u64,
    /// Receipt numbers are allocated in order; RECEIPTs are taken as cumulative.
    next_receipt: u64,
    confirmed: u64,
    /// Frames to write again after a reconnect (failover only).
    replay: ReplayLog,
    /// MESSAGEs read while waiting for a RECEIPT.
    inbox: VecDeque<Delivery>,
    reconnects: u64,
}

impl Client {
    /// Connects to the first broker of `uri` that answers (retrying per the failover options).
    pub async fn connect(uri: &BrokerUri, options: ConnectOptions) -> Result<Client, ClientError> {
        let mut client = Client {
            uri: uri.clone(),
            options,
            conn: None,
            generation: 0,
            subscriptions: Vec::new(),
            next_subscription: 0,
            next_tx: 0,
            next_receipt: 0,
            confirmed: 0,
            replay: ReplayLog::default(),
            inbox: VecDeque::new(),
            reconnects: 0,
        };
        let mut backoff = match &uri.failover {
            Some(f) => Backoff::new(f, true),
            None => Backoff::once(),
        };
        client.establish(&mut backoff).await?;
        Ok(client)
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Option<Version> {
        self.conn.as_ref().map(Connection::version)
    }

    /// The broker's `server` header.
    pub fn server(&self) -> Option<&str> {
        self.conn.as_ref().and_then(Connection::server)
    }

    /// The broker's name in a network of brokers, when it says it (stompbox does).
    pub fn broker_name(&self) -> Option<&str> {
        self.conn.as_ref().and_then(Connection::broker_name)
    }

    /// How many times the client reconnected after a failure.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Sends a SEND frame without waiting. It may sit in the write buffer until the next
    /// await that reads or flushes; [`Client::flush`] writes it now. A failover client asks
    /// for a receipt every few frames and keeps the frame until one covers it.
    pub async fn send(&mut self, mut frame: Frame) -> Result<(), ClientError> {
        if self.uri.is_failover() {
            if frame.get("transaction").is_none()
                && (self.replay.needs_checkpoint() || self.replay.is_full())
            {
                let n = self.alloc_receipt();
                frame.headers.push("receipt", receipt_id(n));
                self.replay.push(Some(n), frame);
            } else {
                self.replay.push(None, frame);
            }
            self.write_last_logged().await?;
            self.poll_incoming().await?;
            while self.replay.is_full() {
                match self.replay.last_receipt() {
                    Some(n) if n > self.confirmed => self.wait_receipt(n).await?,
                    _ => break,
                }
            }
        } else {
            self.write(&frame).await?;
            self.poll_incoming().await?;
        }
        Ok(())
    }

    /// Sends a SEND frame with a `receipt` header and waits for the RECEIPT. For a persistent
    /// message on stompbox, that means it is on disk.
    pub async fn send_with_receipt(&mut self, mut frame: Frame) -> Result<(), ClientError> {
        let n = self.alloc_receipt();
        frame.headers.push("receipt", receipt_id(n));
        if self.uri.is_failover() {
            self.replay.push(Some(n), frame);
            self.write_last_logged().await?;
        } else {
            self.write(&frame).await?;
        }
        self.wait_receipt(n).await
    }

    /// Sends `frame` with a `receipt` header and returns its number without waiting: the
    /// RECEIPT arrives later, and [`Client::confirmed`] reaches the number (receipts are
    /// answered in order). For a pipeline of receipted SENDs (a network bridge), which reads
    /// the connection itself ([`Client::next`]); nothing is read here, and the frame is
    /// buffered until 32 KiB wait or the next read. Not replayed by a failover client.
    pub async fn send_numbered(&mut self, mut frame: Frame) -> Result<u64, ClientError> {
        let n = self.alloc_receipt();
        frame.headers.push("receipt", receipt_id(n));
        self.write(&frame).await?;
        Ok(n)
    }

    /// A frame already received and buffered, handled without any I/O: `Ok(None)` when none
    /// is; `Ok(Some(None))` for a RECEIPT (which moves [`Client::confirmed`]). A pipeline
    /// takes these before it waits, so that what it writes in answer goes out in one write.
    pub async fn next_buffered(&mut self) -> Result<Option<Option<Delivery>>, ClientError> {
        if let Some(d) = self.inbox.pop_front() {
            return Ok(Some(Some(d)));
        }
        let result = match self.conn.as_mut() {
            Some(conn) => conn.buffered_frame(),
            None => return Err(ClientError::NotConnected),
        };
        match result.and_then(|f| f.map(|f| self.handle(f)).transpose()) {
            Ok(frame) => Ok(frame),
            Err(e) => {
                self.recover(e).await?;
                Ok(Some(None))
            }
        }
    }

    /// Sends `frame` as it is, without waiting or reading: it is buffered until 32 KiB wait or
    /// the next read. For a pipeline whose later receipted frame covers it
    /// ([`Client::send_numbered`]).
    pub async fn send_unreceipted(&mut self, frame: Frame) -> Result<(), ClientError> {
        self.write(&frame).await
    }

    /// The client, connected, without failover from now on: a lost connection is an error
    /// rather than a reconnect (for a caller that resends on its own terms, like a network
    /// bridge).
    pub fn without_failover(mut self) -> Client {
        self.uri.failover = None;
        self.replay = ReplayLog::default();
        self
    }

    /// The highest receipt number the broker confirmed on the current connection.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Reads one frame: the MESSAGE it was, or `None` for anything else (a RECEIPT, which
    /// moves [`Client::confirmed`]). Waits for a frame; cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Delivery>, ClientError> {
        if let Some(d) = self.inbox.pop_front() {
            return Ok(Some(d));
        }
        self.read_one(None).await
    }

    /// Writes buffered frames now.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        loop {
            let result = match self.conn.as_mut() {
                Some(conn) => conn.flush().await,
                None => return Err(ClientError::NotConnected),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => self.recover(e).await?,
            }
        }
    }

    /// Subscribes to `destination` and waits until the broker confirms it (a RECEIPT), so
    /// messages sent afterwards reach this subscription. Returns the subscription id.
    pub async fn subscribe(
        &mut self,
        destination: &str,
        options: &SubscribeOptions,
    ) -> Result<String, ClientError> {
        self.next_subscription += 1;
        let id = format!("sub-{}", self.next_subscription);
        let mut frame = Frame::new(Command::Subscribe)
            .header("id", id.as_str())
            .header("destination", destination)
            .header("ack", options.ack.as_str());
        if let Some(prefetch) = options.prefetch {
            frame = frame
                .header("activemq.prefetchSize", prefetch.to_string())
                .header("prefetch-count", prefetch.to_string());
        }
        for (name, value) in &options.headers {
            frame.headers.push(name.as_str(), value.as_str());
        }
        self.subscriptions.push((id.clone(), frame.clone()));
        let n = self.alloc_receipt();
        self.write(&frame.header("receipt", receipt_id(n))).await?;
        self.wait_receipt(n).await?;
        Ok(id)
    }

    /// Ends subscription `id` (waits for the RECEIPT).
    pub async fn unsubscribe(&mut self, id: &str) -> Result<(), ClientError> {
        self.unsubscribe_with(id, &[]).await
    }

    /// UNSUBSCRIBE with more headers (`activemq.subscriptionName` deletes a durable
    /// subscription, with `destination` also one not active on this connection), and wait for
    /// its RECEIPT.
    pub async fn unsubscribe_with(
        &mut self,
        id: &str,
        headers: &[(String, String)],
    ) -> Result<(), ClientError> {
        self.subscriptions.retain(|(s, _)| s != id);
        let n = self.alloc_receipt();
        let mut frame = Frame::new(Command::Unsubscribe).header("id", id);
        for (name, value) in headers {
            frame.headers.push(name.as_str(), value.as_str());
        }
        let frame = frame.header("receipt", receipt_id(n));
        self.write(&frame).await?;
        self.wait_receipt(n).await
    }

    /// Deletes durable subscription `name` of `topic` of this connection's client id, with
    /// what it kept, whether or not it is active here (ActiveMQ's UNSUBSCRIBE with
    /// `activemq.subscriptionName`), and waits for its RECEIPT.
    pub async fn delete_durable(&mut self, topic: &str, name: &str) -> Result<(), ClientError> {
        let headers = [
            ("destination".to_string(), topic.to_string()),
            ("activemq.subscriptionName".to_string(), name.to_string()),
        ];
        self.unsubscribe_with(&format!("durable-{name}"), &headers)
            .await
    }

    /// The next MESSAGE.
    pub async fn recv(&mut self) -> Result<Delivery, ClientError> {
        loop {
            if let Some(d) = self.recv_until(None).await? {
                return Ok(d);
            }
        }
    }

    /// The next MESSAGE, or `None` if none arrives within `timeout`. A reconnect in progress
    /// is not cut short by the timeout.
    pub async fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Delivery>, ClientError> {
        self.recv_until(Some(Instant::now() + timeout)).await
    }

    /// Acknowledges a delivery (cumulatively in `client` mode). Deliveries from a connection
    /// that has since been lost are skipped: the broker redelivers them.
    pub async fn ack(&mut self, delivery: &Delivery, tx: Option<&TxId>) -> Result<(), ClientError> {
        self.acknowledge(Command::Ack, delivery, tx).await
    }

    /// Refuses a delivery: the broker redelivers it (or dead-letters it).
    pub async fn nack(
        &mut self,
        delivery: &Delivery,
        tx: Option<&TxId>,
    ) -> Result<(), ClientError> {
        self.acknowledge(Command::Nack, delivery, tx).await
    }

    /// Begins a transaction.
    pub async fn begin(&mut self) -> Result<TxId, ClientError> {
        self.next_tx += 1;
        let tx = TxId(format!("tx-{}", self.next_tx));
        let frame = Frame::new(Command::Begin).header("transaction", tx.as_str());
        self.write_logged(None, frame).await?;
        Ok(tx)
    }

    /// Commits a transaction and waits for the RECEIPT.
    pub async fn commit(&mut self, tx: TxId) -> Result<(), ClientError> {
        self.end_tx(Command::Commit, tx).await
    }

    /// Aborts a transaction and waits for the RECEIPT.
    pub async fn abort(&mut self, tx: TxId) -> Result<(), ClientError> {
        self.end_tx(Command::Abort, tx).await
    }

    /// Disconnects gracefully: DISCONNECT with a receipt, whose RECEIPT the broker sends
    /// after every earlier frame was handled. A failover client reconnects and resends what
    /// is unconfirmed if the connection drops meanwhile.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        loop {
            let n = self.alloc_receipt();
            let generation = self.generation;
            let frame = Frame::new(Command::Disconnect).header("receipt", receipt_id(n));
            self.write(&frame).await?;
            if self.generation != generation {
                continue;
            }
            loop {
                if self.confirmed >= n {
                    return Ok(());
                }
                match self.read_one(None).await {
                    Ok(Some(d)) => self.inbox.push_back(d),
                    Ok(None) => {}
                    // The broker may close right after the RECEIPT; a close with nothing
                    // left unconfirmed is as good.
                    Err(ClientError::Closed) if self.replay.is_empty() => return Ok(()),
                    Err(e) => return Err(e),
                }
                if self.generation != generation {
                    break;
                }
            }
        }
    }

    // ---- internals ---------------------------------------------------------------------

    fn alloc_receipt(&mut self) -> u64 {
        self.next_receipt += 1;
        self.next_receipt
    }

    async fn acknowledge(
        &mut self,
        command: Command,
        delivery: &Delivery,
        tx: Option<&TxId>,
    ) -> Result<(), ClientError> {
        if delivery.generation != self.generation {
            return Ok(());
        }
        let version = self.version().unwrap_or(Version::V1_2);
        let message_id = delivery.get("message-id").unwrap_or("");
        let mut frame = Frame::new(command);
        match version {
            Version::V1_2 => {
                frame = frame.header("id", delivery.get("ack").unwrap_or(message_id));
            }
            Version::V1_1 => {
                frame = frame
                    .header("message-id", message_id)
                    .header("subscription", delivery.get("subscription").unwrap_or(""));
            }
            Version::V1_0 => frame = frame.header("message-id", message_id),
        }
        if let Some(tx) = tx {
            frame = frame.header("transaction", tx.as_str());
        }
        self.write(&frame).await
    }

    async fn end_tx(&mut self, command: Command, tx: TxId) -> Result<(), ClientError> {
        let n = self.alloc_receipt();
        let frame = Frame::new(command)
            .header("transaction", tx.as_str())
            .header("receipt", receipt_id(n));
        self.write_logged(Some(n), frame).await?;
        self.wait_receipt(n).await
    }

    /// Writes a frame that a failover client must resend after a reconnect.
    async fn write_logged(
        &mut self,
        receipt: Option<u64>,
        frame: Frame,
    ) -> Result<(), ClientError> {
        if self.uri.is_failover() {
            self.replay.push(receipt, frame);
            self.write_last_logged().await
        } else {
            self.write(&frame).await
        }
    }

    /// Writes the frame just pushed on the replay log. A failure reconnects, and the replay
    /// resends it.
    async fn write_last_logged(&mut self) -> Result<(), ClientError> {
        let result = match (self.conn.as_mut(), self.replay.last()) {
            (Some(conn), Some(frame)) => conn.write(frame).await,
            (None, _) => return Err(ClientError::NotConnected),
            (_, None) => return Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.recover(e).await,
        }
    }

    /// Writes a frame. If the connection fails, a failover client reconnects, after which the
    /// frame's effect is restored (subscriptions, the replay log) or deliberately dropped
    /// (ACKs of deliveries the broker will redeliver); the frame is not written again.
    async fn write(&mut self, frame: &Frame) -> Result<(), ClientError> {
        let result = match self.conn.as_mut() {
            Some(conn) => conn.write(frame).await,
            None => return Err(ClientError::NotConnected),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.recover(e).await,
        }
    }

    /// Handles frames that already arrived, without waiting (receipts, ERROR, MESSAGEs).
    async fn poll_incoming(&mut self) -> Result<(), ClientError> {
        loop {
            let result = match self.conn.as_mut() {
                Some(conn) => conn.try_read_frame(),
                None => return Err(ClientError::NotConnected),
            };
            match result {
                Ok(Some(frame)) => match self.handle(frame) {
                    Ok(Some(d)) => self.inbox.push_back(d),
                    Ok(None) => {}
                    Err(e) => self.recover(e).await?,
                },
                Ok(None) => return Ok(()),
                Err(e) => self.recover(e).await?,
            }
        }
    }

    /// Reads until receipt `n` is confirmed, keeping MESSAGEs for [`Client::recv`]. A receipt
    /// that a reconnect made moot (its frame is not in the replay log, so the reconnect
    /// restored its effect, as with SUBSCRIBE) counts as confirmed.
    async fn wait_receipt(&mut self, n: u64) -> Result<(), ClientError> {
        let generation = self.generation;
        while self.confirmed < n {
            if self.generation != generation && !self.replay.contains_receipt(n) {
                return Ok(());
            }
            if let Some(d) = self.read_one(None).await? {
                self.inbox.push_back(d);
            }
        }
        Ok(())
    }

    async fn recv_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Delivery>, ClientError> {
        if let Some(d) = self.inbox.pop_front() {
            return Ok(Some(d));
        }
        loop {
            if let Some(d) = self.read_one(deadline).await? {
                return Ok(Some(d));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Reads one frame (reconnecting on failure) and handles it; returns it if it is a
    /// MESSAGE. `Ok(None)` when something else arrived or the deadline passed.
    async fn read_one(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Delivery>, ClientError> {
        let result = match self.conn.as_mut() {
            Some(conn) => conn.read_frame(deadline).await,
            None => return Err(ClientError::NotConnected),
        };
        match result {
            Ok(Some(frame)) => match self.handle(frame) {
                Err(e) => {
                    self.recover(e).await?;
                    Ok(None)
                }
                handled => handled,
            },
            Ok(None) => Ok(None),
            Err(e) => {
                self.recover(e).await?;
                Ok(None)
            }
        }
    }

    /// Acts on a received frame; returns MESSAGEs to the caller.
    fn handle(&mut self, frame: Frame) -> Result<Option<Delivery>, ClientError> {
        match frame.command {
            Command::Message => Ok(Some(Delivery {
                frame,
                generation: self.generation,
            })),
            Command::Receipt => {
                if let Some(n) = frame.get("receipt-id").and_then(parse_receipt_id) {
                    if n > self.confirmed {
                        self.confirmed = n;
                        self.replay.confirm(n);
                    }
                }
                Ok(None)
            }
            Command::Error => Err(ClientError::from_error_frame(&frame)),
            other => Err(ClientError::Protocol(format!("unexpected {other} frame"))),
        }
    }

    /// After a failure: a failover client reconnects and restores its state; otherwise (or
    /// when the error is not a transport failure) the error is returned.
    async fn recover(&mut self, cause: ClientError) -> Result<(), ClientError> {
        self.conn = None;
        let Some(options) = self.uri.failover.clone() else {
            return Err(cause);
        };
        if !cause.is_transport() {
            return Err(cause);
        }
        log::warn!("connection lost ({cause}); reconnecting to {}", self.uri);
        let mut backoff = Backoff::new(&options, false);
        self.establish(&mut backoff).await?;
        self.reconnects += 1;
        Ok(())
    }

    /// Passes over the address list until a broker takes the connection and the state is
    /// restored on it, pausing between passes per `backoff`.
    async fn establish(&mut self, backoff: &mut Backoff) -> Result<(), ClientError> {
        loop {
            let mut last = None;
            for addr in self.pass_order() {
                match self.open_and_restore(&addr).await {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        self.generation += 1;
                        backoff.reset();
                        return Ok(());
                    }
                    Err(e) if e.is_transport() => {
                        log::debug!("connect to {addr} failed: {e}");
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            let last = last.unwrap_or(ClientError::NotConnected);
            match backoff.next_delay() {
                Some(delay) => tokio::time::sleep(delay).await,
                None if self.uri.is_failover() => {
                    return Err(ClientError::GaveUp {
                        attempts: backoff.failures(),
                        uri: self.uri.to_string(),
                        last: Box::new(last),
                    })
                }
                None => return Err(last),
            }
        }
    }

    /// Connects to `addr`, subscribes again and writes the replay log.
    async fn open_and_restore(&mut self, addr: &str) -> Result<Connection, ClientError> {
        let mut conn = Connection::open(addr, &self.options).await?;
        for (_, frame) in &self.subscriptions {
            conn.queue(frame);
        }
        for frame in self.replay.frames() {
            conn.queue(frame);
        }
        conn.flush().await?;
        Ok(conn)
    }

    /// The addresses to try in this pass: shuffled with `randomize`, otherwise in the order
    /// written (the first is the preferred broker, as in ActiveMQ).
    fn pass_order(&self) -> Vec<String> {
        let mut order = self.uri.addrs.clone();
        if self.uri.failover.as_ref().is_some_and(|f| f.randomize) {
            shuffle(&mut order);
        }
        order
    }
}

fn receipt_id(n: u64) -> String {
    format!("r{n}")
}

fn parse_receipt_id(id: &str) -> Option<u64> {
    id.strip_prefix('r')?.parse().ok()
}

/// Fisher-Yates with a clock-seeded xorshift: good enough to spread clients over brokers,
/// and no dependency for it.
fn shuffle<T>(v: &mut [T]) {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    for i in (1..v.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_ids_round_trip() {
        assert_eq!(parse_receipt_id(&receipt_id(42)), Some(42));
        assert_eq!(parse_receipt_id("x42"), None);
    }

    #[test]
    fn shuffle_keeps_every_element() {
        let mut v: Vec<u32> = (0..50).collect();
        shuffle(&mut v);
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }
}
