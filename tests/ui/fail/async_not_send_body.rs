// Without `?Send`, an async hot fn whose future is not Send is an error, and the message
// should lead to `#[hot(?Send)]`.
use std::rc::Rc;

use hot_runtime::hot;

async fn yield_now() {}

#[hot]
async fn holds_rc(x: u32) -> u32 {
    let rc = Rc::new(x);
    yield_now().await;
    *rc
}

fn main() {}
