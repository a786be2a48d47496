//! The edit-coverage suite: runs every case of `cases.rs` through the real `cargo hot run` on one
//! running copy of `tests/fixtures/edits`, prints a table (case, expected, observed, ms) and fails
//! on any mismatch. The README's edit table is generated from the same cases (see
//! `readme_table_is_generated_from_the_cases`).

mod cases;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cases::{CASES, Case, Outcome};
use support::{Hot, pid_of, save};

const BEGIN: &str = "<!-- edit-table:begin (generated from tests/edits/cases.rs) -->";
const END: &str = "<!-- edit-table:end -->";

/// The README table rows, from the cases.
fn readme_table() -> String {
    let mut t = String::from("| Edit | Outcome | Notes |\n|---|---|---|\n");
    for c in CASES {
        t.push_str(&format!(
            "| {} | {} | {} |\n",
            c.name,
            c.expect.word(),
            c.note
        ));
    }
    t
}

#[test]
fn readme_table_is_generated_from_the_cases() {
    let path = support::repo().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the {BEGIN} ... {END} markers");
    };
    let current = &readme[b + BEGIN.len()..e];
    let wanted = format!("\n{}", readme_table());
    if current != wanted {
        if std::env::var_os("HOT_BLESS").is_some() {
            let updated = format!("{}{BEGIN}{wanted}{}", &readme[..b], &readme[e..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "README.md's edit table is out of date with tests/edits/cases.rs; \
                 rerun with HOT_BLESS=1 to regenerate it. Wanted:\n{wanted}"
            );
        }
    }
}

/// Applies a case's edits, one write + rename per file (how editors save).
fn apply(hot: &Hot, case: &Case) -> BTreeMap<&'static str, String> {
    let mut files: Vec<&'static str> = Vec::new();
    for e in case.edits {
        if !files.contains(&e.file) {
            files.push(e.file);
        }
    }
    let mut originals = BTreeMap::new();
    for f in files {
        let path = hot.dir.join(f);
        let before = std::fs::read_to_string(&path).unwrap();
        let mut text = before.clone();
        for e in case.edits.iter().filter(|e| e.file == f) {
            assert!(
                text.contains(e.from),
                "case {:?}: {:?} not in {f}",
                case.name,
                e.from
            );
            text = text.replacen(e.from, e.to, 1);
        }
        save(&path, &text);
        originals.insert(f, before);
    }
    originals
}

/// The first of cargo hot's verdicts in `err`.
fn verdict(err: &str) -> Option<Outcome> {
    let marks = [
        ("Patched", Outcome::Patched),
        ("Restarting", Outcome::Restarted),
        ("keeps running its last good code", Outcome::KeptOldCode),
        ("Not run", Outcome::NotRun),
    ];
    marks
        .iter()
        .filter_map(|(m, o)| err.find(m).map(|at| (at, *o)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, o)| o)
}

/// Output lines after `from` containing `needle`, with their pid.
fn lines_with(out: &str, needle: &str) -> Vec<(u32, String)> {
    out.lines()
        .filter(|l| l.contains(needle) && l.ends_with(" end"))
        .map(|l| (pid_of(l), l.to_string()))
        .collect()
}

struct Row {
    name: &'static str,
    expect: Outcome,
    observed: String,
    ms: u128,
    ok: bool,
}

/// Runs one case; returns what was observed and whether it matches.
fn run_case(hot: &Hot, case: &Case, pid: &mut u32) -> (String, bool, u128) {
    let m = hot.mark();
    let t0 = Instant::now();
    let originals = apply(hot, case);
    let limit = Duration::from_secs(match case.expect {
        Outcome::Restarted => 300,
        _ => 90,
    });
    loop {
        let err = hot.err_since(m);
        let out = hot.out_since(m);
        match verdict(&err) {
            Some(Outcome::Patched) => {
                if lines_with(&out, case.output).iter().any(|(p, _)| p == pid) {
                    return (
                        "patched".into(),
                        case.expect == Outcome::Patched,
                        t0.elapsed().as_millis(),
                    );
                }
            }
            Some(Outcome::Restarted) => {
                if let Some((p, _)) = lines_with(&out, case.output)
                    .into_iter()
                    .find(|(p, _)| p != pid)
                {
                    *pid = p;
                    let ms = t0.elapsed().as_millis();
                    // The next case starts once cargo hot watches the new program again.
                    let ready = wait(120, || hot.err_since(m).contains("Watching"));
                    let observed = if ready {
                        "restart"
                    } else {
                        "restart (never watching again)"
                    };
                    return (
                        observed.into(),
                        ready && case.expect == Outcome::Restarted,
                        ms,
                    );
                }
            }
            Some(Outcome::NotRun) => {
                let ms = t0.elapsed().as_millis();
                // Named, no patch claimed, and the same process goes on.
                let named = err.contains("`main` changed, but it already ran");
                let after = hot.mark();
                let goes_on = wait(10, || {
                    lines_with(&hot.out_since(after), case.output)
                        .iter()
                        .any(|(p, _)| p == pid)
                });
                let claimed = hot.err_since(m).contains("Patched");
                let observed = format!(
                    "told it will not run{}{}{}",
                    if named { "" } else { " (main not named)" },
                    if goes_on {
                        ""
                    } else {
                        " (program not seen going on)"
                    },
                    if claimed {
                        " (but Patched claimed too)"
                    } else {
                        ""
                    },
                );
                let ok = case.expect == Outcome::NotRun && named && goes_on && !claimed;
                return (observed, ok, ms);
            }
            Some(Outcome::KeptOldCode) => {
                let ms = t0.elapsed().as_millis();
                // rustc's rendered diagnostic names the file and line.
                let diagnostic = err.contains("error") && err.contains("--> app/src/main.rs");
                // Old code still running, same process: a line printed after the verdict.
                let after = hot.mark();
                let deadline = Instant::now() + Duration::from_secs(10);
                let old_runs = loop {
                    if lines_with(&hot.out_since(after), case.output)
                        .iter()
                        .any(|(p, _)| p == pid)
                    {
                        break true;
                    }
                    if Instant::now() > deadline {
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                // Put the file back; the next build sees the running code again.
                let r = hot.mark();
                for (f, text) in &originals {
                    save(&hot.dir.join(f), text);
                }
                let back = wait(90, || {
                    let e = hot.err_since(r);
                    e.contains("Unchanged") || e.contains("Patched")
                });
                let observed = format!(
                    "kept old code{}{}{}",
                    if diagnostic {
                        ""
                    } else {
                        " (no diagnostic shown)"
                    },
                    if old_runs {
                        ""
                    } else {
                        " (old code not seen running)"
                    },
                    if back {
                        ""
                    } else {
                        " (reverting did not build)"
                    },
                );
                let ok = case.expect == Outcome::KeptOldCode && diagnostic && old_runs && back;
                return (observed, ok, ms);
            }
            None => {}
        }
        if t0.elapsed() > limit {
            let observed = match verdict(&err) {
                Some(o) => format!("{} but `{}` never printed", o.word(), case.output),
                None if err.contains("Refused") => "refused".into(),
                None => "timeout".into(),
            };
            return (observed, false, t0.elapsed().as_millis());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn every_kind_of_edit_has_the_documented_outcome() {
    run_table(false);
}

/// The same table on optimized builds: inlining and codegen-unit partitioning differ there.
#[test]
fn every_kind_of_edit_has_the_documented_outcome_in_release_mode() {
    run_table(true);
}

fn run_table(release: bool) {
    let _serial = support::serial();
    let args: &[&str] = if release {
        &["-p", "edits_app", "--release"]
    } else {
        &["-p", "edits_app"]
    };
    let hot = Hot::start("edits", args);
    let m = hot.mark();
    let first = hot.wait_out(m, " end", 600);
    let mut pid = pid_of(&first);

    let mut rows = Vec::new();
    for case in CASES {
        let m = hot.mark();
        let (observed, ok, ms) = run_case(&hot, case, &mut pid);
        eprintln!("{:<58} {observed} ({ms} ms)", case.name);
        if !ok {
            eprintln!("--- cargo hot said ---\n{}", hot.err_since(m));
        }
        rows.push(Row {
            name: case.name,
            expect: case.expect,
            observed,
            ms,
            ok,
        });
    }

    let mut table = format!(
        "{:<58} {:<14} {:<40} {:>7}\n",
        "case", "expected", "observed", "ms"
    );
    for r in &rows {
        table.push_str(&format!(
            "{:<58} {:<14} {:<40} {:>7}{}\n",
            r.name,
            r.expect.word(),
            r.observed,
            r.ms,
            if r.ok { "" } else { "  <-- MISMATCH" }
        ));
    }
    eprintln!("{table}");
    let _ = std::fs::write(
        support::repo().join("target").join("edit-suite.txt"),
        &table,
    );
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        panic!(
            "{failed} case(s) did not match:\n{table}\n--- cargo hot ---\n{}",
            hot.err()
        );
    }
    hot.stop();
}
