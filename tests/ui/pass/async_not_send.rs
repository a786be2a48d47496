// `#[hot(?Send)]`: an `async fn` whose future holds an `Rc` across an `.await`.
#![deny(warnings)]

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll};

use hot_runtime::hot;

#[path = "../support/block_on.rs"]
mod block_on;
use block_on::block_on;

struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[hot(?Send)]
async fn shared_count(start: u32) -> u32 {
    let rc = Rc::new(Cell::new(start));
    let alias = Rc::clone(&rc);
    YieldOnce(false).await;
    alias.set(alias.get() + 1);
    YieldOnce(false).await;
    rc.get() + Rc::strong_count(&rc) as u32
}

#[hot(?Send)]
async fn takes_rc(rc: Rc<Cell<u32>>) -> u32 {
    YieldOnce(false).await;
    rc.set(rc.get() * 2);
    rc.get()
}

struct Local {
    cell: Rc<Cell<u32>>,
}

impl Local {
    #[hot(?Send)]
    async fn bump(&self) -> u32 {
        let keep = self.cell.clone();
        YieldOnce(false).await;
        keep.set(keep.get() + 1);
        keep.get()
    }
}

fn main() {
    assert_eq!(block_on(shared_count(1)), 4);
    let rc = Rc::new(Cell::new(5));
    assert_eq!(block_on(takes_rc(rc.clone())), 10);
    assert_eq!(rc.get(), 10);
    let l = Local { cell: rc };
    assert_eq!(block_on(l.bump()), 11);
}
