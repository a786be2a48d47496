//! End to end: saves made when users make them — the moment the program prints its first line,
//! the moment a restarted program comes up, broken ones — never cost the running program, and
//! the program never outlives cargo hot. Judged by the program's own output (its pid, its
//! counter), then by what cargo hot said.

mod support;
use std::time::{Duration, Instant};
use support::{Hot, alive, field, pid_of};

const FILE: &str = "src/main.rs";

/// Waits for a line by `pid` saying `word=want`, and checks that no other process printed
/// meanwhile.
fn wait_word(hot: &Hot, mark: (usize, usize), pid: u32, want: &str, secs: u64) -> String {
    let line = hot.wait_out(mark, &format!("word={want} "), secs);
    assert_eq!(pid_of(&line), pid, "same process: {line}");
    line
}

fn start() -> Hot {
    Hot::spawn_in(support::copy_fixture("session"), &[])
}

#[test]
fn a_save_right_after_the_first_output_is_patched_into_the_same_process() {
    let _serial = support::serial();
    let hot = start();
    let first = hot.wait_out((0, 0), "word=one", 600);
    let pid = pid_of(&first);
    let m = hot.mark();
    hot.edit(FILE, "\"one\"", "\"two\"");
    let line = wait_word(&hot, m, pid, "two", 60);
    assert!(field(&line, "n") > field(&first, "n"), "state kept: {line}");
    let said = hot.wait_err(m, "Patched", 30);
    assert!(said.contains("word"), "names the fn: {said}");
    let err = hot.err();
    assert!(
        !err.contains("Restarting") && !err.contains("Rebuilding"),
        "no restart: {err}"
    );
    hot.stop();
}

#[test]
fn a_broken_save_right_after_the_first_output_keeps_the_program_running() {
    let _serial = support::serial();
    let hot = start();
    let pid = pid_of(&hot.wait_out((0, 0), "word=one", 600));
    let m = hot.mark();
    hot.edit(FILE, "\"one\"", "\"one");
    hot.wait_err(m, "-->", 60);
    hot.wait_err(m, "keeps running its last good code", 30);
    // Still there, still on the old code.
    wait_word(&hot, hot.mark(), pid, "one", 10);
    let m = hot.mark();
    hot.edit(FILE, "\"one", "\"fixed\"");
    wait_word(&hot, m, pid, "fixed", 60);
    hot.stop();
}

#[test]
fn a_restart_builds_first_and_a_save_right_after_it_is_patched() {
    let _serial = support::serial();
    let hot = start();
    let old = pid_of(&hot.wait_out((0, 0), "word=one", 600));
    // A rude edit that does not build: the old program keeps running.
    let m = hot.mark();
    hot.edit(FILE, "pub a: u32,", "pub a: u32,\n    pub b: Missing,");
    hot.wait_err(m, "Restarting", 60);
    hot.wait_err(m, "the old one keeps running", 120);
    wait_word(&hot, hot.mark(), old, "one", 10);
    // Fixed: the new program replaces the old one only once it is built.
    let m = hot.mark();
    hot.edit(FILE, "pub b: Missing,", "pub b: u8,");
    hot.edit(FILE, "Shape { a: 1 }", "Shape { a: 2, b: 0 }");
    let first = hot.wait_out(m, "a=2", 300);
    let new = pid_of(&first);
    assert_ne!(new, old, "restarted");
    let before_new = &hot.out_since(m)[..hot.out_since(m).find(&format!("[{new}]")).unwrap()];
    assert!(
        before_new.contains(&format!("[{old}] word=one")),
        "the old program ran while the new one was built: {before_new}"
    );
    assert!(!alive(old), "the old program was stopped");
    // A save the moment the new program prints is patched into it.
    let m = hot.mark();
    hot.edit(FILE, "\"one\"", "\"three\"");
    wait_word(&hot, m, new, "three", 60);
    assert_eq!(
        hot.err_since(m).matches("Restarting").count(),
        0,
        "no second restart: {}",
        hot.err_since(m)
    );
    hot.stop();
}

#[test]
fn the_program_does_not_outlive_a_killed_cargo_hot() {
    let _serial = support::serial();
    let mut hot = start();
    let pid = pid_of(&hot.wait_out((0, 0), "word=one", 600));
    hot.wait_err((0, 0), "Watching", 120);
    support::kill_pid(hot.child.id(), 9);
    let _ = hot.child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} outlived cargo hot");
        std::thread::sleep(Duration::from_millis(20));
    }
    hot.stop();
}

#[test]
fn ctrl_c_during_a_patch_build_says_what_happens() {
    let _serial = support::serial();
    let mut hot = start();
    let pid = pid_of(&hot.wait_out((0, 0), "word=one", 600));
    hot.wait_err((0, 0), "Watching", 120);
    hot.edit(FILE, "\"one\"", "\"two\"");
    // Within the debounce and the thin build (rustc takes far longer than this).
    std::thread::sleep(Duration::from_millis(30));
    // Ctrl-C on a terminal: SIGINT to the whole job (cargo hot and the rustc it runs).
    support::kill_pid_group(hot.child.id(), 2);
    let _ = hot.child.wait();
    let err = hot.err();
    assert!(
        !err.contains("keeps running"),
        "no claim that the program keeps running: {err}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} outlived cargo hot");
        std::thread::sleep(Duration::from_millis(20));
    }
    hot.stop();
}

#[test]
fn an_edit_of_main_is_said_not_to_run_instead_of_patched() {
    let _serial = support::serial();
    let hot = start();
    let pid = pid_of(&hot.wait_out((0, 0), "word=one", 600));
    // This test is about the status line for a diffed save, so it starts from a known baseline.
    hot.wait_err((0, 0), "Watching", 120);
    let m = hot.mark();
    hot.edit(FILE, "from_millis(20)", "from_millis(25)");
    let said = hot.wait_err(m, "Not run", 60);
    assert!(
        said.contains("`main` changed, but it already ran"),
        "{said}"
    );
    // The program goes on, unpatched and unrestarted, and nothing claims it was patched.
    wait_word(&hot, hot.mark(), pid, "one", 10);
    let since = hot.err_since(m);
    assert!(
        !since.contains("Patched") && !since.contains("Restarting"),
        "{since}"
    );
    hot.stop();
}
