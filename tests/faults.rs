//! Faults no one wrote the code for (issue 8): the data dir fills up. The broker's data dir is
//! a 16 MiB tmpfs mounted by the test (CI runs as root; where mounting is impossible the test
//! fails and says why). Producers must get an ERROR or be held, nothing receipted may be lost,
//! the broker must stay up and serve again by itself once space returns.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{send_frame, Broker, Client, Frame, ReadError, WAIT};

/// A tmpfs mounted on a directory for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {} (the disk-full test needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Sends persistent 64 KiB messages with a receipt each until the broker refuses one; returns
/// the bodies that were receipted and the ERROR frame.
fn send_until_refused(c: &mut Client, dest: &str, from: usize) -> (Vec<String>, Frame) {
    let pad = "x".repeat(64 * 1024);
    let mut receipted = Vec::new();
    for i in from.. {
        let body = format!("{i:06}:{pad}");
        let id = c.receipt_id();
        c.send_frame(&send_frame(
            dest,
            &body,
            &[("persistent", "true"), ("receipt", &id)],
        ));
        match c.try_frame(Duration::from_secs(30)) {
            Ok(f) if f.command == "RECEIPT" => receipted.push(body),
            Ok(f) if f.command == "ERROR" => return (receipted, f),
            other => panic!("message {i}: expected RECEIPT or ERROR, got {other:?}"),
        }
        assert!(i < from + 1000, "16 MiB never filled up");
    }
    unreachable!()
}

#[test]
fn disk_full_refuses_sends_keeps_what_was_receipted_and_recovers_when_space_returns() {
    let mut broker = Broker::new("durability = \"fsync\"\n");
    let _tmpfs = Tmpfs::mount(broker.data_dir(), "16m");
    // Room to give back later, as an operator freeing space would.
    let filler = broker.data_dir().join("filler");
    std::fs::write(&filler, vec![0u8; 4 << 20]).expect("write filler");
    broker.start_again();
    let dest = "/queue/full";

    let mut p = broker.connect("1.2");
    let (receipted, error) = send_until_refused(&mut p, dest, 0);
    eprintln!(
        "disk full after {} receipted 64 KiB messages: {:?}",
        receipted.len(),
        error.get("message")
    );
    assert!(
        receipted.len() > 10,
        "too few messages before the disk filled"
    );

    // The broker is still up and serving.
    assert!(broker.is_running(), "broker exited:\n{}", broker.log_tail());
    let mut c = broker.connect("1.2");

    // Space returns: the broker takes persistent messages again, by itself.
    std::fs::remove_file(&filler).expect("remove filler");
    let mut q = broker.connect("1.2");
    let after = "after the disk had room again".to_string();
    let mut stored_after = false;
    for _ in 0..50 {
        let id = q.receipt_id();
        q.send_frame(&send_frame(
            dest,
            &after,
            &[("persistent", "true"), ("receipt", &id)],
        ));
        match q.try_frame(WAIT) {
            Ok(f) if f.command == "RECEIPT" => {
                stored_after = true;
                break;
            }
            // Refused while the store has not caught up yet: a new connection retries.
            Ok(f) if f.command == "ERROR" => q = broker.connect("1.2"),
            Err(ReadError::Closed) => q = broker.connect("1.2"),
            other => panic!("expected RECEIPT or ERROR, got {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stored_after,
        "no persistent SEND was receipted after space returned:\n{}",
        broker.log_tail()
    );

    // A crash now loses nothing that was receipted, before or after the disk was full.
    drop(c);
    broker.kill9();
    broker.start_again();
    c = broker.connect("1.2");
    c.subscribe(dest, "drain", "client-individual", &[]);
    let mut got = Vec::new();
    while let Ok(m) = c.try_frame(Duration::from_secs(2)) {
        assert_eq!(m.command, "MESSAGE", "{m:?}");
        c.ack(&m);
        got.push(m.text());
    }
    let lost: Vec<&str> = receipted
        .iter()
        .filter(|b| !got.contains(b))
        .map(|b| &b[..6])
        .collect();
    assert!(lost.is_empty(), "receipted messages lost: {lost:?}");
    assert!(
        got.contains(&after),
        "the message stored after space returned is gone"
    );
}
