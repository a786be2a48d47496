//! End to end: supervision and watching behave like a careful cargo subcommand.

mod support;
use std::time::{Duration, Instant};
use support::{Hot, alive, pid_of};

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn ctrl_c_leaves_no_process_of_the_program() {
    let _serial = support::serial();
    let mut hot = Hot::start("state", &[]);
    let m = hot.mark();
    let pid = pid_of(&hot.wait_out(m, "v1 a=", 120));
    assert!(alive(pid));
    // SAFETY: signalling our own child.
    unsafe { kill(hot.child.id() as i32, 2) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && hot.child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        hot.child.try_wait().unwrap().is_some(),
        "cargo hot exited on SIGINT"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && alive(pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the program (pid {pid}) outlived cargo hot");
    hot.stop();
}

#[test]
fn ignored_files_and_the_target_dir_trigger_nothing_and_bursts_build_once() {
    let _serial = support::serial();
    let dir = support::copy_fixture("state");
    std::fs::write(dir.join(".gitignore"), "ignored/\n").unwrap();
    let hot = Hot::start_in(dir.clone(), &["--no-restart"]);
    let m = hot.mark();
    hot.wait_out(m, "v1 a=", 120);

    let m = hot.mark();
    std::fs::create_dir_all(dir.join("ignored")).unwrap();
    std::fs::write(dir.join("ignored/gen.rs"), "fn x() {}").unwrap();
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::fs::write(dir.join("target/debug/out.rs"), "fn y() {}").unwrap();
    std::fs::write(dir.join("src/notes.txt"), "not rust").unwrap();
    std::fs::write(dir.join("src/.main.rs.swp"), "swap").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let said = hot.err_since(m);
    assert!(said.trim().is_empty(), "ignored paths triggered: {said}");

    // Ten saves within ~100 ms: at most two builds, and the last content wins.
    let m = hot.mark();
    let mut prev = "v1 a=".to_string();
    for i in 0..10 {
        let next = format!("v1b{i} a=");
        hot.edit("src/main.rs", &prev, &next);
        prev = next;
        std::thread::sleep(Duration::from_millis(10));
    }
    hot.wait_out(m, "v1b9 a=", 60);
    std::thread::sleep(Duration::from_millis(1000));
    let said = hot.err_since(m);
    let builds = said
        .lines()
        .filter(|l| {
            l.contains("Patched") || l.contains("Unchanged") || l.contains("could not compile")
        })
        .count();
    assert!(
        (1..=2).contains(&builds),
        "{builds} builds for one burst:\n{said}"
    );
    hot.stop();
}

/// On a terminal, cargo hot reads `r` (restart) and `q` (quit) and forwards every other line to
/// the program. The terminal comes from util-linux `script`, which runs cargo hot on a pty.
#[test]
fn terminal_keys_restart_and_quit_and_other_lines_reach_the_program() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let _serial = support::serial();
    let dir = support::copy_example("bot");
    let cmd = format!(
        "{} hot run --color never --target-dir {} -- 100",
        support::cargo_hot().display(),
        support::shared_target().display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .current_dir(&dir)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs cargo hot on a terminal");
    // A failed assertion must not leave cargo hot running on its terminal (its hang-up stops it).
    struct Hangup(u32);
    impl Drop for Hangup {
        fn drop(&mut self) {
            if std::thread::panicking() {
                support::kill_pid(self.0, 9);
            }
        }
    }
    let _hangup = Hangup(child.id());
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let out = out.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    let wait = |needle: &str, from: usize| -> String {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            {
                let o = out.lock().unwrap();
                if let Some(l) = o[from.min(o.len())..].lines().find(|l| l.contains(needle)) {
                    return l.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                out.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let len = || out.lock().unwrap().len();
    let mut stdin = child.stdin.take().unwrap();
    let login = wait("logged in as hotbot", 0);
    wait("Watching", 0);
    let pid = support::pid_of(login.trim_start_matches(|c: char| c != '['));

    let m = len();
    writeln!(stdin, "join alice").unwrap();
    wait("welcome, alice! (1 in the room)", m);

    let m = len();
    writeln!(stdin, "r").unwrap();
    wait("Restarting", m);
    // The new process gets the kept session: ready, without logging in again.
    let again = wait("ready (session token", m);
    let pid2 = support::pid_of(again.trim_start_matches(|c: char| c != '['));
    assert_ne!(pid, pid2, "`r` started a new process");
    wait("Watching", m);
    assert!(
        !out.lock().unwrap()[m..].contains("logging in"),
        "the restarted bot did not log in again"
    );

    writeln!(stdin, "q").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "`q` did not quit:\n{}",
            out.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "`q` exits with 0: {status:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!alive(pid2), "the program stopped with cargo hot");
    let _ = std::fs::remove_dir_all(dir);
}

/// Manual apply mode: cargo hot does not wait for the program's `apply_pending()`; patches are
/// reported as queued, later saves keep building on them, and each is reported when applied.
#[test]
fn queued_patches_do_not_block_cargo_hot_and_are_reported_when_applied() {
    let _serial = support::serial();
    let hot = Hot::start("manual", &[]);
    let first = hot.wait_out((0, 0), "version=v0", 600);
    let pid = pid_of(&first);

    let m = hot.mark();
    hot.edit("src/main.rs", "\"v0\"", "\"v1\"");
    hot.wait_err(
        m,
        "patch 1 applies at the program's next `apply_pending()`",
        60,
    );
    let m2 = hot.mark();
    hot.edit("src/main.rs", "\"v1\"", "\"v2\"");
    // Well within the 20 s cargo hot used to wait for an answer.
    hot.wait_err(
        m2,
        "patch 2 applies at the program's next `apply_pending()`",
        10,
    );
    std::thread::sleep(Duration::from_millis(300));
    let m3 = hot.mark();
    let l = hot.wait_out(m3, "version=", 5);
    assert!(l.contains("version=v0"), "nothing applied yet: {l}");

    std::fs::write(hot.dir.join("apply-now"), "").unwrap();
    let l = hot.wait_out(m3, "version=v2", 10);
    assert_eq!(pid_of(&l), pid);
    hot.wait_out(m3, "applied 2", 5);
    hot.wait_err(m3, "Applied patch 1 (version)", 5);
    hot.wait_err(m3, "Applied patch 2 (version)", 5);
    assert!(
        !hot.out_since(m3).contains("version=v1"),
        "both pending patches applied together, in order"
    );
    hot.stop();
}
