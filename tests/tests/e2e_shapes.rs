//! End to end: the shapes real programs have, edited under `cargo hot run` in debug and
//! release builds. A package with a library and a binary in `src/bin/` (edits to the library's
//! modules patch the running binary); command types with `async fn apply(self, …)` under
//! tracing's `#[instrument]`, in both attribute orders, running on tokio; a Rust `dylib`
//! dependency the program loads as a shared object (as Bevy's `dynamic_linking` does), whose
//! functions new code may start calling. Judged by the program's output and pid first.

mod support;
use support::{Hot, pid_of};

const DB: &str = "app/src/db.rs";
const CMD: &str = "app/src/cmd.rs";
const BIN: &str = "app/src/bin/server.rs";

/// Waits for a line containing `needle` after `mark`, printed by `pid`.
fn wait_from(hot: &Hot, mark: (usize, usize), pid: u32, needle: &str) -> String {
    let line = hot.wait_out(mark, needle, 120);
    assert_eq!(
        pid_of(&line),
        pid,
        "same process: {line}\n--- cargo hot said ---\n{}",
        hot.err()
    );
    line
}

fn edit_and_see(hot: &Hot, pid: u32, file: &str, from: &str, to: &str, see: &str, fn_name: &str) {
    let m = hot.mark();
    hot.edit(file, from, to);
    wait_from(hot, m, pid, see);
    let said = hot.wait_err(m, "Patched", 60);
    // Names exactly the edited fn. In an optimized build, a hot fn recompiled with it (same
    // codegen unit, other inlining) can be named too (README, Limitations): there, it is among
    // the names.
    let names = patched_names(&said);
    if RELEASE.with(|r| r.get()) {
        assert!(
            names.split(", ").any(|n| n == fn_name),
            "names {fn_name}: {said}\n--- cargo hot said ---\n{}",
            hot.err()
        );
    } else {
        assert_eq!(names, fn_name, "names exactly: {said}");
    }
}

thread_local! {
    /// Whether the running `shapes` test builds `--release`.
    static RELEASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The function names of a `Patched NAMES in N ms …` line.
fn patched_names(line: &str) -> &str {
    let rest = &line[line.find("Patched ").expect("a Patched line") + 8..];
    &rest[..rest.find(" in ").expect("a timing")]
}

fn shapes(args: &[&str]) {
    let _serial = support::serial();
    RELEASE.with(|r| r.set(args.contains(&"--release")));
    let hot = Hot::spawn_in(support::copy_fixture("shapes"), args);
    // The first save comes as soon as the program prints, as a user's would.
    let pid = pid_of(&hot.wait_out((0, 0), "srv set k", 900));
    // A library module's sync method, called from the binary.
    edit_and_see(
        &hot,
        pid,
        DB,
        "e.get(key).cloned()",
        "e.get(key).map(|v| format!(\"<{v}>\"))",
        "get k=<v",
        "<fx_shapes::db::Db>::get",
    );
    // `#[hot]` above `#[instrument]`, async, by value: a non-hot fn its body calls.
    edit_and_see(
        &hot,
        pid,
        CMD,
        "format!(\"get {key}\")",
        "format!(\"GET {key}\")",
        "GET k=",
        "<fx_shapes::cmd::Get>::apply",
    );
    // `#[instrument]` above `#[hot]`, now calling a function of the loaded dylib that the
    // program never called before.
    edit_and_see(
        &hot,
        pid,
        CMD,
        "format!(\"set {}\", self.key)",
        "format!(\"set {} {}\", self.key, fx_dyn::whisper(\"psst\"))",
        "set k psst...",
        "<fx_shapes::cmd::Set>::apply",
    );
    // A hot fn of the binary itself.
    edit_and_see(&hot, pid, BIN, "\"srv\"", "\"SRV\"", "SRV set", "banner");
    // The dylib's own code is not patched: the program restarts, and says why.
    let m = hot.mark();
    hot.edit("dyn/src/lib.rs", "\"dyn\"", "\"dyn2\"");
    let line = hot.wait_out(m, "| dyn2 n=", 300);
    assert_ne!(pid_of(&line), pid, "restarted: {line}");
    assert!(
        line.contains("GET k=<v"),
        "the edits so far are kept: {line}"
    );
    let said = hot.wait_err(m, "Restarting", 5);
    assert!(said.contains("fx_dyn"), "names the library: {said}");
    hot.stop();
}

#[test]
fn lib_bin_package_with_instrumented_async_commands_and_a_dylib() {
    shapes(&[]);
}

/// The frame number and a field of a Bevy-shaped fixture line.
fn frame(line: &str) -> u64 {
    support::field(line, "frame")
}

fn bevy_shaped(args: &[&str]) {
    let _serial = support::serial();
    let hot = Hot::spawn_in(support::copy_fixture("ecs"), args);
    let first = hot.wait_out((0, 0), "mood=calm", 900);
    let pid = pid_of(&first);
    // A system's body: the next frame prints the new text, and its `Local` frame counter goes on.
    let m = hot.mark();
    hot.edit("src/main.rs", "mood=calm", "mood=glad");
    let line = wait_from(&hot, m, pid, "mood=glad");
    assert!(frame(&line) > frame(&first), "Local<u64> kept: {line}");
    let said = hot.wait_err(m, "Patched", 60);
    if !said.contains("was reloaded") {
        assert_eq!(patched_names(&said), "report", "names exactly: {said}");
    }
    // A generic system, scheduled as `tally::<Pos>` and `tally::<Vel>`: both run the new body.
    let m = hot.mark();
    let before = wait_from(&hot, m, pid, "tally=Pos:2,Vel:2");
    hot.edit(
        "src/main.rs",
        "q.iter().count() as u64);",
        "q.iter().count() as u64 * 10);",
    );
    let line = wait_from(&hot, m, pid, "tally=Pos:20,Vel:20");
    assert!(frame(&line) > frame(&before), "Local<u64> kept: {line}");
    let said = hot.wait_err(m, "Patched", 60);
    assert_eq!(patched_names(&said), "tally", "names exactly: {said}");
    // The plugin's `build` ran at start-up: its edit is named as not running, not as patched.
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "app.init_resource::<Score>()",
        "app.insert_resource(Score(100_000))",
    );
    let said = hot.wait_err(m, "Not run", 60);
    assert!(
        said.contains(
            "GamePlugin as bevy_app::plugin::Plugin>::build` changed, but no #[hot] fn calls it"
        ),
        "{said}"
    );
    // An optimized build may recompile a system whose source did not change (README,
    // Limitations), and cargo hot then names it; an unoptimized one must claim nothing.
    if !args.contains(&"--release") {
        assert!(
            !hot.err_since(m).contains("Patched"),
            "{}",
            hot.err_since(m)
        );
    }
    let line = wait_from(&hot, hot.mark(), pid, "score=");
    assert!(
        support::field(&line, "score") < 100_000,
        "build did not run again: {line}"
    );
    // An observer's body.
    let m = hot.mark();
    let before = support::field(&hot.wait_out(m, "cheers=", 10), "cheers");
    hot.edit(
        "src/main.rs",
        "ev.event().0.min(1);",
        "ev.event().0.min(1) * 1000;",
    );
    let said = hot.wait_err(m, "Patched", 60);
    assert_eq!(patched_names(&said), "cheer", "names exactly: {said}");
    let m = hot.mark();
    let line = wait_from(&hot, m, pid, "cheers=");
    assert!(
        support::field(&line, "cheers") > before + 1000,
        "the observer runs its new body: {line}"
    );
    hot.stop();
}

#[test]
fn bevy_shaped_systems_and_observers_keep_their_state() {
    bevy_shaped(&[]);
}

#[test]
fn bevy_shaped_in_release() {
    bevy_shaped(&["--release"]);
}
#[test]
fn the_same_in_release() {
    shapes(&["--release"]);
}
