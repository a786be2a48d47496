//! x86_64 thread-local accesses, rewritten to reach the running program's thread-locals.
//!
//! Patch code is compiled like the crate it comes from: a binary's objects (PIE) reach
//! thread-locals with local-exec (`R_X86_64_TPOFF32`) or initial-exec (`GOTTPOFF`), a library's
//! (PIC) also with general-dynamic (`TLSGD` + a call to `__tls_get_addr`), local-dynamic (`TLSLD`
//! + a call, then `DTPOFF32/64` per variable) or TLS descriptors (`GOTPC32_TLSDESC` +
//! `TLSDESC_CALL`). A patch is a shared object, but the thread-locals it reaches are the running
//! program's, in the executable's static TLS block at a fixed offset from the thread pointer
//! (`%fs:0`), so every model is rewritten to local-exec with the program's offsets: the "TLS
//! transitions" of the x86-64 psABI that GNU ld and lld apply when they link an executable.
//!
//! A thread-local of a shared library the program loads (a dynamically linked std, a Rust
//! `dylib` such as Bevy's `dynamic_linking`) has no offset in the executable: the executable
//! imports it. Accesses to it stay as compiled and the patch imports it too (`Access::dynamic`):
//! general-dynamic and descriptors ask the dynamic loader, initial-exec reads a GOT slot the
//! loader fills with the thread-pointer offset (the library was loaded at start-up, so its block
//! is in the static TLS area). Local-exec and local-dynamic cannot reach another module's
//! thread-locals from a shared object and are refused.
//!
//! The bytes around each relocation are checked against the sequence the ABI prescribes before
//! anything is written; code that does not match is refused, never patched.

use std::collections::HashMap;

use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SymbolIndex, elf,
};

use super::Refused;
use super::elf_x86_64::{NamedIn, covering};
use crate::host::demangle;

/// Called by general- and local-dynamic sequences; the rewrites drop these calls.
pub(super) const TLS_GET_ADDR: &str = "__tls_get_addr";
/// The linker-defined start of a module's TLS block, reached through a TLS descriptor by
/// local-dynamic code compiled for descriptors (`-mtls-dialect=gnu2`). After the rewrite every
/// `DTPOFF` is an offset from the thread pointer, so this base is the thread pointer: offset 0.
pub(super) const TLS_MODULE_BASE: &str = "_TLS_MODULE_BASE_";

/// How a relocation reaches a thread-local (its "TLS model").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// `TPOFF32` (local-exec) or `DTPOFF32` (a local-dynamic variable): a 4-byte offset.
    Offset32,
    /// `TPOFF64` or `DTPOFF64`: an 8-byte offset.
    Offset64,
    /// `TLSGD`: `data16 lea x@tlsgd(%rip), %rdi; call __tls_get_addr` (through the PLT or GOT).
    GeneralDynamic,
    /// `TLSLD`: `lea x@tlsld(%rip), %rdi; call __tls_get_addr`, the module's TLS block.
    LocalDynamic,
    /// `GOTTPOFF`: `mov x@gottpoff(%rip), %reg` or `add x@gottpoff(%rip), %reg`.
    InitialExec,
    /// `GOTPC32_TLSDESC`: `lea x@tlsdesc(%rip), %reg`.
    Descriptor,
    /// `TLSDESC_CALL`: `call *x@tlscall(%rax)`.
    DescriptorCall,
    /// `DTPMOD64`, `TLSDESC`: the dynamic loader's module data, which has no local-exec form.
    Unsupported,
    /// `CODE_4_GOTTPOFF`, `CODE_6_GOTTPOFF`, `CODE_4_GOTPC32_TLSDESC`: initial-exec and
    /// descriptor accesses in APX encodings (REX2/EVEX, `-mapxf`), not rewritten yet.
    Apx,
}

/// APX forms of `GOTTPOFF` and `GOTPC32_TLSDESC` (x86-64 psABI 1.0).
const R_X86_64_CODE_4_GOTTPOFF: u32 = 44;
const R_X86_64_CODE_4_GOTPC32_TLSDESC: u32 = 45;
const R_X86_64_CODE_6_GOTTPOFF: u32 = 50;

impl Access {
    /// The access a relocation type makes, `None` for a relocation unrelated to thread-locals.
    pub fn of(r_type: u32) -> Option<Access> {
        Some(match r_type {
            elf::R_X86_64_TPOFF32 | elf::R_X86_64_DTPOFF32 => Access::Offset32,
            elf::R_X86_64_TPOFF64 | elf::R_X86_64_DTPOFF64 => Access::Offset64,
            elf::R_X86_64_TLSGD => Access::GeneralDynamic,
            elf::R_X86_64_TLSLD => Access::LocalDynamic,
            elf::R_X86_64_GOTTPOFF => Access::InitialExec,
            elf::R_X86_64_GOTPC32_TLSDESC => Access::Descriptor,
            elf::R_X86_64_TLSDESC_CALL => Access::DescriptorCall,
            elf::R_X86_64_DTPMOD64 | elf::R_X86_64_TLSDESC => Access::Unsupported,
            R_X86_64_CODE_4_GOTTPOFF
            | R_X86_64_CODE_4_GOTPC32_TLSDESC
            | R_X86_64_CODE_6_GOTTPOFF => Access::Apx,
            _ => return None,
        })
    }

    /// What to add to the target symbol's thread-pointer offset: the addend for plain offsets;
    /// nothing for the GOT-relative forms, whose addend only compensates for the pc-relative
    /// field (always -4; another value would read a different GOT slot); `None` for the parts of
    /// a sequence that only need the thread pointer.
    pub fn symbol_addend(self, addend: i64) -> Result<Option<i64>, Mismatch> {
        match self {
            Access::Offset32 | Access::Offset64 => Ok(Some(addend)),
            Access::GeneralDynamic | Access::InitialExec | Access::Descriptor => {
                if addend == -4 {
                    Ok(Some(0))
                } else {
                    Err(Mismatch("its relocation has an unusual addend"))
                }
            }
            Access::LocalDynamic | Access::DescriptorCall => Ok(None),
            Access::Unsupported => Err(UNSUPPORTED),
            Access::Apx => Err(APX),
        }
    }

    /// Whether the access can stay as compiled when its thread-local belongs to a shared library
    /// the program loads, so that ld and the dynamic loader resolve it: general-dynamic (the
    /// loader fills a module/offset GOT pair for `__tls_get_addr`), descriptors, and initial-exec
    /// (a GOT slot holding the thread-pointer offset). Local-exec and local-dynamic only reach
    /// the thread-locals of the module the code is linked into.
    pub fn dynamic(self) -> Result<(), Mismatch> {
        match self {
            Access::GeneralDynamic
            | Access::InitialExec
            | Access::Descriptor
            | Access::DescriptorCall => Ok(()),
            Access::Offset32 | Access::Offset64 | Access::LocalDynamic => Err(OTHER_MODULE),
            Access::Unsupported => Err(UNSUPPORTED),
            Access::Apx => Err(APX),
        }
    }
}

/// The TLS model a relocation type belongs to, for messages.
fn model(r_type: u32) -> &'static str {
    match r_type {
        elf::R_X86_64_TPOFF32 | elf::R_X86_64_TPOFF64 => "local-exec",
        elf::R_X86_64_TLSLD | elf::R_X86_64_DTPOFF32 | elf::R_X86_64_DTPOFF64 => "local-dynamic",
        elf::R_X86_64_TLSGD => "general-dynamic",
        elf::R_X86_64_GOTTPOFF | R_X86_64_CODE_4_GOTTPOFF | R_X86_64_CODE_6_GOTTPOFF => {
            "initial-exec"
        }
        elf::R_X86_64_GOTPC32_TLSDESC
        | R_X86_64_CODE_4_GOTPC32_TLSDESC
        | elf::R_X86_64_TLSDESC_CALL => "TLS-descriptor",
        _ => "dynamic-module",
    }
}

/// Why an access cannot be rewritten, completing "cannot patch the access to …: ".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mismatch(pub &'static str);

const OUTSIDE: Mismatch = Mismatch("relocation outside its section");
const UNSUPPORTED: Mismatch =
    Mismatch("it asks the dynamic loader for the module, which patched code cannot do");
const APX: Mismatch = Mismatch("cargo hot cannot rewrite its APX instruction encoding yet");
const OUT_OF_RANGE: Mismatch = Mismatch("thread-local offset out of range");
const NOT_GD: Mismatch = Mismatch(
    "the instructions around it are not `data16 lea x@tlsgd(%rip), %rdi; call __tls_get_addr`",
);
const NOT_LD: Mismatch =
    Mismatch("the instructions around it are not `lea x@tlsld(%rip), %rdi; call __tls_get_addr`");
const NOT_IE: Mismatch =
    Mismatch("the instruction is not a 64-bit `mov` or `add` of `x@gottpoff(%rip)`");
const NOT_DESC: Mismatch = Mismatch("the instruction is not `lea x@tlsdesc(%rip), %reg`");
const NOT_DESC_CALL: Mismatch = Mismatch("the instruction is not `call *x@tlscall(%rax)`");
const NO_CALL: Mismatch = Mismatch("its call to `__tls_get_addr` has no matching relocation");
const OVERLAP: Mismatch = Mismatch("another relocation falls inside the instructions to rewrite");
const UNKNOWN: Mismatch = Mismatch("the running program has no thread-local there");
const OTHER_MODULE: Mismatch = Mismatch(
    "it belongs to a shared library the program loads (such as a dynamically linked std), which code compiled for this model cannot reach from a patch",
);

/// `mov %fs:0, %rax`: the thread pointer.
const LOAD_TP: [u8; 9] = [0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];
/// `lea disp32(%rax), %rax`, before its displacement.
const LEA_RAX: [u8; 3] = [0x48, 0x8d, 0x80];
/// `data16 lea x@tlsgd(%rip), %rdi`, before its displacement.
const GD_LEA: [u8; 4] = [0x66, 0x48, 0x8d, 0x3d];
/// `data16 data16 rex64 call __tls_get_addr@PLT`, before its displacement.
const GD_CALL_PLT: [u8; 4] = [0x66, 0x66, 0x48, 0xe8];
/// `data16 rex64 call *__tls_get_addr@GOTPCREL(%rip)`, before its displacement (`-fno-plt`).
const GD_CALL_GOT: [u8; 4] = [0x66, 0x48, 0xff, 0x15];
/// `lea x@tlsld(%rip), %rdi`, before its displacement.
const LD_LEA: [u8; 3] = [0x48, 0x8d, 0x3d];
/// `call rel32` and `call *disp32(%rip)`.
const CALL_REL: u8 = 0xe8;
const CALL_RIP: [u8; 2] = [0xff, 0x15];
/// `call *(%rax)`, a TLS descriptor's call.
const CALL_RAX: [u8; 2] = [0xff, 0x10];
/// `xchg %ax, %ax`: a 2-byte no-op.
const NOP2: [u8; 2] = [0x66, 0x90];

/// The `__tls_get_addr` call a general- or local-dynamic sequence ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Call {
    /// Offset of the call's relocation.
    pub offset: u64,
    /// `call *__tls_get_addr@GOTPCREL(%rip)` rather than `call __tls_get_addr@PLT`.
    pub via_got: bool,
}

impl Call {
    /// Whether a relocation of this type can be the call's.
    pub fn accepts(self, r_type: u32) -> bool {
        if self.via_got {
            matches!(
                r_type,
                elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX
            )
        } else {
            matches!(r_type, elf::R_X86_64_PLT32 | elf::R_X86_64_PC32)
        }
    }
}

/// The bytes a rewrite replaces, and the call it drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Site {
    pub start: usize,
    pub end: usize,
    pub call: Option<Call>,
}

/// `len` bytes of `code` starting `before` bytes before `at`.
fn window(code: &[u8], at: usize, before: usize, len: usize) -> Option<&[u8]> {
    let start = at.checked_sub(before)?;
    code.get(start..start.checked_add(len)?)
}

/// Checks the instructions around the relocation at `offset` and returns what its rewrite
/// replaces.
pub(super) fn site(access: Access, code: &[u8], offset: u64) -> Result<Site, Mismatch> {
    let o = usize::try_from(offset).map_err(|_| OUTSIDE)?;
    let span = |before: usize, len: usize, call: Option<Call>| Site {
        start: o - before,
        end: o - before + len,
        call,
    };
    match access {
        Access::Offset32 | Access::Offset64 => {
            let len = if access == Access::Offset32 { 4 } else { 8 };
            window(code, o, 0, len).ok_or(OUTSIDE)?;
            Ok(span(0, len, None))
        }
        Access::GeneralDynamic => {
            let w = window(code, o, 4, 16).ok_or(NOT_GD)?;
            let via_got = match &w[8..12] {
                c if c == GD_CALL_PLT => false,
                c if c == GD_CALL_GOT => true,
                _ => return Err(NOT_GD),
            };
            if w[..4] != GD_LEA {
                return Err(NOT_GD);
            }
            let call = Call {
                offset: offset + 8,
                via_got,
            };
            Ok(span(4, 16, Some(call)))
        }
        Access::LocalDynamic => {
            // The 7-byte `lea`, then `call rel32` (5 bytes) or `call *disp32(%rip)` (6).
            let w = window(code, o, 3, 9).ok_or(NOT_LD)?;
            if w[..3] != LD_LEA {
                return Err(NOT_LD);
            }
            let (len, via_got) = if w[7] == CALL_REL {
                (12, false)
            } else if w[7..9] == CALL_RIP {
                (13, true)
            } else {
                return Err(NOT_LD);
            };
            window(code, o, 3, len).ok_or(NOT_LD)?;
            let call = Call {
                offset: o as u64 + len as u64 - 7,
                via_got,
            };
            Ok(span(3, len, Some(call)))
        }
        Access::InitialExec => {
            let w = window(code, o, 3, 7).ok_or(NOT_IE)?;
            let (rex, op, modrm) = (w[0], w[1], w[2]);
            let ok = matches!(rex, 0x48 | 0x4c) && matches!(op, 0x8b | 0x03) && rip(modrm);
            if !ok {
                return Err(NOT_IE);
            }
            Ok(span(3, 7, None))
        }
        Access::Descriptor => {
            let w = window(code, o, 3, 7).ok_or(NOT_DESC)?;
            if w[0] & 0xfb != 0x48 || w[1] != 0x8d || !rip(w[2]) {
                return Err(NOT_DESC);
            }
            Ok(span(3, 7, None))
        }
        Access::DescriptorCall => {
            if window(code, o, 0, 2) != Some(&CALL_RAX[..]) {
                return Err(NOT_DESC_CALL);
            }
            Ok(span(0, 2, None))
        }
        Access::Unsupported => Err(UNSUPPORTED),
        Access::Apx => Err(APX),
    }
}

/// A ModRM byte addressing `disp32(%rip)`.
fn rip(modrm: u8) -> bool {
    modrm & 0xc7 == 0x05
}

fn imm32(tpoff: i64) -> Result<[u8; 4], Mismatch> {
    i32::try_from(tpoff)
        .map(i32::to_le_bytes)
        .map_err(|_| OUT_OF_RANGE)
}

/// Rewrites the access whose relocation is at `offset` to local-exec with thread-pointer offset
/// `tpoff` (unused by the parts of a sequence that only need the thread pointer). Nothing is
/// written unless the whole rewrite can be made.
pub(super) fn relax(
    access: Access,
    code: &mut [u8],
    offset: u64,
    tpoff: i64,
) -> Result<(), Mismatch> {
    let site = site(access, code, offset)?;
    let span = &mut code[site.start..site.end];
    match access {
        Access::Offset32 => span.copy_from_slice(&imm32(tpoff)?),
        Access::Offset64 => span.copy_from_slice(&tpoff.to_le_bytes()),
        Access::GeneralDynamic => {
            // `mov %fs:0, %rax; lea tpoff(%rax), %rax`: the variable's address, as the call
            // returned it.
            let imm = imm32(tpoff)?;
            span[..9].copy_from_slice(&LOAD_TP);
            span[9..12].copy_from_slice(&LEA_RAX);
            span[12..].copy_from_slice(&imm);
        }
        Access::LocalDynamic => {
            // `mov %fs:0, %rax` behind `data16` prefixes: the block's base is the thread
            // pointer, and each `DTPOFF` becomes the variable's thread-pointer offset.
            let pad = span.len() - LOAD_TP.len();
            span[..pad].fill(0x66);
            span[pad..].copy_from_slice(&LOAD_TP);
        }
        Access::InitialExec => {
            let imm = imm32(tpoff)?;
            let head = initial_exec_to_local(span[0], span[1], span[2]);
            span[..3].copy_from_slice(&head);
            span[3..].copy_from_slice(&imm);
        }
        Access::Descriptor => {
            // `mov $tpoff, %reg`: what the descriptor's function would have returned.
            let imm = imm32(tpoff)?;
            let head = [rex_r_to_b(span[0]), 0xc7, 0xc0 | ((span[2] >> 3) & 7)];
            span[..3].copy_from_slice(&head);
            span[3..].copy_from_slice(&imm);
        }
        Access::DescriptorCall => span.copy_from_slice(&NOP2),
        Access::Unsupported => return Err(UNSUPPORTED),
        Access::Apx => return Err(APX),
    }
    Ok(())
}

/// REX.W with the ModRM.reg extension (REX.R) moved to the ModRM.rm one (REX.B).
fn rex_r_to_b(rex: u8) -> u8 {
    0x48 | ((rex >> 2) & 1)
}

/// The opcode bytes replacing `mov|add x@gottpoff(%rip), %reg` (checked by `site`), before the
/// 32-bit offset: `mov $tpoff, %reg`, `lea tpoff(%reg), %reg`, or for %rsp and %r12, whose `lea`
/// would need a SIB byte, `add $tpoff, %reg`.
fn initial_exec_to_local(rex: u8, op: u8, modrm: u8) -> [u8; 3] {
    let reg = (modrm >> 3) & 7;
    match op {
        0x8b => [rex_r_to_b(rex), 0xc7, 0xc0 | reg],
        _ if reg == 4 => [rex_r_to_b(rex), 0x81, 0xc0 | reg],
        _ => [rex | ((rex >> 2) & 1), 0x8d, 0x80 | (reg << 3) | reg],
    }
}

/// One relocation of a section, as `check_section` needs it.
pub(super) struct Reloc<'a> {
    pub offset: u64,
    pub r_type: u32,
    /// The target symbol's name ("" for a section symbol).
    pub target: &'a str,
}

/// Checks a section's thread-local accesses before any is rewritten: each general- or
/// local-dynamic sequence ends with its `__tls_get_addr` call, and no two rewrites, or a rewrite
/// and another relocation, touch the same bytes. Returns the indexes of the calls' relocations,
/// each with the index of the access whose sequence it ends (a rewrite drops the call, an access
/// kept dynamic keeps it); on failure, the index of the offending relocation and why.
pub(super) fn check_section(
    code: &[u8],
    relocs: &[Reloc],
) -> Result<HashMap<usize, usize>, (usize, Mismatch)> {
    let mut calls = HashMap::new();
    if !relocs.iter().any(|r| Access::of(r.r_type).is_some()) {
        return Ok(calls);
    }
    // Bytes each relocation touches: a rewrite's instructions, or a relocation's first byte.
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for (i, r) in relocs.iter().enumerate() {
        let Some(access) = Access::of(r.r_type) else {
            continue;
        };
        let site = site(access, code, r.offset).map_err(|m| (i, m))?;
        if let Some(call) = site.call {
            let found = relocs.iter().position(|c| {
                c.offset == call.offset && c.target == TLS_GET_ADDR && call.accepts(c.r_type)
            });
            calls.insert(found.ok_or((i, NO_CALL))?, i);
        }
        spans.push((site.start, site.end, i));
    }
    for (i, r) in relocs.iter().enumerate() {
        let Ok(at) = usize::try_from(r.offset) else {
            continue; // refused where it is applied
        };
        if Access::of(r.r_type).is_none() && !calls.contains_key(&i) {
            spans.push((at, at.saturating_add(1), i));
        }
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        let ((_, end, first), (start, _, second)) = (pair[0], pair[1]);
        if start < end {
            // Name the thread-local access, whichever of the two it is.
            let tls = if Access::of(relocs[first].r_type).is_some() {
                first
            } else {
                second
            };
            return Err((tls, OVERLAP));
        }
    }
    Ok(calls)
}

// --- objects ------------------------------------------------------------------------------

/// The running program's thread-pointer offsets of the thread-locals one object reaches.
pub(super) struct TlsOffsets<'a> {
    /// By input symbol: thread-locals defined in, or imported by, the object.
    pub by_symbol: &'a HashMap<SymbolIndex, i64>,
    pub named_in: &'a NamedIn,
}

impl TlsOffsets<'_> {
    /// The thread-pointer offset the rewrite of `site` writes: of `target` (+ `addend` for
    /// plain offsets), or 0 for the parts of a sequence that only need the thread pointer.
    fn value_for(
        &self,
        site: &TlsSite,
        tsym: SymbolIndex,
        target: &object::Symbol,
        addend: i64,
    ) -> Result<i64, Mismatch> {
        let Some(extra) = site.access.symbol_addend(addend)? else {
            return Ok(0);
        };
        if site.access == Access::Descriptor && target.name() == Ok(TLS_MODULE_BASE) {
            return Ok(extra);
        }
        let (base, delta) = match self.by_symbol.get(&tsym) {
            Some(v) => (*v, extra),
            None => {
                // `section + addend` in a TLS section: the named thread-local it falls in.
                let (named, delta) = covering(self.named_in, target, extra, 0).ok_or(UNKNOWN)?;
                (*self.by_symbol.get(&named).ok_or(UNKNOWN)?, delta)
            }
        };
        base.checked_add(delta).ok_or(OUT_OF_RANGE)
    }

    /// Rewrites the code of one thread-local relocation in `section`, the patch's copy of the
    /// input section it belongs to.
    pub fn rewrite(
        &self,
        section: &mut object::write::Section,
        site: &TlsSite,
        tsym: SymbolIndex,
        target: &object::Symbol,
        addend: i64,
    ) -> Result<(), Refused> {
        let value = self
            .value_for(site, tsym, target, addend)
            .map_err(|why| site.refusal(target, why))?;
        if section.is_bss() {
            // No bytes to patch (and `data_mut` must not be called).
            return Err(site.refusal(target, OUTSIDE));
        }
        relax(site.access, section.data_mut(), site.offset, value)
            .map_err(|why| site.refusal(target, why))
    }
}

/// A thread-local relocation of an input section, for messages.
pub(super) struct TlsSite<'a> {
    pub access: Access,
    pub r_type: u32,
    pub offset: u64,
    pub section: &'a str,
}

impl TlsSite<'_> {
    /// Why the patch is refused, in the user's terms (relocation details with `CARGO_HOT_DEBUG`).
    pub fn refusal(&self, target: &object::Symbol, why: Mismatch) -> Refused {
        let name = match target.name() {
            Ok(n) if !n.is_empty() => {
                format!("thread-local `{}`", crate::host::thread_local_name(n))
            }
            _ => "a thread-local".to_string(),
        };
        let detail = if crate::ui::debugging() {
            format!(
                " [ELF relocation type {} at {}+{:#x}]",
                self.r_type, self.section, self.offset
            )
        } else {
            String::new()
        };
        Refused(format!(
            "cannot patch the access to {name} in {} ({} model): {}{detail}; restart",
            code_name(self.section),
            model(self.r_type),
            why.0
        ))
    }
}

/// The function a code section holds, as users name it (rustc emits one section per function).
pub(super) fn code_name(section: &str) -> String {
    let symbol = section
        .strip_prefix(".text.")
        .map(|s| s.strip_prefix("unlikely.").unwrap_or(s))
        .filter(|s| !s.is_empty());
    match symbol {
        Some(s) => format!("`{}`", demangle(s)),
        None => format!("section `{section}`"),
    }
}

/// `check_section` on an input section; returns the indexes of the `__tls_get_addr` calls of
/// the sequences, each with the index of the access it belongs to.
pub(super) fn check_tls_sequences(
    file: &object::File,
    section: &object::Section,
    relocs: &[(u64, object::Relocation)],
) -> Result<HashMap<usize, usize>, Refused> {
    let target = |rel: &object::Relocation| match rel.target() {
        RelocationTarget::Symbol(i) => file.symbol_by_index(i).ok(),
        _ => None,
    };
    let r_type = |rel: &object::Relocation| match rel.flags() {
        RelocationFlags::Elf { r_type } => r_type,
        _ => elf::R_X86_64_NONE,
    };
    let list: Vec<Reloc> = relocs
        .iter()
        .map(|(offset, rel)| Reloc {
            offset: *offset,
            r_type: r_type(rel),
            target: target(rel).and_then(|t| t.name().ok()).unwrap_or(""),
        })
        .collect();
    let code = section.data().unwrap_or(&[]);
    check_section(code, &list).map_err(|(i, why)| {
        let (offset, rel) = &relocs[i];
        let site = TlsSite {
            access: Access::of(list[i].r_type).unwrap_or(Access::Unsupported),
            r_type: list[i].r_type,
            offset: *offset,
            section: section.name().unwrap_or("?"),
        };
        match target(rel) {
            Some(t) => site.refusal(&t, why),
            None => Refused(format!(
                "cannot patch a thread-local access in {}: {}; restart",
                code_name(site.section),
                why.0
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `before`, then a 4-byte field at the returned offset, then `after`.
    fn code(before: &[u8], after: &[u8]) -> (Vec<u8>, u64) {
        let mut c = vec![0x90];
        c.extend(before);
        let at = c.len() as u64;
        c.extend([0xaa; 4]);
        c.extend(after);
        c.push(0xc3);
        (c, at)
    }

    fn relaxed(access: Access, before: &[u8], after: &[u8], tpoff: i64) -> Vec<u8> {
        let (mut c, at) = code(before, after);
        relax(access, &mut c, at, tpoff).unwrap();
        assert_eq!((c[0], *c.last().unwrap()), (0x90, 0xc3), "outside the site");
        c[1..c.len() - 1].to_vec()
    }

    const TPOFF: i64 = -0x38;
    const T: [u8; 4] = (-0x38i32).to_le_bytes();

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn offsets_are_written() {
        assert_eq!(relaxed(Access::Offset32, &[0x8b, 0x80], &[], TPOFF)[2..], T);
        let (mut c, at) = code(&[], &[0xbb; 4]);
        relax(Access::Offset64, &mut c, at, -2).unwrap();
        assert_eq!(c[1..9], (-2i64).to_le_bytes());
    }

    #[test]
    fn general_dynamic_through_the_plt_becomes_local_exec() {
        let out = relaxed(
            Access::GeneralDynamic,
            &GD_LEA,
            &[0x66, 0x66, 0x48, 0xe8, 1, 2, 3, 4],
            TPOFF,
        );
        // mov %fs:0,%rax; lea -0x38(%rax),%rax
        assert_eq!(out, cat(&[&LOAD_TP, &[0x48, 0x8d, 0x80], &T]));
    }

    #[test]
    fn general_dynamic_through_the_got_becomes_local_exec() {
        let (c, at) = code(&GD_LEA, &[0x66, 0x48, 0xff, 0x15, 1, 2, 3, 4]);
        let s = site(Access::GeneralDynamic, &c, at).unwrap();
        assert_eq!(
            s.call,
            Some(Call {
                offset: at + 8,
                via_got: true
            })
        );
        assert!(s.call.unwrap().accepts(elf::R_X86_64_GOTPCRELX));
        assert!(!s.call.unwrap().accepts(elf::R_X86_64_PLT32));
        let out = relaxed(
            Access::GeneralDynamic,
            &GD_LEA,
            &[0x66, 0x48, 0xff, 0x15, 1, 2, 3, 4],
            TPOFF,
        );
        assert_eq!(out, cat(&[&LOAD_TP, &[0x48, 0x8d, 0x80], &T]));
    }

    #[test]
    fn local_dynamic_becomes_the_thread_pointer() {
        let plt = relaxed(Access::LocalDynamic, &LD_LEA, &[0xe8, 1, 2, 3, 4], 0);
        assert_eq!(plt, cat(&[&[0x66; 3], &LOAD_TP]));
        let got = relaxed(Access::LocalDynamic, &LD_LEA, &[0xff, 0x15, 1, 2, 3, 4], 0);
        assert_eq!(got, cat(&[&[0x66; 4], &LOAD_TP]));
        let (c, at) = code(&LD_LEA, &[0xff, 0x15, 1, 2, 3, 4]);
        let call = site(Access::LocalDynamic, &c, at).unwrap().call.unwrap();
        assert_eq!((call.offset, call.via_got), (at + 6, true));
        let (c, at) = code(&LD_LEA, &[0xe8, 1, 2, 3, 4]);
        let call = site(Access::LocalDynamic, &c, at).unwrap().call.unwrap();
        assert_eq!((call.offset, call.via_got), (at + 5, false));
    }

    #[test]
    fn initial_exec_becomes_immediates() {
        let ie = |head: [u8; 3]| relaxed(Access::InitialExec, &head, &[], TPOFF)[..3].to_vec();
        // mov x@gottpoff(%rip), %rax -> mov $x, %rax
        assert_eq!(ie([0x48, 0x8b, 0x05]), [0x48, 0xc7, 0xc0]);
        // mov x@gottpoff(%rip), %r9 -> mov $x, %r9
        assert_eq!(ie([0x4c, 0x8b, 0x0d]), [0x49, 0xc7, 0xc1]);
        // add x@gottpoff(%rip), %rcx -> lea x(%rcx), %rcx
        assert_eq!(ie([0x48, 0x03, 0x0d]), [0x48, 0x8d, 0x89]);
        // add x@gottpoff(%rip), %r13 -> lea x(%r13), %r13
        assert_eq!(ie([0x4c, 0x03, 0x2d]), [0x4d, 0x8d, 0xad]);
        // add x@gottpoff(%rip), %rsp / %r12 -> add $x, %rsp / %r12
        assert_eq!(ie([0x48, 0x03, 0x25]), [0x48, 0x81, 0xc4]);
        assert_eq!(ie([0x4c, 0x03, 0x25]), [0x49, 0x81, 0xc4]);
        assert_eq!(
            relaxed(Access::InitialExec, &[0x48, 0x8b, 0x05], &[], TPOFF)[3..],
            T
        );
    }

    #[test]
    fn descriptors_become_an_immediate_and_a_nop() {
        let out = relaxed(Access::Descriptor, &[0x4c, 0x8d, 0x1d], &[], TPOFF);
        // lea x@tlsdesc(%rip), %r11 -> mov $x, %r11
        assert_eq!(out, cat(&[&[0x49, 0xc7, 0xc3], &T]));
        let mut c = vec![0x90, 0xff, 0x10, 0xc3];
        relax(Access::DescriptorCall, &mut c, 1, 0).unwrap();
        assert_eq!(c, [0x90, 0x66, 0x90, 0xc3]);
    }

    #[test]
    fn unexpected_bytes_are_refused_untouched() {
        let cases: [(Access, &[u8], &[u8]); 8] = [
            // The GD lea without its data16 prefix, and followed by a plain call.
            (
                Access::GeneralDynamic,
                &[0x90, 0x48, 0x8d, 0x3d],
                &[0x66, 0x66, 0x48, 0xe8],
            ),
            (Access::GeneralDynamic, &GD_LEA, &[0x90, 0x90, 0x90, 0xe8]),
            // The LD lea loading another register, and followed by no call.
            (
                Access::LocalDynamic,
                &[0x48, 0x8d, 0x35],
                &[0xe8, 1, 2, 3, 4],
            ),
            (Access::LocalDynamic, &LD_LEA, &[0x90, 1, 2, 3, 4, 5]),
            // 32-bit mov, sub, and a mov that is not rip-relative.
            (Access::InitialExec, &[0x40, 0x8b, 0x05], &[]),
            (Access::InitialExec, &[0x48, 0x2b, 0x05], &[]),
            (Access::InitialExec, &[0x48, 0x8b, 0x45], &[]),
            (Access::Descriptor, &[0x48, 0x8b, 0x05], &[]),
        ];
        for (access, before, after) in cases {
            let (mut c, at) = code(before, after);
            let orig = c.clone();
            assert!(
                relax(access, &mut c, at, TPOFF).is_err(),
                "{access:?} {before:x?}"
            );
            assert_eq!(c, orig);
        }
        let mut c = vec![0xff, 0x15];
        assert_eq!(
            relax(Access::DescriptorCall, &mut c, 0, 0),
            Err(NOT_DESC_CALL)
        );
    }

    #[test]
    fn sites_at_the_edges_of_a_section_are_refused() {
        let (c, at) = code(&GD_LEA, &[0x66, 0x66, 0x48, 0xe8, 1, 2, 3, 4]);
        // Truncated before the call's displacement ends.
        assert_eq!(
            site(Access::GeneralDynamic, &c[..at as usize + 10], at),
            Err(NOT_GD)
        );
        assert_eq!(site(Access::InitialExec, &c, 2), Err(NOT_IE));
        assert_eq!(site(Access::Offset32, &c, u64::MAX), Err(OUTSIDE));
        assert_eq!(site(Access::Offset64, &c, c.len() as u64 - 4), Err(OUTSIDE));
        assert_eq!(site(Access::LocalDynamic, &c, 1), Err(NOT_LD));
    }

    #[test]
    fn offsets_beyond_32_bits_are_refused() {
        let (mut c, at) = code(&[0x48, 0x8b, 0x05], &[]);
        let r = relax(Access::InitialExec, &mut c, at, i64::from(i32::MIN) - 1);
        assert_eq!(r, Err(OUT_OF_RANGE));
        assert_eq!(c[1..4], [0x48, 0x8b, 0x05]);
    }

    #[test]
    fn addends_of_got_forms_must_be_the_pc_adjustment() {
        assert_eq!(Access::InitialExec.symbol_addend(-4), Ok(Some(0)));
        assert!(Access::GeneralDynamic.symbol_addend(0).is_err());
        assert_eq!(Access::Offset32.symbol_addend(8), Ok(Some(8)));
        assert_eq!(Access::LocalDynamic.symbol_addend(-4), Ok(None));
        assert!(Access::Unsupported.symbol_addend(0).is_err());
        assert_eq!(Access::of(R_X86_64_CODE_4_GOTTPOFF), Some(Access::Apx));
        assert_eq!(Access::Apx.symbol_addend(-4), Err(APX));
    }

    #[test]
    fn another_module_s_thread_locals_keep_the_dynamic_models_only() {
        for r_type in [
            elf::R_X86_64_TLSGD,
            elf::R_X86_64_GOTTPOFF,
            elf::R_X86_64_GOTPC32_TLSDESC,
            elf::R_X86_64_TLSDESC_CALL,
        ] {
            assert_eq!(Access::of(r_type).unwrap().dynamic(), Ok(()), "{r_type}");
        }
        for r_type in [
            elf::R_X86_64_TPOFF32,
            elf::R_X86_64_TPOFF64,
            elf::R_X86_64_TLSLD,
            elf::R_X86_64_DTPOFF32,
            elf::R_X86_64_DTPOFF64,
        ] {
            assert_eq!(
                Access::of(r_type).unwrap().dynamic(),
                Err(OTHER_MODULE),
                "{r_type}"
            );
        }
        assert_eq!(Access::Unsupported.dynamic(), Err(UNSUPPORTED));
        assert_eq!(Access::Apx.dynamic(), Err(APX));
    }

    fn r(offset: u64, r_type: u32, target: &str) -> Reloc<'_> {
        Reloc {
            offset,
            r_type,
            target,
        }
    }

    #[test]
    fn sequences_are_checked_with_their_calls() {
        let (c, at) = code(&GD_LEA, &[0x66, 0x66, 0x48, 0xe8, 0, 0, 0, 0]);
        let gd = r(at, elf::R_X86_64_TLSGD, "x");
        let call = r(at + 8, elf::R_X86_64_PLT32, TLS_GET_ADDR);
        assert_eq!(check_section(&c, &[gd, call]), Ok(HashMap::from([(1, 0)])));
        // Each call is paired with its own sequence's access, whatever the order.
        let twice = [c.clone(), c.clone()].concat();
        let n = c.len() as u64;
        let relocs = [
            r(n + at + 8, elf::R_X86_64_PLT32, TLS_GET_ADDR),
            r(at, elf::R_X86_64_TLSGD, "x"),
            r(n + at, elf::R_X86_64_TLSGD, "y"),
            r(at + 8, elf::R_X86_64_PLT32, TLS_GET_ADDR),
        ];
        assert_eq!(
            check_section(&twice, &relocs),
            Ok(HashMap::from([(3, 1), (0, 2)]))
        );
        // No call relocation, one of the wrong kind, or to another function.
        let gd = || r(at, elf::R_X86_64_TLSGD, "x");
        assert_eq!(check_section(&c, &[gd()]), Err((0, NO_CALL)));
        let got = r(at + 8, elf::R_X86_64_GOTPCRELX, TLS_GET_ADDR);
        assert_eq!(check_section(&c, &[gd(), got]), Err((0, NO_CALL)));
        let other = r(at + 8, elf::R_X86_64_PLT32, "memcpy");
        assert_eq!(check_section(&c, &[gd(), other]), Err((0, NO_CALL)));
    }

    #[test]
    fn relocations_inside_a_rewrite_are_refused() {
        let (c, at) = code(&GD_LEA, &[0x66, 0x66, 0x48, 0xe8, 0, 0, 0, 0]);
        let relocs = [
            r(at, elf::R_X86_64_TLSGD, "x"),
            r(at + 8, elf::R_X86_64_PLT32, TLS_GET_ADDR),
            r(at + 4, elf::R_X86_64_PC32, "y"),
        ];
        assert_eq!(check_section(&c, &relocs), Err((0, OVERLAP)));
        // Two offsets of 4 bytes side by side are fine.
        let c = [0u8; 8];
        let relocs = [
            r(0, elf::R_X86_64_TPOFF32, "x"),
            r(4, elf::R_X86_64_TPOFF32, "x"),
        ];
        assert_eq!(check_section(&c, &relocs), Ok(HashMap::new()));
        let relocs = [
            r(0, elf::R_X86_64_TPOFF64, "x"),
            r(4, elf::R_X86_64_TPOFF32, "x"),
        ];
        assert_eq!(check_section(&c, &relocs), Err((0, OVERLAP)));
    }
}
