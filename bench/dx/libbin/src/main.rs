//! The binary of a lib + bin package (bench/vs_dx.py): calls the library's hot fn every
//! millisecond and prints when the result changes. Under `cargo hot run`, `#[hot]` patches it
//! (`subsecond::call` is then a plain call); under `dx serve --hotpatch`, `subsecond::call` does.
use std::time::Duration;

fn main() {
    dioxus_devtools::connect_subsecond();
    let mut last = String::new();
    loop {
        let g = subsecond::call(|| dx_libbin::greeting("bin"));
        if g != last {
            println!("{g}");
            last = g;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
