//! An axum server whose route handlers are `#[hot] async fn`s. Run `cargo hot run -p server`,
//! then `curl localhost:3000/` and edit `hello` below: the next request gets the new body, the
//! request counters and the key-value store survive, and no request fails during the patch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use tokio::sync::RwLock;

/// Requests served since start, across every handler version.
static TOTAL: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
struct Inner {
    hello_requests: AtomicU64,
    kv: RwLock<HashMap<String, String>>,
}

#[derive(Clone, Default)]
struct AppState(Arc<Inner>);

#[hot_runtime::hot]
async fn hello(State(state): State<AppState>) -> String {
    let n = state.0.hello_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let total = TOTAL.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(n, "hello");
    format!("hello v1 requests={n} total={total}\n")
}

#[hot_runtime::hot]
async fn get_key(State(state): State<AppState>, Path(key): Path<String>) -> String {
    TOTAL.fetch_add(1, Ordering::Relaxed);
    match state.0.kv.read().await.get(&key) {
        Some(v) => format!("{key}={v}\n"),
        None => format!("{key} is not set\n"),
    }
}

#[hot_runtime::hot]
async fn put_key(State(state): State<AppState>, Path(key): Path<String>, body: String) -> String {
    TOTAL.fetch_add(1, Ordering::Relaxed);
    state.0.kv.write().await.insert(key.clone(), body.clone());
    format!("stored {key}\n")
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_target(false).init();
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3000);
    let app = Router::new()
        .route("/", get(hello))
        .route("/kv/{key}", get(get_key).put(put_key))
        .with_state(AppState::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    println!(
        "[{}] listening on {}",
        std::process::id(),
        listener.local_addr().unwrap()
    );
    axum::serve(listener, app).await.unwrap();
}
