//! Linux x86_64: turns recompiled CGU objects into one patch shared object whose state and
//! unchanged code resolve to the running program.
//!
//! The objects are merged into one relocatable object in which
//! * writable statics the host also has, and every undefined symbol the host defines, become
//!   symbols of a tiny `.hot_anchor` section with value `host_address - anchor_address`;
//!   GNU ld places that section at a fixed address (`--section-start`), so one link pass yields
//!   the host's absolute addresses (ld refuses PC32 against `SHN_ABS`, hence the anchor);
//! * thread-local accesses are pre-resolved to the host's thread-pointer offsets, because a
//!   shared object cannot carry local-exec ones: the other models (general- and local-dynamic,
//!   initial-exec, TLS descriptors) are first rewritten to local-exec (`tls_x86_64`);
//! * thread-locals the host imports from a shared library it loads (a dynamically linked std)
//!   are imported by the patch too: their general-dynamic, initial-exec and descriptor accesses
//!   stay as compiled, for ld and the dynamic loader (`__tls_get_addr` is ld.so's);
//! * read-only data, vtables and code stay in the patch, so edited constants take effect;
//! * names the host imports from libc stay undefined for the dynamic loader.
//!
//! Anything that cannot be resolved this way refuses the patch with a reason.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use object::elf;
use object::write::{self, SectionId, StandardSegment, SymbolId};
use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionFlags,
    SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};

use super::tls_x86_64::{self as tls, TlsOffsets, TlsSite, check_tls_sequences, code_name};
use super::{LinkedPatch, PatchFn, Refused};
use crate::host::{ENTRY_SUFFIX, HostImage, Place, demangle, place_of};

/// Inputs of one patch.
pub struct Job<'a> {
    pub objects: &'a [PathBuf],
    pub host: &'a HostImage,
    /// Runtime load address of the host executable.
    pub base: u64,
    /// Where the patch will be loaded (page-aligned, inside the host's reservation).
    pub addr: u64,
    pub work_dir: &'a Path,
    pub name: &'a str,
}

const ANCHOR: &[u8] = b".hot_anchor";
/// Largest section alignment accepted (`#[repr(align)]` allows at most 2^29).
const MAX_ALIGN: u64 = 1 << 29;

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(msg.into()))
}

struct EntrySym {
    parent: String,
    mangled: String,
    fingerprint: u64,
    kind: u32,
}

/// Rewrites and links; returns the patch and the hot functions it rebinds.
pub fn link(job: &Job) -> Result<LinkedPatch, Refused> {
    let datas: Vec<Vec<u8>> = job
        .objects
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| Refused(format!("reading {}: {e}", p.display()))))
        .collect::<Result<_, _>>()?;
    let files: Vec<object::File> = datas
        .iter()
        .zip(job.objects)
        .map(|(d, p)| {
            object::File::parse(&**d).map_err(|e| Refused(format!("parsing {}: {e}", p.display())))
        })
        .collect::<Result<_, _>>()?;

    // ld maps the ELF headers one page below the lowest section, which is the anchor.
    let anchor_addr = job.addr + 0x1000;
    let mut out = write::Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::X86_64,
        object::Endianness::Little,
    );
    let anchor = out.add_section(Vec::new(), ANCHOR.to_vec(), SectionKind::Text);
    out.append_section_data(anchor, &[0xcc], 16);
    let note = out.add_section(Vec::new(), b".note.GNU-stack".to_vec(), SectionKind::Other);
    out.section_mut(note).flags = SectionFlags::Elf { sh_flags: 0 };

    // Globals defined anywhere in the patch: references to them stay inside the patch.
    let mut defined_in_patch: HashSet<&str> = HashSet::new();
    for f in &files {
        for s in f.symbols() {
            if s.is_definition() && s.is_global() {
                if let Ok(n) = s.name() {
                    defined_in_patch.insert(n);
                }
            }
        }
    }

    let mut by_name: HashMap<String, SymbolId> = HashMap::new();
    // `__tls_get_addr`, once a sequence kept dynamic calls it.
    let mut tls_get_addr: Option<SymbolId> = None;
    // Undefined symbols standing for a definition in a later object of the same patch.
    let mut placeholders: HashSet<SymbolId> = HashSet::new();
    let mut entries: Vec<EntrySym> = Vec::new();

    for (fi, file) in files.iter().enumerate() {
        // --- sections -------------------------------------------------------------------
        let mut sec_map: HashMap<object::SectionIndex, SectionId> = HashMap::new();
        let mut tls_sections: HashSet<object::SectionIndex> = HashSet::new();
        for s in file.sections() {
            let name = s.name().unwrap_or("");
            let SectionFlags::Elf { sh_flags } = s.flags() else {
                continue;
            };
            if sh_flags & u64::from(elf::SHF_ALLOC) == 0 {
                continue;
            }
            if matches!(s.kind(), SectionKind::Tls | SectionKind::UninitializedTls) {
                tls_sections.insert(s.index());
                continue;
            }
            if name.starts_with(".init_array")
                || name.starts_with(".fini_array")
                || name.starts_with(".ctors")
                || name.starts_with(".dtors")
            {
                return refuse(format!(
                    "the patch contains a static constructor (`{name}`, e.g. from `ctor`, `inventory` or `linkme`); it would run again on load — restart instead"
                ));
            }
            let id = out.add_section(Vec::new(), name.as_bytes().to_vec(), s.kind());
            let align = s.align().max(1);
            // The writer needs a power of two and pads the file to it; rustc never asks for more
            // than `#[repr(align)]`'s limit, 2^29.
            if !align.is_power_of_two() || align > MAX_ALIGN {
                return refuse(format!("section {name} has an invalid alignment ({align})"));
            }
            if s.kind() == SectionKind::UninitializedData {
                out.append_section_bss(id, s.size(), align);
            } else {
                let data = s
                    .data()
                    .map_err(|e| Refused(format!("section {name}: {e}")))?;
                out.set_section_data(id, data.to_vec(), align);
            }
            // COMDAT groups are not carried over (one object, first definition wins).
            out.section_mut(id).flags = SectionFlags::Elf {
                sh_flags: sh_flags & !u64::from(elf::SHF_GROUP),
            };
            sec_map.insert(s.index(), id);
        }

        // Named symbols per section, to map `section symbol + addend` to a named static.
        let mut named_in: NamedIn = HashMap::new();
        for s in file.symbols() {
            if let (Some(si), SymbolKind::Data | SymbolKind::Tls | SymbolKind::Unknown) =
                (s.section_index(), s.kind())
            {
                if !s.name().unwrap_or("").is_empty() {
                    named_in
                        .entry(si)
                        .or_default()
                        .push((s.address(), s.size(), s.index()));
                }
            }
        }

        // --- symbols ----------------------------------------------------------------------
        let mut sym_map: HashMap<object::SymbolIndex, SymbolId> = HashMap::new();
        // Host thread-pointer offsets of TLS symbols, by input symbol index.
        let mut tpoff: HashMap<object::SymbolIndex, i64> = HashMap::new();
        // Thread-locals of the shared libraries the host loads: the patch imports them.
        let mut imported_tls: HashMap<object::SymbolIndex, SymbolId> = HashMap::new();
        for s in file.symbols() {
            let name = s.name().unwrap_or("");
            match s.kind() {
                SymbolKind::File => continue,
                SymbolKind::Section => {
                    if let Some(id) = s.section_index().and_then(|i| sec_map.get(&i)) {
                        let sid = out.section_symbol(*id);
                        sym_map.insert(s.index(), sid);
                    }
                    continue;
                }
                _ => {}
            }
            if name.is_empty() {
                continue;
            }
            if s.is_undefined() {
                if name == tls::TLS_GET_ADDR || name == tls::TLS_MODULE_BASE {
                    // Only thread-local sequences use them, and their rewrites drop them.
                    continue;
                }
                // A thread-local defined in another codegen unit (of the patch or not): resolved
                // to the host's thread-pointer offset like the ones defined here. One the host
                // lacks is new, whichever object of the patch defines it.
                match job.host.lookup(name) {
                    Ok(Some(h)) if h.place == Place::Tls => {
                        tpoff.insert(s.index(), h.value as i64 - job.host.tls_block as i64);
                        continue;
                    }
                    Err(e) if s.kind() == SymbolKind::Tls => return refuse(e),
                    Ok(None) if s.kind() == SymbolKind::Tls && job.host.imports.contains(name) => {
                        // The host imports it: it lives in a shared library the program loads
                        // (e.g. std's thread-locals when std is linked dynamically).
                        let id = imported_tls_symbol(&mut out, &mut by_name, name, s.is_weak());
                        imported_tls.insert(s.index(), id);
                        continue;
                    }
                    _ if s.kind() == SymbolKind::Tls => {
                        return refuse(format!(
                            "a new thread-local `{}` was added; thread-locals cannot be added to a running program — restart",
                            demangle(name)
                        ));
                    }
                    _ => {}
                }
                let id = resolve_undefined(
                    &mut out,
                    &mut by_name,
                    job,
                    anchor,
                    anchor_addr,
                    name,
                    s.is_weak(),
                    &defined_in_patch,
                )?;
                if defined_in_patch.contains(name)
                    && out.symbol(id).section == write::SymbolSection::Undefined
                {
                    placeholders.insert(id);
                }
                sym_map.insert(s.index(), id);
                continue;
            }
            let Some(si) = s.section_index() else {
                continue;
            };
            if tls_sections.contains(&si) {
                match job.host.lookup(name).map_err(Refused)? {
                    Some(h) if h.place == Place::Tls => {
                        tpoff.insert(s.index(), h.value as i64 - job.host.tls_block as i64);
                    }
                    _ => {
                        return refuse(format!(
                            "a new thread-local `{}` was added; thread-locals cannot be added to a running program — restart",
                            demangle(name)
                        ));
                    }
                }
                continue;
            }
            let Some(&out_sec) = sec_map.get(&si) else {
                continue;
            };
            let section = file
                .section_by_index(si)
                .map_err(|e| Refused(e.to_string()))?;
            let sec_name = section.name().unwrap_or("");
            let dem = demangle(name);
            // Offset of the symbol in its section (a malformed object can put it before).
            let value = s
                .address()
                .checked_sub(section.address())
                .ok_or_else(|| Refused(format!("symbol `{dem}` lies outside its section")))?;
            if let Some(parent) = dem.strip_suffix(ENTRY_SUFFIX) {
                let off = value as usize;
                let bytes = section
                    .data()
                    .ok()
                    .and_then(|d| d.get(off..off.checked_add(12)?))
                    .ok_or_else(|| Refused(format!("malformed registry entry {dem}")))?;
                entries.push(EntrySym {
                    parent: parent.to_string(),
                    mangled: name.to_string(),
                    fingerprint: u64::from_le_bytes(bytes[0..8].try_into().unwrap()),
                    kind: u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
                });
            }
            let place = place_of(section.kind(), sec_name);
            // Writable statics the host has are the host's: that is what keeps state alive.
            // A function's own slot and its registry entry stay with the patch copy.
            let keep_local = dem.ends_with("::__HOT_SLOT") || sec_name == "hot_runtime_fns";
            if place == Place::Data && !keep_local {
                if let Some(h) = job.host.lookup(name).map_err(Refused)? {
                    if h.size != s.size() && h.size != 0 && s.size() != 0 {
                        return refuse(format!(
                            "static `{dem}` changed size ({} -> {} bytes); its memory in the running program cannot be reused — restart",
                            h.size,
                            s.size()
                        ));
                    }
                    let id = host_symbol(
                        &mut out,
                        &mut by_name,
                        anchor,
                        anchor_addr,
                        name,
                        job.base.wrapping_add(h.value),
                        SymbolKind::Data,
                    );
                    if placeholders.remove(&id) {
                        // An earlier object referenced it before this definition was seen.
                        *out.symbol_mut(id) = anchored(
                            anchor,
                            anchor_addr,
                            name,
                            job.base.wrapping_add(h.value),
                            SymbolKind::Data,
                        );
                    }
                    sym_map.insert(s.index(), id);
                    continue;
                }
            }
            let scope = if s.is_global() {
                SymbolScope::Linkage
            } else {
                SymbolScope::Compilation
            };
            let sym = write::Symbol {
                name: name.as_bytes().to_vec(),
                value,
                size: s.size(),
                kind: match s.kind() {
                    SymbolKind::Unknown => SymbolKind::Label,
                    k => k,
                },
                scope,
                weak: s.is_weak(),
                section: write::SymbolSection::Section(out_sec),
                flags: SymbolFlags::None,
            };
            if scope == SymbolScope::Linkage {
                if let Some(&existing) = by_name.get(name) {
                    if placeholders.remove(&existing) {
                        // Referenced by an earlier object of the patch: this is its definition.
                        *out.symbol_mut(existing) = sym;
                    }
                    // Otherwise a weak duplicate from another CGU; the first definition wins.
                    sym_map.insert(s.index(), existing);
                    continue;
                }
            }
            let id = out.add_symbol(sym);
            if scope == SymbolScope::Linkage {
                by_name.insert(name.to_string(), id);
            }
            sym_map.insert(s.index(), id);
        }

        // --- relocations ------------------------------------------------------------------
        let tls = TlsOffsets {
            by_symbol: &tpoff,
            named_in: &named_in,
        };
        for s in file.sections() {
            let Some(&out_sec) = sec_map.get(&s.index()) else {
                continue;
            };
            let relocs: Vec<(u64, object::Relocation)> = s.relocations().collect();
            let tls_calls = check_tls_sequences(file, &s, &relocs)?;
            // The `__tls_get_addr` calls of sequences kept dynamic stay; the others go with
            // their rewrite to local-exec.
            let kept_calls: HashSet<usize> = tls_calls
                .iter()
                .filter(|(_, access)| {
                    matches!(relocs[**access].1.target(),
                        RelocationTarget::Symbol(t) if imported_tls.contains_key(&t))
                })
                .map(|(call, _)| *call)
                .collect();
            for (i, (offset, rel)) in relocs.into_iter().enumerate() {
                let RelocationFlags::Elf { r_type } = rel.flags() else {
                    return refuse("non-ELF relocation");
                };
                let RelocationTarget::Symbol(tsym) = rel.target() else {
                    return refuse(format!(
                        "unsupported relocation target in {}",
                        s.name().unwrap_or("?")
                    ));
                };
                let target = file
                    .symbol_by_index(tsym)
                    .map_err(|e| Refused(e.to_string()))?;
                let addend = rel.addend();
                if kept_calls.contains(&i) {
                    // The call of a general-dynamic sequence kept for the dynamic loader: to
                    // ld.so's `__tls_get_addr`, which ld leaves undefined in the patch.
                    let sym = *tls_get_addr.get_or_insert_with(|| {
                        out.add_symbol(undefined_symbol(
                            tls::TLS_GET_ADDR,
                            SymbolKind::Unknown,
                            false,
                        ))
                    });
                    out.add_relocation(
                        out_sec,
                        write::Relocation {
                            offset,
                            symbol: sym,
                            addend,
                            flags: RelocationFlags::Elf { r_type },
                        },
                    )
                    .map_err(|e| Refused(format!("relocation: {e}")))?;
                    continue;
                }
                if tls_calls.contains_key(&i) {
                    // The `__tls_get_addr` call of a sequence rewritten to local-exec.
                    continue;
                }
                if let Some(access) = tls::Access::of(r_type) {
                    let site = TlsSite {
                        access,
                        r_type,
                        offset,
                        section: s.name().unwrap_or("?"),
                    };
                    if let Some(&sym) = imported_tls.get(&tsym) {
                        // Another module's thread-local: the access stays as compiled.
                        access.dynamic().map_err(|why| site.refusal(&target, why))?;
                        out.add_relocation(
                            out_sec,
                            write::Relocation {
                                offset,
                                symbol: sym,
                                addend,
                                flags: RelocationFlags::Elf { r_type },
                            },
                        )
                        .map_err(|e| Refused(format!("relocation: {e}")))?;
                        continue;
                    }
                    tls.rewrite(out.section_mut(out_sec), &site, tsym, &target, addend)?;
                    continue;
                }
                if target.name() == Ok(tls::TLS_GET_ADDR) {
                    return refuse(format!(
                        "code in {} calls `{}` outside a thread-local access cargo hot can rewrite; restart",
                        code_name(s.name().unwrap_or("?")),
                        tls::TLS_GET_ADDR
                    ));
                }
                let (sym, addend) = if target.kind() == SymbolKind::Section {
                    let tsec = target.section_index();
                    let is_tls = tsec.is_some_and(|i| tls_sections.contains(&i));
                    if is_tls {
                        return refuse(
                            "a thread-local is accessed in a way cargo hot cannot patch; restart",
                        );
                    }
                    let tsection = tsec.and_then(|i| file.section_by_index(i).ok());
                    let writable = tsection.as_ref().is_some_and(|ts| {
                        place_of(ts.kind(), ts.name().unwrap_or("")) == Place::Data
                            && ts.name().unwrap_or("") != "hot_runtime_fns"
                    });
                    // `section + addend` into writable data: find the static it means.
                    let bias = if matches!(
                        r_type,
                        elf::R_X86_64_64 | elf::R_X86_64_32 | elf::R_X86_64_32S
                    ) {
                        0
                    } else {
                        4
                    };
                    match (writable, covering(&named_in, &target, addend, bias)) {
                        (true, Some((named, delta))) if sym_map.contains_key(&named) => {
                            (sym_map[&named], delta)
                        }
                        _ => match sym_map.get(&tsym) {
                            Some(id) => (*id, addend),
                            None => {
                                return refuse(
                                    "relocation against a section that is not part of the patch",
                                );
                            }
                        },
                    }
                } else {
                    match sym_map.get(&tsym) {
                        Some(id) => (*id, addend),
                        None => {
                            return refuse(format!(
                                "relocation against unknown symbol `{}`",
                                demangle(target.name().unwrap_or("?"))
                            ));
                        }
                    }
                };
                out.add_relocation(
                    out_sec,
                    write::Relocation {
                        offset,
                        symbol: sym,
                        addend,
                        flags: RelocationFlags::Elf { r_type },
                    },
                )
                .map_err(|e| Refused(format!("relocation: {e}")))?;
            }
        }
        let _ = fi;
    }

    // Fingerprints: refuse the whole patch before anything is loaded.
    for e in &entries {
        match job.host.hot_fns.get(&e.parent) {
            None => {} // a new #[hot] fn: nothing in the host calls it yet
            Some(h) if h.kind != e.kind => {
                return refuse(format!(
                    "`{}` changed between `fn` and `async fn` — restart",
                    e.parent
                ));
            }
            Some(h) if h.fingerprint != e.fingerprint => {
                return refuse(format!(
                    "the signature of `{}` changed — restart to use the new signature, or edit it back",
                    e.parent
                ));
            }
            Some(_) => {}
        }
    }

    let obj_path = job.work_dir.join(format!("{}.o", job.name));
    let so_path = job.work_dir.join(format!("{}.so", job.name));
    let bytes = out
        .write()
        .map_err(|e| Refused(format!("writing patch object: {e}")))?;
    std::fs::write(&obj_path, bytes)
        .map_err(|e| Refused(format!("writing {}: {e}", obj_path.display())))?;
    let _ = StandardSegment::Text;

    run_ld(&obj_path, &so_path, anchor_addr)?;
    let (len, syms) = read_linked(&so_path, job.addr)?;

    let mut fns = Vec::new();
    for e in &entries {
        let Some(h) = job.host.hot_fns.get(&e.parent) else {
            continue;
        };
        let Some(&patch_entry) = syms.by_mangled.get(&e.mangled) else {
            return refuse(format!(
                "the linked patch lost the registry entry of `{}`",
                e.parent
            ));
        };
        let target = if e.kind == hot_runtime::protocol::KIND_ASYNC {
            syms.async_entry(&e.parent)
        } else {
            syms.by_path.get(&e.parent).copied()
        };
        let Some(target) = target else {
            return refuse(format!(
                "cannot find the new code of `{}` in the patch",
                e.parent
            ));
        };
        fns.push(PatchFn {
            name: e.parent.clone(),
            host_entry: job.base + h.entry,
            patch_entry,
            target,
        });
    }
    Ok(LinkedPatch {
        path: so_path,
        addr: job.addr,
        len,
        fns,
    })
}

/// Named symbols of an object by section: `(address, size, symbol)`.
pub(super) type NamedIn = HashMap<object::SectionIndex, Vec<(u64, u64, object::SymbolIndex)>>;

/// The named symbol of `target`'s section that covers `addend + bias`, and the addend relative
/// to it.
pub(super) fn covering(
    named_in: &NamedIn,
    target: &object::Symbol,
    addend: i64,
    bias: i64,
) -> Option<(object::SymbolIndex, i64)> {
    let list = named_in.get(&target.section_index()?)?;
    let section_base = target.address();
    // Offsets in the section; `None` (no covering symbol) where a malformed object overflows.
    let offset = |addr: u64| i64::try_from(addr.checked_sub(section_base)?).ok();
    if let [(addr, _, idx)] = list.as_slice() {
        return Some((*idx, addend.checked_sub(offset(*addr)?)?));
    }
    let at = addend.checked_add(bias)?;
    list.iter().find_map(|(addr, size, idx)| {
        let off = offset(*addr)?;
        let end = off.checked_add(i64::try_from((*size).max(1)).ok()?)?;
        (at >= off && at < end).then_some((*idx, addend.checked_sub(off)?))
    })
}

/// A symbol left to the dynamic loader (default visibility, so the patch imports it).
fn undefined_symbol(name: &str, kind: SymbolKind, weak: bool) -> write::Symbol {
    write::Symbol {
        name: name.as_bytes().to_vec(),
        value: 0,
        size: 0,
        kind,
        scope: SymbolScope::Dynamic,
        weak,
        section: write::SymbolSection::Undefined,
        flags: SymbolFlags::None,
    }
}

/// The patch's import of a thread-local of a shared library the host loads.
fn imported_tls_symbol(
    out: &mut write::Object,
    by_name: &mut HashMap<String, SymbolId>,
    name: &str,
    weak: bool,
) -> SymbolId {
    if let Some(&id) = by_name.get(name) {
        // Referenced by an earlier object: a thread-local either way. (A definition in the
        // patch stays as it is; ld refuses a thread-local access to a plain static.)
        let sym = out.symbol_mut(id);
        if sym.section == write::SymbolSection::Undefined {
            sym.kind = SymbolKind::Tls;
        }
        return id;
    }
    let id = out.add_symbol(undefined_symbol(name, SymbolKind::Tls, weak));
    by_name.insert(name.to_string(), id);
    id
}

fn host_symbol(
    out: &mut write::Object,
    by_name: &mut HashMap<String, SymbolId>,
    anchor: SectionId,
    anchor_addr: u64,
    name: &str,
    runtime_addr: u64,
    kind: SymbolKind,
) -> SymbolId {
    if let Some(id) = by_name.get(name) {
        return *id;
    }
    let id = out.add_symbol(anchored(anchor, anchor_addr, name, runtime_addr, kind));
    by_name.insert(name.to_string(), id);
    id
}

/// A symbol at `runtime_addr`, expressed relative to the anchor section.
fn anchored(
    anchor: SectionId,
    anchor_addr: u64,
    name: &str,
    runtime_addr: u64,
    kind: SymbolKind,
) -> write::Symbol {
    write::Symbol {
        name: name.as_bytes().to_vec(),
        value: runtime_addr.wrapping_sub(anchor_addr),
        size: 0,
        kind,
        scope: SymbolScope::Compilation,
        weak: false,
        section: write::SymbolSection::Section(anchor),
        flags: SymbolFlags::None,
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve_undefined(
    out: &mut write::Object,
    by_name: &mut HashMap<String, SymbolId>,
    job: &Job,
    anchor: SectionId,
    anchor_addr: u64,
    name: &str,
    weak: bool,
    defined_in_patch: &HashSet<&str>,
) -> Result<SymbolId, Refused> {
    if let Some(id) = by_name.get(name) {
        return Ok(*id);
    }
    let undefined = |out: &mut write::Object, weak: bool| {
        out.add_symbol(undefined_symbol(name, SymbolKind::Unknown, weak))
    };
    if demangle(name).ends_with("::__HOT_SLOT") && !defined_in_patch.contains(name) {
        // Each copy of a hot fn must read its own slot; binding it to the host's would make the
        // copy forward to itself. The slot's codegen unit is not in this patch: give it one.
        let sec = out.add_section(
            Vec::new(),
            b".bss.hot_slot".to_vec(),
            SectionKind::UninitializedData,
        );
        out.append_section_bss(sec, 8, 8);
        let id = out.add_symbol(write::Symbol {
            name: name.as_bytes().to_vec(),
            value: 0,
            size: 8,
            kind: SymbolKind::Data,
            scope: SymbolScope::Compilation,
            weak: false,
            section: write::SymbolSection::Section(sec),
            flags: SymbolFlags::None,
        });
        by_name.insert(name.to_string(), id);
        return Ok(id);
    }
    if name == "_GLOBAL_OFFSET_TABLE_" {
        // The patch's own GOT, which ld defines (gas declares it in objects with GOT or TLS
        // relocations); the host's copy would be the wrong table.
        let id = undefined(out, false);
        by_name.insert(name.to_string(), id);
        return Ok(id);
    }
    if defined_in_patch.contains(name) {
        // Defined by another object of this patch; ld binds them (definition added later).
        let id = undefined(out, false);
        by_name.insert(name.to_string(), id);
        return Ok(id);
    }
    match job.host.lookup(name) {
        Ok(Some(h)) => {
            let kind = if h.place == Place::Text {
                SymbolKind::Text
            } else {
                SymbolKind::Data
            };
            if h.place == Place::Tls {
                return refuse(format!(
                    "thread-local `{}` is reached through an unsupported access",
                    demangle(name)
                ));
            }
            return Ok(host_symbol(
                out,
                by_name,
                anchor,
                anchor_addr,
                name,
                job.base.wrapping_add(h.value),
                kind,
            ));
        }
        Ok(None) => {}
        Err(e) => {
            if !job.host.imports.contains(name) {
                return refuse(e);
            }
        }
    }
    if job.host.imports.contains(name) || weak {
        let id = undefined(out, weak);
        by_name.insert(name.to_string(), id);
        return Ok(id);
    }
    refuse(format!(
        "`{}` is not in the running program (it was never linked into it); restart to pick it up",
        demangle(name)
    ))
}

fn run_ld(obj: &Path, so: &Path, addr: u64) -> Result<(), Refused> {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO_HOT_CC").unwrap_or_else(|_| "cc".into()));
    crate::build::yield_cpu(&mut cmd);
    let output = cmd
        .arg("-shared")
        .arg("-nostdlib")
        .arg("-o")
        .arg(so)
        .arg(obj)
        .arg("-Wl,-Bsymbolic")
        .arg("-Wl,--eh-frame-hdr")
        .arg("-Wl,-z,noexecstack")
        .arg("-Wl,--build-id=none")
        .arg("-Wl,--hash-style=gnu")
        .arg(format!("-Wl,--section-start=.hot_anchor={addr:#x}"))
        .arg(format!("-Wl,-Ttext-segment={:#x}", addr + 0x1000))
        .output()
        .map_err(|e| Refused(format!("running the linker (cc): {e}")))?;
    if !output.status.success() {
        return refuse(format!(
            "linking the patch failed:\n{}",
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    Ok(())
}

struct LinkedSyms {
    by_mangled: HashMap<String, u64>,
    by_path: HashMap<String, u64>,
    shims: Vec<(String, u64)>,
}

impl LinkedSyms {
    /// The boxed-future entry closure of an async hot fn. Its registry entry sits inside the
    /// fn's body coroutine (`P = f::{closure#0}`), and the entry closure is the coroutine's first
    /// closure, reified through `<P::{closure#0} as FnOnce<..>>::call_once`.
    fn async_entry(&self, parent: &str) -> Option<u64> {
        let prefix = format!("<{parent}::{{closure#0}} as core::ops::function::FnOnce<");
        self.shims
            .iter()
            .find(|(n, _)| n.starts_with(&prefix) && n.ends_with(">>::call_once"))
            .map(|(_, a)| *a)
    }
}

/// Extent of the linked patch and its symbol addresses.
fn read_linked(so: &Path, addr: u64) -> Result<(u64, LinkedSyms), Refused> {
    use object::read::elf::ProgramHeader as _;
    let data = std::fs::read(so).map_err(|e| Refused(format!("reading {}: {e}", so.display())))?;
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(&*data)
        .map_err(|e| Refused(e.to_string()))?;
    let endian = elf.endian();
    let mut lo = u64::MAX;
    let mut hi = 0;
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_LOAD {
            lo = lo.min(ph.p_vaddr(endian));
            hi = hi.max(ph.p_vaddr(endian) + ph.p_memsz(endian));
        }
    }
    if lo != addr {
        return refuse(format!(
            "the linker placed the patch at {lo:#x} instead of {addr:#x}"
        ));
    }
    let len = (hi - lo).div_ceil(4096) * 4096;
    let mut syms = LinkedSyms {
        by_mangled: HashMap::new(),
        by_path: HashMap::new(),
        shims: Vec::new(),
    };
    for s in elf.symbols() {
        let Ok(name) = s.name() else { continue };
        if name.is_empty() || s.is_undefined() {
            continue;
        }
        syms.by_mangled.insert(name.to_string(), s.address());
        if s.kind() == SymbolKind::Text {
            let dem = demangle(name);
            if dem.ends_with(">>::call_once") {
                syms.shims.push((dem.clone(), s.address()));
            }
            syms.by_path.insert(dem, s.address());
        }
    }
    Ok((len, syms))
}
