//! Targets without a patch loader yet: the program runs its original code and says why.

use std::path::Path;

pub fn exe_base() -> u64 {
    0
}

pub fn reserve() -> Result<(u64, u64), String> {
    Err(format!(
        "hot patching is not supported on {}-{} yet (Linux x86_64 only)",
        std::env::consts::OS,
        std::env::consts::ARCH
    ))
}

pub fn load(_path: &Path, _addr: u64, _len: u64) -> Result<(), String> {
    reserve().map(|_| ())
}
