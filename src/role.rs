//! The master/standby life cycle of one broker process.
//!
//! ```text
//!   start ─> standby ──(lease free/expired, or holder's process dead)──> master
//!              ^                                                           │
//!              └──── step down (renewal failed, or store write fenced) ────┘
//!   any role ──(SIGTERM/SIGINT)──> clean stop (master: release lease first, so a standby
//!                                   takes over at once)
//! ```
//!
//! Events from the signal handler, the lease renewer, the store writer's fence and the
//! file-lock waiter arrive on one channel; this loop is the only place the role changes.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use log::{error, info, warn};
use rusqlite::Connection;

use crate::admin::{self, AdminState, Role};
use crate::config::{Config, StepDown};
use crate::lease::{self, Acquire, FileLock, Identity};
use crate::reload::Reloadable;
use crate::shard::{Broker, LOCK_FILE};
use crate::store::{self, Fence};

/// After a store failure, a broker leaves the lease to the standbys for this many acquire
/// intervals (`lease.acquire_interval_ms`) before it competes for it (or its file lock)
/// again: a standby polling the lease row has tried at least once by then, and one waiting
/// on the file lock got it at once.
const STORE_FAILURE_HOLD_OFF_INTERVALS: u64 = 2;

/// What can change a broker's role.
pub enum Event {
    /// SIGTERM or SIGINT: stop.
    Signal,
    /// The OS file lock on `stompbox.lock` was acquired: no other live broker process holds
    /// it, so any lease holder other than us is dead or stepping down.
    FileLock(File),
    /// The file lock cannot be taken on this file system: only the lease row and its TTL
    /// decide.
    FileLockUnsupported,
    /// The lease is lost (renewal failed or a write was fenced): stop serving now.
    StepDown(String),
    /// The store writer hit an I/O failure (a failed write or fsync): stop serving now and
    /// give the lease up, so a standby recovers from what is on disk without waiting for the
    /// TTL.
    StoreFailed(String),
}

/// Runs the broker until a signal: standby until the lease is ours, then master until a
/// signal (clean stop) or a step-down (back to standby, or exit per `lease.on_step_down`).
/// `events` carries [`Event::Signal`] from the caller's signal handler; `tls` is the TLS
/// listeners' certificate and the users, loaded (and reloaded on SIGHUP) by the caller.
pub fn run(
    config: Config,
    loaded: Reloadable,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let db_path = config.db_path();
    // Creates and migrates the file (safe when a pair starts together).
    let mut conn = store::open(&db_path, config.durability)?;
    conn.busy_timeout(Duration::from_millis(config.lease.renew_interval_ms))?;

    let state = AdminState::new(String::new(), db_path.clone());
    let (admin_addr, _admin) = admin::start(&config.admin, state.clone(), loaded.auth.clone())
        .with_context(|| format!("cannot listen on admin address {}", config.admin.bind))?;
    let me = Identity::new(admin_addr.to_string());
    state.set_holder(&me.holder);
    info!("admin http={admin_addr} holder={}", me.holder);
    // A broker that becomes master at once prints its listening line first (scripts that
    // start one broker read the first line); a standby prints the admin line right away.
    let admin_line = format!("stompbox admin http={admin_addr}");
    let mut admin_announced = false;

    let lock_path = config.data_dir.join(LOCK_FILE);
    let mut file_lock: Option<File> = None;
    let mut lock_state = FileLock::Waiting;
    wait_for_file_lock(lock_path.clone(), events_tx.clone(), Duration::ZERO);
    // A free file lock is granted at once: wait a moment for it, so a broker that starts
    // alone takes the lease on its first attempt.
    match events.recv_timeout(Duration::from_millis(200)) {
        Ok(Event::FileLock(f)) => {
            file_lock = Some(f);
            lock_state = FileLock::Held;
        }
        Ok(Event::FileLockUnsupported) => lock_state = FileLock::Unsupported,
        Ok(Event::Signal) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
        Ok(Event::StepDown(_) | Event::StoreFailed(_)) | Err(RecvTimeoutError::Timeout) => {}
    }
    let lease = &config.lease;
    // After giving the lease up because of a store failure, this broker leaves it to the
    // standbys for a while (see `STORE_FAILURE_HOLD_OFF_INTERVALS`).
    let mut hold_off: Option<std::time::Instant> = None;
    loop {
        state.set(Role::Standby, None, None);
        // ---- standby ----
        let epoch = loop {
            let held_off = hold_off.is_some_and(|until| std::time::Instant::now() < until);
            let attempt = match held_off {
                true => Ok(Acquire::Held),
                false => lease::try_acquire(&mut conn, &me, lease.ttl_ms, lock_state),
            };
            match attempt {
                Ok(Acquire::Acquired(epoch)) => break epoch,
                Ok(Acquire::Held) => {}
                Ok(Acquire::YieldFileLock) => {
                    // The live master lacks the file lock (it took over an expired lease):
                    // hand it over, so the master's blocked waiter gets it, then wait again.
                    info!("lease: giving the file lock to the live master");
                    file_lock = None;
                    lock_state = FileLock::Waiting;
                    let delay = Duration::from_millis(2 * lease.renew_interval_ms);
                    wait_for_file_lock(lock_path.clone(), events_tx.clone(), delay);
                }
                Err(e) => warn!("lease: cannot read or take the lease: {e}"),
            }
            if !admin_announced {
                announce(&admin_line);
                admin_announced = true;
            }
            match events.recv_timeout(Duration::from_millis(lease.acquire_interval_ms)) {
                Ok(Event::Signal) => return Ok(()),
                Ok(Event::FileLock(f)) => {
                    file_lock = Some(f);
                    lock_state = FileLock::Held;
                }
                Ok(Event::FileLockUnsupported) => lock_state = FileLock::Unsupported,
                Ok(Event::StepDown(_) | Event::StoreFailed(_)) | Err(RecvTimeoutError::Timeout) => {
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        };
        // ---- master ----
        info!("lease acquired: epoch={epoch}; recovering and opening listeners");
        let fenced_tx = events_tx.clone();
        let failed_tx = events_tx.clone();
        let holder = me.holder.clone();
        let renewal_waiting = Arc::new(AtomicBool::new(false));
        let fence = Fence {
            renewal_waiting: renewal_waiting.clone(),
            holds: Box::new(move |conn| lease::holds(conn, &holder, epoch)),
            epoch,
            on_fenced: Box::new(move |why| {
                let _ = fenced_tx.send(Event::StepDown(why));
            }),
            on_store_failure: Box::new(move |why| {
                let _ = failed_tx.send(Event::StoreFailed(why));
            }),
        };
        let broker = match Broker::start(config.clone(), Some(fence), &loaded) {
            Ok(b) => b,
            Err(e) => {
                let _ = lease::release(&conn, &me, epoch);
                return Err(e.into());
            }
        };
        let stomp = broker.stomp_addr().to_string();
        state.set_services(Some(broker.services()));
        let _ = lease::set_stomp_address(&conn, &me, epoch, &stomp);
        state.set(Role::Master, Some(epoch), Some(stomp.clone()));
        announce(&format!("stompbox listening {}", broker.listening()));
        if !admin_announced {
            announce(&admin_line);
            admin_announced = true;
        }
        let renewing = Arc::new(AtomicBool::new(true));
        spawn_renewer(
            db_path.clone(),
            me.clone(),
            epoch,
            config.clone(),
            renewing.clone(),
            renewal_waiting,
            events_tx.clone(),
        );
        let (reason, give_up_lease) = loop {
            match events.recv() {
                Ok(Event::Signal) | Err(_) => {
                    renewing.store(false, Ordering::SeqCst);
                    state.set(Role::SteppingDown, Some(epoch), None);
                    state.set_services(None);
                    broker.shutdown();
                    if let Err(e) = lease::release(&conn, &me, epoch) {
                        warn!(
                            "lease: could not release it ({e}); it expires in {} ms",
                            lease.ttl_ms
                        );
                    }
                    info!("lease released");
                    return Ok(());
                }
                Ok(Event::FileLock(f)) => {
                    file_lock = Some(f);
                    lock_state = FileLock::Held;
                    if let Err(e) = lease::set_file_lock(&conn, &me, epoch) {
                        warn!("lease: cannot record the file lock: {e}");
                    }
                }
                Ok(Event::FileLockUnsupported) => lock_state = FileLock::Unsupported,
                Ok(Event::StepDown(why)) => break (why, false),
                Ok(Event::StoreFailed(why)) => break (why, true),
            }
        };
        error!("stepping down: {reason}");
        renewing.store(false, Ordering::SeqCst);
        state.set(Role::SteppingDown, Some(epoch), None);
        state.set_services(None);
        broker.shutdown();
        let mut delay = Duration::ZERO;
        if give_up_lease {
            // The lease row is still ours (nothing fenced us); releasing it lets a standby
            // take over at once. If the file cannot be written at all, the TTL does it.
            match lease::release(&conn, &me, epoch) {
                Ok(_) => info!("lease released after the store failure"),
                Err(e) => warn!(
                    "lease: could not release it ({e}); it expires in {} ms",
                    lease.ttl_ms
                ),
            }
            // A standby should take over, not this process: its file lock waiter is woken by
            // the lock we drop below, but ours, asking again at once, could win that race,
            // and without file locks we would poll for the free lease as often as it does.
            // So we keep off both for a few acquire intervals; with no standby, this broker
            // serves again after that, through a fresh store connection.
            delay =
                Duration::from_millis(STORE_FAILURE_HOLD_OFF_INTERVALS * lease.acquire_interval_ms);
            hold_off = Some(std::time::Instant::now() + delay);
        }
        if file_lock.take().is_some() {
            // Released with the file: wait for it again, to learn when the new master dies.
            lock_state = FileLock::Waiting;
            wait_for_file_lock(lock_path.clone(), events_tx.clone(), delay);
        }
        if config.lease.on_step_down == StepDown::Exit {
            anyhow::bail!("stepped down: {reason} (lease.on_step_down = \"exit\")");
        }
    }
}

/// Prints a line for scripts and tests on stdout (`stompbox admin http=…`, `stompbox
/// listening stomp=…`).
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Blocks a thread on the OS file lock; when the kernel grants it (its holder exited or
/// died), hands the locked file to the role loop.
fn wait_for_file_lock(path: PathBuf, events: Sender<Event>, delay: Duration) {
    let on_error = events.clone();
    let spawned = std::thread::Builder::new()
        .name("lease-file-lock".into())
        .spawn(move || {
            std::thread::sleep(delay);
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path);
            let locked = opened.and_then(|file| file.lock().map(|()| file));
            match locked {
                Ok(file) => {
                    let _ = events.send(Event::FileLock(file));
                }
                Err(e) => {
                    warn!(
                        "lease: cannot lock {}: {e}; crash detection falls back to the TTL",
                        path.display()
                    );
                    let _ = events.send(Event::FileLockUnsupported);
                }
            }
        });
    if let Err(e) = spawned {
        warn!("lease: cannot start the file-lock thread: {e}");
        let _ = on_error.send(Event::FileLockUnsupported);
    }
}

/// Renews the lease every `renew_interval_ms` on a connection of its own. Finding another
/// holder or epoch is a step-down at once. An error (a busy or failing disk) is retried until
/// less than one renew interval is left on the lease this broker last wrote; then it steps
/// down, before that lease can expire under it. While it waits for the write lock it sets
/// `waiting`, and the store writer holds its next transaction back until it is through.
fn spawn_renewer(
    db: PathBuf,
    me: Identity,
    epoch: u64,
    config: Config,
    running: Arc<AtomicBool>,
    waiting: Arc<AtomicBool>,
    events: Sender<Event>,
) {
    let interval = Duration::from_millis(config.lease.renew_interval_ms);
    let ttl = config.lease.ttl_ms;
    let on_error = events.clone();
    let spawned = std::thread::Builder::new()
        .name("lease-renewer".into())
        .spawn(move || {
            let mut conn = match Connection::open(&db)
                .and_then(|c| c.busy_timeout(interval).map(|_| c))
                .and_then(|c| store::no_automatic_checkpoints(&c).map(|_| c))
            {
                Ok(c) => c,
                Err(e) => {
                    let _ = events.send(Event::StepDown(format!(
                        "cannot open the store to renew: {e}"
                    )));
                    return;
                }
            };
            // The lease was written moments ago by try_acquire.
            let mut valid_until = std::time::Instant::now() + Duration::from_millis(ttl);
            let mut pause = interval;
            while running.load(Ordering::SeqCst) {
                std::thread::sleep(pause);
                if !running.load(Ordering::SeqCst) {
                    return;
                }
                let attempt = std::time::Instant::now();
                // The store writer lets this renewal take the write lock before its next
                // transaction (a busy writer would otherwise starve it).
                waiting.store(true, Ordering::SeqCst);
                let renewed = lease::renew(&mut conn, &me, epoch, ttl);
                waiting.store(false, Ordering::SeqCst);
                match renewed {
                    Ok(true) => {
                        valid_until = attempt + Duration::from_millis(ttl);
                        pause = interval;
                    }
                    Ok(false) => {
                        let _ = events.send(Event::StepDown(format!(
                            "lease epoch {epoch} was taken over"
                        )));
                        return;
                    }
                    Err(e) if std::time::Instant::now() + interval < valid_until => {
                        warn!("lease: renewal failed ({e}); retrying while the lease lasts");
                        pause = interval / 4;
                    }
                    Err(e) => {
                        let _ = events.send(Event::StepDown(format!("lease renewal failed: {e}")));
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        let _ = on_error.send(Event::StepDown(format!(
            "cannot start the lease renewer: {e}"
        )));
    }
}
