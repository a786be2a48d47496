// Less common signatures: `-> !`, arrays and slices of references, `&dyn Fn(&str) -> &str`
// (its own elision scope), `Pin<&mut T>` arguments, `self: Pin<&mut Self>` and `self: Rc<Self>`
// receivers with an elided output lifetime taken from the receiver.
#![deny(warnings)]

use std::pin::Pin;
use std::rc::Rc;

use hot_runtime::hot;

#[hot]
fn die(msg: &str) -> ! {
    panic!("{msg}")
}

#[hot]
fn arrays(a: [u8; 4], t: (u8,), s: &[&str]) -> [u8; 4] {
    let _ = (t, s);
    a
}

#[hot]
fn dyn_ref(d: &dyn Fn(&str) -> &str, s: &str) -> String {
    d(s).to_string()
}

#[hot]
fn pinned(p: Pin<&mut u32>) -> u32 {
    *p
}

struct S(u32);

impl S {
    #[hot]
    fn pin_self(self: Pin<&mut Self>, _other: &str) -> &u32 {
        &self.get_mut().0
    }

    #[hot]
    fn rc_self(self: Rc<Self>) -> u32 {
        self.0
    }
}

fn main() {
    if std::env::args().count() > 100 {
        die("unreachable");
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| die("boom"));
    std::panic::set_hook(hook);
    assert!(r.is_err());
    assert_eq!(arrays([1, 2, 3, 4], (1,), &["a"]), [1, 2, 3, 4]);
    assert_eq!(dyn_ref(&|s| s.trim(), " a "), "a");
    let mut v = 3;
    assert_eq!(pinned(Pin::new(&mut v)), 3);
    let mut s = S(4);
    assert_eq!(*Pin::new(&mut s).pin_self("o"), 4);
    assert_eq!(Rc::new(S(5)).rc_self(), 5);
}
