// An error #[hot] reports next to #[instrument] is the same, once, whichever attribute comes
// first (and in a plain build too: the macro's errors do not depend on the build mode).
use hot_runtime::hot;
use std::fmt::Debug;
use tracing::instrument;

#[hot]
#[instrument]
fn above(x: u32) -> impl Debug {
    x
}

#[instrument]
#[hot]
fn below(x: u32) -> impl Debug {
    x
}

fn main() {}
