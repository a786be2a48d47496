//! `cargo hot run`: build, launch, watch, and on each save patch the running program (or
//! restart it when the edit cannot be patched).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hot_runtime::protocol::{FnRebind, Message};

use crate::build::{self, CargoFlags, Outcome, ThinCrate};
use crate::host::{HostImage, demangle};
use crate::link::{self, Refused};
use crate::rude::Snapshot;
use crate::ui;

/// Pid of the running program, for the signal handler.
static CURRENT_PROGRAM: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub enum Event {
    Changed(Vec<PathBuf>),
    WatchError(String),
    ProgramExited(u32, ExitStatus),
    Key(String),
    Quit,
}

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
}

struct Workspace {
    root: PathBuf,
    /// Package names of the workspace members.
    members: Vec<String>,
    /// Directories of local path dependencies outside the workspace: watched, and a change
    /// there restarts the program (cargo builds them; their rustc runs are not recorded).
    path_deps: Vec<PathBuf>,
    hot_dir: PathBuf,
    member_dirs: Vec<PathBuf>,
    target_dir: PathBuf,
}

fn workspace(opts: &Options) -> Result<Workspace> {
    let mut cmd = cargo_metadata::MetadataCommand::new();
    if let Some(m) = &opts.manifest_path {
        cmd.manifest_path(m);
    }
    if let Some(c) = std::env::var_os("CARGO") {
        cmd.cargo_path(c);
    }
    let md = cmd
        .exec()
        .context("reading the workspace with `cargo metadata`")?;
    let target_dir: PathBuf = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| md.target_directory.clone().into());
    let member_dirs = md
        .workspace_packages()
        .iter()
        .filter_map(|p| {
            p.manifest_path
                .parent()
                .map(|d| PathBuf::from(d.as_std_path()))
        })
        .collect();
    let members = md
        .workspace_packages()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let path_deps = md
        .packages
        .iter()
        .filter(|p| p.source.is_none() && !md.workspace_members.contains(&p.id))
        .filter_map(|p| {
            p.manifest_path
                .parent()
                .map(|d| PathBuf::from(d.as_std_path()))
        })
        .collect();
    Ok(Workspace {
        root: md.workspace_root.clone().into(),
        members,
        path_deps,
        hot_dir: target_dir.join("hot"),
        member_dirs,
        target_dir,
    })
}

fn pick_exe(opts: &Options) -> impl Fn(&[(String, Vec<String>, PathBuf)]) -> Result<PathBuf> + '_ {
    move |exes| {
        let want_kind = if opts.example.is_some() {
            "example"
        } else {
            "bin"
        };
        let want_name = opts.example.as_ref().or(opts.bin.as_ref());
        let cands: Vec<_> = exes
            .iter()
            .filter(|(name, kinds, _)| {
                kinds.iter().any(|k| k == want_kind) && want_name.is_none_or(|w| w == name)
            })
            .collect();
        match cands.as_slice() {
            [one] => Ok(one.2.clone()),
            [] => bail!("no binary to run was built; pass `--bin NAME` or `--example NAME`"),
            many => bail!(
                "`cargo hot run` could not determine which binary to run; use the `--bin` option to specify a binary.\navailable binaries: {}",
                many.iter()
                    .map(|c| c.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A launched program and its control channel.
struct Program {
    pid: u32,
    ctl: UnixStream,
    replies: Receiver<Message>,
    base: u64,
    next_addr: u64,
    reserve_end: u64,
    connected: bool,
    /// The program's stdin when cargo hot owns the terminal: lines that are not `r`/`q` go here.
    stdin: Option<std::process::ChildStdin>,
}

impl Drop for Program {
    fn drop(&mut self) {
        // Every way out of the session (quit, error, restart) ends the program it started.
        stop(self.pid);
    }
}

struct Patcher {
    host: HostImage,
    crates: Vec<ThinCrate>,
    /// Content hash of each codegen unit as running in the program, per crate.
    running: Vec<HashMap<String, u64>>,
    /// Symbol index of each codegen unit as running, per crate.
    index: Vec<HashMap<String, link::ObjectIndex>>,
    snapshot: Snapshot,
    patch_dir: PathBuf,
    seq: u64,
    faults: crate::fault::Faults,
    /// Address of the last patch the program loaded.
    last_loaded: Option<u64>,
    /// "patch N (fns)" of the last patch applied, to name it if the program dies.
    last_patch: Option<String>,
    /// Patches the program loaded but has not applied yet (manual apply mode), by sequence
    /// number, to report their `applied` when it comes.
    queued: HashMap<u64, PatchFns>,
}

fn hash_file(p: &Path) -> Result<u64> {
    let bytes = std::fs::read(p)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Ok(h.finish())
}

pub fn run(opts: Options) -> Result<i32> {
    let ws = workspace(&opts)?;
    std::fs::create_dir_all(&ws.hot_dir)?;
    let patch_dir = ws
        .hot_dir
        .join("patches")
        .join(std::process::id().to_string());
    create_private_dir(&patch_dir)?;
    let _cleanup = RemoveOnDrop(patch_dir.clone());

    let (tx, rx) = channel::<Event>();
    {
        let tx = tx.clone();
        let _ = ctrlc::set_handler(move || {
            let _ = tx.send(Event::Quit);
            // The main loop may be busy in a build; do not let a second signal or a slow build
            // keep the program alive without its supervisor.
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_secs(2));
                let pid = CURRENT_PROGRAM.load(std::sync::atomic::Ordering::Acquire);
                if pid != 0 {
                    stop(pid);
                }
                std::process::exit(130);
            });
        });
    }

    let mut watch_dirs = ws.member_dirs.clone();
    watch_dirs.extend(ws.path_deps.iter().cloned());
    watch_dirs.extend(opts.extra_watch.iter().cloned());
    let filter = crate::watch::Filter::new(&ws.root, &ws.target_dir, opts.ignores.clone());
    let _watcher = if opts.build_only {
        None
    } else {
        Some(crate::watch::start(
            &watch_dirs,
            filter,
            opts.debounce,
            opts.poll,
            tx.clone(),
        )?)
    };

    let keys = !opts.build_only && std::io::stdin().is_terminal();
    if keys {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(Event::Key(line)).is_err() {
                    break;
                }
            }
        });
    }

    let mut state: Option<(Program, Patcher)> = None;
    // Events that arrived while a build was watching for newer saves.
    let mut deferred: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    let mut need_start = true;
    loop {
        if need_start {
            need_start = false;
            match start(&opts, &ws, &patch_dir, &tx, keys)? {
                StartOutcome::Started(p, pa) => state = Some((p, pa)),
                StartOutcome::BuildOnly => return Ok(0),
                StartOutcome::Failed => {
                    if opts.build_only {
                        return Ok(101);
                    }
                    ui::warn("Waiting", "for a change to build again");
                }
            }
        }
        // While patches wait for the program's `apply_pending()` (manual apply mode), their
        // answers arrive between saves: look for them every 50 ms.
        let queued = state.as_ref().is_some_and(|(_, pa)| !pa.queued.is_empty());
        let ev = match deferred.pop_front() {
            Some(ev) => ev,
            None if queued => match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some((prog, pa)) = state.as_mut() {
                        while let Ok(m) = prog.replies.try_recv() {
                            late_answer(pa, m);
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            },
            None => match rx.recv() {
                Ok(ev) => ev,
                Err(_) => return Ok(0),
            },
        };
        match ev {
            Event::Quit => {
                if let Some((p, _)) = &state {
                    stop(p.pid);
                }
                return Ok(130);
            }
            Event::Key(k) if k.trim() == "q" => {
                if let Some((p, _)) = &state {
                    stop(p.pid);
                }
                return Ok(0);
            }
            Event::Key(k) if k.trim() == "r" => {
                if let Some((p, _)) = state.take() {
                    stop(p.pid);
                }
                ui::warn("Restarting", "(requested)");
                need_start = true;
            }
            Event::Key(line) => {
                if let Some(stdin) = state.as_mut().and_then(|(p, _)| p.stdin.as_mut()) {
                    // A program that stopped reading stdin is not an error worth reporting.
                    let _ = writeln!(stdin, "{line}");
                }
            }
            Event::WatchError(e) => ui::bad("error", &e),
            Event::ProgramExited(pid, status) => {
                if let Some((_, pa)) = state.as_ref().filter(|(p, _)| p.pid == pid) {
                    let last = match &pa.last_patch {
                        Some(p) => format!("the last patch applied was {p}"),
                        None => "no patch had been applied".into(),
                    };
                    let msg = format!(
                        "{} ({status}); {last}; it will run again after the next successful build",
                        program_name(&opts)
                    );
                    use std::os::unix::process::ExitStatusExt;
                    if status.signal().is_some() {
                        ui::bad("Crashed", &msg);
                    } else {
                        ui::warn("Exited", &msg);
                    }
                    state = None;
                }
            }
            Event::Changed(mut paths) => {
                // Saves already queued join this build.
                drain_changes(&rx, &mut deferred, &mut paths);
                let Some((prog, patcher)) = state.as_mut() else {
                    need_start = true;
                    continue;
                };
                // A dependency's tests, benches and examples are not part of its build.
                let outside = paths.iter().find(|p| {
                    ws.path_deps.iter().any(|d| {
                        p.starts_with(d)
                            && !["tests", "benches", "examples"]
                                .iter()
                                .any(|sub| p.starts_with(d.join(sub)))
                    }) && !ws.member_dirs.iter().any(|m| p.starts_with(m))
                });
                let result = match outside {
                    Some(p) => Ok(ChangeResult::Restart(format!(
                        "{} changed; it belongs to a path dependency outside the workspace, \
                         which cargo hot rebuilds but does not patch",
                        p.display()
                    ))),
                    None => loop {
                        // A save during the build cancels it; the next build has every path.
                        let mut newer = Vec::new();
                        let mut superseded = || drain_changes(&rx, &mut deferred, &mut newer);
                        match on_change(&paths, prog, patcher, &mut superseded) {
                            Ok(ChangeResult::Superseded) => {
                                paths.extend(newer);
                                paths.sort();
                                paths.dedup();
                            }
                            other => break other,
                        }
                    },
                };
                match result {
                    // Never escapes the loop above.
                    Ok(ChangeResult::Done | ChangeResult::Superseded) => {}
                    Ok(ChangeResult::Restart(why)) => {
                        if opts.restart == RestartPolicy::Restart {
                            ui::warn("Restarting", &format!("{}: {why}", program_name(&opts)));
                            stop(prog.pid);
                            state = None;
                            need_start = true;
                        } else {
                            ui::warn(
                                "Refused",
                                &format!(
                                    "{why}; the program keeps its current code (--no-restart). Press `r` + Enter to restart, or edit it back"
                                ),
                            );
                        }
                    }
                    Err(e) => ui::bad("error", &format!("{e:#}")),
                }
            }
        }
    }
}

/// Moves the events already queued on `rx` out: changed paths into `paths`, the rest into
/// `deferred` for the main loop. True if any save was among them.
fn drain_changes(
    rx: &Receiver<Event>,
    deferred: &mut std::collections::VecDeque<Event>,
    paths: &mut Vec<PathBuf>,
) -> bool {
    let mut saved = false;
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Event::Changed(more) => {
                paths.extend(more);
                saved = true;
            }
            other => deferred.push_back(other),
        }
    }
    saved
}

fn program_name(opts: &Options) -> String {
    opts.example
        .clone()
        .or(opts.bin.clone())
        .or(opts.package.clone())
        .unwrap_or_else(|| "the program".into())
}

enum StartOutcome {
    Started(Program, Patcher),
    BuildOnly,
    Failed,
}

/// `forward_stdin`: cargo hot reads the terminal for its `r`/`q` keys, so the program gets a pipe
/// as stdin and every other line typed is forwarded to it (interactive programs keep working).
fn start(
    opts: &Options,
    ws: &Workspace,
    patch_dir: &Path,
    tx: &Sender<Event>,
    forward_stdin: bool,
) -> Result<StartOutcome> {
    loop {
        // What the build compiles: edits saved while it runs are noticed at the end.
        let snapshot = Snapshot::take(&ws.member_dirs);
        let started = start_once(opts, ws, patch_dir, tx, snapshot, forward_stdin, false)?;
        let StartOutcome::Started(prog, patcher) = started else {
            return Ok(started);
        };
        let edited = patcher.snapshot.edited_since(&ws.member_dirs);
        if edited.is_empty() {
            ui::good(
                "Watching",
                &format!(
                    "{} crate(s) for changes; {} hot fn(s) patchable",
                    patcher.crates.len(),
                    patcher.host.hot_fns.len()
                ),
            );
            return Ok(StartOutcome::Started(prog, patcher));
        }
        ui::warn(
            "Rebuilding",
            &format!("{} changed during the build", edited[0].display()),
        );
        stop(prog.pid);
    }
}

fn start_once(
    opts: &Options,
    ws: &Workspace,
    patch_dir: &Path,
    tx: &Sender<Event>,
    snapshot: Snapshot,
    forward_stdin: bool,
    retried: bool,
) -> Result<StartOutcome> {
    ui::good(
        "Building",
        &format!(
            "{} (hot build in {})",
            program_name(opts),
            ws.hot_dir.display()
        ),
    );
    let pick = pick_exe(opts);
    let fat = match build::fat_build(&opts.flags, &ws.hot_dir, &pick, &mut |w| ui::diagnostics(w))?
    {
        Outcome::Built(f) => f,
        Outcome::Failed(diag) => {
            ui::diagnostics(&diag);
            ui::bad("error", "the program could not be built");
            return Ok(StartOutcome::Failed);
        }
    };
    ui::good(
        "Finished",
        &format!("hot build in {:.2}s", fat.elapsed.as_secs_f64()),
    );
    if opts.build_only {
        println!("{}", fat.exe.display());
        return Ok(StartOutcome::BuildOnly);
    }
    let host = HostImage::load(&fat.exe)?;

    // Thin-buildable crates: the workspace members this program was built from.
    // The target directory may hold records of other programs (other packages of the
    // workspace, or other workspaces sharing it): keep this workspace's crates linked into this
    // binary.
    let linked = crates_in(&host);
    let mut crates = Vec::new();
    for e in std::fs::read_dir(&fat.records)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
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
    }
    if !crates.iter().any(|c| c.is_bin()) && !retried {
        // cargo found the build fresh (e.g. the project was copied or moved, and artifacts are
        // reused), so rustc never ran and nothing was recorded: rebuild the members once.
        ui::warn(
            "Rebuilding",
            "the workspace's crates, to record how rustc builds them",
        );
        let mut clean = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        clean
            .arg("clean")
            .arg("--quiet")
            .arg("--target-dir")
            .arg(&ws.hot_dir);
        if let Some(m) = &opts.manifest_path {
            clean.arg("--manifest-path").arg(m);
        }
        for m in &ws.members {
            clean.arg("-p").arg(m);
        }
        let _ = clean.status();
        return start_once(opts, ws, patch_dir, tx, snapshot, forward_stdin, true);
    }
    // Libraries first, so that a patch is built in dependency order.
    crates.sort_by_key(|c| c.is_bin());

    let (parent, child_end) = UnixStream::pair().context("creating the control channel")?;
    let child_fd = child_end.as_raw_fd();
    let mut cmd = Command::new(&fat.exe);
    cmd.args(&opts.program_args)
        .env("HOT_RUNTIME_FD", child_fd.to_string())
        .env("HOT_RUNTIME_BUILD_ID", &host.build_id)
        .env("HOT_RUNTIME_PATCH_DIR", patch_dir)
        // Its own process group: Ctrl-C reaches the tool, which stops the program cleanly.
        .process_group(0);
    // SAFETY: only async-signal-safe fcntl between fork and exec, to let the child inherit the fd.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(child_fd, libc::F_GETFD);
            libc::fcntl(child_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    if forward_stdin {
        cmd.stdin(std::process::Stdio::piped());
    }
    ui::good("Running", &format!("`{}`", fat.exe.display()));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", fat.exe.display()))?;
    let stdin = child.stdin.take();
    drop(child_end);
    let pid = child.id();
    CURRENT_PROGRAM.store(pid, std::sync::atomic::Ordering::Release);
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Event::ProgramExited(pid, status));
            }
        });
    }
    let (rtx, rrx) = channel();
    {
        let reader = parent.try_clone()?;
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => match Message::parse(&line) {
                        Ok(m) => {
                            if rtx.send(m).is_err() {
                                break;
                            }
                        }
                        Err(e) => ui::bad("error", &format!("from the program: {e}")),
                    },
                }
            }
        });
    }
    let mut prog = Program {
        pid,
        ctl: parent,
        replies: rrx,
        base: 0,
        next_addr: 0,
        reserve_end: 0,
        connected: false,
        stdin,
    };
    match prog.replies.recv_timeout(Duration::from_secs(10)) {
        Ok(Message::Hello {
            pid: hp,
            build_id,
            base,
            reserve_start,
            reserve_end,
            hot_fns,
        }) => {
            if hp != pid || build_id != host.build_id {
                ui::bad(
                    "error",
                    "the program that connected is not the one just built; patching is off",
                );
            } else if reserve_end == 0 {
                ui::bad(
                    "error",
                    "the program could not reserve address space for patches; patching is off",
                );
            } else {
                prog.base = base;
                prog.next_addr = reserve_start;
                prog.reserve_end = reserve_end;
                prog.connected = true;
                let _ = hot_fns;
            }
        }
        Ok(other) => ui::bad(
            "error",
            &format!("unexpected first message from the program: {other:?}"),
        ),
        Err(_) => ui::warn(
            "Unpatchable",
            "the program did not connect to cargo hot; does it depend on `hot-runtime` and have a #[hot] fn? Edits will restart it",
        ),
    }
    let mut running = Vec::new();
    let mut index = Vec::new();
    // Baseline: the objects of the code now running, to diff each save against. Doing it now,
    // while the program starts, makes the first save as fast as the others.
    for c in &crates {
        let built = c
            .build()
            .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}\n")));
        let mut hashes = HashMap::new();
        let mut indexes = HashMap::new();
        match built {
            Outcome::Built(objs) => {
                for (cgu, p) in &objs.objects {
                    hashes.insert(cgu.clone(), hash_file(p)?);
                    indexes.insert(cgu.clone(), link::index_object(p).unwrap_or_default());
                }
            }
            Outcome::Failed(d) => ui::diagnostics(&d),
        }
        running.push(hashes);
        index.push(indexes);
    }
    Ok(StartOutcome::Started(
        prog,
        Patcher {
            host,
            crates,
            running,
            index,
            snapshot,
            patch_dir: patch_dir.to_path_buf(),
            seq: 0,
            faults: crate::fault::Faults::from_env(),
            last_loaded: None,
            last_patch: None,
            queued: HashMap::new(),
        },
    ))
}

/// Names of the crates with code in the host binary (v0 symbol names start with the crate).
fn crates_in(host: &HostImage) -> HashSet<String> {
    let mut out = HashSet::new();
    for k in host.symbols.keys().filter(|k| k.starts_with("_R")) {
        let d = demangle(k);
        let d = d.trim_start_matches('<');
        if let Some((krate, _)) = d.split_once("::") {
            out.insert(krate.to_string());
        }
    }
    out
}

enum ChangeResult {
    Done,
    Restart(String),
    /// A newer save arrived during the build, which was abandoned.
    Superseded,
}

fn on_change(
    paths: &[PathBuf],
    prog: &mut Program,
    pa: &mut Patcher,
    superseded: &mut dyn FnMut() -> bool,
) -> Result<ChangeResult> {
    let t0 = Instant::now();
    for p in paths {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "Cargo.toml" || name == "build.rs" {
            return Ok(ChangeResult::Restart(format!("{} changed", p.display())));
        }
    }
    // Which crates own the changed files (the deepest manifest directory wins).
    let mut affected: HashSet<usize> = HashSet::new();
    for p in paths {
        let owner = pa
            .crates
            .iter()
            .enumerate()
            .filter(|(_, c)| p.starts_with(&c.manifest_dir))
            .max_by_key(|(_, c)| c.manifest_dir.components().count());
        if let Some((i, _)) = owner {
            affected.insert(i);
        }
    }
    if affected.is_empty() {
        return Ok(ChangeResult::Done);
    }
    if let Some(rude) = pa
        .snapshot
        .check(paths)
        .filter(|_| !crate::fault::skip_source_check())
    {
        return Ok(ChangeResult::Restart(rude));
    }
    if !prog.connected {
        return Ok(ChangeResult::Restart(
            "the program is not connected to cargo hot".into(),
        ));
    }
    let mut rustc_time = Duration::ZERO;
    // Demangled names of the symbols whose code changed, to name the edited hot fns.
    let mut edited: HashSet<String> = HashSet::new();
    let mut changed_objs = Vec::new();
    let mut new_hashes: Vec<(usize, String, u64)> = Vec::new();
    let mut new_indexes: Vec<(usize, String, link::ObjectIndex)> = Vec::new();
    for i in 0..pa.crates.len() {
        if !affected.contains(&i) {
            continue;
        }
        let c = &pa.crates[i];
        let t_build = Instant::now();
        let Some(built) = c.build_until(superseded)? else {
            return Ok(ChangeResult::Superseded);
        };
        debug_time("thin build (cargo-side)", t_build);
        match built {
            Outcome::Failed(diag) => {
                ui::diagnostics(&diag);
                ui::bad(
                    "error",
                    &format!(
                        "could not compile `{}`; the program keeps running its last good code",
                        c.name
                    ),
                );
                return Ok(ChangeResult::Done);
            }
            Outcome::Built(objs) => {
                rustc_time += objs.elapsed;
                let mut changed_cgus = Vec::new();
                for (cgu, p) in &objs.objects {
                    let h = hash_file(p)?;
                    if pa.running[i].get(cgu) != Some(&h) {
                        changed_cgus.push(cgu.clone());
                        new_hashes.push((i, cgu.clone(), h));
                    }
                }
                let mut rebuilt = HashMap::new();
                for cgu in &changed_cgus {
                    let idx =
                        link::index_object(&objs.objects[cgu]).map_err(|e| anyhow::anyhow!(e.0))?;
                    rebuilt.insert(cgu.clone(), idx);
                }
                let (needed, changed_fns) = link::select_units(&pa.index[i], &rebuilt, &pa.host);
                let mut names: Vec<String> = changed_fns.iter().map(|f| demangle(f)).collect();
                if debugging() {
                    names.sort();
                    eprintln!("[debug] changed symbols: {names:#?}\n[debug] units: {needed:?}");
                }
                edited.extend(names);
                changed_objs.extend(needed.iter().filter_map(|c| objs.objects.get(c).cloned()));
                new_indexes.extend(rebuilt.into_iter().map(|(c, idx)| (i, c, idx)));
            }
        }
    }
    if changed_objs.is_empty() {
        ui::good(
            "Unchanged",
            &format!("no code changed ({} ms)", t0.elapsed().as_millis()),
        );
        pa.snapshot.update(paths);
        return Ok(ChangeResult::Done);
    }
    pa.seq += 1;
    debug_time("everything before link", t0);
    let t_link = Instant::now();
    let name = format!("patch-{}", pa.seq);
    let job = link::Job {
        objects: &changed_objs,
        host: &pa.host,
        base: prog.base,
        addr: prog.next_addr,
        work_dir: &pa.patch_dir,
        name: &name,
    };
    let linked = match link::link(&job) {
        Ok(l) => l,
        Err(Refused(why)) => return Ok(ChangeResult::Restart(why)),
    };
    let link_time = t_link.elapsed();
    if linked.addr + linked.len > prog.reserve_end {
        return Ok(ChangeResult::Restart(
            "the address space reserved for patches is used up".into(),
        ));
    }
    if linked.fns.is_empty() {
        ui::warn(
            "Skipped",
            "the change is not reachable from a #[hot] fn (only code called from a hot fn's module is patched); restart with `r` to pick it up",
        );
        pa.snapshot.update(paths);
        return Ok(ChangeResult::Done);
    }
    let t_load = Instant::now();
    use std::os::unix::ffi::OsStrExt;
    let mut msg = Message::Patch {
        seq: pa.seq,
        pid: prog.pid,
        build_id: pa.host.build_id.clone(),
        addr: linked.addr,
        len: linked.len,
        path: linked.path.as_os_str().as_bytes().to_vec(),
        fns: linked
            .fns
            .iter()
            .map(|f| FnRebind {
                host_entry: f.host_entry,
                patch_entry: f.patch_entry,
                target: f.target,
            })
            .collect(),
    };
    let send = pa
        .faults
        .inject(&mut msg, pa.last_loaded)
        .context("injecting a fault (CARGO_HOT_FAULT)")?;
    let line = format!("{}\n", msg.encode());
    if send == crate::fault::Send::HalfThenDie {
        let _ = prog.ctl.write_all(&line.as_bytes()[..line.len() / 2]);
        crate::fault::die();
    }
    prog.ctl
        .write_all(line.as_bytes())
        .context("sending the patch to the program")?;
    if send == crate::fault::Send::WholeThenDie {
        crate::fault::die();
    }
    // The range is spent whatever the answer: a failed dlopen may still have mapped part of it.
    prog.next_addr = (linked.addr + linked.len + 0xffff) & !0xffff;
    // In manual apply mode the program answers `pending` at once and `applied` whenever it
    // calls `apply_pending()`: the patch is loaded, so cargo hot goes on (later saves build on
    // it) and reports the `applied` when it comes (`report_applied`).
    let reply = loop {
        match prog.replies.recv_timeout(Duration::from_secs(20)) {
            Ok(Message::Pending { seq }) if seq == pa.seq => break None,
            Ok(m @ Message::Applied { seq, .. }) if seq != pa.seq => late_answer(pa, m),
            Ok(m) => break Some(m),
            Err(RecvTimeoutError::Timeout) => {
                bail!("the program did not answer the patch within 20 s")
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the program closed the control channel"),
        }
    };
    let load_time = t_load.elapsed();
    // Name the hot fns whose own code changed; the others are rebound only because they share
    // a codegen unit with, or reach, the change. If none changed itself, name them all.
    let is_edited = |f: &link::PatchFn| edited.iter().any(|c| link::belongs_to(c, &f.name));
    let any_edited = linked.fns.iter().any(is_edited);
    let fns: PatchFns = linked
        .fns
        .iter()
        .map(|f| {
            let shown = !any_edited || is_edited(f);
            (f.host_entry, short(&f.name).to_string(), shown)
        })
        .collect();
    let timing = format!(
        "in {} ms (rustc {} ms, link {} ms, load {} ms)",
        t0.elapsed().as_millis(),
        rustc_time.as_millis(),
        link_time.as_millis(),
        load_time.as_millis()
    );
    // `None`: queued until the program's `apply_pending()`.
    let refused = match reply {
        None => None,
        Some(Message::Applied { refused, .. }) => Some(refused),
        Some(Message::Failed { reason, .. }) => {
            return Ok(ChangeResult::Restart(format!(
                "the program refused the patch: {reason}"
            )));
        }
        Some(other) => bail!("unexpected answer from the program: {other:?}"),
    };
    // Loaded (applied or queued): later saves build on this patch.
    pa.last_loaded = Some(linked.addr);
    for (i, cgu, h) in new_hashes {
        pa.running[i].insert(cgu, h);
    }
    for (i, cgu, idx) in new_indexes {
        pa.index[i].insert(cgu, idx);
    }
    pa.snapshot.update(paths);
    let t_absorb = Instant::now();
    pa.host.absorb_patch(&linked.path, prog.base)?;
    debug_time("absorb patch symbols", t_absorb);
    let seq = pa.seq;
    match refused {
        Some(refused) => report_applied(pa, seq, &fns, &refused, |names| {
            ("Patched", format!("{names} {timing}"))
        }),
        None => {
            let names = shown_names(&fns, &[]);
            ui::good(
                "Queued",
                &format!(
                    "{names} {timing}; patch {seq} applies at the program's next `apply_pending()`"
                ),
            );
            pa.queued.insert(seq, fns);
        }
    }
    Ok(ChangeResult::Done)
}

/// The hot fns of a patch: (host entry, short name, named in reports).
type PatchFns = Vec<(u64, String, bool)>;

/// The names a report shows: the edited fns that were not refused.
fn shown_names(fns: &PatchFns, refused: &[(u64, hot_runtime::protocol::Refusal)]) -> String {
    let names: Vec<&str> = fns
        .iter()
        .filter(|(e, _, shown)| *shown && !refused.iter().any(|(r, _)| r == e))
        .map(|(_, n, _)| n.as_str())
        .collect();
    names.join(", ")
}

/// Reports a patch the program applied: one status line (`line` gets the names), one line per
/// function it refused, and remembers the patch to name it if the program dies.
fn report_applied(
    pa: &mut Patcher,
    seq: u64,
    fns: &PatchFns,
    refused: &[(u64, hot_runtime::protocol::Refusal)],
    line: impl FnOnce(&str) -> (&'static str, String),
) {
    let names = shown_names(fns, refused);
    let (word, msg) = line(&names);
    ui::good(word, &msg);
    for (e, r) in refused {
        let name = fns
            .iter()
            .find(|(h, _, _)| h == e)
            .map_or("?", |(_, n, _)| n.as_str());
        ui::warn("Refused", &format!("{name}: {}", r.describe()));
    }
    pa.last_patch = Some(format!("patch {seq} ({names})"));
}

/// A message about an earlier patch: the `applied` of a queued one (manual apply mode).
fn late_answer(pa: &mut Patcher, m: Message) {
    match m {
        Message::Applied { seq, refused, .. } => {
            let fns = pa.queued.remove(&seq).unwrap_or_default();
            report_applied(pa, seq, &fns, &refused, |names| {
                (
                    "Applied",
                    format!("patch {seq} ({names}) at the program's `apply_pending()`"),
                )
            });
        }
        other => ui::bad(
            "error",
            &format!("unexpected message from the program: {other:?}"),
        ),
    }
}

/// `CARGO_HOT_DEBUG` is set: print what patch selection decided and how long steps took.
fn debugging() -> bool {
    std::env::var_os("CARGO_HOT_DEBUG").is_some()
}

/// With `CARGO_HOT_DEBUG`, how long a step took (for profiling the time beyond rustc).
fn debug_time(what: &str, since: Instant) {
    if debugging() {
        eprintln!(
            "[debug] {what}: {:.1} ms",
            since.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// `crate::module::f` -> `module::f`, as users name their functions.
fn short(path: &str) -> &str {
    // An async fn's entry is registered inside its body coroutine.
    let path = path.strip_suffix("::{closure#0}").unwrap_or(path);
    if path.starts_with('<') {
        return path;
    }
    path.split_once("::").map(|(_, rest)| rest).unwrap_or(path)
}

/// SIGTERM to the program's process group, SIGKILL after 3 s.
fn stop(pid: u32) {
    let pgid = -(pid as i32);
    // SAFETY: plain kill(2) on the process group we created.
    unsafe { libc::kill(pgid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // SAFETY: probing with signal 0.
        if unsafe { libc::kill(pgid, 0) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pgid, libc::SIGKILL) };
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
