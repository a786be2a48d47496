// Inner attributes at the top of a #[hot] body apply to the whole fn, as written.
#![deny(warnings)]

use hot_runtime::hot;

#[path = "../support/block_on.rs"]
mod block_on;
use block_on::block_on;

#[hot]
fn sync_fn(x: u32) -> u32 {
    #![allow(unused_variables)]
    let unused = 1;
    x
}

#[hot]
async fn async_fn(x: u32) -> u32 {
    #![allow(unused_variables)]
    //! An inner doc comment is an inner attribute too.
    let unused = 1;
    x
}

struct S(u32);

impl S {
    #[hot]
    async fn method(mut self) -> u32 {
        #![allow(unused_variables)]
        let unused = 1;
        self.0 += 1;
        self.0
    }
}

fn main() {
    assert_eq!(sync_fn(1), 1);
    assert_eq!(block_on(async_fn(2)), 2);
    assert_eq!(block_on(S(2).method()), 3);
}
