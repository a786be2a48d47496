//! Building a patch shared object from recompiled objects. The object format and instruction
//! set specifics live in one module per target; other targets get a clear refusal.

use std::path::PathBuf;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod elf_x86_64;

/// Why a patch cannot be applied; the running program keeps its code.
#[derive(Debug, Clone)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One hot function a patch rebinds, with runtime addresses.
#[derive(Debug, Clone)]
pub struct PatchFn {
    pub name: String,
    pub host_entry: u64,
    pub patch_entry: u64,
    pub target: u64,
}

/// A linked patch, ready to be sent.
#[derive(Debug)]
pub struct LinkedPatch {
    pub path: PathBuf,
    pub addr: u64,
    pub len: u64,
    pub fns: Vec<PatchFn>,
    pub redirected_statics: usize,
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub use elf_x86_64::{Job, link};

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub fn unsupported() -> Refused {
    Refused(format!(
        "cargo hot cannot patch {}-{} programs yet (Linux x86_64 only)",
        std::env::consts::OS,
        std::env::consts::ARCH
    ))
}
