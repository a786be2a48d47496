//! Property-based fuzzing of the object reader (`index_object`) and the relocator (`link`), on
//! stable: whatever bytes an object file holds, they return `Ok` or `Err` within a time limit,
//! never panic (no catching: a panic fails the case and proptest shrinks the input).
//!
//! Inputs:
//! * seeds, relocatable x86_64 ELF objects written here with `object::write` (no compiler at
//!   test time): code, data, read-only data, a vtable-like `.data.rel.ro`, a registry entry in
//!   `hot_runtime_fns`, a hot slot in `.bss`, a thread-local in `.tbss` and one imported from a
//!   shared library, defined, undefined, weak and section symbols,
//!   PLT32/PC32/GOTPCREL/TPOFF32/64/GOTTPOFF relocations, in two objects that
//!   reference each other; mutated by flipping, setting, inserting, deleting, duplicating and
//!   truncating bytes and by overwriting the fields that steer a reader (ELF header, section
//!   headers, symbols, relocations) with edge values;
//! * the same seed built with extra relocations of every type, edge offsets and addends, and
//!   symbols moved to edge values (well-formed ELF, so the relocator's own arithmetic is reached);
//! * arbitrary bytes, and an ELF header with a table of plausible section headers over random
//!   bytes.
//!
//! `link` runs against a synthetic host image with a work directory under `/dev/null`, so it does
//! all of its reading and rewriting and serializes the merged object, then stops with an error
//! before writing a file or running the linker.
//!
//! Each test runs a bounded number of cases (a few seconds in all, debug build). For a longer
//! run set `HOT_FUZZ_CASES` (or proptest's own `PROPTEST_CASES`), e.g.
//! `HOT_FUZZ_CASES=100000 cargo test -p cargo-hot fuzz -- --nocapture`;
//! each test prints how many cases it ran and for how long.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use object::elf;
use object::write::{Object, Relocation, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

use super::{Job, index_object, link};
use crate::host::{HostFn, HostImage, HostSym, Place};

/// Longest one `index_object` or `link` call may take before the case counts as a hang.
const HANG_LIMIT: Duration = Duration::from_secs(20);

const ENTRY: &str = "_ZN3app4work11__HOT_ENTRY17h0123456789abcdefE";
const SLOT: &str = "_ZN3app4work10__HOT_SLOT17h0123456789abcdefE";
const WORK: &str = "_ZN3app4work17h0123456789abcdefE";
const HELPER: &str = "_ZN3app6helper17h0123456789abcdefE";
const COUNTER: &str = "_ZN3app7COUNTER17h0123456789abcdefE";
const LIMIT: &str = "_ZN3app5LIMIT17h0123456789abcdefE";
const STATE: &str = "_ZN3app5STATE17h0123456789abcdefE";
const PRINT: &str = "_ZN3std2io5stdio6_print17h0123456789abcdefE";
/// A thread-local of a shared library the host loads (std linked dynamically): imported.
const KEYS: &str = "_ZN3std4hash6random4KEYS17h0123456789abcdefE";
const SHIM: &str =
    "<app::work::{closure#0}::{closure#0} as core::ops::function::FnOnce<(u64,)>>::call_once";
const FINGERPRINT: u64 = 0x1234_5678_9abc_def0;

/// Cases for a test whose default is `default`; `HOT_FUZZ_CASES` / `PROPTEST_CASES` override it,
/// divided by `weight` for tests whose cases are heavier.
fn cases(default: u32, weight: u32) -> u32 {
    ["HOT_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse::<u32>().ok())
        .map(|n| n.div_ceil(weight).max(1))
        .unwrap_or(default)
}

/// Runs `test` on `cases` values of `strategy`; failures are shrunk and reported with the input.
fn run<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut config = Config::with_cases(cases);
    config.max_shrink_time = 120_000; // ms; a hang would otherwise shrink forever
    config.failure_persistence = None;
    let mut runner = TestRunner::new(config);
    let ran = AtomicU64::new(0);
    let start = Instant::now();
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    eprintln!(
        "{name}: {} cases in {:.2?}",
        ran.load(Ordering::Relaxed),
        start.elapsed()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// `f()` on its own thread: a panic is re-raised here (proptest records it and shrinks the
/// input), running past `HANG_LIMIT` fails the case as a hang.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {HANG_LIMIT:?}")
        }
    }
}

/// A scratch directory for one test, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("cargo-hot-fuzz-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// --- seeds --------------------------------------------------------------------------------

fn sym(
    name: &str,
    value: u64,
    size: u64,
    kind: SymbolKind,
    global: bool,
    sec: SymbolSection,
) -> Symbol {
    Symbol {
        name: name.as_bytes().to_vec(),
        value,
        size,
        kind,
        scope: if global {
            SymbolScope::Linkage
        } else {
            SymbolScope::Compilation
        },
        weak: false,
        section: sec,
        flags: SymbolFlags::None,
    }
}

fn reloc(
    obj: &mut Object,
    section: object::write::SectionId,
    offset: u64,
    symbol: object::write::SymbolId,
    addend: i64,
    r_type: u32,
) {
    obj.add_relocation(
        section,
        Relocation {
            offset,
            symbol,
            addend,
            flags: RelocationFlags::Elf { r_type },
        },
    )
    .unwrap();
}

/// The codegen unit holding hot fn `app::work`: its code, registry entry, slot, statics and a
/// thread-local, calling `app::helper` (defined by the other seed) and the host's `_print`.
fn seed_work() -> Vec<u8> {
    work_object(&Tweaks::default()).unwrap()
}

/// Changes to `seed_work`'s object made through the writer, so every value is well-formed ELF.
#[derive(Clone, Debug, Default)]
struct Tweaks {
    /// Extra relocations: section, offset, target symbol, addend, type. Sections and symbols are
    /// numbered in the order `work_object` creates them, modulo their count.
    relocs: Vec<(usize, u64, usize, i64, u32)>,
    /// New value and size of a defined symbol.
    symbols: Vec<(usize, u64, u64)>,
}

fn work_object(tweaks: &Tweaks) -> Result<Vec<u8>, object::write::Error> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    obj.add_file_symbol(b"app.0.rcgu".to_vec());
    let mut section = |name: &[u8], kind, data: &[u8], align| {
        let id = obj.add_section(Vec::new(), name.to_vec(), kind);
        if kind.is_bss() {
            obj.append_section_bss(id, data.len() as u64, align);
        } else {
            obj.append_section_data(id, data, align);
        }
        id
    };
    // push rbp; call helper; mov eax, fs:[STATE@tpoff]; lea rdi, [rip+.rodata];
    // mov rax, [rip+COUNTER@GOTPCREL]; lea rax, [rip+work]; call _print; ret; padding;
    // at 48: mov rcx, [rip+KEYS@gottpoff] (a shared library's thread-local, kept dynamic)
    let mut code = vec![0x55, 0xe8, 0, 0, 0, 0];
    code.extend([0x64, 0x8b, 0x04, 0x25, 0, 0, 0, 0]);
    code.extend([0x48, 0x8d, 0x3d, 0, 0, 0, 0]);
    code.extend([0x48, 0x8b, 0x05, 0, 0, 0, 0]);
    code.extend([0x48, 0x8d, 0x05, 0, 0, 0, 0]);
    code.extend([0xe8, 0, 0, 0, 0, 0xc3]);
    code.resize(48, 0xcc);
    code.extend([0x48, 0x8b, 0x0d, 0, 0, 0, 0]);
    code.resize(64, 0xcc);
    let text = section(b".text.work", SectionKind::Text, &code, 16);
    let shim_text = section(
        b".text.shim",
        SectionKind::Text,
        &[0xe8, 0, 0, 0, 0, 0xc3, 0xcc, 0xcc],
        16,
    );
    let rodata = section(
        b".rodata..L__unnamed_1",
        SectionKind::ReadOnlyData,
        b"Hello, world!\n\0\0",
        8,
    );
    let data = section(b".data.app", SectionKind::Data, &[0; 24], 8);
    let relro = section(
        b".data.rel.ro.vtable",
        SectionKind::ReadOnlyDataWithRel,
        &[0; 24],
        8,
    );
    let mut entry = FINGERPRINT.to_le_bytes().to_vec();
    entry.extend(0u32.to_le_bytes());
    entry.extend([0u8; 12]); // padding, then the slot's address
    let fns = section(b"hot_runtime_fns", SectionKind::Data, &entry, 8);
    let bss = section(b".bss.slot", SectionKind::UninitializedData, &[0; 8], 8);
    let tbss = section(b".tbss.state", SectionKind::UninitializedTls, &[0; 16], 8);
    let sections = [text, shim_text, rodata, data, relro, fns, bss, tbss];

    use SymbolKind::{Data, Text, Tls, Unknown};
    let defined = [
        (WORK, 0, 64, Text, true, text),
        (SHIM, 0, 8, Text, false, shim_text),
        (ENTRY, 0, 24, Data, true, fns),
        (SLOT, 0, 8, Data, false, bss),
        (COUNTER, 0, 8, Data, true, data),
        (LIMIT, 8, 16, Data, true, data),
        (STATE, 0, 16, Tls, true, tbss),
    ];
    let mut symbols: Vec<_> = defined
        .iter()
        .map(|&(name, value, size, kind, global, sec)| {
            obj.add_symbol(sym(
                name,
                value,
                size,
                kind,
                global,
                SymbolSection::Section(sec),
            ))
        })
        .collect();
    for (name, weak) in [
        (HELPER, false),
        (PRINT, false),
        ("memcpy", false),
        ("__cxa_thread_atexit_impl", true),
    ] {
        let mut s = sym(name, 0, 0, Unknown, true, SymbolSection::Undefined);
        s.weak = weak;
        symbols.push(obj.add_symbol(s));
    }
    symbols.push(obj.add_symbol(sym(KEYS, 0, 0, Tls, true, SymbolSection::Undefined)));
    let [
        work,
        shim,
        _entry,
        slot,
        _counter,
        _limit,
        state,
        helper,
        print,
        memcpy,
        weak,
        keys,
    ] = symbols[..]
    else {
        unreachable!()
    };
    symbols.extend(sections.map(|s| obj.section_symbol(s)));
    let rodata_sym = obj.section_symbol(rodata);
    let data_sym = obj.section_symbol(data);

    use elf::{R_X86_64_64, R_X86_64_GOTTPOFF, R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_TPOFF32};
    let mut relocs = vec![
        (text, 2, helper, -4, R_X86_64_PLT32),
        (text, 10, state, 0, R_X86_64_TPOFF32),
        (text, 17, rodata_sym, -4, R_X86_64_PC32),
        (text, 24, data_sym, 8 - 4, R_X86_64_PC32), // LIMIT through its section
        (text, 31, work, -4, R_X86_64_PC32),
        (text, 36, print, -4, R_X86_64_PLT32),
        (text, 51, keys, -4, R_X86_64_GOTTPOFF),
        (shim_text, 1, work, -4, R_X86_64_PLT32),
        (relro, 0, shim, 0, R_X86_64_64),
        (relro, 8, memcpy, 0, R_X86_64_64),
        (relro, 16, weak, 0, R_X86_64_64),
        (data, 0, data_sym, 8, R_X86_64_64),
        (fns, 16, slot, 0, R_X86_64_64),
    ];
    for (sec, offset, target, addend, r_type) in &tweaks.relocs {
        relocs.push((
            sections[sec % sections.len()],
            *offset,
            symbols[target % symbols.len()],
            *addend,
            *r_type,
        ));
    }
    for (section, offset, symbol, addend, r_type) in relocs {
        obj.add_relocation(
            section,
            Relocation {
                offset,
                symbol,
                addend,
                flags: RelocationFlags::Elf { r_type },
            },
        )?;
    }
    for (i, value, size) in &tweaks.symbols {
        let s = obj.symbol_mut(symbols[i % defined.len()]);
        s.value = *value;
        s.size = *size;
    }
    obj.write()
}

/// The unit defining `app::helper`, which reads the host's `COUNTER` through a GOT load and
/// refers back to `app::work`.
fn seed_helper() -> Vec<u8> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text.helper".to_vec(), SectionKind::Text);
    let mut code = vec![0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0];
    code.resize(16, 0xcc);
    obj.append_section_data(text, &code, 16);
    let data = obj.add_section(Vec::new(), b".data.helper".to_vec(), SectionKind::Data);
    obj.append_section_data(data, &[0u8; 8], 8);
    obj.add_symbol(sym(
        HELPER,
        0,
        16,
        SymbolKind::Text,
        true,
        SymbolSection::Section(text),
    ));
    let counter = obj.add_symbol(sym(
        COUNTER,
        0,
        8,
        SymbolKind::Data,
        true,
        SymbolSection::Section(data),
    ));
    let work = obj.add_symbol(sym(
        WORK,
        0,
        0,
        SymbolKind::Unknown,
        true,
        SymbolSection::Undefined,
    ));
    reloc(&mut obj, text, 3, counter, -4, elf::R_X86_64_GOTPCREL);
    reloc(&mut obj, text, 8, work, -4, elf::R_X86_64_PLT32);
    obj.write().unwrap()
}

/// A field of an ELF64 file: offset and width in bytes.
#[derive(Clone, Copy, Debug)]
struct Field {
    at: usize,
    width: usize,
}

/// The fields that steer a reader: ELF header, section headers, symbols and relocations.
fn fields(elf: &[u8]) -> Vec<Field> {
    let rd = |at: usize, width: usize| -> u64 {
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(&elf[at..at + width]);
        u64::from_le_bytes(b)
    };
    let f = |at, width| Field { at, width };
    // e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize,
    // e_phnum, e_shentsize, e_shnum, e_shstrndx, and EI_CLASS / EI_DATA.
    let mut out = vec![
        f(4, 1),
        f(5, 1),
        f(0x10, 2),
        f(0x12, 2),
        f(0x14, 4),
        f(0x18, 8),
        f(0x20, 8),
        f(0x28, 8),
        f(0x30, 4),
        f(0x34, 2),
        f(0x36, 2),
        f(0x38, 2),
        f(0x3a, 2),
        f(0x3c, 2),
        f(0x3e, 2),
    ];
    let shoff = rd(0x28, 8) as usize;
    let shnum = rd(0x3c, 2) as usize;
    for i in 0..shnum {
        let sh = shoff + i * 64;
        for (o, w) in [
            (0, 4),
            (4, 4),
            (8, 8),
            (16, 8),
            (24, 8),
            (32, 8),
            (40, 4),
            (44, 4),
            (48, 8),
            (56, 8),
        ] {
            out.push(f(sh + o, w));
        }
        let sh_type = rd(sh + 4, 4) as u32;
        let (off, size) = (rd(sh + 24, 8) as usize, rd(sh + 32, 8) as usize);
        let entries: &[(usize, usize)] = match sh_type {
            // st_name, st_info, st_other, st_shndx, st_value, st_size
            elf::SHT_SYMTAB => &[(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)],
            // r_offset, r_type, r_sym, r_addend
            elf::SHT_RELA => &[(0, 8), (8, 4), (12, 4), (16, 8)],
            _ => &[],
        };
        for e in (0..size / 24).map(|k| off + k * 24) {
            out.extend(entries.iter().map(|&(o, w)| f(e + o, w)));
        }
    }
    out
}

struct Seed {
    bytes: Vec<u8>,
    fields: Vec<Field>,
}

fn seeds() -> &'static [Seed; 2] {
    static SEEDS: OnceLock<[Seed; 2]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        [seed_work(), seed_helper()].map(|bytes| Seed {
            fields: fields(&bytes),
            bytes,
        })
    })
}

/// The running program as `link` sees it: the two seeds' statics, thread-local and `_print`
/// live there, `memcpy` and the thread-local `KEYS` are imported, `app::work` is a hot fn with
/// the seed's fingerprint.
fn host() -> &'static HostImage {
    static HOST: OnceLock<HostImage> = OnceLock::new();
    HOST.get_or_init(|| {
        let at = |value, size, place| vec![HostSym { value, size, place }];
        let symbols = HashMap::from([
            (COUNTER.to_string(), at(0x5_0000, 8, Place::Data)),
            (LIMIT.to_string(), at(0x5_0008, 16, Place::Data)),
            (STATE.to_string(), at(0x10, 16, Place::Tls)),
            (PRINT.to_string(), at(0x1_2340, 0x80, Place::Text)),
            (WORK.to_string(), at(0x1_1000, 64, Place::Text)),
            (SLOT.to_string(), at(0x5_1000, 8, Place::Data)),
        ]);
        HostImage {
            symbols,
            imports: HashSet::from(["memcpy".to_string(), KEYS.to_string()]),
            shared_libs: Vec::new(),
            tls_block: 0x40,
            instances: HashMap::new(),
            hot_fns: HashMap::from([(
                "app::work".to_string(),
                HostFn {
                    entry: 0x6_0000,
                    fingerprint: FINGERPRINT,
                    kind: 0,
                    copies: 0,
                },
            )]),
            build_id: "0123456789abcdef1000".into(),
        }
    })
}

/// `link` on these objects, reading and rewriting all of them and serializing the result, then
/// failing on the missing work directory.
fn link_objects(objects: Vec<PathBuf>) -> Result<super::LinkedPatch, super::Refused> {
    let work_dir = Path::new("/dev/null/cargo-hot-fuzz");
    link(&Job {
        objects: &objects,
        host: host(),
        base: 0x5555_5555_0000,
        addr: 0x5515_5555_0000,
        work_dir,
        name: "patch-1",
    })
}

// --- mutations ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    /// Overwrite a header, section, symbol or relocation field.
    Field(Index, FieldValue),
    /// Write a value of 1, 2, 4 or 8 bytes anywhere.
    Word(Index, u8, FieldValue),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Duplicate(Index, Index, usize),
    Truncate(Index),
}

#[derive(Clone, Debug)]
enum FieldValue {
    Const(u64),
    /// The current value plus this (wrapping).
    Delta(i64),
    /// The file's length plus this.
    Len(i64),
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0u64,
            1,
            2,
            3,
            4,
            7,
            8,
            0x10,
            0x18,
            0x40,
            0x7f,
            0x80,
            0xff,
            0x100,
            0x1000,
            0x7fff,
            0x8000,
            0xffff,
            0x1_0000,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_fff0,
            0xffff_ffff,
            0x1_0000_0000,
            1 << 40,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX - 16,
            u64::MAX - 4,
            u64::MAX,
        ])
        .prop_map(FieldValue::Const),
        2 => (-64i64..64).prop_map(FieldValue::Delta),
        1 => (-64i64..64).prop_map(FieldValue::Len),
        1 => any::<u64>().prop_map(FieldValue::Const),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        6 => (any::<Index>(), field_value()).prop_map(|(i, v)| Mutation::Field(i, v)),
        2 => (any::<Index>(), 0u8..4, field_value()).prop_map(|(i, w, v)| Mutation::Word(i, w, v)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..32)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), any::<Index>(), 1usize..128)
            .prop_map(|(i, j, n)| Mutation::Duplicate(i, j, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `mutations` to `seed`; field offsets are the seed's (they go stale after a length
/// change, which is fine: they are then just more positions).
fn mutate(seed: &Seed, mutations: &[Mutation]) -> Vec<u8> {
    let mut b = seed.bytes.clone();
    for m in mutations {
        let len = b.len();
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        let point = |i: &Index| i.index(len + 1);
        let write = |b: &mut Vec<u8>, at: usize, width: usize, v: &FieldValue| {
            let file_len = b.len() as u64;
            let Some(slot) = b.get_mut(at..at.saturating_add(width)) else {
                return;
            };
            let mut cur = [0u8; 8];
            cur[..width].copy_from_slice(slot);
            let value = match v {
                FieldValue::Const(c) => *c,
                FieldValue::Delta(d) => u64::from_le_bytes(cur).wrapping_add(*d as u64),
                FieldValue::Len(d) => file_len.wrapping_add(*d as u64),
            };
            slot.copy_from_slice(&value.to_le_bytes()[..width]);
        };
        match m {
            Mutation::Flip(i, bit) if len > 0 => b[at(i)] ^= 1 << bit,
            Mutation::Set(i, v) if len > 0 => b[at(i)] = *v,
            Mutation::Field(i, v) => {
                let f = seed.fields[i.index(seed.fields.len())];
                write(&mut b, f.at, f.width, v);
            }
            Mutation::Word(i, w, v) if len > 0 => write(&mut b, at(i), 1 << w, v),
            Mutation::Insert(i, bytes) => {
                let p = point(i);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let p = at(i);
                b.drain(p..(p + n).min(len));
            }
            Mutation::Duplicate(from, to, n) if len > 0 => {
                let p = at(from);
                let chunk = b[p..(p + n).min(len)].to_vec();
                let q = point(to);
                b.splice(q..q, chunk);
            }
            Mutation::Truncate(i) => b.truncate(point(i)),
            _ => {}
        }
    }
    b
}

/// Which seed, and the mutations to apply to it.
fn mutated_seed() -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (
        prop_oneof![3 => Just(0usize), 1 => Just(1usize)],
        vec(mutation(), 1..6),
    )
}

/// Extra relocations of every kind with edge offsets and addends, and symbols moved to edge
/// values.
fn tweaks() -> impl Strategy<Value = Tweaks> {
    let u64_edges = prop::sample::select(vec![
        0x7fff_ffff,
        0xffff_fffc,
        0xffff_ffff,
        1 << 32,
        1 << 63,
        u64::MAX - 8,
        u64::MAX - 3,
        u64::MAX,
    ]);
    let i64_edges = prop::sample::select(vec![
        i64::MIN,
        i64::MIN + 1,
        i64::MIN + 4,
        i64::from(i32::MIN),
        i64::from(i32::MIN) - 1,
        i64::from(i32::MAX),
        i64::from(i32::MAX) + 1,
        i64::MAX - 3,
        i64::MAX,
    ]);
    let any_type = prop::sample::select(vec![
        elf::R_X86_64_NONE,
        elf::R_X86_64_64,
        elf::R_X86_64_PC32,
        elf::R_X86_64_PLT32,
        elf::R_X86_64_32,
        elf::R_X86_64_32S,
        elf::R_X86_64_PC64,
        elf::R_X86_64_GOTPCREL,
        elf::R_X86_64_GOTPCRELX,
        elf::R_X86_64_REX_GOTPCRELX,
        elf::R_X86_64_TPOFF32,
        elf::R_X86_64_TPOFF64,
        elf::R_X86_64_GOTTPOFF,
        elf::R_X86_64_DTPOFF32,
        elf::R_X86_64_DTPOFF64,
        elf::R_X86_64_DTPMOD64,
        elf::R_X86_64_TLSGD,
        elf::R_X86_64_TLSLD,
        elf::R_X86_64_GOTPC32_TLSDESC,
        elf::R_X86_64_TLSDESC_CALL,
        0x7fff,
    ]);
    // The one type the relocator computes with (thread-pointer offsets), more often.
    let r_type = prop_oneof![1 => Just(elf::R_X86_64_TPOFF32), 3 => any_type];
    let offset = prop_oneof![3 => 0u64..80, 1 => u64_edges.clone()];
    let addend = prop_oneof![3 => -80i64..80, 1 => i64_edges];
    let value = prop_oneof![3 => 0u64..80, 1 => u64_edges.clone()];
    let size = prop_oneof![3 => 0u64..32, 1 => u64_edges];
    (
        vec(
            (any::<usize>(), offset, any::<usize>(), addend, r_type),
            0..5,
        ),
        vec((any::<usize>(), value, size), 0..3),
    )
        .prop_map(|(relocs, symbols)| Tweaks { relocs, symbols })
}

// --- properties ---------------------------------------------------------------------------

#[test]
fn seeds_are_read_and_relocated() {
    let scratch = Scratch::new("seeds");
    let work = scratch.write("work.o", &seeds()[0].bytes);
    let helper = scratch.write("helper.o", &seeds()[1].bytes);
    let idx = index_object(&work).unwrap();
    assert_eq!(idx.entries, ["app::work"]);
    assert!(
        idx.functions.contains(&"app::work".to_string()),
        "{:?}",
        idx.functions
    );
    assert_eq!(idx.async_targets, ["app::work::{closure#0}"]);
    assert!(idx.undefined.contains(&HELPER.to_string()));
    assert!(idx.code.contains_key(COUNTER) && idx.code.contains_key(WORK));
    let idx = index_object(&helper).unwrap();
    assert!(idx.functions.contains(&"app::helper".to_string()));
    // Everything up to writing the merged object succeeds: the error is the missing directory.
    let e = link_objects(vec![work, helper]).unwrap_err();
    assert!(
        e.0.starts_with("writing /dev/null/cargo-hot-fuzz/patch-1.o"),
        "{e}"
    );
}

/// The inputs on which the fuzzing found `link` panicking (debug build: overflow checks and the
/// `object` writer's debug assertions), now refusals.
#[test]
fn malformed_objects_found_by_fuzzing_are_refused() {
    let scratch = Scratch::new("found");
    let helper = scratch.write("helper.o", &seeds()[1].bytes);
    let link_work = |bytes: &[u8]| -> Result<(), String> {
        let work = scratch.write("work.o", bytes);
        index_object(&work).map_err(|e| format!("index_object: {e}"))?;
        match link_objects(vec![work, helper.clone()]) {
            Ok(_) => Err("linked".to_string()),
            Err(e) => Err(e.0),
        }
    };
    // A field of `.text.work`'s section header.
    let text_header = |field: usize, value: u64| {
        let mut b = seeds()[0].bytes.clone();
        let file = object::File::parse(&*b).unwrap();
        let index = {
            use object::{Object, ObjectSection};
            file.section_by_name(".text.work").unwrap().index().0
        };
        let shoff = u64::from_le_bytes(b[0x28..0x30].try_into().unwrap()) as usize;
        let at = shoff + index * 64 + field;
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        b
    };
    let tweaked = |relocs| {
        work_object(&Tweaks {
            relocs,
            symbols: Vec::new(),
        })
        .unwrap()
    };
    const TEXT: usize = 0;
    /// An offset of `.text.work` no relocation touches (its padding).
    const FREE: u64 = 44;
    const BSS: usize = 6;
    const STATE_SYM: usize = 6;
    const DATA_SECTION_SYM: usize = 12 + 3;
    const TBSS_SECTION_SYM: usize = 12 + 7;
    use elf::{R_X86_64_PC32, R_X86_64_TPOFF32};
    let cases: [(&str, Vec<u8>, &str); 7] = [
        // sh_addralign 3: the writer asserts a power of two (and pads to huge ones).
        ("alignment", text_header(48, 3), "invalid alignment (3)"),
        // sh_addr above the symbols' values: `value - section address` underflowed.
        (
            "sh_addr",
            text_header(16, 0x100),
            "lies outside its section",
        ),
        // TPOFF32 with an addend that overflows the thread-pointer offset (at a free offset of
        // the code: one overlapping another relocation is refused before any arithmetic).
        (
            "TPOFF32 addend",
            tweaked(vec![(TEXT, FREE, STATE_SYM, i64::MIN, R_X86_64_TPOFF32)]),
            "thread-local offset out of range",
        ),
        // The same through the TLS section's symbol (`covering`, then the offset).
        (
            "TPOFF32 section addend",
            tweaked(vec![(
                TEXT,
                FREE,
                TBSS_SECTION_SYM,
                i64::MIN,
                R_X86_64_TPOFF32,
            )]),
            "thread-local offset out of range",
        ),
        // TPOFF32 at the end of the address space: `offset + 4` overflowed.
        (
            "TPOFF32 offset",
            tweaked(vec![(TEXT, u64::MAX - 3, STATE_SYM, 0, R_X86_64_TPOFF32)]),
            "relocation outside its section",
        ),
        // TPOFF32 inside `.bss`: the writer asserts data is never taken from a bss section.
        (
            "TPOFF32 in .bss",
            tweaked(vec![(BSS, 0, STATE_SYM, 0, R_X86_64_TPOFF32)]),
            "relocation outside its section",
        ),
        // `section + addend` into writable data with an addend that overflows `covering`: no
        // covering static, the section symbol is kept.
        (
            "PC32 addend",
            tweaked(vec![(TEXT, 0, DATA_SECTION_SYM, i64::MAX, R_X86_64_PC32)]),
            "writing /dev/null/",
        ),
    ];
    for (what, bytes, expected) in cases {
        let e = link_work(&bytes).unwrap_err();
        assert!(e.contains(expected), "{what}: {e}");
    }
}

/// A section header with plausible field values.
fn section_header(file_len: u64) -> impl Strategy<Value = [u8; 64]> {
    let ty = prop::sample::select(vec![
        elf::SHT_NULL,
        elf::SHT_PROGBITS,
        elf::SHT_SYMTAB,
        elf::SHT_STRTAB,
        elf::SHT_RELA,
        elf::SHT_NOBITS,
        elf::SHT_REL,
        elf::SHT_DYNSYM,
        elf::SHT_GROUP,
        elf::SHT_SYMTAB_SHNDX,
        elf::SHT_X86_64_UNWIND,
        0x1234_5678,
    ]);
    let flags = prop::sample::select(vec![0u64, 2, 3, 6, 0x32, 0x202, 0x402, 0x403, u64::MAX]);
    let small = prop_oneof![4 => 0u32..8, 1 => any::<u32>()];
    let align = prop::sample::select(vec![0u64, 1, 3, 8, 16, 4096, 1 << 20, 1 << 40]);
    let entsize = prop::sample::select(vec![0u64, 1, 16, 24, 64]);
    (
        (small.clone(), ty, flags, 0..file_len, 0..file_len),
        (small.clone(), small, align, entsize),
    )
        .prop_map(
            |((name, ty, flags, offset, size), (link, info, align, entsize))| {
                let mut h = [0u8; 64];
                h[0..4].copy_from_slice(&name.to_le_bytes());
                h[4..8].copy_from_slice(&ty.to_le_bytes());
                h[8..16].copy_from_slice(&flags.to_le_bytes());
                h[24..32].copy_from_slice(&offset.to_le_bytes());
                h[32..40].copy_from_slice(&size.to_le_bytes());
                h[40..44].copy_from_slice(&link.to_le_bytes());
                h[44..48].copy_from_slice(&info.to_le_bytes());
                h[48..56].copy_from_slice(&align.to_le_bytes());
                h[56..64].copy_from_slice(&entsize.to_le_bytes());
                h
            },
        )
}

/// An ELF header, a blob of mostly small bytes (symbol tables, relocations and string tables
/// read from it are full of small indices), and a section table of plausible headers into it.
fn synthetic_elf() -> impl Strategy<Value = Vec<u8>> {
    let header = seeds()[0].bytes[..64].to_vec();
    // Four in five bytes small (cheaper to generate than a union per byte).
    let blob = vec(any::<u8>(), 0..2048).prop_map(|b| {
        b.into_iter()
            .map(|x| if x < 0xcc { x & 7 } else { x })
            .collect::<Vec<_>>()
    });
    (blob, 0usize..12)
        .prop_flat_map(|(blob, n)| {
            let file_len = (64 + blob.len() + n * 64) as u64;
            (
                Just(blob),
                vec(section_header(file_len), n),
                0..(n as u16).max(1),
            )
        })
        .prop_map(move |(blob, sections, shstrndx)| {
            let mut f = header.clone();
            let shoff = (64 + blob.len()) as u64;
            f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
            f[0x3c..0x3e].copy_from_slice(&(sections.len() as u16).to_le_bytes());
            f[0x3e..0x40].copy_from_slice(&shstrndx.to_le_bytes());
            f.extend(blob);
            f.extend(sections.concat());
            f
        })
}

/// `index_object` on `p`; counts the inputs it reads as objects.
fn index_counting(p: PathBuf, read: &AtomicU64) {
    if bounded("index_object", move || index_object(&p)).is_ok() {
        read.fetch_add(1, Ordering::Relaxed);
    }
}

/// `link` on `objects`, which must fail (there is no work directory); counts the inputs that
/// were read, rewritten and serialized, failing only when writing the patch object.
fn link_counting(objects: Vec<PathBuf>, rewritten: &AtomicU64) -> Result<(), TestCaseError> {
    match bounded("link", move || link_objects(objects)) {
        Ok(_) => prop_assert!(false, "linked without a work directory"),
        Err(e) if e.0.starts_with("writing /dev/null/") => {
            rewritten.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {}
    }
    Ok(())
}

#[test]
fn fuzz_index_object_arbitrary_bytes() {
    let scratch = Scratch::new("index-bytes");
    let header = seeds()[0].bytes[..64].to_vec();
    let inputs = prop_oneof![
        1 => vec(any::<u8>(), 0..512),
        // A valid ELF header followed by junk, so the reader gets past its first checks.
        1 => vec(any::<u8>(), 0..2048).prop_map(move |tail| [header.clone(), tail].concat()),
        // ... and with a section table of plausible headers, so it gets further.
        4 => synthetic_elf(),
    ];
    let read = AtomicU64::new(0);
    run(
        "index_object, arbitrary bytes",
        cases(1000, 1),
        inputs,
        |bytes| {
            let p = scratch.write("x.o", &bytes);
            index_counting(p, &read);
            Ok(())
        },
    );
    eprintln!("  ({} read as objects)", read.into_inner());
}

#[test]
fn fuzz_index_object_mutated_objects() {
    let scratch = Scratch::new("index-mutated");
    let read = AtomicU64::new(0);
    run(
        "index_object, mutated objects",
        cases(2000, 1),
        mutated_seed(),
        |(which, muts)| {
            let p = scratch.write("x.o", &mutate(&seeds()[which], &muts));
            index_counting(p, &read);
            Ok(())
        },
    );
    eprintln!("  ({} read as objects)", read.into_inner());
}

#[test]
fn fuzz_link_mutated_objects() {
    let scratch = Scratch::new("link-mutated");
    let input = (mutated_seed(), any::<bool>());
    let rewritten = AtomicU64::new(0);
    run(
        "link, mutated objects",
        cases(1200, 1),
        input,
        |((which, muts), both)| {
            let mutated = scratch.write("mutated.o", &mutate(&seeds()[which], &muts));
            let other = scratch.write("other.o", &seeds()[1 - which].bytes);
            let objects = match (both, which) {
                (false, _) => vec![mutated],
                (true, 0) => vec![mutated, other],
                (true, _) => vec![other, mutated],
            };
            link_counting(objects, &rewritten)
        },
    );
    eprintln!(
        "  ({} read, rewritten and serialized, then stopped before the linker)",
        rewritten.into_inner()
    );
}

#[test]
fn fuzz_link_synthetic_objects() {
    let scratch = Scratch::new("link-synthetic");
    run(
        "link, synthetic objects",
        cases(300, 4),
        synthetic_elf(),
        |bytes| {
            let p = scratch.write("synthetic.o", &bytes);
            let r = bounded("link", move || link_objects(vec![p]));
            prop_assert!(r.is_err(), "linked without a work directory");
            Ok(())
        },
    );
}

#[test]
fn fuzz_link_tweaked_objects() {
    let scratch = Scratch::new("link-tweaked");
    let rewritten = AtomicU64::new(0);
    run(
        "link, objects with edge relocations and symbols",
        cases(1000, 1),
        (tweaks(), any::<bool>()),
        |(tweaks, both)| {
            let Ok(bytes) = work_object(&tweaks) else {
                return Ok(()); // the writer refused these values
            };
            let work = scratch.write("work.o", &bytes);
            let read = work.clone();
            let _ = bounded("index_object", move || index_object(&read));
            let mut objects = vec![work];
            if both {
                objects.push(scratch.write("helper.o", &seeds()[1].bytes));
            }
            link_counting(objects, &rewritten)
        },
    );
    eprintln!(
        "  ({} read, rewritten and serialized, then stopped before the linker)",
        rewritten.into_inner()
    );
}
