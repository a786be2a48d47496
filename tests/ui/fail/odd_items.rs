// Items the macro cannot take; it must report an error (never panic) for each.
#![allow(unused)]
use hot_runtime::hot;

#[hot]
enum Mode {
    Fast,
}

#[hot]
const LIMIT: u32 = 3;

#[hot]
trait Tick {
    fn tick(&self);
}

#[hot]
type Alias = u32;

#[hot]
use std::fmt;

#[hot]
macro_rules! m {
    () => {};
}

fn main() {}
