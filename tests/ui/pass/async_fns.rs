// `async fn`s: free, inherent methods, trait-impl methods (with `async fn` in the trait),
// borrowed arguments, destructuring and `mut` patterns, and a compile-time check that the
// future is `Send` when the body is.
#![deny(warnings)]

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use hot_runtime::hot;

#[path = "../support/block_on.rs"]
mod block_on;
use block_on::block_on;

fn assert_send<T: Send>(_: &T) {}

/// Returns `Pending` once, so that the hot futures really suspend.
struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[hot]
async fn double(x: u32) -> u32 {
    YieldOnce(false).await;
    x * 2
}

#[hot]
pub async fn no_return_type(counter: Arc<std::sync::atomic::AtomicU32>) {
    YieldOnce(false).await;
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[hot]
async fn borrowed(s: &str) -> usize {
    YieldOnce(false).await;
    s.len()
}

#[hot]
async fn first<'a>(x: &'a str, _y: &str) -> &'a str {
    YieldOnce(false).await;
    x
}

#[hot]
async fn elided_ret(s: &str) -> &str {
    YieldOnce(false).await;
    &s[1..]
}

#[hot]
async fn chained(x: u32) -> u32 {
    double(x).await + double(1).await
}

#[hot]
async fn patterns((a, b): (u32, u32), mut acc: u32) -> u32 {
    YieldOnce(false).await;
    acc += a * b;
    acc
}

// A raw pointer is not Send, so this future is not either: `?Send`.
#[hot(?Send)]
async unsafe fn read_raw(p: *const u32) -> u32 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *p }
}

#[hot]
async unsafe fn get_unchecked(v: &[u32], i: usize) -> u32 {
    YieldOnce(false).await;
    // SAFETY: the caller passes an index in bounds.
    unsafe { *v.get_unchecked(i) }
}

#[hot]
async fn longest<'a, 'b: 'a>(x: &'a str, y: &'b str) -> &'a str {
    YieldOnce(false).await;
    if x.len() >= y.len() { x } else { y }
}

#[hot]
async fn takes_fn(f: fn(&str) -> &str, s: &str) -> String {
    YieldOnce(false).await;
    f(s).to_string()
}

#[hot]
#[allow(unknown_lints, mismatched_lifetime_syntaxes)]
async fn static_str(s: &'static str) -> &str {
    s
}

#[hot]
async fn owned_string(mut s: String) -> String {
    YieldOnce(false).await;
    s.push('!');
    s
}

struct Account {
    balance: u64,
}

impl Account {
    #[hot]
    async fn open(balance: u64) -> Self {
        YieldOnce(false).await;
        Account { balance }
    }

    #[hot]
    async fn balance(&self) -> u64 {
        YieldOnce(false).await;
        self.balance
    }

    #[hot]
    async fn deposit(&mut self, amount: u64) -> u64 {
        YieldOnce(false).await;
        self.balance += amount;
        self.balance
    }

    #[hot]
    async fn close(self) -> u64 {
        YieldOnce(false).await;
        self.balance
    }

    #[hot]
    async fn close_mut(mut self) -> u64 {
        self.balance += 1;
        self.balance
    }

    #[hot]
    async fn label(&self, prefix: &str) -> String {
        YieldOnce(false).await;
        let inner = |p: &str| format!("{p}{}", self.balance);
        inner(prefix)
    }

    #[hot]
    async fn label_ref<'a>(&'a self, prefix: &'a str) -> &'a str {
        YieldOnce(false).await;
        if self.balance == 0 { prefix } else { "rich" }
    }

    #[hot]
    async fn uses_self_path(&self) -> u64 {
        Self::fee(self.balance)
    }

    fn fee(b: u64) -> u64 {
        b / 10
    }
}

struct Words<'a> {
    text: &'a str,
}

impl<'a> Words<'a> {
    #[hot]
    async fn first_word(&mut self) -> Option<&'a str> {
        YieldOnce(false).await;
        let w = self.text.split(' ').next()?;
        self.text = &self.text[w.len()..];
        Some(w)
    }

    #[hot]
    async fn into_text(self) -> &'a str {
        YieldOnce(false).await;
        self.text
    }

    #[hot]
    async fn count_in(&self, other: Words<'_>) -> usize {
        YieldOnce(false).await;
        self.text.len() + other.text.len()
    }
}

trait Service {
    async fn call(&self, req: u32) -> u32;
    async fn name(&self) -> String;
}

struct Doubler;

impl Doubler {
    // Same name as the trait method.
    fn call(&self, _req: u32) -> u32 {
        0
    }
}

impl Service for Doubler {
    #[hot]
    async fn call(&self, req: u32) -> u32 {
        YieldOnce(false).await;
        req * 2
    }

    #[hot]
    async fn name(&self) -> String {
        "doubler".to_string()
    }
}

async fn generic_caller<S: Service>(s: &S) -> u32 {
    s.call(21).await
}

fn main() {
    let fut = double(21);
    assert_send(&fut);
    assert_eq!(block_on(fut), 42);

    let counter = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let fut = no_return_type(counter.clone());
    assert_send(&fut);
    block_on(fut);
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 1);

    let owned = String::from("four");
    let fut = borrowed(&owned);
    assert_send(&fut);
    assert_eq!(block_on(fut), 4);
    {
        let other = String::from("x");
        assert_eq!(block_on(first(&owned, &other)), "four");
    }
    assert_eq!(block_on(elided_ret("abc")), "bc");
    let fut = chained(5);
    assert_send(&fut);
    assert_eq!(block_on(fut), 12);
    assert_eq!(block_on(patterns((2, 3), 1)), 7);
    let v = 9u32;
    // SAFETY: `&v` is valid.
    assert_eq!(block_on(unsafe { read_raw(&v) }), 9);
    let data = vec![1, 2, 3];
    // SAFETY: 2 is in bounds.
    let fut = unsafe { get_unchecked(&data, 2) };
    assert_send(&fut);
    assert_eq!(block_on(fut), 3);
    {
        let long = String::from("longer");
        assert_eq!(block_on(longest("ab", &long)), "longer");
    }
    assert_eq!(block_on(takes_fn(str::trim, "  t ")), "t");
    assert_eq!(block_on(static_str("st")), "st");
    assert_eq!(block_on(owned_string("hi".into())), "hi!");

    let mut acct = block_on(Account::open(10));
    let fut = acct.balance();
    assert_send(&fut);
    assert_eq!(block_on(fut), 10);
    let fut = acct.deposit(5);
    assert_send(&fut);
    assert_eq!(block_on(fut), 15);
    assert_eq!(block_on(acct.label("$")), "$15");
    assert_eq!(block_on(acct.label_ref("p")), "rich");
    assert_eq!(block_on(acct.uses_self_path()), 1);
    assert_eq!(block_on(Account::open(3)).balance, 3);
    assert_eq!(block_on(Account { balance: 0 }.label_ref("p")), "p");
    assert_eq!(block_on(Account { balance: 1 }.close_mut()), 2);
    let fut = acct.close();
    assert_send(&fut);
    assert_eq!(block_on(fut), 15);

    let text = String::from("alpha beta");
    let mut words = Words { text: &text };
    let fut = words.first_word();
    assert_send(&fut);
    assert_eq!(block_on(fut), Some("alpha"));
    assert_eq!(block_on(words.count_in(Words { text: "xy" })), 7);
    assert_eq!(block_on(words.into_text()), " beta");

    let d = Doubler;
    assert_eq!(d.call(1), 0);
    let fut = Service::call(&d, 21);
    assert_send(&fut);
    assert_eq!(block_on(fut), 42);
    assert_eq!(block_on(generic_caller(&d)), 42);
    assert_eq!(block_on(d.name()), "doubler");

    // Futures of hot fns can be sent to another thread and run there.
    let handle = std::thread::spawn(|| block_on(double(50)));
    assert_eq!(handle.join().unwrap(), 100);
}
