//! Hot-patching for running Rust programs: the one crate a program adds to work with `cargo hot`.
//!
//! ```ignore
//! #[hot_runtime::hot]
//! fn greeting(name: &str) -> String {
//!     format!("Hello, {name}!") // edit this while the program runs under `cargo hot run`
//! }
//! ```
//!
//! # Two build modes, no change to user code
//!
//! * **Plain** — `cargo build`, `cargo run`, `--release`, `cargo test`: `#[hot]` expands to the
//!   function exactly as written. No jump table, no loader, no thread, no socket; this crate adds
//!   nothing to the binary and reads no environment variable.
//! * **Hot** — `cargo hot run` builds in its own target directory (`target/hot`, so your
//!   `target/debug` is never invalidated) with this crate's `hot` feature. Each `#[hot]` fn gets a slot
//!   (one atomic pointer) and an entry in a link-time registry; a call is one atomic load, one
//!   well-predicted branch, and either the fn's own body or one indirect call, after the
//!   `#[hot(rewind)]` safe point (a load of one global and an untaken branch). At start-up the
//!   runtime reserves address space next to the program for patches and listens on a socket that
//!   `cargo hot` passed to it (inherited, not reachable by other processes).
//!
//! The mode is chosen when *this* crate is compiled: the macro emits both forms and
//! `__private::select!` keeps one. Only this crate changes between the modes, so the hot build
//! reuses every other dependency the user's own builds compiled.
//!
//! # Patches
//! A patch is a small shared object holding only recompiled code, linked by `cargo hot` at a fixed
//! address inside the reserved range; its references to statics, thread-locals and other
//! functions point at the running program's own, so all state survives. Applying it is one atomic
//! store per function ([`PatchReport`] says which were rebound and which refused). A call that is
//! already running finishes on the code it started with; the next call runs the new code.
//!
//! Patch libraries are never unloaded: a thread may still be executing their code, and vtables or
//! fn pointers created by patched code may still point into them.
//!
//! Use [`on_patch`] to migrate state after a patch, and [`set_apply_mode`] with
//! [`ApplyMode::Manual`] plus [`apply_pending`] to take patches only at safe points (a frame
//! boundary).

pub use hot_macros::hot;

pub mod protocol;

#[cfg(hot_mode)]
mod table;

#[cfg(hot_mode)]
mod loader;

#[cfg(hot_mode)]
mod listen;

#[cfg(hot_mode)]
mod rewind;

mod kept;
pub use kept::Kept;

#[cfg(hot_mode)]
pub use table::{
    Entry, FnId, Instance, PatchReport, Rebind, apply, find, instance_count, instances_of,
    registry, reset,
};

/// When patches that arrive are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// As soon as a patch arrives (the default).
    #[default]
    Immediate,
    /// Only when the program calls [`apply_pending`].
    Manual,
}

/// Whether this build can be patched (built by `cargo hot`).
pub const fn is_hot() -> bool {
    cfg!(hot_mode)
}

/// Number of patches applied so far (0 in a plain build).
pub fn generation() -> u64 {
    #[cfg(hot_mode)]
    {
        table::generation()
    }
    #[cfg(not(hot_mode))]
    {
        0
    }
}

/// Runs `f` after each patch is applied, on the thread that applied it (the runtime's thread,
/// or the caller of [`apply_pending`]). Does nothing in a plain build.
pub fn on_patch<F>(f: F)
where
    F: Fn(&PatchReport) + Send + Sync + 'static,
{
    #[cfg(hot_mode)]
    table::on_patch(Box::new(f));
    #[cfg(not(hot_mode))]
    drop(f);
}

/// Chooses when arriving patches are applied. Does nothing in a plain build.
pub fn set_apply_mode(mode: ApplyMode) {
    #[cfg(hot_mode)]
    loader::set_apply_mode(mode);
    #[cfg(not(hot_mode))]
    let _ = mode;
}

/// In [`ApplyMode::Manual`], applies the patches that arrived since the last call and returns how
/// many. Call it where no hot function is on the stack whose new version you want right away.
pub fn apply_pending() -> usize {
    #[cfg(hot_mode)]
    {
        loader::apply_pending()
    }
    #[cfg(not(hot_mode))]
    {
        0
    }
}

/// A TCP listener on `addr` that survives restarts under `cargo hot run --listen ADDR` (or
/// `listen = ["ADDR"]` in `[package.metadata.hot]`): the program gets the socket cargo hot holds,
/// so while it restarts, connections wait in the backlog instead of being refused. Anywhere else
/// (a plain build, or an address cargo hot does not hold) it is `TcpListener::bind(addr)`.
///
/// ```no_run
/// let listener = hot_runtime::listener("127.0.0.1:3000")?;
/// listener.set_nonblocking(true)?; // for tokio::net::TcpListener::from_std
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn listener(addr: impl std::net::ToSocketAddrs) -> std::io::Result<std::net::TcpListener> {
    #[cfg(hot_mode)]
    {
        let addrs = listen::resolve(&addr)?;
        if let Some(l) = listen::take(&addrs) {
            return Ok(l);
        }
        std::net::TcpListener::bind(&addrs[..])
    }
    #[cfg(not(hot_mode))]
    {
        std::net::TcpListener::bind(addr)
    }
}

/// In a plain build there is nothing to report; the type exists so code using [`on_patch`]
/// compiles in both modes.
#[cfg(not(hot_mode))]
#[derive(Clone, Debug, Default)]
pub struct PatchReport {
    pub generation: u64,
    pub rebound: Vec<&'static str>,
}

#[doc(hidden)]
pub mod __private {
    //! Used by the code `#[hot]` generates. Not a public API.
    #[cfg(hot_mode)]
    pub use crate::__hot_instance_slot as instance_slot;
    pub use crate::__hot_select as select;
    #[cfg(hot_mode)]
    pub use crate::rewind::{Frame, RewindArg, rewind_arg, safe_point};
    #[cfg(hot_mode)]
    pub use crate::table::{Entry, KIND_ASYNC, KIND_SYNC, Slot, fingerprint};
    #[cfg(hot_mode)]
    pub use crate::table::{L, LayoutList};
}

#[cfg(hot_mode)]
#[doc(hidden)]
#[macro_export]
macro_rules! __hot_select {
    ({ $($plain:tt)* } { $($hot:tt)* }) => { $($hot)* };
}

#[cfg(not(hot_mode))]
#[doc(hidden)]
#[macro_export]
macro_rules! __hot_select {
    ({ $($plain:tt)* } { $($hot:tt)* }) => { $($plain)* };
}

/// The current code of this copy of a hot fn that dispatches per instantiation (a generic fn, a
/// method): reads a slot that belongs to this compiled copy alone, and records the copy in
/// `protocol::INSTANCE_SECTION` as `{entry, slot, code, layouts}`. `$layouts` is
/// `L<Arg1, L<Arg2, .. ()>>`, whose layout hash (this instantiation's arguments and return
/// value, evaluated at compile time) cargo hot and the runtime compare before rebinding the copy.
///
/// Rust has no per-instantiation statics (a `static` inside a generic fn is shared by all its
/// instantiations), but inline assembly is emitted once per instantiation: the slot and its record
/// are data the assembly itself defines. The read is one `mov` (an acquire load on x86_64).
/// The `#[hot]` dispatcher is `#[inline(never)]`, so the assembly is never duplicated.
#[cfg(all(hot_mode, target_arch = "x86_64", target_os = "linux"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __hot_instance_slot {
    ($entry:ident, $layouts:ty) => {{
        let __hot_slot: *const ();
        // SAFETY: reads the 8-byte slot the same assembly defines; the runtime stores to it
        // atomically (`Slot::set`), so this aligned load sees null or a whole address.
        unsafe {
            ::core::arch::asm!(
                // `protocol::INSTANCE_SECTION` and `INSTANCE_SIZE`.
                ".pushsection hot_runtime_instances,\"awR\",@progbits",
                ".balign 8",
                ".quad {entry}",
                ".quad 3f",
                ".quad 4f",
                ".quad {layouts}",
                ".popsection",
                ".pushsection .bss.hot_instance_slot,\"aw\",@nobits",
                ".balign 8",
                "3: .zero 8",
                ".popsection",
                "4:",
                "mov {slot}, qword ptr [rip + 3b]",
                entry = sym $entry,
                layouts = const <$layouts as ::hot_runtime::__private::LayoutList>::HASH,
                slot = out(reg) __hot_slot,
                options(nostack, preserves_flags, readonly),
            );
        }
        __hot_slot
    }};
}

#[cfg(all(hot_mode, not(all(target_arch = "x86_64", target_os = "linux"))))]
#[doc(hidden)]
#[macro_export]
macro_rules! __hot_instance_slot {
    ($entry:ident, $layouts:ty) => {
        ::core::compile_error!(
            "cargo hot patches Linux x86_64 programs only; build this target without cargo hot"
        )
    };
}
