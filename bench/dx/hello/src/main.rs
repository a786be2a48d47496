//! tests/fixtures/hello, joined to subsecond: calls its hot fn every millisecond through
//! `subsecond::call` and prints when the result changes.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static COUNT: AtomicU64 = AtomicU64::new(0);

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
