//! Scheduled delivery, ActiveMQ's way: what the `AMQ_SCHEDULED_*` headers of a SEND ask for
//! ([`Schedule`]), the message each occurrence delivers ([`occurrence`]), and the commands
//! that carry a schedule to its destination's owner ([`ScheduleCmd`]). Sessions parse the
//! headers (an invalid one is an ERROR naming it); the owner shard of the destination keeps
//! the pending schedules (`shard/owner/scheduled.rs`); the store keeps persistent ones in its
//! `scheduled` table.
//!
//! What ActiveMQ 5.17 does, and so we do (seen against it, `protocol-tests/scheduled.rs`):
//! `AMQ_SCHEDULED_DELAY` or `AMQ_SCHEDULED_PERIOD` schedules a message; `AMQ_SCHEDULED_REPEAT`
//! alone does not. The first delivery is DELAY after the SEND (PERIOD when there is no DELAY),
//! then REPEAT more, PERIOD apart; PERIOD without REPEAT delivers once. Values are integers
//! (no sign, no spaces); negative or malformed ones are refused. Every delivery is a message
//! of its own (a new `message-id`) without the `AMQ_SCHEDULED_*` headers, with
//! `scheduledJobId` naming the schedule, `timestamp` the time it was delivered and its
//! `expires` moved by as much. We also take Artemis' `AMQ_SCHEDULED_TIME` (ms since the
//! epoch), which ActiveMQ ignores, and refuse `AMQ_SCHEDULED_CRON` (not supported).

use std::sync::Arc;

use super::{DestinationName, Message, MessageId, SessionId, SessionTx, Token};

/// Delay before the first delivery (ms after the broker took the SEND).
pub const DELAY: &str = "AMQ_SCHEDULED_DELAY";
/// Time between deliveries (ms).
pub const PERIOD: &str = "AMQ_SCHEDULED_PERIOD";
/// Deliveries after the first.
pub const REPEAT: &str = "AMQ_SCHEDULED_REPEAT";
/// A cron expression (ActiveMQ); refused here.
pub const CRON: &str = "AMQ_SCHEDULED_CRON";
/// The first delivery's time in ms since the epoch (Artemis).
pub const TIME: &str = "AMQ_SCHEDULED_TIME";
/// The header each delivery carries: the schedule's id (the SEND's message id).
pub const JOB_ID: &str = "scheduledJobId";

/// What a SEND's `AMQ_SCHEDULED_*` headers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// When the first delivery is due.
    pub start: Start,
    /// Ms between deliveries (0 when there is one).
    pub period_ms: u64,
    /// Deliveries after the first.
    pub repeats: u64,
}

/// When a schedule's first delivery is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Ms after the broker took the SEND (or its COMMIT).
    After(u64),
    /// Ms since the epoch (`AMQ_SCHEDULED_TIME`).
    At(u64),
}

/// A header of a SEND that cannot be scheduled: its name, its value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub header: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl Schedule {
    /// The schedule `headers` ask for (first value of a header wins), None when they ask for
    /// none, or which header is invalid.
    pub fn parse(headers: &[(String, String)]) -> Result<Option<Schedule>, ScheduleError> {
        // The common case, on every SEND: no schedule header at all.
        if !headers.iter().any(|(k, _)| k.starts_with("AMQ_SCHEDULED_")) {
            return Ok(None);
        }
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if let Some(v) = get(CRON) {
            return Err(ScheduleError {
                header: CRON,
                value: v.clone(),
                why: "cron schedules are not supported; use AMQ_SCHEDULED_DELAY, \
                      AMQ_SCHEDULED_PERIOD and AMQ_SCHEDULED_REPEAT",
            });
        }
        let number = |name: &'static str| -> Result<Option<u64>, ScheduleError> {
            let Some(v) = get(name) else { return Ok(None) };
            // As ActiveMQ (Java's Long.valueOf): digits only, no spaces; a sign is refused
            // as a negative value is.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ScheduleError {
                    header: name,
                    value: v.clone(),
                    why: "expected a whole number of milliseconds (or repeats), 0 or more",
                });
            }
            v.parse::<u64>()
                .ok()
                .filter(|n| *n <= MAX_MS)
                .map(Some)
                .ok_or_else(|| ScheduleError {
                    header: name,
                    value: v.clone(),
                    why: "too large",
                })
        };
        let delay = number(DELAY)?;
        let period = number(PERIOD)?;
        let repeat = number(REPEAT)?;
        let time = number(TIME)?;
        if delay.is_none() && period.is_none() && time.is_none() {
            // REPEAT alone schedules nothing (ActiveMQ delivers such a message at once).
            return Ok(None);
        }
        let period_ms = period.unwrap_or(0);
        let start = match (time, delay) {
            (Some(at), None) => Start::At(at),
            (Some(_), Some(_)) => {
                return Err(ScheduleError {
                    header: TIME,
                    value: get(TIME).cloned().unwrap_or_default(),
                    why: "give AMQ_SCHEDULED_TIME or AMQ_SCHEDULED_DELAY, not both",
                })
            }
            // ActiveMQ: with no DELAY, the first delivery is one PERIOD after the SEND.
            (None, d) => Start::After(d.unwrap_or(period_ms)),
        };
        let repeats = if period_ms == 0 {
            0
        } else {
            repeat.unwrap_or(0)
        };
        Ok(Some(Schedule {
            start,
            period_ms,
            repeats,
        }))
    }

    /// When the first delivery is due, for a SEND taken at `now` (ms since the epoch).
    pub fn first_at(&self, now: u64) -> u64 {
        match self.start {
            Start::After(ms) => now.saturating_add(ms),
            Start::At(at) => at,
        }
    }
}

/// Largest value taken (about 3,000 years in ms): sums with the clock never overflow.
const MAX_MS: u64 = 1 << 50;

/// True when `name` is a header a schedule reads (not carried by its deliveries).
pub fn is_schedule_header(name: &str) -> bool {
    matches!(name, DELAY | PERIOD | REPEAT | CRON | TIME)
}

/// The message one occurrence of schedule `template.id` delivers at `now` under id `id`:
/// without the schedule's headers, with `scheduledJobId`, `timestamp` now and its expiry moved
/// as far as its timestamp (as ActiveMQ does, so a TTL counts from delivery).
pub fn occurrence(template: &Message, id: MessageId, now: u64) -> Message {
    let mut sent_at = None;
    let mut headers: Vec<(String, String)> = Vec::with_capacity(template.headers.len() + 1);
    for (k, v) in &template.headers {
        if is_schedule_header(k) || k == JOB_ID {
            continue;
        }
        if k == "timestamp" {
            if sent_at.is_none() {
                sent_at = v.parse::<u64>().ok();
            }
            continue;
        }
        headers.push((k.clone(), v.clone()));
    }
    headers.push((JOB_ID.to_string(), template.id.to_string()));
    headers.push(("timestamp".to_string(), now.to_string()));
    let expires = match (template.expires, sent_at) {
        (0, _) => 0,
        (e, Some(t)) => now.saturating_add(e.saturating_sub(t)),
        (e, None) => e,
    };
    Message {
        id,
        destination: template.destination.clone(),
        headers,
        body: template.body.clone(),
        priority: template.priority,
        persistent: template.persistent,
        expires,
    }
}

/// A pending schedule as its owner keeps it, with its message (a persistent one is also in
/// the store's `scheduled` table, which is what survives a restart).
#[derive(Debug, Clone)]
pub struct Pending {
    /// The schedule's id: the SEND's message id (`scheduled.schedule_id`).
    pub id: MessageId,
    pub destination: DestinationName,
    /// When the next delivery is due (ms since the epoch).
    pub next_at: u64,
    pub period_ms: u64,
    /// Deliveries after the next one.
    pub repeats_left: u64,
    /// The SEND's message (the template of each delivery).
    pub message: Arc<Message>,
}

/// Commands about schedules, to the owner of their destination.
#[derive(Debug)]
pub enum ScheduleCmd {
    /// A scheduled SEND (or one of a COMMIT): stored first when persistent; the producer is
    /// answered with [`super::ToSession::Accepted`] once it is (or `Rejected`).
    Add {
        session: SessionId,
        message: Arc<Message>,
        schedule: Schedule,
        token: Option<Token>,
    },
    /// A persistent schedule's row is committed (posted from the store writer): it is
    /// pending from now on, and the producer is answered.
    Stored {
        pending: Pending,
        producer: SessionTx,
        token: Option<Token>,
        result: Result<(), Arc<str>>,
    },
    /// One delivery of a persistent schedule is committed (posted from the store writer):
    /// `message` is in the queues of `copies` (each copy under its id there), and goes to
    /// its destination now; `next` is what remains of the schedule. `message` is None when
    /// the row was gone or the transaction failed (`pending`, the schedule as it was, is then
    /// tried again later).
    Fired {
        pending: Pending,
        next: Option<Pending>,
        message: Option<Arc<Message>>,
        copies: Vec<(super::QueueKey, MessageId)>,
        result: Result<(), Arc<str>>,
    },
    /// At start: the stored schedules of destinations this shard owns.
    Recovered(Vec<Pending>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(h: &[(&str, &str)]) -> Result<Option<Schedule>, ScheduleError> {
        Schedule::parse(&headers(h))
    }

    #[test]
    fn delay_period_and_repeat_as_activemq_reads_them() {
        assert_eq!(parse(&[("x", "1")]), Ok(None));
        assert_eq!(
            parse(&[(REPEAT, "3")]),
            Ok(None),
            "REPEAT alone schedules nothing"
        );
        let s = |start, period_ms, repeats| {
            Ok(Some(Schedule {
                start,
                period_ms,
                repeats,
            }))
        };
        assert_eq!(parse(&[(DELAY, "500")]), s(Start::After(500), 0, 0));
        assert_eq!(
            parse(&[(DELAY, "0"), (PERIOD, "200"), (REPEAT, "2")]),
            s(Start::After(0), 200, 2)
        );
        assert_eq!(parse(&[(PERIOD, "300")]), s(Start::After(300), 300, 0));
        assert_eq!(
            parse(&[(PERIOD, "300"), (REPEAT, "1")]),
            s(Start::After(300), 300, 1)
        );
        assert_eq!(
            parse(&[(DELAY, "10"), (REPEAT, "5")]),
            s(Start::After(10), 0, 0),
            "repeats without a period would all be due at once: one delivery"
        );
        assert_eq!(parse(&[(TIME, "1234")]), s(Start::At(1234), 0, 0));
        assert_eq!(
            parse(&[(DELAY, "7"), (DELAY, "8")]),
            s(Start::After(7), 0, 0),
            "first value wins"
        );
    }

    #[test]
    fn invalid_values_name_their_header() {
        for (h, v) in [
            (DELAY, "-5"),
            (DELAY, "abc"),
            (DELAY, " 100"),
            (DELAY, "1.5"),
            (DELAY, ""),
            (PERIOD, "-1"),
            (REPEAT, "x"),
            (REPEAT, "-1"),
            (TIME, "soon"),
            (DELAY, "99999999999999999999999"),
        ] {
            let e = parse(&[(h, v), (PERIOD, "10")]).unwrap_err();
            assert_eq!(e.header, h, "{h}:{v}");
        }
        assert_eq!(parse(&[(CRON, "* * * * *")]).unwrap_err().header, CRON);
        assert_eq!(
            parse(&[(TIME, "1"), (DELAY, "1")]).unwrap_err().header,
            TIME
        );
    }

    #[test]
    fn an_occurrence_is_a_new_message_without_the_schedule_headers() {
        let template = Message {
            id: MessageId(7),
            destination: DestinationName::parse("/queue/s").unwrap(),
            headers: headers(&[
                (DELAY, "100"),
                ("x-k", "v"),
                ("timestamp", "1000"),
                (PERIOD, "5"),
            ]),
            body: bytes::Bytes::from_static(b"b"),
            priority: 6,
            persistent: true,
            expires: 61_000,
        };
        let m = occurrence(&template, MessageId(9), 5_000);
        assert_eq!(m.id, MessageId(9));
        assert_eq!(
            m.headers,
            headers(&[("x-k", "v"), (JOB_ID, "7"), ("timestamp", "5000")])
        );
        assert_eq!(m.expires, 65_000, "the TTL counts from delivery");
        assert_eq!((m.priority, m.persistent), (6, true));
        let never = Message {
            expires: 0,
            ..template
        };
        assert_eq!(occurrence(&never, MessageId(10), 5_000).expires, 0);
    }
}
