//! Frames a client pipelines while the broker has stopped reading it (producer window full,
//! COMMIT in progress) are still served once it reads again, without new bytes arriving.

mod support;

use std::time::Duration;

use support::{Broker, Client};

#[test]
fn pipelined_sends_beyond_the_producer_window_are_all_served() {
    let broker = Broker::start();
    let mut s = broker.raw();
    let mut burst = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0".to_vec();
    // Far more than the producer window (1024), in one write, then one receipt at the end.
    for i in 0..5000 {
        burst.extend_from_slice(format!("SEND\ndestination:/queue/pipelined\n\n{i}\0").as_bytes());
    }
    burst.extend_from_slice(b"SEND\ndestination:/queue/pipelined\nreceipt:last\n\nend\0");
    s.send_raw(&burst);
    s.expect("CONNECTED", support::WAIT);
    s.await_receipt("last", Duration::from_secs(20));
}

#[test]
fn frames_pipelined_after_a_commit_are_served() {
    let broker = Broker::start();
    let mut s = broker.raw();
    let burst = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0\
BEGIN\ntransaction:t\n\n\0\
SEND\ndestination:/queue/tx\npersistent:true\ntransaction:t\n\none\0\
COMMIT\ntransaction:t\n\n\0\
SEND\ndestination:/queue/tx\nreceipt:after\n\ntwo\0";
    s.send_raw(burst);
    s.expect("CONNECTED", support::WAIT);
    s.await_receipt("after", Duration::from_secs(10));
}

/// Producers of 8 MiB frames to a queue nobody consumes: flow control holds them once the
/// memory limits are reached, counted in bytes, so the broker's memory stays near the global
/// limit instead of growing with every frame its producer windows would admit.
#[test]
fn large_frames_are_held_by_flow_control_near_the_global_memory_limit() {
    const MIB: u64 = 1024 * 1024;
    const GLOBAL: u64 = 64 * MIB;
    const PRODUCERS: u64 = 4;
    const FRAME: u64 = 8 * MIB;
    const FRAMES_EACH: usize = 40;
    let broker = Broker::start_with_config(&format!(
        "[destinations]\nglobal_memory_limit_bytes = {GLOBAL}\nmemory_limit_bytes = {}\n",
        32 * MIB
    ));
    let baseline = peak_rss(&broker);
    let addr = broker.addr();
    let mut frame = b"SEND\ndestination:/queue/big\n\n".to_vec();
    frame.resize(frame.len() + FRAME as usize, b'x');
    frame.push(0);
    let frame = std::sync::Arc::new(frame);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let frame = frame.clone();
            std::thread::spawn(move || {
                let mut s = Client::open(addr);
                s.connect("1.2");
                // A write that cannot finish for this long means flow control holds us.
                s.set_write_timeout(Duration::from_secs(3));
                let mut written = 0;
                while written < FRAMES_EACH && s.try_send_raw(&frame).is_ok() {
                    written += 1;
                }
                (written, s)
            })
        })
        .collect();
    let held: Vec<(usize, Client)> = producers.into_iter().map(|h| h.join().unwrap()).collect();
    let written: usize = held.iter().map(|(n, _)| n).sum();
    let peak = peak_rss(&broker);
    eprintln!(
        "{written} frames of 8 MiB written by {PRODUCERS} producers; broker peak RSS {} MiB \
         (baseline {} MiB, global limit {} MiB)",
        peak / MIB,
        baseline / MIB,
        GLOBAL / MIB
    );
    assert!(
        written < PRODUCERS as usize * FRAMES_EACH,
        "no producer was held by flow control"
    );
    // The documented bound: the global limit, plus per producer its window (one frame past
    // the 4 MiB producer window) and one frame being read, plus allocator slack.
    let bound = baseline + GLOBAL + PRODUCERS * (2 * FRAME + 4 * MIB) + 64 * MIB;
    assert!(
        peak < bound,
        "peak RSS {} MiB over the bound {} MiB",
        peak / MIB,
        bound / MIB
    );
    // A consumer drains the queue: every frame a producer wrote whole arrives, whole (a
    // frame cut by the write timeout is incomplete and never sent). The producers stay
    // connected until then, so what flow control held in their sockets is read too.
    let mut c = broker.connect("1.2");
    c.subscribe("/queue/big", "s", "auto", &[]);
    let got = c.receive(written, Duration::from_secs(60));
    assert!(
        got.iter().all(|m| m.body.len() as u64 == FRAME),
        "a message arrived cut short"
    );
    c.expect_silence(support::QUIET);
    drop(held);
}

/// Open transactions are held in the session until COMMIT, so their bytes have a cap of their
/// own: past it the transactional SEND is an ERROR, and nothing of the transaction is stored.
#[test]
fn transaction_past_max_transaction_bytes_is_an_error() {
    let broker = Broker::start_with_config("[limits]\nmax_transaction_bytes = 1048576\n");
    let mut s = broker.raw();
    let mut burst = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0BEGIN\ntransaction:t\n\n\0".to_vec();
    for _ in 0..3 {
        burst.extend_from_slice(b"SEND\ndestination:/queue/txbytes\ntransaction:t\n\n");
        burst.extend(std::iter::repeat_n(b'x', 512 * 1024));
        burst.push(0);
    }
    burst.extend_from_slice(b"COMMIT\ntransaction:t\nreceipt:c\n\n\0");
    s.send_raw(&burst);
    s.expect("CONNECTED", support::WAIT);
    // An ERROR, not the COMMIT's RECEIPT.
    let e = s.expect("ERROR", Duration::from_secs(10));
    let text = format!("{} {}", e.get("message").unwrap_or(""), e.text());
    assert!(text.contains("max_transaction_bytes"), "{e:?}");
    assert_ne!(
        e.get("receipt-id"),
        Some("c"),
        "the COMMIT must not happen: {e:?}"
    );
    let mut c = broker.connect("1.2");
    c.subscribe("/queue/txbytes", "s", "auto", &[]);
    c.expect_silence(support::QUIET);
}

/// Durable subscriptions outlive their connections, so the broker caps how many it keeps:
/// creating one past `max_durable_subscriptions` is an ERROR; re-attaching to an existing one
/// and creating one after another was unsubscribed both work.
#[test]
fn durable_subscriptions_past_their_limit_are_an_error() {
    let mut broker = Broker::start_with_config("[destinations]\nmax_durable_subscriptions = 2\n");
    // RabbitMQ style (`durable:true`, no client-id) and ActiveMQ style both count.
    let mut a = broker.connect("1.2");
    a.subscribe(
        "/topic/d",
        "one",
        "client-individual",
        &[("durable", "true")],
    );
    let mut b = broker.connect_with("1.2", &[("client-id", "b")]);
    b.subscribe(
        "/topic/d",
        "two",
        "client-individual",
        &[("activemq.subscriptionName", "two")],
    );
    let mut c = broker.connect("1.2");
    c.send_frame(
        &support::Frame::new("SUBSCRIBE")
            .header("destination", "/topic/d")
            .header("id", "three")
            .header("durable", "true")
            .header("receipt", "r3"),
    );
    let e = c.expect("ERROR", support::WAIT);
    assert_eq!(
        e.get("message"),
        Some("limit exceeded: max_durable_subscriptions (2)"),
        "{e:?}"
    );
    assert_eq!(e.get("receipt-id"), Some("r3"));
    // Re-attaching to an existing one still works.
    a.disconnect();
    let mut a = broker.connect("1.2");
    a.subscribe(
        "/topic/d",
        "one",
        "client-individual",
        &[("durable", "true")],
    );
    // Unsubscribing one for good makes room.
    a.request(
        support::Frame::new("UNSUBSCRIBE")
            .header("id", "one")
            .header("durable", "true"),
    );
    let mut d = broker.connect("1.2");
    d.subscribe(
        "/topic/d",
        "four",
        "client-individual",
        &[("durable", "true")],
    );
    // The count survives a crash: the two stored subscriptions are counted at recovery.
    drop((b, c, d));
    broker.crash_and_restart();
    let mut e = broker.connect("1.2");
    e.send_frame(
        &support::Frame::new("SUBSCRIBE")
            .header("destination", "/topic/d")
            .header("id", "five")
            .header("durable", "true"),
    );
    let err = e.expect("ERROR", support::WAIT);
    assert_eq!(
        err.get("message"),
        Some("limit exceeded: max_durable_subscriptions (2)"),
        "{err:?}"
    );
    let mut f = broker.connect("1.2");
    f.subscribe(
        "/topic/d",
        "four",
        "client-individual",
        &[("durable", "true")],
    );
}

/// A message's body is copied out of the read buffer it arrived in. As a slice of it, a small
/// message kept in a queue kept that whole read chunk (64 KiB) alive: one connection sending,
/// in turn, a 100-byte message that stays queued and a 60 KiB one to a topic nobody listens to
/// (dropped at once) grew the broker by a read chunk per kept message, 257 MiB for 3,000 of
/// them, while its memory limits counted 0.7 MiB (now 3 to 5 MiB).
#[test]
fn small_queued_messages_do_not_pin_the_read_chunks_they_arrived_in() {
    const ROUNDS: usize = 3000;
    const MIB: u64 = 1024 * 1024;
    let broker = Broker::start();
    let mut s = broker.connect("1.2");
    let baseline = rss(&broker);
    let filler = vec![b'f'; 60 * 1024];
    let mut burst = Vec::new();
    for i in 0..ROUNDS {
        burst.extend_from_slice(format!("SEND\ndestination:/queue/kept\n\n{i:0100}\0").as_bytes());
        burst.extend_from_slice(b"SEND\ndestination:/topic/nobody\n\n");
        burst.extend_from_slice(&filler);
        burst.push(0);
    }
    burst.extend_from_slice(b"SEND\ndestination:/queue/kept\nreceipt:last\n\nlast\0");
    s.send_raw(&burst);
    s.await_receipt("last", Duration::from_secs(60));
    let grown = rss(&broker).saturating_sub(baseline);
    eprintln!(
        "{ROUNDS} kept 100-byte messages, each sent with a dropped 60 KiB one: broker grew by \
         {} MiB",
        grown / MIB
    );
    // What the queue holds is well under 1 MiB (3,001 messages of about 250 counted bytes).
    assert!(
        grown < 16 * MIB,
        "the broker grew by {} MiB for {ROUNDS} small queued messages",
        grown / MIB
    );
    let mut c = broker.connect("1.2");
    c.subscribe("/queue/kept", "s", "auto", &[]);
    c.expect("MESSAGE", support::WAIT);
}

/// Past `global_memory_limit_bytes`, producers of destinations that hold messages are held;
/// a destination its consumer keeps empty is not. Every destination used to count as full
/// then, so a request/response client on a queue of its own got its MESSAGE but never its
/// RECEIPT for as long as another queue sat full.
#[test]
fn a_queue_its_consumer_keeps_empty_is_served_while_the_broker_is_over_its_global_limit() {
    let broker = Broker::start_with_config(
        "[destinations]\nglobal_memory_limit_bytes = 1048576\nmemory_limit_bytes = 8388608\n",
    );
    // Fill a queue nobody consumes past the global limit: its producer is held (a RECEIPT
    // that does not come; the queue is far from its own 8 MiB limit).
    let mut p = broker.connect("1.2");
    let body = "x".repeat(100 * 1024);
    let mut held = false;
    for i in 0..40 {
        let id = format!("f{i}");
        p.send_frame(&support::send_frame(
            "/queue/full",
            &body,
            &[("receipt", &id)],
        ));
        match p.try_frame(Duration::from_secs(1)) {
            Ok(f) if f.command == "RECEIPT" => {}
            Err(support::ReadError::Timeout) => {
                held = true;
                break;
            }
            other => panic!("expected RECEIPT {id} or nothing, got {other:?}"),
        }
    }
    assert!(held, "40 × 100 KiB went past a 1 MiB global limit unheld");
    // A request/response client on another queue is served all the same.
    let mut c = broker.connect("1.2");
    c.subscribe("/queue/requests", "s", "auto", &[]);
    for i in 0..20 {
        let id = c.receipt_id();
        let request = format!("request {i}");
        c.send_frame(&support::send_frame(
            "/queue/requests",
            &request,
            &[("receipt", &id)],
        ));
        c.await_receipt(&id, support::WAIT);
        let m = c.expect("MESSAGE", support::WAIT);
        assert_eq!(m.text(), request);
    }
}

/// Memory the broker frees goes back to the OS: a persistent message once it is stored (and
/// dropped from memory past the queue's limit), a read buffer once its frame is out. With
/// glibc's sliding mmap threshold, large blocks came from the shards' heaps after the first
/// one was freed, and freeing one between blocks still in use lowered nothing: here the
/// broker stayed 221 to 245 MiB up holding 192 MiB (now 193).
#[test]
fn memory_freed_between_large_messages_still_held_goes_back_to_the_os() {
    const MIB: u64 = 1024 * 1024;
    const PRODUCERS: usize = 16;
    const FRAMES_EACH: usize = 6;
    const FRAME: u64 = 4 * MIB;
    // Room for every non-persistent message in memory: none is held by flow control.
    let broker = Broker::start_with_config(&format!(
        "[destinations]\nmemory_limit_bytes = {}\n",
        512 * MIB
    ));
    let baseline = rss(&broker);
    let addr = broker.addr();
    // In turn, a message kept in a queue and one sent to a topic nobody listens to (dropped
    // as soon as it is read): what is freed lies between what is kept.
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|n| {
            std::thread::spawn(move || {
                let mut s = Client::open(addr);
                s.connect("1.2");
                for i in 0..FRAMES_EACH {
                    let (dest, persistent) = match i % 2 {
                        0 => ("/queue/in-memory", false),
                        _ => ("/topic/nobody", false),
                    };
                    let mut frame = format!(
                        "SEND\ndestination:{dest}\npersistent:{persistent}\nreceipt:{n}-{i}\n\n"
                    )
                    .into_bytes();
                    frame.resize(frame.len() + FRAME as usize, b'x');
                    frame.push(0);
                    s.send_raw(&frame);
                    s.await_receipt(&format!("{n}-{i}"), support::WAIT);
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let held = (PRODUCERS * FRAMES_EACH / 2) as u64 * FRAME;
    let settled = support::eventually(support::WAIT, || {
        let grown = rss(&broker).saturating_sub(baseline);
        match grown <= held + 16 * MIB {
            true => Ok(grown),
            false => Err(format!(
                "the broker is {} MiB up, holding {} MiB",
                grown / MIB,
                held / MIB
            )),
        }
    });
    eprintln!(
        "{} MiB sent, {} MiB held; the broker is {} MiB up",
        PRODUCERS as u64 * FRAMES_EACH as u64 * FRAME / MIB,
        held / MIB,
        settled / MIB
    );
}

/// A connection's read buffer grows to the frame it reads and is given back once that frame
/// is out: connections that sent one 10 MiB frame and then sit idle (or are held by flow
/// control) keep a 64 KiB chunk each, not the buffer of their largest frame. They kept it
/// (grown by doubling to 16 MiB, 10 MiB of it touched): 20 such connections held 200 MiB.
/// Given back but kept by glibc in a shard's heap, 60 MiB stayed; now 1 MiB does.
#[test]
fn idle_connections_do_not_keep_the_buffer_of_their_largest_frame() {
    const MIB: u64 = 1024 * 1024;
    const CONNECTIONS: usize = 20;
    let broker = Broker::start();
    let baseline = rss(&broker);
    let mut frame = b"SEND\ndestination:/topic/nobody\nreceipt:big\n\n".to_vec();
    frame.resize(frame.len() + 10 * MIB as usize, b'x');
    frame.push(0);
    // Each sends one 10 MiB frame (to a topic nobody listens to: dropped once read), gets
    // its RECEIPT, and stays connected.
    let idle: Vec<Client> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = broker.connect("1.2");
            s.send_raw(&frame);
            s.await_receipt("big", support::WAIT);
            s
        })
        .collect();
    let grown = support::eventually(support::WAIT, || {
        let grown = rss(&broker).saturating_sub(baseline);
        match grown <= 16 * MIB {
            true => Ok(grown),
            false => Err(format!(
                "{CONNECTIONS} idle connections, the broker is {} MiB up",
                grown / MIB
            )),
        }
    });
    eprintln!(
        "{CONNECTIONS} idle connections after a 10 MiB frame each: the broker is {} MiB up",
        grown / MIB
    );
    drop(idle);
}

/// Resident memory (VmRSS) of the broker, in bytes.
fn rss(broker: &Broker) -> u64 {
    memory(broker).rss_kib * 1024
}

/// Peak resident memory (VmHWM) of the broker, in bytes.
fn peak_rss(broker: &Broker) -> u64 {
    memory(broker).peak_kib * 1024
}

fn memory(broker: &Broker) -> support::Memory {
    broker
        .memory()
        .expect("VmRSS and VmHWM in /proc/PID/status")
}
