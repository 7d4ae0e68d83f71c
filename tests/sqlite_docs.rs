//! The queries in docs/sqlite.md run, as written, against the store of a live broker, and
//! `queue_depths` agrees with what a consumer then receives.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::store::{count, sqlite3_cli};
use support::{send_frame, Broker, WAIT};

/// The SQL blocks of docs/sqlite.md that are numbered queries (`-- N. ...`).
fn documented_queries() -> Vec<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sqlite.md")).unwrap();
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```sql\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").unwrap();
        let block = &body[..end];
        if block.trim_start().starts_with("-- ")
            && block.trim_start()[3..].starts_with(|c: char| c.is_ascii_digit())
        {
            out.push(block.to_string());
        }
        rest = &body[end + 3..];
    }
    out
}

#[test]
fn documented_queries_run_against_a_live_broker_and_depths_match() {
    let broker = Broker::start();
    let mut p = broker.connect("1.2");
    let mut burst = Vec::new();
    for i in 0..7 {
        let priority = (i % 10).to_string();
        let headers = [
            ("persistent", "true"),
            ("type", "order"),
            ("priority", priority.as_str()),
        ];
        send_frame("/queue/orders", &format!("body{i}"), &headers)
            .header("receipt", format!("r{i}"))
            .encode_into(&mut burst);
    }
    send_frame("/queue/other", "x", &[("persistent", "true")])
        .header("receipt", "x")
        .encode_into(&mut burst);
    p.send_raw(&burst);
    for i in 0..7 {
        p.await_receipt(&format!("r{i}"), WAIT);
    }
    p.await_receipt("x", WAIT);

    let queries = documented_queries();
    assert_eq!(
        queries.len(),
        12,
        "docs/sqlite.md should have twelve numbered queries"
    );
    let db = broker.db_path();
    let conn = broker.db();
    for q in &queries {
        let mut stmt = conn
            .prepare(q)
            .unwrap_or_else(|e| panic!("query fails: {e}\n{q}"));
        let mut rows = stmt.query([]).unwrap();
        while rows.next().unwrap().is_some() {}
    }
    // The sqlite3 shell runs them as well (fed on stdin, as pasted); `make test` installs it.
    let sqlite3 = sqlite3_cli();
    let version = Command::new(&sqlite3).arg("-version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "the sqlite3 shell on PATH does not run; `make test` installs it (apt-get install sqlite3)"
    );
    {
        for q in &queries {
            let mut child = Command::new(&sqlite3)
                .arg("-bail")
                .arg(&db)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(q.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && err.is_empty(),
                "sqlite3 failed on {q}: {err}"
            );
        }
    }

    // As documented under "Message ids": a first start reserves 2^32 ids above the last.
    let reserved = count(&conn, "SELECT reserved_through FROM message_ids", []);
    let stored = count(&conn, "SELECT max(message_id) FROM messages", []);
    assert_eq!(reserved, 1 << 32, "reserved_through after the first start");
    assert!(stored < reserved, "stored ids ({stored}) are reserved");

    let depth = count(
        &conn,
        "SELECT messages FROM queue_depths WHERE destination = '/queue/orders'",
        [],
    );
    assert_eq!(depth, 7);
    let typed = count(
        &conn,
        "SELECT count(*) FROM messages WHERE json_extract(headers, '$.type') = 'order'",
        [],
    );
    assert_eq!(typed, 7);

    let mut c = broker.connect("1.2");
    c.send_frame(
        &support::Frame::new("SUBSCRIBE")
            .header("id", "s")
            .header("destination", "/queue/orders")
            .header("ack", "client-individual"),
    );
    for m in c.receive(depth as usize, WAIT) {
        c.ack(&m);
    }
    c.disconnect();
    // Acks are committed in the background within milliseconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = count(
            &conn,
            "SELECT messages FROM queue_depths WHERE destination = '/queue/orders'",
            [],
        );
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acked messages still stored: {left}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
