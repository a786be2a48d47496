//! Watching the sources of the program's workspace crates: debounced, ignoring the target
//! directory, `.git`, editor swap files and `.gitignore`d paths, and robust to editors that
//! save by writing a temporary file and renaming it over the original.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer_opt};

/// Decides which paths matter.
pub struct Filter {
    target_dir: PathBuf,
    gitignore: ignore::gitignore::Gitignore,
    ignores: Vec<PathBuf>,
}

impl Filter {
    pub fn new(workspace_root: &Path, target_dir: &Path, ignores: Vec<PathBuf>) -> Filter {
        let mut b = ignore::gitignore::GitignoreBuilder::new(workspace_root);
        let _ = b.add(workspace_root.join(".gitignore"));
        let gitignore = b
            .build()
            .unwrap_or_else(|_| ignore::gitignore::Gitignore::empty());
        Filter {
            target_dir: target_dir.to_path_buf(),
            gitignore,
            ignores,
        }
    }

    /// True for a path whose change may need a patch or a restart.
    pub fn relevant(&self, p: &Path) -> bool {
        if p.starts_with(&self.target_dir) || self.ignores.iter().any(|i| p.starts_with(i)) {
            return false;
        }
        if p.components()
            .any(|c| c.as_os_str() == ".git" || c.as_os_str() == "target")
        {
            return false;
        }
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        // Editor droppings: vim swap/backup files, emacs locks, JetBrains/VS Code temp files.
        if name.starts_with(".#")
            || name.ends_with('~')
            || name.ends_with(".swp")
            || name.ends_with(".swx")
            || name.ends_with(".tmp")
            || name == "4913"
        {
            return false;
        }
        let wanted = name.ends_with(".rs") || name == "Cargo.toml";
        wanted
            && !self
                .gitignore
                .matched_path_or_any_parents(p, false)
                .is_ignore()
    }
}

/// What the watcher reports.
pub enum Change {
    /// Relevant paths changed (one debounced batch).
    Paths(Vec<PathBuf>),
    /// The watcher failed or lost events; the message says what happens next.
    Trouble(String),
}

/// Starts watching `dirs`; each batch of relevant changes is given to `report`, on the
/// watcher's thread. Dropping the returned value stops watching.
pub fn start(
    dirs: &[PathBuf],
    filter: Filter,
    debounce: Duration,
    poll: bool,
    report: impl Fn(Change) + Send + 'static,
) -> Result<Box<dyn std::any::Any>> {
    let roots = dirs.to_vec();
    let handler = move |res: DebounceEventResult| match res {
        Ok(events) if events.iter().any(|e| e.need_rescan()) => {
            // The kernel dropped events (its queue overflowed): which files changed is unknown,
            // so every source file is treated as changed. Rebuilding them costs one build; the
            // object diff still patches only what really changed.
            report(Change::Trouble(
                "file events were lost (the kernel's event queue overflowed); rescanning every source file".into(),
            ));
            let paths = rescan(&roots, &filter);
            if !paths.is_empty() {
                report(Change::Paths(paths));
            }
        }
        Ok(events) => {
            let mut paths: Vec<PathBuf> = events
                .into_iter()
                .filter(|e| !matches!(e.kind, notify::EventKind::Access(_)))
                .flat_map(|e| e.event.paths)
                .filter(|p| filter.relevant(p))
                .collect();
            paths.sort();
            paths.dedup();
            if !paths.is_empty() {
                report(Change::Paths(paths));
            }
        }
        Err(errors) => {
            for e in errors {
                report(Change::Trouble(describe(&e)));
            }
        }
    };
    let config = notify::Config::default().with_poll_interval(Duration::from_millis(500));
    if poll {
        let cache = notify_debouncer_full::NoCache;
        watch_with::<notify::PollWatcher, _>(dirs, debounce, handler, cache, config)
    } else {
        let cache = notify_debouncer_full::RecommendedCache::new();
        watch_with::<notify::RecommendedWatcher, _>(dirs, debounce, handler, cache, config)
    }
}

/// Every relevant `.rs` file under `roots` (not `Cargo.toml`: a rescan must not restart the
/// program when nothing may have changed).
fn rescan(roots: &[PathBuf], filter: &Filter) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in roots {
        for entry in ignore::WalkBuilder::new(root).build().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "rs") && filter.relevant(p) {
                out.push(p.to_path_buf());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Starts a debouncer over watcher `W` and watches every directory recursively.
fn watch_with<W, C>(
    dirs: &[PathBuf],
    debounce: Duration,
    handler: impl notify_debouncer_full::DebounceEventHandler,
    cache: C,
    config: notify::Config,
) -> Result<Box<dyn std::any::Any>>
where
    W: notify::Watcher + 'static,
    C: notify_debouncer_full::FileIdCache + Send + 'static,
{
    let mut d = new_debouncer_opt::<_, W, C>(debounce, None, handler, cache, config)
        .context("starting the file watcher")?;
    for dir in dirs {
        d.watch(dir, RecursiveMode::Recursive)
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    }
    Ok(Box::new(d))
}

fn describe(e: &notify::Error) -> String {
    if let notify::ErrorKind::MaxFilesWatch = e.kind {
        return "the system's inotify watch limit is reached; raise it with \
                `sudo sysctl fs.inotify.max_user_watches=524288`, or use `--poll`"
            .into();
    }
    format!("file watcher: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescan_finds_sources_and_skips_ignored_paths() {
        let root = std::env::temp_dir().join(format!("cargo-hot-rescan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["src/m", "target/debug", "gen"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "src/main.rs",
            "src/m/mod.rs",
            "target/debug/x.rs",
            "gen/g.rs",
            "Cargo.toml",
            "src/.main.rs.swp",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        std::fs::write(root.join(".gitignore"), "gen/\n").unwrap();
        let filter = Filter::new(&root, &root.join("target"), Vec::new());
        let found = rescan(std::slice::from_ref(&root), &filter);
        assert_eq!(
            found,
            vec![root.join("src/m/mod.rs"), root.join("src/main.rs")]
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
