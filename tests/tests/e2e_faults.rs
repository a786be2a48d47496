//! Faults around the running program: bad patch files, cargo hot killed mid-patch, the program
//! crashing. The program must keep its last good code (or restart, for a crash), never run a
//! half-applied patch. Bad patches are produced by cargo hot's failpoints (`CARGO_HOT_FAULT`,
//! see cargo-hot/src/fault.rs), after linking and before sending.

mod support;
use std::time::Duration;
use support::{Hot, pid_of};

const FILE: &str = "src/main.rs";

/// The version both hot fns print, checking they agree.
fn version(line: &str) -> String {
    let l = line
        .split("left=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let r = line
        .split("right=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(
        l, r,
        "left and right disagree: a half-applied patch: {line}"
    );
    l.to_string()
}

/// After `mark`, the program keeps printing for a while, always `want` from both fns, in `pid`.
fn steady(hot: &Hot, pid: u32, want: &str) {
    let m = hot.mark();
    std::thread::sleep(Duration::from_millis(300));
    hot.wait_out(m, "left=", 10);
    let out = hot.out_since(m);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("left=")).collect();
    assert!(lines.len() >= 5, "the program kept running: {out}");
    for l in lines {
        assert_eq!(pid_of(l), pid, "same process");
        assert_eq!(version(l), want, "{l}");
    }
}

#[test]
fn bad_patch_files_are_refused_and_the_next_good_patch_applies() {
    let _serial = support::serial();
    // (failpoint, what the program's refusal must say)
    let faults = [
        ("truncate", "truncated"),
        ("garbage", "not an ELF file"),
        ("build-id", "was built for build"),
        ("pid", "is addressed to process"),
        ("taken", "already taken by an earlier patch"),
        ("dlopen", "dlopen failed"),
        ("outside-dir", "outside the patch directory"),
    ];
    let list: Vec<&str> = std::iter::once("none")
        .chain(faults.iter().map(|f| f.0))
        .collect();
    let hot = Hot::start_env(
        "faults",
        &["--no-restart"],
        &[("CARGO_HOT_FAULT", &list.join(","))],
    );
    let first = hot.wait_out((0, 0), "left=v0", 600);
    let pid = pid_of(&first);

    // Patch 1 is good: it also gives "taken" an earlier patch to collide with.
    let m = hot.mark();
    hot.edit_all(FILE, "\"v0\"", "\"v1\"");
    hot.wait_err(m, "Patched", 60);
    hot.wait_out(m, "left=v1", 10);

    for (i, (fault, reason)) in faults.iter().enumerate() {
        let m = hot.mark();
        hot.edit_all(FILE, &format!("\"v{}\"", i + 1), &format!("\"v{}\"", i + 2));
        let refused = hot.wait_err(m, "Refused", 60);
        assert!(
            refused.contains(reason),
            "{fault}: the refusal should say {reason:?}: {refused}"
        );
        assert!(!hot.err_since(m).contains("Patched"), "{fault}");
        // The old code keeps running, in the same process.
        steady(&hot, pid, "v1");
    }

    // The next good patch applies.
    let m = hot.mark();
    let last = faults.len() + 1;
    hot.edit_all(FILE, &format!("\"v{last}\""), "\"v100\"");
    hot.wait_err(m, "Patched", 60);
    hot.wait_out(m, "left=v100", 10);
    steady(&hot, pid, "v100");
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("cargo-hot-fault-{}.so", hot.child.id())),
    );
    hot.stop();
}

#[test]
fn cargo_hot_killed_mid_patch_leaves_the_program_on_whole_code() {
    let _serial = support::serial();
    // half-then-die: cargo hot writes half of the patch message and is SIGKILLed; the program
    // must ignore the fragment. whole-then-die: killed after sending, before the answer; the
    // program applies the whole patch (or nothing), and survives writing to a closed socket.
    for (fault, want) in [("half-then-die", "v0"), ("whole-then-die", "v1")] {
        let hot = Hot::start_env("faults", &[], &[("CARGO_HOT_FAULT", fault)]);
        let first = hot.wait_out((0, 0), "left=v0", 600);
        let pid = pid_of(&first);
        hot.edit_all(FILE, "\"v0\"", "\"v1\"");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut hot = hot;
        loop {
            if let Ok(Some(status)) = hot.child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    status.signal(),
                    Some(9),
                    "{fault}: cargo hot died by SIGKILL"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{fault}: cargo hot never died"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The program does not outlive the tool (no orphan holding its ports), and until it
        // stops it runs whole code: never one fn patched and the other not.
        let gone = std::time::Instant::now() + Duration::from_secs(5);
        while support::alive(pid) {
            assert!(
                std::time::Instant::now() < gone,
                "{fault}: the program outlived cargo hot by 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for l in hot.out().lines().filter(|l| l.contains("left=")) {
            assert!(
                l.contains(&format!("left={want} right={want}")) || l.contains("left=v0 right=v0"),
                "{fault}: mixed versions: {l}"
            );
        }
        hot.stop();
    }
}

#[test]
fn a_crashing_program_is_reported_and_restarted_on_the_next_edit() {
    let _serial = support::serial();
    let hot = Hot::start("faults", &[]);
    let first = hot.wait_out((0, 0), "left=v0", 600);
    let pid = pid_of(&first);
    let m = hot.mark();
    hot.edit_all(FILE, "\"v0\"", "\"v1\"");
    hot.wait_err(m, "Patched", 60);

    let m = hot.mark();
    hot.edit(
        FILE,
        "fn maybe_crash(n: u64) -> u64 {\n    n\n",
        "fn maybe_crash(n: u64) -> u64 {\n    // SAFETY: not safe at all: this edit crashes the program on purpose.\n    unsafe { std::ptr::null_mut::<u64>().write_volatile(n) };\n    n\n",
    );
    let crashed = hot.wait_err(m, "Crashed", 60);
    assert!(crashed.contains("SIGSEGV"), "names the signal: {crashed}");
    assert!(
        // Named by the edited fn only, not the others rebound with its codegen unit.
        crashed.contains("the last patch applied was patch 2 (maybe_crash)"),
        "names the last patch: {crashed}"
    );

    // The next edit builds and starts it again.
    let m = hot.mark();
    hot.edit(
        FILE,
        "    unsafe { std::ptr::null_mut::<u64>().write_volatile(n) };\n",
        "",
    );
    let l = hot.wait_out(m, "left=v1", 120);
    assert_ne!(pid_of(&l), pid, "a new process");
    steady(&hot, pid_of(&l), "v1");
    hot.stop();
}

#[test]
fn layout_changes_are_refused_at_patch_time_even_past_the_source_check() {
    let _serial = support::serial();
    // With the source-level rude-edit check off, the patch-time guard alone must refuse.
    let hot = Hot::start_env(
        "layout",
        &["--no-restart"],
        &[("CARGO_HOT_SKIP_SOURCE_CHECK", "1")],
    );
    let first = hot.wait_out((0, 0), "v0 hits=", 600);
    let pid = pid_of(&first);
    let cases: [(&str, &[(&str, &str)], &str); 3] = [
        (
            "a static's type",
            &[
                (
                    "static HITS: AtomicU32 = AtomicU32::new(0);",
                    "static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);",
                ),
                (
                    "HITS.fetch_add(1, Ordering::Relaxed)\n",
                    "HITS.fetch_add(1, Ordering::Relaxed) as u32\n",
                ),
            ],
            "static `fx_layout::HITS` changed size (4 -> 8 bytes)",
        ),
        (
            "a field of a struct passed to a hot fn",
            &[
                ("    y: u32,\n}", "    y: u32,\n    z: u32,\n}"),
                ("Pt { x: 1, y: 2 }", "Pt { x: 1, y: 2, z: 3 }"),
            ],
            "the signature of `fx_layout::norm` changed",
        ),
        (
            "an enum's variants",
            &[
                ("    Line(u8),\n}", "    Line(u8),\n    Big(u64),\n}"),
                (
                    "w as u32,\n",
                    "w as u32,\n        Shape::Big(w) => w as u32,\n",
                ),
            ],
            "the signature of `fx_layout::weight` changed",
        ),
    ];
    for (what, edits, reason) in cases {
        let original = std::fs::read_to_string(hot.dir.join(FILE)).unwrap();
        let m = hot.mark();
        for (from, to) in edits {
            hot.edit(FILE, from, to);
        }
        let refused = hot.wait_err(m, "Refused", 60);
        assert!(refused.contains(reason), "{what}: {refused}");
        assert!(!hot.err_since(m).contains("Patched"), "{what}");
        let m2 = hot.mark();
        let l = hot.wait_out(m2, "v0 hits=", 10);
        assert_eq!(pid_of(&l), pid, "{what}: old code keeps running");
        // Put it back: nothing to patch.
        let m = hot.mark();
        support::save(&hot.dir.join(FILE), &original);
        hot.wait_err(m, "Unchanged", 60);
    }
    let m = hot.mark();
    hot.edit(FILE, "p.x + p.y", "p.x * 10 + p.y");
    let l = hot.wait_out(m, "norm=12 ", 60);
    assert_eq!(pid_of(&l), pid);
    hot.stop();
}
