//! Message ids never repeat on one store, end to end against the built binary: not after a
//! clean stop, not after kill -9, not after a master/slave fail-over, even when nothing is
//! stored (every message consumed, or never persistent), so the largest stored id says nothing
//! about where ids stopped. A client that deduplicates by `message-id` (an idempotent
//! consumer) would otherwise drop a new message as a copy of an old one.

mod support;

use std::collections::HashMap;

use support::pair::{serial, Pair, WAIT as PAIR_WAIT};
use support::store::count;
use support::{eventually, Broker, Client, WAIT};

/// Messages of each kind (persistent to a queue, non-persistent to a queue, to a topic) one
/// round sends.
const PER_KIND: usize = 20;

/// One round on a connected broker: sends [`PER_KIND`] messages of each kind, receives every
/// one (auto-ack), waits until nothing is stored, and returns the `message-id`s it saw.
fn round(mut c: Client, db: &rusqlite::Connection, label: &str) -> Vec<String> {
    c.subscribe("/queue/ids", "q", "auto", &[]);
    c.subscribe("/topic/ids", "t", "auto", &[]);
    for i in 0..PER_KIND {
        c.send_persistent("/queue/ids", &format!("{label}-p{i}"), &[]);
        c.send_sync("/queue/ids", &format!("{label}-n{i}"), &[]);
        c.send_sync("/topic/ids", &format!("{label}-t{i}"), &[]);
    }
    let ids: Vec<String> = c
        .receive(3 * PER_KIND, WAIT)
        .iter()
        .map(|m| m.must("message-id").to_string())
        .collect();
    c.disconnect();
    // The auto-acked persistent messages are deleted in the background.
    eventually(WAIT, || {
        match count(db, "SELECT count(*) FROM messages", []) {
            0 => Ok(()),
            n => Err(format!("{n} messages still stored")),
        }
    });
    ids
}

/// Fails the test if any id of `rounds` was seen in two of them (or twice in one).
#[track_caller]
fn assert_never_repeated(rounds: &[(&str, Vec<String>)]) {
    let mut first_seen: HashMap<&str, &str> = HashMap::new();
    for (label, ids) in rounds {
        assert_eq!(ids.len(), 3 * PER_KIND, "{label}: every message received");
        for id in ids {
            if let Some(before) = first_seen.insert(id, label) {
                panic!(
                    "message-id {id} seen in {before:?} was handed out again in {label:?}; \
                     ids per round: {rounds:?}"
                );
            }
        }
    }
}

#[test]
fn ids_are_not_reused_after_a_clean_stop_or_kill_9() {
    let mut broker = Broker::start();
    let db = broker.db();
    let first = round(broker.connect("1.2"), &db, "first");
    drop(db);

    broker.restart();
    let db = broker.db();
    let after_stop = round(broker.connect("1.2"), &db, "after SIGTERM");
    drop(db);

    broker.crash_and_restart();
    let db = broker.db();
    let after_kill = round(broker.connect("1.2"), &db, "after kill -9");

    assert_never_repeated(&[
        ("first", first),
        ("after SIGTERM", after_stop),
        ("after kill -9", after_kill),
    ]);
}

#[test]
fn ids_are_not_reused_by_the_standby_after_a_fail_over() {
    let _serial = serial();
    let mut pair = Pair::start(None);
    let db = pair.db();
    let first = round(pair.brokers[0].connect("1.2"), &db, "master a");

    // kill -9 of the master: b takes over.
    pair.brokers[0].kill9();
    pair.brokers[1].wait_master(PAIR_WAIT);
    let after_kill = round(pair.brokers[1].connect("1.2"), &db, "b after kill -9 of a");

    // a comes back as the standby; a clean stop of b hands the store back to it.
    pair.brokers[0].spawn();
    pair.brokers[0].wait_not_master(PAIR_WAIT);
    assert!(pair.brokers[1].terminate().success(), "b stops cleanly");
    pair.brokers[0].wait_master(PAIR_WAIT);
    let after_stop = round(pair.brokers[0].connect("1.2"), &db, "a after b stopped");

    assert_never_repeated(&[
        ("master a", first),
        ("b after kill -9 of a", after_kill),
        ("a after b stopped", after_stop),
    ]);
}
