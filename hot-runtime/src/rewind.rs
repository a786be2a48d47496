//! `#[hot(rewind)]`: a hot fn that is running when a patch replaces its code is re-entered with
//! the new code at the next safe point.
//!
//! A rewind fn's dispatcher runs its body inside a [`Frame`]: the frame is on a thread-local stack
//! with the generation it started in. Every hot fn's dispatcher is a safe point
//! ([`safe_point`]): when a patch has replaced the code of a frame's fn since the frame started,
//! the safe point unwinds to that frame (`resume_unwind`, so destructors run and the panic hook
//! does not), and the frame's dispatcher calls the fn again with the same arguments, now through
//! its slot to the new code. The arguments can be passed again because `#[hot(rewind)]` accepts
//! only references and `Copy` values (the macro checks it).
//!
//! Until a rewind fn has run, a safe point is one relaxed load of a global that stays 0 and an
//! untaken branch.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::table::{Entry, generation};

/// The generation of the latest patch applied after a rewind fn first ran; 0 before.
static ARMED: AtomicU64 = AtomicU64::new(0);
/// Set once any rewind fn has entered a frame.
static ANY_FRAME: AtomicBool = AtomicBool::new(false);
/// For each copy of a hot fn whose code a patch replaced (by the address of the registry entry
/// its body names): the generation of that patch.
static REPLACED: Mutex<Option<HashMap<usize, u64>>> = Mutex::new(None);

thread_local! {
    /// This thread's running rewind fns, outermost first: (entry address, generation at entry).
    static FRAMES: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
    /// The value of `ARMED` this thread last found nothing to rewind for.
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// The unwind payload that carries a rewind to the frame at `depth`.
struct Rewind {
    depth: usize,
}

/// Notes that a patch of `generation` replaced the code of the copies whose bodies name
/// `entries`; frames running them rewind at their next safe point.
pub(crate) fn replaced(entries: &[*const Entry], generation: u64) {
    if !ANY_FRAME.load(Ordering::Acquire) || entries.is_empty() {
        return;
    }
    let mut map = REPLACED.lock().unwrap_or_else(|p| p.into_inner());
    let map = map.get_or_insert_with(HashMap::new);
    for e in entries {
        map.insert(*e as usize, generation);
    }
    ARMED.store(generation, Ordering::Release);
}

/// Called on entry to every hot fn: rewinds a running rewind fn whose code was replaced.
#[inline(always)]
pub fn safe_point() {
    if ARMED.load(Ordering::Relaxed) != 0 {
        check();
    }
}

#[cold]
#[inline(never)]
fn check() {
    let armed = ARMED.load(Ordering::Acquire);
    if SEEN.with(Cell::get) == armed {
        return;
    }
    let outermost = FRAMES.with(|f| {
        let frames = f.borrow();
        if frames.is_empty() {
            return None;
        }
        let map = REPLACED.lock().unwrap_or_else(|p| p.into_inner());
        let map = map.as_ref()?;
        frames
            .iter()
            .position(|(entry, since)| map.get(entry).is_some_and(|g| g > since))
    });
    match outermost {
        Some(depth) => resume_unwind(Box::new(Rewind { depth })),
        None => SEEN.with(|s| s.set(armed)),
    }
}

/// One run of a rewind fn's body, on this thread's frame stack.
pub struct Frame {
    depth: usize,
}

impl Frame {
    /// Enters a frame for the copy whose registry entry is `entry`.
    pub fn enter(entry: &'static Entry) -> Frame {
        ANY_FRAME.store(true, Ordering::Release);
        let since = generation();
        FRAMES.with(|f| {
            let mut frames = f.borrow_mut();
            frames.push((entry as *const Entry as usize, since));
            Frame {
                depth: frames.len() - 1,
            }
        })
    }

    /// Runs the body; `None` when a safe point inside it rewound this frame (its destructors
    /// have run), and the caller should call the fn again.
    pub fn run<R>(&mut self, body: impl FnOnce() -> R) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(body)) {
            Ok(v) => Some(v),
            Err(payload) => match payload.downcast::<Rewind>() {
                Ok(r) if r.depth == self.depth => None,
                Ok(r) => resume_unwind(r),
                Err(other) => resume_unwind(other),
            },
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // Inner frames an unwind passed through have popped themselves already.
        let _ = FRAMES.try_with(|f| f.borrow_mut().truncate(self.depth));
    }
}

/// An argument `#[hot(rewind)]` can pass again after a rewind: `Copy` (references are
/// reborrowed by the macro and never get here).
#[diagnostic::on_unimplemented(
    message = "`#[hot(rewind)]` calls the fn again with the same arguments, so each must be a reference or `Copy`, and `{Self}` is neither",
    label = "passed again when a patch re-enters the fn",
    note = "take it by reference (`&T` or `&mut T`), or remove `rewind`"
)]
pub trait RewindArg {}
impl<T: Copy> RewindArg for T {}

/// Compile-time check of one argument of a `#[hot(rewind)]` fn.
#[inline(always)]
pub fn rewind_arg<T: RewindArg>(_: &T) {}
