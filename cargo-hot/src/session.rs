//! `cargo hot run`: the session's state machine. Everything it reacts to arrives as one
//! [`Event`]; each arm delegates to the owner of the work (the patcher, the program, the build).
//!
//! | state   | event                      | what happens                                      | then    |
//! |---------|----------------------------|---------------------------------------------------|---------|
//! | Idle    | save                       | build and launch (first build, or after an exit)  | Running or Idle |
//! | Running | save of patchable code     | thin build → link → send; a newer save cancels    | Running |
//! | Running | save that does not compile | rustc's error shown; the program keeps its code   | Running |
//! | Running | save that needs a restart  | build the new program while the old one runs;     | Running |
//! |         | (or `r`)                   | only a good build replaces it (stop old → start)  |         |
//! | Running | program exited or crashed  | reported, with the last patch applied             | Idle    |
//! | any     | `q`, Ctrl-C, SIGTERM       | stop the program, exit                            | —       |
//!
//! A save made while the program starts (before its baseline is known) is handled like any
//! other: patched against the code the program was built from. The program never outlives
//! cargo hot (see `program`).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::build::{self, CargoFlags, Outcome, ThinCrate};
use crate::event::{self, Event, Events};
use crate::host::{HostImage, demangle};
use crate::patcher::{Patcher, Restart, Verdict};
use crate::program::{self, Launch, Program};
use crate::rude::Snapshot;
use crate::ui;
use crate::workspace::{self, Workspace};

/// What to do when an edit cannot be patched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RestartPolicy {
    Restart,
    KeepRunning,
}

pub struct Options {
    pub flags: CargoFlags,
    pub program_args: Vec<OsString>,
    pub manifest_path: Option<PathBuf>,
    pub package: Option<String>,
    pub bin: Option<String>,
    pub example: Option<String>,
    pub target_dir: Option<PathBuf>,
    pub restart: RestartPolicy,
    pub debounce: Duration,
    pub poll: bool,
    pub extra_watch: Vec<PathBuf>,
    pub ignores: Vec<PathBuf>,
    pub build_only: bool,
    /// Addresses cargo hot listens on for the program, across restarts.
    pub listen: Vec<String>,
}

enum State {
    /// Nothing runs: the first build failed, or the program exited. A save builds it again.
    Idle,
    Running(Box<Run>),
}

/// A running program and the patch pipeline for it.
struct Run {
    program: Program,
    patcher: Patcher,
}

struct Session {
    opts: Options,
    ws: Workspace,
    patch_dir: PathBuf,
    /// cargo hot owns the terminal: `r`/`q` are its keys, other lines go to the program.
    keys: bool,
    /// Sockets bound once and passed to every run of the program.
    listeners: Vec<std::net::TcpListener>,
    state: State,
}

pub fn run(opts: Options) -> Result<i32> {
    let ws = Workspace::load(opts.manifest_path.as_deref(), opts.target_dir.as_deref())?;
    std::fs::create_dir_all(&ws.hot_dir)?;
    if opts.build_only {
        return Ok(match fat_build(&opts, &ws, &program_name(&opts))? {
            Some(fat) => {
                println!("{}", fat.exe.display());
                0
            }
            None => 101,
        });
    }
    let patch_dir = ws
        .hot_dir
        .join("patches")
        .join(std::process::id().to_string());
    create_private_dir(&patch_dir)?;
    let _cleanup = RemoveOnDrop(patch_dir.clone());

    let mut events = Events::new();
    events.catch_signals(|| {
        program::stop_current();
        std::process::exit(130);
    });
    let mut dirs = ws.watched_dirs();
    dirs.extend(opts.extra_watch.iter().cloned());
    let filter = crate::watch::Filter::new(&ws.root, &ws.target_dir, opts.ignores.clone());
    let _watcher = events.watch(&dirs, filter, opts.debounce, opts.poll)?;
    let keys = std::io::stdin().is_terminal();
    ui::set_keys(keys);
    if keys {
        events.read_keys();
    }
    let listeners = bind_all(&opts.listen)?;
    let mut s = Session {
        opts,
        ws,
        patch_dir,
        keys,
        listeners,
        state: State::Idle,
    };
    s.replace_program(&mut events, "")?;
    loop {
        // Patches waiting for the program's `apply_pending()` are answered between events.
        let poll = matches!(&s.state, State::Running(r) if r.patcher.has_queued());
        let Some(ev) = events.next(poll.then_some(Duration::from_millis(50))) else {
            if poll {
                s.late_answers();
                continue;
            }
            return Ok(0);
        };
        match ev {
            Event::Interrupt => {
                s.stop("interrupted");
                return Ok(130);
            }
            Event::Key(k) if k.trim() == "q" => {
                s.stop("quit");
                return Ok(0);
            }
            Event::Key(k) if k.trim() == "r" => s.replace_program(&mut events, "requested")?,
            Event::Key(line) => s.type_line(&line),
            Event::WatchTrouble(e) => ui::bad("error", &e),
            Event::Exited(pid, status) => s.on_exit(pid, status),
            Event::Saved(paths) => s.on_save(paths, &mut events)?,
        }
    }
}

impl Session {
    fn on_save(&mut self, mut paths: Vec<PathBuf>, events: &mut Events) -> Result<()> {
        // Saves already queued join this build.
        events.take_saves(&mut paths);
        let State::Running(run) = &mut self.state else {
            return self.replace_program(events, "");
        };
        let not_patched = self
            .ws
            .outside_change(&paths)
            .map(|p| Restart::PathDependency(p.clone()))
            .or_else(|| {
                let libs = &run.patcher.host.shared_libs;
                let (p, lib) = self.ws.shared_library_change(&paths, libs)?;
                Some(Restart::SharedLibrary {
                    path: p.clone(),
                    lib,
                })
            });
        let verdict = match not_patched {
            Some(why) => Ok(Verdict::Restart(why)),
            None => loop {
                // A save during the build cancels it; the next build has every path.
                let mut newer = Vec::new();
                let mut superseded = || events.take_saves(&mut newer);
                let (patcher, program) = (&mut run.patcher, &mut run.program);
                match build::at_idle_priority(|| patcher.on_save(&paths, program, &mut superseded))
                {
                    Ok(Verdict::Superseded) if !event::interrupted() => {
                        ui::dim(
                            "Superseded",
                            "by a newer save; building again with every change",
                        );
                        paths.extend(newer);
                        paths.sort();
                        paths.dedup();
                    }
                    other => break other,
                }
            },
        };
        match verdict {
            Ok(Verdict::Done | Verdict::Superseded) => {}
            Ok(Verdict::Restart(why)) if self.opts.restart == RestartPolicy::Restart => {
                self.replace_program(events, &why.to_string())?
            }
            Ok(Verdict::Restart(why)) => ui::warn(
                "Refused",
                &format!(
                    "{why}; the program keeps its current code (--no-restart): {}, or edit it back",
                    ui::restart_hint()
                ),
            ),
            Err(e) => ui::bad("error", &format!("{e:#}")),
        }
        Ok(())
    }

    /// Builds a new program and, only if that succeeds, stops the running one and starts the
    /// new one. `why` is empty for the first start.
    fn replace_program(&mut self, events: &mut Events, why: &str) -> Result<()> {
        let running = matches!(self.state, State::Running(_));
        if running {
            ui::warn(
                "Restarting",
                &format!(
                    "{}: {why}; building the new program while the old one runs",
                    self.program_name()
                ),
            );
        }
        // What the build compiles: a save made from here on is patched into the new program.
        let snapshot = Snapshot::take(&self.ws.member_dirs);
        let Some(Built {
            fat,
            host,
            crates,
            lib_dirs,
        }) = self.build()?
        else {
            if event::interrupted() {
                return Ok(());
            }
            if running {
                ui::bad(
                    "error",
                    "the new program could not be built; the old one keeps running",
                );
            } else {
                ui::warn("Waiting", "for a change to build again");
            }
            return Ok(());
        };
        // The old program's `kept!` values go to the new one.
        let kept = self.keep_values();
        // Stop the old program first: it may hold the ports and files the new one needs.
        self.state = State::Idle;
        let launch = Launch {
            exe: &fat.exe,
            args: &self.opts.program_args,
            build_id: &host.build_id,
            patch_dir: &self.patch_dir,
            lib_dirs,
            forward_stdin: self.keys,
            listeners: &self
                .listeners
                .iter()
                .map(|l| l.as_raw_fd())
                .collect::<Vec<_>>(),
            kept: kept.as_deref(),
        };
        let program = Program::launch(&launch, events.sender())?;
        let mut patcher = Patcher::new(host, crates, snapshot, &self.patch_dir);
        let saved_meanwhile = patcher.baseline(&self.ws.member_dirs)?;
        ui::good(
            "Watching",
            &format!(
                "{} crate(s) for changes; {} hot fn(s) patchable",
                patcher.crates.len(),
                patcher.hot_fn_count()
            ),
        );
        if let Some(first) = saved_meanwhile.first() {
            ui::warn(
                "Changed",
                &format!(
                    "{} while the program started; patching it in",
                    first.display()
                ),
            );
            events.push_front(Event::Saved(saved_meanwhile));
        }
        self.state = State::Running(Box::new(Run { program, patcher }));
        Ok(())
    }

    /// The fat build, the host image and the crates it can thin-build; `None` if it failed
    /// (diagnostics shown).
    fn build(&self) -> Result<Option<Built>> {
        let mut retried = false;
        loop {
            let Some(fat) = fat_build(&self.opts, &self.ws, &self.program_name())? else {
                return Ok(None);
            };
            let crates_rustc = record_rustc(&fat);
            let lib_dirs = lib_dirs(&fat.exe, crates_rustc.as_deref());
            let host = HostImage::load(&fat.exe, &lib_dirs)?;
            let crates = thin_crates(&self.ws, &fat, &host)?;
            if crates.iter().any(|c| c.is_bin()) || retried {
                return Ok(Some(Built {
                    fat,
                    host,
                    crates,
                    lib_dirs,
                }));
            }
            // cargo found the build fresh (e.g. the project was copied or moved, and artifacts
            // are reused), so rustc never ran and nothing was recorded: rebuild the members once.
            ui::warn(
                "Rebuilding",
                "the workspace's crates, to record how rustc builds them",
            );
            self.ws.clean_members();
            retried = true;
        }
    }

    /// Has the running program write its `kept!` values for the next run; the file, if any.
    fn keep_values(&mut self) -> Option<PathBuf> {
        let State::Running(run) = &mut self.state else {
            return None;
        };
        run.program.link?;
        let path = self
            .patch_dir
            .join(format!("kept-{}.json", run.program.pid));
        match run.program.keep(&path) {
            Ok(0) => None,
            Ok(n) => {
                ui::good("Kept", &format!("{n} `kept!` value(s) for the new program"));
                Some(path)
            }
            Err(e) => {
                ui::warn(
                    "Lost",
                    &format!(
                        "the `kept!` values could not be saved ({e:#}); the new program initializes them"
                    ),
                );
                None
            }
        }
    }

    fn on_exit(&mut self, pid: u32, status: ExitStatus) {
        let State::Running(run) = &self.state else {
            return;
        };
        if run.program.pid != pid {
            return; // a program already replaced
        }
        let last = match &run.patcher.last_patch {
            Some(p) => format!("the last patch applied was {p}"),
            None => "no patch had been applied".into(),
        };
        let msg = format!(
            "{} ({status}); {last}; it will run again after the next successful build",
            self.program_name()
        );
        use std::os::unix::process::ExitStatusExt;
        if status.signal().is_some() {
            ui::bad("Crashed", &msg);
        } else {
            ui::warn("Exited", &msg);
        }
        self.state = State::Idle;
    }

    fn late_answers(&mut self) {
        if let State::Running(run) = &mut self.state {
            while let Some(m) = run.program.try_answer() {
                run.patcher.late_answer(m);
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        if let State::Running(run) = &mut self.state {
            run.program.type_line(line);
        }
    }

    fn stop(&mut self, why: &str) {
        if let State::Running(run) = std::mem::replace(&mut self.state, State::Idle) {
            if !run.program.has_exited() {
                ui::warn("Stopping", &format!("{} ({why})", self.program_name()));
            }
        }
    }

    fn program_name(&self) -> String {
        program_name(&self.opts)
    }
}

fn program_name(o: &Options) -> String {
    o.example
        .clone()
        .or(o.bin.clone())
        .or(o.package.clone())
        .unwrap_or_else(|| "the program".into())
}

/// Binds the `--listen` addresses, once for the whole session.
fn bind_all(addrs: &[String]) -> Result<Vec<std::net::TcpListener>> {
    let listeners = addrs
        .iter()
        .map(|a| {
            std::net::TcpListener::bind(a.as_str()).with_context(|| {
                format!(
                    "listening on {a} for the program (is another program or cargo hot using it?)"
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for (a, l) in addrs.iter().zip(&listeners) {
        let at = l.local_addr().map_or(a.clone(), |x| x.to_string());
        ui::good(
            "Listening",
            &format!("on {at}; the program gets this socket on every run"),
        );
    }
    Ok(listeners)
}

/// A program built and ready to launch.
struct Built {
    fat: build::FatBuild,
    host: HostImage,
    crates: Vec<ThinCrate>,
    /// Where its shared libraries are.
    lib_dirs: Vec<PathBuf>,
}

/// The rustc the build ran (from any record), to ask it where the toolchain's libraries are.
fn record_rustc(fat: &build::FatBuild) -> Option<PathBuf> {
    let first = std::fs::read_dir(&fat.records)
        .ok()?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
    crate::record::load(&first.path()).ok().map(|inv| inv.rustc)
}

/// Set once `--features DEP/hot` was refused (the package built does not depend on hot-runtime
/// directly): later builds of this session use `RUSTFLAGS`.
static RUSTFLAGS_MODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The whole program through cargo; `None` if it did not build (errors shown).
fn fat_build(opts: &Options, ws: &Workspace, name: &str) -> Result<Option<build::FatBuild>> {
    use std::sync::atomic::Ordering::Relaxed;
    ui::good(
        "Building",
        &format!("{name} (hot build in {})", ws.hot_dir.display()),
    );
    let pick = |exes: &[workspace::Built]| {
        workspace::pick_exe(opts.bin.as_deref(), opts.example.as_deref(), exes)
    };
    let mut outcome = None;
    if let (Some(dep), false) = (&ws.hot_runtime_dep, RUSTFLAGS_MODE.load(Relaxed)) {
        // Dependencies build as in the user's own builds: take the ones already compiled.
        let seeded = build::seed_from(&ws.target_dir, &ws.hot_dir, &ws.member_names);
        if seeded > 0 && crate::ui::debugging() {
            eprintln!(
                "[debug] took {seeded} compiled dependencies from the user's target directory"
            );
        }
        let mode = build::HotMode::Feature(dep.clone());
        outcome = build::fat_build(&opts.flags, &ws.hot_dir, &mode, &pick, &mut |w| {
            ui::diagnostics(w)
        })?;
    }
    if outcome.is_none() {
        RUSTFLAGS_MODE.store(true, Relaxed);
        let mode = build::HotMode::Rustflags;
        outcome = build::fat_build(&opts.flags, &ws.hot_dir, &mode, &pick, &mut |w| {
            ui::diagnostics(w)
        })?;
    }
    let Some(outcome) = outcome else {
        anyhow::bail!("cargo refused the features of the hot build");
    };
    match outcome {
        Outcome::Built(fat) => {
            ui::good(
                "Finished",
                &format!("hot build in {:.2}s", fat.elapsed.as_secs_f64()),
            );
            Ok(Some(fat))
        }
        Outcome::Failed(_) if event::interrupted() => Ok(None),
        Outcome::Failed(diag) => {
            ui::diagnostics(&diag);
            ui::bad("error", "the program could not be built");
            Ok(None)
        }
    }
}

/// The workspace members this program was built from, libraries first (the order a patch is
/// built in). The target directory may hold records of other programs (other packages of the
/// workspace, or other workspaces sharing it): keep this workspace's crates linked into this
/// binary.
fn thin_crates(ws: &Workspace, fat: &build::FatBuild, host: &HostImage) -> Result<Vec<ThinCrate>> {
    let linked = crates_in(host);
    let mut crates = Vec::new();
    for e in std::fs::read_dir(&fat.records)? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(c) = ThinCrate::new(&p, &ws.hot_dir.join("thin")) else {
            continue;
        };
        if ws.member_dirs.contains(&c.manifest_dir)
            && linked.contains(c.name.as_str())
            && c.inv.cwd.is_dir()
        {
            crates.push(c);
        }
    }
    crates.sort_by_key(|c| c.is_bin());
    Ok(crates)
}

/// Names of the crates with code in the host binary (v0 symbol names start with the crate).
fn crates_in(host: &HostImage) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for k in host.symbols.keys().filter(|k| k.starts_with("_R")) {
        let d = demangle(k);
        let d = d.trim_start_matches('<');
        if let Some((krate, _)) = d.split_once("::") {
            out.insert(krate.to_string());
        }
    }
    out
}

/// Where the program's shared libraries are, as `cargo run` tells the dynamic loader: the
/// build's `deps` directory (Rust `dylib` dependencies, e.g. Bevy's `dynamic_linking`) and the
/// toolchain's target libraries (a dynamically linked std).
fn lib_dirs(exe: &Path, rustc: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = exe.parent() {
        dirs.push(dir.join("deps"));
        dirs.push(dir.to_path_buf());
    }
    let rustc = rustc.map_or_else(|| PathBuf::from("rustc"), Path::to_path_buf);
    let sysroot = std::process::Command::new(rustc)
        .args(["--print", "target-libdir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    dirs.extend(sysroot);
    dirs
}

fn create_private_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if p.exists() {
        std::fs::remove_dir_all(p)?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("creating {}", p.display()))?;
    Ok(())
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
