//! `stompbox bench`, `produce` and `consume` run as processes against a `stompbox serve` child
//! on port 0 with a temp data dir. Every child is killed when its guard drops, pass or fail.
//! These tests check counts (nothing lost, nothing duplicated), never timings.

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::Broker;

/// How long any one child may run before the test gives up on it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

const STOMPBOX: &str = env!("CARGO_BIN_EXE_stompbox");

/// Runs `stompbox ARGS`, killing it if it outlives [`CHILD_TIMEOUT`].
fn stompbox(args: &[&str]) -> Output {
    let child = Command::new(STOMPBOX)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stompbox");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CHILD_TIMEOUT) {
        Ok(output) => output.expect("wait for stompbox"),
        Err(_) => {
            // The waiting thread owns the Child; kill by its pid, then report.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("stompbox {args:?} did not finish within {CHILD_TIMEOUT:?}");
        }
    }
}

/// The `--url` of `broker`.
fn url(broker: &Broker) -> String {
    format!("tcp://{}", broker.addr())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `stompbox bench … --json` and returns the parsed summary.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", "--json", "--no-progress"];
    all.extend_from_slice(args);
    let out = stompbox(&all);
    assert!(
        out.status.success(),
        "bench failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn bench_queue_client_individual_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    let started = Instant::now();
    let summary = bench_json(&[
        "--url",
        &url(&broker),
        "--destination",
        "/queue/bench.test",
        "--count",
        "200",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--ack",
        "client-individual",
        "--prefetch",
        "10",
        "--drain-timeout",
        "10s",
    ]);
    assert_eq!(summary["produced"], 200, "{summary}");
    assert_eq!(summary["unique"], 200, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["duplicated"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(summary["latency_p50_us"].is_u64(), "{summary}");
    assert!(started.elapsed() < CHILD_TIMEOUT);
}

#[test]
fn bench_persistent_sync_topic_and_fill_drain() {
    let broker = Broker::start();
    let sync = bench_json(&[
        "--url",
        &url(&broker),
        "--destination",
        "/queue/bench.sync",
        "--count",
        "50",
        "--persistent",
        "--send",
        "sync",
    ]);
    assert_eq!(
        (sync["lost"].clone(), sync["duplicated"].clone()),
        (0.into(), 0.into())
    );
    assert!(sync["confirm_p50_us"].is_u64(), "{sync}");

    let topic = bench_json(&[
        "--url",
        &url(&broker),
        "--destination",
        "/topic/bench.fanout",
        "--count",
        "100",
        "--consumers",
        "3",
        "--send",
        "batch:10",
    ]);
    assert_eq!(topic["consumed"], 300, "{topic}");
    assert_eq!(topic["lost"], 0, "{topic}");

    let fill = bench_json(&[
        "--url",
        &url(&broker),
        "--destination",
        "/queue/bench.fill",
        "--mode",
        "fill",
        "--count",
        "300",
        "--producers",
        "2",
        "--persistent",
        "--size",
        "1024",
    ]);
    assert_eq!(fill["produced"], 300, "{fill}");
    let drain = bench_json(&[
        "--url",
        &url(&broker),
        "--destination",
        "/queue/bench.fill",
        "--mode",
        "drain",
        "--count",
        "300",
        "--ack",
        "client",
        "--prefetch",
        "50",
    ]);
    assert_eq!(drain["unique"], 300, "{drain}");
    assert_eq!(drain["lost"], 0, "{drain}");
    assert_eq!(drain["duplicated"], 0, "{drain}");
}

#[test]
fn produce_then_consume_round_trip() {
    let broker = Broker::start();
    let out = stompbox(&[
        "produce",
        "--url",
        &url(&broker),
        "--destination",
        "/queue/roundtrip",
        "--count",
        "3",
        "--persistent",
        "--receipt",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "produced 3 messages to /queue/roundtrip"
    );
    let out = stompbox(&[
        "produce",
        "--url",
        &url(&broker),
        "--destination",
        "/queue/roundtrip",
        "--body",
        "last one",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = stompbox(&[
        "consume",
        "--url",
        &url(&broker),
        "--destination",
        "/queue/roundtrip",
        "--count",
        "4",
        "--ack",
        "client-individual",
        "--timeout",
        "10s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "message 1\nmessage 2\nmessage 3\nlast one\n"
    );

    // Everything was acked: the queue is empty now.
    let out = stompbox(&[
        "consume",
        "--url",
        &url(&broker),
        "--destination",
        "/queue/roundtrip",
        "--timeout",
        "300ms",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "0");
}

#[test]
fn bad_failover_option_is_refused() {
    let out = stompbox(&[
        "produce",
        "--url",
        "failover:(tcp://127.0.0.1:1)?maxReconectAttempts=1",
        "--destination",
        "/queue/x",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown option \"maxReconectAttempts\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sqlite_baseline_reports_commits_per_second() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = bench_json(&[
        "--mode",
        "sqlite",
        "--sqlite-baseline",
        dir.path().to_str().expect("utf-8 temp path"),
        "--sqlite-duration",
        "200ms",
    ]);
    assert!(
        summary["sqlite_commits_per_s"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "{summary}"
    );
}

#[test]
fn failover_bench_survives_a_broker_kill_without_loss() {
    // Fixed ports: the broker comes back where the bench's failover URL points.
    let mut broker = Broker::new("").on_fixed_ports();
    broker.start_again();
    let addr = broker.addr();
    let url = format!(
        "failover:(tcp://{addr})?initialReconnectDelay=20&maxReconnectDelay=200\
         &maxReconnectAttempts=200"
    );
    let bench = std::thread::spawn(move || {
        bench_json(&[
            "--url",
            &url,
            "--destination",
            "/queue/bench.failover",
            "--persistent",
            "--send",
            "sync",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--ack",
            "client-individual",
            "--duration",
            "3s",
            "--drain-timeout",
            "10s",
        ])
    });
    std::thread::sleep(Duration::from_millis(1200));
    // kill -9: no goodbye to the clients; the store keeps every receipted message.
    broker.kill9();
    std::thread::sleep(Duration::from_millis(300));
    broker.start_again();
    let summary = bench.join().expect("bench thread");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert!(
        summary["reconnects"].as_u64().is_some_and(|r| r >= 4),
        "{summary}"
    );
    assert!(
        summary["produced"].as_u64().is_some_and(|p| p > 0),
        "{summary}"
    );
}

#[test]
fn bench_sends_to_one_broker_and_consumes_from_its_peer() {
    // b receives what a's bridge forwards; the bench produces on a and consumes on b.
    let b = Broker::start_with_config("broker_name = \"b\"\n");
    let a = Broker::start_with_config(&format!(
        "broker_name = \"a\"\n\n[[network]]\nname = \"to-b\"\n\
         uri = \"static:(tcp://{})?initialReconnectDelay=100&maxReconnectDelay=500\"\n\
         static_included = [\"/queue/bench.net\"]\n",
        b.addr()
    ));
    let summary = bench_json(&[
        "--url",
        &url(&a),
        "--consume-url",
        &url(&b),
        "--destination",
        "/queue/bench.net",
        "--count",
        "200",
        "--persistent",
        "--drain-timeout",
        "20s",
    ]);
    assert_eq!(summary["produced"], 200, "{summary}");
    assert_eq!(summary["unique"], 200, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["duplicated"], 0, "{summary}");
    assert_eq!(summary["foreign"], 0, "{summary}");
    // Consumed on b: every message crossed the bridge (a consumer on a would have taken some).
    assert_eq!(
        support::network::counter(&b, "/queue/bench.net", "enqueued"),
        Some(200)
    );
}
