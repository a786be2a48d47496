//! An axum server whose route handlers are `#[hot] async fn`s. Run `cargo hot run -p server`,
//! then `curl localhost:3000/` and edit `hello` below: the next request gets the new body, the
//! request counters and the key-value store survive, and no request fails during the patch.
//!
//! An edit that needs a restart (a field of `Inner`, say) loses nothing either: cargo hot holds
//! the listening socket (`listen` in Cargo.toml's `[package.metadata.hot]`, taken with
//! `hot_runtime::listener`), so requests wait while the new program starts; the key-value store
//! is `kept!`, handed to the new program; and the old program finishes the requests it has
//! (graceful shutdown on SIGTERM).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;

/// Requests served since start, across every handler version.
static TOTAL: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
struct Inner {
    hello_requests: AtomicU64,
}

hot_runtime::kept! {
    /// The key-value store, kept across restarts.
    static KV: RwLock<HashMap<String, String>> = RwLock::new(HashMap::new());
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
async fn get_key(Path(key): Path<String>) -> String {
    TOTAL.fetch_add(1, Ordering::Relaxed);
    match KV.read().unwrap().get(&key) {
        Some(v) => format!("{key}={v}\n"),
        None => format!("{key} is not set\n"),
    }
}

#[hot_runtime::hot]
async fn put_key(Path(key): Path<String>, body: String) -> String {
    TOTAL.fetch_add(1, Ordering::Relaxed);
    KV.write().unwrap().insert(key.clone(), body.clone());
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
    // The socket cargo hot holds across restarts, or a fresh one (a plain build, another port).
    let listener = hot_runtime::listener(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    println!(
        "[{}] listening on {}",
        std::process::id(),
        listener.local_addr().unwrap()
    );
    // Stopping (SIGTERM, as cargo hot stops a program it replaces): first stop accepting, so
    // that new connections wait in the socket for the next program; a moment later, finish the
    // requests of the connections already accepted and exit.
    let (stop_accepting, draining) = tokio::sync::watch::channel(false);
    let (finish, finished) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let kind = tokio::signal::unix::SignalKind::terminate();
        tokio::signal::unix::signal(kind).unwrap().recv().await;
        let _ = stop_accepting.send(true);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let _ = finish.send(());
    });
    let listener = Draining {
        inner: listener,
        stop: draining,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = finished.await;
        })
        .await
        .unwrap();
}

/// A listener that stops accepting once told to: connections arriving after that wait in the
/// listening socket (cargo hot holds it) for the next program instead of being closed unread.
struct Draining {
    inner: tokio::net::TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl axum::serve::Listener for Draining {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if *self.stop.borrow() {
                std::future::pending::<()>().await;
            }
            tokio::select! {
                conn = self.inner.accept() => match conn {
                    Ok(conn) => return conn,
                    // Out of fds, say: let other tasks free some.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                },
                _ = self.stop.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
