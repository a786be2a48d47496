//! Hot mode's start-up, control channel and patch loading.
//!
//! `cargo hot` starts the program with an inherited socket (`HOT_RUNTIME_FD`). Before `main`, a
//! constructor reserves address space for patches next to the executable and starts one thread
//! that says hello and then loads each patch it is sent. Without that variable (a hot build run
//! by hand, or this crate's tests) nothing starts and every hot function runs its own body.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::ApplyMode;
use crate::protocol::{FnRebind, MAX_LINE, Message, Refusal};
use crate::table::{self, Entry, FnId, Instance, Rebind, Slot};

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[path = "loader/linux_x86_64.rs"]
mod sys;

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
#[path = "loader/unsupported.rs"]
mod sys;

/// Every registry entry points here, so linking any hot function links this module (and with it
/// the constructor below), even though hot code calls nothing in the runtime at link time.
pub static ANCHOR: u8 = 0;

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    crate::listen::init();
    crate::kept::hot::init();
    let Some(fd) = std::env::var("HOT_RUNTIME_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let build_id = std::env::var("HOT_RUNTIME_BUILD_ID").unwrap_or_else(|_| "unknown".into());
    let patch_dir = std::env::var_os("HOT_RUNTIME_PATCH_DIR").map(PathBuf::from);
    // SAFETY: constructors run before `main`, while the program has only this thread.
    unsafe {
        std::env::remove_var("HOT_RUNTIME_FD");
        std::env::remove_var("HOT_RUNTIME_BUILD_ID");
        std::env::remove_var("HOT_RUNTIME_PATCH_DIR");
    }
    // Children of the program must not inherit the channel.
    // SAFETY: plain fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the fd was created for us by `cargo hot` and nothing else in the process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let reservation = sys::reserve();
    let _ = std::thread::Builder::new()
        .name("hot-runtime".into())
        .spawn(move || serve(stream, reservation, build_id, patch_dir));
}

static MODE: AtomicU8 = AtomicU8::new(0);

pub(crate) fn set_apply_mode(mode: ApplyMode) {
    MODE.store(matches!(mode, ApplyMode::Manual) as u8, Ordering::Release);
}

struct Pending {
    seq: u64,
    rebinds: Vec<Rebind>,
    early: Vec<(u64, Refusal)>,
}
// SAFETY: the raw pointers in `Rebind` are addresses of code in a loaded, never-unloaded patch.
unsafe impl Send for Pending {}

static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());
static REPLIES: OnceLock<Mutex<UnixStream>> = OnceLock::new();

fn reply(msg: &Message) {
    if let Some(w) = REPLIES.get() {
        let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(w, "{}", msg.encode());
    }
}

pub(crate) fn apply_pending() -> usize {
    let batch = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|p| p.into_inner()));
    let n = batch.len();
    for p in batch {
        apply_now(p);
    }
    n
}

fn apply_now(p: Pending) {
    // SAFETY: `validate` checked every target lies in a patch linked for this program, and the
    // fingerprints are compared against the host's by `apply` itself.
    let report = unsafe { table::apply(&p.rebinds) };
    let mut refused = p.early;
    refused.extend(report.refused.iter().map(|(id, r)| (id.0 as u64, *r)));
    reply(&Message::Applied {
        seq: p.seq,
        generation: report.generation,
        rebound: report.rebound.len() as u64,
        refused,
    });
}

struct Loaded {
    start: u64,
    end: u64,
}

fn serve(
    stream: UnixStream,
    reservation: Result<(u64, u64), String>,
    build_id: String,
    patch_dir: Option<PathBuf>,
) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let _ = REPLIES.set(Mutex::new(writer));
    let (res_start, res_end) = match &reservation {
        Ok(r) => *r,
        Err(_) => (0, 0),
    };
    let pid = std::process::id();
    reply(&Message::Hello {
        pid,
        build_id: build_id.clone(),
        base: sys::exe_base(),
        reserve_start: res_start,
        reserve_end: res_end,
        hot_fns: table::registry().count() as u64,
    });
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded read: a line longer than the limit is an error, not an unbounded allocation.
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => tool_gone(),
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            // Either too long, or the tool died mid-message: a fragment is never acted on.
            if line.len() > MAX_LINE {
                reply(&Message::Failed {
                    seq: 0,
                    reason: "control message too long".into(),
                });
                return;
            }
            tool_gone();
        }
        let msg = match Message::parse(&line) {
            Ok(m) => m,
            Err(e) => {
                reply(&Message::Failed {
                    seq: 0,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Message::Keep { path } = &msg {
            reply(&keep(path, patch_dir.as_deref()));
            continue;
        }
        let Message::Patch {
            seq,
            pid: to_pid,
            build_id: to_build,
            addr,
            len,
            path,
            fns,
        } = msg
        else {
            reply(&Message::Failed {
                seq: 0,
                reason: "unexpected message".into(),
            });
            continue;
        };
        let result = (|| {
            if let Err(e) = &reservation {
                return Err(format!("no address space reserved for patches: {e}"));
            }
            if to_pid != pid {
                return Err(format!(
                    "patch is addressed to process {to_pid}, this is {pid}"
                ));
            }
            if to_build != build_id {
                return Err(format!(
                    "patch was built for build {to_build}, this program is build {build_id}"
                ));
            }
            let path = check_path(&path, patch_dir.as_deref())?;
            check_range(addr, len, res_start, res_end, &loaded)?;
            sys::load(&path, addr, len)?;
            loaded.push(Loaded {
                start: addr,
                end: addr + len,
            });
            Ok(())
        })();
        match result {
            Err(reason) => reply(&Message::Failed { seq, reason }),
            Ok(()) => {
                let (rebinds, early) = validate(&fns, addr, addr + len);
                let p = Pending {
                    seq,
                    rebinds,
                    early,
                };
                if MODE.load(Ordering::Acquire) == 1 {
                    PENDING.lock().unwrap_or_else(|p| p.into_inner()).push(p);
                    reply(&Message::Pending { seq });
                } else {
                    apply_now(p);
                }
            }
        }
    }
}

/// Writes the `kept!` values for the next run, to a new file in the patch directory only.
fn keep(path: &[u8], dir: Option<&Path>) -> Message {
    use std::os::unix::ffi::OsStrExt;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(path));
    let in_dir = dir.is_some_and(|d| path.parent() == Some(d));
    let result = if in_dir {
        crate::kept::hot::keep(&path)
    } else {
        Err(format!("{} is outside the patch directory", path.display()))
    };
    match result {
        Ok(count) => Message::Kept { count },
        Err(reason) => Message::Failed { seq: 0, reason },
    }
}

/// cargo hot is gone (it quit, crashed or was killed): the program must not live on as an
/// orphan holding its ports, so it stops as cargo hot would have stopped it: SIGTERM to its
/// process group (cargo hot made it the leader), SIGKILL if it is still there 3 s later.
fn tool_gone() -> ! {
    // SAFETY: getpgrp/getpid/kill are plain syscalls.
    let target = unsafe {
        if libc::getpgrp() == libc::getpid() {
            0
        } else {
            libc::getpid()
        }
    };
    unsafe { libc::kill(target, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: as above.
    unsafe { libc::kill(target, libc::SIGKILL) };
    loop {
        std::thread::park();
    }
}

fn check_path(path: &[u8], dir: Option<&Path>) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(path));
    let dir = dir.ok_or("the program was started without a patch directory")?;
    let canon = path
        .canonicalize()
        .map_err(|e| format!("patch file {}: {e}", path.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("patch directory {}: {e}", dir.display()))?;
    if canon.parent() != Some(dir.as_path()) {
        return Err(format!(
            "patch file {} is outside the patch directory",
            path.display()
        ));
    }
    Ok(canon)
}

fn check_range(
    addr: u64,
    len: u64,
    res_start: u64,
    res_end: u64,
    loaded: &[Loaded],
) -> Result<(), String> {
    let end = addr
        .checked_add(len)
        .ok_or("patch address range overflows")?;
    if len == 0 || addr % 4096 != 0 || len % 4096 != 0 {
        return Err(format!(
            "patch range {addr:#x}+{len:#x} is not page-aligned"
        ));
    }
    if addr < res_start || end > res_end {
        return Err(format!(
            "patch range {addr:#x}..{end:#x} is outside the reserved range {res_start:#x}..{res_end:#x}"
        ));
    }
    if loaded.iter().any(|l| addr < l.end && l.start < end) {
        return Err(format!(
            "patch range {addr:#x}..{end:#x} is already taken by an earlier patch"
        ));
    }
    Ok(())
}

/// Turns the wire triples into rebinds, refusing any that points outside the loaded patch.
///
/// `patch-entry` is the patch's registry entry of the fn, or, when `host-entry` is an instance
/// record of the host (a copy of a generic fn or method), the patch's instance record of the
/// same instantiation.
fn validate(fns: &[FnRebind], start: u64, end: u64) -> (Vec<Rebind>, Vec<(u64, Refusal)>) {
    let inside = |a: u64, size: u64| a >= start && a.checked_add(size).is_some_and(|e| e <= end);
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for f in fns {
        let per_instance = table::instance_at(f.host_entry as usize).is_some();
        let record_size = if per_instance {
            std::mem::size_of::<Instance>()
        } else {
            std::mem::size_of::<Entry>()
        } as u64;
        if !inside(f.patch_entry, record_size) || f.patch_entry % 8 != 0 || !inside(f.target, 1) {
            refused.push((f.host_entry, Refusal::OutOfPatch));
            continue;
        }
        // SAFETY: inside the patch just loaded, aligned, and written by the patch's linker as an
        // `Entry` or an `Instance` (cargo hot took the address from the symbol table of that
        // very file); the pointers it holds are checked before use.
        let (pe, fingerprint, slot): (&'static Entry, u64, &'static Slot) = unsafe {
            if per_instance {
                let pi = &*(f.patch_entry as *const Instance);
                let entry_ok = inside(pi.entry as u64, std::mem::size_of::<Entry>() as u64)
                    || table::entry_at(pi.entry as usize).is_some();
                if !entry_ok || !inside(pi.slot as u64, 8) {
                    refused.push((f.host_entry, Refusal::OutOfPatch));
                    continue;
                }
                (&*pi.entry, pi.fingerprint(), &*pi.slot)
            } else {
                let pe = &*(f.patch_entry as *const Entry);
                if !inside(pe.slot as *const _ as u64, 8) {
                    refused.push((f.host_entry, Refusal::OutOfPatch));
                    continue;
                }
                (pe, pe.fingerprint, pe.slot)
            }
        };
        ok.push(Rebind {
            id: FnId(f.host_entry as usize),
            fingerprint,
            kind: pe.kind,
            target: f.target as *const (),
            own_slot: Some(slot),
            own_entry: Some(pe),
        });
    }
    (ok, refused)
}
