//! Failpoints for the fault-injection tests (`tests/tests/e2e_faults.rs`).
//!
//! `CARGO_HOT_FAULT=none,truncate,garbage,...` damages the next patches, one fault per patch in
//! that order, after they are linked and before they are sent, so the tests can prove that the
//! running program refuses each kind of bad patch with a clear reason and keeps its code. Only
//! the user running cargo hot can set it, and it can only break that user's own patches.

use std::collections::VecDeque;
use std::path::Path;

use hot_runtime::protocol::Message;

pub struct Faults(VecDeque<String>);

/// How to send a patch.
#[derive(PartialEq, Eq)]
pub enum Send {
    Normally,
    /// Write half of the message, then SIGKILL cargo hot itself.
    HalfThenDie,
    /// Write the whole message, then SIGKILL cargo hot itself before the answer.
    WholeThenDie,
}

impl Faults {
    pub fn from_env() -> Faults {
        let list = std::env::var("CARGO_HOT_FAULT").unwrap_or_default();
        Faults(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    }

    /// Applies the next fault, if any, to a patch about to be sent. `earlier` is the address of
    /// a patch the program already loaded.
    pub fn inject(&mut self, msg: &mut Message, earlier: Option<u64>) -> std::io::Result<Send> {
        let Some(fault) = self.0.pop_front() else {
            return Ok(Send::Normally);
        };
        match fault.as_str() {
            "half-then-die" => return Ok(Send::HalfThenDie),
            "whole-then-die" => return Ok(Send::WholeThenDie),
            _ => {}
        }
        let Message::Patch {
            pid,
            build_id,
            addr,
            path,
            ..
        } = msg
        else {
            return Ok(Send::Normally);
        };
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let file = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path));
        match fault.as_str() {
            "truncate" => {
                let len = std::fs::metadata(&file)?.len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)?
                    .set_len(len / 2)?;
            }
            "garbage" => {
                let len = std::fs::metadata(&file)?.len() as usize;
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                std::fs::write(&file, bytes)?;
            }
            "build-id" => *build_id = "0123456789abcdef0123456789abcdef".into(),
            "pid" => *pid = pid.wrapping_add(1),
            "taken" => {
                if let Some(e) = earlier {
                    *addr = e;
                }
            }
            "dlopen" => misalign_first_segment(&file)?,
            "outside-dir" => {
                let outside =
                    std::env::temp_dir().join(format!("cargo-hot-fault-{}.so", std::process::id()));
                std::fs::copy(&file, &outside)?;
                *path = outside.into_os_string().into_vec();
            }
            _ => {}
        }
        Ok(Send::Normally)
    }
}

/// SIGKILL to cargo hot itself: no destructor, no cleanup, like the OOM killer or `kill -9`.
pub fn die() -> ! {
    // SAFETY: kill(2) on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL is not ignorable")
}

/// Moves the first loadable segment's file offset by one byte (keeping it inside the file):
/// the file still passes the program's own checks, and the dynamic loader refuses it
/// ("address/offset not properly aligned"): a dlopen failure.
fn misalign_first_segment(file: &Path) -> std::io::Result<()> {
    let mut b = std::fs::read(file)?;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(b[56..58].try_into().unwrap()) as usize;
    for i in 0..phnum {
        let ph = phoff + i * 56;
        if u32::from_le_bytes(b[ph..ph + 4].try_into().unwrap()) == 1 {
            let off = u64::from_le_bytes(b[ph + 8..ph + 16].try_into().unwrap());
            let filesz = u64::from_le_bytes(b[ph + 32..ph + 40].try_into().unwrap());
            b[ph + 8..ph + 16].copy_from_slice(&(off + 1).to_le_bytes());
            b[ph + 32..ph + 40].copy_from_slice(&filesz.saturating_sub(1).to_le_bytes());
            break;
        }
    }
    std::fs::write(file, b)
}

/// `CARGO_HOT_SKIP_SOURCE_CHECK=1` turns off the source-level rude-edit check, so the tests can
/// show that the patch-time layout guard (static sizes, hot fn fingerprints) refuses on its own.
pub fn skip_source_check() -> bool {
    std::env::var_os("CARGO_HOT_SKIP_SOURCE_CHECK").is_some_and(|v| v == "1")
}
