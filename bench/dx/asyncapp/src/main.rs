//! tests/fixtures/asyncapp for bench/vs_dx.py, the same program for both tools. The edited line
//! (the traced one) sits in a sync fn called through `subsecond::call` from the loop: subsecond
//! swaps the fns it calls, while a future keeps polling the body it was made with. Under
//! `cargo hot run`, `#[hot]` patches it (`subsecond::call` is then a plain call); under
//! `dx serve --hotpatch`, `subsecond::call` does (`#[hot]` is then the fn as written).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

static CALLS: AtomicU64 = AtomicU64::new(0);

async fn work(tx: mpsc::Sender<String>, n: u64) -> String {
    let spawned = tokio::spawn(async move { n * 2 });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let doubled = spawned.await.unwrap();
    tx.send(format!("doubled={doubled}")).await.unwrap();
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    serde_json::json!({ "v": "v1", "calls": calls }).to_string()
}

#[hot_runtime::hot]
fn log_call(calls: u64) {
    tracing::info!(calls, "traced v1");
}

pub trait Handler {
    async fn handle(&self, input: &str, extra: &str) -> String;
}

pub struct App {
    pub name: String,
}

impl Handler for App {
    async fn handle(&self, input: &str, extra: &str) -> String {
        tokio::task::yield_now().await;
        format!("{} handled {input}{extra} h1", self.name)
    }
}

#[tokio::main]
async fn main() {
    dioxus_devtools::connect_subsecond();
    tracing_subscriber::fmt().with_ansi(false).with_target(false).without_time().init();
    let pid = std::process::id();
    let (tx, mut rx) = mpsc::channel::<String>(16);
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            println!("[{pid}] channel {m}");
        }
    });
    let app = App { name: "app".into() };
    loop {
        let r = work(tx.clone(), 21).await;
        // subsecond swaps fns called through `subsecond::call`; a future keeps polling the body it
        // was made with, so the edited line sits in a sync fn called that way from the loop.
        subsecond::call(|| log_call(CALLS.load(Ordering::Relaxed)));
        println!("[{pid}] {r}");
        let h = app.handle("x", "!").await;
        println!("[{pid}] {h}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
