//! An axum server (bench/vs_dx.py): the same program for both tools. Under `cargo hot run`,
//! `#[hot]` patches `hello_body` (subsecond::call is then a plain call); under
//! `dx serve --hotpatch`, `subsecond::call` does (`#[hot]` is then the fn as written). The body
//! is a sync fn called through `subsecond::call` from the handler: subsecond swaps the fns it
//! calls, while a future keeps running the code it was made with.
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;

static REQUESTS: AtomicU64 = AtomicU64::new(0);

#[hot_runtime::hot]
fn hello_body(n: u64) -> String {
    tracing::debug!(n, "hello");
    format!("hello v1 requests={n}\n")
}

async fn hello() -> String {
    // The closure captures nothing: subsecond takes a closure the size of a pointer (one that
    // captured `n: u64`) for a fn pointer, and never redirects it.
    subsecond::call(|| hello_body(REQUESTS.fetch_add(1, Ordering::Relaxed) + 1))
}

#[tokio::main]
async fn main() {
    dioxus_devtools::connect_subsecond();
    tracing_subscriber::fmt().with_target(false).init();
    let port: u16 = std::env::var("BENCH_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let app = Router::new().route("/", get(hello));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
