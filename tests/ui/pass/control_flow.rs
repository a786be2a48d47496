// `?` (with `From` conversions), early `return`, `let .. else`, labeled breaks, in sync and
// async hot fns.
#![deny(warnings)]

use std::num::ParseIntError;

use hot_runtime::hot;

#[path = "../support/block_on.rs"]
mod block_on;
use block_on::block_on;

#[derive(Debug, PartialEq)]
enum MyError {
    Parse,
    Negative,
}

impl From<ParseIntError> for MyError {
    fn from(_: ParseIntError) -> Self {
        MyError::Parse
    }
}

#[hot]
fn parse_sum(a: &str, b: &str) -> Result<i32, ParseIntError> {
    let a: i32 = a.parse()?;
    let b: i32 = b.parse()?;
    Ok(a + b)
}

#[hot]
fn parse_positive(s: &str) -> Result<u32, MyError> {
    let v: i64 = s.trim().parse()?;
    if v < 0 {
        return Err(MyError::Negative);
    }
    Ok(v as u32)
}

#[hot]
fn first_even(v: &[u32]) -> Option<u32> {
    for &x in v {
        if x % 2 == 0 {
            return Some(x);
        }
    }
    None
}

#[hot]
fn option_chain(v: &[u32]) -> Option<u32> {
    let first = v.first()?;
    let last = v.last()?;
    Some(first + last)
}

#[hot]
fn early_unit(flag: bool, out: &mut Vec<u8>) {
    if flag {
        return;
    }
    out.push(1);
}

#[hot]
fn labeled(n: u32) -> u32 {
    let mut count = 0;
    'outer: for i in 0..n {
        for j in 0..n {
            if i * j > 6 {
                break 'outer;
            }
            count += 1;
        }
    }
    count
}

#[hot]
fn boxed_error(s: &str) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    let v: u8 = s.parse()?;
    if v == 0 {
        return Err("zero".into());
    }
    Ok(v)
}

#[hot]
async fn async_parse(s: &str) -> Result<u32, MyError> {
    let v: u32 = s.parse()?;
    if v > 100 {
        return Err(MyError::Negative);
    }
    Ok(v)
}

#[hot]
async fn async_early(v: Vec<u32>) -> u32 {
    for x in &v {
        if *x > 10 {
            return *x;
        }
    }
    0
}

struct Config {
    values: Vec<String>,
}

impl Config {
    #[hot]
    fn get_num(&self, i: usize) -> Result<i32, MyError> {
        let Some(s) = self.values.get(i) else {
            return Err(MyError::Negative);
        };
        Ok(s.parse()?)
    }
}

fn main() {
    assert_eq!(parse_sum("1", "2"), Ok(3));
    assert!(parse_sum("x", "2").is_err());
    assert_eq!(parse_positive(" 5 "), Ok(5));
    assert_eq!(parse_positive("-5"), Err(MyError::Negative));
    assert_eq!(parse_positive("z"), Err(MyError::Parse));
    assert_eq!(first_even(&[1, 3, 4, 6]), Some(4));
    assert_eq!(first_even(&[1]), None);
    assert_eq!(option_chain(&[1, 2, 3]), Some(4));
    assert_eq!(option_chain(&[]), None);
    let mut out = Vec::new();
    early_unit(true, &mut out);
    early_unit(false, &mut out);
    assert_eq!(out, vec![1]);
    assert_eq!(labeled(4), 15);
    assert_eq!(boxed_error("7").unwrap(), 7);
    assert!(boxed_error("0").is_err());
    assert!(boxed_error("q").is_err());
    assert_eq!(block_on(async_parse("42")), Ok(42));
    assert_eq!(block_on(async_parse("420")), Err(MyError::Negative));
    assert_eq!(block_on(async_parse("x")), Err(MyError::Parse));
    assert_eq!(block_on(async_early(vec![1, 20, 30])), 20);
    assert_eq!(block_on(async_early(vec![1])), 0);
    let c = Config { values: vec!["12".into(), "x".into()] };
    assert_eq!(c.get_num(0), Ok(12));
    assert_eq!(c.get_num(1), Err(MyError::Parse));
    assert_eq!(c.get_num(2), Err(MyError::Negative));
}
