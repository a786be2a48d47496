// Argument patterns: destructuring tuples, structs and references, `mut` bindings, `_`.
#![deny(warnings)]

use hot_runtime::hot;

struct Point {
    x: i32,
    y: i32,
}

#[hot]
fn add_pair((a, b): (u32, u32)) -> u32 {
    a + b
}

#[hot]
fn increment(mut x: u32) -> u32 {
    x += 1;
    x
}

#[hot]
fn mixed(mut acc: u32, (a, b): (u32, u32), _: u8, _ignored: u8) -> u32 {
    acc += a * b;
    acc
}

#[hot]
fn point_sum(Point { x, y }: Point) -> i32 {
    x + y
}

#[hot]
fn by_ref_pattern(&(a, b): &(u8, u8)) -> u8 {
    a.max(b)
}

#[hot]
fn nested(((a, b), [c, d]): ((u8, u8), [u8; 2])) -> u32 {
    u32::from(a) + u32::from(b) + u32::from(c) + u32::from(d)
}

#[hot]
fn ref_binding(ref s: String) -> usize {
    s.len()
}

#[hot]
fn mut_string(mut s: String) -> String {
    s.push('!');
    s
}

fn main() {
    assert_eq!(add_pair((2, 3)), 5);
    assert_eq!(increment(9), 10);
    assert_eq!(mixed(1, (2, 3), 0, 0), 7);
    assert_eq!(point_sum(Point { x: 3, y: 4 }), 7);
    assert_eq!(by_ref_pattern(&(3, 8)), 8);
    assert_eq!(nested(((1, 2), [3, 4])), 10);
    assert_eq!(ref_binding("abc".into()), 3);
    assert_eq!(mut_string("hi".into()), "hi!");
}
