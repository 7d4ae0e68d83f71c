//! Networks of brokers, first part (issue 11): static store-and-forward bridges between
//! brokers, each its own process on its own ports and data dir. Each test asserts what users
//! see: messages received on the peer, none left (or lost) on the source, none echoed round a
//! loop, across a peer killed with SIGKILL.

mod support;

use std::collections::BTreeSet;

use support::network::{counter, stored, subscriptions_to};
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
        // Nothing twice unless marked: the peer's duplicate filter drops the resent copies
        // of what it had stored (rebuilt from its store after the kill).
        assert!(
            got.insert(m.text()) || m.get("redelivered") == Some("true"),
            "a second, unmarked copy: {m:?}"
        );
        consumer.ack(&m);
    }
    consumer.expect_silence(QUIET);
    assert_eq!(deliveries, total, "each message once");
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
            "broker_name = \"a\"\n[[network]]\nuri = \"static:(tcp://h:1)\"\ndemand = false\n",
            "static_included",
        ),
        (
            "broker_name = \"a\"\n[[network]]\nuri = \"static:(tcp://h:1)\"\nexcluded = [\"/bogus/orders\"]\n",
            "excluded",
        ),
        (
            "broker_name = \"a,b\"\n[[network]]\nuri = \"static:(tcp://h:1)\"\nstatic_included = [\"/queue/x\"]\n",
            "broker_name",
        ),
        (
            "broker_name = \"site a\"\n[[network]]\nuri = \"static:(tcp://h:1)\"\nstatic_included = [\"/queue/x\"]\n",
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

/// The number `field` of `destination` in `broker`'s `/api/destinations` (0 when unlisted).
fn stat(broker: &Broker, destination: &str, field: &str) -> u64 {
    counter(broker, destination, field).unwrap_or(0)
}

#[test]
fn demand_moves_a_queue_only_while_the_peer_has_a_consumer_for_it() {
    let b = named("b");
    let a = bridged("a", &b, &[], "");
    let q = format!("/queue/{}", unique("demand"));
    let mut producer = a.connect("1.2");
    for n in 0..20 {
        producer.send_persistent(&q, &format!("early {n}"), &[]);
    }
    // No consumer on B: nothing crosses.
    std::thread::sleep(QUIET * 2);
    assert_eq!(stored(&a, &q), 20, "all still on the source");
    assert_eq!(stat(&b, &q, "enqueued"), 0, "nothing reached the peer");
    // A consumer appears on B: what waits, and what follows, flows to it.
    let mut consumer = b.connect("1.2");
    consumer.subscribe(&q, "c", "client-individual", &[]);
    for n in 0..20 {
        let m = consumer.expect_message();
        assert_eq!(m.text(), format!("early {n}"));
        assert_eq!(m.get("stompbox-broker-path"), Some("a"));
        consumer.ack(&m);
    }
    for n in 0..10 {
        producer.send_persistent(&q, &format!("later {n}"), &[]);
        let m = consumer.expect_message();
        assert_eq!(m.text(), format!("later {n}"));
        consumer.ack(&m);
    }
    eventually(WAIT, || match stored(&a, &q) {
        0 => Ok(()),
        n => Err(format!("{n} still stored on the source")),
    });
    // It leaves: the bridge's subscription on A goes, and new messages stay on A.
    consumer.disconnect();
    eventually(WAIT, || match stat(&a, &q, "consumers") {
        0 => Ok(()),
        n => Err(format!("{n} consumers still on the source's queue")),
    });
    for n in 0..10 {
        producer.send_persistent(&q, &format!("after {n}"), &[]);
    }
    std::thread::sleep(QUIET * 2);
    assert_eq!(stored(&a, &q), 10, "kept on the source once demand is gone");
    assert_eq!(
        stat(&b, &q, "enqueued"),
        30,
        "the peer got only what it had demand for"
    );
}

#[test]
fn local_consumers_come_before_the_network() {
    let b = named("b");
    let a = bridged("a", &b, &[], "");
    let q = format!("/queue/{}", unique("local-first"));
    let mut remote = b.connect("1.2");
    remote.subscribe(&q, "r", "client-individual", &[]);
    let mut local = a.connect("1.2");
    local.subscribe(&q, "l", "client-individual", &[]);
    // The bridge's subscription on A is there (priority -1) before anything is sent.
    eventually(WAIT, || match stat(&a, &q, "consumers") {
        2 => Ok(()),
        n => Err(format!("{n} consumers on the source's queue")),
    });
    let mut producer = a.connect("1.2");
    for n in 0..50 {
        producer.send_persistent(&q, &format!("m{n}"), &[]);
    }
    for n in 0..50 {
        let m = local.expect_message();
        assert_eq!(m.text(), format!("m{n}"));
        local.ack(&m);
    }
    remote.expect_silence(QUIET);
    assert_eq!(stat(&b, &q, "enqueued"), 0);
}

#[test]
fn topic_demand_sends_each_message_once_and_honours_the_remote_selectors() {
    let b = named("b");
    let a = bridged("a", &b, &[], "");
    let t = format!("/topic/{}", unique("prices"));
    let mut eu = b.connect("1.2");
    eu.subscribe(&t, "eu", "auto", &[("selector", "region = 'eu'")]);
    let mut eu2 = b.connect("1.2");
    eu2.subscribe(&t, "eu2", "auto", &[("selector", "region = 'eu'")]);
    let mut all = b.connect("1.2");
    all.subscribe(
        &t,
        "all",
        "auto",
        &[("selector", "region IN ('eu', 'asia')")],
    );
    // The conduit's selector takes every subscriber's (a count of one consumer could be the
    // conduit of the first subscriber only, before the others' advisories arrived).
    eventually(WAIT, || {
        let status = a.admin_get("/api/network").ok_or("no answer")?;
        match status.contains("region IN ('eu', 'asia')") && status.contains("region = 'eu'") {
            true => Ok(()),
            false => Err(status),
        }
    });
    eventually(WAIT, || match stat(&a, &t, "consumers") {
        1 => Ok(()),
        n => Err(format!(
            "{n} consumers of the source's topic (want the one conduit)"
        )),
    });
    let mut producer = a.connect("1.2");
    for (n, region) in ["eu", "us", "asia", "us", "eu"].iter().enumerate() {
        producer.send_sync(&t, &format!("p{n}"), &[("region", region)]);
    }
    for c in [&mut eu, &mut eu2] {
        assert_eq!(c.expect_message().text(), "p0");
        assert_eq!(c.expect_message().text(), "p4");
        c.expect_silence(QUIET);
    }
    for want in ["p0", "p2", "p4"] {
        assert_eq!(all.expect_message().text(), want);
    }
    all.expect_silence(QUIET);
    // Once each, and only what some subscriber there selects.
    assert_eq!(stat(&b, &t, "enqueued"), 3);
}

/// Brokers named `names`, on ports chosen now, each with one connector `net` to the brokers
/// `links[i]` names (indexes), with `extra` connector settings.
fn network(names: &[&str], links: &[&[usize]], extra: &str) -> Vec<Broker> {
    let ports = support::net::free_ports(names.len() * 2);
    let stomp = |i: usize| ports[2 * i];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let peers: Vec<String> = links[i]
                .iter()
                .map(|&p| format!("tcp://127.0.0.1:{}", stomp(p)))
                .collect();
            let connector = match peers.is_empty() {
                true => String::new(),
                false => format!(
                    "\n[[network]]\nname = \"net\"\n\
                     uri = \"static:({})?initialReconnectDelay=100&maxReconnectDelay=500\"\n{extra}",
                    peers.join(",")
                ),
            };
            let mut b = Broker::new(&format!("broker_name = \"{name}\"\n{connector}"))
                .on_ports(stomp(i), ports[2 * i + 1]);
            b.start_again();
            b
        })
        .collect()
}

#[test]
fn demand_crosses_a_line_of_three_within_the_ttl() {
    // A → B → C, by demand only: C's consumer is B's demand, which B's bridge on A sees
    // one hop further.
    let line = network(&["a", "b", "c"], &[&[1], &[2], &[]], "network_ttl = 2\n");
    let (a, b, c) = (&line[0], &line[1], &line[2]);
    let q = format!("/queue/{}", unique("line"));
    let mut consumer = c.connect("1.2");
    consumer.subscribe(&q, "c", "client-individual", &[]);
    eventually(WAIT, || match stat(a, &q, "consumers") {
        1 => Ok(()),
        n => Err(format!("{n} consumers on A (want the bridge's)")),
    });
    let mut producer = a.connect("1.2");
    for n in 0..200 {
        let persistent = if n % 2 == 0 { "true" } else { "false" };
        producer.send_sync(&q, &format!("m{n}"), &[("persistent", persistent)]);
    }
    for n in 0..200 {
        let m = consumer.expect_message();
        assert_eq!(m.text(), format!("m{n}"), "once each, in order");
        assert_eq!(m.get("stompbox-broker-path"), Some("a,b"));
        consumer.ack(&m);
    }
    consumer.expect_silence(QUIET);
    eventually(WAIT, || match (stored(a, &q), stored(b, &q)) {
        (0, 0) => Ok(()),
        n => Err(format!("{n:?} still stored on A and B")),
    });
    assert_eq!(stat(b, &q, "enqueued"), 200);
    assert_eq!(stat(c, &q, "enqueued"), 200);
}

#[test]
fn demand_stops_at_the_ttl() {
    // The same line with TTL 1: C's demand does not reach A, so nothing leaves A.
    demand_stops_at("network_ttl = 1\n");
}

#[test]
fn demand_stops_at_the_consumer_ttl() {
    // Messages could make two hops, but demand travels one (ActiveMQ's consumerTTL).
    demand_stops_at("network_ttl = 2\nconsumer_ttl = 1\n");
}

fn demand_stops_at(ttls: &str) {
    let line = network(&["a", "b", "c"], &[&[1], &[2], &[]], ttls);
    let (a, b, c) = (&line[0], &line[1], &line[2]);
    let q = format!("/queue/{}", unique("line1"));
    let mut consumer = c.connect("1.2");
    consumer.subscribe(&q, "c", "client-individual", &[]);
    eventually(WAIT, || match stat(b, &q, "consumers") {
        1 => Ok(()),
        n => Err(format!("{n} consumers on B (want C's bridge's)")),
    });
    let mut producer = a.connect("1.2");
    for n in 0..10 {
        producer.send_persistent(&q, &format!("m{n}"), &[]);
    }
    consumer.expect_silence(QUIET * 2);
    assert_eq!(stored(a, &q), 10, "kept on A");
    assert_eq!(stat(b, &q, "enqueued"), 0);
}

#[test]
fn a_full_mesh_of_three_delivers_each_topic_message_once_to_each_subscriber() {
    // Each broker bridges to both others, TTL 1 (ActiveMQ's advice for a full mesh).
    let mesh = network(&["a", "b", "c"], &[&[1, 2], &[0, 2], &[0, 1]], "");
    let t = format!("/topic/{}", unique("mesh"));
    let mut subscribers: Vec<_> = mesh
        .iter()
        .map(|b| {
            let mut s = b.connect("1.2");
            s.subscribe(&t, "s", "auto", &[]);
            s
        })
        .collect();
    // Each broker's topic has its subscriber and one bridge per other broker.
    for b in &mesh {
        eventually(WAIT, || match stat(b, &t, "consumers") {
            3 => Ok(()),
            n => Err(format!("{n} consumers of {}'s topic", b.name())),
        });
    }
    let per_broker = 20;
    for (i, b) in mesh.iter().enumerate() {
        let mut p = b.connect("1.2");
        for n in 0..per_broker {
            p.send_sync(&t, &format!("{i}-{n}"), &[]);
        }
    }
    for s in subscribers.iter_mut() {
        let mut got: Vec<String> = s
            .receive(3 * per_broker, WAIT)
            .iter()
            .map(|m| m.text())
            .collect();
        s.expect_silence(QUIET);
        got.sort();
        let mut want: Vec<String> = (0..3)
            .flat_map(|i| (0..per_broker).map(move |n| format!("{i}-{n}")))
            .collect();
        want.sort();
        assert_eq!(got, want, "each message once");
    }
    // Nothing circulates: each topic saw its own messages and one copy of each other's.
    std::thread::sleep(QUIET);
    for b in &mesh {
        assert_eq!(
            stat(b, &t, "enqueued"),
            3 * per_broker as u64,
            "{}",
            b.name()
        );
    }
}

#[test]
fn bridges_are_shown_on_the_admin_api_metrics_and_the_network_command() {
    let b = named("b");
    let a = bridged("a", &b, &["/queue/static.>"], "");
    let q = format!("/queue/{}", unique("shown"));
    let mut consumer = b.connect("1.2");
    consumer.subscribe(&q, "c", "auto", &[("selector", "kind = 'x'")]);
    let mut producer = a.connect("1.2");
    eventually(WAIT, || match stat(&a, &q, "consumers") {
        1 => Ok(()),
        n => Err(format!("{n} consumers on A")),
    });
    for n in 0..5 {
        producer.send_persistent(&q, &format!("m{n}"), &[("kind", "x")]);
        consumer.expect_message();
    }
    // Not selected by the peer: waits here, counted as backlog.
    producer.send_persistent(&q, "not wanted", &[("kind", "y")]);
    let status = eventually(WAIT, || {
        let json: serde_json::Value =
            serde_json::from_str(&a.admin_get("/api/network").ok_or("no answer")?)
                .map_err(|e| e.to_string())?;
        let bridge = json[0].clone();
        match (bridge["forwarded"].as_u64(), bridge["backlog"].as_u64()) {
            (Some(5), Some(1)) => Ok(bridge),
            other => Err(format!("{other:?}: {bridge}")),
        }
    });
    assert_eq!(status["connector"], "to-peer");
    assert_eq!(status["peer_name"], "b");
    assert_eq!(status["state"], "linked");
    assert_eq!(status["in_flight"], 0);
    assert_eq!(status["links"], 1);
    let routes = status["routes"].as_array().expect("routes");
    assert!(routes
        .iter()
        .any(|r| r["destination"] == "/queue/static.>" && r["kind"] == "static"));
    assert!(routes.iter().any(|r| r["destination"] == q.as_str()
        && r["kind"] == "demand"
        && r["selector"] == "kind = 'x'"));
    let metrics = a.admin_get("/metrics").expect("metrics");
    assert!(
        metrics.contains("stompbox_network_bridge_up{connector=\"to-peer\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("stompbox_network_forwarded_total{"),
        "{metrics}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .args(["network", "--admin", &format!("http://{}", a.admin_addr())])
        .output()
        .expect("stompbox network");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("to-peer -> tcp://"), "{text}");
    assert!(
        text.contains("(b): linked, 5 forwarded, 0 in flight, 1 waiting"),
        "{text}"
    );
    assert!(
        text.contains(&format!("demand  {q}  [kind = 'x']")),
        "{text}"
    );
    // A broker with no admin endpoint to ask: a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .args(["network", "--admin", "http://127.0.0.1:1"])
        .output()
        .expect("stompbox network");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the broker running"));
}

#[test]
fn a_message_the_peer_refuses_is_dead_lettered_here_and_the_rest_flow() {
    // B takes bodies of at most 1 KiB; A dead-letters after one redelivery.
    let mut b =
        Broker::new("broker_name = \"b\"\n[limits]\nmax_body_bytes = 1024\n").on_fixed_ports();
    b.start_again();
    let a = {
        let mut a = Broker::new(&format!(
            "broker_name = \"a\"\n[destinations]\nmax_redeliveries = 1\n\n[[network]]\nname = \"to-peer\"\n\
             uri = \"static:(tcp://{})?initialReconnectDelay=100&maxReconnectDelay=500\"\n\
             static_included = [\"/queue/refused\"]\n",
            b.addr()
        ))
        .on_fixed_ports();
        a.start_again();
        a
    };
    let q = "/queue/refused";
    let mut consumer = b.connect("1.2");
    consumer.subscribe(q, "c", "client-individual", &[]);
    let mut producer = a.connect("1.2");
    producer.send_persistent(q, "small 0", &[]);
    let big = "x".repeat(2048);
    producer.send_persistent(q, &big, &[("x-big", "yes")]);
    for n in 1..5 {
        producer.send_persistent(q, &format!("small {n}"), &[]);
    }
    let mut got = BTreeSet::new();
    while got.len() < 5 {
        let m = consumer.expect_message();
        assert_ne!(m.get("x-big"), Some("yes"));
        got.insert(m.text());
        consumer.ack(&m);
    }
    let want: BTreeSet<String> = (0..5).map(|n| format!("small {n}")).collect();
    assert_eq!(got, want);
    // The refused one is in A's dead-letter queue, not lost and not blocking the bridge.
    let mut dlq = a.connect("1.2");
    dlq.subscribe("/queue/ActiveMQ.DLQ", "d", "client-individual", &[]);
    let m = dlq.expect_message();
    assert_eq!(m.get("x-big"), Some("yes"), "{m:?}");
    assert_eq!(m.text().len(), 2048);
    dlq.ack(&m);
    eventually(WAIT, || match stored(&a, q) {
        0 => Ok(()),
        n => Err(format!("{n} still stored on the source")),
    });
    producer.send_persistent(q, "after", &[]);
    assert_eq!(consumer.expect_message().text(), "after");
}

#[test]
fn a_duplex_bridge_carries_demand_and_messages_both_ways_over_one_link() {
    // Only A has a connector (B could not reach A, say): duplex serves both directions.
    let b = named("b");
    let a = bridged("a", &b, &[], "duplex = true\n");
    let to_b = format!("/queue/{}", unique("to-b"));
    let to_a = format!("/queue/{}", unique("to-a"));
    let t = format!("/topic/{}", unique("both"));
    let mut on_a = a.connect("1.2");
    on_a.subscribe(&to_a, "q", "client-individual", &[]);
    let mut topic_a = a.connect("1.2");
    topic_a.subscribe(&t, "t", "auto", &[]);
    let mut on_b = b.connect("1.2");
    on_b.subscribe(&to_b, "q", "client-individual", &[]);
    let mut topic_b = b.connect("1.2");
    topic_b.subscribe(&t, "t", "auto", &[]);
    // Each side's demand reached the other: B holds the reverse routes for A's consumers.
    eventually(WAIT, || {
        match (stat(&b, &to_a, "consumers"), stat(&b, &t, "consumers")) {
            (1, 2) => Ok(()),
            n => Err(format!("{n:?} consumers on B")),
        }
    });
    eventually(WAIT, || {
        match (stat(&a, &to_b, "consumers"), stat(&a, &t, "consumers")) {
            (1, 2) => Ok(()),
            n => Err(format!("{n:?} consumers on A")),
        }
    });
    let mut pa = a.connect("1.2");
    let mut pb = b.connect("1.2");
    for n in 0..20 {
        pa.send_persistent(&to_b, &format!("ab{n}"), &[]);
        pb.send_persistent(&to_a, &format!("ba{n}"), &[]);
        pa.send_sync(&t, &format!("ta{n}"), &[]);
        pb.send_sync(&t, &format!("tb{n}"), &[]);
    }
    for n in 0..20 {
        let m = on_b.expect_message();
        assert_eq!(m.text(), format!("ab{n}"));
        assert_eq!(m.get("stompbox-broker-path"), Some("a"));
        on_b.ack(&m);
        let m = on_a.expect_message();
        assert_eq!(m.text(), format!("ba{n}"));
        assert_eq!(m.get("stompbox-broker-path"), Some("b"));
        on_a.ack(&m);
    }
    // Each topic subscriber: its own broker's 20 and the other's 20, once each.
    for (c, name) in [(&mut topic_a, "a"), (&mut topic_b, "b")] {
        let mut got: Vec<String> = c.receive(40, WAIT).iter().map(|m| m.text()).collect();
        c.expect_silence(QUIET);
        got.sort();
        let mut want: Vec<String> = (0..20)
            .flat_map(|n| [format!("ta{n}"), format!("tb{n}")])
            .collect();
        want.sort();
        assert_eq!(got, want, "on {name}");
    }
    assert_eq!(stat(&a, &t, "enqueued"), 40);
    assert_eq!(stat(&b, &t, "enqueued"), 40);
    let status: serde_json::Value =
        serde_json::from_str(&a.admin_get("/api/network").expect("status")).expect("json");
    assert_eq!(status[0]["forwarded"], 40, "{status}");
    assert_eq!(status[0]["received"], 40, "{status}");
    assert!(
        status[0]["reverse_routes"]
            .as_array()
            .is_some_and(|r| r.len() == 2),
        "{status}"
    );
}

#[test]
fn messages_sent_after_the_source_restarts_are_not_taken_for_copies() {
    // The queue is drained before each restart, so nothing stored tells the restarted broker
    // where its ids stopped: the peer's duplicate filter must not drop the new messages as
    // copies of the old ones (network ids are `broker:message-id`, and ids never repeat).
    let b = named("b");
    let mut a = bridged("a", &b, &["/queue/again"], "");
    let q = "/queue/again";
    let mut consumer = b.connect("1.2");
    consumer.subscribe(q, "c", "client-individual", &[]);
    for round in 0..2 {
        let mut producer = a.connect("1.2");
        for n in 0..10 {
            producer.send_persistent(q, &format!("r{round} m{n}"), &[]);
        }
        for n in 0..10 {
            let m = consumer.expect_message();
            assert_eq!(m.text(), format!("r{round} m{n}"));
            consumer.ack(&m);
        }
        eventually(WAIT, || match stored(&a, q) {
            0 => Ok(()),
            n => Err(format!("{n} still stored on the source")),
        });
        a.crash_and_restart();
    }
    consumer.expect_silence(QUIET);
}

#[test]
fn a_refused_message_in_a_batch_is_found_and_dead_lettered_alone() {
    // B takes bodies of at most 1 KiB. Messages wait on A while B is down, then cross in
    // batches (one RECEIPT per batch): the refusal does not say which one it was, so the bridge
    // forwards one at a time until it does.
    let mut b =
        Broker::new("broker_name = \"b\"\n[limits]\nmax_body_bytes = 1024\n").on_fixed_ports();
    b.start_again();
    let mut a = Broker::new(&format!(
        "broker_name = \"a\"\n[destinations]\nmax_redeliveries = 1\n\n[[network]]\nname = \"to-peer\"\n\
         uri = \"static:(tcp://{})?initialReconnectDelay=100&maxReconnectDelay=500\"\n\
         static_included = [\"/queue/batch\"]\n",
        b.addr()
    ))
    .on_fixed_ports();
    a.start_again();
    b.kill9();
    let q = "/queue/batch";
    let mut producer = a.connect("1.2");
    for n in 0..60 {
        if n == 30 {
            producer.send_persistent(q, &"x".repeat(2048), &[("x-big", "yes")]);
        }
        producer.send_persistent(q, &format!("small {n}"), &[]);
    }
    b.start_again();
    let mut consumer = b.connect("1.2");
    consumer.subscribe(q, "c", "client-individual", &[]);
    let mut got = BTreeSet::new();
    while got.len() < 60 {
        let m = consumer.expect_message();
        assert_ne!(m.get("x-big"), Some("yes"));
        got.insert(m.text());
        consumer.ack(&m);
    }
    let mut dlq = a.connect("1.2");
    dlq.subscribe("/queue/ActiveMQ.DLQ", "d", "client-individual", &[]);
    let m = dlq.expect_message();
    assert_eq!(m.get("x-big"), Some("yes"), "{m:?}");
    dlq.ack(&m);
    dlq.expect_silence(QUIET);
}

#[test]
fn demand_routes_replaced_mid_stream_neither_lose_nor_drop_the_link() {
    // Each time the peer's consumers' selectors change, the bridge replaces its route here
    // while messages of the old one are in flight.
    let b = named("b");
    let a = bridged("a", &b, &[], "");
    let q = format!("/queue/{}", unique("replaced"));
    let mut steady = b.connect("1.2");
    steady.subscribe(&q, "s", "client-individual", &[("selector", "n >= 0")]);
    eventually(WAIT, || match stat(&a, &q, "consumers") {
        1 => Ok(()),
        n => Err(format!("{n} consumers on A")),
    });
    let total = 600;
    let mut producer = a.connect("1.2");
    let mut toggler = b.connect("1.2");
    let mut got = BTreeSet::new();
    for n in 0..total {
        producer.send(&q, &format!("m{n}"), &[("n", &n.to_string())]);
        if n % 60 == 30 {
            // A consumer that selects nothing of this stream changes the OR of selectors.
            toggler.subscribe(&q, &format!("t{n}"), "auto", &[("selector", "n < 0")]);
        }
        if n % 60 == 59 {
            toggler.request(Frame::new("UNSUBSCRIBE").header("id", format!("t{}", n - 29)));
        }
        while let Some(m) = steady.next_frame(std::time::Duration::ZERO) {
            assert!(
                got.insert(m.text()) || m.get("redelivered") == Some("true"),
                "{m:?}"
            );
            steady.ack(&m);
        }
    }
    while got.len() < total {
        let m = steady.expect_message();
        assert!(
            got.insert(m.text()) || m.get("redelivered") == Some("true"),
            "{m:?}"
        );
        steady.ack(&m);
    }
    let status: serde_json::Value =
        serde_json::from_str(&a.admin_get("/api/network").expect("status")).expect("json");
    assert_eq!(status[0]["links"], 1, "the link never dropped: {status}");
    assert_eq!(status[0]["last_error"], serde_json::Value::Null, "{status}");
}

#[test]
fn a_peer_that_never_reads_is_given_up_after_the_write_timeout_and_linked_again() {
    // A "broker" that answers CONNECT, then keeps every connection open and reads nothing
    // more: the bridge's SENDs fill the socket buffers and its write can make no progress.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = listener.local_addr().expect("addr");
    let connects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let connects = connects.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.contains(&0) {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0");
                connects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s);
            }
        });
    }
    let mut a = Broker::new(&format!(
        "broker_name = \"a\"\n\n[[network]]\nname = \"to-peer\"\n\
         uri = \"static:(tcp://{peer})?initialReconnectDelay=100&maxReconnectDelay=500\"\n\
         static_included = [\"/queue/stuck\"]\ndemand = false\nwrite_timeout_ms = 500\n"
    ))
    .on_fixed_ports();
    a.start_again();
    let mut producer = a.connect("1.2");
    let body = "x".repeat(1024 * 1024);
    for n in 0..24 {
        producer.send_persistent("/queue/stuck", &body, &[("n", &n.to_string())]);
    }
    // The bridge gives the stuck peer up and links again (and again), instead of waiting on
    // it for good; what it could not forward stays here.
    let status = eventually(WAIT, || {
        let json: serde_json::Value =
            serde_json::from_str(&a.admin_get("/api/network").ok_or("no answer")?)
                .map_err(|e| e.to_string())?;
        let bridge = json[0].clone();
        let error = bridge["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match (bridge["links"].as_u64(), error.contains("read nothing")) {
            (Some(links), true) if links >= 2 => Ok(bridge),
            _ => Err(format!("{bridge}")),
        }
    });
    assert_eq!(status["forwarded"], 0, "{status}");
    assert!(connects.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert_eq!(stored(&a, "/queue/stuck"), 24);
}

/// Flow control on `held` (its queue `in` full: its one consumer takes one message and never
/// ACKs it) holds back the SENDs a duplex bridge forwards into it, `count` bodies of
/// `body_kib` KiB sent on `free`; what the bridge forwards the other way, from `free` to
/// `held`, must not wait behind them.
fn the_other_direction_flows(held: &Broker, free: &Broker, body_kib: usize, count: usize) {
    let into_held = format!("/queue/{}", unique("in"));
    let out_of_held = format!("/queue/{}", unique("out"));
    let mut stuck = held.connect("1.2");
    stuck.subscribe(
        &into_held,
        "s",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    let mut on_free = free.connect("1.2");
    on_free.subscribe(&out_of_held, "o", "client-individual", &[]);
    eventually(WAIT, || {
        match (
            stat(free, &into_held, "consumers"),
            stat(held, &out_of_held, "consumers"),
        ) {
            (1, 1) => Ok(()),
            n => Err(format!("{n:?} routes for in, for out")),
        }
    });
    let mut producer = free.connect("1.2");
    let body = "i".repeat(body_kib * 1024);
    for n in 0..count {
        producer.send(&into_held, &body, &[("n", &n.to_string())]);
    }
    eventually(WAIT, || match stat(held, &into_held, "blocked_producers") {
        0 => Err("the bridge is not held by flow control yet".to_string()),
        _ => Ok(()),
    });
    let mut producer = held.connect("1.2");
    let total = 300;
    for n in 0..total {
        producer.send_persistent(&out_of_held, &format!("m{n}"), &[]);
    }
    let mut got = BTreeSet::new();
    while got.len() < total {
        let Some(m) = on_free.next_frame(WAIT) else {
            panic!(
                "{} of {total} arrived\n--- held ---\n{}\n--- free ---\n{}",
                got.len(),
                held.log_tail(),
                free.log_tail()
            );
        };
        got.insert(m.text());
        on_free.ack(&m);
    }
    eventually(WAIT, || match stored(held, &out_of_held) {
        0 => Ok(()),
        n => Err(format!("{n} of out still stored where they were sent")),
    });
    assert!(
        stuck.next_frame(QUIET).is_some(),
        "the consumer of in got its one message"
    );
}

/// Flow control that holds a bridge's SENDs: a producer window and memory limit this small.
const SMALL_LIMITS: &str = "[limits]\nproducer_window_bytes = 262144\n\n\
                            [destinations]\nmemory_limit_bytes = 131072\n";

#[test]
fn a_duplex_bridge_held_by_flow_control_one_way_still_forwards_the_other_way() {
    // A holds the reverse direction (B → A): the ACKs that settle the forward one travel on
    // a connection of their own.
    let b = named("b");
    let a = bridged(
        "a",
        &b,
        &[],
        &format!("duplex = true\nwrite_timeout_ms = 0\n\n{SMALL_LIMITS}"),
    );
    the_other_direction_flows(&a, &b, 32, 200);
}

#[test]
fn a_duplex_bridge_stuck_writing_one_way_still_forwards_the_other_way() {
    // B holds the forward direction, and the bridge's write of its SENDs waits (no write
    // timeout), megabytes past what the sockets buffer: the reverse direction is a future of
    // its own and must not wait behind that write (before, nothing of it arrived).
    let mut b = Broker::new(&format!("broker_name = \"b\"\n\n{SMALL_LIMITS}")).on_fixed_ports();
    b.start_again();
    let a = bridged("a", &b, &[], "duplex = true\nwrite_timeout_ms = 0\n");
    the_other_direction_flows(&b, &a, 64, 300);
}

#[test]
fn without_conduit_subscriptions_each_remote_queue_consumer_is_a_consumer_here() {
    let b = named("b");
    let a = bridged("a", &b, &[], "conduit_subscriptions = false\n");
    let q = format!("/queue/{}", unique("each"));
    let mut low = b.connect("1.2");
    low.subscribe(&q, "low", "client-individual", &[("selector", "n < 50")]);
    let mut any = b.connect("1.2");
    any.subscribe(&q, "any", "client-individual", &[]);
    // One subscription here per consumer there, each with its consumer's selector.
    eventually(WAIT, || match stat(&a, &q, "consumers") {
        2 => Ok(()),
        n => Err(format!("{n} consumers on A")),
    });
    let mut producer = a.connect("1.2");
    let total = 100;
    for n in 0..total {
        producer.send_persistent(&q, &format!("m{n}"), &[("n", &n.to_string())]);
    }
    let mut got = BTreeSet::new();
    while got.len() < total {
        let mut idle = true;
        for (c, selects_all) in [(&mut low, false), (&mut any, true)] {
            while let Some(m) = c.next_frame(std::time::Duration::from_millis(50)) {
                idle = false;
                let n: usize = m.get("n").expect("n").parse().expect("a number");
                assert!(selects_all || n < 50, "{m:?}");
                assert!(got.insert(n), "m{n} twice");
                c.ack(&m);
            }
        }
        if idle && got.len() < total {
            let m = any
                .next_frame(WAIT)
                .unwrap_or_else(|| panic!("{} of {total}\n--- a ---\n{}", got.len(), a.log_tail()));
            let n: usize = m.get("n").expect("n").parse().expect("a number");
            assert!(got.insert(n), "m{n} twice");
            any.ack(&m);
        }
    }
    // A consumer leaves: its subscription here ends, the other's stays.
    any.request(Frame::new("UNSUBSCRIBE").header("id", "any"));
    eventually(WAIT, || match stat(&a, &q, "consumers") {
        1 => Ok(()),
        n => Err(format!("{n} consumers on A")),
    });
}

#[test]
fn with_replay_when_no_consumers_messages_stranded_on_a_peer_come_back_to_where_consumers_are() {
    // A and B bridged both ways by demand; B replays.
    let ab = network(
        &["a", "b"],
        &[&[1], &[0]],
        "replay_when_no_consumers = true\n",
    );
    let (a, b) = (&ab[0], &ab[1]);
    let q = format!("/queue/{}", unique("stranded"));
    // B's consumer draws A's messages over, takes one and leaves without ACKing any.
    let mut on_b = b.connect("1.2");
    on_b.subscribe(
        &q,
        "b",
        "client-individual",
        &[("activemq.prefetchSize", "1")],
    );
    // A's bridge subscribes twice for B's consumer: its demand route, and (A has no consumer
    // of its own) the replay route for what came from B.
    eventually(WAIT, || match stat(a, &q, "consumers") {
        2 => Ok(()),
        n => Err(format!("{n} consumers on A")),
    });
    let mut producer = a.connect("1.2");
    let total = 10;
    for n in 0..total {
        producer.send_persistent(&q, &format!("m{n}"), &[]);
    }
    on_b.expect_message();
    eventually(WAIT, || match stored(b, &q) {
        10 => Ok(()),
        n => Err(format!("{n} of {q} stored on B")),
    });
    drop(on_b);
    // A consumer on A: B has none left, so it sends what it holds back to A.
    let mut on_a = a.connect("1.2");
    on_a.subscribe(&q, "a", "client-individual", &[]);
    let mut got = BTreeSet::new();
    while got.len() < total {
        let Some(m) = on_a.next_frame(WAIT) else {
            panic!("{got:?} came back to A\n--- b ---\n{}", b.log_tail());
        };
        assert!(got.insert(m.text()), "{m:?} twice");
        on_a.ack(&m);
    }
    eventually(WAIT, || match (stored(a, &q), stored(b, &q)) {
        (0, 0) => Ok(()),
        n => Err(format!("{n:?} of {q} stored on A, B")),
    });
}

/// Waits until no live connection on `broker` uses client-id `client`. The broker releases it
/// once it has seen the previous connection close, which a test that has just dropped that
/// connection must not race (a client reconnecting at once can be refused with `client-id
/// already connected`, as in ActiveMQ).
fn client_id_free(broker: &Broker, client: &str) {
    eventually(WAIT, || {
        let body = broker.admin_get("/api/connections").unwrap_or_default();
        let rows: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match rows
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["client_id"] == client)
        {
            true => Err(format!("client-id {client} still connected")),
            false => Ok(()),
        }
    });
}

/// A durable subscriber on `broker` (client-id `client`, subscription `name`) of `topic`.
fn durable_subscriber(broker: &Broker, client: &str, topic: &str, name: &str) -> support::Client {
    client_id_free(broker, client);
    let mut c = broker.connect_with("1.2", &[("client-id", client)]);
    c.subscribe(
        topic,
        name,
        "client-individual",
        &[("activemq.subscriptionName", name)],
    );
    c
}

/// Deletes durable subscription `name` on `broker` (its subscriber gone), from a new
/// connection of client `client`.
fn delete_durable(broker: &Broker, client: &str, name: &str) {
    client_id_free(broker, client);
    let mut c = broker.connect_with("1.2", &[("client-id", client)]);
    c.request(
        Frame::new("UNSUBSCRIBE")
            .header("id", name)
            .header("activemq.subscriptionName", name),
    );
}

#[test]
fn a_durable_subscriber_away_from_the_peer_still_gets_what_is_published_here() {
    let b = named("b");
    // The durable subscription exists on B before the bridge links: B replays it (inactive)
    // as demand.
    let t = format!("/topic/{}", unique("news"));
    drop(durable_subscriber(&b, "reader", &t, "daily"));
    let a = bridged("a", &b, &[], "");
    eventually(WAIT, || match subscriptions_to(&a, &t) {
        1 => Ok(()),
        n => Err(format!("{n} subscriptions to {t} on A")),
    });
    let mut producer = a.connect("1.2");
    for n in 0..5 {
        producer.send_sync(&t, &format!("away {n}"), &[]);
    }
    // It comes back, gets what was published meanwhile, and leaves again: still demand.
    let mut reader = durable_subscriber(&b, "reader", &t, "daily");
    for n in 0..5 {
        let m = reader.expect_message();
        assert_eq!(m.text(), format!("away {n}"));
        reader.ack(&m);
    }
    drop(reader);
    producer.send_sync(&t, "away again", &[]);
    let mut reader = durable_subscriber(&b, "reader", &t, "daily");
    let m = reader.expect_message();
    assert_eq!(m.text(), "away again");
    reader.ack(&m);
    reader.expect_silence(QUIET);
    drop(reader);
    // Deleted on B: no longer demand here.
    delete_durable(&b, "reader", "daily");
    eventually(WAIT, || match subscriptions_to(&a, &t) {
        0 => Ok(()),
        n => Err(format!("{n} subscriptions to {t} on A")),
    });
    // And the bridge's durable route here is deleted with what it kept, not just detached.
    eventually(WAIT, || match durables_of(&a, &t).as_slice() {
        [] => Ok(()),
        other => Err(format!("durable subscriptions of {t} on A: {other:?}")),
    });
}

/// The durable subscriptions (`client_id:name`) to `topic` in `broker`'s `/api/destinations`.
fn durables_of(broker: &Broker, topic: &str) -> Vec<String> {
    let body = broker.admin_get("/api/destinations").unwrap_or_default();
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    rows.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["destination"] == topic && r["kind"] == "durable")
        .filter_map(|r| r["subscription"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_durable_subscriber_on_the_peer_gets_what_was_published_here_while_the_link_was_down() {
    let mut b = named("b");
    let t = format!("/topic/{}", unique("ledger"));
    drop(durable_subscriber(&b, "reader", &t, "daily"));
    let mut a = bridged("a", &b, &[], "");
    // The bridge's route for it is a durable subscription here, of the bridge's client id.
    eventually(WAIT, || match durables_of(&a, &t).as_slice() {
        [one] if one.starts_with("stompbox-network:a:to-peer->b:b.") => Ok(()),
        other => Err(format!("durable subscriptions of {t} on A: {other:?}")),
    });
    let mut producer = a.connect("1.2");
    producer.send_persistent(&t, "linked", &[]);
    eventually(WAIT, || {
        let status = a.admin_get("/api/network").ok_or("no answer")?;
        match serde_json::from_str::<serde_json::Value>(&status) {
            Ok(s) if s[0]["forwarded"] == 1 => Ok(()),
            _ => Err(status),
        }
    });
    // B is down: what A publishes meanwhile is kept here for it, across a kill -9 of A too.
    b.kill9();
    for n in 0..10 {
        producer.send_persistent(&t, &format!("down {n}"), &[]);
    }
    // Operators see it wait here for the peer.
    eventually(WAIT, || {
        let status: serde_json::Value =
            serde_json::from_str(&a.admin_get("/api/network").ok_or("no answer")?)
                .map_err(|e| e.to_string())?;
        let bridge = &status[0];
        match (bridge["state"].as_str(), bridge["backlog"].as_u64()) {
            (Some("waiting"), Some(10)) if bridge["routes"][0]["kind"] == "durable" => Ok(()),
            _ => Err(format!("{bridge}")),
        }
    });
    drop(producer);
    a.crash_and_restart();
    let mut producer = a.connect("1.2");
    for n in 10..20 {
        producer.send_persistent(&t, &format!("down {n}"), &[]);
    }
    b.start_again();
    let mut reader = durable_subscriber(&b, "reader", &t, "daily");
    let want: Vec<String> = std::iter::once("linked".to_string())
        .chain((0..20).map(|n| format!("down {n}")))
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let Some(m) = reader.next_frame(WAIT) else {
            panic!(
                "got {got:?}\n--- a ---\n{}\n--- b ---\n{}",
                a.log_tail(),
                b.log_tail()
            );
        };
        assert!(
            !got.contains(&m.text()) || m.get("redelivered") == Some("true"),
            "a second, unmarked copy: {m:?}"
        );
        if !got.contains(&m.text()) {
            got.push(m.text());
        }
        reader.ack(&m);
    }
    let mut sorted = got.clone();
    sorted.sort();
    let mut wanted = want.clone();
    wanted.sort();
    assert_eq!(sorted, wanted);
    reader.expect_silence(QUIET);
    // Forwarded, it left the bridge's durable subscription here.
    eventually(WAIT, || match stored(&a, &t) {
        0 => Ok(()),
        n => Err(format!("{n} of {t} still stored on A")),
    });
}

#[test]
fn a_durable_route_whose_link_is_down_is_no_demand_for_the_brokers_beyond_its_ttl() {
    let mut b = named("b");
    let t = format!("/topic/{}", unique("far"));
    drop(durable_subscriber(&b, "reader", &t, "daily"));
    let a = bridged("a", &b, &[], "");
    eventually(WAIT, || match durables_of(&a, &t).len() {
        1 => Ok(()),
        n => Err(format!("{n} durable subscriptions of {t} on A")),
    });
    // With A's link to B down, A replays its route as a durable subscription without a
    // subscriber (no path): its client id still says it stands for B, one hop beyond A,
    // which C's TTL of 1 does not reach.
    b.kill9();
    let c = bridged("c", &a, &[], "");
    eventually(WAIT, || {
        let status: serde_json::Value =
            serde_json::from_str(&c.admin_get("/api/network").ok_or("no answer")?)
                .map_err(|e| e.to_string())?;
        match status[0]["state"].as_str() {
            Some("linked") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    std::thread::sleep(QUIET);
    assert_eq!(durables_of(&c, &t), Vec::<String>::new());
    assert_eq!(subscriptions_to(&c, &t), 0);
}

#[test]
fn a_durable_route_whose_subscriber_was_deleted_while_the_link_was_down_is_deleted_with_it() {
    let b = named("b");
    let t = format!("/topic/{}", unique("gone"));
    drop(durable_subscriber(&b, "reader", &t, "daily"));
    drop(durable_subscriber(&b, "auditor", &t, "all"));
    let mut a = bridged("a", &b, &[], "");
    // Two durable subscribers there with the same (no) selector: one route here.
    eventually(WAIT, || match durables_of(&a, &t).len() {
        1 => Ok(()),
        n => Err(format!("{n} durable subscriptions of {t} on A")),
    });
    let route = durables_of(&a, &t).remove(0);
    // A is down while one of them is deleted on B: the route stays (the other still needs it).
    a.kill9();
    delete_durable(&b, "auditor", "all");
    a.start_again();
    let mut producer = a.connect("1.2");
    producer.send_persistent(&t, "still read", &[]);
    let mut reader = durable_subscriber(&b, "reader", &t, "daily");
    let m = reader.expect_message();
    assert_eq!(m.text(), "still read");
    reader.ack(&m);
    drop(reader);
    assert_eq!(durables_of(&a, &t), vec![route.clone()]);
    // Both gone while A is down: the link made again finds no durable subscriber for it, and
    // deletes it with what it kept.
    a.kill9();
    delete_durable(&b, "reader", "daily");
    a.start_again();
    eventually(WAIT, || match durables_of(&a, &t).as_slice() {
        [] => Ok(()),
        other => Err(format!("durable subscriptions of {t} on A: {other:?}")),
    });
    producer = a.connect("1.2");
    producer.send_persistent(&t, "nobody", &[]);
    assert_eq!(stored(&a, &t), 0, "nothing kept for nobody");
}

#[test]
fn with_dynamic_only_a_durable_subscriber_away_from_the_peer_is_no_demand() {
    let b = named("b");
    let a = bridged("a", &b, &[], "dynamic_only = true\n");
    let t = format!("/topic/{}", unique("news"));
    let reader = durable_subscriber(&b, "reader", &t, "daily");
    eventually(WAIT, || match stat(&a, &t, "consumers") {
        1 => Ok(()),
        n => Err(format!("{n} consumers of {t} on A")),
    });
    drop(reader);
    eventually(WAIT, || match stat(&a, &t, "consumers") {
        0 => Ok(()),
        n => Err(format!("{n} consumers of {t} on A")),
    });
    let mut producer = a.connect("1.2");
    producer.send_sync(&t, "missed", &[]);
    let mut reader = durable_subscriber(&b, "reader", &t, "daily");
    reader.expect_silence(QUIET);
}

#[test]
fn in_a_mesh_with_suppressed_duplicates_a_queue_takes_only_the_direct_way() {
    // Three brokers, each bridged to the other two, demand travelling two hops: C's consumer
    // is demand for A directly and through B. With suppression A follows it only on its
    // bridge to C.
    let mesh = network(
        &["a", "b", "c"],
        &[&[1, 2], &[0, 2], &[0, 1]],
        "network_ttl = 2\nsuppress_duplicate_queue_subscriptions = true\n",
    );
    let (a, b, c) = (&mesh[0], &mesh[1], &mesh[2]);
    let q = format!("/queue/{}", unique("mesh"));
    let mut consumer = c.connect("1.2");
    consumer.subscribe(&q, "c", "client-individual", &[]);
    // B follows C's consumer (its own bridge to C), which A sees as demand one hop further.
    eventually(WAIT, || match stat(b, &q, "consumers") {
        1 => Ok(()),
        n => Err(format!("{n} consumers on B")),
    });
    // A follows it on its bridge to C only (the one to B may have seen it first).
    eventually(WAIT, || {
        let json: serde_json::Value =
            serde_json::from_str(&a.admin_get("/api/network").ok_or("no answer")?)
                .map_err(|e| e.to_string())?;
        let routes_to = |peer: &str| {
            json.as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["peer_name"] == peer)
                .flat_map(|b| b["routes"].as_array().cloned().unwrap_or_default())
                .filter(|r| r["destination"] == q.as_str())
                .count()
        };
        match (routes_to("c"), routes_to("b"), stat(a, &q, "consumers")) {
            (1, 0, 1) => Ok(()),
            other => Err(format!("routes to c, to b, consumers: {other:?}: {json}")),
        }
    });
    let mut producer = a.connect("1.2");
    let total = 50;
    for n in 0..total {
        producer.send_persistent(&q, &format!("m{n}"), &[]);
    }
    let mut got = BTreeSet::new();
    while got.len() < total {
        let m = consumer.expect_message();
        assert_eq!(
            m.get("stompbox-broker-path"),
            Some("a"),
            "the direct way: {m:?}"
        );
        assert!(got.insert(m.text()), "{m:?} twice");
        consumer.ack(&m);
    }
    consumer.expect_silence(QUIET);
    assert_eq!(
        stat(a, &q, "consumers"),
        1,
        "A still follows only the direct way"
    );
    assert_eq!(stat(b, &q, "enqueued"), 0, "nothing went by way of B");
}

#[test]
fn a_durable_subscription_deleted_by_an_operator_is_no_longer_demand() {
    let b = named("b");
    let t = format!("/topic/{}", unique("ops"));
    drop(durable_subscriber(&b, "reader", &t, "daily"));
    let mut a = bridged("a", &b, &[], "");
    eventually(WAIT, || match subscriptions_to(&a, &t) {
        1 => Ok(()),
        n => Err(format!("{n} subscriptions to {t} on A")),
    });
    let deleted = support::http::post(
        b.admin_addr(),
        &format!("/api/delete?destination={t}&subscription=reader:daily"),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    eventually(WAIT, || match subscriptions_to(&a, &t) {
        0 => Ok(()),
        n => Err(format!("{n} subscriptions to {t} on A")),
    });
    // Nor once the link is made again: B no longer replays it.
    a.restart();
    eventually(WAIT, || {
        let status: serde_json::Value =
            serde_json::from_str(&a.admin_get("/api/network").ok_or("no answer")?)
                .map_err(|e| e.to_string())?;
        match status[0]["state"].as_str() {
            Some("linked") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    std::thread::sleep(QUIET);
    assert_eq!(subscriptions_to(&a, &t), 0);
}

#[test]
fn a_refused_message_larger_than_the_socket_buffers_is_dead_lettered_here_too() {
    // B takes bodies of at most 1 KiB and refuses this one as soon as it reads its
    // content-length, long before the bridge has written it all.
    let mut b =
        Broker::new("broker_name = \"b\"\n[limits]\nmax_body_bytes = 1024\n").on_fixed_ports();
    b.start_again();
    let mut a = Broker::new(&format!(
        "broker_name = \"a\"\n[destinations]\nmax_redeliveries = 0\n\n[[network]]\n\
         name = \"to-peer\"\n\
         uri = \"static:(tcp://{})?initialReconnectDelay=100&maxReconnectDelay=500\"\n\
         static_included = [\"/queue/huge\"]\n",
        b.addr()
    ))
    .on_fixed_ports();
    a.start_again();
    let q = "/queue/huge";
    let mut consumer = b.connect("1.2");
    consumer.subscribe(q, "c", "client-individual", &[]);
    let mut producer = a.connect("1.2");
    producer.send_persistent(q, &"x".repeat(8 * 1024 * 1024), &[("x-big", "yes")]);
    producer.send_persistent(q, "after", &[]);
    let m = consumer.expect_message();
    assert_eq!(m.text(), "after", "{m:?}");
    let mut dlq = a.connect("1.2");
    dlq.subscribe("/queue/ActiveMQ.DLQ", "d", "client-individual", &[]);
    let m = dlq.expect_message();
    assert_eq!(m.get("x-big"), Some("yes"), "{m:?}");
}

/// Demand for more destinations than `max_subscriptions_per_connection` allows one client:
/// the bridge's routes are subscriptions of its connection to its own broker, which that
/// limit (a guard against hostile clients) must not cap, or the link fails at the first route
/// past it, and again at every relink, and nothing at all is forwarded.
#[test]
fn a_peer_with_demand_for_more_destinations_than_a_client_may_subscribe_to_gets_them_all() {
    let b = named("b");
    let a = bridged(
        "a",
        &b,
        &[],
        "\n[limits]\nmax_subscriptions_per_connection = 3\n",
    );
    let queues: Vec<String> = (0..6)
        .map(|n| format!("/queue/{}", unique(&format!("many{n}"))))
        .collect();
    // Two consumers on B (its limit is the default), six queues between them.
    let mut consumers = [b.connect("1.2"), b.connect("1.2")];
    for (n, q) in queues.iter().enumerate() {
        consumers[n % 2].subscribe(q, &format!("c{n}"), "auto", &[]);
    }
    eventually(WAIT, || {
        let routed = queues
            .iter()
            .filter(|q| stat(&a, q, "consumers") == 1)
            .count();
        match routed {
            6 => Ok(()),
            n => Err(format!("{n} of 6 queues have the bridge's route on A")),
        }
    });
    let mut producer = a.connect("1.2");
    for q in &queues {
        producer.send_sync(q, q, &[]);
    }
    // Each consumer gets the message of each of its queues (its queues' order is not the
    // order in which the bridge took their messages).
    for (n, consumer) in consumers.iter_mut().enumerate() {
        let mut got: Vec<String> = (0..3).map(|_| consumer.expect_message().text()).collect();
        got.sort();
        let mut want: Vec<String> = queues.iter().skip(n).step_by(2).cloned().collect();
        want.sort();
        assert_eq!(got, want);
    }
    // The limit still holds for a client, whatever it claims to be.
    let mut client = a.connect_with("1.2", &[("stompbox-bridge-token", "guessed")]);
    for (n, q) in queues.iter().take(3).enumerate() {
        client.subscribe(q, &format!("s{n}"), "auto", &[]);
    }
    client.send_frame(
        &Frame::new("SUBSCRIBE")
            .header("id", "s3")
            .header("destination", &queues[3])
            .header("receipt", "r"),
    );
    let error = client.expect_error_and_close(Some("r"));
    assert!(
        error
            .get("message")
            .is_some_and(|m| m.contains("max_subscriptions_per_connection")),
        "{error:?}"
    );
}

/// A durable route keeps every message published to its topic for the link it stands for:
/// one whose connector was renamed or removed from the config would keep them for ever.
/// Such routes are deleted when the broker starts.
#[test]
fn durable_routes_of_a_connector_renamed_or_removed_are_deleted_at_start() {
    let b = named("b");
    let t = format!("/topic/{}", unique("renamed"));
    drop(durable_subscriber(&b, "reader", &t, "daily"));
    let mut a = bridged("a", &b, &[], "");
    let route_of = |a: &Broker, connector: &str| {
        let routes = durables_of(a, &t);
        match routes.as_slice() {
            [one] if one.starts_with(&format!("stompbox-network:a:{connector}->")) => Ok(()),
            other => Err(format!("durable subscriptions of {t} on A: {other:?}")),
        }
    };
    eventually(WAIT, || route_of(&a, "to-peer"));
    // Renamed: the new connector makes its own route, and the old one goes.
    assert!(a.terminate().success());
    a.rewrite_config(|c| c.replace("name = \"to-peer\"", "name = \"to-b\""));
    a.start_again();
    eventually(WAIT, || route_of(&a, "to-b"));
    // Removed: no connector at all, and no route left.
    assert!(a.terminate().success());
    a.rewrite_config(|_| "broker_name = \"a\"\n".to_string());
    a.start_again();
    eventually(WAIT, || match durables_of(&a, &t).as_slice() {
        [] => Ok(()),
        other => Err(format!("durable subscriptions of {t} on A: {other:?}")),
    });
    // B's subscriber still has its own.
    assert_eq!(durables_of(&b, &t), ["reader:daily"]);
}
