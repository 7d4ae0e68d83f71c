//! The queries in docs/sqlite.md run, as written, against the store of a live broker, and
//! `queue_depths` agrees with what a consumer then receives.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Broker;

/// Reads frames (NUL-terminated, no bodies with NUL here) until `n` start with `command`.
fn read_frames(s: &mut TcpStream, command: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} {command} frames"
        );
        let mut chunk = [0u8; 4096];
        let k = s.read(&mut chunk).unwrap();
        assert!(k > 0, "connection closed");
        buf.extend_from_slice(&chunk[..k]);
        while let Some(p) = buf.iter().position(|&b| b == 0) {
            let frame: Vec<u8> = buf.drain(..=p).collect();
            let text = String::from_utf8_lossy(&frame[..frame.len() - 1])
                .trim_start()
                .to_string();
            if text.starts_with(command) {
                out.push(text);
            }
        }
    }
    out
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        .unwrap();
    read_frames(&mut s, "CONNECTED", 1);
    s
}

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
    let mut p = connect(broker.addr());
    for i in 0..7 {
        let frame = format!(
            "SEND\ndestination:/queue/orders\npersistent:true\ntype:order\npriority:{}\nreceipt:r{i}\n\nbody{i}\0",
            i % 10
        );
        p.write_all(frame.as_bytes()).unwrap();
    }
    p.write_all(b"SEND\ndestination:/queue/other\npersistent:true\nreceipt:x\n\nx\0")
        .unwrap();
    read_frames(&mut p, "RECEIPT", 8);

    let queries = documented_queries();
    assert_eq!(
        queries.len(),
        10,
        "docs/sqlite.md should have ten numbered queries"
    );
    let db = broker.db_path();
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    for q in &queries {
        let mut stmt = conn
            .prepare(q)
            .unwrap_or_else(|e| panic!("query fails: {e}\n{q}"));
        let mut rows = stmt.query([]).unwrap();
        while rows.next().unwrap().is_some() {}
    }
    // The sqlite3 shell runs them as well (fed on stdin, as pasted); `make test` installs it.
    let version = Command::new("sqlite3").arg("-version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "the sqlite3 shell is not on PATH; `make test` installs it (apt-get install sqlite3)"
    );
    {
        for q in &queries {
            let mut child = Command::new("sqlite3")
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

    let depth: i64 = conn
        .query_row(
            "SELECT messages FROM queue_depths WHERE destination = '/queue/orders'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(depth, 7);
    let typed: i64 = conn
        .query_row(
            "SELECT count(*) FROM messages WHERE json_extract(headers, '$.type') = 'order'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(typed, 7);

    let mut c = connect(broker.addr());
    c.write_all(b"SUBSCRIBE\nid:s\ndestination:/queue/orders\nack:client-individual\n\n\0")
        .unwrap();
    let msgs = read_frames(&mut c, "MESSAGE", depth as usize);
    for m in &msgs {
        let ack = m.lines().find_map(|l| l.strip_prefix("ack:")).unwrap();
        c.write_all(format!("ACK\nid:{ack}\n\n\0").as_bytes())
            .unwrap();
    }
    c.write_all(b"DISCONNECT\nreceipt:bye\n\n\0").unwrap();
    read_frames(&mut c, "RECEIPT", 1);
    // Acks are committed in the background within milliseconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: i64 = conn
            .query_row(
                "SELECT messages FROM queue_depths WHERE destination = '/queue/orders'",
                [],
                |r| r.get(0),
            )
            .unwrap();
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
