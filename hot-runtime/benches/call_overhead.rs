//! ns per call of a trivial function: `#[hot]` (hot or plain mode, whichever this bench was
//! built in), a direct `#[inline(never)]` call, `subsecond::HotFn::call`, and an `RwLock` read +
//! cached `libloading::Symbol` call (hot-lib-reloader's per-call pattern).
//!
//! Hot mode:  cargo bench -p hot-runtime --features hot
//! Plain mode: cargo bench -p hot-runtime
//!
//! Variants run interleaved, round after round, and each figure is the median over rounds, so
//! ratios come from the same run and the same machine state.

use std::hint::black_box;
use std::sync::RwLock;
use std::time::Instant;

#[hot_runtime::hot]
#[inline(never)]
fn hot_add(x: u64) -> u64 {
    x.wrapping_mul(3) ^ 1
}

#[inline(never)]
fn direct_add(x: u64) -> u64 {
    x.wrapping_mul(3) ^ 1
}

/// The same body, generic: each instantiation reads its own slot (one `mov` too).
#[hot_runtime::hot]
fn hot_add_generic<T: Into<u64>>(x: T) -> u64 {
    x.into().wrapping_mul(3) ^ 1
}

#[inline(never)]
fn direct_add_generic<T: Into<u64>>(x: T) -> u64 {
    x.into().wrapping_mul(3) ^ 1
}

#[inline(never)]
fn subsecond_target(x: u64) -> u64 {
    x.wrapping_mul(3) ^ 1
}

type CFn = unsafe extern "C" fn(libc_long) -> libc_long;
#[allow(non_camel_case_types)]
type libc_long = i64;

unsafe extern "C" {
    fn labs(x: libc_long) -> libc_long;
}

struct Reloadable {
    _lib: libloading::os::unix::Library,
    f: libloading::os::unix::Symbol<CFn>,
}

static LIB: RwLock<Option<Reloadable>> = RwLock::new(None);

const CALLS: u64 = 2_000_000;
const ROUNDS: usize = 25;

fn time(mut f: impl FnMut(u64) -> u64) -> f64 {
    let start = Instant::now();
    let mut acc = 0u64;
    for i in 0..CALLS {
        acc = acc.wrapping_add(f(black_box(i)));
    }
    black_box(acc);
    start.elapsed().as_nanos() as f64 / CALLS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // Keep `cargo test --benches` quick: only `cargo bench` passes `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let lib = libloading::os::unix::Library::this();
    // SAFETY: labs has this signature.
    let f = unsafe { lib.get::<CFn>(b"labs\0") }.expect("labs");
    *LIB.write().unwrap() = Some(Reloadable { _lib: lib, f });

    let names = [
        "direct",
        "#[hot]",
        "subsecond::HotFn::call",
        "RwLock + libloading::Symbol (labs)",
        "direct labs",
        "direct generic `#[inline(never)]` (u64)",
        "generic #[hot] (u64)",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..ROUNDS {
        samples[0].push(time(direct_add));
        samples[1].push(time(hot_add));
        samples[2].push(time(|x| {
            subsecond::HotFn::current(subsecond_target).call((x,))
        }));
        samples[3].push(time(|x| {
            let g = LIB.read().unwrap();
            // SAFETY: the symbol stays loaded while the guard is held.
            unsafe { (g.as_ref().unwrap().f)(x as i64) as u64 }
        }));
        // SAFETY: plain libc call.
        samples[4].push(time(|x| unsafe { labs(x as i64) as u64 }));
        samples[5].push(time(direct_add_generic::<u64>));
        samples[6].push(time(hot_add_generic::<u64>));
    }
    let med: Vec<f64> = samples.into_iter().map(median).collect();
    let mode = if hot_runtime::is_hot() {
        "hot"
    } else {
        "plain"
    };
    println!("call overhead, {mode} mode, median of {ROUNDS} rounds x {CALLS} calls");
    println!("| variant | ns/call | vs direct |");
    println!("|---|---:|---:|");
    for (n, m) in names.iter().zip(&med) {
        let base = if n.contains("labs") {
            med[4]
        } else if n.contains("generic") {
            med[5]
        } else {
            med[0]
        };
        println!("| {n} | {m:.3} | {:+.3} ns |", m - base);
    }
    println!(
        "#[hot] overhead over direct: {:+.3} ns ({:.1} %)",
        med[1] - med[0],
        (med[1] / med[0] - 1.0) * 100.0
    );
    println!(
        "generic #[hot] overhead over direct generic: {:+.3} ns",
        med[6] - med[5]
    );
    let sub = med[2] - med[0];
    let hot = (med[1] - med[0]).max(0.001);
    println!("subsecond overhead / #[hot] overhead: {:.1}x", sub / hot);
}
