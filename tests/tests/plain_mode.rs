//! A plain `cargo build` of a program using `#[hot]` links no loader, no jump table, no
//! registry and reads no hot-related environment variable; the hot build has all of them.

mod support;
use std::process::Command;

fn build_hello(target: &str, hot: bool) -> Vec<u8> {
    let dir = support::repo().join("target").join(target);
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--quiet", "-p", "hello", "--manifest-path"])
        .arg(support::repo().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if hot {
        cmd.env("CARGO_ENCODED_RUSTFLAGS", "--cfg\x1fhot_runtime_hot");
    }
    assert!(cmd.status().unwrap().success());
    std::fs::read(dir.join("debug").join("hello")).unwrap()
}

fn symbols(bin: &[u8]) -> String {
    let path =
        std::env::temp_dir().join(format!("plain-mode-{}-{}", std::process::id(), bin.len()));
    std::fs::write(&path, bin).unwrap();
    let out = Command::new("nm").arg("-C").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn plain_build_links_nothing_of_the_runtime_and_hot_build_does() {
    let _serial = support::serial();
    let plain = build_hello("e2e-plain", false);
    let hot = build_hello("e2e-hotmode", true);
    let (ps, hs) = (symbols(&plain), symbols(&hot));
    for needle in [
        "hot_runtime::loader",
        "hot_runtime::table",
        "__start_hot_runtime_fns",
        "__HOT_SLOT",
        "__HOT_ENTRY",
        "dlopen",
    ] {
        assert!(!ps.contains(needle), "plain build links {needle}");
    }
    assert!(
        !contains(&plain, "HOT_RUNTIME_FD"),
        "plain build mentions HOT_RUNTIME_FD"
    );
    assert!(!contains(&plain, "HOT_RUNTIME_PATCH_DIR"));
    // The same checks find everything in the hot build, so they are not vacuous.
    for needle in [
        "hot_runtime::loader",
        "hot_runtime::table",
        "__HOT_SLOT",
        "__HOT_ENTRY",
    ] {
        assert!(hs.contains(needle), "hot build lacks {needle}");
    }
    assert!(contains(&hot, "HOT_RUNTIME_FD"));
}
