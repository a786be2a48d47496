//! UI tests of the `#[hot]` attribute, built in hot mode (this crate enables hot-runtime's `hot`
//! feature), so every pass case goes through the jump-table expansion.
//!
//! The cases live in `tests/ui/{pass,fail}` of this crate; trybuild resolves the globs against
//! the crate directory (`/work/main/tests`), hence `ui/...` and not `tests/ui/...`.
//!
//! Regenerate the `.stderr` snapshots with
//! `TRYBUILD=overwrite cargo test -p hot-tests --test ui` and read every one of them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
