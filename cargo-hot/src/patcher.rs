//! The patch pipeline for one running program: its baseline (the objects of the code it runs),
//! and for each save: thin build → changed units → link → send → report.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hot_runtime::protocol::{FnRebind, Message, Refusal};

use crate::build::{Outcome, ThinCrate};
use crate::host::{HostImage, demangle};
use crate::link::{self, Refused};
use crate::program::Program;
use crate::rude::Snapshot;
use crate::ui::{self, debug_time, debugging};

/// Why a save needs a new program instead of a patch.
#[derive(Debug, thiserror::Error)]
pub enum Restart {
    #[error("{} changed", .0.display())]
    Manifest(PathBuf),
    #[error(
        "{} changed; it belongs to a path dependency outside the workspace, which cargo hot rebuilds but does not patch",
        .0.display()
    )]
    PathDependency(PathBuf),
    #[error(
        "{} changed; it belongs to `{lib}`, a shared library the program loads, which cargo hot rebuilds but does not patch",
        path.display()
    )]
    SharedLibrary { path: PathBuf, lib: String },
    /// A change of shape (struct fields, a hot fn's signature…), named by `rude`.
    #[error("{0}")]
    Rude(String),
    #[error("the program is not connected to cargo hot")]
    NotConnected,
    #[error(transparent)]
    Link(#[from] Refused),
    #[error("the address space reserved for patches is used up")]
    ReserveExhausted,
    #[error("the program refused the patch: {0}")]
    ProgramRefused(String),
}

/// What became of a save.
pub enum Verdict {
    /// Patched, queued, unchanged, or kept the old code (already reported).
    Done,
    Restart(Restart),
    /// A newer save arrived during the build, which was abandoned.
    Superseded,
}

/// One crate's codegen units as the program runs them.
#[derive(Default)]
struct Units {
    hashes: HashMap<String, u64>,
    index: HashMap<String, link::ObjectIndex>,
    /// Source files of the crate (rustc's dep-info), to know which crates a save touches.
    sources: HashSet<PathBuf>,
    /// The baseline could not be taken from the code the program runs (a save came during
    /// start-up, or it did not compile): the next patch carries every unit.
    unknown: bool,
}

/// The hot fns of a patch: (host entry, short name, named in reports).
type PatchFns = Vec<(u64, String, bool)>;

pub struct Patcher {
    pub host: HostImage,
    pub crates: Vec<ThinCrate>,
    running: Vec<Units>,
    /// Item shapes of the code the program runs, to refuse rude edits before building.
    snapshot: Snapshot,
    patch_dir: PathBuf,
    seq: u64,
    faults: crate::fault::Faults,
    /// Address of the last patch the program loaded.
    last_loaded: Option<u64>,
    /// "patch N (fns)" of the last patch applied, to name it if the program dies.
    pub last_patch: Option<String>,
    /// Patches loaded but not applied yet (manual apply mode), by sequence number.
    queued: HashMap<u64, PatchFns>,
}

fn hash_file(p: &Path) -> Result<u64> {
    let bytes = std::fs::read(p)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Ok(h.finish())
}

impl Patcher {
    pub fn new(
        host: HostImage,
        crates: Vec<ThinCrate>,
        snapshot: Snapshot,
        patch_dir: &Path,
    ) -> Patcher {
        Patcher {
            running: crates.iter().map(|_| Units::default()).collect(),
            host,
            crates,
            snapshot,
            patch_dir: patch_dir.to_path_buf(),
            seq: 0,
            faults: crate::fault::Faults::from_env(),
            last_loaded: None,
            last_patch: None,
            queued: HashMap::new(),
        }
    }

    /// Builds the objects of the code now running, to diff each save against. Done while the
    /// program starts, so that the first save is as fast as the others. Returns the files
    /// saved since the snapshot the program was built from: their crates' baseline is unknown,
    /// and the caller handles them as a save.
    pub fn baseline(&mut self, dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let mut failed = Vec::new();
        for i in 0..self.crates.len() {
            let swap = self.upstream_swaps(i);
            let built = self.crates[i]
                .build(&swap)
                .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}\n")));
            let units = &mut self.running[i];
            match built {
                Outcome::Built(objs) => {
                    for (cgu, p) in &objs.objects {
                        units.hashes.insert(cgu.clone(), hash_file(p)?);
                        units
                            .index
                            .insert(cgu.clone(), link::index_object(p).unwrap_or_default());
                    }
                    units.sources = objs.sources;
                }
                Outcome::Failed(d) => {
                    units.unknown = true;
                    failed.push((i, d));
                }
            }
        }
        let edited = self.snapshot.edited_since(dirs);
        let owners = self.with_dependents(&self.owners(&edited));
        for &i in &owners {
            self.running[i].unknown = true;
        }
        // A save since the build explains a failure: it is shown when that save is handled.
        for (i, diag) in failed.iter().filter(|(i, _)| !owners.contains(i)) {
            ui::diagnostics(diag);
            ui::warn(
                "Warning",
                &format!(
                    "`{}` could not be rebuilt as it runs; its next patch carries all its code",
                    self.crates[*i].name
                ),
            );
        }
        Ok(edited)
    }

    pub fn hot_fn_count(&self) -> usize {
        self.host.hot_fns.len()
    }

    /// The workspace libraries crate `i` is built against in thin builds: their latest thin
    /// rlib, so that the code of theirs it holds (inlined, generic, async bodies in optimized
    /// builds) is the current code. A library another of its workspace dependencies also
    /// depends on keeps its fat rlib (two versions of one crate would not compile).
    fn upstream_swaps(&self, i: usize) -> Vec<(String, PathBuf)> {
        let me = &self.crates[i];
        let deps: Vec<&ThinCrate> = self
            .crates
            .iter()
            .filter(|c| c.name != me.name && me.depends_on(&c.name))
            .collect();
        deps.iter()
            .filter(|lib| !deps.iter().any(|other| other.depends_on(&lib.name)))
            .filter_map(|lib| Some((lib.name.clone(), lib.thin_rlib()?)))
            .collect()
    }

    /// `affected` and the crates built against a library among them (see `upstream_swaps`).
    fn with_dependents(&self, affected: &HashSet<usize>) -> HashSet<usize> {
        let mut out = affected.clone();
        for i in 0..self.crates.len() {
            let swaps = self.upstream_swaps(i);
            if affected
                .iter()
                .any(|&j| swaps.iter().any(|(n, _)| *n == self.crates[j].name))
            {
                out.insert(i);
            }
        }
        out
    }

    /// Crates a change of `paths` may touch: those built from one of the files, else (a new
    /// file) every crate of the package that holds it.
    fn owners(&self, paths: &[PathBuf]) -> HashSet<usize> {
        let mut out = HashSet::new();
        for p in paths {
            let users: Vec<usize> = (0..self.crates.len())
                .filter(|&i| self.running[i].sources.contains(p))
                .collect();
            if !users.is_empty() {
                out.extend(users);
                continue;
            }
            let deepest = self
                .crates
                .iter()
                .filter(|c| p.starts_with(&c.manifest_dir))
                .map(|c| c.manifest_dir.components().count())
                .max();
            out.extend((0..self.crates.len()).filter(|&i| {
                let d = &self.crates[i].manifest_dir;
                p.starts_with(d) && Some(d.components().count()) == deepest
            }));
        }
        out
    }

    /// Handles a save of `paths`: patch, refuse with the reason, or keep the old code.
    /// `superseded()` says whether a newer save arrived (the build is then abandoned).
    pub fn on_save(
        &mut self,
        paths: &[PathBuf],
        prog: &mut Program,
        superseded: &mut dyn FnMut() -> bool,
    ) -> Result<Verdict> {
        let t0 = Instant::now();
        if let Some(p) = paths.iter().find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "Cargo.toml" || name == "build.rs"
        }) {
            return Ok(Verdict::Restart(Restart::Manifest(p.clone())));
        }
        let affected = self.owners(paths);
        if affected.is_empty() {
            return Ok(Verdict::Done);
        }
        if let Some(rude) = self
            .snapshot
            .check(paths)
            .filter(|_| !crate::fault::skip_source_check())
        {
            return Ok(Verdict::Restart(Restart::Rude(rude)));
        }
        if prog.link.is_none() {
            return Ok(Verdict::Restart(Restart::NotConnected));
        }
        let edited_src = self.snapshot.edited_fns(paths);
        debug_time("source checks (before rustc)", t0);
        let Some(compiled) = self.compile(&affected, &edited_src, superseded)? else {
            return Ok(Verdict::Superseded);
        };
        let Some(compiled) = compiled else {
            return Ok(Verdict::Done); // did not compile: reported, old code kept
        };
        if compiled.objects.is_empty() {
            ui::good(
                "Unchanged",
                &format!("no code changed ({} ms)", t0.elapsed().as_millis()),
            );
            self.commit(compiled, paths);
            return Ok(Verdict::Done);
        }
        self.link_and_send(compiled, paths, prog, t0)
    }

    /// Thin-builds the affected crates. `None`: superseded; `Some(None)`: a compile error
    /// (shown; the program keeps its code).
    fn compile(
        &mut self,
        affected: &HashSet<usize>,
        edited_src: &HashSet<crate::rude::FnKey>,
        superseded: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Option<Compiled>>> {
        let mut out = Compiled::default();
        let affected = self.with_dependents(affected);
        // Units of every crate built, keyed `crate/unit`: one selection over all of them, since
        // a hot fn's registry entry may sit in a library and its code in the binary (optimized
        // builds instantiate a library's async bodies where they are called).
        let mut as_running: HashMap<String, &link::ObjectIndex> = HashMap::new();
        let mut rebuilt: HashMap<String, link::ObjectIndex> = HashMap::new();
        let mut objects: HashMap<String, PathBuf> = HashMap::new();
        // Libraries first (the crates' order): a dependent is built against their new rlib.
        for i in 0..self.crates.len() {
            if !affected.contains(&i) {
                continue;
            }
            let Some(objs) = self.build_one(i, superseded)? else {
                return Ok(None);
            };
            let Some(objs) = objs else {
                return Ok(Some(None));
            };
            out.rustc_time += objs.elapsed;
            let units = &self.running[i];
            let key = |cgu: &str| format!("{i}/{cgu}");
            if units.unknown {
                out.whole.push(self.crates[i].name.clone());
            } else {
                as_running.extend(units.index.iter().map(|(c, x)| (key(c), x)));
            }
            let t_hash = Instant::now();
            for (cgu, p) in &objs.objects {
                let h = hash_file(p)?;
                objects.insert(key(cgu), p.clone());
                if units.unknown || units.hashes.get(cgu) != Some(&h) {
                    out.hashes.push((i, cgu.clone(), h));
                    let idx = link::index_object(p).map_err(|e| anyhow::anyhow!(e.0))?;
                    out.indexes.push((i, cgu.clone(), idx.clone()));
                    rebuilt.insert(key(cgu), idx);
                }
            }
            debug_time("hash + index objects", t_hash);
            out.sources.push((i, objs.sources));
            out.units.push((i, objs.objects.keys().cloned().collect()));
        }
        let t_sel = Instant::now();
        let (needed, changed_fns) = link::select_units(&as_running, &rebuilt, &self.host);
        debug_time("select units", t_sel);
        let mut names: Vec<String> = changed_fns.iter().map(|f| demangle(f)).collect();
        if debugging() {
            names.sort();
            eprintln!("[debug] changed symbols: {names:#?}\n[debug] units: {needed:?}");
        }
        names.retain(|n| self.counts_as_changed(n, edited_src));
        out.edited.extend(names);
        out.objects
            .extend(needed.iter().filter_map(|u| objects.get(u).cloned()));
        if out.whole.is_empty() {
            let mut all = as_running;
            all.extend(rebuilt.iter().map(|(c, x)| (c.clone(), x)));
            let t_who = Instant::now();
            (out.runs_via, out.not_run) = self.who_runs(&all, &changed_fns, edited_src);
            debug_time("who runs", t_who);
        }
        Ok(Some(Some(out)))
    }

    /// Whether function `d` (demangled), whose code changed, is said to have changed. A unit that
    /// is recompiled can change code nobody edited (other partitioning): in an unoptimized build
    /// only a change the edited source explains counts. With no edited fn body (a constant, a
    /// static) every change counts; in an optimized build too, since an edited fn may be inlined
    /// into any caller.
    fn counts_as_changed(&self, d: &str, edited_src: &HashSet<crate::rude::FnKey>) -> bool {
        edited_src.is_empty()
            || self.crates.iter().any(|c| c.optimized)
            || explained_by(d, edited_src)
    }

    /// For the user's functions whose code changed: the hot fns that will run the new code
    /// (they changed, or call what changed), and the functions nothing hot calls, whose new
    /// code will not run in this process (`main`, start-up code, code only running code calls).
    fn who_runs(
        &self,
        units: &HashMap<String, &link::ObjectIndex>,
        changed: &HashSet<String>,
        edited_src: &HashSet<crate::rude::FnKey>,
    ) -> (HashSet<String>, std::collections::BTreeSet<String>) {
        let functions: HashSet<&str> = units
            .values()
            .flat_map(|i| i.functions.iter().map(String::as_str))
            .collect();
        let ours = |d: &str| {
            let d = d.trim_start_matches('<');
            self.crates
                .iter()
                .any(|c| d.starts_with(&format!("{}::", c.name)))
        };
        // One referrer map and one demangling per symbol for every changed function.
        let referrers = link::Referrers::new(units.values().copied());
        let mut demangled: HashMap<String, String> = HashMap::new();
        let mut runs_via = HashSet::new();
        let mut not_run = std::collections::BTreeSet::new();
        for f in changed {
            let d = demangle(f);
            if !functions.contains(d.as_str()) || !ours(&d) {
                continue;
            }
            if !self.counts_as_changed(&d, edited_src) {
                continue;
            }
            let reach = referrers.reaching(&HashSet::from([f.clone()]));
            for r in &reach {
                if !demangled.contains_key(r) {
                    demangled.insert(r.clone(), demangle(r));
                }
            }
            let reach: Vec<&String> = reach.iter().map(|r| &demangled[r]).collect();
            let callers: Vec<&String> = self
                .host
                .hot_fns
                .keys()
                .filter(|hot| reach.iter().any(|r| link::belongs_to(r, hot)))
                .collect();
            // Named only when its source changed: code that merely moved (a line added above
            // it shifts its panic locations) changed in the object, not in what it does.
            let plain = link::without_generic_args(&d);
            let parent = parent_fn(&plain);
            if callers.is_empty() && edited_src.contains(&crate::rude::fn_key(parent)) {
                not_run.insert(parent.to_string());
            }
            runs_via.extend(callers.into_iter().cloned());
        }
        (runs_via, not_run)
    }

    /// Thin-builds crate `i`. `None`: superseded (or interrupted); `Some(None)`: a compile
    /// error, shown (the program keeps its code).
    fn build_one(
        &self,
        i: usize,
        superseded: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Option<crate::build::ThinObjects>>> {
        let swap = self.upstream_swaps(i);
        let c = &self.crates[i];
        let t_build = Instant::now();
        let Some(built) = c.build_until(superseded, &swap)? else {
            return Ok(None);
        };
        debug_time("thin build (cargo-side)", t_build);
        match built {
            Outcome::Failed(_) if crate::event::interrupted() => Ok(None),
            Outcome::Failed(diag) => {
                ui::diagnostics(&diag);
                ui::bad(
                    "error",
                    &format!(
                        "could not compile `{}`; the program keeps running its last good code",
                        c.name
                    ),
                );
                Ok(Some(None))
            }
            Outcome::Built(objs) => Ok(Some(Some(objs))),
        }
    }

    /// The program runs `compiled` now (or will, at its `apply_pending()`).
    fn commit(&mut self, compiled: Compiled, paths: &[PathBuf]) {
        // Units rustc no longer produces are gone from the running picture.
        for (i, units) in &compiled.units {
            let r = &mut self.running[*i];
            r.hashes.retain(|cgu, _| units.contains(cgu));
            r.index.retain(|cgu, _| units.contains(cgu));
        }
        for (i, cgu, h) in compiled.hashes {
            self.running[i].hashes.insert(cgu, h);
        }
        for (i, cgu, idx) in compiled.indexes {
            self.running[i].index.insert(cgu, idx);
        }
        for (i, sources) in compiled.sources {
            self.running[i].sources = sources;
            self.running[i].unknown = false;
        }
        self.snapshot.update(paths);
    }

    fn link_and_send(
        &mut self,
        compiled: Compiled,
        paths: &[PathBuf],
        prog: &mut Program,
        t0: Instant,
    ) -> Result<Verdict> {
        let Some(link_to) = prog.link else {
            return Ok(Verdict::Restart(Restart::NotConnected));
        };
        self.seq += 1;
        debug_time("everything before link", t0);
        let t_link = Instant::now();
        let name = format!("patch-{}", self.seq);
        let job = link::Job {
            objects: &compiled.objects,
            host: &self.host,
            base: link_to.base,
            addr: link_to.next_addr,
            work_dir: &self.patch_dir,
            name: &name,
        };
        let linked = match link::link(&job) {
            Ok(l) => l,
            Err(refused) => return Ok(Verdict::Restart(refused.into())),
        };
        let link_time = t_link.elapsed();
        if linked.addr + linked.len > link_to.reserve_end {
            return Ok(Verdict::Restart(Restart::ReserveExhausted));
        }
        if linked.fns.is_empty() {
            if compiled.not_run.is_empty() {
                ui::warn(
                    "Skipped",
                    &format!(
                        "the change is not reachable from a #[hot] fn (only code called from a hot fn's module is patched); {}",
                        ui::restart_hint()
                    ),
                );
            } else {
                report_not_run(&compiled.not_run);
            }
            self.commit(compiled, paths);
            return Ok(Verdict::Done);
        }
        let t_load = Instant::now();
        let reply = self.send(&linked, prog)?;
        let timing = Timing {
            total: t0.elapsed(),
            rustc: compiled.rustc_time,
            link: link_time,
            load: t_load.elapsed(),
        };
        self.applied(linked, compiled, paths, reply, &timing, link_to.base)
    }

    /// After the program answered a patch: remembers what it runs now and reports.
    fn applied(
        &mut self,
        linked: link::LinkedPatch,
        mut compiled: Compiled,
        paths: &[PathBuf],
        reply: Option<Message>,
        timing: &Timing,
        base: u64,
    ) -> Result<Verdict> {
        let fns = self.named_fns(&linked, &compiled);
        let not_run = std::mem::take(&mut compiled.not_run);
        let mut timing = timing.to_string();
        if !compiled.whole.is_empty() {
            timing.push_str(&format!(
                "; all of `{}` was reloaded, since it was saved while the program started",
                compiled.whole.join("`, `")
            ));
        }
        // `None`: queued until the program's `apply_pending()`.
        let refused = match reply {
            None => None,
            Some(Message::Applied { refused, .. }) => Some(refused),
            Some(Message::Failed { reason, .. }) => {
                return Ok(Verdict::Restart(Restart::ProgramRefused(reason)));
            }
            Some(other) => bail!("unexpected answer from the program: {other:?}"),
        };
        // Loaded (applied or queued): later saves build on this patch.
        self.last_loaded = Some(linked.addr);
        self.commit(compiled, paths);
        let t_absorb = Instant::now();
        self.host.absorb_patch(&linked.path, base)?;
        debug_time("absorb patch symbols", t_absorb);
        let seq = self.seq;
        match refused {
            Some(refused) => self.report_applied(seq, &fns, &refused, |names| {
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
                self.queued.insert(seq, fns);
            }
        }
        report_not_run(&not_run);
        Ok(Verdict::Done)
    }

    /// Sends a linked patch and waits for the answer (`None`: queued in manual apply mode).
    fn send(&mut self, linked: &link::LinkedPatch, prog: &mut Program) -> Result<Option<Message>> {
        use std::os::unix::ffi::OsStrExt;
        let mut msg = Message::Patch {
            seq: self.seq,
            pid: prog.pid,
            build_id: self.host.build_id.clone(),
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
        let send = self
            .faults
            .inject(&mut msg, self.last_loaded)
            .context("injecting a fault (CARGO_HOT_FAULT)")?;
        let line = format!("{}\n", msg.encode());
        if send == crate::fault::Send::HalfThenDie {
            let _ = prog.send(&line.as_bytes()[..line.len() / 2]);
            crate::fault::die();
        }
        prog.send(line.as_bytes())
            .context("sending the patch to the program")?;
        if send == crate::fault::Send::WholeThenDie {
            crate::fault::die();
        }
        // The range is spent whatever the answer: a failed dlopen may still have mapped part of it.
        if let Some(l) = prog.link.as_mut() {
            l.next_addr = (linked.addr + linked.len + 0xffff) & !0xffff;
        }
        // In manual apply mode the program answers `pending` at once and `applied` whenever it
        // calls `apply_pending()`: cargo hot goes on and reports the `applied` when it comes.
        loop {
            match prog.answer(Duration::from_secs(20)) {
                Ok(Message::Pending { seq }) if seq == self.seq => return Ok(None),
                Ok(m @ Message::Applied { seq, .. }) if seq != self.seq => self.late_answer(m),
                Ok(m) => return Ok(Some(m)),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("the program did not answer the patch within 20 s")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("the program closed the control channel")
                }
            }
        }
    }

    /// Names the hot fns that run changed code (their own, or code they call); the others are
    /// rebound only because they share a codegen unit with the change. When no changed code is
    /// a function of the user's (a static's initializer, a constant), names them all.
    fn named_fns(&self, linked: &link::LinkedPatch, c: &Compiled) -> PatchFns {
        let is_edited = |f: &link::PatchFn| {
            c.runs_via.contains(&f.name) || c.edited.iter().any(|e| link::belongs_to(e, &f.name))
        };
        let any_edited = !c.not_run.is_empty() || linked.fns.iter().any(is_edited);
        linked
            .fns
            .iter()
            .map(|f| {
                let shown = !any_edited || is_edited(f);
                (f.host_entry, short(&f.name).to_string(), shown)
            })
            .collect()
    }

    /// Whether patches wait for the program's `apply_pending()`.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Reports a patch the program applied: one status line (`line` gets the names), one line
    /// per function it refused, and remembers the patch to name it if the program dies.
    fn report_applied(
        &mut self,
        seq: u64,
        fns: &PatchFns,
        refused: &[(u64, Refusal)],
        line: impl FnOnce(&str) -> (&'static str, String),
    ) {
        let names = shown_names(fns, refused);
        // No hot fn runs changed code: the lines about what will not run say it all.
        if !names.is_empty() {
            let (word, msg) = line(&names);
            ui::good(word, &msg);
        }
        for (e, r) in refused {
            let name = fns
                .iter()
                .find(|(h, _, _)| h == e)
                .map_or("?", |(_, n, _)| n.as_str());
            ui::warn("Refused", &format!("{name}: {}", r.describe()));
        }
        self.last_patch = Some(format!("patch {seq} ({names})"));
    }

    /// A message about an earlier patch: the `applied` of a queued one (manual apply mode).
    pub fn late_answer(&mut self, m: Message) {
        match m {
            Message::Applied { seq, refused, .. } => {
                let fns = self.queued.remove(&seq).unwrap_or_default();
                self.report_applied(seq, &fns, &refused, |names| {
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
}

/// Where a patch's time went.
struct Timing {
    total: Duration,
    rustc: Duration,
    link: Duration,
    load: Duration,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in {} ms (rustc {} ms, link {} ms, load {} ms)",
            self.total.as_millis(),
            self.rustc.as_millis(),
            self.link.as_millis(),
            self.load.as_millis()
        )
    }
}

/// What the thin builds of one save produced.
#[derive(Default)]
struct Compiled {
    /// Objects the patch carries.
    objects: Vec<PathBuf>,
    /// Demangled names of the symbols whose code changed.
    edited: HashSet<String>,
    hashes: Vec<(usize, String, u64)>,
    indexes: Vec<(usize, String, link::ObjectIndex)>,
    sources: Vec<(usize, HashSet<PathBuf>)>,
    /// The units each crate built now has.
    units: Vec<(usize, HashSet<String>)>,
    /// Hot fns that run changed code (their own or code they call).
    runs_via: HashSet<String>,
    /// The user's changed functions no hot fn calls: their new code will not run.
    not_run: std::collections::BTreeSet<String>,
    /// Crates reloaded whole (their running code was not known).
    whole: Vec<String>,
    rustc_time: Duration,
}

/// The names a report shows: the edited fns that were not refused.
fn shown_names(fns: &PatchFns, refused: &[(u64, Refusal)]) -> String {
    // A generic fn is one name for all its rebound copies.
    let mut names: Vec<&str> = Vec::new();
    for (_, n, _) in fns
        .iter()
        .filter(|(e, _, shown)| *shown && !refused.iter().any(|(r, _)| r == e))
    {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    names.join(", ")
}

/// The function a closure or inner item belongs to: `app::main::{closure#0}` -> `app::main`.
/// Whether the code of function `d` (demangled) can have changed because of an edit of the fn
/// bodies `edited`: `d` is one of them (or a closure of one), or an instantiation naming one
/// in its generic arguments (`Iterator::fold::<.., app::report::{closure#1}>`).
fn explained_by(d: &str, edited: &HashSet<crate::rude::FnKey>) -> bool {
    let plain = link::without_generic_args(d);
    if edited.contains(&crate::rude::fn_key(parent_fn(&plain))) {
        return true;
    }
    d.split(['<', '>', ',', ' ', '(', ')', '[', ']', ';', '&'])
        .filter(|t| t.contains("::"))
        .any(|t| edited.contains(&crate::rude::fn_key(parent_fn(t))))
}

fn parent_fn(path: &str) -> &str {
    match path.find("::{") {
        Some(at) => &path[..at],
        None => path,
    }
}

/// Says, for each changed function whose new code will not run, what to do.
fn report_not_run(not_run: &std::collections::BTreeSet<String>) {
    for f in not_run {
        let name = short(f);
        if name == "main" {
            ui::warn(
                "Not run",
                &format!("`main` changed, but it already ran: {}", ui::restart_hint()),
            );
        } else {
            ui::warn(
                "Not run",
                &format!(
                    "`{name}` changed, but no #[hot] fn calls it, so the running program keeps its old code (it ran at start-up, or only code already running calls it): {}, or make a caller #[hot]",
                    ui::restart_hint()
                ),
            );
        }
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
