//! Networks of brokers, first part (issue 11): static store-and-forward bridges between
//! brokers, each its own process on its own ports and data dir. Each test asserts what users
//! see: messages received on the peer, none left (or lost) on the source, none echoed round a
//! loop, across a peer killed with SIGKILL.

mod support;

use std::collections::BTreeSet;

use support::{eventually, unique, Broker, Frame, QUIET, WAIT};

/// A broker named `name` on ports kept across restarts.
fn named(name: &str) -> Broker {
    let mut b = Broker::new(&format!("broker_name = \"{name}\"\n")).on_fixed_ports();
    b.start_again();
    b
}

/// A broker named `name` whose connector `to-peer` forwards `statics` to `peer`, retrying a
/// lost link after 100 ms (at most 500 ms), with `extra` connector settings.
fn bridged(name: &str, peer: &Broker, statics: &[&str], extra: &str) -> Broker {
    let statics: Vec<String> = statics.iter().map(|s| format!("\"{s}\"")).collect();
    let mut b = Broker::new(&format!(
        "broker_name = \"{name}\"\n\n[[network]]\nname = \"to-peer\"\n\
         uri = \"static:(tcp://{})?initialReconnectDelay=100&maxReconnectDelay=500\"\n\
         static_included = [{}]\n{extra}",
        peer.addr(),
        statics.join(",")
    ))
    .on_fixed_ports();
    b.start_again();
    b
}

/// Stored messages of `queue` in `broker`'s SQLite file.
fn stored(broker: &Broker, queue: &str) -> i64 {
    broker
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE destination = ?1",
            [queue],
            |r| r.get(0),
        )
        .expect("count")
}

#[test]
fn a_statically_included_queue_is_forwarded_whole_and_leaves_the_source() {
    let b = named("b");
    let a = bridged("a", &b, &["/queue/orders.>"], "");
    let q = format!("/queue/orders.{}", unique("eu"));
    let mut consumer = b.connect("1.2");
    consumer.subscribe(&q, "s", "client-individual", &[]);
    let mut producer = a.connect("1.2");
    for n in 0..50 {
        producer.send_persistent(&q, &format!("order {n}"), &[("x-n", &n.to_string())]);
    }
    for n in 0..50 {
        let Some(m) = consumer.next_frame(WAIT) else {
            panic!(
                "stuck at {n}\n--- a ---\n{}\n--- b ---\n{}",
                a.log_tail(),
                b.log_tail()
            );
        };
        assert_eq!(m.text(), format!("order {n}"), "in order: {m:?}");
        assert_eq!(m.get("x-n"), Some(n.to_string().as_str()));
        assert_eq!(m.get("persistent"), Some("true"));
        assert_eq!(m.get("destination"), Some(q.as_str()));
        assert_eq!(m.get("stompbox-broker-path"), Some("a"), "{m:?}");
        consumer.ack(&m);
    }
    consumer.expect_silence(QUIET);
    // Each left the source once the peer had it.
    eventually(WAIT, || match stored(&a, &q) {
        0 => Ok(()),
        n => Err(format!("{n} still stored on the source")),
    });
}

#[test]
fn a_peer_killed_in_the_middle_of_the_stream_loses_nothing() {
    let mut b = named("b");
    let a = bridged("a", &b, &["/queue/stream"], "");
    let q = "/queue/stream";
    let mut producer = a.connect("1.2");
    let total = 300;
    let mut watcher = b.connect("1.2");
    watcher.subscribe(
        q,
        "w",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    for n in 0..total {
        producer.send_persistent(q, &format!("m{n}"), &[]);
        if n == 100 {
            // The peer has some: kill it in the middle of the stream.
            let m = watcher.expect_message();
            assert_eq!(m.text(), "m0");
            b.crash_and_restart();
        }
    }
    let mut consumer = b.connect("1.2");
    consumer.subscribe(q, "c", "client-individual", &[]);
    let want: BTreeSet<String> = (0..total).map(|n| format!("m{n}")).collect();
    let mut got = BTreeSet::new();
    let mut deliveries = 0;
    while !want.is_subset(&got) {
        let m = consumer.expect_message();
        deliveries += 1;
        got.insert(m.text());
        consumer.ack(&m);
    }
    // At-least-once: a message forwarded as the link failed may come twice, no more.
    assert!(
        deliveries <= total + 2,
        "{deliveries} deliveries of {total} messages"
    );
    eventually(WAIT, || match stored(&a, q) {
        0 => Ok(()),
        n => Err(format!("{n} still stored on the source")),
    });
}

#[test]
fn two_brokers_forwarding_to_each_other_do_not_echo_a_message() {
    // Each forwards the same queue to the other, with a TTL that would allow a round trip.
    let ports = support::net::free_ports(4);
    let ring = |name: &str, peer: u16, stomp: u16, admin: u16| {
        let mut b = Broker::new(&format!(
            "broker_name = \"{name}\"\n\n[[network]]\nname = \"ring\"\n\
             uri = \"static:(tcp://127.0.0.1:{peer})?initialReconnectDelay=100&maxReconnectDelay=500\"\n\
             static_included = [\"/queue/ring\"]\nnetwork_ttl = 5\n"
        ))
        .on_ports(stomp, admin);
        b.start_again();
        b
    };
    let a = ring("a", ports[2], ports[0], ports[1]);
    let b = ring("b", ports[0], ports[2], ports[3]);
    let mut producer = a.connect("1.2");
    producer.send_persistent("/queue/ring", "once", &[]);
    // A message may rest on either broker (each forwards to the other), but it comes back to
    // no broker it has been on: it is received once, wherever a consumer is.
    let mut on_a = a.connect("1.2");
    let mut on_b = b.connect("1.2");
    on_b.subscribe("/queue/ring", "b", "auto", &[]);
    on_a.subscribe("/queue/ring", "a", "auto", &[]);
    let mut received = Vec::new();
    eventually(WAIT, || {
        for c in [&mut on_a, &mut on_b] {
            if let Some(f) = c.next_frame(QUIET) {
                received.push(f.text());
            }
        }
        match received.len() {
            0 => Err("not received yet".to_string()),
            _ => Ok(()),
        }
    });
    on_a.expect_silence(QUIET);
    on_b.expect_silence(QUIET);
    assert_eq!(received, ["once"], "received once");
}

/// A SEND whose broker path names the broker that receives it came round a loop: it is
/// receipted (the bridge that sent it lets it go) and not delivered.
#[test]
fn a_message_whose_path_names_this_broker_is_receipted_and_dropped() {
    let b = named("b");
    let q = format!("/queue/{}", unique("looped"));
    let mut consumer = b.connect("1.2");
    consumer.subscribe(&q, "s", "auto", &[]);
    let mut c = b.connect("1.2");
    c.request(
        Frame::new("SEND")
            .header("destination", q.as_str())
            .header("stompbox-broker-path", "a,b")
            .body("came round"),
    );
    c.send_sync(&q, "fresh", &[("stompbox-broker-path", "a,c")]);
    assert_eq!(consumer.expect_message().text(), "fresh");
    consumer.expect_silence(QUIET);
    // CONNECTED names the broker, so a bridge knows its peer.
    let mut raw = b.raw();
    let connected = raw.handshake(
        &Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("host", "localhost"),
    );
    assert_eq!(connected.get("broker-name"), Some("b"), "{connected:?}");
}

/// Connectors are checked when the config is read: each mistake is an error naming it.
#[test]
fn network_connector_mistakes_are_config_errors() {
    for (config, names) in [
        (
            "broker_name = \"a\"\n[[network]]\nuri = \"multicast://default\"\nstatic_included = [\"/queue/x\"]\n",
            "uri",
        ),
        (
            "broker_name = \"a\"\n[[network]]\nuri = \"static:(tcp://h:1)\"\n",
            "static_included",
        ),
        (
            "broker_name = \"a,b\"\n[[network]]\nuri = \"static:(tcp://h:1)\"\nstatic_included = [\"/queue/x\"]\n",
            "broker_name",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, config).unwrap();
        let e = stompbox::config::Config::load(&path).expect_err(config);
        assert!(e.to_string().contains(names), "{e} does not name {names}");
    }
}
