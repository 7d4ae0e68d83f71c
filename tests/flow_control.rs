//! Frames a client pipelines while the broker has stopped reading it (producer window full,
//! COMMIT in progress) are still served once it reads again, without new bytes arriving.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::Broker;

fn read_until(s: &mut TcpStream, needle: &[u8], within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while !got.windows(needle.len()).any(|w| w == needle) {
        assert!(
            Instant::now() < deadline,
            "no {:?} within {within:?}",
            String::from_utf8_lossy(needle)
        );
        let mut buf = [0u8; 65536];
        match s.read(&mut buf) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

#[test]
fn pipelined_sends_beyond_the_producer_window_are_all_served() {
    let broker = Broker::start();
    let mut s = TcpStream::connect(broker.addr()).unwrap();
    let mut burst = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0".to_vec();
    // Far more than the producer window (1024), in one write, then one receipt at the end.
    for i in 0..5000 {
        burst.extend_from_slice(format!("SEND\ndestination:/queue/pipelined\n\n{i}\0").as_bytes());
    }
    burst.extend_from_slice(b"SEND\ndestination:/queue/pipelined\nreceipt:last\n\nend\0");
    s.write_all(&burst).unwrap();
    read_until(&mut s, b"receipt-id:last", Duration::from_secs(20));
}

#[test]
fn frames_pipelined_after_a_commit_are_served() {
    let broker = Broker::start();
    let mut s = TcpStream::connect(broker.addr()).unwrap();
    let burst = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0\
BEGIN\ntransaction:t\n\n\0\
SEND\ndestination:/queue/tx\npersistent:true\ntransaction:t\n\none\0\
COMMIT\ntransaction:t\n\n\0\
SEND\ndestination:/queue/tx\nreceipt:after\n\ntwo\0";
    s.write_all(burst).unwrap();
    read_until(&mut s, b"receipt-id:after", Duration::from_secs(10));
}
