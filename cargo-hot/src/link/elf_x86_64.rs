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
use object::write::{self, SectionId, SymbolId};
use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionFlags,
    SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};

use super::tls_x86_64::{self as tls, TlsOffsets, TlsSite, check_tls_sequences, code_name};
use super::{LinkedPatch, PatchFn, Refused};
use crate::host::{ENTRY_SUFFIX, HostImage, HostSym, Place, demangle, place_of};
use hot_runtime::protocol::{
    INSTANCE_LAYOUTS, INSTANCE_SECTION, INSTANCE_SIZE, REGISTRY_SECTION, SLOT_SUFFIX,
};

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

/// A hot fn's registry entry in the patch.
struct EntrySym {
    parent: String,
    mangled: String,
    fingerprint: u64,
    kind: u32,
}

/// A compiled copy of a sync hot fn in the patch: its instance record, named by a local symbol
/// the merge adds, and the function it is a copy of.
struct InstanceSym {
    /// The local symbol at the record (its address in the linked patch is the `patch-entry`).
    symbol: String,
    /// Demangled path of the copy (`app::largest::<u32>`).
    copy: String,
    /// Demangled path of the hot fn (`app::largest`), as its registry entry names it.
    parent: String,
    /// Layout hash of the copy's argument and return types.
    layouts: u64,
}

/// Rewrites and links; returns the patch and the hot functions it rebinds.
pub fn link(job: &Job) -> Result<LinkedPatch, Refused> {
    let t = std::time::Instant::now();
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

    crate::ui::debug_time("link: read+parse", t);
    let mut merged = Merged::new(job, &files);
    for file in &files {
        merged.add_object(file)?;
    }
    crate::ui::debug_time("link: merged", t);
    // Fingerprints and layouts: refuse the whole patch before anything is loaded.
    check_fingerprints(&merged.entries, job.host)?;
    check_layouts(&merged.instances, job.host)?;

    let obj_path = job.work_dir.join(format!("{}.o", job.name));
    let so_path = job.work_dir.join(format!("{}.so", job.name));
    merged.write(&obj_path)?;
    crate::ui::debug_time("link: written", t);
    run_ld(&obj_path, &so_path, merged.anchor_addr)?;
    crate::ui::debug_time("link: ld", t);
    let (len, syms) = read_linked(&so_path, job.addr)?;
    crate::ui::debug_time("link: read linked", t);
    let fns = rebound_fns(job, &merged.entries, &merged.instances, &syms)?;
    Ok(LinkedPatch {
        path: so_path,
        addr: job.addr,
        len,
        fns,
    })
}

/// Refuses the patch when a hot fn the host has changed between `fn` and `async fn`, or changed
/// its signature.
fn check_fingerprints(entries: &[EntrySym], host: &HostImage) -> Result<(), Refused> {
    for e in entries {
        match host.hot_fns.get(&e.parent) {
            None => {} // a new #[hot] fn: nothing in the host calls it yet
            Some(h) if h.kind != e.kind => {
                return refuse(format!(
                    "`{}` changed between `fn` and `async fn` — restart",
                    e.parent
                ));
            }
            Some(h)
                if h.kind == hot_runtime::protocol::KIND_ASYNC && in_generic_impl(&e.parent) =>
            {
                return refuse(format!(
                    "`{}` is an `async fn` of a generic impl: its instantiations share one slot, \
                     so a patch cannot tell them apart — restart",
                    e.parent.trim_end_matches("::{closure#0}")
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
    Ok(())
}

/// Refuses the patch when a copy of a hot fn the host has takes or returns a type whose layout
/// changed (a struct that gained a field), which the signature's text does not show.
fn check_layouts(instances: &[InstanceSym], host: &HostImage) -> Result<(), Refused> {
    for i in instances {
        let Some(copies) = host.instances.get(&i.copy) else {
            continue;
        };
        if copies.iter().any(|c| c.layouts != i.layouts) {
            return refuse(format!(
                "the signature of `{}` changed (the layout of a type it takes or returns) — \
                 restart to use the new signature, or edit it back",
                i.parent
            ));
        }
    }
    Ok(())
}

/// Whether a hot fn's registry path lies inside a generic impl: a static there is shared by all
/// the impl's instantiations, and the demangler writes their parameters as `_`
/// (`<app::S<_>>::get::{closure#0}`).
fn in_generic_impl(path: &str) -> bool {
    ["<_>", "<_,", ", _>", ", _,"]
        .iter()
        .any(|p| path.contains(p))
}

/// The host's hot fns the linked patch rebinds: for each, its registry entry in the patch and
/// its new code. A sync fn is rebound copy by copy (each instantiation of a generic fn on its
/// own); an async fn through its registry entry.
fn rebound_fns(
    job: &Job,
    entries: &[EntrySym],
    instances: &[InstanceSym],
    syms: &LinkedSyms,
) -> Result<Vec<PatchFn>, Refused> {
    let mut fns = rebound_copies(job, instances, syms)?;
    for e in entries {
        let Some(h) = job.host.hot_fns.get(&e.parent) else {
            continue;
        };
        if h.copies > 0 || instances.iter().any(|i| i.parent == e.parent) {
            continue; // rebound copy by copy
        }
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
    Ok(fns)
}

/// Each compiled copy the host has of an instantiation the patch compiled gets one of the
/// patch's copies of it, in turn, so that every patch copy is some host copy's newest code
/// (and is redirected by the next patch). A copy the host lacks is a new instantiation: only
/// the patch's code calls it, and runs it from the start.
fn rebound_copies(
    job: &Job,
    instances: &[InstanceSym],
    syms: &LinkedSyms,
) -> Result<Vec<PatchFn>, Refused> {
    let mut by_copy: HashMap<&str, Vec<&InstanceSym>> = HashMap::new();
    for i in instances {
        by_copy.entry(i.copy.as_str()).or_default().push(i);
    }
    let mut copies: Vec<&str> = by_copy.keys().copied().collect();
    copies.sort_unstable();
    let mut fns = Vec::new();
    for copy in copies {
        let Some(hosts) = job.host.instances.get(copy) else {
            continue;
        };
        let patch = &by_copy[copy];
        let Some(&target) = syms.by_path.get(copy) else {
            return refuse(format!("cannot find the new code of `{copy}` in the patch"));
        };
        for k in 0..hosts.len().max(patch.len()) {
            let p = patch[k % patch.len()];
            let Some(&patch_entry) = syms.by_mangled.get(&p.symbol) else {
                return refuse(format!("the linked patch lost the copy `{copy}`"));
            };
            fns.push(PatchFn {
                name: p.parent.clone(),
                host_entry: job.base + hosts[k % hosts.len()].record,
                patch_entry,
                target,
            });
        }
    }
    Ok(fns)
}

/// The one relocatable object the patch's objects are merged into, built object by object.
struct Merged<'a, 'd> {
    job: &'a Job<'a>,
    out: write::Object<'static>,
    /// The `.hot_anchor` section, which ld places at `anchor_addr`.
    anchor: SectionId,
    anchor_addr: u64,
    /// Globals defined anywhere in the patch: references to them stay inside the patch.
    defined_in_patch: HashSet<&'d str>,
    /// Symbols the objects share by name: their globals, the host's symbols and imports.
    by_name: HashMap<String, SymbolId>,
    /// `__tls_get_addr`, once a sequence kept dynamic calls it.
    tls_get_addr: Option<SymbolId>,
    /// Undefined symbols standing for a definition in a later object of the same patch.
    placeholders: HashSet<SymbolId>,
    /// The registry entries of hot fns found in the objects so far.
    entries: Vec<EntrySym>,
    /// The instance records (compiled copies of sync hot fns) found in the objects so far.
    instances: Vec<InstanceSym>,
}

/// One object of the patch: where its sections and symbols went in the merged object.
struct Input<'d, 'f> {
    file: &'f object::File<'d>,
    /// Its allocated sections, copied; thread-local ones are the host's and are not copied.
    sections: HashMap<object::SectionIndex, SectionId>,
    tls_sections: HashSet<object::SectionIndex>,
    /// Named symbols per section, to map `section symbol + addend` to a named static.
    named_in: NamedIn,
    symbols: HashMap<object::SymbolIndex, SymbolId>,
    /// Host thread-pointer offsets of TLS symbols, by input symbol index.
    tpoff: HashMap<object::SymbolIndex, i64>,
    /// Thread-locals of the shared libraries the host loads: the patch imports them.
    imported_tls: HashMap<object::SymbolIndex, SymbolId>,
}

/// A relocation of an input section whose copy is `out_sec`.
struct InReloc<'d, 'f> {
    /// The input section's name, for messages.
    section: &'d str,
    out_sec: SectionId,
    offset: u64,
    r_type: u32,
    tsym: object::SymbolIndex,
    target: object::Symbol<'d, 'f>,
    addend: i64,
}

impl<'a, 'd> Merged<'a, 'd> {
    fn new(job: &'a Job<'a>, files: &[object::File<'d>]) -> Self {
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
        Merged {
            job,
            out,
            anchor,
            anchor_addr,
            defined_in_patch: defined_globals(files),
            by_name: HashMap::new(),
            tls_get_addr: None,
            placeholders: HashSet::new(),
            entries: Vec::new(),
            instances: Vec::new(),
        }
    }

    /// Merges one object: its sections, then its symbols, then its relocations.
    fn add_object(&mut self, file: &object::File<'d>) -> Result<(), Refused> {
        let mut input = Input::new(file);
        self.copy_sections(&mut input)?;
        self.map_symbols(&mut input)?;
        self.note_instances(&input)?;
        self.copy_relocations(&input)
    }

    /// Names each instance record of the object with a local symbol, and notes which function
    /// it is a copy of: the function around the record's code address, and whose registry entry
    /// its first pointer names.
    fn note_instances(&mut self, input: &Input<'d, '_>) -> Result<(), Refused> {
        let file = input.file;
        for s in file.sections() {
            if s.name() != Ok(INSTANCE_SECTION) {
                continue;
            }
            let Some(&out_sec) = input.sections.get(&s.index()) else {
                continue;
            };
            let mut records: HashMap<u64, (Option<String>, Option<String>)> = HashMap::new();
            for (offset, rel) in s.relocations() {
                let field = offset % INSTANCE_SIZE;
                if field != 0 && field != 16 {
                    continue;
                }
                let RelocationTarget::Symbol(t) = rel.target() else {
                    continue;
                };
                let t = file
                    .symbol_by_index(t)
                    .map_err(|e| Refused(format!("instance record: {e}")))?;
                let record = records.entry(offset - field).or_default();
                if field == 0 {
                    let d = demangle(t.name().unwrap_or(""));
                    record.0 = d.strip_suffix(ENTRY_SUFFIX).map(str::to_string);
                } else {
                    let at = t.address().wrapping_add(rel.addend() as u64);
                    record.1 = t
                        .section_index()
                        .and_then(|si| function_at(file, si, at))
                        .map(demangle);
                }
            }
            let data = s
                .data()
                .map_err(|e| Refused(format!("instance records: {e}")))?;
            let layouts_at = |at: u64| -> u64 {
                let off = (at + INSTANCE_LAYOUTS) as usize;
                data.get(off..off + 8)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
            };
            let mut offsets: Vec<u64> = records.keys().copied().collect();
            offsets.sort_unstable();
            for at in offsets {
                let (Some(parent), Some(copy)) = records.remove(&at).unwrap() else {
                    return refuse(format!(
                        "an instance record in {} names no hot fn",
                        code_name(s.name().unwrap_or("?"))
                    ));
                };
                let symbol = format!("__hot_instance.{}", self.instances.len());
                self.out.add_symbol(write::Symbol {
                    name: symbol.as_bytes().to_vec(),
                    value: at,
                    size: INSTANCE_SIZE,
                    kind: SymbolKind::Data,
                    scope: SymbolScope::Compilation,
                    weak: false,
                    section: write::SymbolSection::Section(out_sec),
                    flags: SymbolFlags::None,
                });
                self.instances.push(InstanceSym {
                    symbol,
                    copy,
                    parent,
                    layouts: layouts_at(at),
                });
            }
        }
        Ok(())
    }

    /// Writes the merged object to `path`, for ld.
    fn write(&self, path: &Path) -> Result<(), Refused> {
        let bytes = self
            .out
            .write()
            .map_err(|e| Refused(format!("writing patch object: {e}")))?;
        std::fs::write(path, bytes).map_err(|e| Refused(format!("writing {}: {e}", path.display())))
    }

    // --- sections -----------------------------------------------------------------------------

    /// Copies the object's allocated sections; notes its thread-local ones.
    fn copy_sections(&mut self, input: &mut Input) -> Result<(), Refused> {
        for s in input.file.sections() {
            let SectionFlags::Elf { sh_flags } = s.flags() else {
                continue;
            };
            if sh_flags & u64::from(elf::SHF_ALLOC) == 0 {
                continue;
            }
            if matches!(s.kind(), SectionKind::Tls | SectionKind::UninitializedTls) {
                input.tls_sections.insert(s.index());
                continue;
            }
            let id = self.copy_section(&s, sh_flags)?;
            input.sections.insert(s.index(), id);
        }
        Ok(())
    }

    /// Copies one allocated section; refuses static constructors and invalid alignments.
    fn copy_section(&mut self, s: &object::Section, sh_flags: u64) -> Result<SectionId, Refused> {
        let name = s.name().unwrap_or("");
        if name.starts_with(".init_array")
            || name.starts_with(".fini_array")
            || name.starts_with(".ctors")
            || name.starts_with(".dtors")
        {
            return refuse(format!(
                "the patch contains a static constructor (`{name}`, e.g. from `ctor`, `inventory` or `linkme`); it would run again on load — restart instead"
            ));
        }
        let id = self
            .out
            .add_section(Vec::new(), name.as_bytes().to_vec(), s.kind());
        let align = s.align().max(1);
        // The writer needs a power of two and pads the file to it; rustc never asks for more
        // than `#[repr(align)]`'s limit, 2^29.
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return refuse(format!("section {name} has an invalid alignment ({align})"));
        }
        if s.kind() == SectionKind::UninitializedData {
            self.out.append_section_bss(id, s.size(), align);
        } else {
            let data = s
                .data()
                .map_err(|e| Refused(format!("section {name}: {e}")))?;
            self.out.set_section_data(id, data.to_vec(), align);
        }
        // COMDAT groups are not carried over (one object, first definition wins).
        self.out.section_mut(id).flags = SectionFlags::Elf {
            sh_flags: sh_flags & !u64::from(elf::SHF_GROUP),
        };
        Ok(id)
    }

    // --- symbols ------------------------------------------------------------------------------

    /// Maps the object's symbols to the merged object's, and its thread-locals to the host's
    /// thread-pointer offsets (or to imports).
    fn map_symbols(&mut self, input: &mut Input<'d, '_>) -> Result<(), Refused> {
        let file = input.file;
        for s in file.symbols() {
            let name = s.name().unwrap_or("");
            match s.kind() {
                SymbolKind::File => continue,
                SymbolKind::Section => {
                    if let Some(id) = s.section_index().and_then(|i| input.sections.get(&i)) {
                        let sid = self.out.section_symbol(*id);
                        input.symbols.insert(s.index(), sid);
                    }
                    continue;
                }
                _ => {}
            }
            if name.is_empty() {
                continue;
            }
            if s.is_undefined() {
                self.map_undefined(input, &s, name)?;
                continue;
            }
            let Some(si) = s.section_index() else {
                continue;
            };
            if input.tls_sections.contains(&si) {
                match self.job.host.lookup(name).map_err(Refused)? {
                    Some(h) if h.place == Place::Tls => {
                        input.tpoff.insert(s.index(), self.tpoff(&h));
                    }
                    _ => return new_thread_local(name),
                }
                continue;
            }
            let Some(&out_sec) = input.sections.get(&si) else {
                continue;
            };
            let id = self.map_defined(file, &s, name, si, out_sec)?;
            input.symbols.insert(s.index(), id);
        }
        Ok(())
    }

    /// The host's thread-pointer offset of one of its thread-locals.
    fn tpoff(&self, h: &HostSym) -> i64 {
        h.value as i64 - self.job.host.tls_block as i64
    }

    /// Maps a symbol the object references but does not define.
    fn map_undefined(
        &mut self,
        input: &mut Input,
        s: &object::Symbol,
        name: &str,
    ) -> Result<(), Refused> {
        if name == tls::TLS_GET_ADDR || name == tls::TLS_MODULE_BASE {
            // Only thread-local sequences use them, and their rewrites drop them.
            return Ok(());
        }
        // A thread-local defined in another codegen unit (of the patch or not): resolved
        // to the host's thread-pointer offset like the ones defined here. One the host
        // lacks is new, whichever object of the patch defines it.
        match self.job.host.lookup(name) {
            Ok(Some(h)) if h.place == Place::Tls => {
                input.tpoff.insert(s.index(), self.tpoff(&h));
                return Ok(());
            }
            Err(e) if s.kind() == SymbolKind::Tls => return refuse(e),
            Ok(None) if s.kind() == SymbolKind::Tls && self.job.host.imports.contains(name) => {
                // The host imports it: it lives in a shared library the program loads
                // (e.g. std's thread-locals when std is linked dynamically).
                let id = self.imported_tls_symbol(name, s.is_weak());
                input.imported_tls.insert(s.index(), id);
                return Ok(());
            }
            _ if s.kind() == SymbolKind::Tls => return new_thread_local(name),
            _ => {}
        }
        let id = self.resolve_undefined(name, s.is_weak())?;
        if self.defined_in_patch.contains(name)
            && self.out.symbol(id).section == write::SymbolSection::Undefined
        {
            self.placeholders.insert(id);
        }
        input.symbols.insert(s.index(), id);
        Ok(())
    }

    /// Maps a symbol the object defines in `si`, a section copied to `out_sec`.
    fn map_defined(
        &mut self,
        file: &object::File,
        s: &object::Symbol,
        name: &str,
        si: object::SectionIndex,
        out_sec: SectionId,
    ) -> Result<SymbolId, Refused> {
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
            let entry = registry_entry(&section, value, parent, name, &dem)?;
            self.entries.push(entry);
        }
        let place = place_of(section.kind(), sec_name);
        // Writable statics the host has are the host's: that is what keeps state alive.
        // A function's own slot and its registry entry stay with the patch copy.
        let keep_local = dem.ends_with(SLOT_SUFFIX) || sec_name == REGISTRY_SECTION;
        if place == Place::Data && !keep_local {
            if let Some(id) = self.host_static(name, &dem, s.size())? {
                return Ok(id);
            }
        }
        Ok(self.add_definition(s, name, value, out_sec))
    }

    /// The host's copy of writable static `name` (`size` bytes in the patch), if it has one.
    fn host_static(
        &mut self,
        name: &str,
        dem: &str,
        size: u64,
    ) -> Result<Option<SymbolId>, Refused> {
        let Some(h) = self.job.host.lookup(name).map_err(Refused)? else {
            return Ok(None);
        };
        if h.size != size && h.size != 0 && size != 0 {
            return refuse(format!(
                "static `{dem}` changed size ({} -> {} bytes); its memory in the running program cannot be reused — restart",
                h.size, size
            ));
        }
        let runtime_addr = self.job.base.wrapping_add(h.value);
        let id = self.host_symbol(name, runtime_addr, SymbolKind::Data);
        if self.placeholders.remove(&id) {
            // An earlier object referenced it before this definition was seen.
            let sym = self.anchored(name, runtime_addr, SymbolKind::Data);
            *self.out.symbol_mut(id) = sym;
        }
        Ok(Some(id))
    }

    /// Adds a definition at `value` in `out_sec`; of a global the patch already defines, the
    /// first definition stays.
    fn add_definition(
        &mut self,
        s: &object::Symbol,
        name: &str,
        value: u64,
        out_sec: SectionId,
    ) -> SymbolId {
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
            if let Some(&existing) = self.by_name.get(name) {
                if self.placeholders.remove(&existing) {
                    // Referenced by an earlier object of the patch: this is its definition.
                    *self.out.symbol_mut(existing) = sym;
                }
                // Otherwise a weak duplicate from another CGU; the first definition wins.
                return existing;
            }
        }
        let id = self.out.add_symbol(sym);
        if scope == SymbolScope::Linkage {
            self.by_name.insert(name.to_string(), id);
        }
        id
    }

    // --- resolution ---------------------------------------------------------------------------

    /// The merged object's symbol for `name`, which an object references but does not define:
    /// the patch's own, the host's, or one left to the dynamic loader.
    fn resolve_undefined(&mut self, name: &str, weak: bool) -> Result<SymbolId, Refused> {
        if let Some(id) = self.by_name.get(name) {
            return Ok(*id);
        }
        if demangle(name).ends_with(SLOT_SUFFIX) && !self.defined_in_patch.contains(name) {
            // Each copy of a hot fn must read its own slot; binding it to the host's would make the
            // copy forward to itself. The slot's codegen unit is not in this patch: give it one.
            return Ok(self.own_slot(name));
        }
        if name == "_GLOBAL_OFFSET_TABLE_" {
            // The patch's own GOT, which ld defines (gas declares it in objects with GOT or TLS
            // relocations); the host's copy would be the wrong table.
            return Ok(self.leave_undefined(name, false));
        }
        if self.defined_in_patch.contains(name) {
            // Defined by another object of this patch; ld binds them (definition added later).
            return Ok(self.leave_undefined(name, false));
        }
        match self.job.host.lookup(name) {
            Ok(Some(h)) => return self.host_definition(name, &h),
            Ok(None) => {}
            Err(e) => {
                if !self.job.host.imports.contains(name) {
                    return refuse(e);
                }
            }
        }
        if self.job.host.imports.contains(name) || weak {
            return Ok(self.leave_undefined(name, weak));
        }
        refuse(format!(
            "`{}` is not in the running program (it was never linked into it); restart to pick it up",
            demangle(name)
        ))
    }

    /// A slot of the patch's own for hot fn slot `name`.
    fn own_slot(&mut self, name: &str) -> SymbolId {
        let sec = self.out.add_section(
            Vec::new(),
            b".bss.hot_slot".to_vec(),
            SectionKind::UninitializedData,
        );
        self.out.append_section_bss(sec, 8, 8);
        let id = self.out.add_symbol(write::Symbol {
            name: name.as_bytes().to_vec(),
            value: 0,
            size: 8,
            kind: SymbolKind::Data,
            scope: SymbolScope::Compilation,
            weak: false,
            section: write::SymbolSection::Section(sec),
            flags: SymbolFlags::None,
        });
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// `name` left undefined, for ld or the dynamic loader.
    fn leave_undefined(&mut self, name: &str, weak: bool) -> SymbolId {
        let id = self
            .out
            .add_symbol(undefined_symbol(name, SymbolKind::Unknown, weak));
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// The host's definition `h` of `name`, which must not be a thread-local.
    fn host_definition(&mut self, name: &str, h: &HostSym) -> Result<SymbolId, Refused> {
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
        let runtime_addr = self.job.base.wrapping_add(h.value);
        Ok(self.host_symbol(name, runtime_addr, kind))
    }

    /// The patch's import of a thread-local of a shared library the host loads.
    fn imported_tls_symbol(&mut self, name: &str, weak: bool) -> SymbolId {
        if let Some(&id) = self.by_name.get(name) {
            // Referenced by an earlier object: a thread-local either way. (A definition in the
            // patch stays as it is; ld refuses a thread-local access to a plain static.)
            let sym = self.out.symbol_mut(id);
            if sym.section == write::SymbolSection::Undefined {
                sym.kind = SymbolKind::Tls;
            }
            return id;
        }
        let id = self
            .out
            .add_symbol(undefined_symbol(name, SymbolKind::Tls, weak));
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// The host's symbol `name` at `runtime_addr`, added once.
    fn host_symbol(&mut self, name: &str, runtime_addr: u64, kind: SymbolKind) -> SymbolId {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = self.out.add_symbol(self.anchored(name, runtime_addr, kind));
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// A symbol at `runtime_addr`, expressed relative to the anchor section.
    fn anchored(&self, name: &str, runtime_addr: u64, kind: SymbolKind) -> write::Symbol {
        write::Symbol {
            name: name.as_bytes().to_vec(),
            value: runtime_addr.wrapping_sub(self.anchor_addr),
            size: 0,
            kind,
            scope: SymbolScope::Compilation,
            weak: false,
            section: write::SymbolSection::Section(self.anchor),
            flags: SymbolFlags::None,
        }
    }

    // --- relocations --------------------------------------------------------------------------

    /// Copies the relocations of the object's copied sections.
    fn copy_relocations(&mut self, input: &Input<'d, '_>) -> Result<(), Refused> {
        for s in input.file.sections() {
            let Some(&out_sec) = input.sections.get(&s.index()) else {
                continue;
            };
            self.copy_section_relocations(input, &s, out_sec)?;
        }
        Ok(())
    }

    /// Copies the relocations of input section `s`, whose copy is `out_sec`.
    fn copy_section_relocations(
        &mut self,
        input: &Input<'d, '_>,
        s: &object::Section<'d, '_>,
        out_sec: SectionId,
    ) -> Result<(), Refused> {
        let relocs: Vec<(u64, object::Relocation)> = s.relocations().collect();
        let tls_calls = check_tls_sequences(input.file, s, &relocs)?;
        // The `__tls_get_addr` calls of sequences kept dynamic stay; the others go with
        // their rewrite to local-exec.
        let kept_calls: HashSet<usize> = tls_calls
            .iter()
            .filter(|(_, access)| {
                matches!(relocs[**access].1.target(),
                    RelocationTarget::Symbol(t) if input.imported_tls.contains_key(&t))
            })
            .map(|(call, _)| *call)
            .collect();
        for (i, (offset, rel)) in relocs.into_iter().enumerate() {
            let r = InReloc::new(input.file, s, out_sec, offset, &rel)?;
            if kept_calls.contains(&i) {
                // The call of a general-dynamic sequence kept for the dynamic loader: to
                // ld.so's `__tls_get_addr`, which ld leaves undefined in the patch.
                let sym = self.tls_get_addr_symbol();
                self.add_relocation(&r, sym, r.addend)?;
                continue;
            }
            if tls_calls.contains_key(&i) {
                // The `__tls_get_addr` call of a sequence rewritten to local-exec.
                continue;
            }
            if let Some(access) = tls::Access::of(r.r_type) {
                self.tls_access(input, &r, access)?;
                continue;
            }
            if r.target.name() == Ok(tls::TLS_GET_ADDR) {
                return refuse(format!(
                    "code in {} calls `{}` outside a thread-local access cargo hot can rewrite; restart",
                    code_name(r.section),
                    tls::TLS_GET_ADDR
                ));
            }
            let (sym, addend) = input.relocation_symbol(&r)?;
            self.add_relocation(&r, sym, addend)?;
        }
        Ok(())
    }

    /// ld.so's `__tls_get_addr`, added once.
    fn tls_get_addr_symbol(&mut self) -> SymbolId {
        let out = &mut self.out;
        *self.tls_get_addr.get_or_insert_with(|| {
            out.add_symbol(undefined_symbol(
                tls::TLS_GET_ADDR,
                SymbolKind::Unknown,
                false,
            ))
        })
    }

    /// A thread-local access: rewritten to local-exec with the host's offset, or kept as
    /// compiled when the thread-local is a shared library's.
    fn tls_access(
        &mut self,
        input: &Input,
        r: &InReloc,
        access: tls::Access,
    ) -> Result<(), Refused> {
        let site = TlsSite {
            access,
            r_type: r.r_type,
            offset: r.offset,
            section: r.section,
        };
        if let Some(&sym) = input.imported_tls.get(&r.tsym) {
            // Another module's thread-local: the access stays as compiled.
            access
                .dynamic()
                .map_err(|why| site.refusal(&r.target, why))?;
            return self.add_relocation(r, sym, r.addend);
        }
        let tls = TlsOffsets {
            by_symbol: &input.tpoff,
            named_in: &input.named_in,
        };
        tls.rewrite(
            self.out.section_mut(r.out_sec),
            &site,
            r.tsym,
            &r.target,
            r.addend,
        )
    }

    /// Adds `r` to the merged object, against `symbol` + `addend`.
    fn add_relocation(
        &mut self,
        r: &InReloc,
        symbol: SymbolId,
        addend: i64,
    ) -> Result<(), Refused> {
        self.out
            .add_relocation(
                r.out_sec,
                write::Relocation {
                    offset: r.offset,
                    symbol,
                    addend,
                    flags: RelocationFlags::Elf { r_type: r.r_type },
                },
            )
            .map_err(|e| Refused(format!("relocation: {e}")))
    }
}

impl<'d, 'f> Input<'d, 'f> {
    fn new(file: &'f object::File<'d>) -> Self {
        Input {
            file,
            sections: HashMap::new(),
            tls_sections: HashSet::new(),
            named_in: named_symbols(file),
            symbols: HashMap::new(),
            tpoff: HashMap::new(),
            imported_tls: HashMap::new(),
        }
    }

    /// The merged object's symbol (and the addend against it) that relocation `r` targets.
    fn relocation_symbol(&self, r: &InReloc) -> Result<(SymbolId, i64), Refused> {
        if r.target.kind() != SymbolKind::Section {
            return match self.symbols.get(&r.tsym) {
                Some(id) => Ok((*id, r.addend)),
                None => refuse(format!(
                    "relocation against unknown symbol `{}`",
                    demangle(r.target.name().unwrap_or("?"))
                )),
            };
        }
        let tsec = r.target.section_index();
        let is_tls = tsec.is_some_and(|i| self.tls_sections.contains(&i));
        if is_tls {
            return refuse("a thread-local is accessed in a way cargo hot cannot patch; restart");
        }
        let tsection = tsec.and_then(|i| self.file.section_by_index(i).ok());
        let writable = tsection.as_ref().is_some_and(|ts| {
            place_of(ts.kind(), ts.name().unwrap_or("")) == Place::Data
                && ts.name().unwrap_or("") != REGISTRY_SECTION
        });
        // `section + addend` into writable data: find the static it means.
        let bias = if matches!(
            r.r_type,
            elf::R_X86_64_64 | elf::R_X86_64_32 | elf::R_X86_64_32S
        ) {
            0
        } else {
            4
        };
        match (
            writable,
            covering(&self.named_in, &r.target, r.addend, bias),
        ) {
            (true, Some((named, delta))) if self.symbols.contains_key(&named) => {
                Ok((self.symbols[&named], delta))
            }
            _ => match self.symbols.get(&r.tsym) {
                Some(id) => Ok((*id, r.addend)),
                None => refuse("relocation against a section that is not part of the patch"),
            },
        }
    }
}

impl<'d, 'f> InReloc<'d, 'f> {
    /// Refuses relocations other than ELF ones against a symbol.
    fn new(
        file: &'f object::File<'d>,
        section: &object::Section<'d, '_>,
        out_sec: SectionId,
        offset: u64,
        rel: &object::Relocation,
    ) -> Result<Self, Refused> {
        let RelocationFlags::Elf { r_type } = rel.flags() else {
            return refuse("non-ELF relocation");
        };
        let RelocationTarget::Symbol(tsym) = rel.target() else {
            return refuse(format!(
                "unsupported relocation target in {}",
                section.name().unwrap_or("?")
            ));
        };
        let target = file
            .symbol_by_index(tsym)
            .map_err(|e| Refused(e.to_string()))?;
        Ok(InReloc {
            section: section.name().unwrap_or("?"),
            out_sec,
            offset,
            r_type,
            tsym,
            target,
            addend: rel.addend(),
        })
    }
}

/// Globals defined anywhere in the patch.
fn defined_globals<'d>(files: &[object::File<'d>]) -> HashSet<&'d str> {
    let mut defined = HashSet::new();
    for f in files {
        for s in f.symbols() {
            if s.is_definition() && s.is_global() {
                if let Ok(n) = s.name() {
                    defined.insert(n);
                }
            }
        }
    }
    defined
}

/// The named symbols of an object by section.
fn named_symbols(file: &object::File) -> NamedIn {
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
    named_in
}

/// The registry entry of hot fn `parent`, symbol `mangled` (demangled `dem`) at `value` in
/// `section`: its fingerprint and kind.
fn registry_entry(
    section: &object::Section,
    value: u64,
    parent: &str,
    mangled: &str,
    dem: &str,
) -> Result<EntrySym, Refused> {
    let off = value as usize;
    let bytes = section
        .data()
        .ok()
        .and_then(|d| d.get(off..off.checked_add(12)?))
        .ok_or_else(|| Refused(format!("malformed registry entry {dem}")))?;
    Ok(EntrySym {
        parent: parent.to_string(),
        mangled: mangled.to_string(),
        fingerprint: u64::from_le_bytes(bytes[0..8].try_into().unwrap()),
        kind: u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
    })
}

/// Refuses a thread-local the host does not have.
fn new_thread_local<T>(name: &str) -> Result<T, Refused> {
    refuse(format!(
        "a new thread-local `{}` was added; thread-locals cannot be added to a running program — restart",
        crate::host::thread_local_name(name)
    ))
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

/// The mangled name of the function of `file` whose code in section `si` covers offset `at`.
fn function_at<'d>(file: &object::File<'d>, si: object::SectionIndex, at: u64) -> Option<&'d str> {
    file.symbols()
        .filter(|f| f.kind() == SymbolKind::Text && f.section_index() == Some(si))
        .find(|f| f.address() <= at && at < f.address() + f.size().max(1))
        .and_then(|f| f.name().ok())
}

fn run_ld(obj: &Path, so: &Path, addr: u64) -> Result<(), Refused> {
    let flags = [
        "-Bsymbolic".to_string(),
        "--eh-frame-hdr".into(),
        "-z".into(),
        "noexecstack".into(),
        "--build-id=none".into(),
        "--hash-style=gnu".into(),
        format!("--section-start=.hot_anchor={addr:#x}"),
        format!("-Ttext-segment={:#x}", addr + 0x1000),
    ];
    // GNU ld itself: the `cc` driver adds two more processes (gcc, collect2) and nothing this
    // link uses (3.4 ms of 11.9 ms per link here). `CARGO_HOT_CC` names a driver to use instead.
    let driver = |cc: &std::ffi::OsStr| {
        let mut cmd = std::process::Command::new(cc);
        cmd.args(["-shared", "-nostdlib", "-o"]).arg(so).arg(obj);
        // `-Wl,` keeps `-z noexecstack` as one driver argument.
        cmd.arg(format!("-Wl,{}", flags.join(",")));
        cmd
    };
    let output = match std::env::var_os("CARGO_HOT_CC") {
        Some(cc) => run_linker(driver(&cc)),
        None => {
            let mut ld = std::process::Command::new("ld");
            ld.args(["-m", "elf_x86_64", "-shared", "-o"])
                .arg(so)
                .arg(obj)
                .args(&flags);
            match run_linker(ld) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    run_linker(driver("cc".as_ref()))
                }
                other => other,
            }
        }
    }
    .map_err(|e| Refused(format!("running the linker (ld): {e}")))?;
    if !output.status.success() {
        return refuse(format!(
            "linking the patch failed:\n{}",
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    Ok(())
}

fn run_linker(mut cmd: std::process::Command) -> std::io::Result<std::process::Output> {
    crate::build::yield_cpu(&mut cmd);
    cmd.output()
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
