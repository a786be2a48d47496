//! Linux x86_64: where the executable is, reserving address space within ±2 GiB of it (patches
//! reach the program's code and data with 32-bit PC-relative references), and loading a patch at
//! exactly the address it was linked for.

use std::path::Path;

/// Bytes reserved for patches: room for hundreds of patches of a few hundred KiB each.
const RESERVE: u64 = 1 << 30;
const ALIGN: u64 = 2 << 20;

unsafe extern "C" {
    static __executable_start: u8;
    static _end: u8;
}

pub fn exe_base() -> u64 {
    // Linker-defined symbol; only its address is taken.
    &raw const __executable_start as u64
}

fn exe_end() -> u64 {
    &raw const _end as u64
}

fn map_fixed(addr: u64, len: u64) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; PROT_NONE memory is inert.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    if p as u64 != addr {
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
        // SAFETY: unmapping exactly what this call mapped.
        unsafe { libc::munmap(p, len as usize) };
        return false;
    }
    true
}

/// Reserves `RESERVE` bytes close to the executable, below it when there is room (PIE programs
/// sit high), above its end otherwise.
pub fn reserve() -> Result<(u64, u64), String> {
    let base = exe_base();
    let end = exe_end();
    let mut candidates = Vec::new();
    if base > RESERVE + (512 << 20) {
        for back in [256u64, 512, 768] {
            let start = (base - RESERVE - (back << 20)) & !(ALIGN - 1);
            candidates.push(start);
        }
    }
    for gap in [256u64, 512] {
        candidates.push((end + (gap << 20) + ALIGN - 1) & !(ALIGN - 1));
    }
    for start in candidates {
        if map_fixed(start, RESERVE) {
            return Ok((start, start + RESERVE));
        }
    }
    Err("could not reserve address space within 2 GiB of the program".into())
}

/// Loads the patch at `path`, linked to occupy exactly `addr..addr + len`, at that address.
pub fn load(path: &Path, addr: u64, len: u64) -> Result<(), String> {
    // Give the exact range back to the kernel so that the loader's mmap hint is honoured.
    // SAFETY: the caller checked the range lies in our reservation and holds no earlier patch.
    unsafe { libc::munmap(addr as *mut libc::c_void, len as usize) };
    let lib = unsafe {
        // SAFETY: a patch has no constructors (cargo hot refuses `.init_array` sections), so
        // opening it runs no code.
        libloading::os::unix::Library::open(Some(path), libc::RTLD_NOW | libc::RTLD_LOCAL)
    };
    let lib = match lib {
        Ok(l) => l,
        Err(e) => {
            map_fixed(addr, len);
            return Err(format!("dlopen failed: {e}"));
        }
    };
    let handle = lib.into_raw();
    let mut map: *mut libc::c_void = std::ptr::null_mut();
    // SAFETY: `handle` is a live handle; RTLD_DI_LINKMAP stores a `struct link_map *`.
    let rc = unsafe {
        libc::dlinfo(
            handle,
            libc::RTLD_DI_LINKMAP,
            &mut map as *mut _ as *mut libc::c_void,
        )
    };
    // `struct link_map` starts with `ElfW(Addr) l_addr`, the load bias.
    let bias = if rc == 0 && !map.is_null() {
        unsafe { *(map as *const u64) }
    } else {
        u64::MAX
    };
    if bias != 0 {
        // Nothing from the library has run or been referenced yet, so closing it is safe.
        // SAFETY: handle from dlopen above, closed once.
        unsafe { libc::dlclose(handle) };
        map_fixed(addr, len);
        return Err(format!(
            "the patch did not load at its linked address {addr:#x} (load bias {bias:#x}); restart the program"
        ));
    }
    // Never dlclose: code or vtables of the patch may be in use for the rest of the run.
    Ok(())
}
