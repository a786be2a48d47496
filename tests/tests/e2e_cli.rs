//! End to end: supervision and watching behave like a careful cargo subcommand.

mod support;
use std::time::{Duration, Instant};
use support::{Hot, pid_of};

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn alive(pid: u32) -> bool {
    // A zombie still answers kill(0); look at its state too.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
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
