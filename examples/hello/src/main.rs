//! The 30-second demo of cargo hot. Run `cargo hot run -p hello` and edit `greeting` below:
//! the running program prints the new text within a second, and `COUNT` keeps counting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static COUNT: AtomicU64 = AtomicU64::new(0);

/// Edit the text and save: the next line printed uses it.
#[hot_runtime::hot]
fn greeting(n: u64) -> String {
    format!("Hello from hot-patched code! (call #{n})")
}

fn main() {
    let ticks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(u64::MAX);
    for _ in 0..ticks {
        let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        println!("{}", greeting(n));
        std::thread::sleep(Duration::from_millis(500));
    }
}
