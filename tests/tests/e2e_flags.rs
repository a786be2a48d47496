//! End to end: cargo's flags reach the build and the program, like `cargo run`.

mod support;
use support::{Hot, pid_of};

#[test]
fn bin_features_and_program_args_pass_through() {
    let _serial = support::serial();
    let hot = Hot::start(
        "multi",
        &["--bin", "second", "-F", "loud", "--", "a", "b c"],
    );
    let l = hot.wait_out(hot.mark(), "second loud=true args=[\"a\", \"b c\"] v1", 120);
    let m = hot.mark();
    hot.edit("src/bin/second.rs", " v1\"", " v2\"");
    let l2 = hot.wait_out(m, "second loud=true args=[\"a\", \"b c\"] v2", 60);
    assert_eq!(pid_of(&l), pid_of(&l2));
    hot.stop();
}

#[test]
fn an_example_is_patched() {
    let _serial = support::serial();
    let hot = Hot::start("multi", &["--example", "demo"]);
    let l = hot.wait_out(hot.mark(), "demo loud=false args=[] v1", 120);
    let m = hot.mark();
    hot.edit("examples/demo.rs", " v1\"", " v2\"");
    let l2 = hot.wait_out(m, "demo loud=false args=[] v2", 60);
    assert_eq!(pid_of(&l), pid_of(&l2));
    hot.stop();
}

/// `--release` reaches cargo, and an example built in release mode is patched (the edit suite
/// runs its whole table in release mode too).
#[test]
fn release_builds_run_in_the_release_profile_and_edits_take_effect() {
    let _serial = support::serial();
    let hot = Hot::start("multi", &["--example", "demo", "--release"]);
    hot.wait_out(hot.mark(), "demo loud=false args=[] v1", 300);
    assert!(
        hot.err().contains("hot/release/examples/demo"),
        "{}",
        hot.err()
    );
    let m = hot.mark();
    hot.edit("examples/demo.rs", " v1\"", " v2\"");
    hot.wait_out(m, "demo loud=false args=[] v2", 120);
    let said = hot.err_since(m);
    assert!(
        said.contains("Patched") && !said.contains("Restarting"),
        "{said}"
    );
    hot.stop();
}

#[test]
fn two_binaries_without_bin_is_an_error_listing_them() {
    let _serial = support::serial();
    let dir = support::copy_fixture("multi");
    let out = std::process::Command::new(support::cargo_hot())
        .args(["hot", "run", "--color", "never", "--target-dir"])
        .arg(support::shared_target())
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("could not determine which binary to run"),
        "{err}"
    );
    assert!(err.contains("first") && err.contains("second"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_path_dependency_outside_the_workspace_is_watched_and_restarts() {
    let _serial = support::serial();
    let root = support::copy_fixture("pathdep");
    let hot = Hot::start_in(root.join("app"), &[]);
    let first = hot.wait_out(hot.mark(), "app says dep1", 120);
    let m = hot.mark();
    let lib = root.join("dep/src/lib.rs");
    std::fs::write(
        &lib,
        std::fs::read_to_string(&lib)
            .unwrap()
            .replace("dep1", "dep2"),
    )
    .unwrap();
    let why = hot.wait_err(m, "Restarting", 60);
    assert!(
        why.contains("path dependency outside the workspace"),
        "{why}"
    );
    hot.wait_err(m, "Watching", 120);
    let after = hot.wait_out(hot.mark(), "app says dep2", 10);
    assert_ne!(pid_of(&first), pid_of(&after));
    hot.stop();
    let _ = std::fs::remove_dir_all(root);
}

/// A project the user has built with `cargo build`: cargo hot's first run compiles hot-runtime
/// (and the crates only its hot mode uses) and the user's own crate, and takes every other
/// dependency from the user's target directory; patches work as usual; the user's own next
/// `cargo build` has nothing to do.
#[test]
fn first_run_rebuilds_no_dependency_the_user_built() {
    let _serial = support::serial();
    let dir = support::copy_fixture("hello");
    let target = dir.join("target");
    let cargo = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO"))
            .args(args)
            .arg("--target-dir")
            .arg(&target)
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let built = cargo(&["build"]);
    assert!(built.contains("Compiling hot-macros"), "{built}");

    let hot = Hot::spawn_with_target(dir.clone(), &target, &[]);
    let first = hot.wait_out((0, 0), "Hello", 600);
    hot.wait_err((0, 0), "Watching", 120);
    let compiled: Vec<String> = hot
        .err()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Compiling "))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    // What the user's build has, and hot mode does not change, is not compiled again.
    for dep in [
        "hot-macros",
        "syn",
        "quote",
        "proc-macro2",
        "serde",
        "serde_derive",
    ] {
        assert!(
            !compiled.iter().any(|c| c == dep),
            "{dep} was compiled again: {compiled:?}"
        );
    }
    assert!(compiled.iter().any(|c| c == "hot-runtime"), "{compiled:?}");
    assert!(compiled.iter().any(|c| c == "fx_hello"), "{compiled:?}");
    // Patches work on this build, in the same process (its call counter goes on).
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "Hello from hot-patched code!",
        "Hello again!",
    );
    let line = hot.wait_out(m, "Hello again!", 60);
    let call = |l: &str| -> u64 {
        let n = &l[l.find("call #").expect("a call number") + 6..];
        n.trim_end_matches(')').parse().unwrap()
    };
    assert!(call(&line) > call(&first), "{first} -> {line}");
    hot.wait_err(m, "Patched", 10);
    // The user's own build was only read: their next build compiles the edited crate alone.
    let again = cargo(&["build"]);
    let recompiled: Vec<&str> = again.lines().filter(|l| l.contains("Compiling ")).collect();
    assert!(
        recompiled.len() == 1 && recompiled[0].contains("fx_hello"),
        "{again}"
    );
    hot.stop();
}
