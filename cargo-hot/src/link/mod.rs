//! Building a patch shared object from recompiled objects. The object format and instruction
//! set specifics live in one module per target; other targets get a clear refusal.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod elf_x86_64;
/// Thread-local accesses rewritten to the running program's offsets (local-exec), or kept
/// dynamic for the thread-locals of its shared libraries.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod tls_x86_64;

/// Property-based fuzzing of `index_object` and `link` (see the module's docs).
#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod fuzz;
/// Thread-local accesses in every model through `link`, down to running the patch.
#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tls_link_tests;

/// Why a patch cannot be applied; the running program keeps its code.
#[derive(Debug, Clone)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

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

/// What one object file defines that matters for choosing a patch's objects.
#[derive(Default, Debug, Clone)]
pub struct ObjectIndex {
    /// Hot functions whose registry entry is defined here (demangled parent paths).
    pub entries: Vec<String>,
    /// Demangled paths of the functions defined here.
    pub functions: Vec<String>,
    /// Async hot fns whose entry shim (the patch target) is defined here.
    pub async_targets: Vec<String>,
    /// Hash of each defined symbol's section (code or data) and relocation targets, by name.
    pub code: std::collections::HashMap<String, u64>,
    /// Mangled names this object references but does not define.
    pub undefined: Vec<String>,
    /// For each defined symbol (code or data), the symbols its section refers to.
    pub refs: Vec<(String, Vec<String>)>,
}

/// The async hot fn (registry parent `f::{closure#0}`) whose entry shim this function is:
/// `<f::{closure#0}::{closure#0} as core::ops::function::FnOnce<..>>::call_once`.
pub fn async_target_of(function: &str) -> Option<&str> {
    let inner = function.strip_prefix('<')?.strip_suffix(">>::call_once")?;
    let (closure, _) = inner.split_once(" as core::ops::function::FnOnce<")?;
    closure.strip_suffix("::{closure#0}")
}

/// Reads the symbol table of an object file.
pub fn index_object(path: &std::path::Path) -> Result<ObjectIndex, Refused> {
    let data =
        std::fs::read(path).map_err(|e| Refused(format!("reading {}: {e}", path.display())))?;
    let file = object::File::parse(&*data)
        .map_err(|e| Refused(format!("parsing {}: {e}", path.display())))?;
    let section_hash = section_hashes(&file);
    let mut idx = ObjectIndex {
        refs: section_refs(&file, path),
        ..ObjectIndex::default()
    };
    index_symbols(&file, &section_hash, &mut idx);
    Ok(idx)
}

/// Hash of each allocated section: its bytes, and its relocations with what they target.
fn section_hashes(file: &object::File) -> HashMap<object::SectionIndex, u64> {
    use object::{Object, ObjectSection};
    use std::hash::{Hash, Hasher};
    // Bytes of each section: an anonymous constant is known by its content, not its name
    // (`.Lanon.<unit>.N` renumbers when another constant of the unit is added or removed).
    let content: HashMap<object::SectionIndex, u64> = file
        .sections()
        .map(|sec| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            sec.data().unwrap_or(&[]).hash(&mut h);
            (sec.index(), h.finish())
        })
        .collect();
    // Code hash per function section (rustc emits one section per function).
    let mut section_hash: HashMap<object::SectionIndex, u64> = HashMap::new();
    for sec in file.sections() {
        // Code and data: an edited string literal may live in a constant of another unit.
        let object::SectionFlags::Elf { sh_flags } = sec.flags() else {
            continue;
        };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 {
            continue;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        sec.data().unwrap_or(&[]).hash(&mut h);
        for (off, r) in sec.relocations() {
            off.hash(&mut h);
            r.addend().hash(&mut h);
            hash_relocation_target(file, &r, &content, &mut h);
        }
        section_hash.insert(sec.index(), h.finish());
    }
    section_hash
}

/// Hashes what a relocation targets: a named symbol by its stable name, an anonymous one by its
/// content (`content`: hash of each section's bytes).
fn hash_relocation_target(
    file: &object::File,
    r: &object::Relocation,
    content: &HashMap<object::SectionIndex, u64>,
    h: &mut std::collections::hash_map::DefaultHasher,
) {
    use object::{Object, ObjectSymbol, SymbolKind};
    use std::hash::Hash;
    let object::RelocationTarget::Symbol(t) = r.target() else {
        return;
    };
    let Ok(ts) = file.symbol_by_index(t) else {
        return;
    };
    let name = ts.name().unwrap_or("");
    let anonymous = ts.is_local()
        && (ts.kind() == SymbolKind::Section || name.is_empty() || name.starts_with(".L"));
    match ts.section_index() {
        Some(i) if anonymous => anonymous_content(file, i, &ts, content).hash(h),
        _ => stable_name(name).hash(h),
    }
}

/// For each section, each symbol it defines with the symbols the section refers to.
fn section_refs(file: &object::File, path: &std::path::Path) -> Vec<(String, Vec<String>)> {
    use object::{Object, ObjectSection};
    let defined_in = symbols_by_section(file);
    // Sections without a named symbol (anonymous constants, vtables of `dyn` objects) still
    // link code to code; name them per object so the reachability walk passes through them.
    let tag = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    let pseudo = |si: object::SectionIndex| format!("{tag}#{}", si.0);
    let mut refs = Vec::new();
    for sec in file.sections() {
        let anon;
        let names: Vec<&String> = match defined_in.get(&sec.index()) {
            Some(syms) => syms.iter().map(|s| &s.name).collect(),
            None => {
                anon = pseudo(sec.index());
                vec![&anon]
            }
        };
        let targets = relocation_targets(file, &sec, &defined_in, &pseudo);
        for n in names {
            refs.push((n.clone(), targets.clone()));
        }
    }
    refs
}

/// A named symbol defined in a section: where it starts and how long it is.
struct Defined {
    value: u64,
    size: u64,
    name: String,
}

/// The named symbols defined in each section.
fn symbols_by_section(file: &object::File) -> HashMap<object::SectionIndex, Vec<Defined>> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let mut defined_in: HashMap<object::SectionIndex, Vec<Defined>> = HashMap::new();
    for s in file.symbols() {
        if s.is_definition() && s.kind() != SymbolKind::Section {
            if let (Ok(n), Some(si)) = (s.name(), s.section_index()) {
                if !n.is_empty() {
                    defined_in.entry(si).or_default().push(Defined {
                        value: s.address(),
                        size: s.size(),
                        name: n.to_string(),
                    });
                }
            }
        }
    }
    defined_in
}

/// The symbols `sec`'s relocations target, sorted and deduplicated. A section-relative target
/// (`.rodata.str1.1 + 0x2a`) is the named symbol at that offset, give or take the few bytes a
/// PC-relative addend is off by; a section that names nothing there is named by `pseudo`.
/// (Naming every reference to a string section by its first symbol made every panic location
/// of a unit "reach" an edited string literal.)
fn relocation_targets(
    file: &object::File,
    sec: &object::Section,
    defined_in: &HashMap<object::SectionIndex, Vec<Defined>>,
    pseudo: &impl Fn(object::SectionIndex) -> String,
) -> Vec<String> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
    let mut targets = Vec::new();
    for (_, r) in sec.relocations() {
        let object::RelocationTarget::Symbol(t) = r.target() else {
            continue;
        };
        let Ok(ts) = file.symbol_by_index(t) else {
            continue;
        };
        if ts.kind() != SymbolKind::Section {
            match ts.name() {
                Ok(n) if !n.is_empty() => targets.push(n.to_string()),
                _ => {}
            }
            continue;
        }
        let Some(i) = ts.section_index() else {
            continue;
        };
        let lo = r.addend().max(0) as u64;
        let hi = r.addend().saturating_add(8).max(0) as u64;
        let before = targets.len();
        if let Some(syms) = defined_in.get(&i) {
            targets.extend(
                syms.iter()
                    .filter(|s| s.value < hi && s.value.saturating_add(s.size.max(1)) > lo)
                    .map(|s| s.name.clone()),
            );
        }
        if targets.len() == before {
            targets.push(pseudo(i));
        }
    }
    targets.sort();
    targets.dedup();
    targets
}

/// Fills in `idx`'s undefined names, code hashes (from `section_hash`), registry entries,
/// functions and async entry shims.
fn index_symbols(
    file: &object::File,
    section_hash: &HashMap<object::SectionIndex, u64>,
    idx: &mut ObjectIndex,
) {
    use object::{Object, ObjectSymbol, SymbolKind};
    for s in file.symbols() {
        if s.is_undefined() {
            if let Ok(n) = s.name() {
                if !n.is_empty() {
                    idx.undefined.push(n.to_string());
                }
            }
            continue;
        }
        if !s.is_definition() {
            continue;
        }
        if let (Ok(n), Some(si), Some(h)) = (
            s.name(),
            s.section_index(),
            s.section_index().and_then(|i| section_hash.get(&i)),
        ) {
            if !n.is_empty() {
                // Constants share sections (merged strings); each is known by its own bytes.
                let h = if s.kind() == SymbolKind::Data && s.size() > 0 {
                    symbol_bytes_hash(file, si, s.address(), s.size()).unwrap_or(*h)
                } else {
                    *h
                };
                idx.code.insert(n.to_string(), h);
            }
        }
        let Ok(name) = s.name() else { continue };
        let d = crate::host::demangle(name);
        if let Some(parent) = d.strip_suffix(crate::host::ENTRY_SUFFIX) {
            idx.entries.push(parent.to_string());
        } else if s.kind() == SymbolKind::Text {
            if let Some(parent) = async_target_of(&d) {
                idx.async_targets.push(parent.to_string());
            }
            idx.functions.push(d);
        }
    }
}

/// A symbol's name without the `.llvm.<hash>` LLVM appends to internalized symbols of
/// optimized builds (the hash changes whenever anything in their unit does).
pub fn stable_name(name: &str) -> &str {
    name.split(".llvm.").next().unwrap_or(name)
}

/// What an anonymous relocation target stands for: its own bytes when it has a size (one
/// constant among others in a merged section), else its section's bytes and its offset.
fn anonymous_content<'d>(
    file: &object::File<'d>,
    section: object::SectionIndex,
    sym: &object::Symbol<'d, '_>,
    content: &std::collections::HashMap<object::SectionIndex, u64>,
) -> (u64, u64) {
    use object::ObjectSymbol;
    if sym.size() > 0 {
        if let Some(h) = symbol_bytes_hash(file, section, sym.address(), sym.size()) {
            return (h, 0);
        }
    }
    (content.get(&section).copied().unwrap_or(0), sym.address())
}

/// Hash of bytes `[at, at+size)` of a section and of the relocations inside that range.
fn symbol_bytes_hash(
    file: &object::File<'_>,
    section: object::SectionIndex,
    at: u64,
    size: u64,
) -> Option<u64> {
    use object::{Object, ObjectSection, ObjectSymbol};
    use std::hash::{Hash, Hasher};
    let sec = file.section_by_index(section).ok()?;
    let data = sec.data().ok()?;
    let bytes =
        data.get(usize::try_from(at).ok()?..usize::try_from(at.checked_add(size)?).ok()?)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    for (off, r) in sec
        .relocations()
        .filter(|(off, _)| (at..at + size).contains(off))
    {
        (off - at).hash(&mut h);
        r.addend().hash(&mut h);
        if let object::RelocationTarget::Symbol(t) = r.target() {
            if let Ok(ts) = file.symbol_by_index(t) {
                stable_name(ts.name().unwrap_or("")).hash(&mut h);
            }
        }
    }
    Some(h.finish())
}

/// Whether a function path is part of hot fn `parent` (itself, its closures, its coroutine,
/// or the `FnOnce` shim of its async entry).
///
/// Both are compared without their leading `<`s: a method's path starts with one
/// (`<app::Get>::apply`), and a shim's path with one more (`<<app::Get>::apply::{closure#0}…`).
pub fn belongs_to(function: &str, parent: &str) -> bool {
    let f = without_generic_args(function);
    let p = without_generic_args(parent);
    let f = f.trim_start_matches('<');
    let p = p.trim_start_matches('<');
    f == p || (f.starts_with(p) && f[p.len()..].starts_with("::"))
}

/// A demangled path without its generic arguments: a compiled copy of a generic hot fn
/// (`app::largest::<u32>`, `<app::Stack<i32>>::push`) and the registry entry that all copies
/// share (`app::largest`, `<app::Stack<_>>::push`) become the same path.
pub fn without_generic_args(path: &str) -> std::borrow::Cow<'_, str> {
    let generic_open = |b: &[u8], i: usize| {
        b[i] == b'<'
            && i > 0
            && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':')
    };
    let b = path.as_bytes();
    if !(0..b.len()).any(|i| generic_open(b, i)) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for (i, c) in path.char_indices() {
        if depth == 0 && generic_open(b, i) {
            if out.ends_with("::") {
                out.truncate(out.len() - 2);
            }
            depth = 1;
            continue;
        }
        if depth > 0 {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            continue;
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// Who refers to each symbol (calls, vtables, fn pointers), over a set of units: built once,
/// asked [`reaching`](Referrers::reaching) as often as needed.
pub struct Referrers<'a>(HashMap<&'a str, Vec<&'a str>>);

impl<'a> Referrers<'a> {
    pub fn new(indexes: impl Iterator<Item = &'a ObjectIndex>) -> Self {
        let mut referrers: HashMap<&str, Vec<&str>> = HashMap::new();
        for idx in indexes {
            for (from, tos) in &idx.refs {
                for to in tos {
                    referrers
                        .entry(to.as_str())
                        .or_default()
                        .push(from.as_str());
                }
            }
        }
        Referrers(referrers)
    }

    /// The symbols that reach `changed`, `changed` included.
    pub fn reaching(&self, changed: &HashSet<String>) -> HashSet<String> {
        self.reaching_until(changed, |_| false)
    }

    /// Like [`reaching`](Self::reaching), but who refers to a symbol `stop` accepts is not
    /// followed (the symbol itself is included).
    pub fn reaching_until(
        &self,
        changed: &HashSet<String>,
        stop: impl Fn(&str) -> bool,
    ) -> HashSet<String> {
        let mut seen: HashSet<String> = changed.clone();
        let mut work: Vec<String> = changed.iter().cloned().collect();
        while let Some(s) = work.pop() {
            if stop(&s) {
                continue;
            }
            if let Some(rs) = self.0.get(s.as_str()) {
                for r in rs {
                    if seen.insert(r.to_string()) {
                        work.push(r.to_string());
                    }
                }
            }
        }
        seen
    }
}

/// The codegen units a patch must carry, given the units as running and those rebuilt with new
/// content (by unit name). Returns the units and the changed symbols.
///
/// 1. every rebuilt unit;
/// 2. every unit defining a symbol that reaches changed code or data (e.g. tokio's spawn, task
///    vtable and harness for a future defined in the edited fn), else the patch would reach the
///    old code through the running program's copies. The walk stops at hot fns' dispatchers:
///    whoever calls one reaches the new code through its slot (an axum handler's callers, the
///    whole service stack generic over it, stay the running program's);
/// 3. every unit defining a symbol the patch needs that the running program does not have
///    (optimized builds share anonymous constants across units), transitively;
/// 4. for each hot fn whose code a rebuilt unit defines, the units of its registry entry and of
///    its async entry shim.
pub fn select_units(
    running: &HashMap<String, &ObjectIndex>,
    rebuilt: &HashMap<String, ObjectIndex>,
    host: &crate::host::HostImage,
) -> (HashSet<String>, HashSet<String>) {
    // The units as they will be once the patch is in: rebuilt ones replace running ones.
    let mut current: HashMap<&str, &ObjectIndex> =
        running.iter().map(|(c, i)| (c.as_str(), *i)).collect();
    current.extend(rebuilt.iter().map(|(c, i)| (c.as_str(), i)));

    let changed = changed_symbols(running, rebuilt);
    let mut needed: HashSet<String> = rebuilt.keys().cloned().collect();

    let hot: HashSet<String> = host
        .hot_fns
        .keys()
        .map(|k| without_generic_args(k).into_owned())
        .collect();
    let dispatcher = |mangled: &str| is_dispatcher(&crate::host::demangle(mangled), &hot);
    let reach = Referrers::new(current.values().copied()).reaching_until(&changed, dispatcher);
    for (cgu, idx) in &current {
        if idx.refs.iter().any(|(d, _)| reach.contains(d)) {
            needed.insert(cgu.to_string());
        }
    }

    let units = UnitsOf::new(&current);
    // Edited hot fns need their entry (and, for async fns, the shim holding the new body).
    for idx in rebuilt.values() {
        for (parent, unit) in &units.entry {
            if idx.functions.iter().any(|f| belongs_to(f, parent)) {
                needed.insert(unit.to_string());
            }
        }
    }
    units.close(&current, host, &mut needed);
    (needed, changed)
}

/// Whether `function` (demangled) is a hot fn's dispatcher, which reads the slot on every call:
/// a sync hot fn or one of its copies (`app::f`, `app::f::<u32>`), an async hot fn, or the
/// future of its body (the registry names async fns by that future, `app::g::{closure#0}`).
/// `hot`: the registry's paths without generic arguments.
fn is_dispatcher(function: &str, hot: &HashSet<String>) -> bool {
    let plain = without_generic_args(function);
    hot.contains(plain.as_ref()) || hot.contains(&format!("{plain}::{{closure#0}}"))
}

/// The symbols of the rebuilt units whose code or data differs from the running program's.
fn changed_symbols(
    running: &HashMap<String, &ObjectIndex>,
    rebuilt: &HashMap<String, ObjectIndex>,
) -> HashSet<String> {
    // A symbol is compared with itself as running, in its unit or, when rustc moved it to
    // another unit (partitioning shifts as code is added), wherever it was.
    // Names are compared without LLVM's `.llvm.<hash>` suffixes.
    let anywhere: HashMap<&str, u64> = running
        .values()
        .flat_map(|i| i.code.iter().map(|(f, h)| (stable_name(f), *h)))
        .collect();
    let mut changed = HashSet::new();
    for (cgu, idx) in rebuilt {
        let old = running.get(cgu);
        for (f, h) in &idx.code {
            let was = old
                .and_then(|o| o.code.get(f).copied())
                .or_else(|| anywhere.get(stable_name(f)).copied());
            if was != Some(*h) {
                changed.insert(f.clone());
            }
        }
    }
    changed
}

/// Which unit defines what, among the units as they will be once the patch is in.
struct UnitsOf<'a> {
    /// The unit of each defined symbol.
    definer: HashMap<&'a str, &'a str>,
    /// The unit of each hot fn's registry entry, by hot fn.
    entry: HashMap<&'a str, &'a str>,
    /// The unit of each async hot fn's entry shim, by hot fn.
    shim: HashMap<&'a str, &'a str>,
    /// The unit of each function, by demangled path.
    function: HashMap<&'a str, &'a str>,
}

impl<'a> UnitsOf<'a> {
    fn new(current: &HashMap<&'a str, &'a ObjectIndex>) -> Self {
        let mut units = UnitsOf {
            definer: HashMap::new(),
            entry: HashMap::new(),
            shim: HashMap::new(),
            function: HashMap::new(),
        };
        for (cgu, idx) in current {
            for f in &idx.functions {
                units.function.insert(f.as_str(), cgu);
            }
            for (d, _) in &idx.refs {
                units.definer.insert(d.as_str(), cgu);
            }
            for parent in &idx.entries {
                units.entry.insert(parent.as_str(), cgu);
            }
            for parent in &idx.async_targets {
                units.shim.insert(parent.as_str(), cgu);
            }
        }
        units
    }

    /// Adds to `needed` the units that the units in it need, transitively.
    fn close(
        &self,
        current: &HashMap<&str, &ObjectIndex>,
        host: &crate::host::HostImage,
        needed: &mut HashSet<String>,
    ) {
        // Close over three rules: a unit that is in defines registry entries, each rebound to its
        // target (a sync fn itself, an async fn's shim), so the target's unit comes too (else the
        // patch has an entry it cannot bind, and leaving that copy unbound would strand it on old
        // code); a unit that is in holds code of a hot fn (its body reaches changed code), so that
        // fn's entry comes too, or nothing would call the patch's copy; and a symbol the host
        // lacks must come from the unit defining it.
        let mut work: Vec<String> = needed.iter().cloned().collect();
        while let Some(c) = work.pop() {
            let Some(idx) = current.get(c.as_str()) else {
                continue;
            };
            let targets = idx.entries.iter().filter_map(|p| {
                let p = p.as_str();
                self.shim.get(p).or_else(|| self.function.get(p))
            });
            let definers = idx.undefined.iter().filter_map(|u| {
                let known = matches!(host.lookup(u), Ok(Some(_))) || host.imports.contains(u);
                if known {
                    None
                } else {
                    self.definer.get(u.as_str())
                }
            });
            let entries = idx.functions.iter().flat_map(|f| {
                self.entry
                    .iter()
                    .filter(move |(hot, _)| belongs_to(f, hot))
                    .map(|(_, unit)| unit)
            });
            let more: Vec<String> = targets
                .chain(definers)
                .chain(entries)
                .map(|d| d.to_string())
                .collect();
            for d in more {
                if needed.insert(d.clone()) {
                    work.push(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_entry_shims_are_recognized() {
        assert_eq!(
            async_target_of(
                "<app::work::{closure#0}::{closure#0} as core::ops::function::FnOnce<(u64,)>>::call_once"
            ),
            Some("app::work::{closure#0}")
        );
        assert_eq!(async_target_of("app::work::{closure#0}"), None);
        assert_eq!(
            async_target_of("<app::S as core::ops::function::FnOnce<()>>::call_once"),
            None
        );
        assert!(belongs_to(
            "<app::work::{closure#0}::{closure#0} as X>::call_once",
            "app::work::{closure#0}"
        ));
        assert!(belongs_to("app::work", "app::work"));
        assert!(!belongs_to("app::worker", "app::work"));
        // Async methods: the body and the shim of `<app::Get>::apply`.
        let parent = "<app::Get>::apply::{closure#0}";
        assert!(belongs_to(
            "<app::Get>::apply::{closure#0}::{closure#0}",
            parent
        ));
        assert!(belongs_to(
            "<<app::Get>::apply::{closure#0}::{closure#0} as X>::call_once",
            parent
        ));
        assert!(!belongs_to("<app::Get>::applyx::{closure#0}", parent));
    }

    /// A unit made of `(symbol, code hash, referenced symbols)`.
    fn unit(syms: &[(&str, u64, &[&str])]) -> ObjectIndex {
        ObjectIndex {
            functions: syms.iter().map(|(n, _, _)| n.to_string()).collect(),
            code: syms.iter().map(|(n, h, _)| (n.to_string(), *h)).collect(),
            refs: syms
                .iter()
                .map(|(n, _, r)| (n.to_string(), r.iter().map(|x| x.to_string()).collect()))
                .collect(),
            ..ObjectIndex::default()
        }
    }

    #[test]
    fn the_reach_of_an_edit_stops_at_hot_dispatchers() {
        // `async fn hello` is hot: its body spawns a future (tokio's generic spawn, in another
        // unit), and axum's handler stack (a third unit) calls the dispatcher.
        const BODY: &str = "app::hello::{closure#0}::{closure#0}::{closure#0}";
        const SPAWNED: &str = "app::hello::{closure#0}::{closure#0}::{closure#0}::{closure#0}";
        const SPAWN: &str =
            "tokio::spawn::<app::hello::{closure#0}::{closure#0}::{closure#0}::{closure#0}>";
        let app = |v: u64| {
            unit(&[
                ("app::hello", 1, &["app::hello::{closure#0}"]),
                (
                    "app::hello::{closure#0}",
                    2,
                    &["app::hello::{closure#0}::{closure#0}"],
                ),
                ("app::hello::{closure#0}::{closure#0}", 3, &[BODY]),
                (BODY, 10 + v, &[SPAWN]),
                (SPAWNED, 20 + v, &[]),
            ])
        };
        let running = HashMap::from([
            ("0/app".to_string(), app(0)),
            ("0/spawn".to_string(), unit(&[(SPAWN, 5, &[SPAWNED])])),
            (
                "0/axum".to_string(),
                unit(&[(
                    "<axum::Handler<app::hello>>::call",
                    6,
                    &["app::hello", "app::hello::{closure#0}"],
                )]),
            ),
        ]);
        let rebuilt = HashMap::from([("0/app".to_string(), app(1))]);
        let host = crate::host::HostImage {
            symbols: HashMap::new(),
            imports: HashSet::new(),
            shared_libs: Vec::new(),
            tls_block: 0,
            hot_fns: HashMap::from([(
                "app::hello::{closure#0}".to_string(),
                crate::host::HostFn {
                    entry: 0,
                    fingerprint: 0,
                    kind: hot_runtime::protocol::KIND_ASYNC,
                    copies: 0,
                },
            )]),
            instances: HashMap::new(),
            build_id: String::new(),
        };
        let running = running.iter().map(|(c, i)| (c.clone(), i)).collect();
        let (needed, changed) = select_units(&running, &rebuilt, &host);
        assert_eq!(
            changed,
            HashSet::from([BODY.to_string(), SPAWNED.to_string()])
        );
        // The spawn must come (the new body calls it and it polls the new future); axum's
        // stack reaches the new body through the dispatcher's slot and stays the program's.
        assert_eq!(
            needed,
            HashSet::from(["0/app".to_string(), "0/spawn".to_string()])
        );
    }

    #[test]
    fn a_reference_into_a_string_section_names_the_string_it_points_at() {
        use object::write::{Object, Relocation, Symbol, SymbolSection};
        use object::{
            Architecture, BinaryFormat, Endianness, RelocationEncoding, RelocationFlags,
            RelocationKind, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
        };
        let mut o = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let strs = o.add_section(
            Vec::new(),
            b".rodata.str1.1".to_vec(),
            SectionKind::ReadOnlyString,
        );
        o.append_section_data(strs, b"src/main.rs\0hello v1\0", 1);
        o.add_symbol(Symbol {
            name: b".Lanon.x.8".to_vec(),
            value: 12,
            size: 9,
            kind: SymbolKind::Data,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(strs),
            flags: SymbolFlags::None,
        });
        let text = |o: &mut Object, name: &str, addend: i64| {
            let sec = o.add_section(
                Vec::new(),
                format!(".text.{name}").into_bytes(),
                SectionKind::Text,
            );
            o.append_section_data(sec, &[0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xc3], 1);
            o.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: 0,
                size: 8,
                kind: SymbolKind::Text,
                scope: SymbolScope::Linkage,
                weak: false,
                section: SymbolSection::Section(sec),
                flags: SymbolFlags::None,
            });
            let target = o.section_symbol(strs);
            o.add_relocation(
                sec,
                Relocation {
                    offset: 3,
                    symbol: target,
                    addend,
                    flags: RelocationFlags::Generic {
                        kind: RelocationKind::Relative,
                        encoding: RelocationEncoding::Generic,
                        size: 32,
                    },
                },
            )
            .unwrap();
        };
        // `lea` of the file name (offset 0, no symbol there) and of the literal (offset 12).
        text(&mut o, "location_user", -4);
        text(&mut o, "greeter", 12 - 4);
        let dir = std::env::temp_dir().join(format!("cargo-hot-refs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unit.o");
        std::fs::write(&path, o.write().unwrap()).unwrap();
        let idx = index_object(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let refs: HashMap<&str, &Vec<String>> =
            idx.refs.iter().map(|(n, r)| (n.as_str(), r)).collect();
        assert_eq!(refs["greeter"], &vec![".Lanon.x.8".to_string()]);
        assert!(
            !refs["location_user"].contains(&".Lanon.x.8".to_string()),
            "{:?}",
            refs["location_user"]
        );
    }

    #[test]
    fn copies_of_generic_fns_belong_to_their_hot_fn() {
        assert!(belongs_to("app::largest::<u32>", "app::largest"));
        assert!(belongs_to(
            "app::largest::<u32>::{closure#0}",
            "app::largest"
        ));
        assert!(belongs_to(
            "<app::Stack<i32>>::push",
            "<app::Stack<_>>::push"
        ));
        assert!(belongs_to(
            "<app::Stack<alloc::string::String> as app::Describe>::tagged::<&str>",
            "<app::Stack<_> as app::Describe>::tagged"
        ));
        assert!(!belongs_to(
            "<app::Stack<i32>>::pop",
            "<app::Stack<_>>::push"
        ));
        assert_eq!(
            without_generic_args("<app::Grid<2, 3>>::cells"),
            "<app::Grid>::cells"
        );
        assert_eq!(without_generic_args("app::plain"), "app::plain");
    }
}
