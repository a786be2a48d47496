// The user's `#[inline]` / `#[inline(always)]` stay on the plain copy; the hot copy is
// `#[inline(never)]` (so optimized builds keep a function to rebind), with no conflicting
// attributes and no warning.
#![deny(warnings)]

use hot_runtime::hot;

#[hot]
#[inline]
fn small(x: u32) -> u32 {
    x + 1
}

#[hot]
#[inline(always)]
fn tiny() -> u32 {
    2
}

struct S;
impl S {
    #[hot]
    #[inline]
    fn get(&self) -> u32 {
        3
    }
}

fn main() {
    assert_eq!(small(1) + tiny() + S.get(), 7);
}
