//! The SQL of each store request, applied inside the writer's transaction: `writer.rs`
//! decides batching, savepoints, commit and answers; this file decides what one request
//! writes or reads. Runs only on the store writer thread.

use std::collections::HashSet;
use std::sync::Arc;

use log::info;
use rusqlite::{params, Connection, OptionalExtension};

use super::{headers_to_json, message_from_row, Page, Request};
use crate::message::network;
use crate::message::schedule::occurrence;
use crate::message::Kind;
use crate::message::{DestinationName, Message, MessageId, QueueKey, StoredMessage};

/// Applies one request inside the writer's transaction. Returns what a page-in read (None
/// for every other request), for its reply after the commit.
pub(super) fn apply_one(
    tx: &Connection,
    known: &mut Known<'_>,
    req: &Request,
    now: i64,
    epoch: Option<i64>,
) -> Result<Option<Page>, rusqlite::Error> {
    match req {
        Request::Insert { key, message, .. } => insert(tx, known, key, message, now, epoch)?,
        Request::Delete { ids, .. } => {
            let mut stmt = tx.prepare_cached("DELETE FROM messages WHERE message_id = ?1")?;
            for id in ids {
                stmt.execute([id.0 as i64])?;
            }
        }
        Request::Redelivered { id, count } => {
            tx.prepare_cached(
                "UPDATE messages SET redelivery_count = ?2, epoch = ?3 WHERE message_id = ?1",
            )?
            .execute(params![id.0 as i64, *count as i64, epoch])?;
        }
        Request::Move { message, to, .. } => {
            if message.message.persistent {
                record_destination(tx, known, &to.destination, now)?;
                tx.prepare_cached(
                    "UPDATE messages SET destination = ?2, subscription = ?3, headers = ?4,
                            redelivery_count = ?5, epoch = ?6, expires_at = NULL WHERE message_id = ?1",
                )?
                .execute(params![
                    message.message.id.0 as i64,
                    to.destination.as_str(),
                    to.subscription_str(),
                    headers_to_json(&message.message.headers),
                    message.redelivery_count as i64,
                    epoch,
                ])?;
            }
        }
        Request::Commit { sends, deletes, .. } => {
            for (key, m) in sends {
                if m.persistent {
                    insert(tx, known, key, m, now, epoch)?;
                }
            }
            let mut stmt = tx.prepare_cached("DELETE FROM messages WHERE message_id = ?1")?;
            for id in deletes {
                stmt.execute([id.0 as i64])?;
            }
        }
        Request::PageIn {
            key,
            priority,
            after,
            limit,
            ..
        } => {
            let mut stmt = tx.prepare_cached(
                "SELECT message_id, priority, expires_at, redelivery_count, headers, body
                   FROM messages
                  WHERE destination = ?1 AND subscription = ?2 AND priority = ?3
                    AND message_id > ?4
                  ORDER BY message_id LIMIT ?5",
            )?;
            let mut rows = stmt.query(params![
                key.destination.as_str(),
                key.subscription_str(),
                *priority as i64,
                after.0 as i64,
                *limit as i64,
            ])?;
            let mut messages = Vec::with_capacity(*limit);
            while let Some(row) = rows.next()? {
                let headers: String = row.get(4)?;
                let message = message_from_row(
                    key,
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    &headers,
                    row.get(5)?,
                );
                let redelivery_count = row.get::<_, i64>(3)?.max(0) as u32;
                messages.push(StoredMessage {
                    message: Arc::new(message),
                    redelivery_count,
                });
            }
            let exhausted = messages.len() < *limit;
            return Ok(Some(Page {
                messages,
                exhausted,
            }));
        }
        Request::Mark {
            key,
            priority,
            upto,
            ..
        } => {
            tx.prepare_cached(
                "INSERT INTO delivery_marks (destination, subscription, priority, message_id)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (destination, subscription, priority)
                 DO UPDATE SET message_id = max(message_id, excluded.message_id)",
            )?
            .execute(params![
                key.destination.as_str(),
                key.subscription_str(),
                *priority as i64,
                upto.0 as i64
            ])?;
        }
        Request::Schedule {
            pending, message, ..
        } => {
            record_destination(tx, known, &pending.destination, now)?;
            tx.prepare_cached(
                "INSERT INTO scheduled (schedule_id, destination, next_at, period_ms,
                                        repeats_left, priority, expires_at, created_at,
                                        headers, body, epoch)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                pending.id.0 as i64,
                pending.destination.as_str(),
                pending.next_at as i64,
                pending.period_ms as i64,
                pending.repeats_left as i64,
                message.priority as i64,
                (message.expires != 0).then_some(message.expires as i64),
                now,
                headers_to_json(&message.headers),
                &message.body[..],
                epoch,
            ])?;
        }
        Request::Fire {
            schedule,
            now: at,
            id,
            copies,
            next,
            ..
        } => return fire(tx, known, *schedule, *at, *id, copies, *next, now, epoch),
        Request::DurableSubscribe {
            durable,
            topic,
            selector,
            ..
        } => {
            record_destination(tx, known, topic, now)?;
            tx.prepare_cached(
                "INSERT INTO durable_subscriptions (client_id, name, destination, created_at, selector)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (client_id, name)
                 DO UPDATE SET destination = excluded.destination, selector = excluded.selector",
            )?
            .execute(params![
                &*durable.client_id,
                &*durable.name,
                topic.as_str(),
                now,
                selector.as_deref()
            ])?;
        }
        Request::DurableUnsubscribe { durable, topic } => {
            tx.prepare_cached(
                "DELETE FROM durable_subscriptions WHERE client_id = ?1 AND name = ?2",
            )?
            .execute(params![&*durable.client_id, &*durable.name])?;
            tx.prepare_cached("DELETE FROM messages WHERE destination = ?1 AND subscription = ?2")?
                .execute(params![topic.as_str(), &*durable.key()])?;
            forget_marks(tx, topic.as_str(), &durable.key())?;
        }
        Request::Purge { key, keep } => {
            let keep: Vec<i64> = keep.iter().map(|id| id.0 as i64).collect();
            let keep = serde_json::to_string(&keep).unwrap_or_else(|_| "[]".into());
            tx.prepare_cached(
                "DELETE FROM messages WHERE destination = ?1 AND subscription = ?2
                   AND message_id NOT IN (SELECT value FROM json_each(?3))",
            )?
            .execute(params![
                key.destination.as_str(),
                key.subscription_str(),
                keep
            ])?;
        }
        Request::RecordDestination { destination, .. } => {
            record_destination(tx, known, destination, now)?;
        }
        Request::DeleteDestination { key } => {
            tx.prepare_cached("DELETE FROM messages WHERE destination = ?1 AND subscription = ?2")?
                .execute(params![key.destination.as_str(), key.subscription_str()])?;
            forget_marks(tx, key.destination.as_str(), key.subscription_str())?;
            if key.subscription.is_none() {
                tx.prepare_cached("DELETE FROM destinations WHERE name = ?1")?
                    .execute([key.destination.as_str()])?;
                known.remove(key.destination.as_str());
            } else {
                tx.prepare_cached(
                    "DELETE FROM durable_subscriptions
                      WHERE destination = ?1 AND client_id || ':' || name = ?2",
                )?
                .execute(params![key.destination.as_str(), key.subscription_str()])?;
            }
        }
        Request::SweepExpired => {
            let n = tx
                .prepare_cached(
                    "DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                )?
                .execute([now])?;
            if n > 0 {
                info!("store: deleted {n} expired messages");
            }
        }
        Request::ReserveIds { through } => super::ids::record(tx, *through, now, epoch)?,
        Request::Stop => {}
    }
    Ok(None)
}

/// One delivery of a stored schedule (see `Request::Fire`): the row is read, its delivery
/// inserted into each queue of `copies`, and the row moved on or deleted, all in the
/// caller's transaction.
#[allow(clippy::too_many_arguments)]
fn fire(
    tx: &Connection,
    known: &mut Known<'_>,
    schedule: MessageId,
    at: u64,
    id: MessageId,
    copies: &[(QueueKey, MessageId)],
    next: Option<(u64, u64)>,
    now: i64,
    epoch: Option<i64>,
) -> Result<Option<Page>, rusqlite::Error> {
    let row = tx
        .prepare_cached(
            "SELECT destination, priority, expires_at, headers, body
               FROM scheduled WHERE schedule_id = ?1",
        )?
        .query_row([schedule.0 as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })
        .optional()?;
    let Some((destination, priority, expires_at, headers, body)) = row else {
        return Ok(Some(Page::default()));
    };
    let Ok(destination) = crate::message::DestinationName::parse(&destination) else {
        return Ok(Some(Page::default()));
    };
    let mut template = message_from_row(
        &QueueKey::queue(destination),
        schedule.0 as i64,
        priority,
        expires_at,
        &headers,
        body,
    );
    template.persistent = true;
    let message = Arc::new(occurrence(&template, id, at));
    for (key, copy) in copies {
        let m = Message {
            id: *copy,
            ..(*message).clone()
        };
        insert(tx, known, key, &m, now, epoch)?;
    }
    match next {
        Some((next_at, repeats_left)) => {
            tx.prepare_cached(
                "UPDATE scheduled SET next_at = ?2, repeats_left = ?3, epoch = ?4
                  WHERE schedule_id = ?1",
            )?
            .execute(params![
                schedule.0 as i64,
                next_at as i64,
                repeats_left as i64,
                epoch
            ])?;
        }
        None => {
            tx.prepare_cached("DELETE FROM scheduled WHERE schedule_id = ?1")?
                .execute([schedule.0 as i64])?;
        }
    }
    Ok(Some(Page {
        messages: vec![StoredMessage {
            message,
            redelivery_count: 0,
        }],
        exhausted: true,
    }))
}

/// A destination (or durable subscription) is gone: so are its delivery marks.
fn forget_marks(tx: &Connection, destination: &str, subscription: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM delivery_marks WHERE destination = ?1 AND subscription = ?2")?
        .execute(params![destination, subscription])?;
    Ok(())
}

fn insert(
    tx: &Connection,
    known: &mut Known<'_>,
    key: &QueueKey,
    m: &Message,
    now: i64,
    epoch: Option<i64>,
) -> Result<(), rusqlite::Error> {
    record_destination(tx, known, &key.destination, now)?;
    let expires = if m.expires == 0 {
        None
    } else {
        Some(m.expires as i64)
    };
    // A forwarded message marked as a possible duplicate is stored as delivered once, as it
    // is held in memory (`destination::Entry::new`), so it stays marked across a restart.
    let redelivery_count = i64::from(network::arrives_redelivered(&m.headers));
    tx.prepare_cached(
        "INSERT INTO messages (message_id, destination, subscription, priority, expires_at,
                               redelivery_count, created_at, headers, body, epoch, network_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        m.id.0 as i64,
        key.destination.as_str(),
        key.subscription_str(),
        m.priority as i64,
        expires,
        redelivery_count,
        now,
        headers_to_json(&m.headers),
        &m.body[..],
        epoch,
        network::network_id(&m.headers),
    ])?;
    Ok(())
}

fn record_destination(
    tx: &Connection,
    known: &mut Known<'_>,
    destination: &DestinationName,
    now: i64,
) -> Result<(), rusqlite::Error> {
    let name = destination.as_str();
    if known.contains(name) {
        return Ok(());
    }
    let kind = match destination.kind() {
        Kind::Queue => "queue",
        Kind::Topic => "topic",
    };
    tx.prepare_cached(
        "INSERT OR IGNORE INTO destinations (name, kind, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![name, kind, now])?;
    known.insert(name);
    Ok(())
}

/// The destinations that have a `destinations` row as one transaction sees them: the
/// writer's committed set plus what this transaction added, minus what it deleted. The
/// changes reach the writer's set only after the commit, so a rolled-back insert cannot make
/// it claim a row that is not there (later rows of that destination would then be missing
/// from `queue_depths`).
#[derive(Clone)]
pub(super) struct Known<'a> {
    committed: &'a HashSet<String>,
    pub(super) added: HashSet<String>,
    pub(super) removed: HashSet<String>,
}

impl<'a> Known<'a> {
    pub(super) fn new(committed: &'a HashSet<String>) -> Self {
        Known {
            committed,
            added: HashSet::new(),
            removed: HashSet::new(),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.added.contains(name) || (self.committed.contains(name) && !self.removed.contains(name))
    }

    fn insert(&mut self, name: &str) {
        self.removed.remove(name);
        self.added.insert(name.to_string());
    }

    fn remove(&mut self, name: &str) {
        self.added.remove(name);
        self.removed.insert(name.to_string());
    }
}
