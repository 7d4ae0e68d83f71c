//! Networks of brokers (issue 11): request/reply across brokers. A requester on one broker
//! SUBSCRIBEs to a temporary queue or topic of its own and sends a request with it as
//! `reply-to`; the request crosses a bridge by demand, the replier on the other broker SENDs
//! its answer to the `/remote-temp-…` name it is shown, and the bridge that learnt the
//! requester's consumer from its advisories carries the reply back. What is asserted is what
//! users see: the reply, under the requester's own name; the route in `/api/network`; and the
//! ERROR a reply gets once the requester has gone, with nothing kept.

mod support;

use std::net::SocketAddr;

use support::network::{addresses, counter, stored, RECONNECT};
use support::{eventually, unique, Broker, Client, Frame, QUIET, WAIT};

/// Starts broker `name` on `at` (from [`addresses`]), with a connector to `peer` when given
/// (`extra`: more connector settings).
fn start(
    name: &str,
    at: (SocketAddr, SocketAddr),
    peer: Option<SocketAddr>,
    extra: &str,
) -> Broker {
    let mut config = format!("broker_name = {name:?}\n");
    if let Some(peer) = peer {
        config.push_str(&format!(
            "\n[[network]]\nname = \"to-peer\"\nuri = \"static:(tcp://{peer})?{RECONNECT}\"\n{extra}"
        ));
    }
    let mut b = Broker::new(&config).on_ports(at.0.port(), at.1.port());
    b.start_again();
    b
}

/// Brokers `a` and `b`, each with a connector to the other.
fn connected_both_ways() -> (Broker, Broker) {
    let at = addresses(2);
    let a = start("a", at[0], Some(at[1].0), "");
    let b = start("b", at[1], Some(at[0].0), "");
    (a, b)
}

/// Every route of every bridge of `brokers` (forward and, for a duplex bridge, reverse), as
/// `/api/network` lists them: (destination, kind).
fn routes(brokers: &[&Broker]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in brokers {
        let Some(body) = b.admin_get("/api/network") else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        for bridge in json.as_array().into_iter().flatten() {
            for field in ["routes", "reverse_routes"] {
                for r in bridge[field].as_array().into_iter().flatten() {
                    let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    out.push((text("destination"), text("kind")));
                }
            }
        }
    }
    out
}

/// Waits until some bridge of `brokers` has a route for a temporary destination of broker
/// `home` (`/remote-temp-queue/ID:<home>:…` or `/remote-temp-topic/…`): the requester's
/// consumer there is known. Returns its name.
fn temp_route(brokers: &[&Broker], home: &str) -> String {
    eventually(WAIT, || {
        let all = routes(brokers);
        all.iter()
            .find(|(d, kind)| {
                kind == "demand"
                    && (d.starts_with(&format!("/remote-temp-queue/ID:{home}:"))
                        || d.starts_with(&format!("/remote-temp-topic/ID:{home}:")))
            })
            .map(|(d, _)| d.clone())
            .ok_or(format!(
                "no route for a temporary destination of {home}: {all:?}"
            ))
    })
}

/// One request and its reply. `requester` (on its broker, named `home`) subscribes to
/// `local` (`/temp-queue/…` or `/temp-topic/…`) and asks on `requests`; `replier` (on the
/// other broker, already subscribed to `requests`) answers. Once `brokers`' bridges show the
/// route for the requester's temporary destination (the replier's broker accepts the reply
/// only then), the reply must reach the requester under its own name, marked as forwarded by
/// `replier_broker`. Returns the name the replier was shown.
fn request_reply(
    requester: &mut Client,
    replier: &mut Client,
    (home, replier_broker): (&str, &str),
    local: &str,
    requests: &str,
    brokers: &[&Broker],
) -> String {
    requester.subscribe(local, "replies", "auto", &[]);
    let route = temp_route(brokers, home);
    let correlation = unique("c");
    requester.send_sync(
        requests,
        "what time is it?",
        &[("reply-to", local), ("correlation-id", &correlation)],
    );
    let request = replier.expect_message();
    assert_eq!(request.text(), "what time is it?");
    let reply_to = request.get("reply-to").expect("reply-to").to_string();
    let kind = match local.starts_with("/temp-queue/") {
        true => "queue",
        false => "topic",
    };
    assert!(
        reply_to.starts_with(&format!("/remote-temp-{kind}/ID:{home}:")),
        "the requester's broker-wide name, naming its broker: {request:?}"
    );
    assert_eq!(route, reply_to, "the route stands for the reply-to");
    replier.send_sync(
        &reply_to,
        "noon",
        &[("correlation-id", &correlation), ("persistent", "true")],
    );
    let reply = requester.expect_message();
    assert_eq!(reply.text(), "noon", "{reply:?}");
    assert_eq!(
        reply.get("destination"),
        Some(local),
        "its own name: {reply:?}"
    );
    assert_eq!(reply.get("correlation-id"), Some(correlation.as_str()));
    assert_eq!(reply.get("stompbox-broker-path"), Some(replier_broker));
    requester.expect_silence(QUIET);
    reply_to
}

#[test]
fn a_reply_sent_on_another_broker_reaches_the_requesters_temp_queue() {
    let (a, b) = connected_both_ways();
    let requests = format!("/queue/{}", unique("requests"));
    let mut replier = b.connect("1.2");
    replier.subscribe(&requests, "r", "auto", &[]);
    let mut requester = a.connect("1.2");
    let reply_to = request_reply(
        &mut requester,
        &mut replier,
        ("a", "b"),
        "/temp-queue/replies",
        &requests,
        &[&a, &b],
    );
    // The route is B's bridge's (it forwards from B to A), listed as demand.
    assert!(
        routes(&[&b]).contains(&(reply_to.clone(), "demand".to_string())),
        "{:?}",
        routes(&[&b])
    );
    // Several replies, to one request each: same route, same name, each once.
    for n in 0..5 {
        requester.send(
            &requests,
            &format!("q{n}"),
            &[("reply-to", "/temp-queue/replies")],
        );
        let request = replier.expect_message();
        assert_eq!(request.get("reply-to"), Some(reply_to.as_str()));
        replier.send_sync(&reply_to, &format!("a{n}"), &[]);
        assert_eq!(requester.expect_message().text(), format!("a{n}"));
    }
    requester.expect_silence(QUIET);
}

#[test]
fn a_reply_sent_on_another_broker_reaches_the_requesters_temp_topic() {
    let (a, b) = connected_both_ways();
    let requests = format!("/queue/{}", unique("requests"));
    let mut replier = b.connect("1.2");
    replier.subscribe(&requests, "r", "auto", &[]);
    let mut requester = a.connect("1.2");
    request_reply(
        &mut requester,
        &mut replier,
        ("a", "b"),
        "/temp-topic/replies",
        &requests,
        &[&a, &b],
    );
}

#[test]
fn request_reply_works_both_ways_across_a_duplex_bridge() {
    // Only A has a connector (B could not reach A, say): one duplex link carries requests and
    // replies in both directions.
    let at = addresses(2);
    let a = start("a", at[0], Some(at[1].0), "duplex = true\n");
    let b = start("b", at[1], None, "");
    // A requester on A, a replier on B: the route on B for A's temporary queue is the reverse
    // half's, listed on A.
    let to_b = format!("/queue/{}", unique("requests-to-b"));
    let mut replier_b = b.connect("1.2");
    replier_b.subscribe(&to_b, "r", "auto", &[]);
    let mut requester_a = a.connect("1.2");
    let reply_to = request_reply(
        &mut requester_a,
        &mut replier_b,
        ("a", "b"),
        "/temp-queue/replies",
        &to_b,
        &[&a],
    );
    let status: serde_json::Value =
        serde_json::from_str(&a.admin_get("/api/network").expect("status")).expect("json");
    assert!(
        status[0]["reverse_routes"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["destination"] == reply_to.as_str())),
        "{status}"
    );
    // A requester on B, a replier on A: the forward half holds the route, on A.
    let to_a = format!("/queue/{}", unique("requests-to-a"));
    let mut replier_a = a.connect("1.2");
    replier_a.subscribe(&to_a, "r", "auto", &[]);
    let mut requester_b = b.connect("1.2");
    request_reply(
        &mut requester_b,
        &mut replier_a,
        ("b", "a"),
        "/temp-queue/replies",
        &to_a,
        &[&a],
    );
}

#[test]
fn once_the_requester_is_gone_a_reply_on_the_other_broker_is_an_error_and_nothing_is_kept() {
    let (a, b) = connected_both_ways();
    let requests = format!("/queue/{}", unique("requests"));
    let mut replier = b.connect("1.2");
    replier.subscribe(&requests, "r", "auto", &[]);
    let mut requester = a.connect("1.2");
    let reply_to = request_reply(
        &mut requester,
        &mut replier,
        ("a", "b"),
        "/temp-queue/replies",
        &requests,
        &[&a, &b],
    );
    requester.disconnect();
    // A's consumer advisory reaches B's bridge, which ends the route: the name is gone on B.
    eventually(WAIT, || {
        let all = routes(&[&a, &b]);
        match all.iter().any(|(d, _)| *d == reply_to) {
            false => Ok(()),
            true => Err(format!("route still listed: {all:?}")),
        }
    });
    eventually(WAIT, || match counter(&b, &reply_to, "enqueued") {
        None => Ok(()),
        Some(n) => Err(format!("{reply_to} still listed on B ({n} enqueued)")),
    });
    let receipt = replier.receipt_id();
    replier.send_frame(
        &Frame::new("SEND")
            .header("destination", reply_to.as_str())
            .header("persistent", "true")
            .header("receipt", receipt.as_str())
            .body("too late"),
    );
    let e = replier.expect_error_and_close(Some(&receipt));
    let message = e.get("message").unwrap_or_default();
    assert!(
        message.contains("temporary destination does not exist") && message.contains(&reply_to),
        "{e:?}"
    );
    // Nothing kept on either broker.
    assert_eq!(stored(&b, &reply_to), 0);
    assert_eq!(counter(&b, &reply_to, "enqueued"), None);
    assert_eq!(stored(&a, &reply_to), 0);
}
