//! End to end: async hot fns on tokio (spawn, sleep, a host channel, tracing, serde_json), an
//! async trait-impl method, and a workspace library crate.

mod support;
use support::{Hot, field, pid_of};

#[test]
fn async_code_on_tokio_is_patched_in_place() {
    let _serial = support::serial();
    let hot = Hot::start("asyncapp", &["--no-restart"]);
    let m = hot.mark();
    let first = hot.wait_out(m, "\"v\":\"v1\"", 120);
    let pid = pid_of(&first);
    hot.wait_out(m, "channel doubled=42", 10);
    hot.wait_out(m, "traced v1", 10);
    hot.wait_out(m, "app handled x! h1", 10);

    let m = hot.mark();
    hot.edit("src/main.rs", "n * 2 })", "n * 3 })");
    hot.edit("src/main.rs", "\"traced v1\"", "\"traced v2\"");
    hot.edit("src/main.rs", "\"v\": \"v1\"", "\"v\": \"v2\"");
    let l = hot.wait_out(m, "\"v\":\"v2\"", 120);
    assert_eq!(pid_of(&l), pid);
    assert!(
        field(&l, "\"calls\":") > field(&first, "\"calls\":"),
        "the host's static kept counting: {first} -> {l}"
    );
    hot.wait_out(m, "channel doubled=63", 10);
    hot.wait_out(m, "traced v2", 10);
    hot.wait_err(m, "Patched", 5);

    let m = hot.mark();
    hot.edit("src/main.rs", "h1\", self.name)", "h2\", self.name)");
    let l = hot.wait_out(m, "app handled x! h2", 60);
    assert_eq!(pid_of(&l), pid);
    hot.stop();
}

#[test]
fn a_workspace_library_crate_is_patched() {
    let _serial = support::serial();
    let hot = Hot::start("wslib", &["--no-restart", "-p", "fx_ws_app"]);
    let m = hot.mark();
    let first = hot.wait_out(m, "lib1", 120);
    let m = hot.mark();
    hot.edit("core/src/lib.rs", "lib1", "lib2");
    let l = hot.wait_out(m, "lib2", 60);
    assert_eq!(pid_of(&l), pid_of(&first));
    assert!(field(&l, "seen") > field(&first, "seen"));
    hot.stop();
}
