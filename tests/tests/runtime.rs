//! Tests of the jump table in hot mode (this crate enables hot-runtime's `hot` feature): the
//! registry, `apply` / `reset`, refusals, generations, `on_patch`, and rebinding under load.
//!
//! Stand-ins for patches: a "new version" of hot fn `a` is another hot fn `b` of this binary with
//! the same signature (`b as fn(u32) -> u32 as *const ()`), whose dispatcher runs `b`'s body
//! while `b`'s own slot is null. Never point a slot at its own function's dispatcher: that
//! dispatcher would call itself forever.
//!
//! The tests of one binary run in parallel and share the table. Each test rebinds only its own
//! functions, and every test that applies patches holds `TABLE` so that generation numbers and
//! `on_patch` reports are exact.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hot_runtime::protocol::{KIND_ASYNC, KIND_SYNC, Refusal};
use hot_runtime::{Entry, FnId, PatchReport, Rebind, hot};

static TABLE: Mutex<()> = Mutex::new(());

/// Serializes the tests that apply patches; a failed test must not fail the others.
fn table_lock() -> MutexGuard<'static, ()> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

fn entry(name: &str) -> &'static Entry {
    let full = format!("runtime::{name}");
    hot_runtime::find(&full).unwrap_or_else(|| panic!("{full} is not in the registry"))
}

/// A rebind of the hot fn named `host` to `target`, with the host's own fingerprint and kind.
fn rebind(host: &str, target: fn(u32) -> u32) -> Rebind {
    let e = entry(host);
    Rebind {
        id: e.id(),
        fingerprint: e.fingerprint(),
        kind: e.kind,
        target: target as *const (),
        own_slot: None,
        own_entry: None,
    }
}

/// The slot a sync hot fn's (only) compiled copy reads.
fn own_slot(e: &'static Entry) -> &'static hot_runtime::__private::Slot {
    let mut copies = hot_runtime::instances_of(e);
    let first = copies.next().expect("a sync hot fn has a compiled copy");
    assert!(copies.next().is_none(), "a non-generic fn has one copy");
    first.slot()
}

fn apply(rebinds: &[Rebind]) -> PatchReport {
    // SAFETY: every target in these tests is a hot fn of this binary with the host's exact
    // signature, and never the host's own dispatcher.
    unsafe { hot_runtime::apply(rebinds) }
}

fn reset(name: &str) -> bool {
    // SAFETY: resetting makes the host run its own body again.
    unsafe { hot_runtime::reset(entry(name).id()) }
}

// ---------------------------------------------------------------------------------------------
// The registry.

const NEVER_CALLED_LINE: u32 = line!() + 1;
#[hot]
fn never_called(x: u32) -> u32 {
    x + 1000
}

#[hot]
fn never_called_other_sig(x: u64, y: &str) -> u64 {
    x + y.len() as u64
}

#[hot]
fn renamed_args(y: u32) -> u32 {
    y
}

#[hot]
async fn never_called_async(x: u32) -> u32 {
    x
}

struct Widget(u32);

impl Widget {
    #[hot]
    fn widget_method(&self) -> u32 {
        self.0
    }

    #[hot]
    async fn widget_async_method(&self) -> u32 {
        self.0
    }
}

trait Describe {
    fn describe(&self) -> String;
}

impl Describe for Widget {
    #[hot]
    fn describe(&self) -> String {
        format!("widget {}", self.0)
    }
}

impl Describe for u8 {
    #[hot]
    fn describe(&self) -> String {
        format!("u8 {self}")
    }
}

mod nested {
    #[hot_runtime::hot]
    pub fn in_nested_module() -> u32 {
        7
    }
}

#[test]
fn registry_lists_every_hot_fn_even_if_never_called() {
    for name in [
        "never_called",
        "never_called_other_sig",
        "never_called_async",
        "widget_method",
        "widget_async_method",
        "describe",
        "nested::in_nested_module",
    ] {
        let e = entry(name);
        assert_eq!(e.name(), format!("runtime::{name}"));
        assert!(
            e.location().0.ends_with("runtime.rs"),
            "{name}: {:?}",
            e.location()
        );
    }
    // The entry's line is the fn's (the attribute is on the line before it).
    let (_, line) = entry("never_called").location();
    assert!(
        line == NEVER_CALLED_LINE || line == NEVER_CALLED_LINE + 1,
        "line {line}, #[hot] is on line {NEVER_CALLED_LINE}"
    );

    // Methods are named by their module, not their type: both `describe` impls are there.
    let describes = hot_runtime::registry()
        .filter(|e| e.name() == "runtime::describe")
        .count();
    assert_eq!(describes, 2);

    // No sentinel or blank entries, every entry once.
    let all: Vec<&'static Entry> = hot_runtime::registry().collect();
    assert!(
        all.iter()
            .all(|e| !e.name().is_empty() && (e.kind == KIND_SYNC || e.kind == KIND_ASYNC))
    );
    let ids: HashSet<FnId> = all.iter().map(|e| e.id()).collect();
    assert_eq!(ids.len(), all.len());
    // Every hot fn of this file is registered: one entry per attribute line.
    let here = all
        .iter()
        .filter(|e| e.location().0.ends_with("runtime.rs"))
        .count();
    let expected = include_str!("runtime.rs")
        .lines()
        .filter(|l| {
            matches!(
                l.trim(),
                "#[hot]" | "#[hot(rewind)]" | "#[hot_runtime::hot]"
            )
        })
        .count();
    assert!(expected > 30);
    assert_eq!(here, expected);

    assert!(hot_runtime::find("runtime::no_such_fn").is_none());
    assert!(
        hot_runtime::find("never_called").is_none(),
        "names are full module paths"
    );
    assert!(
        hot_runtime::find("").is_none(),
        "the sentinel is not a hot fn"
    );
    assert!(hot_runtime::is_hot());
}

#[test]
fn kinds_and_fingerprints() {
    assert_eq!(entry("never_called").kind, KIND_SYNC);
    assert_eq!(entry("widget_method").kind, KIND_SYNC);
    assert_eq!(entry("never_called_async").kind, KIND_ASYNC);
    assert_eq!(entry("widget_async_method").kind, KIND_ASYNC);

    // Same signature, different argument names: same fingerprint.
    assert_eq!(
        entry("never_called").fingerprint(),
        entry("renamed_args").fingerprint()
    );
    assert_eq!(
        entry("never_called").fingerprint(),
        entry("ab_b").fingerprint()
    );
    // Different signatures: different fingerprints.
    let fps = [
        entry("never_called").fingerprint(),
        entry("never_called_other_sig").fingerprint(),
        entry("never_called_async").fingerprint(),
        entry("widget_method").fingerprint(),
        entry("nested::in_nested_module").fingerprint(),
    ];
    let distinct: HashSet<u64> = fps.iter().copied().collect();
    assert_eq!(distinct.len(), fps.len(), "{fps:x?}");

    // Calling them runs their bodies (no slot is set).
    assert_eq!(never_called_other_sig(1, "ab"), 3);
    assert_eq!(Widget(4).widget_method(), 4);
    assert_eq!(Widget(5).describe(), "widget 5");
    assert_eq!(9u8.describe(), "u8 9");
    assert_eq!(nested::in_nested_module(), 7);
    let _ = (never_called_async(1), Widget(1).widget_async_method());
}

// ---------------------------------------------------------------------------------------------
// apply / reset.

#[hot]
fn ab_a(x: u32) -> u32 {
    x + 1
}

#[hot]
fn ab_b(x: u32) -> u32 {
    x * 10
}

#[hot]
fn ab_c(x: u32) -> u32 {
    x * 100
}

#[test]
fn rebind_runs_the_other_body_and_reset_restores() {
    let _t = table_lock();
    assert_eq!(ab_a(3), 4);

    let g0 = hot_runtime::generation();
    let report = apply(&[rebind("ab_a", ab_b)]);
    assert_eq!(report.rebound, vec!["runtime::ab_a"]);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.generation, g0 + 1);
    assert_eq!(hot_runtime::generation(), g0 + 1);
    assert_eq!(ab_a(3), 30, "calls of a run b's body");
    assert_eq!(ab_b(3), 30, "b itself is unchanged");
    // Also through a fn pointer taken before or after the patch: it is the dispatcher.
    let f: fn(u32) -> u32 = ab_a;
    assert_eq!(f(4), 40);

    let report = apply(&[rebind("ab_a", ab_c)]);
    assert_eq!(report.generation, g0 + 2);
    assert_eq!(hot_runtime::generation(), g0 + 2);
    assert_eq!(ab_a(3), 300);

    assert!(reset("ab_a"));
    assert_eq!(ab_a(3), 4);
    assert_eq!(hot_runtime::generation(), g0 + 2, "reset is not a patch");
    // Resetting twice is harmless.
    assert!(reset("ab_a"));
    assert_eq!(ab_a(3), 4);
}

#[hot]
fn fp_host(x: u32) -> u32 {
    x + 2
}

#[hot]
fn fp_new(x: u32) -> u32 {
    x + 200
}

#[hot]
fn fp_other_sig(x: u64) -> u64 {
    x
}

#[test]
fn wrong_fingerprint_is_refused_and_old_body_keeps_running() {
    let _t = table_lock();
    let g0 = hot_runtime::generation();

    let mut bad = rebind("fp_host", fp_new);
    bad.fingerprint ^= 1;
    let report = apply(&[bad]);
    assert_eq!(report.refused, vec![(bad.id, Refusal::FingerprintDiffers)]);
    assert!(report.rebound.is_empty());
    assert_eq!(report.generation, g0, "a refused patch is not a generation");
    assert_eq!(hot_runtime::generation(), g0);
    assert_eq!(fp_host(1), 3, "the old body keeps running");

    // The fingerprint of a fn with another signature is refused the same way.
    let mut other = rebind("fp_host", fp_new);
    other.fingerprint = entry("fp_other_sig").fingerprint();
    assert_ne!(other.fingerprint, entry("fp_host").fingerprint());
    let report = apply(&[other]);
    assert_eq!(
        report.refused,
        vec![(other.id, Refusal::FingerprintDiffers)]
    );
    assert_eq!(fp_host(1), 3);

    // sync vs async.
    let mut kind = rebind("fp_host", fp_new);
    kind.kind = KIND_ASYNC;
    let report = apply(&[kind]);
    assert_eq!(report.refused, vec![(kind.id, Refusal::KindDiffers)]);
    assert_eq!(fp_host(1), 3);
    assert_eq!(hot_runtime::generation(), g0);
    let _ = fp_other_sig(0);
}

#[hot]
fn uk_host(x: u32) -> u32 {
    x + 3
}

#[hot]
fn uk_new(x: u32) -> u32 {
    x + 300
}

#[test]
fn unknown_function_is_refused() {
    let _t = table_lock();
    let g0 = hot_runtime::generation();
    let good = rebind("uk_host", uk_new);
    static NOT_AN_ENTRY: u64 = 0;
    let unknown = [
        FnId(0),
        FnId(0x1234),
        FnId(&raw const NOT_AN_ENTRY as usize),
        // Inside an entry, but not its start.
        FnId(good.id.0 + 8),
    ];
    for id in unknown {
        let report = apply(&[Rebind { id, ..good }]);
        assert_eq!(report.refused, vec![(id, Refusal::UnknownFunction)]);
        assert!(report.rebound.is_empty());
        assert_eq!(report.generation, g0);
    }
    assert_eq!(uk_host(1), 4);
    // SAFETY: an unknown id is rejected without touching anything.
    assert!(!unsafe { hot_runtime::reset(FnId(0x1234)) });

    // One patch with a good and a bad function: the good one is rebound, the bad one reported,
    // and it is one generation.
    let report = apply(&[
        Rebind {
            id: FnId(0x1234),
            ..good
        },
        good,
    ]);
    assert_eq!(report.rebound, vec!["runtime::uk_host"]);
    assert_eq!(
        report.refused,
        vec![(FnId(0x1234), Refusal::UnknownFunction)]
    );
    assert_eq!(report.generation, g0 + 1);
    assert_eq!(hot_runtime::generation(), g0 + 1);
    assert_eq!(uk_host(1), 301);
    assert!(reset("uk_host"));
    assert_eq!(uk_host(1), 4);

    // An empty patch changes nothing.
    let report = apply(&[]);
    assert!(report.rebound.is_empty() && report.refused.is_empty());
    assert_eq!(report.generation, g0 + 1);
}

#[hot]
fn gen_a(x: u32) -> u32 {
    x + 4
}

#[hot]
fn gen_b(x: u32) -> u32 {
    x + 400
}

#[hot]
fn gen_c(x: u32) -> u32 {
    x + 4000
}

#[test]
fn generation_increments_once_per_applied_patch() {
    let _t = table_lock();
    let g0 = hot_runtime::generation();
    for i in 1..=10u64 {
        let target = if i % 2 == 0 { gen_b } else { gen_c };
        let report = apply(&[rebind("gen_a", target)]);
        assert_eq!(report.generation, g0 + i);
        assert_eq!(hot_runtime::generation(), g0 + i);
        assert_eq!(gen_a(0), target(0));
    }
    // Two functions in one patch: one generation.
    let report = apply(&[rebind("gen_a", gen_b), rebind("gen_c", gen_b)]);
    assert_eq!(report.rebound, vec!["runtime::gen_a", "runtime::gen_c"]);
    assert_eq!(report.generation, g0 + 11);
    assert_eq!((gen_a(0), gen_c(0)), (400, 400));
    assert!(reset("gen_a") && reset("gen_c"));
    assert_eq!((gen_a(0), gen_c(0)), (4, 4000));
    assert_eq!(hot_runtime::generation(), g0 + 11);
}

// ---------------------------------------------------------------------------------------------
// Older patch copies (`own_slot`).

#[hot]
fn os_host(x: u32) -> u32 {
    x + 5
}

#[hot]
fn os_v1(x: u32) -> u32 {
    x + 50
}

#[hot]
fn os_v2(x: u32) -> u32 {
    x + 500
}

#[test]
fn older_copies_are_redirected_to_the_newest() {
    let _t = table_lock();
    // Patch 1: the host runs v1; v1 plays the patch's copy, with its own slot.
    let v1 = entry("os_v1");
    let report = apply(&[Rebind {
        own_slot: Some(own_slot(v1)),
        ..rebind("os_host", os_v1)
    }]);
    assert_eq!(report.rebound, vec!["runtime::os_host"]);
    assert_eq!(os_host(0), 50);
    assert_eq!(os_v1(0), 50, "the newest copy runs its own body");

    // Patch 2: the host and the older copy both reach v2.
    let v2 = entry("os_v2");
    apply(&[Rebind {
        own_slot: Some(own_slot(v2)),
        ..rebind("os_host", os_v2)
    }]);
    assert_eq!(os_host(0), 500);
    assert_eq!(
        os_v1(0),
        500,
        "code still running in patch 1 reaches patch 2"
    );
    assert_eq!(os_v2(0), 500);

    // Reset clears the host and every older copy.
    assert!(reset("os_host"));
    assert_eq!((os_host(0), os_v1(0), os_v2(0)), (5, 50, 500));
}

// ---------------------------------------------------------------------------------------------
// on_patch.

#[hot]
fn cb_a(x: u32) -> u32 {
    x + 6
}

#[hot]
fn cb_b(x: u32) -> u32 {
    x + 600
}

#[test]
fn on_patch_callbacks_run_with_the_report() {
    let _t = table_lock();
    let seen: Arc<Mutex<Vec<(u64, Vec<&'static str>, usize, u32)>>> = Arc::default();
    let s = seen.clone();
    hot_runtime::on_patch(move |r: &PatchReport| {
        if r.rebound.contains(&"runtime::cb_a")
            || r.refused.iter().any(|(id, _)| *id == entry("cb_a").id())
        {
            // The callback runs after the rebind: the new code is already in place.
            s.lock()
                .unwrap()
                .push((r.generation, r.rebound.clone(), r.refused.len(), cb_a(0)));
        }
    });
    let calls_before = Arc::new(AtomicUsize::new(0));
    let c = calls_before.clone();
    hot_runtime::on_patch(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });

    let report = apply(&[rebind("cb_a", cb_b)]);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![(report.generation, vec!["runtime::cb_a"], 0, 600)]
        );
    }
    assert_eq!(calls_before.load(Ordering::SeqCst), 1);

    // Callbacks run for refused patches too, with the refusals.
    let mut bad = rebind("cb_a", cb_b);
    bad.fingerprint ^= 1;
    let report2 = apply(&[bad]);
    assert_eq!(report2.generation, report.generation);
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &(report.generation, vec![], 1, 600)
    );
    assert_eq!(calls_before.load(Ordering::SeqCst), 2);

    assert!(reset("cb_a"));
    assert_eq!(cb_a(0), 6);
}

#[hot]
fn nest_a(x: u32) -> u32 {
    x + 7
}

#[hot]
fn nest_b(x: u32) -> u32 {
    x + 700
}

#[test]
fn on_patch_can_register_from_inside_a_callback() {
    let _t = table_lock();
    let inner_calls = Arc::new(AtomicUsize::new(0));
    let registered = Arc::new(AtomicBool::new(false));
    let (ic, reg) = (inner_calls.clone(), registered.clone());
    hot_runtime::on_patch(move |r| {
        if r.rebound.contains(&"runtime::nest_a") && !reg.swap(true, Ordering::SeqCst) {
            let ic = ic.clone();
            // Must not deadlock, and the new callback must be kept.
            hot_runtime::on_patch(move |r| {
                if r.rebound.contains(&"runtime::nest_a") {
                    ic.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    apply(&[rebind("nest_a", nest_b)]);
    assert!(registered.load(Ordering::SeqCst));
    assert_eq!(
        inner_calls.load(Ordering::SeqCst),
        0,
        "registered during this patch"
    );
    apply(&[rebind("nest_a", nest_b)]);
    assert_eq!(inner_calls.load(Ordering::SeqCst), 1);
    assert!(reset("nest_a"));
}

#[hot]
fn panic_a(x: u32) -> u32 {
    x + 8
}

#[hot]
fn panic_b(x: u32) -> u32 {
    x + 800
}

#[test]
fn a_panicking_callback_does_not_disable_patching_or_other_callbacks() {
    let _t = table_lock();
    hot_runtime::on_patch(|r| {
        if r.rebound.contains(&"runtime::panic_a") {
            panic!("on_patch callback panics on purpose (expected in this test)");
        }
    });
    let later = Arc::new(AtomicUsize::new(0));
    let l = later.clone();
    hot_runtime::on_patch(move |r| {
        if r.rebound.contains(&"runtime::panic_a") {
            l.fetch_add(1, Ordering::SeqCst);
        }
    });
    let g0 = hot_runtime::generation();
    // The patch is applied whatever its callbacks do; the caller (the runtime's thread, in a
    // real program) must survive to apply the next patch.
    let first = std::panic::catch_unwind(|| apply(&[rebind("panic_a", panic_b)]));
    assert!(first.is_ok(), "a callback's panic escaped from apply");
    assert_eq!(panic_a(0), 800);
    assert_eq!(hot_runtime::generation(), g0 + 1);
    assert_eq!(
        later.load(Ordering::SeqCst),
        1,
        "the callback after the panicking one ran"
    );

    let second = std::panic::catch_unwind(|| apply(&[rebind("panic_a", panic_b)]));
    assert!(second.is_ok());
    assert_eq!(
        later.load(Ordering::SeqCst),
        2,
        "callbacks are still registered"
    );
    assert_eq!(hot_runtime::generation(), g0 + 2);
    assert!(reset("panic_a"));
    assert_eq!(panic_a(0), 8);
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

#[hot]
fn cc_a(x: u32) -> u32 {
    x.wrapping_mul(2).wrapping_add(1)
}

#[hot]
fn cc_b(x: u32) -> u32 {
    x.wrapping_mul(3).wrapping_add(7)
}

#[hot]
fn cc_c(x: u32) -> u32 {
    x.wrapping_mul(5).wrapping_add(11)
}

#[test]
fn rebinding_while_eight_threads_call() {
    let _t = table_lock();
    const THREADS: usize = 8;
    const REBINDS: usize = 5000;
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let started = Arc::new(std::sync::Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, bad, started) = (stop.clone(), bad.clone(), started.clone());
            std::thread::spawn(move || {
                let mut seen = [0u64; 3];
                let mut calls = 0u64;
                let mut x = t as u32 * 7919;
                started.wait();
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_add(1);
                    let r = cc_a(x);
                    let expect = [
                        x.wrapping_mul(2).wrapping_add(1),
                        x.wrapping_mul(3).wrapping_add(7),
                        x.wrapping_mul(5).wrapping_add(11),
                    ];
                    match expect.iter().position(|&e| e == r) {
                        Some(i) => seen[i] += 1,
                        None => {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    calls += 1;
                }
                (calls, seen)
            })
        })
        .collect();

    started.wait();
    let t0 = Instant::now();
    let g0 = hot_runtime::generation();
    let mut applied = 0u64;
    for i in 0..REBINDS {
        match i % 3 {
            0 => {
                let r = apply(&[rebind("cc_a", cc_b)]);
                assert_eq!(r.rebound.len(), 1);
                applied += 1;
            }
            1 => {
                let r = apply(&[rebind("cc_a", cc_c)]);
                assert_eq!(r.rebound.len(), 1);
                applied += 1;
            }
            _ => assert!(reset("cc_a")),
        }
        if i % 64 == 0 {
            std::thread::yield_now();
        }
    }
    assert!(reset("cc_a"));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut seen = [0u64; 3];
    for w in workers {
        let (calls, s) = w.join().expect("a calling thread panicked");
        total += calls;
        for i in 0..3 {
            seen[i] += s[i];
        }
    }
    let elapsed = t0.elapsed();
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "a call returned something no complete body returns"
    );
    assert_eq!(hot_runtime::generation(), g0 + applied);
    assert_eq!(cc_a(1), 3);
    assert!(total > 0);
    assert!(
        seen.iter().filter(|&&n| n > 0).count() >= 2,
        "the callers never saw a rebind: {seen:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    eprintln!(
        "{total} calls during {REBINDS} rebinds in {elapsed:?}: a/b/c bodies ran {seen:?} times"
    );
}

#[hot]
fn race_0(x: u32) -> u32 {
    x
}
#[hot]
fn race_1(x: u32) -> u32 {
    x + 1
}
#[hot]
fn race_2(x: u32) -> u32 {
    x + 2
}
#[hot]
fn race_3(x: u32) -> u32 {
    x + 3
}
#[hot]
fn race_target(x: u32) -> u32 {
    x + 99
}

#[test]
fn every_patch_reaches_on_patch_even_when_patches_race() {
    let _t = table_lock();
    const PER_THREAD: usize = 300;
    let names = ["race_0", "race_1", "race_2", "race_3"];
    let counts: Arc<Mutex<[usize; 4]>> = Arc::default();
    let c = counts.clone();
    hot_runtime::on_patch(move |r| {
        for (i, n) in names.iter().enumerate() {
            let full = format!("runtime::{n}");
            if r.rebound.iter().any(|x| *x == full) {
                c.lock().unwrap()[i] += 1;
            }
        }
    });
    let threads: Vec<_> = names
        .iter()
        .map(|&n| {
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    apply(&[rebind(n, race_target)]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        *counts.lock().unwrap(),
        [PER_THREAD; 4],
        "some patches never reached on_patch"
    );
    for n in names {
        assert!(reset(n));
    }
    assert_eq!((race_0(0), race_1(0), race_2(0), race_3(0)), (0, 1, 2, 3));
}

/// What `#[hot]` emits matches the contract in `hot_runtime::protocol` (hot-macros cannot
/// depend on hot-runtime, so it spells the names out): every registry entry of this test binary
/// is a static named `ENTRY_STATIC` inside its fn, in section `REGISTRY_SECTION`, next to a slot
/// named `SLOT_STATIC`.
#[test]
fn the_macro_emits_the_names_and_section_of_the_protocol() {
    use hot_runtime::protocol::{ENTRY_SUFFIX, REGISTRY_SECTION, SLOT_SUFFIX};
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("objdump")
        .args(["-t", "-C"])
        .arg(&exe)
        .output()
        .expect("objdump (binutils)");
    let table = String::from_utf8_lossy(&out.stdout);
    let entries: Vec<&str> = table
        .lines()
        .filter(|l| l.ends_with(&format!("never_called{ENTRY_SUFFIX}")))
        .collect();
    assert!(
        !entries.is_empty(),
        "no `{ENTRY_SUFFIX}` symbol for hot fn `never_called`"
    );
    for l in &entries {
        assert!(
            l.contains(REGISTRY_SECTION),
            "entry outside the registry section: {l}"
        );
    }
    assert!(
        table.lines().any(|l| l.ends_with(SLOT_SUFFIX)),
        "no `{SLOT_SUFFIX}` symbol"
    );
    // And the runtime finds those entries in that section.
    assert!(hot_runtime::registry().count() >= entries.len());
}

// ---------------------------------------------------------------------------------------------
// Generic hot fns: one slot per compiled copy (instantiation).

/// The copy of hot fn `e` whose dispatcher starts at `f` (its code label is the first one after
/// the start of its own function).
fn copy_of(e: &'static Entry, f: *const ()) -> &'static hot_runtime::Instance {
    hot_runtime::instances_of(e)
        .filter(|i| i.code() as usize >= f as usize)
        .min_by_key(|i| i.code() as usize - f as usize)
        .expect("a copy of the instantiation")
}

fn rebind_copy(copy: &'static hot_runtime::Instance, target: *const ()) -> Rebind {
    Rebind {
        id: copy.id(),
        fingerprint: copy.fingerprint(),
        kind: KIND_SYNC,
        target,
        own_slot: None,
        own_entry: None,
    }
}

#[hot]
fn gen_show<T: std::fmt::Display>(x: T) -> String {
    format!("v1 {x}")
}

#[hot]
fn gen_show_new<T: std::fmt::Display>(x: T) -> String {
    format!("v2 {x}")
}

#[test]
fn each_instantiation_of_a_generic_fn_rebinds_on_its_own() {
    let _t = table_lock();
    assert_eq!(
        (gen_show(1u32), gen_show("a")),
        ("v1 1".into(), "v1 a".into())
    );
    let e = entry("gen_show");
    assert_eq!(hot_runtime::instances_of(e).count(), 2, "u32 and &str");
    let for_u32 = copy_of(e, gen_show::<u32> as *const ());
    let for_str = copy_of(e, gen_show::<&str> as *const ());
    assert!(!std::ptr::eq(for_u32, for_str));
    assert_ne!(
        for_u32.fingerprint(),
        for_str.fingerprint(),
        "layouts are per instantiation"
    );

    let report = apply(&[rebind_copy(for_u32, gen_show_new::<u32> as *const ())]);
    assert_eq!(report.rebound, vec!["runtime::gen_show"]);
    assert_eq!(gen_show(1u32), "v2 1");
    assert_eq!(
        gen_show("a"),
        "v1 a",
        "the other instantiation keeps its code"
    );

    // A copy whose argument layouts differ from the instantiation's is refused.
    let wrong = Rebind {
        fingerprint: for_u32.fingerprint(),
        ..rebind_copy(for_str, gen_show_new::<&str> as *const ())
    };
    let report = apply(&[wrong]);
    assert_eq!(
        report.refused,
        vec![(for_str.id(), Refusal::FingerprintDiffers)]
    );
    assert_eq!(gen_show("a"), "v1 a");

    // Rebinding by registry entry reaches every copy.
    let report = apply(&[Rebind {
        id: e.id(),
        fingerprint: e.fingerprint(),
        kind: KIND_SYNC,
        target: gen_show_new::<&str> as *const (),
        own_slot: None,
        own_entry: None,
    }]);
    assert!(report.refused.is_empty());
    assert_eq!(gen_show("a"), "v2 a");
    assert!(reset("gen_show"));
    assert_eq!(
        (gen_show(1u32), gen_show("a")),
        ("v1 1".into(), "v1 a".into())
    );
}

struct Meter<T>(T);

impl<T: Copy + Into<u64>> Meter<T> {
    #[hot]
    fn read(&self) -> u64 {
        self.0.into() + 1
    }
    #[hot]
    fn read_new(&self) -> u64 {
        self.0.into() + 100
    }
    /// An associated fn of a generic impl that never names `T` in its signature.
    #[hot]
    fn scale(x: u64) -> u64 {
        x * std::mem::size_of::<T>() as u64
    }
}

#[test]
fn methods_of_generic_impls_have_a_slot_per_instantiation() {
    let _t = table_lock();
    let (a, b) = (Meter(1u8), Meter(2u32));
    assert_eq!((a.read(), b.read()), (2, 3));
    assert_eq!((Meter::<u8>::scale(10), Meter::<u32>::scale(10)), (10, 40));
    let e = entry("read");
    let for_u8 = copy_of(e, Meter::<u8>::read as *const ());
    apply(&[rebind_copy(for_u8, Meter::<u8>::read_new as *const ())]);
    assert_eq!((a.read(), b.read()), (101, 3));
    assert!(reset("read"));
    assert_eq!(hot_runtime::instances_of(entry("scale")).count(), 2);
}

#[hot]
fn total(items: impl IntoIterator<Item = u32>) -> u32 {
    items.into_iter().sum()
}

#[hot]
fn total_new(items: impl IntoIterator<Item = u32>) -> u32 {
    items.into_iter().sum::<u32>() * 10
}

#[hot]
fn first<const N: usize>(a: [u32; N]) -> u32 {
    a[0] + N as u32
}

#[test]
fn impl_trait_arguments_and_const_generics_are_instantiations_too() {
    let _t = table_lock();
    assert_eq!((total(vec![1, 2]), total([3, 4])), (3, 7));
    let e = entry("total");
    let (host, new): (fn(Vec<u32>) -> u32, fn(Vec<u32>) -> u32) = (total, total_new);
    let for_vec = copy_of(e, host as *const ());
    apply(&[rebind_copy(for_vec, new as *const ())]);
    assert_eq!((total(vec![1, 2]), total([3, 4])), (30, 7));
    assert!(reset("total"));
    assert_eq!((first([1]), first([1, 2, 3])), (2, 4));
    assert_eq!(hot_runtime::instances_of(entry("first")).count(), 2);
}

// ---------------------------------------------------------------------------------------------
// `#[hot(rewind)]`: a running call re-entered with the new code.

#[hot]
fn rw_tick(ticks: &AtomicU64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    ticks.fetch_add(1, Ordering::SeqCst) + 1
}

/// Counts its drops: the rewound frame's locals are dropped by the unwind.
struct Noted<'a>(&'a AtomicU64);

impl Drop for Noted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[hot(rewind)]
fn rw_loop(log: &mut Vec<u64>, ticks: &AtomicU64, drops: &AtomicU64) -> &'static str {
    let _noted = Noted(drops);
    loop {
        let t = rw_tick(ticks);
        log.push(t);
        if t >= 5_000 {
            return "v1 never rewound";
        }
    }
}

#[hot(rewind)]
fn rw_loop_new(log: &mut Vec<u64>, ticks: &AtomicU64, drops: &AtomicU64) -> &'static str {
    let _ = (ticks, drops);
    log.push(0);
    "v2"
}

#[test]
fn a_rewind_fn_running_a_loop_is_reentered_with_the_new_code() {
    let _t = table_lock();
    let ticks = AtomicU64::new(0);
    let drops = AtomicU64::new(0);
    let mut log = Vec::new();
    let e = entry("rw_loop");
    let copy = copy_of(e, rw_loop as *const ());
    let out = std::thread::scope(|s| {
        // The patch lands from another thread while the loop runs.
        s.spawn(|| {
            while ticks.load(Ordering::SeqCst) < 3 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let report = apply(&[rebind_copy(copy, rw_loop_new as *const ())]);
            assert!(report.refused.is_empty());
        });
        rw_loop(&mut log, &ticks, &drops)
    });
    assert_eq!(
        out, "v2",
        "re-entered through the slot, with the same arguments"
    );
    assert_eq!(
        log.last(),
        Some(&0),
        "the new body ran on the same state: {log:?}"
    );
    assert!(log.len() >= 4, "the old loop ran until the patch: {log:?}");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the rewound frame's locals were dropped"
    );
    // Later calls run the new code from the start.
    assert_eq!(rw_loop(&mut log, &ticks, &drops), "v2");
    assert!(reset("rw_loop"));
}
