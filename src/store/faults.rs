//! Fault injection for end-to-end tests of store failures, compiled only with the
//! `fault-injection` cargo feature (which `make test` enables and release builds do not).
//!
//! The store writer's connection opens the file through a wrapper SQLite VFS,
//! `stompbox-faults`, which passes every call to the default (unix) VFS, except that a test can
//! make the next write-ahead-log write or fsync fail by creating a trigger file next to
//! `stompbox.db`:
//!
//! | trigger file (in `data_dir`) | what fails, once | error SQLite reports |
//! |---|---|---|
//! | `inject-fsync-failure` | the next fsync of the WAL that follows a write to it: a COMMIT's fsync (a checkpoint's fsync, which follows no write, is left alone) | `SQLITE_IOERR_FSYNC` |
//! | `inject-write-failure` | the next write to the WAL: a COMMIT's, or a cache spill while a large transaction is applied | `SQLITE_IOERR_WRITE` |
//! | `inject-disk-full` | the next write to the WAL, as the unix VFS reports `ENOSPC` | `SQLITE_FULL` |
//! | `inject-checkpoint-failure` | the next fsync of the database file itself, which in WAL mode only a checkpoint does (after copying the log into it) | `SQLITE_IOERR_FSYNC` |
//!
//! The file is removed when its fault fires, so exactly one operation fails, and the next
//! fsync "succeeds" as it can after a real failed fsync (PostgreSQL's fsyncgate): a test can
//! check that the broker does not trust it. Only files opened through this VFS are affected
//! (the writer's; not the lease's connections, nor the standby's until it becomes master).
//! SQLite sees a real failed system call, so what it rolls back, and what error the broker
//! gets, is SQLite's own behaviour.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rusqlite::ffi;

/// The VFS name to open the writer's connection with.
pub const VFS_NAME: &str = "stompbox-faults";

/// Trigger: the next fsync of the WAL after a write fails (`SQLITE_IOERR_FSYNC`).
pub const FSYNC_TRIGGER: &str = "inject-fsync-failure";

/// Trigger: the next write to the WAL fails (`SQLITE_IOERR_WRITE`).
pub const WRITE_TRIGGER: &str = "inject-write-failure";

/// Trigger: the next write to the WAL finds the disk full (`SQLITE_FULL`): SQLite rolls the
/// transaction back and the writer goes on.
pub const FULL_TRIGGER: &str = "inject-disk-full";

/// Trigger: the next fsync of the database file (a checkpoint's) fails (`SQLITE_IOERR_FSYNC`).
pub const CHECKPOINT_TRIGGER: &str = "inject-checkpoint-failure";

/// The real (default) VFS, whose `szOsFile` bytes start every file we open.
struct Registered {
    real: usize,
    /// Where our [`Extra`] sits in each file: after the real file, 8-byte aligned.
    extra_offset: usize,
}

static REGISTERED: OnceLock<Result<Registered, String>> = OnceLock::new();

/// Our io_methods tables, one per real table seen (in practice one): (real, ours).
static METHODS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// What we keep per open file, after the real VFS's file.
#[repr(C)]
struct Extra {
    /// The real file's methods (we replace `pMethods` with ours).
    real: *const ffi::sqlite3_io_methods,
    /// The file is a write-ahead log.
    wal: bool,
    /// The file is the database file itself.
    main_db: bool,
    /// Written to since its last fsync.
    written: bool,
    /// The directory the trigger files are looked for in (a leaked-until-close Box).
    dir: *mut PathBuf,
}

/// Registers the VFS (once per process) and returns its name.
pub fn vfs() -> Result<&'static str, String> {
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives for the
        // process; the struct we register is leaked, so it does too.
        unsafe {
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() {
                return Err("no default SQLite VFS".into());
            }
            let extra_offset = ((*real).szOsFile as usize).div_ceil(8) * 8;
            let mut ours: ffi::sqlite3_vfs = *real;
            ours.szOsFile = (extra_offset + std::mem::size_of::<Extra>()) as c_int;
            ours.zName = c"stompbox-faults".as_ptr();
            ours.pNext = std::ptr::null_mut();
            ours.xOpen = Some(x_open);
            let ours = Box::leak(Box::new(ours));
            let rc = ffi::sqlite3_vfs_register(ours, 0);
            if rc != ffi::SQLITE_OK {
                return Err(format!("sqlite3_vfs_register failed: {rc}"));
            }
            log::warn!(
                "fault injection compiled in (cargo feature fault-injection): the store \
                 writer fails once when {FSYNC_TRIGGER}, {WRITE_TRIGGER}, {FULL_TRIGGER} or \
                 {CHECKPOINT_TRIGGER} appears in data_dir"
            );
            Ok(Registered {
                real: real as usize,
                extra_offset,
            })
        }
    });
    match registered {
        Ok(_) => Ok(VFS_NAME),
        Err(e) => Err(e.clone()),
    }
}

fn registered() -> &'static Registered {
    match REGISTERED.get() {
        Some(Ok(r)) => r,
        _ => unreachable!("the VFS is used only after it was registered"),
    }
}

/// # Safety
/// `file` is a file of `szOsFile` bytes that SQLite allocated for this VFS.
unsafe fn extra(file: *mut ffi::sqlite3_file) -> *mut Extra {
    file.cast::<u8>()
        .add(registered().extra_offset)
        .cast::<Extra>()
}

/// Our methods table for files whose real methods are `real`: the same table, with xClose,
/// xWrite and xSync wrapped.
fn methods_for(real: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    let mut tables = METHODS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, ours)) = tables.iter().find(|(r, _)| *r == real as usize) {
        return ours as *const ffi::sqlite3_io_methods;
    }
    // SAFETY: `real` is the methods table the real VFS just installed; it is static there.
    let mut ours: ffi::sqlite3_io_methods = unsafe { *real };
    ours.xClose = Some(x_close);
    ours.xWrite = Some(x_write);
    ours.xSync = Some(x_sync);
    let ours: &'static ffi::sqlite3_io_methods = Box::leak(Box::new(ours));
    tables.push((real as usize, ours as *const _ as usize));
    ours
}

/// True (once) if `trigger` exists in `dir`: removing it is what fires the fault, so of
/// several operations racing for it exactly one fails.
fn fire(dir: *mut PathBuf, trigger: &str) -> bool {
    if dir.is_null() {
        return false;
    }
    // SAFETY: `dir` is the Box this file owns until xClose.
    let dir: &Path = unsafe { &*dir };
    let fired = std::fs::remove_file(dir.join(trigger)).is_ok();
    if fired {
        log::error!("fault injection: {trigger} fired");
    }
    fired
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let r = registered();
    let real = r.real as *mut ffi::sqlite3_vfs;
    let Some(open) = (*real).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    let rc = open(real, name, file, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*file).pMethods.is_null() {
        return rc;
    }
    let dir = if name.is_null() {
        std::ptr::null_mut()
    } else {
        let path = PathBuf::from(
            CStr::from_ptr(name as *const c_char)
                .to_string_lossy()
                .as_ref(),
        );
        match path.parent() {
            Some(parent) => Box::into_raw(Box::new(parent.to_path_buf())),
            None => std::ptr::null_mut(),
        }
    };
    extra(file).write(Extra {
        real: (*file).pMethods,
        wal: flags & ffi::SQLITE_OPEN_WAL != 0,
        main_db: flags & ffi::SQLITE_OPEN_MAIN_DB != 0,
        written: false,
        dir,
    });
    (*file).pMethods = methods_for((*file).pMethods);
    rc
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let e = extra(file);
    let real = (*e).real;
    if !(*e).dir.is_null() {
        drop(Box::from_raw((*e).dir));
        (*e).dir = std::ptr::null_mut();
    }
    (*file).pMethods = real;
    match (*real).xClose {
        Some(close) => close(file),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let e = extra(file);
    if (*e).wal {
        if fire((*e).dir, WRITE_TRIGGER) {
            return ffi::SQLITE_IOERR_WRITE;
        }
        if fire((*e).dir, FULL_TRIGGER) {
            return ffi::SQLITE_FULL;
        }
        (*e).written = true;
    }
    match (*(*e).real).xWrite {
        Some(write) => write(file, buf, amount, offset),
        None => ffi::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let e = extra(file);
    if (*e).main_db && fire((*e).dir, CHECKPOINT_TRIGGER) {
        return ffi::SQLITE_IOERR_FSYNC;
    }
    if (*e).wal && (*e).written {
        (*e).written = false;
        if fire((*e).dir, FSYNC_TRIGGER) {
            return ffi::SQLITE_IOERR_FSYNC;
        }
    }
    match (*(*e).real).xSync {
        Some(sync) => sync(file, flags),
        None => ffi::SQLITE_IOERR_FSYNC,
    }
}
