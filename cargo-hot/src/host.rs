//! A snapshot of the running program's binary, taken once after the fat build: its symbols, the
//! names it imports from shared libraries, its thread-local segment and its hot-function
//! registry. Patches are resolved against this snapshot and never re-read the binary.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use object::read::elf::ProgramHeader as _;
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// Where a host symbol lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Text,
    /// Writable data: statics with interior mutability, `static mut`.
    Data,
    /// Read-only data.
    ReadOnly,
    /// A thread-local (value is its offset inside the TLS segment).
    Tls,
    Other,
}

#[derive(Clone, Copy, Debug)]
pub struct HostSym {
    /// Link-time address (the runtime address is `base + value`).
    pub value: u64,
    pub size: u64,
    pub place: Place,
}

/// One compiled copy of a sync hot fn in the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCopy {
    /// Link-time address of its instance record.
    pub record: u64,
    /// Layout hash of its argument and return types.
    pub layouts: u64,
}

/// A hot function of the host, keyed by its path without hash.
#[derive(Clone, Debug)]
pub struct HostFn {
    pub entry: u64,
    pub fingerprint: u64,
    pub kind: u32,
    /// How many compiled copies (instance records) point at this entry: a sync fn has one per
    /// instantiation; an async fn none.
    pub copies: usize,
}

pub struct HostImage {
    /// Every defined symbol by mangled name; more than one value means ambiguous.
    pub symbols: HashMap<String, Vec<HostSym>>,
    /// Names the host imports (libc, libgcc_s...) or its Rust shared libraries export: patches
    /// leave them to the dynamic loader.
    pub imports: HashSet<String>,
    /// File names of the shared libraries the program loads (`DT_NEEDED`, transitively).
    pub shared_libs: Vec<String>,
    /// `roundup(PT_TLS.memsz, PT_TLS.align)`: thread-pointer offset of a TLS symbol is
    /// `st_value - tls_block`.
    pub tls_block: u64,
    /// Hot functions by demangled path (`crate::module::fn`, `<T as Trait>::fn`).
    pub hot_fns: HashMap<String, HostFn>,
    /// The compiled copies of sync hot fns (`protocol::INSTANCE_SECTION`), by the demangled path
    /// of the copy (`app::largest::<u32>`, `<app::Stack<i32>>::push`): their instance records
    /// (more than one when an instantiation was compiled into several codegen units).
    pub instances: HashMap<String, Vec<HostCopy>>,
    pub build_id: String,
}

/// Path of a symbol without hashes or crate disambiguators.
pub fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// A thread-local's name as its `thread_local!` declares it: std's storage symbol
/// `app::GETS::{constant#0}::{closure#0}::__RUST_STD_INTERNAL_VAL` is `app::GETS`.
pub fn thread_local_name(mangled: &str) -> String {
    let d = demangle(mangled);
    let Some(mut path) = d.strip_suffix("::__RUST_STD_INTERNAL_VAL") else {
        return d;
    };
    while let Some((head, last)) = path.rsplit_once("::") {
        if !last.starts_with('{') {
            break;
        }
        path = head;
    }
    path.to_string()
}

pub use hot_runtime::protocol::ENTRY_SUFFIX;

pub fn place_of(kind: SectionKind, name: &str) -> Place {
    match kind {
        SectionKind::Text => Place::Text,
        SectionKind::Data | SectionKind::UninitializedData => {
            if name.starts_with(".data.rel.ro") {
                Place::ReadOnly
            } else {
                Place::Data
            }
        }
        SectionKind::ReadOnlyData
        | SectionKind::ReadOnlyString
        | SectionKind::ReadOnlyDataWithRel => Place::ReadOnly,
        SectionKind::Tls | SectionKind::UninitializedTls => Place::Tls,
        _ => Place::Other,
    }
}

/// The shared libraries an ELF file needs (`DT_NEEDED`), by file name.
fn needed_libs(data: &[u8]) -> Result<Vec<String>> {
    use object::read::elf::{Dyn, FileHeader};
    let elf = object::elf::FileHeader64::<object::Endianness>::parse(data)?;
    let endian = elf.endian()?;
    let sections = elf.sections(endian, data)?;
    let Some((dyns, link)) = sections.dynamic(endian, data)? else {
        return Ok(Vec::new());
    };
    let strings = sections.strings(endian, data, link)?;
    Ok(dyns
        .iter()
        .filter(|d| d.tag32(endian) == Some(object::elf::DT_NEEDED))
        .filter_map(|d| d.string(endian, strings).ok())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

/// Symbols exported by the shared libraries `data` needs that live in `lib_dirs` (Rust
/// `dylib`s such as Bevy's `dynamic_linking`, a dynamically linked std), transitively: the
/// program has them loaded, so a patch may call them and leave them to the dynamic loader.
fn shared_library_exports(
    data: &[u8],
    lib_dirs: &[std::path::PathBuf],
    seen: &mut HashSet<String>,
) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut work = needed_libs(data).unwrap_or_default();
    while let Some(name) = work.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(path) = lib_dirs.iter().map(|d| d.join(&name)).find(|p| p.is_file()) else {
            continue;
        };
        let Ok(lib) = std::fs::read(&path) else {
            continue;
        };
        let Ok(file) = object::File::parse(&*lib) else {
            continue;
        };
        out.extend(
            file.dynamic_symbols()
                .filter(|s| !s.is_undefined())
                .filter_map(|s| s.name().ok())
                .map(|n| n.split('@').next().unwrap_or(n).to_string()),
        );
        work.extend(needed_libs(&lib).unwrap_or_default());
    }
    out
}

impl HostImage {
    /// Reads the program at `path`; `lib_dirs` are where its Rust shared libraries are.
    pub fn load(path: &Path, lib_dirs: &[std::path::PathBuf]) -> Result<HostImage> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file =
            object::File::parse(&*data).with_context(|| format!("parsing {}", path.display()))?;
        if file.format() != object::BinaryFormat::Elf
            || file.architecture() != object::Architecture::X86_64
        {
            bail!(
                "cargo hot patches Linux x86_64 ELF programs only; {} is not one",
                path.display()
            );
        }
        let mut symbols: HashMap<String, Vec<HostSym>> = HashMap::new();
        let mut hot_fns = HashMap::new();
        for sym in file.symbols() {
            let Some(idx) = sym.section_index() else {
                continue;
            };
            let Ok(name) = sym.name() else { continue };
            if name.is_empty()
                || sym.kind() == SymbolKind::Section
                || sym.kind() == SymbolKind::File
            {
                continue;
            }
            let section = file.section_by_index(idx)?;
            let place = place_of(section.kind(), section.name().unwrap_or(""));
            let hs = HostSym {
                value: sym.address(),
                size: sym.size(),
                place,
            };
            let list = symbols.entry(name.to_string()).or_default();
            if !list.iter().any(|o| o.value == hs.value) {
                list.push(hs);
            }
            let dem = demangle(name);
            if let Some(parent) = dem.strip_suffix(ENTRY_SUFFIX) {
                let off = sym.address() - section.address();
                let bytes = section
                    .data()?
                    .get(off as usize..off as usize + 12)
                    .context("registry entry outside its section")?;
                let fingerprint = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
                let kind = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
                hot_fns.insert(
                    parent.to_string(),
                    HostFn {
                        entry: sym.address(),
                        fingerprint,
                        kind,
                        copies: 0,
                    },
                );
            }
        }
        let mut imports: HashSet<String> = file
            .dynamic_symbols()
            .filter(|s| s.is_undefined())
            .filter_map(|s| {
                s.name()
                    .ok()
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .collect();
        let mut shared_libs = HashSet::new();
        imports.extend(shared_library_exports(&data, lib_dirs, &mut shared_libs));
        let tls_block = tls_block(&data)?;
        let build_id = build_id(&data);
        let (instances, entries_of_copies) = instances(&file)?;
        for h in hot_fns.values_mut() {
            h.copies = entries_of_copies.iter().filter(|e| **e == h.entry).count();
        }
        Ok(HostImage {
            symbols,
            imports,
            shared_libs: shared_libs.into_iter().collect(),
            tls_block,
            hot_fns,
            instances,
            build_id,
        })
    }

    /// Adds the symbols an applied patch defines (at its load address), newest first: later
    /// patches then call the code it introduced and share the statics it introduced, whose
    /// state must survive like the host's.
    pub fn absorb_patch(&mut self, so: &Path, base: u64) -> Result<usize> {
        let data = std::fs::read(so).with_context(|| format!("reading {}", so.display()))?;
        let file = object::File::parse(&*data)?;
        let mut n = 0;
        for sym in file.symbols() {
            let Some(idx) = sym.section_index() else {
                continue;
            };
            let Ok(name) = sym.name() else { continue };
            if name.is_empty() || matches!(sym.kind(), SymbolKind::Section | SymbolKind::File) {
                continue;
            }
            let section = file.section_by_index(idx)?;
            let sec_name = section.name().unwrap_or("");
            // Redirects to the host itself, and per-copy hot slots and entries, stay as they are.
            if sec_name == ".hot_anchor"
                || sec_name == hot_runtime::protocol::REGISTRY_SECTION
                || demangle(name).ends_with(hot_runtime::protocol::SLOT_SUFFIX)
            {
                continue;
            }
            let place = place_of(section.kind(), sec_name);
            self.symbols.insert(
                name.to_string(),
                vec![HostSym {
                    value: sym.address().wrapping_sub(base),
                    size: sym.size(),
                    place,
                }],
            );
            n += 1;
        }
        Ok(n)
    }

    /// The unique definition of `name`, or why there is none.
    pub fn lookup(&self, name: &str) -> Result<Option<HostSym>, String> {
        match self.symbols.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(*one)),
            Some(_) => Err(format!(
                "`{}` has several definitions in the running program",
                demangle(name)
            )),
        }
    }
}

/// The instance records of `file`, by the demangled path of the function whose code each one
/// points into (see [`HostImage::instances`]).
/// Also returns the registry entry each record points at.
type Copies = (HashMap<String, Vec<HostCopy>>, Vec<u64>);
fn instances(file: &object::File) -> Result<Copies> {
    use hot_runtime::protocol::{INSTANCE_LAYOUTS, INSTANCE_SECTION, INSTANCE_SIZE};
    let mut out: HashMap<String, Vec<HostCopy>> = HashMap::new();
    let mut entries = Vec::new();
    let Some(section) = file.section_by_name(INSTANCE_SECTION) else {
        return Ok((out, entries));
    };
    let data = section.data()?;
    // In a PIE the pointers are dynamic relocations (the file holds zeros); else the data.
    let mut relocated: HashMap<u64, u64> = HashMap::new();
    for (at, r) in file.dynamic_relocations().into_iter().flatten() {
        if r.flags()
            == (object::RelocationFlags::Elf {
                r_type: object::elf::R_X86_64_RELATIVE,
            })
        {
            relocated.insert(at, r.addend() as u64);
        }
    }
    let word = |at: u64| -> u64 {
        let off = (at - section.address()) as usize;
        data.get(off..off + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let pointer = |at: u64| -> u64 { relocated.get(&at).copied().unwrap_or_else(|| word(at)) };
    let mut functions: Vec<(u64, u64, &str)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?)))
        .collect();
    functions.sort_unstable();
    for i in 0..section.size() / INSTANCE_SIZE {
        let record = section.address() + i * INSTANCE_SIZE;
        let entry = pointer(record);
        if entry == 0 {
            continue; // the runtime's sentinel
        }
        entries.push(entry);
        let code = pointer(record + 16);
        let at = functions.partition_point(|f| f.0 <= code);
        let Some(&(start, size, name)) = at.checked_sub(1).map(|k| &functions[k]) else {
            continue;
        };
        if code < start + size {
            out.entry(demangle(name)).or_default().push(HostCopy {
                record,
                layouts: word(record + INSTANCE_LAYOUTS),
            });
        }
    }
    Ok((out, entries))
}

fn tls_block(data: &[u8]) -> Result<u64> {
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(data)?;
    let endian = elf.endian();
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) == object::elf::PT_TLS {
            let memsz = ph.p_memsz(endian);
            let align = ph.p_align(endian).max(1);
            return Ok(memsz.div_ceil(align) * align);
        }
    }
    Ok(0)
}

/// A short identity of this exact binary: patches built for another build are refused.
fn build_id(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in data.chunks(4096).step_by(7) {
        for &b in chunk.iter().take(64) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:016x}{:x}", h, data.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_locals_are_named_as_declared() {
        let std_name = "_RNvNCNKNvNvMNtNtCsjrHSEGnQ3l9_3std4hash6randomNtBa_11RandomState3new4KEYS0s_023___RUST_STD_INTERNAL_VAL";
        assert_eq!(
            super::thread_local_name(std_name),
            "<std::hash::random::RandomState>::new::KEYS"
        );
        assert_eq!(super::thread_local_name("plain_symbol"), "plain_symbol");
    }
}
