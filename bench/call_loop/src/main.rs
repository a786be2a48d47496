//! What a user's hot loop sees: 200 M calls of a trivial fn with `black_box` arguments, built
//! `--release` and run under `cargo hot run` (the real hot build: hot-runtime's loader, the
//! members' hot flags), against the same body in an `#[inline(never)]` fn and through
//! `subsecond::HotFn::call`. Rounds alternate; each figure is the median of 7 rounds.

use std::hint::black_box;
use std::time::Instant;

#[hot_runtime::hot]
fn hot_add(x: u64) -> u64 {
    x.wrapping_mul(3) ^ 1
}

#[hot_runtime::hot]
fn hot_add_generic<T: Into<u64>>(x: T) -> u64 {
    x.into().wrapping_mul(3) ^ 1
}

#[inline(never)]
fn direct_add(x: u64) -> u64 {
    x.wrapping_mul(3) ^ 1
}

#[inline(never)]
fn subsecond_target(x: u64) -> u64 {
    x.wrapping_mul(3) ^ 1
}

const CALLS: u64 = 200_000_000 / 7;

fn ns_per_call(f: impl Fn(u64) -> u64) -> f64 {
    let t0 = Instant::now();
    let mut acc = 0u64;
    for i in 0..CALLS {
        acc = acc.wrapping_add(f(black_box(i)));
    }
    black_box(acc);
    t0.elapsed().as_nanos() as f64 / CALLS as f64
}

fn main() {
    let names = ["direct", "#[hot]", "generic #[hot]", "subsecond::HotFn::call"];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..7 {
        runs[0].push(ns_per_call(|x| direct_add(x)));
        runs[1].push(ns_per_call(|x| hot_add(x)));
        runs[2].push(ns_per_call(|x| hot_add_generic(x)));
        runs[3].push(ns_per_call(|x| {
            subsecond::HotFn::current(subsecond_target).call((x,))
        }));
    }
    let med: Vec<f64> = runs
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        })
        .collect();
    println!("hot build: {}", hot_runtime::is_hot());
    for (n, m) in names.iter().zip(&med) {
        println!("| {n} | {m:.3} | {:+.3} |", m - med[0]);
    }
    println!("call-loop done");
}
