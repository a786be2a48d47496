//! End to end on the examples: each is edited under `cargo hot run` and the change is observed
//! in the same process.

mod support;
use support::{Hot, pid_of};

fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        + key.len();
    line[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn hello_is_patched_and_keeps_counting() {
    let _serial = support::serial();
    let hot = Hot::start_in(support::copy_example("hello"), &["--", "1000000"]);
    let first = hot.wait_out(hot.mark(), "Hello from hot-patched code!", 120);
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "Hello from hot-patched code!",
        "Hello, edited!",
    );
    let l = hot.wait_out(m, "Hello, edited!", 60);
    assert!(
        field(&l, "call #") > field(&first, "call #"),
        "COUNT kept counting: {first} -> {l}"
    );
    hot.stop();
}

#[test]
fn sim_takes_patches_only_at_frame_boundaries_and_keeps_its_world() {
    let _serial = support::serial();
    let hot = Hot::start_in(support::copy_example("sim"), &[]);
    let first = hot.wait_out(hot.mark(), "gen ", 120);
    let pid = pid_of(&first);
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "format!(\"gen {} alive",
        "format!(\"GEN {} alive",
    );
    let applied = hot.wait_out(m, "at frame boundary", 60);
    let after = hot.wait_out(m, "GEN ", 10);
    assert_eq!(pid_of(&after), pid);
    assert!(
        field(&after, "GEN") > field(&first, "gen"),
        "the world kept evolving: {first} -> {after}"
    );
    // Nothing rendered by the new code before the frame boundary that applied it.
    let out = hot.out();
    let tail = &out[m.0..];
    assert!(
        tail.find("at frame boundary").unwrap() < tail.find("GEN ").unwrap(),
        "{applied}"
    );
    hot.wait_err(m, "Queued", 5);
    hot.stop();
}
