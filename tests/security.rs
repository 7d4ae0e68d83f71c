//! Authentication end to end against the built binary: users with argon2id hashes made by
//! `stompbox passwd`, what a client with wrong credentials sees (and what it does not learn),
//! anonymous access, the per-address back-off (behind the PROXY protocol too), users
//! reloaded on SIGHUP, passcodes kept out of logs and the admin API, and TLS client
//! certificates that log users in.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::broker::Broker;
use support::client::Client;
use support::frame::connect_frame;
use support::tls::{Pki, TlsClient};
use support::WAIT;

/// User `app`'s password, and a wrong one: strings nothing else in a log contains.
const RIGHT: &str = "R1ght-pass-4413";
const WRONG: &str = "Wr0ng-pass-7731";

/// The hash `stompbox passwd` prints for `password` (read from a pipe).
fn passwd(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("stompbox passwd");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "stompbox passwd failed");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    hash
}

/// `[security]` with user `app` (password [`RIGHT`], group `users`) and `extra` keys.
fn config(extra: &str) -> String {
    format!(
        "[security]\n{extra}\nusers = [ {{ login = \"app\", password_hash = \"{}\", groups = [\"users\"] }} ]\n",
        passwd(RIGHT)
    )
}

/// CONNECT with `login`/`passcode` (each omitted when None): the broker's first frame.
fn connect(
    b: &Broker,
    login: Option<&str>,
    passcode: Option<&str>,
) -> (Client, support::frame::Frame) {
    let mut extra = Vec::new();
    if let Some(l) = login {
        extra.push(("login", l));
    }
    if let Some(p) = passcode {
        extra.push(("passcode", p));
    }
    let mut c = b.raw();
    c.send_frame(&connect_frame("1.2", &extra).header("receipt", "c"));
    let f = c.expect_frame(WAIT);
    (c, f)
}

fn assert_refused(c: &mut Client, f: &support::frame::Frame) {
    assert_eq!(f.command, "ERROR", "{f:?}");
    assert_eq!(f.get("message"), Some("authentication failed"));
    // Nothing says which part was wrong.
    let body = f.text().to_lowercase();
    assert!(
        !body.contains("unknown") && !body.contains("user"),
        "{body}"
    );
    c.expect_closed(WAIT);
}

#[test]
fn wrong_credentials_are_refused_alike_and_right_ones_connect() {
    let broker = Broker::start_with_config(&config("anonymous = false"));
    let (mut c, f) = connect(&broker, Some("app"), Some(WRONG));
    assert_refused(&mut c, &f);
    let wrong_password = f.text();
    let (mut c, f) = connect(&broker, Some("nobody"), Some(RIGHT));
    assert_refused(&mut c, &f);
    assert_eq!(
        f.text(),
        wrong_password,
        "unknown user and wrong password look the same"
    );
    let (mut c, f) = connect(&broker, None, None);
    assert_refused(&mut c, &f);
    let (mut c, f) = connect(&broker, Some("app"), Some(RIGHT));
    assert_eq!(f.command, "CONNECTED", "{f:?}");
    c.send_sync("/queue/ok", "in", &[]);
    // The log says why each was refused, never with the passcode.
    let log = broker.log_text();
    assert!(
        log.contains("authentication failed for login \"nobody\""),
        "{log}"
    );
    assert!(
        !log.contains(WRONG) && !log.contains(RIGHT),
        "a passcode in the log"
    );
    // The admin API shows who is connected, not their passcode.
    let connections = broker.admin_get("/api/connections").unwrap();
    assert!(
        connections.contains("\"app\"") && !connections.contains(RIGHT),
        "{connections}"
    );
}

#[test]
fn anonymous_access_when_on_and_logins_still_checked_once_users_exist() {
    let broker = Broker::start_with_config(&config("anonymous = true"));
    let (_c, f) = connect(&broker, None, None);
    assert_eq!(f.command, "CONNECTED");
    let (mut c, f) = connect(&broker, Some("app"), Some(WRONG));
    assert_refused(&mut c, &f);
    // Without users (the shipped config), any login is let in: nothing to check it against.
    let open = Broker::start();
    let (_c, f) = connect(&open, Some("whoever"), Some("whatever"));
    assert_eq!(f.command, "CONNECTED");
}

#[test]
fn frames_sent_behind_a_connect_wait_for_its_password_check() {
    let broker = Broker::start_with_config(&config("anonymous = false"));
    let mut consumer_side = {
        let (c, f) = connect(&broker, Some("app"), Some(RIGHT));
        assert_eq!(f.command, "CONNECTED");
        c
    };
    consumer_side.subscribe("/queue/piped", "s", "auto", &[]);
    // CONNECT and SEND in one write, twice: with the wrong passcode the SEND has no effect.
    for (passcode, body) in [(WRONG, "refused"), (RIGHT, "accepted")] {
        let mut c = broker.raw();
        let mut bytes = connect_frame("1.2", &[("login", "app"), ("passcode", passcode)]).encode();
        bytes
            .extend(support::frame::send_frame("/queue/piped", body, &[("receipt", "r")]).encode());
        c.send_raw(&bytes);
        let f = c.expect_frame(WAIT);
        if passcode == WRONG {
            assert_refused(&mut c, &f);
        } else {
            assert_eq!(f.command, "CONNECTED");
            c.expect("RECEIPT", WAIT);
        }
    }
    consumer_side.expect_body("accepted");
    consumer_side.expect_silence(Duration::from_millis(300));
}

#[test]
fn an_address_that_keeps_failing_waits_and_others_do_not_behind_the_proxy_protocol() {
    let broker = Broker::start_with_config(&format!(
        "proxy_protocol = true\n{}",
        config("anonymous = false\nfailures_before_backoff = 2\nbackoff_initial_ms = 600000\nbackoff_max_ms = 600000")
    ));
    let from = |ip: &str, passcode: &str| {
        let mut c = Client::behind_proxy(broker.addr(), ip);
        c.send_frame(&connect_frame(
            "1.2",
            &[("login", "app"), ("passcode", passcode)],
        ));
        c.expect_frame(WAIT)
    };
    for _ in 0..2 {
        assert_eq!(from("198.51.100.1", "guess").command, "ERROR");
    }
    // The right password now waits out the back-off; another client address is not held.
    let held = from("198.51.100.1", RIGHT);
    assert_eq!(held.get("message"), Some("authentication failed"));
    assert_eq!(from("198.51.100.2", RIGHT).command, "CONNECTED");
    let log = broker.log_text();
    assert!(log.contains("198.51.100.1 failed too often"), "{log}");
    assert!(log.contains("backing off"), "{log}");
    let metrics = broker.admin_get("/metrics").unwrap();
    assert!(
        metrics.contains("stompbox_auth_refused_total{reason=\"backoff\"} 1"),
        "{metrics}"
    );
}

#[test]
fn users_in_the_users_file_are_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    std::fs::write(&file, "").unwrap();
    let mut broker = Broker::start_with_config(&format!(
        "[security]\nanonymous = false\nusers_file = {file:?}\n"
    ));
    let (mut c, f) = connect(&broker, Some("late"), Some("pw"));
    assert_refused(&mut c, &f);
    std::fs::write(
        &file,
        format!(
            "[[users]]\nlogin = \"late\"\npassword_hash = \"{}\"\n",
            passwd("pw")
        ),
    )
    .unwrap();
    broker.signal(libc::SIGHUP);
    support::eventually(WAIT, || {
        let (_c, f) = connect(&broker, Some("late"), Some("pw"));
        (f.command == "CONNECTED").then_some(()).ok_or(f.command)
    });
    // A broken file on SIGHUP keeps the users in use.
    std::fs::write(
        &file,
        "[[users]]\nlogin = \"late\"\npassword_hash = \"plain\"\n",
    )
    .unwrap();
    broker.signal(libc::SIGHUP);
    support::eventually(WAIT, || {
        let log = broker.log_text();
        log.contains("users reload failed")
            .then_some(())
            .ok_or("not yet")
    });
    let (_c, f) = connect(&broker, Some("late"), Some("pw"));
    assert_eq!(f.command, "CONNECTED");
}

#[test]
fn a_bad_users_entry_stops_the_broker_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stompbox.toml");
    std::fs::write(
        &config,
        "[security]\nusers = [ { login = \"app\", password_hash = \"secret\" } ]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--admin-bind",
            "127.0.0.1:0",
        ])
        .args(["--ws-bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"app\"") && err.contains("stompbox passwd"),
        "{err}"
    );
}

#[test]
fn reads_and_writes_follow_the_authorization_entries() {
    let hash = passwd(RIGHT);
    let broker = Broker::start_with_config(&format!(
        r#"[security]
anonymous = true
users = [
  {{ login = "shop", password_hash = "{hash}", groups = ["shop"] }},
  {{ login = "auditor", password_hash = "{hash}", groups = ["audit"] }},
]
[[security.authorization]]
match = "/queue/orders.>"
read = ["shop", "audit"]
write = ["shop"]
admin = ["shop"]
[[security.authorization]]
match = "/topic/ActiveMQ.Advisory.>"
read = ["*"]
"#
    ));
    let login = |user: &str| {
        let (c, f) = connect(&broker, Some(user), Some(RIGHT));
        assert_eq!(f.command, "CONNECTED", "{f:?}");
        c
    };
    // Allowed: shop writes, the auditor reads what shop wrote.
    let mut shop = login("shop");
    shop.send_sync("/queue/orders.new", "o-1", &[]);
    let mut auditor = login("auditor");
    auditor.subscribe("/queue/orders.new", "a", "auto", &[]);
    auditor.expect_body("o-1");
    // Denied write: ActiveMQ's words, the receipt answered with the ERROR, nothing stored.
    let mut c = login("auditor");
    c.send_frame(&support::frame::send_frame(
        "/queue/orders.new",
        "forged",
        &[("receipt", "w"), ("persistent", "true")],
    ));
    let e = c.expect_frame(WAIT);
    assert_eq!(e.command, "ERROR");
    assert_eq!(
        e.get("message"),
        Some("User auditor is not authorized to write to: queue://orders.new")
    );
    assert_eq!(e.get("receipt-id"), Some("w"));
    c.expect_closed(WAIT);
    auditor.expect_silence(Duration::from_millis(300));
    // Denied read: no entry for the destination, and a wildcard broader than the entries.
    for dest in ["/queue/payroll", "/queue/>"] {
        let mut c = login("shop");
        c.send_frame(
            &support::frame::Frame::new("SUBSCRIBE")
                .header("destination", dest)
                .header("id", "s")
                .header("receipt", "r"),
        );
        let e = c.expect_frame(WAIT);
        assert_eq!(e.command, "ERROR", "{dest}: {e:?}");
        assert!(
            e.get("message")
                .unwrap()
                .contains("not authorized to read from"),
            "{e:?}"
        );
    }
    // Anonymous connections: advisories ("*") yes, orders no; a composite SEND with one
    // forbidden part sends nothing.
    let (mut anon, f) = connect(&broker, None, None);
    assert_eq!(f.command, "CONNECTED");
    anon.subscribe("/topic/ActiveMQ.Advisory.Queue", "adv", "auto", &[]);
    let mut consumer = login("shop");
    consumer.subscribe("/queue/orders.mixed", "m", "auto", &[]);
    let mut writer = login("shop");
    writer.send_frame(&support::frame::send_frame(
        "/queue/orders.mixed,/queue/payroll",
        "both",
        &[("receipt", "c")],
    ));
    let e = writer.expect_frame(WAIT);
    assert_eq!(
        e.get("message"),
        Some("User shop is not authorized to write to: queue://payroll")
    );
    consumer.expect_silence(Duration::from_millis(300));
    // Temporary destinations: the creator reads its own, anyone may reply to it.
    let mut requester = login("shop");
    requester.subscribe("/temp-queue/replies", "t", "auto", &[]);
    requester.send_sync(
        "/queue/orders.req",
        "ask",
        &[("reply-to", "/temp-queue/replies")],
    );
    let mut responder = login("auditor");
    responder.subscribe("/queue/orders.req", "q", "auto", &[]);
    let req = responder.expect_body("ask");
    let reply_to = req.get("reply-to").unwrap().to_string();
    responder.send_sync(&reply_to, "answer", &[]);
    requester.expect_body("answer");
}

#[test]
fn creating_a_destination_needs_the_admin_right() {
    let hash = passwd(RIGHT);
    // Forgotten as soon as idle: what exists is what is in use, or declared.
    let broker = Broker::start_with_config(&format!(
        r#"[destinations]
idle_timeout_ms = 0
declared = ["/queue/orders.declared"]
[security]
users = [
  {{ login = "shop", password_hash = "{hash}", groups = ["shop"] }},
  {{ login = "ops", password_hash = "{hash}", groups = ["ops"] }},
]
[[security.authorization]]
match = "/queue/orders.>"
read = ["shop", "ops"]
write = ["shop"]
admin = ["ops"]
[[security.authorization]]
match = "/topic/prices.>"
read = ["shop"]
write = ["shop"]
admin = ["ops"]
"#
    ));
    let login = |user: &str| {
        let (c, f) = connect(&broker, Some(user), Some(RIGHT));
        assert_eq!(f.command, "CONNECTED", "{f:?}");
        c
    };
    let listed = |name: &str| {
        let d = broker.admin_get("/api/destinations").unwrap();
        d.contains(&format!("\"{name}\""))
    };
    // A declared destination is listed from the start and anyone who may write uses it.
    assert!(listed("/queue/orders.declared"));
    let mut shop = login("shop");
    shop.send_sync("/queue/orders.declared", "d-1", &[]);
    // shop may write orders.new but not create it: ActiveMQ's words, the receipt answered
    // with the ERROR, and the frames pipelined behind it take no effect.
    let mut c = login("shop");
    let mut bytes = support::frame::send_frame(
        "/queue/orders.new",
        "first",
        &[("receipt", "w"), ("persistent", "true")],
    )
    .encode();
    support::frame::send_frame("/queue/orders.declared", "behind", &[]).encode_into(&mut bytes);
    c.send_raw(&bytes);
    let e = c.expect_error_and_close(Some("w"));
    assert_eq!(
        e.get("message"),
        Some("User shop is not authorized to create: queue://orders.new")
    );
    assert!(!listed("/queue/orders.new"));
    let stored: i64 = broker
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE destination = '/queue/orders.new'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0, "a refused SEND stored nothing");
    // Nor by subscribing, to a queue or a topic.
    for dest in ["/queue/orders.new", "/topic/prices.eu"] {
        let mut c = login("shop");
        c.send_frame(
            &support::frame::Frame::new("SUBSCRIBE")
                .header("destination", dest)
                .header("id", "s")
                .header("receipt", "r"),
        );
        let e = c.expect_error_and_close(Some("r"));
        assert!(
            e.get("message")
                .unwrap()
                .starts_with("User shop is not authorized to create: "),
            "{dest}: {e:?}"
        );
    }
    // A wildcard subscription creates nothing and needs read only.
    let mut prices = login("shop");
    prices.subscribe("/topic/prices.>", "p", "auto", &[]);
    // ops creates orders.new by subscribing; then shop may send to it and, once it is in use,
    // subscribe to it too.
    let mut ops = login("ops");
    ops.subscribe("/queue/orders.new", "o", "auto", &[]);
    shop.send_sync("/queue/orders.new", "o-1", &[]);
    ops.expect_body("o-1");
    let mut shop2 = login("shop");
    shop2.subscribe("/queue/orders.new", "s", "auto", &[]);
    // Gone once idle (ops and shop2 leave, nothing waits): a new connection of shop may not
    // bring it back, while the declared one stays.
    drop(ops);
    drop(shop2);
    let gone = std::time::Instant::now();
    while listed("/queue/orders.new") {
        assert!(gone.elapsed() < WAIT, "orders.new still listed once idle");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut late = login("shop");
    late.send_frame(&support::frame::send_frame(
        "/queue/orders.new",
        "late",
        &[("receipt", "l")],
    ));
    late.expect_error_and_close(Some("l"));
    let mut again = login("shop");
    again.send_sync("/queue/orders.declared", "d-2", &[]);
    assert!(listed("/queue/orders.declared"));
}

#[test]
fn a_composite_send_to_more_existing_destinations_than_a_connection_remembers_goes_through() {
    // More existing destinations in one SEND than the per-connection memo of existing ones
    // holds (1024): each is asked about once, and the SEND goes on, instead of the memo
    // forgetting the first ones and asking about them again forever.
    let hash = passwd(RIGHT);
    let names: Vec<String> = (0..1030).map(|i| format!("q{i:04}")).collect();
    let declared: Vec<String> = names.iter().map(|n| format!("\"/queue/{n}\"")).collect();
    let broker = Broker::start_with_config(&format!(
        r#"[destinations]
declared = [{}]
[security]
users = [ {{ login = "shop", password_hash = "{hash}", groups = ["shop"] }} ]
[[security.authorization]]
match = "/queue/>"
read = ["shop"]
write = ["shop"]
"#,
        declared.join(", ")
    ));
    let (mut c, f) = connect(&broker, Some("shop"), Some(RIGHT));
    assert_eq!(f.command, "CONNECTED", "{f:?}");
    c.send_sync(&names.join(","), "to all", &[]);
    c.subscribe("/queue/q1029", "s", "auto", &[]);
    c.expect_body("to all");
}

// --- the admin endpoint ----------------------------------------------------------------------

#[test]
fn the_admin_endpoint_wants_an_admin_or_the_token_except_for_health_and_metrics() {
    use base64::Engine;
    use support::http::request_with;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let token = "t0ken-for-scripts-5566";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let hash = passwd(RIGHT);
    let broker = Broker::start_with_config(&format!(
        r#"[admin]
auth = "always"
token_file = {token_file:?}
[security]
users = [
  {{ login = "ops", password_hash = "{hash}", groups = ["admins"] }},
  {{ login = "app", password_hash = "{hash}", groups = ["users"] }},
]
"#
    ));
    let admin = broker.admin_addr();
    let host = admin.to_string();
    let get = |path: &str, auth: Option<String>| {
        let mut headers = vec![("Host", host.as_str())];
        let value;
        if let Some(a) = auth {
            value = a;
            headers.push(("Authorization", value.as_str()));
        }
        request_with(admin, "GET", path, &headers, "")
    };
    let basic = |user: &str, pass: &str| {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Some(format!("Basic {b}"))
    };
    // Open to load balancers and Prometheus.
    assert_eq!(get("/health", None).status, 200);
    assert_eq!(get("/metrics", None).status, 200);
    // Everything else: 401 with a Basic challenge (a browser then asks), 403 for a user not
    // in admin_group, 200 for an admin or the token.
    for path in ["/", "/api/destinations", "/api/connections", "/client/"] {
        let r = get(path, None);
        assert_eq!(r.status, 401, "{path}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .starts_with("Basic realm="),
            "{path}"
        );
    }
    assert_eq!(get("/api/destinations", basic("ops", WRONG)).status, 401);
    assert_eq!(get("/api/destinations", basic("app", RIGHT)).status, 403);
    assert_eq!(get("/api/destinations", basic("ops", RIGHT)).status, 200);
    assert_eq!(get("/", basic("ops", RIGHT)).status, 200);
    assert_eq!(
        get("/api/connections", Some(format!("Bearer {token}"))).status,
        200
    );
    assert_eq!(
        get("/api/connections", Some("Bearer not-the-token".into())).status,
        401
    );
    // A state change with credentials (and the CSRF header) works.
    let mut c = broker.connect("1.2");
    c.send_sync("/queue/purge-me", "x", &[]);
    let auth = basic("ops", RIGHT).unwrap();
    let purge = request_with(
        admin,
        "POST",
        "/api/purge?destination=/queue/purge-me",
        &[
            ("Host", &host),
            ("Authorization", &auth),
            ("X-Stompbox-Request", "1"),
        ],
        "",
    );
    assert_eq!(purge.status, 200, "{}", purge.body);
    let without = request_with(
        admin,
        "POST",
        "/api/purge?destination=/queue/purge-me",
        &[("Host", &host), ("X-Stompbox-Request", "1")],
        "",
    );
    assert_eq!(without.status, 401);
    // Neither the passcode nor the token is in the log.
    let log = broker.log_text();
    assert!(
        !log.contains(RIGHT) && !log.contains(token),
        "a secret in the log"
    );
}

#[test]
fn an_admin_endpoint_reachable_from_other_hosts_cannot_be_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stompbox.toml");
    std::fs::write(&config, "[admin]\nauth = \"never\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stompbox"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--admin-bind",
            "0.0.0.0:0",
        ])
        .args(["--ws-bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.auth") && err.contains("0.0.0.0"),
        "{err}"
    );
}

// --- limits per client address ---------------------------------------------------------------

#[test]
fn connections_and_connect_rates_per_address_behind_the_proxy_protocol() {
    let broker = Broker::start_with_config(
        "proxy_protocol = true\n[limits]\nmax_connections_per_address = 2\n\
         max_connects_per_second_per_address = 1000000\n",
    );
    let open = |ip: &str| {
        let mut c = Client::behind_proxy(broker.addr(), ip);
        c.send_frame(&connect_frame("1.2", &[]));
        let f = c.expect_frame(WAIT);
        (c, f)
    };
    let (a1, f) = open("198.51.100.10");
    assert_eq!(f.command, "CONNECTED");
    let (_a2, f) = open("198.51.100.10");
    assert_eq!(f.command, "CONNECTED");
    let (mut a3, f) = open("198.51.100.10");
    assert_eq!(f.command, "ERROR");
    assert_eq!(
        f.get("message"),
        Some("limit exceeded: max_connections_per_address (2)")
    );
    a3.expect_closed(WAIT);
    // Another client behind the same balancer is not held.
    let (_b, f) = open("198.51.100.11");
    assert_eq!(f.command, "CONNECTED");
    // A slot comes back when its connection closes.
    a1.disconnect();
    support::eventually(WAIT, || {
        let (_c, f) = open("198.51.100.10");
        (f.command == "CONNECTED").then_some(()).ok_or(f.command)
    });
    let log = broker.log_text();
    assert!(
        log.contains("198.51.100.10") && log.contains("max_connections_per_address"),
        "{log}"
    );
    let metrics = broker.admin_get("/metrics").unwrap();
    assert!(
        metrics
            .contains("stompbox_connections_refused_total{reason=\"max_connections_per_address\"}"),
        "{metrics}"
    );

    // One new connection a second from an address: twenty opened back to back cannot all be
    // let in (they would have to take 19 s), and another address still is.
    let slow = Broker::start_with_config(
        "proxy_protocol = true\n[limits]\nmax_connects_per_second_per_address = 1\n",
    );
    let open_slow = |ip: &str| {
        let mut c = Client::behind_proxy(slow.addr(), ip);
        c.send_frame(&connect_frame("1.2", &[]));
        c.expect_frame(WAIT)
    };
    let refused = (0..20)
        .map(|_| open_slow("203.0.113.50"))
        .filter(|f| {
            f.get("message") == Some("limit exceeded: max_connects_per_second_per_address (1)")
        })
        .count();
    assert!(
        refused > 0,
        "twenty connects in a row at one a second all let in"
    );
    assert_eq!(open_slow("203.0.113.51").command, "CONNECTED");
}

// --- certificate logins ----------------------------------------------------------------------

/// A CA with the broker's certificate and two client certificates: `orders`
/// (`CN=orders-svc,O=Example Corp`) and `stranger` (`CN=stranger,O=Example Corp`).
fn client_pki() -> Pki {
    let pki = Pki::new();
    pki.issue("server", &["127.0.0.1"], "server");
    for (file, cn) in [("orders", "orders-svc"), ("stranger", "stranger")] {
        pki.issue_to(
            file,
            &[],
            &[
                (rcgen::DnType::OrganizationName, "Example Corp"),
                (rcgen::DnType::CommonName, cn),
            ],
        );
    }
    pki
}

/// A broker whose TLS listener verifies client certificates when sent, anonymous access
/// off, and `[security]` `users` (and what follows) as given.
fn certificate_broker(pki: &Pki, security: &str) -> Broker {
    Broker::start_with_config(&format!(
        "{}[security]\nanonymous = false\n{security}",
        pki.config(&format!(
            "client_auth = \"optional\"\nclient_ca = {:?}\n",
            pki.path("ca.pem")
        ))
    ))
}

/// Users `orders` (by certificate only, group `shop`) and `app` (password [`RIGHT`], group
/// `users`).
fn certificate_users() -> String {
    format!(
        r#"users = [
  {{ login = "orders", certificate_subject = "CN=orders-svc,O=Example Corp", groups = ["shop"] }},
  {{ login = "app", password_hash = "{}", groups = ["users"] }},
]
"#,
        passwd(RIGHT)
    )
}

/// CONNECT over TLS with the client certificate `identity` (none when None) and `headers`.
fn connect_tls(
    b: &Broker,
    pki: &Pki,
    identity: Option<&str>,
    headers: &[(&str, &str)],
) -> (TlsClient, Option<support::frame::Frame>) {
    TlsClient::connect(
        b.listener("ssl"),
        pki.client(identity),
        &connect_frame("1.2", headers),
    )
}

#[test]
fn a_client_certificate_logs_its_user_in_without_a_passcode_with_the_users_rights() {
    let pki = client_pki();
    let broker = certificate_broker(
        &pki,
        &format!(
            "{}[[security.authorization]]\nmatch = \"/queue/orders.>\"\nread = [\"shop\"]\n\
             write = [\"shop\"]\nadmin = [\"shop\"]\n[[security.authorization]]\n\
             match = \"/queue/app.>\"\nread = [\"users\"]\nwrite = [\"users\"]\n\
             admin = [\"users\"]\n",
            certificate_users()
        ),
    );
    let (mut c, f) = connect_tls(&broker, &pki, Some("orders"), &[]);
    assert_eq!(f.expect("an answer").command, "CONNECTED");
    let listed = broker.admin_get("/api/connections").unwrap();
    assert!(
        listed.contains(
            r#""login":"orders","auth":"certificate","certificate":"CN=orders-svc,O=Example Corp""#
        ),
        "{listed}"
    );
    // The user's rights: its group may write orders, not what app's group may.
    c.send(&support::frame::send_frame(
        "/queue/orders.new",
        "o-1",
        &[("receipt", "w1")],
    ));
    assert_eq!(c.expect("RECEIPT").get("receipt-id"), Some("w1"));
    c.send(&support::frame::send_frame(
        "/queue/app.jobs",
        "x",
        &[("receipt", "w2")],
    ));
    let e = c.expect("ERROR");
    assert_eq!(
        e.get("message"),
        Some("User orders is not authorized to write to: queue://app.jobs")
    );
    // Naming its own login is fine; a passcode sent along is not checked.
    let (_c, f) = connect_tls(
        &broker,
        &pki,
        Some("orders"),
        &[("login", "orders"), ("passcode", WRONG)],
    );
    assert_eq!(f.expect("an answer").command, "CONNECTED");
    // No password check ran: none was refused, none was needed.
    let metrics = broker.admin_get("/metrics").unwrap();
    assert!(
        !metrics.contains("stompbox_auth_refused_total"),
        "{metrics}"
    );
}

#[test]
fn a_certificate_of_no_user_falls_back_to_the_login_and_one_of_another_user_is_refused() {
    let pki = client_pki();
    let broker = certificate_broker(&pki, &certificate_users());
    let refused = |f: Option<support::frame::Frame>| {
        let f = f.expect("an answer");
        assert_eq!(f.command, "ERROR", "{f:?}");
        assert_eq!(f.get("message"), Some("authentication failed"));
    };
    // A certificate whose subject no user has: as without one (anonymous access is off).
    let (_c, f) = connect_tls(&broker, &pki, Some("stranger"), &[]);
    refused(f);
    let (_c, f) = connect_tls(
        &broker,
        &pki,
        Some("stranger"),
        &[("login", "app"), ("passcode", RIGHT)],
    );
    assert_eq!(f.expect("an answer").command, "CONNECTED");
    let listed = broker.admin_get("/api/connections").unwrap();
    assert!(
        listed.contains(
            r#""login":"app","auth":"password","certificate":"CN=stranger,O=Example Corp""#
        ),
        "{listed}"
    );
    // orders' certificate naming app's login (with app's passcode): refused, and closed.
    let (mut c, f) = connect_tls(
        &broker,
        &pki,
        Some("orders"),
        &[("login", "app"), ("passcode", RIGHT)],
    );
    refused(f);
    assert!(c.next_frame().is_none(), "closed after the ERROR");
    // orders has no password: no passcode logs it in without its certificate.
    let (mut c, f) = connect(&broker, Some("orders"), Some(""));
    assert_refused(&mut c, &f);
    let log = broker.log_text();
    assert!(
        log.contains(
            "authentication failed for login \"app\": the client certificate is another user's \
             (client certificate \"CN=orders-svc,O=Example Corp\")"
        ),
        "{log}"
    );
    assert!(
        log.contains("no login given and anonymous access is off (client certificate \"CN=stranger,O=Example Corp\")"),
        "{log}"
    );
    assert!(!log.contains(RIGHT), "a passcode in the log");
}

#[test]
fn certificate_subjects_in_the_users_file_are_reloaded_on_sighup() {
    let pki = client_pki();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    std::fs::write(&file, "").unwrap();
    let mut broker = certificate_broker(&pki, &format!("users_file = {file:?}\n"));
    let (_c, f) = connect_tls(&broker, &pki, Some("orders"), &[]);
    assert_eq!(f.expect("an answer").command, "ERROR");
    std::fs::write(
        &file,
        "[[users]]\nlogin = \"orders\"\ncertificate_subject = \"CN=orders-svc, O=Example Corp\"\n",
    )
    .unwrap();
    broker.signal(libc::SIGHUP);
    support::eventually(WAIT, || {
        let (_c, f) = connect_tls(&broker, &pki, Some("orders"), &[]);
        let command = f.map(|f| f.command).unwrap_or_default();
        (command == "CONNECTED").then_some(()).ok_or(command)
    });
    // Two users with one subject: the reload fails and the users in use stay.
    std::fs::write(
        &file,
        "[[users]]\nlogin = \"a\"\ncertificate_subject = \"CN=orders-svc,O=Example Corp\"\n\
         [[users]]\nlogin = \"b\"\ncertificate_subject = \"CN=orders-svc,O=Example Corp\"\n",
    )
    .unwrap();
    broker.signal(libc::SIGHUP);
    support::eventually(WAIT, || {
        let log = broker.log_text();
        log.contains("users reload failed")
            .then_some(())
            .ok_or("not yet")
    });
    assert!(
        broker
            .log_text()
            .contains("users \"a\" and \"b\" have the same certificate_subject"),
        "{}",
        broker.log_text()
    );
    let (_c, f) = connect_tls(&broker, &pki, Some("orders"), &[]);
    assert_eq!(f.expect("an answer").command, "CONNECTED");
}
