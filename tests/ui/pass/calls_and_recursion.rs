// Hot functions calling each other, direct and mutual recursion, hot fns used as values.
#![deny(warnings)]

use hot_runtime::hot;

#[hot]
fn factorial(n: u64) -> u64 {
    if n <= 1 { 1 } else { n * factorial(n - 1) }
}

#[hot]
fn is_even(n: u32) -> bool {
    if n == 0 { true } else { is_odd(n - 1) }
}

#[hot]
fn is_odd(n: u32) -> bool {
    if n == 0 { false } else { is_even(n - 1) }
}

#[hot]
fn square(x: i64) -> i64 {
    x * x
}

#[hot]
fn sum_of_squares(a: i64, b: i64) -> i64 {
    square(a) + square(b)
}

#[hot]
fn apply_twice(f: fn(i64) -> i64, x: i64) -> i64 {
    f(f(x))
}

#[hot]
fn fib(n: u32) -> u64 {
    match n {
        0 => 0,
        1 => 1,
        _ => fib(n - 1) + fib(n - 2),
    }
}

struct Tree {
    children: Vec<Tree>,
}

impl Tree {
    #[hot]
    fn size(&self) -> usize {
        1 + self.children.iter().map(|c| c.size()).sum::<usize>()
    }
}

fn main() {
    assert_eq!(factorial(0), 1);
    assert_eq!(factorial(10), 3_628_800);
    assert_eq!(factorial(20), 2_432_902_008_176_640_000);
    assert!(is_even(10));
    assert!(is_odd(7));
    assert_eq!(sum_of_squares(3, 4), 25);
    assert_eq!(apply_twice(square, 3), 81);
    assert_eq!(fib(20), 6765);
    let t = Tree { children: vec![Tree { children: vec![] }, Tree { children: vec![Tree { children: vec![] }] }] };
    assert_eq!(t.size(), 4);
}
