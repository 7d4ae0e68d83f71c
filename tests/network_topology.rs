//! Networks of brokers in the shapes users build (issue 11): a line of three, rings of three
//! with a topic subscriber on each, and a network of master/slave pairs. Every broker is its
//! own process on loopback, with its own ports and data dir. The tests assert what users see:
//! each message received exactly once (or, across a kill -9, at least once with a bounded
//! number of duplicates), in order, with the broker path it travelled; rows left in each
//! SQLite file; and each broker's counters, which show whether anything circulated.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use support::broker::START_TIMEOUT;
use support::failover::{assert_all_consumed, spawn_producer, spawn_receipted_consumer};
use support::network::{
    addresses, counter, masterslave_uri, start, static_uri, stored, stored_rows, subscriptions_to,
    Connector,
};
use support::pair::{self, serial, Pair};
use support::{eventually, Broker, Client, QUIET, WAIT};

/// The path header a forwarded message carries: the brokers it passed through, oldest first.
const PATH: &str = "stompbox-broker-path";

// --- a line of three ---------------------------------------------------------------------------

/// a → b → c, each forwarding `/queue/line.>` to the next: a's connector with TTL 2, b's with
/// `ttl_b`. Returns `[a, b, c]`.
fn line(ttl_b: u32) -> [Broker; 3] {
    let at = addresses(3);
    let statics = ["/queue/line.>"];
    let c = start("c", at[2], &[]);
    let b = start(
        "b",
        at[1],
        &[Connector::new("to-c", static_uri(at[2].0), &statics, ttl_b)],
    );
    let a = start(
        "a",
        at[0],
        &[Connector::new("to-b", static_uri(at[1].0), &statics, 2)],
    );
    [a, b, c]
}

/// Persistent and non-persistent messages alternate, so both kinds share the queue's order.
fn persistent(n: usize) -> bool {
    n.is_multiple_of(2)
}

#[test]
fn a_line_of_three_with_ttl_2_delivers_every_message_once_in_order() {
    let [a, b, c] = line(2);
    let q = "/queue/line.orders";
    let total = 200;
    let mut consumer = c.connect("1.2");
    consumer.subscribe(q, "s", "client-individual", &[]);
    let mut producer = a.connect("1.2");
    for n in 0..total {
        let (body, seq) = (format!("m{n}"), n.to_string());
        match persistent(n) {
            true => producer.send_persistent(q, &body, &[("x-seq", &seq)]),
            false => producer.send_sync(q, &body, &[("x-seq", &seq)]),
        }
    }
    for n in 0..total {
        let Some(m) = consumer.next_frame(WAIT) else {
            panic!(
                "message {n} of {total} did not reach c\n--- a ---\n{}\n--- b ---\n{}\n--- c ---\n{}",
                a.log_tail(),
                b.log_tail(),
                c.log_tail()
            );
        };
        assert_eq!(m.command, "MESSAGE", "{m:?}");
        assert_eq!(m.text(), format!("m{n}"), "in the producer's order: {m:?}");
        assert_eq!(m.get(PATH), Some("a,b"), "{m:?}");
        let kind = m.get("persistent") == Some("true");
        assert_eq!(kind, persistent(n), "persistence kept: {m:?}");
        consumer.ack(&m);
    }
    // Exactly once: nothing more comes.
    consumer.expect_silence(QUIET);
    // Each left a, and then b, once the next broker had it; c deleted it on the ACK.
    eventually(WAIT, || {
        let rows = [stored_rows(&a), stored_rows(&b), stored(&c, q)];
        match rows {
            [0, 0, 0] => Ok(()),
            _ => Err(format!("rows stored on a, b, c: {rows:?}")),
        }
    });
}

#[test]
fn with_ttl_1_on_the_second_hop_messages_from_the_first_broker_stay_on_the_middle_one() {
    let [a, b, c] = line(1);
    let q = "/queue/line.local";
    let total = 20;
    let mut on_c = c.connect("1.2");
    on_c.subscribe(q, "s", "auto", &[]);
    let mut producer = a.connect("1.2");
    for n in 0..total {
        producer.send_persistent(q, &format!("from a {n}"), &[]);
    }
    // They crossed one hop: off a, stored on b.
    eventually(WAIT, || match (stored(&a, q), stored(&b, q)) {
        (0, n) if n == total as i64 => Ok(()),
        rows => Err(format!("rows on a, b: {rows:?}")),
    });
    // b's bridge to c works: a message sent on b (no hop yet) reaches c; a's do not.
    let mut on_b = b.connect("1.2");
    on_b.send_persistent(q, "from b", &[]);
    let m = on_c.expect_message();
    assert_eq!((m.text().as_str(), m.get(PATH)), ("from b", Some("b")));
    on_c.expect_silence(QUIET);
    assert_eq!(stored(&b, q), total as i64, "a's messages stay on b");
    // A consumer on b gets them, in order.
    on_b.subscribe(q, "s", "auto", &[]);
    let got = on_b.receive(total, WAIT);
    for (n, m) in got.iter().enumerate() {
        assert_eq!(m.text(), format!("from a {n}"));
        assert_eq!(m.get(PATH), Some("a"), "{m:?}");
    }
    on_b.expect_silence(QUIET);
    on_c.expect_silence(QUIET);
}

// --- rings of three, a topic subscriber on each -------------------------------------------------

/// Messages each broker publishes in a ring test.
const PER_BROKER: usize = 50;

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Subscribes once on each broker, waits until every bridge subscribed too (each broker's
/// topic has `1 + bridges_out` consumers), publishes [`PER_BROKER`] messages on each, and
/// checks that each subscriber got each message exactly once with the path `path(from, to)`,
/// and that each broker's topic counted exactly what was published on it plus one copy from
/// each other broker, then and after a quiet period.
fn publish_on_each_and_count(
    brokers: &[Broker; 3],
    topic: &str,
    bridges_out: u64,
    path: impl Fn(usize, usize) -> Option<String>,
) {
    let mut subscribers: Vec<Client> = brokers
        .iter()
        .map(|b| {
            let mut c = b.connect("1.2");
            c.subscribe(topic, "s", "auto", &[]);
            c
        })
        .collect();
    // A bridge is a plain topic subscriber: what is published before it subscribed is not
    // forwarded. Its subscription exists once both its links are up.
    for (i, b) in brokers.iter().enumerate() {
        eventually(WAIT, || match counter(b, topic, "consumers") {
            Some(n) if n == 1 + bridges_out => Ok(()),
            n => Err(format!("{}: consumers of {topic}: {n:?}", NAMES[i])),
        });
    }
    for (i, b) in brokers.iter().enumerate() {
        let mut producer = b.connect("1.2");
        for k in 0..PER_BROKER {
            producer.send_sync(topic, &format!("{}-{k}", NAMES[i]), &[]);
        }
    }
    let total = PER_BROKER * brokers.len();
    for (to, s) in subscribers.iter_mut().enumerate() {
        let got = s.receive(total, WAIT);
        let mut next_from: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &got {
            let body = m.text();
            let (origin, k) = body.split_once('-').expect("origin-k");
            let from = NAMES.iter().position(|n| *n == origin).expect("origin");
            let expected = next_from.entry(NAMES[from]).or_default();
            assert_eq!(
                k,
                expected.to_string(),
                "{}: {origin}'s messages once each, in order",
                NAMES[to]
            );
            *expected += 1;
            assert_eq!(
                m.get(PATH).map(str::to_string),
                path(from, to),
                "{} received {m:?}",
                NAMES[to]
            );
        }
        assert!(
            next_from.values().all(|&n| n == PER_BROKER),
            "{}: {next_from:?}",
            NAMES[to]
        );
    }
    let enqueued = |what: &str| {
        for (i, b) in brokers.iter().enumerate() {
            assert_eq!(
                counter(b, topic, "enqueued"),
                Some(total as u64),
                "{what}: {}'s {topic} counted its own {PER_BROKER} and {PER_BROKER} from each \
                 other broker, once",
                NAMES[i]
            );
        }
    };
    enqueued("right after the run");
    // Nothing circulates: a while later no broker counted or delivered anything more.
    for s in &mut subscribers {
        s.expect_silence(QUIET * 3);
    }
    enqueued("after a quiet period");
}

/// The wiring ActiveMQ's docs suggest for a small cluster: every broker with a connector to
/// each of the others (here: both neighbours of the ring), `networkTTL` 1. A message makes
/// one hop from where it was published, so each subscriber gets it once.
#[test]
fn a_ring_of_three_connected_both_ways_with_ttl_1_delivers_each_message_once() {
    let topic = "/topic/ring.mesh";
    let at = addresses(3);
    let brokers = [0, 1, 2].map(|i| {
        let connectors: Vec<Connector> = [(i + 1) % 3, (i + 2) % 3]
            .iter()
            .map(|&j| {
                let name = format!("to-{}", NAMES[j]);
                Connector::new(&name, static_uri(at[j].0), &[topic], 1)
            })
            .collect();
        start(NAMES[i], at[i], &connectors)
    });
    publish_on_each_and_count(&brokers, topic, 2, |from, to| {
        (from != to).then(|| NAMES[from].to_string())
    });
}

/// A one-way ring a → b → c → a with `network_ttl` 2: a message reaches the two other brokers
/// and stops, both because of the TTL and because the third hop would go back to a broker
/// on its path.
#[test]
fn a_one_way_ring_of_three_with_ttl_2_delivers_each_message_once() {
    let topic = "/topic/ring.oneway";
    let at = addresses(3);
    let brokers = [0, 1, 2].map(|i| {
        let next = (i + 1) % 3;
        let name = format!("to-{}", NAMES[next]);
        start(
            NAMES[i],
            at[i],
            &[Connector::new(&name, static_uri(at[next].0), &[topic], 2)],
        )
    });
    publish_on_each_and_count(&brokers, topic, 1, |from, to| match (to + 3 - from) % 3 {
        0 => None,
        1 => Some(NAMES[from].to_string()),
        _ => Some(format!("{},{}", NAMES[from], NAMES[(from + 1) % 3])),
    });
}

// --- a network of master/slave pairs ----------------------------------------------------------

/// Duplicates a kill -9 of the peer's master may cause with the one-message bridge of today:
/// the SEND in flight (stored by the old master, its RECEIPT lost), plus the one message the
/// consumer held unacknowledged (prefetch 1, receipted ACKs).
const DUPLICATES_PER_KILL: u64 = 2;

/// Broker a forwards a queue to the pair b (`masterslave:`); a producer streams receipted
/// persistent SENDs into a, a consumer takes them from the pair. kill -9 of b's master in the
/// middle of the stream: the standby takes over, the bridge finds it, the stream resumes and
/// every receipted message is consumed.
#[test]
fn a_bridge_to_a_master_slave_pair_follows_a_kill9_failover_and_loses_nothing() {
    let _serial = serial();
    let mut b = Pair::start(Some("broker_name = \"b\"\n"));
    let dest = "/queue/pairs.stream";
    let at = addresses(1);
    let a = start(
        "a",
        at[0],
        &[Connector::new(
            "to-b",
            masterslave_uri(&b.stomp_addrs()),
            &[dest],
            1,
        )],
    );
    let mut producer = spawn_producer(vec![a.addr()], dest);
    let mut consumer = spawn_receipted_consumer(b.stomp_addrs(), dest);
    producer.wait_distinct(100, pair::WAIT, "100 receipts from a");
    consumer.wait_distinct(30, pair::WAIT, "30 messages through b's master");

    b.brokers[0].kill9();
    b.brokers[1].wait_master(pair::WAIT);
    let (sent, consumed) = (producer.progress.distinct(), consumer.progress.distinct());
    producer.wait_distinct(sent + 100, pair::WAIT, "100 more receipts from a");
    consumer.wait_distinct(
        consumed + 100,
        pair::WAIT,
        "100 more messages through the new master",
    );
    producer.stop();

    let duplicates = assert_all_consumed(&producer, &consumer, pair::WAIT);
    consumer.stop();
    assert!(
        duplicates <= DUPLICATES_PER_KILL,
        "{duplicates} duplicate deliveries across one failover (at most {DUPLICATES_PER_KILL})"
    );
    // Store-and-forward: nothing left on a; b deleted each on its committed ACK.
    eventually(WAIT, || {
        match (stored_rows(&a), stored(&b.brokers[1], dest)) {
            (0, 0) => Ok(()),
            rows => Err(format!("rows on a, b: {rows:?}")),
        }
    });
}

// --- the examples in config/network -------------------------------------------------------------

/// The example configs, by file name.
fn examples() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/network");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).expect("read example");
            (name, text)
        })
        .collect()
}

/// The examples' loopback ports (`127.0.0.1:PORT`), each mapped to a free port, so a test can
/// run them side by side with other tests.
fn free_ports_for(examples: &BTreeMap<String, String>) -> BTreeMap<u16, u16> {
    let mut ports: Vec<u16> = examples
        .values()
        .flat_map(|text| text.split("127.0.0.1:").skip(1))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .iter()
        .copied()
        .zip(support::net::free_ports(ports.len()))
        .collect()
}

/// `text` with every `127.0.0.1:PORT` moved to its port in `map`.
fn moved(text: &str, map: &BTreeMap<u16, u16>) -> String {
    let mut out = text.to_string();
    // Longest first is not needed: every port here has five digits.
    for (from, to) in map {
        out = out.replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"));
    }
    out
}

/// An example broker on the free ports `map` gives its `bind` and `admin.bind` (the flags
/// override the file's `bind`, `admin.bind` and `data_dir`, so it runs in a temp dir).
fn start_example(name: &str, text: &str, map: &BTreeMap<u16, u16>) -> Broker {
    let (stomp, admin) = example_ports(name, text, map);
    let mut b = Broker::new(&moved(text, map)).on_ports(stomp, admin);
    b.start_again();
    b
}

/// The free ports that replace an example's STOMP and admin ports.
fn example_ports(name: &str, text: &str, map: &BTreeMap<u16, u16>) -> (u16, u16) {
    let binds: Vec<u16> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("bind = \"127.0.0.1:"))
        .filter_map(|rest| rest.trim_end_matches('"').parse().ok())
        .collect();
    let [stomp, admin] = binds[..] else {
        panic!("{name}: expected a bind and an admin.bind, got {binds:?}");
    };
    (map[&stomp], map[&admin])
}

/// Every example is what `stompbox check-config` accepts, has a connector, and is explained
/// in the folder's README.
#[test]
fn every_example_in_config_network_passes_check_config() {
    let all = examples();
    assert!(
        all.len() >= 9,
        "hub and spokes, two sites, two pairs: {all:?}"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/network");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("config/network/README.md");
    for name in all.keys() {
        let out = Command::new(env!("CARGO_BIN_EXE_stompbox"))
            .arg("check-config")
            .arg(dir.join(name))
            .output()
            .expect("run stompbox check-config");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(": ok"), "{name}: {stderr}");
        assert!(stdout.contains("[[network]]"), "{name} has no connector");
        assert!(
            readme.contains(name.as_str()),
            "README.md does not mention {name}"
        );
    }
}

/// `hub.toml`, `spoke-1.toml`, `spoke-2.toml` do what the README says: orders sent on a spoke
/// are consumed at the hub, prices published at the hub reach both spokes, and events
/// published on a spoke reach the hub and the other spoke, once each.
#[test]
fn the_hub_and_spokes_example_forwards_orders_in_prices_out_events_everywhere() {
    let all = examples();
    let map = free_ports_for(&all);
    let [hub, spoke1, spoke2] =
        ["hub.toml", "spoke-1.toml", "spoke-2.toml"].map(|n| start_example(n, &all[n], &map));

    let subscribe = |b: &Broker, topic: &str| {
        let mut c = b.connect("1.2");
        c.subscribe(topic, "s", "auto", &[]);
        c
    };
    let prices = "/topic/prices.eur";
    let events = "/topic/events.deploy";
    let mut prices_at = [&spoke1, &spoke2].map(|b| subscribe(b, prices));
    let mut events_at = [&hub, &spoke1, &spoke2].map(|b| subscribe(b, events));
    let mut prices_at_hub = subscribe(&hub, prices);
    // Topics are forwarded to bridges that subscribed: wait for the bridges' subscriptions
    // (the hub has one bridge per spoke, each spoke one to the hub). The examples keep
    // ActiveMQ's reconnect schedule (1 s, doubling), so a bridge that started before its peer
    // retries some seconds later.
    for (b, pattern, bridges) in [
        (&hub, "/topic/prices.>", 2),
        (&hub, "/topic/events.>", 2),
        (&spoke1, "/topic/events.>", 1),
        (&spoke2, "/topic/events.>", 1),
    ] {
        eventually(START_TIMEOUT, || match subscriptions_to(b, pattern) {
            n if n == bridges => Ok(()),
            n => Err(format!("{n} bridge subscriptions to {pattern}")),
        });
    }

    spoke1
        .connect("1.2")
        .send_persistent("/queue/orders.eu", "order 1", &[]);
    spoke2
        .connect("1.2")
        .send_persistent("/queue/orders.us", "order 2", &[]);
    let mut orders = hub.connect("1.2");
    orders.subscribe("/queue/orders.>", "o", "auto", &[]);
    let mut got: Vec<String> = orders.receive(2, WAIT).iter().map(|m| m.text()).collect();
    got.sort();
    assert_eq!(got, ["order 1", "order 2"]);

    hub.connect("1.2").send_sync(prices, "1.08", &[]);
    for s in &mut prices_at {
        let m = s.expect_message();
        assert_eq!((m.text().as_str(), m.get(PATH)), ("1.08", Some("hub")));
    }
    prices_at_hub.expect_body("1.08");

    spoke1.connect("1.2").send_sync(events, "v2", &[]);
    let paths: Vec<Option<String>> = events_at
        .iter_mut()
        .map(|s| {
            let m = s.expect_message();
            assert_eq!(m.text(), "v2");
            m.get(PATH).map(str::to_string)
        })
        .collect();
    assert_eq!(
        paths,
        [Some("spoke-1".into()), None, Some("spoke-1,hub".into())],
        "hub, spoke-1, spoke-2"
    );
    for s in events_at.iter_mut().chain(&mut prices_at) {
        s.expect_silence(QUIET);
    }
    orders.expect_silence(QUIET);
    // One copy of the event on each broker: nothing came back round.
    for b in [&hub, &spoke1, &spoke2] {
        assert_eq!(counter(b, events, "enqueued"), Some(1), "{}", b.log_tail());
    }
}

/// Duplicates a kill -9 of the source broker's master may cause: the producer's SEND in flight
/// (stored, its RECEIPT lost, sent again to the new master), the bridge's SEND in flight, the
/// message whose ACK the bridge had written but the killed master not yet committed, and the
/// consumer's one unacknowledged message. Before the bridge wrote each ACK at once, ACKs
/// waited in its client's buffer behind up to `prefetch` buffered messages, and such a kill
/// (or a link reset) duplicated dozens.
const DUPLICATES_PER_SOURCE_KILL: u64 = 4;

/// The network of pairs example (`pair-a-*.toml`, `pair-b-*.toml`): four brokers, two data
/// dirs. A producer streams receipted persistent SENDs into pair a, a consumer takes them from
/// pair b; kill -9 of b's master, then of a's master, each in the middle of the stream: every
/// receipted message is consumed.
///
/// Duplicates: the kill of b's master (the peer) may duplicate [`DUPLICATES_PER_KILL`]; the
/// kill of a's master (the source) [`DUPLICATES_PER_SOURCE_KILL`].
#[test]
fn the_network_of_pairs_example_survives_a_kill9_of_each_master() {
    let _serial = serial();
    let all = examples();
    // Both brokers of a pair run one config (the flags set what differs: their ports).
    for (one, two) in [
        ("pair-a-1.toml", "pair-a-2.toml"),
        ("pair-b-1.toml", "pair-b-2.toml"),
    ] {
        let differ: Vec<(&str, &str)> = all[one]
            .lines()
            .zip(all[two].lines())
            .filter(|(x, y)| x != y)
            .collect();
        assert!(
            differ.iter().all(|(x, _)| x.starts_with("bind = ")),
            "{one} and {two} differ in more than their ports: {differ:?}"
        );
    }
    let map = free_ports_for(&all);
    let start_pair = |one: &str, two: &str| {
        let ports = [one, two].map(|n| example_ports(n, &all[n], &map));
        Pair::start_on_ports(Some(&moved(&all[one], &map)), ports)
    };
    let mut a = start_pair("pair-a-1.toml", "pair-a-2.toml");
    let mut b = start_pair("pair-b-1.toml", "pair-b-2.toml");
    let dest = "/queue/to-b.stream";
    let mut producer = spawn_producer(a.stomp_addrs(), dest);
    let mut consumer = spawn_receipted_consumer(b.stomp_addrs(), dest);
    producer.wait_distinct(100, pair::WAIT, "100 receipts from pair a");
    consumer.wait_distinct(30, pair::WAIT, "30 messages through pair b");

    for (side, name) in [(&mut b, "b"), (&mut a, "a")] {
        side.brokers[0].kill9();
        side.brokers[1].wait_master(pair::WAIT);
        let (sent, consumed) = (producer.progress.distinct(), consumer.progress.distinct());
        producer.wait_distinct(
            sent + 100,
            pair::WAIT,
            &format!("100 more receipts after {name}'s failover"),
        );
        consumer.wait_distinct(
            consumed + 100,
            pair::WAIT,
            &format!("100 more messages after {name}'s failover"),
        );
        if name == "b" {
            let duplicates: u64 = consumer
                .progress
                .counts()
                .values()
                .map(|&n| u64::from(n - 1))
                .sum();
            assert!(
                duplicates <= DUPLICATES_PER_KILL,
                "{duplicates} duplicate deliveries across the peer's failover (at most \
                 {DUPLICATES_PER_KILL})"
            );
        }
    }
    producer.stop();
    let duplicates = assert_all_consumed(&producer, &consumer, pair::WAIT);
    consumer.stop();
    let bound = DUPLICATES_PER_KILL + DUPLICATES_PER_SOURCE_KILL;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicate deliveries across the two failovers (at most {bound})"
    );
    eventually(WAIT, || {
        match (stored_rows(&a.brokers[1]), stored(&b.brokers[1], dest)) {
            (0, 0) => Ok(()),
            rows => Err(format!("rows on pair a, pair b: {rows:?}")),
        }
    });
}
