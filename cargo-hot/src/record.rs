//! `cargo-hot` as cargo's `RUSTC_WORKSPACE_WRAPPER`: records each workspace crate's exact rustc
//! invocation (arguments, environment, working directory) so a patch can replay it, then runs
//! rustc unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Environment variable naming the directory records go to; its presence selects wrapper mode.
pub const RECORD_DIR_ENV: &str = "CARGO_HOT_RECORD_DIR";
/// Set when the members' hot flags (`build::MEMBER_FLAGS`) come from the wrapper rather than
/// `RUSTFLAGS`, so that dependencies build exactly as in the user's own builds.
pub const MEMBER_FLAGS_ENV: &str = "CARGO_HOT_MEMBER_FLAGS";

/// One recorded rustc invocation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Invocation {
    pub rustc: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

impl Invocation {
    /// Value of `--flag value` or `--flag=value`.
    pub fn arg_value(&self, flag: &str) -> Option<&str> {
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if a == flag {
                return it.next().map(String::as_str);
            }
            if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
        None
    }
    pub fn crate_name(&self) -> Option<&str> {
        self.arg_value("--crate-name")
    }
}

/// File name of the record for a crate: one per crate name and crate type.
pub fn record_path(dir: &Path, crate_name: &str, crate_type: &str) -> PathBuf {
    dir.join(format!("{crate_name}.{crate_type}.json"))
}

/// Wrapper entry point: `argv` = [self, rustc, args...]. Never returns.
pub fn wrap(dir: &Path, argv: &[String]) -> ! {
    let rustc = PathBuf::from(&argv[1]);
    let mut args: Vec<String> = argv[2..].to_vec();
    let compiles = !args
        .iter()
        .any(|a| a == "-" || a.starts_with("--print") || a == "-vV");
    if compiles && std::env::var_os(MEMBER_FLAGS_ENV).is_some() {
        args.extend(crate::build::MEMBER_FLAGS.iter().map(|s| s.to_string()));
    }
    if let Err(e) = record(dir, &rustc, &args) {
        eprintln!("warning: cargo-hot could not record a rustc invocation: {e:#}");
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&rustc).args(&args).exec();
    eprintln!("error: cargo-hot could not run {}: {err}", rustc.display());
    std::process::exit(101);
}

fn record(dir: &Path, rustc: &Path, args: &[String]) -> Result<()> {
    let inv = Invocation {
        rustc: rustc.to_path_buf(),
        args: args.to_vec(),
        env: std::env::vars()
            .filter(|(k, _)| k != RECORD_DIR_ENV && k != MEMBER_FLAGS_ENV)
            .collect(),
        cwd: std::env::current_dir()?,
    };
    let Some(name) = inv.crate_name() else {
        return Ok(());
    };
    // Tests, build scripts and proc-macros are never patched.
    if args
        .iter()
        .any(|a| a == "--test" || a == "-" || a.starts_with("--print"))
        || name.starts_with("build_script_")
        || name == "___"
    {
        return Ok(());
    }
    let ty = inv.arg_value("--crate-type").unwrap_or("bin");
    if ty == "proc-macro" {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let path = record_path(dir, name, ty);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&inv)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

pub fn load(path: &Path) -> Result<Invocation> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}
