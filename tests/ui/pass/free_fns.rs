// Free functions: visibility, lifetimes, `unsafe fn`, `where` clauses without type parameters,
// attributes and doc comments kept, unit returns, `dyn` and fn-pointer arguments, a hot fn in a
// nested module, and the registry listing them.
#![deny(warnings)]

use hot_runtime::hot;

#[hot]
pub fn public(x: u32) -> u32 {
    x + 1
}

#[hot]
fn private(x: u32) -> u32 {
    x * 2
}

#[hot]
pub(crate) fn crate_visible() -> &'static str {
    "crate"
}

#[hot]
fn first<'a>(x: &'a str, _y: &str) -> &'a str {
    x
}

#[hot]
fn longest<'a, 'b: 'a>(x: &'a str, y: &'b str) -> &'a str {
    if x.len() >= y.len() { x } else { y }
}

#[hot]
fn elided(s: &str) -> &str {
    &s[1..]
}

#[hot]
fn slice_sum(v: &[u64]) -> u64 {
    v.iter().sum()
}

#[hot]
unsafe fn read_raw(p: *const u32) -> u32 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *p }
}

#[hot]
fn with_where<'a>(x: &'a u32) -> u32
where
    u32: Copy,
    'a: 'a,
{
    *x + 10
}

/// Doc comments and other attributes stay on the item.
#[hot]
#[inline(never)]
#[must_use]
fn documented() -> u8 {
    7
}

#[hot]
fn unit(counter: &mut u32) {
    *counter += 1;
}

#[hot]
fn returns_tuple(a: u8, b: u16) -> (u16, u8) {
    (b, a)
}

#[hot]
fn takes_string(s: String) -> usize {
    s.len()
}

#[hot]
fn takes_dyn(d: &dyn std::fmt::Display) -> String {
    format!("<{d}>")
}

#[hot]
fn boxed_dyn(n: u32) -> Box<dyn Fn(u32) -> u32> {
    Box::new(move |x| x + n)
}

#[hot]
fn takes_fn_ptr(f: fn(u32) -> u32, x: u32) -> u32 {
    f(x)
}

#[hot]
fn static_str_to_static(x: &'static str) -> &'static str {
    x
}

#[hot]
fn nested_item_inside() -> u32 {
    fn helper() -> u32 {
        41
    }
    struct Local(u32);
    Local(helper() + 1).0
}

mod inner {
    #[hot_runtime::hot]
    pub fn in_module(x: i64) -> i64 {
        -x
    }
}

fn main() {
    assert_eq!(public(1), 2);
    assert_eq!(private(21), 42);
    assert_eq!(crate_visible(), "crate");
    let owned = String::from("hello");
    {
        let other = String::from("other");
        assert_eq!(first(&owned, &other), "hello");
    }
    assert_eq!(longest("ab", "abc"), "abc");
    assert_eq!(elided("xyz"), "yz");
    assert_eq!(slice_sum(&[1, 2, 3]), 6);
    let v = 5u32;
    // SAFETY: `&v` is valid.
    assert_eq!(unsafe { read_raw(&v) }, 5);
    assert_eq!(with_where(&v), 15);
    assert_eq!(documented(), 7);
    let mut c = 0;
    unit(&mut c);
    unit(&mut c);
    assert_eq!(c, 2);
    assert_eq!(returns_tuple(1, 2), (2, 1));
    assert_eq!(takes_string("four".to_string()), 4);
    assert_eq!(takes_dyn(&3), "<3>");
    assert_eq!(boxed_dyn(10)(5), 15);
    assert_eq!(takes_fn_ptr(public, 1), 2);
    assert_eq!(static_str_to_static("s"), "s");
    assert_eq!(nested_item_inside(), 42);
    assert_eq!(inner::in_module(3), -3);
    // Hot functions still coerce to plain fn pointers.
    let f: fn(u32) -> u32 = private;
    assert_eq!(f(2), 4);
    // Every hot fn of this program is in the registry.
    for name in ["public", "private", "first", "longest", "read_raw", "with_where", "in_module"] {
        assert!(
            hot_runtime::registry().any(|e| e.name().ends_with(&format!("::{name}"))),
            "{name} missing from the registry"
        );
    }
}
