//! tests/fixtures/hello for bench/vs_dx.py, the same program for both tools: calls its hot fn
//! every millisecond and prints when the result changes. Under `cargo hot run`, `#[hot]`
//! patches it (`subsecond::call` is then a plain call); under `dx serve --hotpatch`,
//! `subsecond::call` does (`#[hot]` is then the fn as written).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static COUNT: AtomicU64 = AtomicU64::new(0);

#[hot_runtime::hot]
fn greeting() -> String {
    format!("Hello from hot-patched code!")
}

fn main() {
    dioxus_devtools::connect_subsecond();
    let mut last = String::new();
    loop {
        let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        let g = subsecond::call(greeting);
        if g != last {
            println!("{g} (call #{n})");
            last = g;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
