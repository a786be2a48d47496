//! Thread-local accesses through `link`, in every model a compiler emits:
//! * objects written here (`object::write`) with each instruction sequence, linked by ld against
//!   a synthetic running program, then the patch's bytes compared with the expected rewrite;
//! * objects compiled by gcc (`-ftls-model=…`, `-fno-plt`, `-mtls-dialect=gnu2`) and rustc (a
//!   PIC library crate reaching its own and a dependency's `thread_local!`), linked against this
//!   test process's own thread-locals, then loaded with `dlopen` and run, on two threads: the
//!   rewritten code must read and write exactly those thread-locals;
//! * thread-locals of a shared library the running program loads (imported by the program, as
//!   std's are when it is linked dynamically): the accesses stay dynamic, checked on the patch's
//!   dynamic relocations and, with a real library and gcc's objects, by running them.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use object::elf;
use object::write::{Object, Relocation, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, Object as _, ObjectSection as _, ObjectSymbol as _,
    ObjectSymbolTable as _, RelocationFlags, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
};

use super::tls_x86_64::{TLS_GET_ADDR, TLS_MODULE_BASE};
use super::{Job, Refused, link};
use crate::host::{HostImage, HostSym, Place, demangle};

const WORK: &str = "_ZN3app4work17h0123456789abcdefE";
/// A thread-local of a dependency, undefined in the patch (like tokio's `CONTEXT`).
const EXT: &str = "_ZN5tokio7runtime7context7CONTEXT17h0123456789abcdefE";
/// A thread-local of the patched crate, defined in the patch's `.tbss` at offset 8.
const OWN: &str = "_ZN3app5STATE17h0123456789abcdefE";
/// A thread-local the running program does not have.
const NEW: &str = "_ZN3app5FRESH17h0123456789abcdefE";
/// A thread-local of a shared library the running program loads (dynamically linked std): the
/// program imports it.
const SHARED: &str =
    "_ZN3std4hash6random11RandomState3new4KEYS23__RUST_STD_INTERNAL_VAL17h0123456789abcdefE";
/// Names the section symbol of the patch's `.tbss` in `Reloc::target`.
const TBSS: &str = ".tbss";

const TLS_BLOCK: u64 = 0x40;
/// Thread-pointer offsets of `EXT` (host value 0x10) and `OWN` (0x28).
const EXT_TPOFF: i32 = 0x10 - 0x40;
const OWN_TPOFF: i32 = 0x28 - 0x40;

/// `mov %fs:0, %rax`
const LOAD_TP: [u8; 9] = [0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("cargo-hot-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn host() -> HostImage {
    let tls = |value, size| {
        vec![HostSym {
            value,
            size,
            place: Place::Tls,
        }]
    };
    HostImage {
        symbols: HashMap::from([
            (EXT.to_string(), tls(0x10, 8)),
            (OWN.to_string(), tls(0x28, 16)),
        ]),
        imports: HashSet::new(),
        shared_libs: Vec::new(),
        tls_block: TLS_BLOCK,
        hot_fns: HashMap::new(),
        instances: HashMap::new(),
        build_id: "tls".into(),
    }
}

/// Links `objects` against `host` in `dir`; returns the patch's path.
fn link_in(dir: &Path, objects: &[PathBuf], host: &HostImage) -> Result<PathBuf, Refused> {
    link(&Job {
        objects,
        host,
        base: 0x5555_5555_0000,
        addr: 0x5515_5555_0000,
        work_dir: dir,
        name: "patch-1",
    })
    .map(|p| p.path)
}

// --- objects written here ---------------------------------------------------------------------

/// A relocation of `app::work`'s code: offset, target (a name above, or `TBSS`), addend, type.
type Reloc = (u64, &'static str, i64, u32);

/// An object with `app::work` = `code`, `OWN` in its `.tbss`, and the relocations.
fn object(code: &[u8], relocs: &[Reloc]) -> Vec<u8> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text_name = format!(".text.{WORK}").into_bytes();
    let text = obj.add_section(Vec::new(), text_name, SectionKind::Text);
    obj.append_section_data(text, code, 16);
    let tbss = obj.add_section(
        Vec::new(),
        b".tbss.app".to_vec(),
        SectionKind::UninitializedTls,
    );
    obj.append_section_bss(tbss, 24, 8);
    let symbol = |name: &str, size, kind, section| Symbol {
        name: name.as_bytes().to_vec(),
        value: if section == SymbolSection::Section(tbss) {
            8
        } else {
            0
        },
        size,
        kind,
        scope: SymbolScope::Linkage,
        weak: false,
        section,
        flags: SymbolFlags::None,
    };
    let mut ids = HashMap::new();
    ids.insert(
        WORK,
        obj.add_symbol(symbol(
            WORK,
            code.len() as u64,
            SymbolKind::Text,
            SymbolSection::Section(text),
        )),
    );
    ids.insert(
        OWN,
        obj.add_symbol(symbol(
            OWN,
            16,
            SymbolKind::Tls,
            SymbolSection::Section(tbss),
        )),
    );
    ids.insert(TBSS, obj.section_symbol(tbss));
    for (name, kind) in [
        (EXT, SymbolKind::Tls),
        (NEW, SymbolKind::Tls),
        (SHARED, SymbolKind::Tls),
        (TLS_GET_ADDR, SymbolKind::Unknown),
        (TLS_MODULE_BASE, SymbolKind::Unknown),
    ] {
        if relocs.iter().any(|r| r.1 == name) {
            ids.insert(
                name,
                obj.add_symbol(symbol(name, 0, kind, SymbolSection::Undefined)),
            );
        }
    }
    for &(offset, target, addend, r_type) in relocs {
        let relocation = Relocation {
            offset,
            symbol: ids[target],
            addend,
            flags: RelocationFlags::Elf { r_type },
        };
        obj.add_relocation(text, relocation).unwrap();
    }
    obj.write().unwrap()
}

/// The bytes of `symbol` in the linked patch `so`.
fn linked_code(so: &Path, symbol: &str) -> Vec<u8> {
    let data = std::fs::read(so).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let s = file.symbols().find(|s| s.name() == Ok(symbol)).unwrap();
    let section = file.section_by_index(s.section_index().unwrap()).unwrap();
    let at = (s.address() - section.address()) as usize;
    section.data().unwrap()[at..at + s.size() as usize].to_vec()
}

/// Names the patch leaves to the dynamic loader.
fn imports(so: &Path) -> Vec<String> {
    let data = std::fs::read(so).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.dynamic_symbols()
        .filter(|s| s.is_undefined() && !s.name().unwrap_or("").is_empty())
        .map(|s| s.name().unwrap().to_string())
        .collect()
}

/// Links one object with `code` and `relocs`; returns the patch's `app::work`.
fn relaxed(test: &str, code: &[u8], relocs: &[Reloc]) -> Result<Vec<u8>, Refused> {
    let scratch = Scratch::new(test);
    let path = scratch.0.join("work.o");
    std::fs::write(&path, object(code, relocs)).unwrap();
    let so = link_in(&scratch.0, &[path], &host())?;
    assert_eq!(imports(&so), Vec::<String>::new(), "{test}");
    Ok(linked_code(&so, WORK))
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn le(v: i32) -> [u8; 4] {
    v.to_le_bytes()
}

const RET: [u8; 1] = [0xc3];
const ZERO: [u8; 4] = [0; 4];

#[test]
fn general_dynamic_becomes_local_exec() {
    // data16 lea EXT@tlsgd(%rip), %rdi; data16 data16 rex64 call __tls_get_addr@PLT;
    // mov (%rax), %rax; ret
    let plt = cat(&[
        &[0x66, 0x48, 0x8d, 0x3d],
        &ZERO,
        &[0x66, 0x66, 0x48, 0xe8],
        &ZERO,
    ]);
    // ... with -fno-plt: data16 rex64 call *__tls_get_addr@GOTPCREL(%rip)
    let got = cat(&[
        &[0x66, 0x48, 0x8d, 0x3d],
        &ZERO,
        &[0x66, 0x48, 0xff, 0x15],
        &ZERO,
    ]);
    let tail = [0x48, 0x8b, 0x00, 0xc3];
    // mov %fs:0, %rax; lea EXT@tpoff(%rax), %rax
    let expected = cat(&[&LOAD_TP, &[0x48, 0x8d, 0x80], &le(EXT_TPOFF), &tail]);
    for (call, call_type) in [
        (&plt, elf::R_X86_64_PLT32),
        (&got, elf::R_X86_64_GOTPCRELX),
        (&got, elf::R_X86_64_GOTPCREL),
    ] {
        let relocs = [
            (4, EXT, -4, elf::R_X86_64_TLSGD),
            (12, TLS_GET_ADDR, -4, call_type),
        ];
        let out = relaxed("gd", &cat(&[call, &tail]), &relocs).unwrap();
        assert_eq!(out, expected, "call relocation {call_type}");
    }
}

#[test]
fn local_dynamic_becomes_local_exec() {
    // lea OWN@tlsld(%rip), %rdi; call __tls_get_addr@PLT (or *@GOTPCREL(%rip));
    // mov OWN@dtpoff(%rax), %rcx; lea OWN+8@dtpoff(%rax), %rdx (through the section);
    // movabs $OWN@dtpoff, %rsi; ret
    let lea = cat(&[&[0x48, 0x8d, 0x3d], &ZERO]);
    let accesses = |at: u64| -> (Vec<u8>, [Reloc; 3]) {
        let code = cat(&[
            &[0x48, 0x8b, 0x88],
            &ZERO,
            &[0x48, 0x8d, 0x90],
            &ZERO,
            &[0x48, 0xbe],
            &[0; 8],
            &RET,
        ]);
        let relocs = [
            (at + 3, OWN, 0, elf::R_X86_64_DTPOFF32),
            (at + 10, TBSS, 16, elf::R_X86_64_DTPOFF32),
            (at + 16, OWN, 0, elf::R_X86_64_DTPOFF64),
        ];
        (code, relocs)
    };
    let expected_accesses = cat(&[
        &[0x48, 0x8b, 0x88],
        &le(OWN_TPOFF),
        &[0x48, 0x8d, 0x90],
        &le(OWN_TPOFF + 8),
        &[0x48, 0xbe],
        &i64::from(OWN_TPOFF).to_le_bytes(),
        &RET,
    ]);
    for (call, call_type, padding) in [
        (&[0xe8][..], elf::R_X86_64_PLT32, 3),
        (&[0xff, 0x15][..], elf::R_X86_64_GOTPCRELX, 4),
    ] {
        let call_at = 7 + call.len() as u64;
        let (tail, tail_relocs) = accesses(call_at + 4);
        let mut relocs = vec![
            (3, OWN, -4, elf::R_X86_64_TLSLD),
            (call_at, TLS_GET_ADDR, -4, call_type),
        ];
        relocs.extend(tail_relocs);
        let out = relaxed("ld", &cat(&[&lea, call, &ZERO, &tail]), &relocs).unwrap();
        // data16… mov %fs:0, %rax, then the thread-pointer offsets.
        let expected = cat(&[&vec![0x66; padding], &LOAD_TP, &expected_accesses]);
        assert_eq!(out, expected, "call relocation {call_type}");
    }
}

#[test]
fn initial_exec_becomes_local_exec() {
    // mov EXT@gottpoff(%rip), %r9; add OWN@gottpoff(%rip), %rax; add EXT@gottpoff(%rip), %r12
    let code = cat(&[
        &[0x4c, 0x8b, 0x0d],
        &ZERO,
        &[0x48, 0x03, 0x05],
        &ZERO,
        &[0x4c, 0x03, 0x25],
        &ZERO,
        &RET,
    ]);
    let relocs = [
        (3, EXT, -4, elf::R_X86_64_GOTTPOFF),
        (10, OWN, -4, elf::R_X86_64_GOTTPOFF),
        (17, EXT, -4, elf::R_X86_64_GOTTPOFF),
    ];
    let out = relaxed("ie", &code, &relocs).unwrap();
    // mov $EXT, %r9; lea OWN(%rax), %rax; add $EXT, %r12
    let expected = cat(&[
        &[0x49, 0xc7, 0xc1],
        &le(EXT_TPOFF),
        &[0x48, 0x8d, 0x80],
        &le(OWN_TPOFF),
        &[0x49, 0x81, 0xc4],
        &le(EXT_TPOFF),
        &RET,
    ]);
    assert_eq!(out, expected);
}

#[test]
fn tls_descriptors_become_local_exec() {
    // lea EXT@tlsdesc(%rip), %rax; call *EXT@tlscall(%rax); mov %fs:(%rax), %rax;
    // then local-dynamic through a descriptor of the module base:
    // lea _TLS_MODULE_BASE_@tlsdesc(%rip), %rax; call *(%rax); lea OWN@dtpoff(%rax), %rdx; ret
    let code = cat(&[
        &[0x48, 0x8d, 0x05],
        &ZERO,
        &[0xff, 0x10],
        &[0x64, 0x48, 0x8b, 0x00],
        &[0x48, 0x8d, 0x05],
        &ZERO,
        &[0xff, 0x10],
        &[0x48, 0x8d, 0x90],
        &ZERO,
        &RET,
    ]);
    let relocs = [
        (3, EXT, -4, elf::R_X86_64_GOTPC32_TLSDESC),
        (7, EXT, 0, elf::R_X86_64_TLSDESC_CALL),
        (16, TLS_MODULE_BASE, -4, elf::R_X86_64_GOTPC32_TLSDESC),
        (20, TLS_MODULE_BASE, 0, elf::R_X86_64_TLSDESC_CALL),
        (25, OWN, 0, elf::R_X86_64_DTPOFF32),
    ];
    let out = relaxed("desc", &code, &relocs).unwrap();
    // mov $EXT, %rax; nop; …; mov $0, %rax; nop; lea OWN(%rax), %rdx
    let expected = cat(&[
        &[0x48, 0xc7, 0xc0],
        &le(EXT_TPOFF),
        &[0x66, 0x90],
        &[0x64, 0x48, 0x8b, 0x00],
        &[0x48, 0xc7, 0xc0],
        &ZERO,
        &[0x66, 0x90],
        &[0x48, 0x8d, 0x90],
        &le(OWN_TPOFF),
        &RET,
    ]);
    assert_eq!(out, expected);
}

#[test]
fn local_exec_through_another_object_of_the_patch() {
    // `OWN` defined by one object and reached from another, both in the patch.
    let scratch = Scratch::new("cross");
    let definer = scratch.0.join("a.o");
    std::fs::write(&definer, object(&RET, &[])).unwrap();
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text.reader".to_vec(), SectionKind::Text);
    // mov %fs:OWN@tpoff, %eax; ret
    obj.append_section_data(text, &[0x64, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0xc3], 16);
    obj.add_symbol(Symbol {
        name: b"reader".to_vec(),
        value: 0,
        size: 9,
        kind: SymbolKind::Text,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(text),
        flags: SymbolFlags::None,
    });
    let own = obj.add_symbol(Symbol {
        name: OWN.as_bytes().to_vec(),
        value: 0,
        size: 0,
        kind: SymbolKind::Tls,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Undefined,
        flags: SymbolFlags::None,
    });
    let flags = RelocationFlags::Elf {
        r_type: elf::R_X86_64_TPOFF32,
    };
    let relocation = Relocation {
        offset: 4,
        symbol: own,
        addend: 0,
        flags,
    };
    obj.add_relocation(text, relocation).unwrap();
    let reader = scratch.0.join("b.o");
    std::fs::write(&reader, obj.write().unwrap()).unwrap();
    // Either order: the reference may come before the definition.
    for objects in [[&reader, &definer], [&definer, &reader]] {
        let objects = objects.map(|p| p.to_path_buf());
        let so = link_in(&scratch.0, &objects, &host()).unwrap();
        let out = linked_code(&so, "reader");
        assert_eq!(out[4..8], le(OWN_TPOFF));
    }
}

// --- refusals ---------------------------------------------------------------------------------

fn refusal(code: &[u8], relocs: &[Reloc]) -> String {
    match relaxed("refused", code, relocs) {
        Ok(bytes) => panic!("linked: {bytes:x?}"),
        Err(e) => e.0,
    }
}

/// A refusal names the thread-local and the function in the user's terms.
fn assert_user_terms(msg: &str, thread_local: &str) {
    assert!(msg.contains(&format!("`{thread_local}`")), "{msg}");
    assert!(msg.contains("`app::work`"), "{msg}");
    assert!(msg.ends_with("restart"), "{msg}");
    if std::env::var_os("CARGO_HOT_DEBUG").is_none() {
        assert!(!msg.contains("relocation type"), "{msg}");
    }
}

#[test]
fn unexpected_instructions_are_refused() {
    // A general-dynamic relocation on a plain `lea` followed by a plain call.
    let code = cat(&[
        &[0x90, 0x48, 0x8d, 0x3d],
        &ZERO,
        &[0x90, 0x90, 0x90, 0xe8],
        &ZERO,
    ]);
    let relocs = [
        (4, EXT, -4, elf::R_X86_64_TLSGD),
        (12, TLS_GET_ADDR, -4, elf::R_X86_64_PLT32),
    ];
    let msg = refusal(&code, &relocs);
    assert_user_terms(&msg, "tokio::runtime::context::CONTEXT");
    assert!(msg.contains("general-dynamic"), "{msg}");
    // Initial-exec on a `sub`.
    let code = cat(&[&[0x48, 0x2b, 0x05], &ZERO, &RET]);
    let msg = refusal(&code, &[(3, OWN, -4, elf::R_X86_64_GOTTPOFF)]);
    assert_user_terms(&msg, "app::STATE");
}

#[test]
fn sequences_without_their_call_are_refused() {
    let code = cat(&[
        &[0x66, 0x48, 0x8d, 0x3d],
        &ZERO,
        &[0x66, 0x66, 0x48, 0xe8],
        &ZERO,
    ]);
    let msg = refusal(&code, &[(4, EXT, -4, elf::R_X86_64_TLSGD)]);
    assert_user_terms(&msg, "tokio::runtime::context::CONTEXT");
    assert!(msg.contains("__tls_get_addr"), "{msg}");
    // A call to `__tls_get_addr` of its own.
    let code = cat(&[&[0xe8], &ZERO, &RET]);
    let msg = refusal(&code, &[(1, TLS_GET_ADDR, -4, elf::R_X86_64_PLT32)]);
    assert!(msg.contains("`__tls_get_addr` outside"), "{msg}");
}

#[test]
fn new_thread_locals_are_refused_in_every_model() {
    let gd = cat(&[
        &[0x66, 0x48, 0x8d, 0x3d],
        &ZERO,
        &[0x66, 0x66, 0x48, 0xe8],
        &ZERO,
    ]);
    let ie = cat(&[&[0x48, 0x8b, 0x05], &ZERO, &RET]);
    let cases: [(&[u8], Vec<Reloc>); 2] = [
        (
            &gd,
            vec![
                (4, NEW, -4, elf::R_X86_64_TLSGD),
                (12, TLS_GET_ADDR, -4, elf::R_X86_64_PLT32),
            ],
        ),
        (&ie, vec![(3, NEW, -4, elf::R_X86_64_GOTTPOFF)]),
    ];
    for (code, relocs) in cases {
        let msg = refusal(code, &relocs);
        assert!(msg.contains("a new thread-local `app::FRESH`"), "{msg}");
    }
}

// --- thread-locals of the program's shared libraries -------------------------------------------

/// `host()`, which also imports `SHARED` from a shared library it loads.
fn shared_host() -> HostImage {
    let mut host = host();
    host.imports.insert(SHARED.to_string());
    host
}

/// The patch linked from one object with `code` and `relocs` against `shared_host()`.
fn linked_shared(scratch: &Scratch, code: &[u8], relocs: &[Reloc]) -> Result<PathBuf, Refused> {
    let path = scratch.0.join("work.o");
    std::fs::write(&path, object(code, relocs)).unwrap();
    link_in(&scratch.0, &[path], &shared_host())
}

/// The patch's dynamic relocations: type and symbol name, sorted.
fn dynamic_relocations(so: &Path) -> Vec<(u32, String)> {
    let data = std::fs::read(so).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let dynsym = file.dynamic_symbol_table().unwrap();
    let mut out: Vec<(u32, String)> = file
        .dynamic_relocations()
        .into_iter()
        .flatten()
        .map(|(_, r)| {
            let RelocationFlags::Elf { r_type } = r.flags() else {
                panic!("{r:?}")
            };
            let name = match r.target() {
                object::RelocationTarget::Symbol(i) => dynsym
                    .symbol_by_index(i)
                    .unwrap()
                    .name()
                    .unwrap()
                    .to_string(),
                _ => String::new(),
            };
            (r_type, name)
        })
        .collect();
    out.sort();
    out
}

/// `SHARED` is an undefined, global, default-visibility thread-local of the patch's dynamic
/// symbols, so the dynamic loader binds it to the library's.
fn assert_imports_thread_local(so: &Path, name: &str) {
    let data = std::fs::read(so).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let s = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("{name} is not a dynamic symbol of the patch"));
    assert!(s.is_undefined(), "{s:?}");
    assert_eq!(s.kind(), SymbolKind::Tls, "{s:?}");
    assert!(s.is_global(), "{s:?}");
    let object::SymbolFlags::Elf { st_other, .. } = s.flags() else {
        panic!("{s:?}")
    };
    assert_eq!(st_other & 3, elf::STV_DEFAULT, "{s:?}");
}

/// What the program's loader (`hot-runtime`'s `check_image`) requires before `dlopen`: a shared
/// object with no interpreter, no thread-local segment, no needed libraries, no constructors.
fn assert_loadable(so: &Path) {
    use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _};
    let data = std::fs::read(so).unwrap();
    let header = elf::FileHeader64::<Endianness>::parse(&*data).unwrap();
    let endian = header.endian().unwrap();
    assert_eq!(header.e_type(endian), elf::ET_DYN);
    for ph in header.program_headers(endian, &*data).unwrap() {
        let p_type = ph.p_type(endian);
        assert!(
            p_type != elf::PT_TLS && p_type != elf::PT_INTERP,
            "segment {p_type}"
        );
        if let Some(dynamic) = ph.dynamic(endian, &*data).unwrap() {
            for d in dynamic {
                let tag = d.d_tag(endian) as u32;
                assert!(
                    ![
                        elf::DT_NEEDED,
                        elf::DT_INIT,
                        elf::DT_INIT_ARRAY,
                        elf::DT_PREINIT_ARRAY
                    ]
                    .contains(&tag),
                    "dynamic tag {tag}"
                );
            }
        }
    }
}

fn dynamic(r_type: u32, name: &str) -> (u32, String) {
    (r_type, name.to_string())
}

#[test]
fn general_dynamic_to_a_shared_library_stays_dynamic() {
    let lea = [0x66, 0x48, 0x8d, 0x3d];
    let plt = cat(&[&lea, &ZERO, &[0x66, 0x66, 0x48, 0xe8], &ZERO]);
    let got = cat(&[&lea, &ZERO, &[0x66, 0x48, 0xff, 0x15], &ZERO]);
    let tail = [0x48, 0x8b, 0x00, 0xc3];
    for (call, call_type, call_slot) in [
        (&plt, elf::R_X86_64_PLT32, elf::R_X86_64_JUMP_SLOT),
        (&got, elf::R_X86_64_GOTPCRELX, elf::R_X86_64_GLOB_DAT),
    ] {
        let scratch = Scratch::new("shared-gd");
        let relocs = [
            (4, SHARED, -4, elf::R_X86_64_TLSGD),
            (12, TLS_GET_ADDR, -4, call_type),
        ];
        let so = linked_shared(&scratch, &cat(&[call, &tail]), &relocs).unwrap();
        // The sequence is ld's: unchanged but for the displacements it filled in.
        let out = linked_code(&so, WORK);
        assert_eq!(out[..4], call[..4], "{call_type}");
        assert_eq!(out[8..12], call[8..12], "{call_type}");
        assert_eq!(out[16..], tail, "{call_type}");
        // A module/offset pair for `__tls_get_addr`, filled by the dynamic loader, and the call
        // bound to ld.so's `__tls_get_addr`.
        assert_eq!(
            dynamic_relocations(&so),
            [
                dynamic(call_slot, TLS_GET_ADDR),
                dynamic(elf::R_X86_64_DTPMOD64, SHARED),
                dynamic(elf::R_X86_64_DTPOFF64, SHARED),
            ],
            "{call_type}"
        );
        let mut imported = imports(&so);
        imported.sort();
        assert_eq!(imported, [SHARED, TLS_GET_ADDR]);
        assert_imports_thread_local(&so, SHARED);
        assert_loadable(&so);
    }
}

#[test]
fn initial_exec_and_descriptors_to_a_shared_library_stay_dynamic() {
    // mov SHARED@gottpoff(%rip), %r9; mov %fs:(%r9), %rax; ret
    let ie = cat(&[&[0x4c, 0x8b, 0x0d], &ZERO, &[0x64, 0x49, 0x8b, 0x01], &RET]);
    // lea SHARED@tlsdesc(%rip), %rax; call *SHARED@tlscall(%rax); mov %fs:(%rax), %rax; ret
    let desc = cat(&[
        &[0x48, 0x8d, 0x05],
        &ZERO,
        &[0xff, 0x10],
        &[0x64, 0x48, 0x8b, 0x00],
        &RET,
    ]);
    let cases: [(&[u8], Vec<Reloc>, u32); 2] = [
        (
            &ie,
            vec![(3, SHARED, -4, elf::R_X86_64_GOTTPOFF)],
            elf::R_X86_64_TPOFF64,
        ),
        (
            &desc,
            vec![
                (3, SHARED, -4, elf::R_X86_64_GOTPC32_TLSDESC),
                (7, SHARED, 0, elf::R_X86_64_TLSDESC_CALL),
            ],
            elf::R_X86_64_TLSDESC,
        ),
    ];
    for (code, relocs, expected) in cases {
        let scratch = Scratch::new("shared-ie");
        let so = linked_shared(&scratch, code, &relocs).unwrap();
        let out = linked_code(&so, WORK);
        assert_eq!(out[..3], code[..3], "{expected}");
        assert_eq!(out[7..], code[7..], "{expected}");
        assert_eq!(dynamic_relocations(&so), [dynamic(expected, SHARED)]);
        assert_eq!(imports(&so), [SHARED]);
        assert_imports_thread_local(&so, SHARED);
        assert_loadable(&so);
    }
}

#[test]
fn one_function_reaches_the_program_s_and_a_shared_library_s_thread_locals() {
    // Two general-dynamic sequences: `EXT` (the program's) becomes local-exec and loses its
    // call, `SHARED` (a library's) keeps both.
    let gd = cat(&[
        &[0x66, 0x48, 0x8d, 0x3d],
        &ZERO,
        &[0x66, 0x66, 0x48, 0xe8],
        &ZERO,
    ]);
    let code = cat(&[&gd, &gd, &RET]);
    let relocs = [
        (4, EXT, -4, elf::R_X86_64_TLSGD),
        (12, TLS_GET_ADDR, -4, elf::R_X86_64_PLT32),
        (20, SHARED, -4, elf::R_X86_64_TLSGD),
        (28, TLS_GET_ADDR, -4, elf::R_X86_64_PLT32),
    ];
    let scratch = Scratch::new("shared-mixed");
    let so = linked_shared(&scratch, &code, &relocs).unwrap();
    let out = linked_code(&so, WORK);
    let local = cat(&[&LOAD_TP, &[0x48, 0x8d, 0x80], &le(EXT_TPOFF)]);
    assert_eq!(out[..16], local);
    assert_eq!(out[16..20], gd[..4]);
    assert_eq!(out[24..28], gd[8..12]);
    assert_eq!(
        dynamic_relocations(&so),
        [
            dynamic(elf::R_X86_64_JUMP_SLOT, TLS_GET_ADDR),
            dynamic(elf::R_X86_64_DTPMOD64, SHARED),
            dynamic(elf::R_X86_64_DTPOFF64, SHARED),
        ]
    );
    assert_loadable(&so);
}

#[test]
fn local_models_to_a_shared_library_are_refused() {
    let scratch = Scratch::new("shared-refused");
    let refused = |code: &[u8], relocs: &[Reloc]| match linked_shared(&scratch, code, relocs) {
        Ok(so) => panic!("linked: {}", so.display()),
        Err(e) => e.0,
    };
    // Named as its `thread_local!` declares it, not by std's storage symbol.
    let name = "std::hash::random::RandomState::new::KEYS";
    // mov %fs:SHARED@tpoff, %rax; ret
    let le_code = cat(&[&[0x64, 0x48, 0x8b, 0x04, 0x25], &ZERO, &RET]);
    let msg = refused(&le_code, &[(5, SHARED, 0, elf::R_X86_64_TPOFF32)]);
    assert_user_terms(&msg, name);
    assert!(msg.contains("local-exec"), "{msg}");
    assert!(msg.contains("shared library"), "{msg}");
    assert!(!msg.contains("new thread-local"), "{msg}");
    // lea OWN@tlsld(%rip), %rdi; call __tls_get_addr@PLT; mov SHARED@dtpoff(%rax), %rcx; ret
    let ld_code = cat(&[
        &[0x48, 0x8d, 0x3d],
        &ZERO,
        &[0xe8],
        &ZERO,
        &[0x48, 0x8b, 0x88],
        &ZERO,
        &RET,
    ]);
    let relocs = [
        (3, OWN, -4, elf::R_X86_64_TLSLD),
        (8, TLS_GET_ADDR, -4, elf::R_X86_64_PLT32),
        (15, SHARED, 0, elf::R_X86_64_DTPOFF32),
    ];
    let msg = refused(&ld_code, &relocs);
    assert_user_terms(&msg, name);
    assert!(msg.contains("local-dynamic"), "{msg}");
    assert!(msg.contains("shared library"), "{msg}");
    // Not imported by the program: a new thread-local, as before.
    let ie = cat(&[&[0x48, 0x8b, 0x05], &ZERO, &RET]);
    let path = scratch.0.join("work.o");
    std::fs::write(
        &path,
        object(&ie, &[(3, SHARED, -4, elf::R_X86_64_GOTTPOFF)]),
    )
    .unwrap();
    let msg = link_in(&scratch.0, &[path], &host()).unwrap_err().0;
    assert!(
        msg.contains(&format!("a new thread-local `{name}`")),
        "{msg}"
    );
}

#[test]
fn module_ids_are_refused() {
    let code = cat(&[&[0; 8], &RET]);
    let msg = refusal(&code, &[(0, EXT, 0, elf::R_X86_64_DTPMOD64)]);
    assert_user_terms(&msg, "tokio::runtime::context::CONTEXT");
}

// --- compiled objects, run against this process's thread-locals -------------------------------

thread_local! {
    static PROBE: Cell<u64> = const { Cell::new(0) };
    static PROBE2: Cell<u64> = const { Cell::new(0) };
}

/// This test program's own thread-locals `PROBE` and `PROBE2` under other names, as the running
/// program of a patch.
fn probe_host(names: [&str; 2]) -> HostImage {
    static PROBES: OnceLock<(HostSym, HostSym, u64)> = OnceLock::new();
    let &(probe, probe2, tls_block) = PROBES.get_or_init(|| {
        let exe = HostImage::load(&std::env::current_exe().unwrap(), &[]).unwrap();
        let find = |name: &str| {
            let found: Vec<HostSym> = exe
                .symbols
                .iter()
                .filter(|(n, _)| demangle(n).contains(&format!("tls_link_tests::{name}::")))
                .flat_map(|(_, v)| v.iter().copied())
                .filter(|s| s.place == Place::Tls)
                .collect();
            assert_eq!(found.len(), 1, "{name} in this test program: {found:?}");
            found[0]
        };
        (find("PROBE"), find("PROBE2"), exe.tls_block)
    });
    HostImage {
        symbols: HashMap::from([
            (names[0].to_string(), vec![probe]),
            (names[1].to_string(), vec![probe2]),
        ]),
        imports: HashSet::new(),
        shared_libs: Vec::new(),
        tls_block,
        hot_fns: HashMap::new(),
        instances: HashMap::new(),
        build_id: "probe".into(),
    }
}

/// Runs `cmd`; `None` (the test is skipped) when the program is not installed.
fn run(cmd: &mut Command) -> Option<()> {
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: {cmd:?} not found");
            return None;
        }
        Err(e) => panic!("{cmd:?}: {e}"),
    };
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

/// Where the dynamic loader put the shared object at `path`.
fn load_bias(path: &Path) -> u64 {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid entry; `data` is the `(name, bias)` below.
        let (info, found) =
            unsafe { (&*info, &mut *data.cast::<(&std::ffi::CStr, Option<u64>)>()) };
        if !info.dlpi_name.is_null()
            && unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) } == found.0
        {
            found.1 = Some(info.dlpi_addr);
        }
        0
    }
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut found: (&std::ffi::CStr, Option<u64>) = (&name, None);
    // SAFETY: `visit` only reads the entries and writes `found`, alive for the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut found).cast()) };
    found.1.expect("the patch is loaded")
}

/// The patch's `hot_get` and `hot_set`, loaded into this process.
fn load(so: &Path) -> (extern "C" fn() -> u64, extern "C" fn(u64)) {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(so.as_os_str().as_bytes()).unwrap();
    // SAFETY: the patch has no initializers; it is never unloaded.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "dlopen {}", so.display());
    let data = std::fs::read(so).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let address = |symbol: &str| {
        let s = file.symbols().find(|s| s.name() == Ok(symbol)).unwrap();
        (load_bias(so) + s.address()) as usize
    };
    // SAFETY: both are `extern "C"` functions of these signatures in the sources below.
    unsafe {
        (
            std::mem::transmute::<usize, extern "C" fn() -> u64>(address("hot_get")),
            std::mem::transmute::<usize, extern "C" fn(u64)>(address("hot_set")),
        )
    }
}

/// `hot_get` returns `first * 1000 + second` of the two thread-locals, `hot_set(v)` sets them to
/// `v` and `v + 1`: checks the loaded patch reaches this thread's `PROBE` and `PROBE2`, here and
/// on a new thread.
fn check_runs(so: &Path) {
    let (get, set) = load(so);
    PROBE.set(3);
    PROBE2.set(4);
    assert_eq!(get(), 3004);
    set(7);
    assert_eq!((PROBE.get(), PROBE2.get()), (7, 8));
    std::thread::spawn(move || {
        assert_eq!(get(), 0);
        PROBE.set(1);
        PROBE2.set(2);
        assert_eq!(get(), 1002);
        set(5);
        assert_eq!((PROBE.get(), PROBE2.get()), (5, 6));
    })
    .join()
    .unwrap();
    assert_eq!(get(), 7008);
}

/// The patch disassembles cleanly, reaches thread-locals through `%fs` and never calls
/// `__tls_get_addr`.
fn check_disassembly(so: &Path) {
    let Ok(out) = Command::new("objdump").arg("-d").arg(so).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("(bad)"), "{text}");
    assert!(text.contains("%fs:"), "{text}");
    assert!(!text.contains("tls_get_addr"), "{text}");
}

const C_EXTERN: &str = r#"
extern __thread unsigned long hot_probe, hot_probe2;
unsigned long hot_get(void) { return hot_probe * 1000 + hot_probe2; }
void hot_set(unsigned long v) { hot_probe = v; hot_probe2 = v + 1; }
"#;

/// Defined here, so the compiler may use local-dynamic.
const C_LOCAL: &str = r#"
__attribute__((visibility("hidden"))) __thread unsigned long hot_probe, hot_probe2;
unsigned long hot_get(void) { return hot_probe * 1000 + hot_probe2; }
void hot_set(unsigned long v) { hot_probe = v; hot_probe2 = v + 1; }
"#;

/// The relocation types of an object.
fn relocation_types(obj: &Path) -> HashSet<u32> {
    let data = std::fs::read(obj).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.sections()
        .flat_map(|s| s.relocations().collect::<Vec<_>>())
        .filter_map(|(_, r)| match r.flags() {
            RelocationFlags::Elf { r_type } => Some(r_type),
            _ => None,
        })
        .collect()
}

#[test]
fn gcc_objects_run_in_every_model() {
    let scratch = Scratch::new("gcc");
    let host = probe_host(["hot_probe", "hot_probe2"]);
    use elf::{
        R_X86_64_GOTPC32_TLSDESC as DESC, R_X86_64_GOTPCRELX, R_X86_64_GOTTPOFF, R_X86_64_TLSGD,
        R_X86_64_TLSLD, R_X86_64_TPOFF32,
    };
    // Name, source, flags, and the relocations the flags must produce.
    let cases: [(&str, &str, &[&str], &[u32]); 8] = [
        (
            "gd",
            C_EXTERN,
            &["-ftls-model=global-dynamic"],
            &[R_X86_64_TLSGD],
        ),
        (
            "gd-noplt",
            C_EXTERN,
            &["-ftls-model=global-dynamic", "-fno-plt"],
            &[R_X86_64_TLSGD, R_X86_64_GOTPCRELX],
        ),
        (
            "ld",
            C_LOCAL,
            &["-ftls-model=local-dynamic"],
            &[R_X86_64_TLSLD],
        ),
        (
            "ld-noplt",
            C_LOCAL,
            &["-ftls-model=local-dynamic", "-fno-plt"],
            &[R_X86_64_TLSLD, R_X86_64_GOTPCRELX],
        ),
        (
            "ie",
            C_EXTERN,
            &["-ftls-model=initial-exec"],
            &[R_X86_64_GOTTPOFF],
        ),
        (
            "le",
            C_LOCAL,
            &["-ftls-model=local-exec"],
            &[R_X86_64_TPOFF32],
        ),
        (
            "desc",
            C_EXTERN,
            &["-ftls-model=global-dynamic", "-mtls-dialect=gnu2"],
            &[DESC],
        ),
        (
            "desc-ld",
            C_LOCAL,
            &["-ftls-model=local-dynamic", "-mtls-dialect=gnu2"],
            &[DESC],
        ),
    ];
    for (name, source, flags, expected) in cases {
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("t.c");
        std::fs::write(&src, source).unwrap();
        let obj = dir.join("t.o");
        let cc = std::env::var("CARGO_HOT_CC").unwrap_or_else(|_| "cc".into());
        let mut cmd = Command::new(cc);
        cmd.args(["-O2", "-fPIC", "-c"])
            .args(flags)
            .arg(&src)
            .arg("-o")
            .arg(&obj);
        if run(&mut cmd).is_none() {
            return;
        }
        let types = relocation_types(&obj);
        assert!(
            expected.iter().all(|t| types.contains(t)),
            "{name}: {types:?}"
        );
        let so = link_in(&dir, &[obj], &host).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_disassembly(&so);
        check_runs(&so);
    }
}

/// A dependency crate's `thread_local!` reached through an inlined accessor.
const RUST_DEP: &str = r#"
use std::cell::Cell;
thread_local! { pub static DEP: Cell<u64> = const { Cell::new(0) }; }
#[inline] pub fn get() -> u64 { DEP.with(|x| x.get()) }
#[inline] pub fn set(v: u64) { DEP.with(|x| x.set(v)) }
"#;

/// The patched crate: its own `thread_local!` and the dependency's.
const RUST_USER: &str = r#"
use std::cell::Cell;
thread_local! { static MINE: Cell<u64> = const { Cell::new(0) }; }
#[no_mangle] pub extern "C" fn hot_get() -> u64 { tlsdep::get() * 1000 + MINE.with(|m| m.get()) }
#[no_mangle] pub extern "C" fn hot_set(v: u64) { tlsdep::set(v); MINE.with(|m| m.set(v + 1)) }
"#;

#[test]
fn rustc_library_objects_run() {
    let scratch = Scratch::new("rustc");
    let dir = &scratch.0;
    std::fs::write(dir.join("dep.rs"), RUST_DEP).unwrap();
    std::fs::write(dir.join("user.rs"), RUST_USER).unwrap();
    let rustc = || {
        let mut cmd = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
        cmd.current_dir(dir)
            .args(["--edition=2021", "-Copt-level=2"]);
        cmd
    };
    let dep = rustc()
        .args(["--crate-type=rlib", "--crate-name=tlsdep", "dep.rs"])
        .args(["-o", "libtlsdep.rlib"])
        .output();
    if dep.is_err() {
        eprintln!("skipped: no rustc");
        return;
    }
    // A library crate is position-independent code, not PIE: general- and local-dynamic.
    run(rustc()
        .args(["--crate-type=lib", "--crate-name=user", "--emit=obj"])
        .args([
            "-Crelocation-model=pic",
            "--extern",
            "tlsdep=libtlsdep.rlib",
        ])
        .args(["user.rs", "-o", "user.o"]))
    .unwrap();
    let obj = dir.join("user.o");
    let data = std::fs::read(&obj).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let tls_named = |defined: bool| {
        let s = file
            .symbols()
            .find(|s| s.kind() == SymbolKind::Tls && s.is_undefined() != defined)
            .unwrap();
        s.name().unwrap().to_string()
    };
    let (dep_tls, own_tls) = (tls_named(false), tls_named(true));
    let types = relocation_types(&obj);
    let expected = [
        elf::R_X86_64_TLSGD,
        elf::R_X86_64_TLSLD,
        elf::R_X86_64_DTPOFF32,
    ];
    assert!(expected.iter().all(|t| types.contains(t)), "{types:?}");
    let host = probe_host([&dep_tls, &own_tls]);
    let so = link_in(dir, &[obj], &host).unwrap();
    check_disassembly(&so);
    check_runs(&so);
}

/// A shared library defining a thread-local, standing for a Rust `dylib` or a dynamically linked
/// std. Its own accessors use initial-exec: like a library the program loads at start-up, its
/// block is in the static TLS area (which a patch's initial-exec access needs).
const C_SHARED_LIB: &str = r#"
__thread unsigned long hot_shared_tls;
unsigned long hot_shared_get(void) { return hot_shared_tls; }
void hot_shared_set(unsigned long v) { hot_shared_tls = v; }
"#;

/// A patch reaching the program's `hot_probe` (rewritten to local-exec) and the library's
/// `hot_shared_tls` (left to the dynamic loader) in the same functions.
const C_MIXED: &str = r#"
extern __thread unsigned long hot_probe, hot_shared_tls;
unsigned long hot_get(void) { return hot_probe * 1000 + hot_shared_tls; }
void hot_set(unsigned long v) { hot_probe = v; hot_shared_tls = v + 1; }
"#;

/// The library's `hot_shared_get` and `hot_shared_set`, built once and loaded into this process
/// with `RTLD_GLOBAL` (as the program's libraries are); `None` without a C compiler.
fn shared_library() -> Option<(extern "C" fn() -> u64, extern "C" fn(u64))> {
    static LIB: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    let &(get, set) = LIB
        .get_or_init(|| {
            let scratch = Scratch::new("shared-lib");
            let src = scratch.0.join("shared.c");
            std::fs::write(&src, C_SHARED_LIB).unwrap();
            let lib = scratch.0.join("libhotshared.so");
            let cc = std::env::var("CARGO_HOT_CC").unwrap_or_else(|_| "cc".into());
            run(Command::new(cc)
                .args(["-O2", "-fPIC", "-shared", "-ftls-model=initial-exec"])
                .arg(&src)
                .arg("-o")
                .arg(&lib))?;
            use std::os::unix::ffi::OsStrExt;
            let name = std::ffi::CString::new(lib.as_os_str().as_bytes()).unwrap();
            // SAFETY: the library has no initializers; it is never unloaded (the mapping
            // outlives the scratch file).
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            assert!(!handle.is_null(), "dlopen {}", lib.display());
            let sym = |s: &std::ffi::CStr| {
                // SAFETY: a live handle and a NUL-terminated name.
                let p = unsafe { libc::dlsym(handle, s.as_ptr()) };
                assert!(!p.is_null(), "{s:?}");
                p as usize
            };
            Some((sym(c"hot_shared_get"), sym(c"hot_shared_set")))
        })
        .as_ref()?;
    // SAFETY: `extern "C"` functions of these signatures in `C_SHARED_LIB`.
    unsafe {
        Some((
            std::mem::transmute::<usize, extern "C" fn() -> u64>(get),
            std::mem::transmute::<usize, extern "C" fn(u64)>(set),
        ))
    }
}

#[test]
fn gcc_objects_reach_a_shared_library_s_thread_locals() {
    let Some((shared_get, shared_set)) = shared_library() else {
        return;
    };
    let scratch = Scratch::new("gcc-shared");
    let mut host = probe_host(["hot_probe", "hot_probe2"]);
    host.imports.insert("hot_shared_tls".to_string());
    use elf::{
        R_X86_64_DTPMOD64, R_X86_64_GOTPC32_TLSDESC, R_X86_64_GOTTPOFF, R_X86_64_TLSDESC,
        R_X86_64_TLSGD, R_X86_64_TPOFF64,
    };
    // Name, flags, the relocation the flags must produce, and the patch's dynamic relocation
    // for the library's thread-local.
    let cases: [(&str, &[&str], u32, u32); 4] = [
        (
            "gd",
            &["-ftls-model=global-dynamic"],
            R_X86_64_TLSGD,
            R_X86_64_DTPMOD64,
        ),
        (
            "gd-noplt",
            &["-ftls-model=global-dynamic", "-fno-plt"],
            R_X86_64_TLSGD,
            R_X86_64_DTPMOD64,
        ),
        (
            "ie",
            &["-ftls-model=initial-exec"],
            R_X86_64_GOTTPOFF,
            R_X86_64_TPOFF64,
        ),
        (
            "desc",
            &["-ftls-model=global-dynamic", "-mtls-dialect=gnu2"],
            R_X86_64_GOTPC32_TLSDESC,
            R_X86_64_TLSDESC,
        ),
    ];
    for (name, flags, compiled, dynamic_reloc) in cases {
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("t.c");
        std::fs::write(&src, C_MIXED).unwrap();
        let obj = dir.join("t.o");
        let cc = std::env::var("CARGO_HOT_CC").unwrap_or_else(|_| "cc".into());
        let mut cmd = Command::new(cc);
        cmd.args(["-O2", "-fPIC", "-c"])
            .args(flags)
            .arg(&src)
            .arg("-o")
            .arg(&obj);
        run(&mut cmd).unwrap();
        assert!(relocation_types(&obj).contains(&compiled), "{name}");
        let so = link_in(&dir, &[obj], &host).unwrap_or_else(|e| panic!("{name}: {e}"));
        let relocs = dynamic_relocations(&so);
        assert!(
            relocs.contains(&dynamic(dynamic_reloc, "hot_shared_tls")),
            "{name}: {relocs:?}"
        );
        // Only the library's thread-local is left to the loader; the program's is rewritten.
        assert!(
            relocs.iter().all(|(_, s)| s != "hot_probe"),
            "{name}: {relocs:?}"
        );
        assert_imports_thread_local(&so, "hot_shared_tls");
        assert_loadable(&so);

        let (get, set) = load(&so);
        PROBE.set(3);
        shared_set(4);
        assert_eq!(get(), 3004, "{name}");
        set(7);
        assert_eq!((PROBE.get(), shared_get()), (7, 8), "{name}");
        std::thread::spawn(move || {
            assert_eq!(get(), 0, "{name}");
            PROBE.set(1);
            shared_set(2);
            assert_eq!(get(), 1002, "{name}");
            set(5);
            assert_eq!((PROBE.get(), shared_get()), (5, 6), "{name}");
        })
        .join()
        .unwrap();
        assert_eq!(get(), 7008, "{name}");
    }
}

/// A program linking std dynamically (as one with a `dylib` dependency does): `RandomState::new`
/// (what `HashMap::new` calls) reaches std's thread-local `KEYS`, which the program imports from
/// `libstd-*.so`. It prints its load address, then loads the patch named on its stdin (with the
/// address of the patch's `hot_keys`) and checks that the patch's copy advances the same
/// per-thread keys as its own.
const RUST_DYNAMIC_STD: &str = r#"
use std::collections::hash_map::RandomState;
use std::ffi::{c_char, c_int, c_void, CString};
use std::io::BufRead;

unsafe extern "C" {
    static __executable_start: u8;
    fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void;
    fn dlinfo(handle: *mut c_void, request: c_int, info: *mut c_void) -> c_int;
}

/// The keys of a new `RandomState`: std's `KEYS` of this thread, which each call advances.
#[no_mangle]
pub extern "C" fn hot_keys(out: &mut [u64; 2]) {
    *out = unsafe { std::mem::transmute::<RandomState, [u64; 2]>(RandomState::new()) };
}

fn main() {
    println!("{:#x}", unsafe { &__executable_start as *const u8 as usize });
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let (path, expected) = line.trim().split_once(' ').unwrap();
    let expected = usize::from_str_radix(expected, 16).unwrap();
    let path = CString::new(path).unwrap();
    let patch = unsafe { dlopen(path.as_ptr(), 2) };
    assert!(!patch.is_null(), "dlopen failed");
    // RTLD_DI_LINKMAP: a `struct link_map *`, whose first field is the load bias.
    let mut map: *const u64 = std::ptr::null();
    assert_eq!(unsafe { dlinfo(patch, 2, (&raw mut map).cast()) }, 0);
    assert_eq!(unsafe { *map }, 0, "the patch is not at its linked address");
    assert_ne!(expected, hot_keys as usize);
    let patched: extern "C" fn(&mut [u64; 2]) = unsafe { std::mem::transmute(expected) };
    let run = move || {
        let (mut a, mut b, mut c) = ([0; 2], [0; 2], [0; 2]);
        hot_keys(&mut a);
        patched(&mut b);
        hot_keys(&mut c);
        // One key is fixed per thread, the other advances by one per `RandomState`.
        let next = |x: [u64; 2], y: [u64; 2]| {
            (x[0] == y[0] && x[1].wrapping_add(1) == y[1])
                || (x[1] == y[1] && x[0].wrapping_add(1) == y[0])
        };
        assert!(next(a, b) && next(b, c), "{a:x?} {b:x?} {c:x?}");
        a
    };
    let here = run();
    let there = std::thread::spawn(run).join().unwrap();
    assert_ne!(here, there);
    println!("ok");
}
"#;

#[test]
fn rustc_objects_reach_a_dynamically_linked_std_s_thread_locals() {
    use std::io::{BufRead as _, Write as _};
    let scratch = Scratch::new("rustc-dylib-std");
    let dir = &scratch.0;
    std::fs::write(dir.join("main.rs"), RUST_DYNAMIC_STD).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(libdir) = Command::new(&rustc)
        .args(["--print", "target-libdir"])
        .output()
    else {
        eprintln!("skipped: no rustc");
        return;
    };
    let libdir = PathBuf::from(String::from_utf8(libdir.stdout).unwrap().trim());
    // The program and its object, from one compilation.
    run(Command::new(&rustc)
        .current_dir(dir)
        .args(["--edition=2021", "-Cprefer-dynamic", "-Cdebuginfo=0"])
        .args(["-Ccodegen-units=1", "--emit=obj,link", "main.rs"]))
    .unwrap();
    let host = HostImage::load(&dir.join("main"), std::slice::from_ref(&libdir)).unwrap();
    let keys: Vec<&String> = host
        .imports
        .iter()
        .filter(|n| demangle(n).starts_with("<std::hash::random::RandomState>::new::KEYS"))
        .collect();
    assert!(!keys.is_empty(), "std's KEYS is not imported");
    assert!(keys.iter().all(|k| !host.symbols.contains_key(*k)));

    let mut program = Command::new(dir.join("main"))
        .env("LD_LIBRARY_PATH", &libdir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(program.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = u64::from_str_radix(line.trim().trim_start_matches("0x"), 16).unwrap();
    // The patch 1 GiB below the program, as cargo hot places it (within 2 GiB: its own statics
    // resolve to the program's).
    let addr = base - 0x4000_0000;
    let linked = link(&Job {
        objects: &[dir.join("main.o")],
        host: &host,
        base,
        addr,
        work_dir: dir,
        name: "patch-1",
    });
    let so = match linked {
        Ok(p) => p.path,
        Err(e) => {
            let _ = program.kill();
            let _ = program.wait();
            panic!("{e}");
        }
    };
    let relocs = dynamic_relocations(&so);
    let reached: Vec<_> = relocs.iter().filter(|(_, s)| keys.contains(&s)).collect();
    // rustc reaches another module's thread-local from a PIE with initial-exec: a GOT slot the
    // dynamic loader fills with its thread-pointer offset.
    let ie = !reached.is_empty() && reached.iter().all(|(t, _)| *t == elf::R_X86_64_TPOFF64);
    for (_, s) in &reached {
        assert_imports_thread_local(&so, s);
    }
    assert_loadable(&so);
    let data = std::fs::read(&so).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let entry = file
        .symbols()
        .find(|s| s.name() == Ok("hot_keys"))
        .unwrap()
        .address();
    let mut stdin = program.stdin.take().unwrap();
    writeln!(stdin, "{} {entry:x}", so.display()).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = program.wait().unwrap();
    assert!(ie, "{relocs:?}");
    assert!(status.success() && rest.trim() == "ok", "{status}: {rest}");
}
