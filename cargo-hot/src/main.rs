//! `cargo hot`: hot-patch a running Rust program when you save.
//!
//! `cargo hot run` builds the program once (the *fat* build, in `target/hot`), starts it, watches
//! the workspace sources, and on each save recompiles only the changed crate, links the changed
//! code into a small *thin* patch whose statics, thread-locals and calls resolve to the running
//! program, and has the program's runtime rebind its `#[hot]` functions between calls. Edits that
//! cannot be patched (a struct's fields, a hot fn's signature, Cargo.toml) restart the program.
//!
//! The same executable is cargo's `RUSTC_WORKSPACE_WRAPPER` during the fat build, to record
//! each crate's rustc invocation for the thin builds.

mod build;
mod cli;
mod event;
mod fault;
mod host;
mod link;
mod patcher;
mod program;
mod record;
mod rude;
mod session;
mod ui;
mod watch;
mod workspace;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(dir) = std::env::var_os(record::RECORD_DIR_ENV) {
        if argv.len() >= 2 {
            record::wrap(std::path::Path::new(&dir), &argv);
        }
    }
    match cli::main(std::env::args_os().collect()) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            ui::bad("error", &format!("{e:#}"));
            ExitCode::from(101)
        }
    }
}
