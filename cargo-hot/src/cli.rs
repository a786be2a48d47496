//! Command line: cargo's flag names and help headings, re-emitted explicitly to `cargo build`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::build::CargoFlags;
use crate::session::{self, RestartPolicy};

#[derive(Parser, Debug)]
#[command(
    name = "cargo-hot",
    bin_name = "cargo hot",
    version,
    about = "Hot-patch a running Rust program when you save",
    long_about = "Hot-patch a running Rust program when you save.\n\n\
        Put #[hot_runtime::hot] on functions, run `cargo hot run`, edit a function body and save: \
        the same process runs the new body, with all its state intact."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Build and run the program, patching it on every save
    Run(RunArgs),
    /// Build the program for hot patching (the fat build) and print the executable's path
    Build(CommonArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Package with the target to run
    #[arg(
        short = 'p',
        long = "package",
        value_name = "SPEC",
        help_heading = "Package Selection"
    )]
    pub package: Option<String>,

    /// Name of the bin target to run
    #[arg(long, value_name = "NAME", help_heading = "Target Selection")]
    pub bin: Option<String>,

    /// Name of the example target to run
    #[arg(long, value_name = "NAME", help_heading = "Target Selection")]
    pub example: Option<String>,

    /// Space or comma separated list of features to activate
    #[arg(
        short = 'F',
        long,
        value_name = "FEATURES",
        help_heading = "Feature Selection"
    )]
    pub features: Vec<String>,

    /// Activate all available features
    #[arg(long, help_heading = "Feature Selection")]
    pub all_features: bool,

    /// Do not activate the `default` feature
    #[arg(long, help_heading = "Feature Selection")]
    pub no_default_features: bool,

    /// Build artifacts in release mode, with optimizations
    #[arg(short = 'r', long, help_heading = "Compilation Options")]
    pub release: bool,

    /// Build artifacts with the specified profile
    #[arg(
        long,
        value_name = "PROFILE-NAME",
        help_heading = "Compilation Options"
    )]
    pub profile: Option<String>,

    /// Directory for all generated artifacts (cargo hot uses its `hot` subdirectory)
    #[arg(long, value_name = "DIRECTORY", help_heading = "Compilation Options")]
    pub target_dir: Option<PathBuf>,

    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH", help_heading = "Manifest Options")]
    pub manifest_path: Option<PathBuf>,

    /// Assert that `Cargo.lock` will remain unchanged
    #[arg(long, help_heading = "Manifest Options")]
    pub locked: bool,

    /// Run without accessing the network
    #[arg(long, help_heading = "Manifest Options")]
    pub offline: bool,

    /// Equivalent to specifying both --locked and --offline
    #[arg(long, help_heading = "Manifest Options")]
    pub frozen: bool,

    /// Use verbose output (-vv very verbose)
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Do not print cargo hot's status lines (errors are still shown)
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Coloring: auto, always, never
    #[arg(long, value_name = "WHEN", value_parser = ["auto", "always", "never"])]
    pub color: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// On an edit that cannot be patched, keep the program running its current code instead
    /// of restarting it
    #[arg(long, help_heading = "Hot Options")]
    pub no_restart: bool,

    /// Milliseconds to wait for a burst of saves to settle [default: 5, or
    /// `[package.metadata.hot] debounce-ms`]
    #[arg(long, value_name = "MS", help_heading = "Hot Options")]
    pub debounce: Option<u64>,

    /// Poll the file system instead of using change events (network or container mounts)
    #[arg(long, help_heading = "Hot Options")]
    pub poll: bool,

    /// Also watch this path (repeatable)
    #[arg(long, value_name = "PATH", help_heading = "Hot Options")]
    pub watch: Vec<PathBuf>,

    /// Ignore changes under this path (repeatable)
    #[arg(long, value_name = "PATH", help_heading = "Hot Options")]
    pub ignore: Vec<PathBuf>,

    /// Listen on ADDR for the program and hand it the same socket on every restart, so
    /// connections wait instead of being refused (systemd protocol: `LISTEN_FDS`, `listenfd`;
    /// or `hot_runtime::listener(ADDR)`) (repeatable)
    #[arg(long, value_name = "ADDR", help_heading = "Hot Options")]
    pub listen: Vec<String>,

    /// Arguments for the program
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

impl CommonArgs {
    /// The flags for `cargo build`, in cargo's spelling.
    pub fn cargo_flags(&self) -> CargoFlags {
        let mut f: Vec<OsString> = Vec::new();
        let mut push = |a: &str| f.push(a.into());
        if let Some(p) = &self.package {
            push("--package");
            push(p);
        }
        if let Some(b) = &self.bin {
            push("--bin");
            push(b);
        }
        if let Some(e) = &self.example {
            push("--example");
            push(e);
        }
        if !self.features.is_empty() {
            push("--features");
            push(&self.features.join(","));
        }
        if self.all_features {
            push("--all-features");
        }
        if self.no_default_features {
            push("--no-default-features");
        }
        if self.release {
            push("--release");
        }
        if let Some(p) = &self.profile {
            push("--profile");
            push(p);
        }
        if let Some(m) = &self.manifest_path {
            push("--manifest-path");
            f.push(m.into());
        }
        let mut push = |a: &str| f.push(a.into());
        if self.locked {
            push("--locked");
        }
        if self.offline {
            push("--offline");
        }
        if self.frozen {
            push("--frozen");
        }
        for _ in 0..self.verbose {
            push("--verbose");
        }
        if self.quiet {
            push("--quiet");
        }
        push("--color");
        push(if crate::ui::color() {
            "always"
        } else {
            "never"
        });
        CargoFlags(f)
    }
}

/// `[package.metadata.hot]` / `[workspace.metadata.hot]` settings; CLI flags win over both,
/// and the package's over the workspace's.
#[derive(Default, Debug)]
struct Config {
    debounce_ms: Option<u64>,
    restart: Option<bool>,
    watch: Vec<PathBuf>,
    ignore: Vec<PathBuf>,
    listen: Vec<String>,
}

fn read_config(common: &CommonArgs) -> Config {
    let mut cmd = cargo_metadata::MetadataCommand::new();
    if let Some(m) = &common.manifest_path {
        cmd.manifest_path(m);
    }
    cmd.no_deps();
    let Ok(md) = cmd.exec() else {
        return Config::default();
    };
    let mut cfg = Config::default();
    let root: PathBuf = md.workspace_root.clone().into();
    let mut apply = |v: &serde_json::Value, base: &std::path::Path| {
        let hot = &v["hot"];
        if let Some(d) = hot["debounce-ms"].as_u64() {
            cfg.debounce_ms = Some(d);
        }
        if let Some(r) = hot["restart"].as_bool() {
            cfg.restart = Some(r);
        }
        if let Some(a) = hot["listen"].as_array() {
            cfg.listen
                .extend(a.iter().filter_map(|x| x.as_str()).map(str::to_string));
        }
        for (key, list) in [("watch", &mut cfg.watch), ("ignore", &mut cfg.ignore)] {
            if let Some(a) = hot[key].as_array() {
                list.extend(a.iter().filter_map(|p| p.as_str()).map(|p| base.join(p)));
            }
        }
    };
    apply(&md.workspace_metadata, &root);
    let pkg = md.workspace_packages().into_iter().find(|p| {
        common
            .package
            .as_deref()
            .is_none_or(|n| n == p.name.as_str())
    });
    if let Some(p) = pkg {
        if common.package.is_some() || md.workspace_packages().len() == 1 {
            let dir = p
                .manifest_path
                .parent()
                .map(|d| d.as_std_path().to_path_buf())
                .unwrap_or(root.clone());
            apply(&p.metadata, &dir);
        }
    }
    cfg
}

pub fn main(mut argv: Vec<OsString>) -> Result<i32> {
    // `cargo hot run` execs `cargo-hot hot run`.
    if argv.get(1).is_some_and(|a| a == "hot") {
        argv.remove(1);
    }
    let cli = Cli::parse_from(argv);
    let (common, run) = match cli.command {
        Cmd::Run(r) => (r.common.clone(), Some(r)),
        Cmd::Build(c) => (c, None),
    };
    crate::ui::init(common.color.as_deref(), common.quiet);
    let cfg = read_config(&common);
    let restart = match (&run, cfg.restart) {
        (Some(r), _) if r.no_restart => RestartPolicy::KeepRunning,
        (_, Some(false)) => RestartPolicy::KeepRunning,
        _ => RestartPolicy::Restart,
    };
    let opts = session::Options {
        flags: common.cargo_flags(),
        program_args: run.as_ref().map(|r| r.args.clone()).unwrap_or_default(),
        manifest_path: common.manifest_path.clone(),
        package: common.package.clone(),
        bin: common.bin.clone(),
        example: common.example.clone(),
        target_dir: common.target_dir.clone(),
        restart,
        debounce: Duration::from_millis(
            run.as_ref()
                .and_then(|r| r.debounce)
                .or(cfg.debounce_ms)
                .unwrap_or(5),
        ),
        poll: run.as_ref().is_some_and(|r| r.poll),
        extra_watch: run
            .as_ref()
            .map(|r| r.watch.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(cfg.watch)
            .collect(),
        ignores: run
            .as_ref()
            .map(|r| r.ignore.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(cfg.ignore)
            .collect(),
        build_only: run.is_none(),
        listen: match run.as_ref().map(|r| r.listen.clone()) {
            Some(l) if !l.is_empty() => l,
            _ => cfg.listen,
        },
    };
    session::run(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Vec<String> {
        let mut argv = vec!["cargo-hot", "run"];
        argv.extend(args);
        let cli = Cli::parse_from(argv);
        let Cmd::Run(r) = cli.command else { panic!() };
        r.common
            .cargo_flags()
            .0
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .filter(|s| s != "--color" && s != "never" && s != "always")
            .collect()
    }

    #[test]
    fn flags_are_re_emitted_in_cargo_spelling() {
        assert_eq!(
            flags(&["-p", "server", "--bin", "srv"]),
            ["--package", "server", "--bin", "srv"]
        );
        assert_eq!(
            flags(&["-F", "a", "-F", "b,c", "--no-default-features"]),
            ["--features", "a,b,c", "--no-default-features"]
        );
        assert_eq!(
            flags(&["-r", "--locked", "-vv"]),
            ["--release", "--locked", "--verbose", "--verbose"]
        );
        assert_eq!(
            flags(&[
                "--example",
                "demo",
                "--profile",
                "dev2",
                "--frozen",
                "--offline"
            ]),
            [
                "--example",
                "demo",
                "--profile",
                "dev2",
                "--offline",
                "--frozen"
            ]
        );
    }

    #[test]
    fn program_args_follow_double_dash() {
        let cli = Cli::parse_from(["cargo-hot", "run", "-p", "x", "--", "--port", "8080"]);
        let Cmd::Run(r) = cli.command else { panic!() };
        assert_eq!(r.args, [OsString::from("--port"), OsString::from("8080")]);
        assert_eq!(r.common.package.as_deref(), Some("x"));
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(Cli::try_parse_from(["cargo-hot", "run", "--no-such-flag"]).is_err());
    }

    #[test]
    fn help_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
