//! End to end: state survives patches; log reaches the host's logger; new fns, statics and
//! trait impls; panics in patched code; refusals keep the old code running.

mod support;
use support::{Hot, field, pid_of};

const FILE: &str = "src/main.rs";

#[test]
fn state_survives_successive_patches_and_refusals_keep_old_code() {
    let _serial = support::serial();
    let hot = Hot::start("state", &["--no-restart"]);
    // The first build of the fixture may compile hot-runtime and log.
    let m = hot.mark();
    let first = hot.wait_out(m, "v1 a=", 600);
    let pid = pid_of(&first);

    // 1. A string edit: every kind of static keeps counting.
    let m = hot.mark();
    hot.edit(FILE, "v1 a=", "v2 a=");
    let l2 = hot.wait_out(m, "v2 a=", 60);
    hot.wait_err(m, "Patched tick", 5);
    assert_eq!(pid_of(&l2), pid, "patched in the same process");
    for k in ["a", "b", "c", "d", "e"] {
        assert!(
            field(&l2, k) > field(&first, k),
            "{k} kept counting: {first} -> {l2}"
        );
    }
    assert!(
        field(&l2, "b") > 100
            && field(&l2, "c") > 1000
            && field(&l2, "d") > 10_000
            && field(&l2, "e") > 20_000
    );

    // 2. New fn, new static (starts at its initializer), new trait impl, log through the host's logger.
    let m = hot.mark();
    hot.edit(
        FILE,
        "// @ITEMS@",
        "fn helper() -> u64 { 7 }\nstatic NEWS: AtomicU64 = AtomicU64::new(500);\nimpl Describe for Thing { fn describe(&self) -> String { format!(\"thing{}\", self.0) } }",
    );
    hot.edit(
        FILE,
        "let extra = String::new(); // @EXTRA@",
        "let extra = { log::info!(\"hello from v3\"); format!(\" h={} n={} t={}\", helper(), NEWS.fetch_add(1, Ordering::Relaxed), Thing(9).describe()) };",
    );
    hot.edit(FILE, "v2 a=", "v3 a=");
    let l3 = hot.wait_out(m, "v3 a=", 60);
    assert_eq!(pid_of(&l3), pid);
    assert!(field(&l3, "a") > field(&l2, "a"));
    assert_eq!(field(&l3, "h"), 7);
    assert!(field(&l3, "n") >= 500 && field(&l3, "n") < 600, "{l3}");
    assert!(l3.contains("t=thing9"), "{l3}");
    let log = hot.wait_out(m, "hello from v3", 10);
    assert!(
        log.starts_with("LOG#"),
        "went through the host's logger: {log}"
    );

    // 3. A panic in patched code is caught by the host's catch_unwind and reported by its hook.
    let m = hot.mark();
    hot.edit(
        FILE,
        "    n + 1\n",
        "    if n > 0 {\n        panic!(\"boom from patched code\");\n    }\n    n + 2\n",
    );
    hot.wait_out(m, "HOOK caught", 60);
    hot.wait_out(m, "boom from patched code", 5);
    hot.wait_out(m, "risky panicked", 10);
    let after = hot.mark();
    let l = hot.wait_out(after, "v3 a=", 10);
    assert_eq!(pid_of(&l), pid, "the program survived the panic");

    // 4. A new thread_local! is refused; the old code keeps running; the next good edit patches.
    let m = hot.mark();
    hot.edit(FILE, "fn helper() -> u64 { 7 }", "thread_local! { static NEW_TLS: Cell<u64> = const { Cell::new(1) }; }\nfn helper() -> u64 { NEW_TLS.with(|t| t.get()) + 6 }");
    let refused = hot.wait_err(m, "Refused", 60);
    assert!(refused.contains("thread-local"), "{refused}");
    let m = hot.mark();
    let l = hot.wait_out(m, "v3 a=", 10);
    assert_eq!(pid_of(&l), pid);
    assert_eq!(field(&l, "h"), 7, "old code still running");
    hot.edit(FILE, "thread_local! { static NEW_TLS: Cell<u64> = const { Cell::new(1) }; }\nfn helper() -> u64 { NEW_TLS.with(|t| t.get()) + 6 }", "fn helper() -> u64 { 8 }");
    let l = hot.wait_out(m, "h=8", 60);
    assert_eq!(pid_of(&l), pid);

    // 5. A hot fn's signature change is refused (--no-restart), naming the function.
    let m = hot.mark();
    hot.edit(
        FILE,
        "fn risky(n: u64) -> u64 {",
        "fn risky(n: u64) -> u32 {",
    );
    let refused = hot.wait_err(m, "Refused", 60);
    assert!(refused.contains("risky"), "{refused}");
    hot.edit(
        FILE,
        "fn risky(n: u64) -> u32 {",
        "fn risky(n: u64) -> u64 {",
    );

    // 6. A compile error shows rustc's diagnostic and keeps the old code; the fix patches.
    let m = hot.mark();
    hot.edit(FILE, "v3 a=", "v4 a=\" + ");
    let e = hot.wait_err(m, "keeps running its last good code", 60);
    assert!(e.contains("could not compile"), "{e}");
    assert!(hot.err_since(m).contains("error"), "diagnostic shown");
    let m2 = hot.mark();
    let l = hot.wait_out(m2, "v3 a=", 10);
    assert_eq!(pid_of(&l), pid);
    hot.edit(FILE, "v4 a=\" + ", "v4 a=");
    let l4 = hot.wait_out(m2, "v4 a=", 60);
    assert_eq!(pid_of(&l4), pid);
    assert!(field(&l4, "a") > field(&l3, "a"));
    hot.stop();
}

#[test]
fn a_struct_change_restarts_the_program() {
    let _serial = support::serial();
    let hot = Hot::start("state", &[]);
    let m = hot.mark();
    let first = hot.wait_out(m, "v1 a=", 600);
    let m = hot.mark();
    hot.edit(
        FILE,
        "pub struct Thing(pub u32);",
        "pub struct Thing(pub u32, pub u8);",
    );
    let msg = hot.wait_err(m, "Restarting", 60);
    assert!(msg.contains("struct Thing"), "{msg}");
    hot.wait_err(m, "Watching", 120);
    let again = hot.wait_out(hot.mark(), "v1 a=", 10);
    assert_ne!(pid_of(&again), pid_of(&first), "a new process");
    assert!(
        field(&again, "a") < 10,
        "a fresh start: state is reset by a restart: {again}"
    );
    hot.stop();
}
