//! Generic hot fns: type and const parameters, `where` clauses, `impl Trait` arguments, methods of
//! generic impls (inherent and trait), and generic methods. Each instantiation has its own slot.

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::hash::Hash;

use hot_runtime::hot;

#[hot]
fn largest<T: PartialOrd + Copy>(v: &[T]) -> T {
    let mut m = v[0];
    for &x in v {
        if x > m {
            m = x;
        }
    }
    m
}

#[hot]
fn zeros<const N: usize>() -> [u8; N] {
    [0; N]
}

#[hot]
fn show(x: impl Display, y: &impl Debug) -> String {
    format!("{x} {y:?}")
}

#[hot]
fn count<K, I>(items: I) -> HashMap<K, usize>
where
    K: Eq + Hash,
    I: IntoIterator<Item = K>,
{
    let mut m = HashMap::new();
    for k in items {
        *m.entry(k).or_default() += 1;
    }
    m
}

#[hot]
fn pick<'a, T: ?Sized + Debug>(a: &'a T, b: &'a T, first: bool) -> &'a T {
    if first { a } else { b }
}

#[hot]
fn apply_twice<F: Fn(u32) -> u32>(f: F, x: u32) -> u32 {
    f(f(x))
}

#[hot]
fn depth<T: Debug>(x: T, n: u32) -> u32 {
    if n == 0 { 0 } else { 1 + depth(x, n - 1) }
}

struct Stack<T> {
    items: Vec<T>,
}

impl<T: Clone + Debug> Stack<T> {
    #[hot]
    fn new() -> Self {
        Stack { items: Vec::new() }
    }
    #[hot]
    fn push(&mut self, x: T) -> &mut Self {
        self.items.push(x);
        self
    }
    #[hot]
    fn top(&self) -> Option<&T> {
        self.items.last()
    }
    #[hot]
    fn map_all<U, F: Fn(&T) -> U>(&self, f: F) -> Vec<U> {
        self.items.iter().map(f).collect()
    }
    #[hot]
    fn into_items(self) -> Vec<T> {
        self.items
    }
}

trait Describe {
    fn describe(&self) -> String;
    fn tagged<D: Display>(&self, tag: D) -> String;
}

impl<T: Debug> Describe for Stack<T> {
    #[hot]
    fn describe(&self) -> String {
        format!("{:?}", self.items)
    }
    #[hot]
    fn tagged<D: Display>(&self, tag: D) -> String {
        format!("{tag}: {}", self.items.len())
    }
}

struct Grid<const W: usize, const H: usize>([[u8; W]; H]);

impl<const W: usize, const H: usize> Grid<W, H> {
    #[hot]
    fn cells(&self) -> usize {
        W * H + self.0.len() - H
    }
}

fn main() {
    assert_eq!(largest(&[1, 5, 3]), 5);
    assert_eq!(largest(&[1.5, 0.5]), 1.5);
    assert_eq!(zeros::<3>(), [0; 3]);
    assert_eq!(show(1, &"a"), "1 \"a\"");
    assert_eq!(count("abca".chars())[&'a'], 2);
    assert_eq!(*pick("x", "y", false), *"y");
    assert_eq!(apply_twice(|x| x + 1, 1), 3);
    assert_eq!(depth("s", 3), 3);
    let mut s = Stack::new();
    s.push(1).push(2);
    assert_eq!(s.top(), Some(&2));
    assert_eq!(s.map_all(|x| x * 10), vec![10, 20]);
    assert_eq!(s.describe(), "[1, 2]");
    assert_eq!(s.tagged("n"), "n: 2");
    assert_eq!(s.into_items(), vec![1, 2]);
    assert_eq!(Grid([[0u8; 2]; 3]).cells(), 6);
}
