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
    // The dynamic loader trusts the file: a truncated one makes it map pages past the end of the
    // file (SIGBUS on first touch), and one with constructors or needed libraries runs code.
    // So the file is checked first, and only a file that passes is handed to dlopen.
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    check_image(&bytes, addr, len)?;
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

fn u16_at(b: &[u8], at: u64) -> Option<u16> {
    let at = usize::try_from(at).ok()?;
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_TLS: u32 = 7;
const DT_NEEDED: u64 = 1;
const DT_INIT: u64 = 12;
const DT_INIT_ARRAY: u64 = 25;
const DT_PREINIT_ARRAY: u64 = 32;

/// Checks that `b` is what cargo hot links: an x86_64 ELF shared object whose loadable segments
/// lie inside the file and inside `addr..addr + len`, with no interpreter, no TLS segment, no
/// needed libraries and no constructors, so that opening it maps memory and runs no code.
pub fn check_image(b: &[u8], addr: u64, len: u64) -> Result<(), String> {
    let bad = |what: &str| Err(format!("not a valid patch: {what}"));
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return bad("not an ELF file");
    }
    if b[4] != 2 || b[5] != 1 {
        return bad("not a 64-bit little-endian ELF file");
    }
    if u16_at(b, 16) != Some(3) {
        return bad("not a shared object");
    }
    if u16_at(b, 18) != Some(62) {
        return bad("not built for x86_64");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(b, 32), u16_at(b, 54), u16_at(b, 56))
    else {
        return bad("truncated ELF header");
    };
    if phentsize != 56 || phnum == 0 {
        return bad("unexpected program header table");
    }
    let end = addr.checked_add(len).ok_or("patch range overflows")?;
    let file_len = b.len() as u64;
    let mut loads = 0;
    let mut dynamic = None;
    for i in 0..u64::from(phnum) {
        let ph = phoff
            .checked_add(i * 56)
            .ok_or("program header offset overflows")?;
        let (Some(p_type), Some(off), Some(vaddr), Some(filesz), Some(memsz)) = (
            u32_at(b, ph),
            u64_at(b, ph + 8),
            u64_at(b, ph + 16),
            u64_at(b, ph + 32),
            u64_at(b, ph + 40),
        ) else {
            return Err(format!(
                "not a valid patch: the file is truncated ({file_len} bytes, program headers at {phoff:#x})"
            ));
        };
        let in_file = off.checked_add(filesz).is_some_and(|e| e <= file_len);
        match p_type {
            PT_INTERP => return bad("it names an interpreter"),
            PT_TLS => return bad("it has a thread-local segment"),
            PT_LOAD => {
                loads += 1;
                if !in_file {
                    return Err(format!(
                        "not a valid patch: the file is truncated (a segment needs bytes up to {:#x}, the file has {file_len})",
                        off.saturating_add(filesz)
                    ));
                }
                let seg_end = vaddr.checked_add(memsz);
                if filesz > memsz || vaddr < addr || seg_end.is_none_or(|e| e > end) {
                    return Err(format!(
                        "not a valid patch: a segment at {vaddr:#x}+{memsz:#x} lies outside the patch range {addr:#x}..{end:#x}"
                    ));
                }
            }
            PT_DYNAMIC => {
                if !in_file {
                    return bad("the dynamic section lies outside the file");
                }
                dynamic = Some((off, filesz));
            }
            _ => {}
        }
    }
    if loads == 0 {
        return bad("no loadable segment");
    }
    let Some((off, size)) = dynamic else {
        return bad("no dynamic section");
    };
    for at in (off..off + size).step_by(16) {
        let Some(tag) = u64_at(b, at) else { break };
        match tag {
            0 => break,
            DT_NEEDED => return bad("it needs other shared libraries"),
            DT_INIT | DT_INIT_ARRAY | DT_PREINIT_ARRAY => {
                return bad("it has constructors");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_image;

    /// A minimal image: ELF header, one PT_LOAD covering the file, one PT_DYNAMIC.
    fn image(addr: u64, dyn_tags: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 2 * 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let dyn_off = b.len() as u64;
        for (t, v) in dyn_tags.iter().chain([(0, 0)].iter()) {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        let total = b.len() as u64;
        let ph = |b: &mut Vec<u8>, at: usize, t: u32, off: u64, vaddr: u64, sz: u64| {
            b[at..at + 4].copy_from_slice(&t.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&sz.to_le_bytes());
            b[at + 40..at + 48].copy_from_slice(&sz.to_le_bytes());
        };
        ph(&mut b, 64, 1, 0, addr, total);
        ph(&mut b, 120, 2, dyn_off, addr + dyn_off, total - dyn_off);
        b
    }

    #[test]
    fn accepts_a_well_formed_image_and_refuses_each_defect() {
        let a = 0x7000_0000;
        assert_eq!(check_image(&image(a, &[]), a, 0x1000), Ok(()));
        let err = |b: &[u8]| check_image(b, a, 0x1000).unwrap_err();
        let full = image(a, &[]);
        assert!(err(&full[..full.len() - 8]).contains("truncated"));
        assert!(err(&full[..100]).contains("truncated"));
        assert!(
            err(b"random bytes, not a patch at all......................................")
                .contains("not an ELF")
        );
        assert!(
            check_image(&full, a + 0x1000, 0x1000)
                .unwrap_err()
                .contains("outside the patch range")
        );
        assert!(err(&image(a, &[(1, 5)])).contains("needs other shared libraries"));
        assert!(err(&image(a, &[(25, 0)])).contains("constructors"));
        let mut exe = full.clone();
        exe[16] = 2;
        assert!(err(&exe).contains("not a shared object"));
        let mut arm = full.clone();
        arm[18] = 183;
        assert!(err(&arm).contains("x86_64"));
    }
}
