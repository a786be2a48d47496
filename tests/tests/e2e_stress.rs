//! Load and memory: 8 threads call hot fns (sync, async, nested, slow) in loops while 300 real
//! patches land through the whole pipeline. No crash, no result mixing versions, no thread seeing
//! an older version after a newer one, resident memory growth within the documented bound
//! (256 KiB per patch), and the patch files removed when cargo hot exits.

mod support;
use support::{Hot, field, pid_of};

const PATCHES: u64 = 300;
/// BENCHMARKS.md's goal for resident memory growth per patch.
const RSS_BOUND_KIB: u64 = 256;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

fn dir_size(dir: &std::path::Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "so") {
            n += 1;
            bytes += e.metadata().unwrap().len();
        }
    }
    (n, bytes)
}

#[test]
fn three_hundred_patches_under_eight_busy_threads() {
    let _serial = support::serial();
    let hot = Hot::start("stress", &["--debounce", "0"]);
    let first = hot.wait_out((0, 0), "version=0 ", 600);
    let pid = pid_of(&first);
    let patch_dir = support::shared_target()
        .join("hot")
        .join("patches")
        .join(hot.child.id().to_string());
    let meta = std::fs::metadata(&patch_dir).expect("the patch directory exists");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "private patch directory"
    );

    let started = std::time::Instant::now();
    let mut table = String::from("patches  RSS KiB  patch files  bytes\n");
    let mut rss_after_first = 0;
    for n in 1..=PATCHES {
        let m = hot.mark();
        hot.edit(
            "src/main.rs",
            &format!("const V: u64 = {};", n - 1),
            &format!("const V: u64 = {n};"),
        );
        let line = hot.wait_err(m, "Patched", 60);
        assert!(line.contains("version"), "{line}");
        if [1, 10, 100, PATCHES].contains(&n) {
            hot.wait_out(m, &format!("version={n} "), 10);
            let rss = rss_kib(pid);
            if n == 1 {
                rss_after_first = rss;
            }
            let (files, bytes) = dir_size(&patch_dir);
            table.push_str(&format!("{n:>7}  {rss:>7}  {files:>11}  {bytes}\n"));
        }
    }
    let elapsed = started.elapsed();
    let last = hot.wait_out(hot.mark(), "version=", 10);
    eprintln!(
        "{table}{PATCHES} patches in {:.1} s; last: {last}",
        elapsed.as_secs_f64()
    );
    assert_eq!(pid_of(&last), pid, "same process throughout");
    assert_eq!(field(&last, "version"), PATCHES);
    assert_eq!(field(&last, "violations"), 0, "{}", hot.out());
    assert!(!hot.out().contains("VIOLATION"));
    assert!(
        field(&last, "calls") > 100_000,
        "the threads kept calling: {last}"
    );
    let growth = rss_kib(pid).saturating_sub(rss_after_first) / (PATCHES - 1);
    assert!(
        growth <= RSS_BOUND_KIB,
        "RSS grew {growth} KiB per patch (bound {RSS_BOUND_KIB})\n{table}"
    );

    hot.stop();
    assert!(
        !patch_dir.exists(),
        "patch files are removed when cargo hot exits"
    );
}
