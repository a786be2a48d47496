//! The library of a lib + bin package (bench/vs_dx.py); the edits land here.

/// A greeting; the binary calls it every millisecond.
#[hot_runtime::hot]
pub fn greeting(name: &str) -> String {
    format!("Hello from the library, {name}!")
}
