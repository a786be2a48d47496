//! The user's workspace, read once with `cargo metadata`, and the one way cargo hot runs cargo
//! (through `$CARGO`, as cargo itself sets it for subcommands).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `cargo` as the user's cargo invoked us (`$CARGO`), else the one on `PATH`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

pub struct Workspace {
    pub root: PathBuf,
    /// Package names of the workspace members.
    pub members: Vec<String>,
    /// Directories of the workspace members.
    pub member_dirs: Vec<PathBuf>,
    /// Directories of local path dependencies outside the workspace: watched, and a change
    /// there restarts the program (cargo builds them; their rustc runs are not recorded).
    pub path_deps: Vec<PathBuf>,
    /// Members with a `dylib` target: (library name, directory). The program loads their code
    /// as a shared object, which cargo hot does not patch.
    pub dylibs: Vec<(String, PathBuf)>,
    pub target_dir: PathBuf,
    /// cargo hot's own target directory (`<target>/hot`): the user's builds are never touched.
    pub hot_dir: PathBuf,
    /// The name the members give their dependency on hot-runtime (`hot-runtime`, or a rename).
    pub hot_runtime_dep: Option<String>,
    /// Package and crate names of the members (`my-app`, `my_app`).
    pub member_names: Vec<String>,
    manifest_path: Option<PathBuf>,
}

fn dir_of(p: &cargo_metadata::Package) -> Option<PathBuf> {
    p.manifest_path
        .parent()
        .map(|d| d.as_std_path().to_path_buf())
}

impl Workspace {
    pub fn load(manifest_path: Option<&Path>, target_dir: Option<&Path>) -> Result<Workspace> {
        let mut cmd = cargo_metadata::MetadataCommand::new();
        if let Some(m) = manifest_path {
            cmd.manifest_path(m);
        }
        if let Some(c) = std::env::var_os("CARGO") {
            cmd.cargo_path(c);
        }
        let md = cmd
            .exec()
            .context("reading the workspace with `cargo metadata`")?;
        let target_dir: PathBuf = target_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| md.target_directory.clone().into());
        let members = md.workspace_packages();
        let path_deps = md
            .packages
            .iter()
            .filter(|p| p.source.is_none() && !md.workspace_members.contains(&p.id))
            .filter_map(dir_of)
            .collect();
        let dylibs = members
            .iter()
            .flat_map(|p| {
                p.targets
                    .iter()
                    .filter(|t| t.kind.iter().any(|k| k.to_string() == "dylib"))
                    .filter_map(|t| Some((t.name.replace('-', "_"), dir_of(p)?)))
            })
            .collect();
        let hot_runtime_dep = members.iter().find_map(|p| {
            p.dependencies
                .iter()
                .find(|d| d.name == "hot-runtime")
                .map(|d| d.rename.clone().unwrap_or_else(|| d.name.clone()))
        });
        let mut member_names: Vec<String> = Vec::new();
        for p in &members {
            member_names.push(p.name.to_string());
            member_names.extend(p.targets.iter().map(|t| t.name.replace('-', "_")));
        }
        member_names.sort();
        member_names.dedup();
        Ok(Workspace {
            hot_runtime_dep,
            member_names,
            dylibs,
            root: md.workspace_root.clone().into(),
            members: members.iter().map(|p| p.name.to_string()).collect(),
            member_dirs: members.iter().filter_map(|p| dir_of(p)).collect(),
            path_deps,
            hot_dir: target_dir.join("hot"),
            target_dir,
            manifest_path: manifest_path.map(Path::to_path_buf),
        })
    }

    /// Every directory whose files the program is built from.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.member_dirs.clone();
        dirs.extend(self.path_deps.iter().cloned());
        dirs
    }

    /// The changed file that belongs to a path dependency outside the workspace (its tests,
    /// benches and examples are not part of its build), if any.
    pub fn outside_change<'a>(&self, paths: &'a [PathBuf]) -> Option<&'a PathBuf> {
        paths.iter().find(|p| {
            self.path_deps.iter().any(|d| {
                p.starts_with(d)
                    && !["tests", "benches", "examples"]
                        .iter()
                        .any(|sub| p.starts_with(d.join(sub)))
            }) && !self.member_dirs.iter().any(|m| p.starts_with(m))
        })
    }

    /// The changed file that belongs to a member the program loads as a shared library
    /// (`shared_libs`: the file names of the libraries it loads), with the library's name.
    pub fn shared_library_change<'a>(
        &self,
        paths: &'a [PathBuf],
        shared_libs: &[String],
    ) -> Option<(&'a PathBuf, String)> {
        paths.iter().find_map(|p| {
            self.dylibs
                .iter()
                .find(|(name, dir)| {
                    p.starts_with(dir) && shared_libs.iter().any(|l| *l == format!("lib{name}.so"))
                })
                .map(|(name, _)| (p, name.clone()))
        })
    }

    /// `cargo clean -p` of every member in the hot directory, so that the next build runs (and
    /// records) rustc for each of them.
    pub fn clean_members(&self) {
        let mut clean = cargo();
        clean
            .arg("clean")
            .arg("--quiet")
            .arg("--target-dir")
            .arg(&self.hot_dir);
        if let Some(m) = &self.manifest_path {
            clean.arg("--manifest-path").arg(m);
        }
        for m in &self.members {
            clean.arg("-p").arg(m);
        }
        let _ = clean.status();
    }
}

/// One executable cargo built: target name, target kinds, path.
pub type Built = (String, Vec<String>, PathBuf);

/// The executable to run among those built: the `--bin`/`--example` asked for, else the only
/// one, else an error listing them as `cargo run` does.
pub fn pick_exe(bin: Option<&str>, example: Option<&str>, exes: &[Built]) -> Result<PathBuf> {
    let want_kind = if example.is_some() { "example" } else { "bin" };
    let want_name = example.or(bin);
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
