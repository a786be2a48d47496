//! The jump table: one [`Slot`] per hot function, the link-time registry of [`Entry`]s, and
//! [`apply`], which rebinds slots.
//!
//! A call through a hot function is `Slot::get` (one `Acquire` load, a plain `mov` on x86_64),
//! a null test, and either the function's own body or one indirect call. Nothing locks on that
//! path; only `apply` takes a lock, to serialize patches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::protocol::Refusal;

/// Where a hot function's calls go. Null: run the function's own body.
#[repr(transparent)]
#[derive(Debug)]
pub struct Slot(AtomicPtr<()>);

impl Slot {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Slot(AtomicPtr::new(std::ptr::null_mut()))
    }
    #[inline(always)]
    pub fn get(&self) -> *const () {
        self.0.load(Ordering::Acquire)
    }
    fn set(&self, p: *const ()) {
        self.0.store(p as *mut (), Ordering::Release);
    }
}

pub use crate::protocol::{KIND_ASYNC, KIND_SYNC};

/// A hot function as the linker sees it: one per `#[hot]` fn, in the `hot_runtime_fns` section.
///
/// The layout is fixed (`repr(C)`) because `cargo hot` reads `fingerprint` (offset 0) and `kind`
/// (offset 8) straight from the host binary and from patch objects.
#[repr(C)]
pub struct Entry {
    pub fingerprint: u64,
    pub kind: u32,
    pub line: u32,
    pub slot: &'static Slot,
    pub name: &'static str,
    pub file: &'static str,
    /// Links the runtime's loader into every program with a hot function (see `loader::ANCHOR`).
    pub anchor: &'static u8,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Entry {
    pub const fn new(
        fingerprint: u64,
        kind: u32,
        slot: &'static Slot,
        name: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        Entry {
            fingerprint,
            kind,
            line,
            slot,
            name,
            file,
            anchor: &crate::loader::ANCHOR,
        }
    }
    /// `module::path::fn_name` (methods show their module, not their type).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// Source location of the function.
    pub fn location(&self) -> (&'static str, u32) {
        (self.file, self.line)
    }
    /// Hash of the normalized signature and of the argument and return layouts.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    /// Identity of this function for [`apply`].
    pub fn id(&'static self) -> FnId {
        FnId(self as *const Entry as usize)
    }
}

/// Mixes argument/return layouts into the signature hash (FNV-1a, evaluated at compile time).
pub const fn fingerprint(signature_hash: u64, layouts: &[std::alloc::Layout]) -> u64 {
    let mut h = signature_hash;
    let mut i = 0;
    while i < layouts.len() {
        h = mix(h, layouts[i].size() as u64);
        h = mix(h, layouts[i].align() as u64);
        i += 1;
    }
    h
}

const fn mix(mut h: u64, v: u64) -> u64 {
    let mut i = 0;
    while i < 8 {
        h ^= (v >> (i * 8)) & 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// A list of types, `L<A, L<B, ()>>`, whose layouts [`LayoutList::HASH`] hashes.
pub struct L<H, T>(std::marker::PhantomData<(fn() -> H, T)>);

/// Layout hash of a type list, evaluated at compile time.
pub trait LayoutList {
    const HASH: u64;
}
impl LayoutList for () {
    const HASH: u64 = 0xcbf2_9ce4_8422_2325;
}
impl<H, T: LayoutList> LayoutList for L<H, T> {
    const HASH: u64 = mix(
        mix(T::HASH, std::mem::size_of::<H>() as u64),
        std::mem::align_of::<H>() as u64,
    );
}

// Keeps `__start_`/`__stop_hot_runtime_fns` defined even in a program without hot functions,
// and pulls this object file into every link that uses the registry.
static SENTINEL_SLOT: Slot = Slot::new();
#[used]
// `protocol::REGISTRY_SECTION` (an attribute needs the literal).
#[unsafe(link_section = "hot_runtime_fns")]
static SENTINEL: Entry = Entry::new(0, u32::MAX, &SENTINEL_SLOT, "", "", 0);

#[allow(improper_ctypes)] // never called: only the addresses are used
unsafe extern "C" {
    #[link_name = "__start_hot_runtime_fns"]
    static START: Entry;
    #[link_name = "__stop_hot_runtime_fns"]
    static STOP: Entry;
}

/// One compiled copy of a hot fn that dispatches per instantiation (a generic fn, a method): each
/// copy reads its own slot, so `foo::<u32>` and `foo::<String>` rebind on their own. Written by
/// `instance_slot!` (three pointers in `protocol::INSTANCE_SECTION`), never by Rust code, except
/// for the sentinel below.
#[repr(C)]
#[derive(Debug)]
pub struct Instance {
    /// The hot fn's registry entry (shared by all its instantiations).
    pub entry: *const Entry,
    /// This copy's slot.
    pub slot: *const Slot,
    /// An address inside this copy's code (cargo hot names the instantiation by it).
    pub code: *const u8,
    /// The layout hash of this instantiation's argument and return types (`LayoutList::HASH`).
    pub layouts: u64,
}

// SAFETY: the pointers are to statics and code, which never move; the slot is atomic.
unsafe impl Sync for Instance {}

impl Instance {
    fn entry(&self) -> &'static Entry {
        // SAFETY: written by the linker from `sym __HOT_ENTRY`; checked non-null by `instance_at`.
        unsafe { &*self.entry }
    }
    /// Identity of this copy for [`apply`] (rebinds this copy alone).
    pub fn id(&'static self) -> FnId {
        FnId(self as *const Instance as usize)
    }
    /// An address inside this copy's code.
    pub fn code(&self) -> *const u8 {
        self.code
    }
    /// The fingerprint a new copy must match: the fn's signature and this instantiation's layouts.
    pub fn fingerprint(&self) -> u64 {
        mix(self.entry().fingerprint, self.layouts)
    }
    /// This copy's slot.
    pub fn slot(&self) -> &'static Slot {
        // SAFETY: a label in the copy's own `.bss`, written by the linker.
        unsafe { &*self.slot }
    }
}

#[used]
// `protocol::INSTANCE_SECTION`: keeps its `__start_`/`__stop_` defined in programs without one.
#[unsafe(link_section = "hot_runtime_instances")]
static INSTANCE_SENTINEL: Instance = Instance {
    entry: std::ptr::null(),
    slot: std::ptr::null(),
    code: std::ptr::null(),
    layouts: 0,
};

#[allow(improper_ctypes)] // never called: only the addresses are used
unsafe extern "C" {
    #[link_name = "__start_hot_runtime_instances"]
    static INSTANCES_START: Instance;
    #[link_name = "__stop_hot_runtime_instances"]
    static INSTANCES_STOP: Instance;
}

/// The records a link section holds, between the linker's `__start_`/`__stop_` symbols.
///
/// # Safety
/// Every input section of that name must hold only `T`s, whose size is a multiple of their
/// alignment, so that the linker lays them out contiguously.
unsafe fn linker_section<T>(start: *const T, stop: *const T) -> &'static [T] {
    let n = (stop as usize - start as usize) / std::mem::size_of::<T>();
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(start, n) }
}

/// Every per-instantiation copy of a hot fn in the program (the sentinel included).
fn all_instances() -> &'static [Instance] {
    // SAFETY: only `instance_slot!` and the sentinel write that section, 32-byte records.
    unsafe { linker_section(&raw const INSTANCES_START, &raw const INSTANCES_STOP) }
}

/// The instance record at `addr`, if there is one.
pub(crate) fn instance_at(addr: usize) -> Option<&'static Instance> {
    let all = all_instances();
    let start = all.as_ptr() as usize;
    let size = std::mem::size_of::<Instance>();
    if addr < start || (addr - start) % size != 0 {
        return None;
    }
    all.get((addr - start) / size)
        .filter(|i| !i.entry.is_null())
}

/// The compiled copies of a sync hot fn: one per instantiation of a generic fn (more when one
/// instantiation was compiled into several codegen units).
pub fn instances_of(entry: &'static Entry) -> impl Iterator<Item = &'static Instance> {
    all_instances()
        .iter()
        .filter(move |i| std::ptr::eq(i.entry, entry))
}

/// Number of per-instantiation copies of hot fns in the program.
pub fn instance_count() -> usize {
    all_instances()
        .iter()
        .filter(|i| !i.entry.is_null())
        .count()
}

/// What a rebind of `id` changes: the registry entry that vouches for it and the slots to set.
/// `id` is an instance record (one compiled copy of a sync fn: that copy's slot) or a registry
/// entry (the fn's own slot, which an `async fn` reads, and the slots of all its copies).
fn target_of(id: FnId) -> Option<(&'static Entry, u64, Vec<&'static Slot>)> {
    if let Some(i) = instance_at(id.0) {
        return Some((i.entry(), i.fingerprint(), vec![i.slot()]));
    }
    let e = entry_at(id.0)?;
    let copies = instances_of(e).map(Instance::slot);
    Some((
        e,
        e.fingerprint,
        std::iter::once(e.slot).chain(copies).collect(),
    ))
}

/// Every hot function linked into the program, whether or not it was ever called.
pub fn registry() -> impl Iterator<Item = &'static Entry> {
    all_entries().iter().filter(|e| e.kind != u32::MAX)
}

fn all_entries() -> &'static [Entry] {
    // SAFETY: every `hot_runtime_fns` input section holds one `Entry`.
    unsafe { linker_section(&raw const START, &raw const STOP) }
}

/// Identity of a hot function: the address of its registry entry in the running program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FnId(pub usize);

/// Finds a hot function by its registry name (`module::path::fn_name`).
pub fn find(name: &str) -> Option<&'static Entry> {
    registry().find(|e| e.name == name)
}

pub(crate) fn entry_at(addr: usize) -> Option<&'static Entry> {
    all_entries()
        .iter()
        .find(|e| std::ptr::from_ref::<Entry>(e) as usize == addr && e.kind != u32::MAX)
}

/// One function of a patch.
#[derive(Clone, Copy, Debug)]
pub struct Rebind {
    /// The host function to rebind.
    pub id: FnId,
    /// Fingerprint of the new code; must equal the host's.
    pub fingerprint: u64,
    /// `KIND_SYNC` or `KIND_ASYNC`; must equal the host's.
    pub kind: u32,
    /// The new code: a newer copy of the function (sync) or its entry closure (async).
    pub target: *const (),
    /// The new copy's own slot, which later patches must also redirect (so code running in this
    /// patch reaches the newest version too). `None` when the new code has no slot of its own.
    pub own_slot: Option<&'static Slot>,
    /// The registry entry the new copy's body names (`#[hot(rewind)]` frames are keyed by it).
    pub own_entry: Option<&'static Entry>,
}

/// What [`apply`] did with each function.
#[derive(Clone, Debug, Default)]
pub struct PatchReport {
    /// Value of [`generation`](crate::generation) after this patch.
    pub generation: u64,
    /// Registry names of the functions rebound.
    pub rebound: Vec<&'static str>,
    /// Functions refused, with the reason; their old code keeps running.
    pub refused: Vec<(FnId, Refusal)>,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

struct State {
    /// Slots of older patch copies of each function, all redirected on every rebind.
    copies: HashMap<FnId, Vec<&'static Slot>>,
    /// Registry entries named by the bodies of older patch copies of each function.
    copy_entries: HashMap<FnId, Vec<usize>>,
    callbacks: Vec<Callback>,
}

type Callback = Arc<dyn Fn(&PatchReport) + Send + Sync>;

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        Mutex::new(State {
            copies: HashMap::new(),
            copy_entries: HashMap::new(),
            callbacks: Vec::new(),
        })
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    // A panicking `on_patch` callback must not disable patching for the rest of the run.
    state().lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn on_patch(f: Box<dyn Fn(&PatchReport) + Send + Sync>) {
    lock().callbacks.push(Arc::from(f));
}

/// Rebinds each function of `rebinds` or refuses it; returns what happened to each.
///
/// Each rebind is a single atomic store per slot: a call already running finishes on the code
/// it started with, the next call runs the new code.
///
/// # Safety
/// Each `target` must be the address of code with exactly the signature the host function has
/// (same ABI, argument and return types): for `KIND_SYNC` a copy of the same function, for
/// `KIND_ASYNC` an entry closure of the same function. It must never be the host function's
/// own dispatcher (that would loop) and must stay mapped forever.
pub unsafe fn apply(rebinds: &[Rebind]) -> PatchReport {
    let mut st = lock();
    let mut report = PatchReport::default();
    let mut any = false;
    // The copies whose code this patch replaces: running `#[hot(rewind)]` frames of them rewind.
    let mut replaced: Vec<*const Entry> = Vec::new();
    for r in rebinds {
        let Some((entry, fingerprint, slots)) = target_of(r.id) else {
            report.refused.push((r.id, Refusal::UnknownFunction));
            continue;
        };
        if entry.kind != r.kind {
            report.refused.push((r.id, Refusal::KindDiffers));
            continue;
        }
        if fingerprint != r.fingerprint {
            report.refused.push((r.id, Refusal::FingerprintDiffers));
            continue;
        }
        let copies = st.copies.entry(r.id).or_default();
        // Older copies first, the host last: until the host's slot moves, nothing new runs.
        for old in copies.iter() {
            old.set(r.target);
        }
        for slot in &slots {
            slot.set(r.target);
        }
        if let Some(own) = r.own_slot {
            if !slots.iter().any(|s| std::ptr::eq(own, *s)) {
                own.set(std::ptr::null());
                copies.push(own);
            }
        }
        if !report.rebound.contains(&entry.name) {
            report.rebound.push(entry.name);
        }
        let older = st.copy_entries.entry(r.id).or_default();
        replaced.push(entry);
        replaced.extend(older.iter().map(|e| *e as *const Entry));
        if let Some(e) = r.own_entry {
            older.push(e as *const Entry as usize);
        }
        any = true;
    }
    report.generation = if any {
        GENERATION.fetch_add(1, Ordering::AcqRel) + 1
    } else {
        GENERATION.load(Ordering::Acquire)
    };
    // Run the callbacks without the lock (they may call `on_patch`), on a snapshot: a patch
    // applied meanwhile by another thread still sees every callback.
    let callbacks = st.callbacks.clone();
    drop(st);
    if any {
        crate::rewind::replaced(&replaced, report.generation);
    }
    for cb in &callbacks {
        // The patch is in place whatever a callback does: a panicking one must neither skip
        // the others nor unwind into the caller (the runtime's thread, which would stop
        // taking patches). The panic hook has already reported it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&report)));
    }
    report
}

/// Points every slot of `id` back at the host's own body. Test support.
///
/// # Safety
/// As for [`apply`]: no caller may depend on the patched behaviour afterwards.
pub unsafe fn reset(id: FnId) -> bool {
    let mut st = lock();
    let Some((_, _, slots)) = target_of(id) else {
        return false;
    };
    for slot in slots {
        slot.set(std::ptr::null());
    }
    // Older patch copies keep their slots cleared and run their own bodies; only tests that
    // never loaded a patch call this.
    for c in st.copies.remove(&id).unwrap_or_default() {
        c.set(std::ptr::null());
    }
    true
}
