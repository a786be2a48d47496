// One-line bodies and trivial fns: the expansion must not make the compiler warn about the
// user's code (e.g. `unused_braces` on `{ { x + 1 } }`), so this file denies all warnings.
#![deny(warnings)]


use hot_runtime::hot;

#[path = "../support/block_on.rs"]
mod block_on;
use block_on::block_on;

#[hot]
fn one(x: u32) -> u32 { x + 1 }

#[hot]
async fn two(x: u32) -> u32 { x + 2 }

#[hot]
fn three((a, b): (u32, u32)) -> u32 { a + b }

#[hot]
async fn four((a, b): (u32, u32)) -> u32 { a + b }

#[hot]
fn empty() {}

#[hot]
async fn empty_async() {}

#[hot]
fn unused_arg(_x: u32) {}

#[hot]
fn mut_unused(mut x: u32) -> u32 { x += 1; x }

struct S(u32);

impl S {
    #[hot]
    fn get(&self) -> u32 { self.0 }

    #[hot]
    async fn get_async(&self) -> u32 { self.0 }
}

fn main() {
    assert_eq!(one(1), 2);
    assert_eq!(block_on(two(1)), 3);
    assert_eq!(three((1, 2)), 3);
    assert_eq!(block_on(four((1, 2))), 3);
    empty();
    block_on(empty_async());
    unused_arg(0);
    assert_eq!(mut_unused(1), 2);
    assert_eq!(S(5).get(), 5);
    assert_eq!(block_on(S(6).get_async()), 6);
}
