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
