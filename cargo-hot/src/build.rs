//! The two builds: the *fat* build of the whole program through cargo (once per start or
//! restart), and the *thin* build of one crate by replaying its recorded rustc invocation
//! (on every save), which keeps the per-codegen-unit objects and skips the final link.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::record::{self, Invocation};

/// Flags `cargo hot` adds to the workspace members (the crates it patches):
///
/// * `-C link-dead-code` keeps functions the program does not use yet, so a patch can call them
///   (on the binary's crate it also keeps the final link from dropping unused sections);
/// * v0 symbol names name closures by their parent, which is how async entries are found, and
///   generic instantiations by their arguments, which is how their copies are told apart.
pub const MEMBER_FLAGS: &[&str] = &["-C", "link-dead-code", "-C", "symbol-mangling-version=v0"];

/// How the hot build selects hot mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HotMode {
    /// `--features DEP/hot` (DEP: how the members name hot-runtime), the members' flags added by
    /// the wrapper: every dependency builds as in the user's own `cargo build`, so its artifacts
    /// can be taken from the user's target directory ([`seed_from`]).
    Feature(String),
    /// `--cfg hot_runtime_hot` and the members' flags for every crate, through `RUSTFLAGS`: for
    /// a package that does not depend on hot-runtime directly. Every dependency is rebuilt.
    Rustflags,
}

/// `RUSTFLAGS` of the user plus ours, as `CARGO_ENCODED_RUSTFLAGS`.
fn encoded_rustflags() -> String {
    let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(s) if !s.is_empty() => s.split('\x1f').map(str::to_string).collect(),
        _ => std::env::var("RUSTFLAGS")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    };
    flags.extend(["--cfg", "hot_runtime_hot"].iter().map(|s| s.to_string()));
    flags.extend(MEMBER_FLAGS.iter().map(|s| s.to_string()));
    flags.join("\x1f")
}

/// Makes the dependencies the user's own builds already compiled available to the hot build:
/// each profile directory of `target_dir` (`debug`, `release`, `<triple>/debug`..) lends its
/// `deps`, `build` and `.fingerprint` entries that `hot_dir` lacks, except the members' own
/// (`skip`: their package and crate names), which the hot build compiles and records itself.
/// Compiled libraries are hard links (rustc writes a new file when it rebuilds one); the rest
/// are copies. Returns how many entries it added. The user's directory is only read.
pub fn seed_from(target_dir: &Path, hot_dir: &Path, skip: &[String]) -> usize {
    let mut profiles = Vec::new();
    for e in std::fs::read_dir(target_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if p == hot_dir || !p.is_dir() {
            continue;
        }
        if p.join(".fingerprint").is_dir() {
            profiles.push(p);
        } else {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if e.path().join(".fingerprint").is_dir() {
                    profiles.push(e.path());
                }
            }
        }
    }
    let mine = |name: &str| {
        let name = name.strip_prefix("lib").unwrap_or(name);
        skip.iter().any(|s| {
            name.strip_prefix(s.as_str())
                .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.'))
        })
    };
    let mut added = 0;
    for from in profiles {
        let Ok(rel) = from.strip_prefix(target_dir) else {
            continue;
        };
        let to = hot_dir.join(rel);
        for sub in ["deps", "build", ".fingerprint"] {
            let Ok(entries) = std::fs::read_dir(from.join(sub)) else {
                continue;
            };
            let _ = std::fs::create_dir_all(to.join(sub));
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let dest = to.join(sub).join(&name);
                if mine(&name) || dest.exists() {
                    continue;
                }
                if copy_tree(&e.path(), &dest, sub == "deps").is_ok() {
                    added += 1;
                }
            }
        }
    }
    added
}

/// Copies `from` (a file or a directory) to `to`; compiled libraries are hard-linked when `link`.
fn copy_tree(from: &Path, to: &Path, link: bool) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)?.flatten() {
            copy_tree(&e.path(), &to.join(e.file_name()), link)?;
        }
        return Ok(());
    }
    let compiled = from
        .extension()
        .is_some_and(|x| ["rlib", "rmeta", "so", "a"].iter().any(|k| x == *k));
    if link && compiled && std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    // Keep the modification time: cargo compares it with its dep-info.
    let meta = std::fs::metadata(from)?;
    std::fs::copy(from, to)?;
    let f = std::fs::File::options().write(true).open(to)?;
    f.set_modified(meta.modified()?)?;
    Ok(())
}

/// Flags forwarded to `cargo build`, already re-emitted in cargo's spelling.
#[derive(Clone, Debug, Default)]
pub struct CargoFlags(pub Vec<OsString>);

pub struct FatBuild {
    pub exe: PathBuf,
    pub records: PathBuf,
    pub elapsed: Duration,
}

/// Result of a build that may fail on the user's code.
pub enum Outcome<T> {
    Built(T),
    /// Compile errors, rendered like cargo renders them.
    Failed(String),
}

/// Builds the program with cargo in `hot_dir` (its own target directory), recording rustc
/// invocations. `pick` chooses the executable among the built ones. `None`: cargo refused
/// `--features DEP/hot` (the package built does not depend on hot-runtime directly); build
/// again in [`HotMode::Rustflags`].
pub fn fat_build(
    flags: &CargoFlags,
    hot_dir: &Path,
    mode: &HotMode,
    pick: &dyn Fn(&[crate::workspace::Built]) -> Result<PathBuf>,
    on_line: &mut dyn FnMut(&str),
) -> Result<Option<Outcome<FatBuild>>> {
    let start = Instant::now();
    let records = hot_dir.join("records");
    let self_exe = std::env::current_exe().context("locating the cargo-hot executable")?;
    let mut cmd = crate::workspace::cargo();
    cmd.arg("build")
        .arg("--message-format=json-diagnostic-rendered-ansi")
        .args(&flags.0)
        .env("CARGO_TARGET_DIR", hot_dir)
        .env("RUSTC_WORKSPACE_WRAPPER", &self_exe)
        .env(record::RECORD_DIR_ENV, &records)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match mode {
        HotMode::Feature(dep) => {
            cmd.arg("--features")
                .arg(format!("{dep}/hot"))
                .env(record::MEMBER_FLAGS_ENV, "1");
        }
        HotMode::Rustflags => {
            cmd.env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags())
                .env_remove("RUSTFLAGS");
        }
    }
    let mut child = cmd.spawn().context("running cargo build")?;
    let stderr = child.stderr.take().unwrap();
    // cargo's own progress lines ("Compiling x") go to stderr: show them as they come, as
    // `cargo run` would, and keep them in case the build fails without a diagnostic.
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // A refused `--features DEP/hot` is retried another way (`Outcome::NoFeature`).
            if !line.contains("does not contain this feature") {
                eprintln!("{line}");
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let (mut diagnostics, exes) = read_messages(child.stdout.take().unwrap(), on_line);
    let status = child.wait()?;
    let cargo_err = err_thread.join().unwrap_or_default();
    if !status.success() {
        if matches!(mode, HotMode::Feature(_))
            && cargo_err.contains("does not contain this feature")
        {
            return Ok(None);
        }
        if diagnostics.is_empty() && cargo_err.is_empty() {
            diagnostics = format!("cargo build failed ({status})\n");
        }
        return Ok(Some(Outcome::Failed(diagnostics)));
    }
    let exe = pick(&exes)?;
    Ok(Some(Outcome::Built(FatBuild {
        exe,
        records,
        elapsed: start.elapsed(),
    })))
}

/// cargo's JSON messages: error diagnostics (returned, rendered), other diagnostics (given to
/// `on_line` as they come), and the executables built.
fn read_messages(
    stdout: std::process::ChildStdout,
    on_line: &mut dyn FnMut(&str),
) -> (String, Vec<crate::workspace::Built>) {
    let mut diagnostics = String::new();
    let mut exes = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match v["reason"].as_str() {
            Some("compiler-message") => {
                if let Some(r) = v["message"]["rendered"].as_str() {
                    let is_error = v["message"]["level"]
                        .as_str()
                        .is_some_and(|l| l.starts_with("error"));
                    if is_error {
                        diagnostics.push_str(r);
                    } else {
                        on_line(r);
                    }
                }
            }
            Some("compiler-artifact") => {
                if let Some(exe) = v["executable"].as_str() {
                    let name = v["target"]["name"].as_str().unwrap_or("").to_string();
                    let kinds = v["target"]["kind"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    exes.push((name, kinds, PathBuf::from(exe)));
                }
            }
            _ => {}
        }
    }
    (diagnostics, exes)
}

/// One crate that can be rebuilt thin: its recorded invocation and its own output directories.
pub struct ThinCrate {
    pub name: String,
    pub manifest_dir: PathBuf,
    pub inv: Invocation,
    pub out_dir: PathBuf,
    pub incr_dir: PathBuf,
    /// Whether rustc optimizes this crate (`-C opt-level` other than 0): it then inlines across
    /// functions, so a function's code can change with another function's source.
    pub optimized: bool,
}

/// The objects of one thin build, by codegen-unit name.
pub struct ThinObjects {
    pub objects: BTreeMap<String, PathBuf>,
    /// The source files rustc read (its dep-info).
    pub sources: HashSet<PathBuf>,
    pub elapsed: Duration,
}

impl ThinCrate {
    pub fn new(record_path: &Path, thin_root: &Path) -> Result<ThinCrate> {
        let inv = record::load(record_path)?;
        let name = inv
            .crate_name()
            .context("record without --crate-name")?
            .to_string();
        let manifest_dir = PathBuf::from(
            inv.env
                .get("CARGO_MANIFEST_DIR")
                .context("record without CARGO_MANIFEST_DIR")?,
        );
        let ty = inv.arg_value("--crate-type").unwrap_or("bin").to_string();
        // cargo's `-C extra-filename` tells builds of one crate apart (profile, features), so
        // that a debug and a release run do not share objects, rlibs or incremental state.
        let extra = codegen_value(&inv.args, "extra-filename").unwrap_or_default();
        let dir = thin_root.join(format!("{name}.{ty}{extra}"));
        Ok(ThinCrate {
            optimized: codegen_value(&inv.args, "opt-level").is_some_and(|v| v != "0"),
            name,
            manifest_dir,
            out_dir: dir.join("out"),
            incr_dir: dir.join("incremental"),
            inv,
        })
    }

    pub fn is_bin(&self) -> bool {
        self.inv.arg_value("--crate-type").unwrap_or("bin") == "bin"
    }

    /// The crates this one was compiled against: (`--extern` name, path).
    pub fn externs(&self) -> impl Iterator<Item = (&str, &str)> {
        let args = &self.inv.args;
        args.iter()
            .zip(args.iter().skip(1))
            .filter(|(flag, _)| *flag == "--extern")
            .filter_map(|(_, v)| v.split_once('='))
    }

    /// Whether this crate was compiled against the library `name`.
    pub fn depends_on(&self, name: &str) -> bool {
        self.externs().any(|(n, _)| n == name)
    }

    /// The rlib of this crate's last thin build, if it is a library that has one.
    pub fn thin_rlib(&self) -> Option<PathBuf> {
        let extra = codegen_value(&self.inv.args, "extra-filename").unwrap_or_default();
        let rlib = self.out_dir.join(format!("lib{}{extra}.rlib", self.name));
        rlib.is_file().then_some(rlib)
    }

    /// The recorded arguments with the output redirected and the link skipped; `swap` replaces
    /// the `--extern` path of the named crates (workspace libraries rebuilt thin).
    fn thin_args(&self, swap: &[(String, PathBuf)]) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.inv.args.iter().peekable();
        let dropped_c = [
            "incremental=",
            "linker=",
            "debuginfo=",
            "save-temps",
            "strip=",
        ];
        while let Some(a) = it.next() {
            if a == "--extern" {
                if let Some((name, _)) = it.peek().and_then(|v| v.split_once('=')) {
                    if let Some((_, path)) = swap.iter().find(|(n, _)| n == name) {
                        out.push(a.clone());
                        out.push(format!("{name}={}", path.display()));
                        it.next();
                        continue;
                    }
                }
            }
            if a == "--out-dir" || a == "--emit" || a == "-o" {
                it.next();
                continue;
            }
            if a.starts_with("--out-dir=") || a.starts_with("--emit=") {
                continue;
            }
            if a == "-C" {
                if let Some(v) = it.peek() {
                    if dropped_c.iter().any(|d| v.starts_with(d)) {
                        it.next();
                        continue;
                    }
                }
            } else if let Some(v) = a.strip_prefix("-C") {
                if dropped_c.iter().any(|d| v.starts_with(d)) {
                    continue;
                }
            }
            out.push(a.clone());
        }
        out.extend([
            "--emit=dep-info,link".to_string(),
            format!("--out-dir={}", self.out_dir.display()),
            format!("-Cincremental={}", self.incr_dir.display()),
            "-Csave-temps".into(),
            // Debug info is not needed to run a patch and costs time to generate and link.
            "-Cdebuginfo=0".into(),
            // The final link is skipped: only the per-codegen-unit objects are used.
            "-Clinker=true".into(),
        ]);
        out
    }

    /// Replays rustc. Errors come back rendered.
    pub fn build(&self, swap: &[(String, PathBuf)]) -> Result<Outcome<ThinObjects>> {
        Ok(self
            .build_until(&mut || false, swap)?
            .expect("a build nothing supersedes completes"))
    }

    /// Like `build`, but gives up (returning `None`) as soon as `superseded()` says a newer
    /// save arrived: the build starts on the first event of a burst, and only the build of the
    /// last content completes.
    pub fn build_until(
        &self,
        superseded: &mut dyn FnMut() -> bool,
        swap: &[(String, PathBuf)],
    ) -> Result<Option<Outcome<ThinObjects>>> {
        let start = Instant::now();
        std::fs::create_dir_all(&self.out_dir)?;
        for e in std::fs::read_dir(&self.out_dir)? {
            let p = e?.path();
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // The rlib stays: until a build succeeds, it is the library as the program runs it.
            if n.ends_with(".o") || n.ends_with(".bc") || n.ends_with(".d") {
                let _ = std::fs::remove_file(&p);
            }
        }
        let mut cmd = Command::new(&self.inv.rustc);
        yield_cpu(&mut cmd);
        let mut child = cmd
            .args(self.thin_args(swap))
            .env_clear()
            .envs(&self.inv.env)
            .current_dir(&self.inv.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.inv.rustc.display()))?;
        // Read stderr on the side: a long diagnostic must not fill the pipe and stall rustc.
        let mut pipe = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = std::io::Read::read_to_end(&mut pipe, &mut b);
            b
        });
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if superseded() {
                // rustc's incremental session is discarded; the next build reuses the last
                // finished one.
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let stderr = reader.join().unwrap_or_default();
        if !status.success() {
            return Ok(Some(Outcome::Failed(render_diagnostics(&stderr))));
        }
        let mut out = self.outputs()?;
        out.elapsed = start.elapsed();
        Ok(Some(Outcome::Built(out)))
    }

    /// What a finished build left in the output directory: one object per codegen unit, and
    /// the source files rustc read (its dep-info).
    fn outputs(&self) -> Result<ThinObjects> {
        let mut objects = BTreeMap::new();
        let mut sources = HashSet::new();
        for e in std::fs::read_dir(&self.out_dir)? {
            let p = e?.path();
            let Some(n) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if n.ends_with(".d") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                sources.extend(dep_info_files(&text).map(|f| self.inv.cwd.join(f)));
                continue;
            }
            // <crate>[-<extra>].<cgu>.<session>.rcgu.o
            let cgu = n
                .strip_suffix(".rcgu.o")
                .and_then(|stem| stem.rsplit_once('.'))
                .and_then(|(rest, _session)| rest.split_once('.'))
                .map(|(_crate, cgu)| cgu);
            if let Some(cgu) = cgu {
                objects.insert(cgu.to_string(), p);
            }
        }
        if objects.is_empty() {
            bail!("rustc left no object files in {}", self.out_dir.display());
        }
        Ok(ThinObjects {
            objects,
            sources,
            elapsed: Duration::ZERO,
        })
    }
}

/// Value of codegen option `-C key=value` (or `-Ckey=value`) in rustc arguments.
fn codegen_value<'a>(args: &'a [String], key: &str) -> Option<&'a str> {
    let mut prev_c = false;
    for a in args {
        let opt = if prev_c {
            Some(a.as_str())
        } else {
            a.strip_prefix("-C")
        };
        prev_c = a == "-C";
        if let Some(v) = opt.and_then(|o| o.strip_prefix(key)?.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}

/// The files a dep-info (`.d`) file lists: each dependency also stands alone as `path:`.
fn dep_info_files(text: &str) -> impl Iterator<Item = PathBuf> + '_ {
    text.lines()
        .filter_map(|l| l.strip_suffix(':'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| PathBuf::from(l.replace("\\ ", " ")))
}

/// Niceness of the patch build's rustc and linker (0 = normal, 19 = lowest), for where the
/// `SCHED_IDLE` policy is refused.
const PATCH_BUILD_NICENESS: libc::c_int = 19;

/// Makes a patch-build process yield the CPU to the running program: on a machine the program
/// keeps busy, a patch takes longer instead of the program slowing down (BENCHMARKS.md, "Under
/// load"). On an idle machine this changes nothing. The policy is `SCHED_IDLE`: a wakeup of the
/// program preempts the compiler at once, where niceness 19 alone still let rustc finish its
/// slice (on examples/server under wrk, 19 % throughput dip while 20 patches landed against
/// 8 %, and a p90 save-to-response of 1.6 s against 0.5 s).
pub fn yield_cpu(cmd: &mut Command) {
    // SAFETY: setpriority(2) and sched_setscheduler(2) are async-signal-safe system calls that
    // only lower the child's own priority; nothing is allocated between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            libc::setpriority(libc::PRIO_PROCESS, 0, PATCH_BUILD_NICENESS);
            let idle = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle);
            Ok(())
        });
    }
}

/// Runs `work` (a patch's hashing, unit selection, rewrite and link: tens of milliseconds of
/// cargo hot's own CPU per save) on a thread of its own under `SCHED_IDLE`, like the patch
/// build's processes, and waits for it. A thread of its own because a thread cannot return to
/// normal priority unprivileged, and the session's thread starts the program, which must not
/// inherit idle priority.
pub fn at_idle_priority<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let idle = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets the calling thread's own policy; `idle` outlives the call.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
            work()
        });
        match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// rustc's JSON diagnostics to the text cargo would show: errors only (warnings were shown by
/// the fat build and would repeat on every save).
pub fn render_diagnostics(stderr: &[u8]) -> String {
    let mut out = String::new();
    for line in String::from_utf8_lossy(stderr).lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                if v["$message_type"].as_str() == Some("diagnostic")
                    && v["level"].as_str().is_some_and(|l| l.starts_with("error"))
                {
                    if let Some(r) = v["rendered"].as_str() {
                        out.push_str(r);
                    }
                }
            }
            Err(_) => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_builds_run_at_idle_priority() {
        // The child's own /proc/self/stat: field 19 is its niceness, field 41 its policy.
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/stat");
        yield_cpu(&mut cmd);
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        // The fields after the command name (in parentheses) start at field 3.
        let rest = &out[out.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        assert_eq!(fields[19 - 3], "19", "niceness in {out}");
        assert_eq!(
            fields[41 - 3],
            libc::SCHED_IDLE.to_string(),
            "policy in {out}"
        );
    }

    #[test]
    fn patch_work_runs_at_idle_priority_and_the_caller_keeps_its_own() {
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        assert_eq!(at_idle_priority(policy), libc::SCHED_IDLE);
        assert_eq!(policy(), before);
    }
}
