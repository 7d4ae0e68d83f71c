//! The SQLite schema: part of the user interface. Operators read it with `sqlite3`, so
//! tables and columns have plain names, headers are JSON text (`json_extract(headers,
//! '$.type')` works), and views answer the common questions. `docs/sqlite.md` documents it.
//!
//! Migrations are numbered by `PRAGMA user_version`; each runs in its own transaction, so a
//! failed one leaves the file as it was.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: destinations, messages, durable subscriptions, operator views.
    r#"
    CREATE TABLE destinations (
        name        TEXT PRIMARY KEY,              -- '/queue/orders', '/topic/news'
        kind        TEXT NOT NULL CHECK (kind IN ('queue', 'topic')),
        created_at  INTEGER NOT NULL               -- ms since the epoch
    );

    CREATE TABLE durable_subscriptions (
        client_id   TEXT NOT NULL,                 -- CONNECT client-id
        name        TEXT NOT NULL,                 -- activemq.subscriptionName
        destination TEXT NOT NULL,                 -- the topic
        selector    TEXT,                          -- its JMS selector, if any
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (client_id, name)
    );

    -- One row per stored message per queue; a durable subscription holds its own copy
    -- (subscription = 'client_id:name'), as each durable subscription is a queue of its own.
    CREATE TABLE messages (
        message_id       INTEGER PRIMARY KEY,      -- the message-id clients see
        destination      TEXT NOT NULL,
        subscription     TEXT NOT NULL DEFAULT '', -- '' for queues
        priority         INTEGER NOT NULL DEFAULT 4 CHECK (priority BETWEEN 0 AND 9),
        expires_at       INTEGER,                  -- ms since the epoch; NULL = never
        redelivery_count INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,         -- ms since the epoch
        headers          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(headers)),
        body             BLOB NOT NULL
    );
    -- Dispatch order: highest priority first, then arrival.
    CREATE INDEX messages_dispatch_order
        ON messages (destination, subscription, priority DESC, message_id);
    CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;

    CREATE VIEW queue_depths AS
        SELECT d.name                              AS destination,
               coalesce(m.subscription, '')       AS subscription,
               count(m.message_id)                 AS messages,
               coalesce(sum(length(m.body)), 0)    AS bytes,
               datetime(min(m.created_at) / 1000, 'unixepoch') AS oldest
          FROM destinations d
          LEFT JOIN messages m ON m.destination = d.name
         WHERE d.kind = 'queue' OR m.message_id IS NOT NULL
         GROUP BY d.name, m.subscription;

    CREATE VIEW dead_letters AS
        SELECT message_id,
               destination                                   AS dlq,
               json_extract(headers, '$.original-destination') AS original_destination,
               json_extract(headers, '$.dlqDeliveryFailureCause') AS reason,
               redelivery_count,
               datetime(created_at / 1000, 'unixepoch')     AS created,
               headers,
               body
          FROM messages
         WHERE destination LIKE '/queue/ActiveMQ.DLQ%';
    "#,
    // 2: the master/slave lease, and the epoch of the master that wrote each message row.
    r#"
    CREATE TABLE broker_lease (
        id            INTEGER PRIMARY KEY CHECK (id = 1),  -- exactly one row
        holder        TEXT,             -- the serving master's name; NULL when free
        epoch         INTEGER NOT NULL DEFAULT 0,  -- bumped by every takeover (fencing token)
        acquired_at   INTEGER,          -- ms since the epoch
        expires_at    INTEGER,          -- ms since the epoch; renewed every renew_interval
        host          TEXT,
        pid           INTEGER,
        admin_address TEXT,
        stomp_address TEXT
    );
    INSERT INTO broker_lease (id, epoch) VALUES (1, 0);
    ALTER TABLE messages ADD COLUMN epoch INTEGER;  -- lease epoch of the master that wrote it
    "#,
    // 3: whether the lease holder also holds the OS file lock (stompbox.lock). Only then does
    // a standby that gets that lock know the holder is gone.
    r#"
    ALTER TABLE broker_lease ADD COLUMN file_lock INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: delivery marks. Before a queue hands a stored message to a consumer for the first
    // time, it records that every message of its (destination, subscription, priority) with
    // an id up to `message_id` may have been delivered. After a crash, the next start marks
    // those rows redelivered (redelivery_count 1) and clears the marks.
    r#"
    CREATE TABLE delivery_marks (
        destination  TEXT NOT NULL,
        subscription TEXT NOT NULL DEFAULT '',
        priority     INTEGER NOT NULL,
        message_id   INTEGER NOT NULL,             -- messages up to here may have been delivered
        PRIMARY KEY (destination, subscription, priority)
    );
    "#,
    // 5: scheduled delivery (AMQ_SCHEDULED_*). A persistent scheduled SEND is a row here, not
    // in `messages`, until it is due: page-ins and `queue_depths` never see it early. Each
    // delivery inserts a new `messages` row and moves `next_at` on (or deletes the row after
    // the last) in one transaction, so a crash neither loses nor repeats a delivery.
    r#"
    CREATE TABLE scheduled (
        schedule_id  INTEGER PRIMARY KEY,          -- the SEND's message id (scheduledJobId)
        destination  TEXT NOT NULL,                -- '/queue/orders', '/topic/news'
        next_at      INTEGER NOT NULL,             -- next delivery, ms since the epoch
        period_ms    INTEGER NOT NULL DEFAULT 0,   -- between deliveries
        repeats_left INTEGER NOT NULL DEFAULT 0 CHECK (repeats_left >= 0),  -- after the next
        priority     INTEGER NOT NULL DEFAULT 4 CHECK (priority BETWEEN 0 AND 9),
        expires_at   INTEGER,                      -- as the SEND gave it; NULL = never
        created_at   INTEGER NOT NULL,             -- ms since the epoch
        headers      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(headers)),
        body         BLOB NOT NULL,
        epoch        INTEGER                       -- lease epoch of the master that wrote it
    );
    CREATE INDEX scheduled_next ON scheduled (next_at);

    CREATE VIEW scheduled_messages AS
        SELECT destination,
               schedule_id                                          AS message_id,
               strftime('%Y-%m-%dT%H:%M:%fZ', next_at / 1000.0, 'unixepoch') AS next_delivery,
               next_at                                              AS next_delivery_ms,
               period_ms,
               repeats_left,
               length(body)                                         AS body_bytes
          FROM scheduled
         ORDER BY next_at;
    "#,
    // 6: the network duplicate filter. `network_id` is a forwarded message's
    // stompbox-network-id header ('<broker>:<message-id>' on the broker it came from), kept
    // in a column of its own so that a restarted broker rebuilds its audit from the rows that
    // have one (the partial index) without reading every row's headers. Rows stored before
    // get theirs from their headers.
    r#"
    ALTER TABLE messages ADD COLUMN network_id TEXT;
    UPDATE messages SET network_id = json_extract(headers, '$."stompbox-network-id"')
     WHERE json_extract(headers, '$."stompbox-network-id"') IS NOT NULL;
    CREATE INDEX messages_network_id ON messages (network_id) WHERE network_id IS NOT NULL;
    "#,
    // 7: message ids never repeat (`ids.rs`). Most ids are never stored (consumed messages'
    // rows are deleted, non-persistent messages have none), so the largest stored id does not
    // say where a broker's ids stopped. A master records here, before it hands out any, the
    // id up to which it may hand them out, and moves it ahead while it runs; the next master
    // (after a restart or a fail-over) continues above it. 0 until a master first starts.
    r#"
    CREATE TABLE message_ids (
        id               INTEGER PRIMARY KEY CHECK (id = 1),  -- exactly one row
        reserved_through INTEGER NOT NULL CHECK (reserved_through >= 0),  -- ids up to here may be in use
        reserved_at      INTEGER,                      -- ms since the epoch
        epoch            INTEGER                       -- lease epoch of the master that recorded it
    );
    INSERT INTO message_ids (id, reserved_through) VALUES (1, 0);
    "#,
];

/// Applies every migration newer than the file's `user_version`.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    apply(conn, MIGRATIONS)
}

/// Applies `migrations` (exposed separately so tests can run a failing one). Each step takes
/// the write lock first and re-reads the version inside its transaction, so two brokers
/// starting together on a new file (a master/slave pair) migrate it once.
pub fn apply(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    for (i, sql) in migrations.iter().enumerate() {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let current = usize::try_from(current).unwrap_or(0);
        if current > migrations.len() {
            return Err(StoreError::TooNew {
                found: current,
                known: migrations.len(),
            });
        }
        if current > i {
            continue;
        }
        tx.execute_batch(sql).map_err(|e| StoreError::Migration {
            version: i + 1,
            source: e,
        })?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_file_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM queue_depths", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM scheduled_messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_failed_migration_rolls_back() {
        let mut conn = Connection::open_in_memory().unwrap();
        let bad = [
            "CREATE TABLE a (x INTEGER);",
            "CREATE TABLE b (y INTEGER); SELECT nonsense FROM nowhere;",
        ];
        let err = apply(&mut conn, &bad).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 2, .. }),
            "{err}"
        );
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
        let b: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b, 0, "table b must not survive the failed migration");
    }

    /// A file written before migration 6 gets `network_id` from its rows' headers.
    #[test]
    fn migration_6_fills_network_id_from_headers() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, &MIGRATIONS[..5]).unwrap();
        conn.execute_batch(
            r#"INSERT INTO messages (message_id, destination, created_at, headers, body)
               VALUES (1, '/queue/q', 0, '{"stompbox-network-id":"a:7"}', x''),
                      (2, '/queue/q', 0, '{"type":"plain"}', x'');"#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let ids: Vec<Option<String>> = conn
            .prepare("SELECT network_id FROM messages ORDER BY message_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [Some("a:7".to_string()), None]);
    }

    #[test]
    fn refuses_a_file_from_a_newer_broker() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
