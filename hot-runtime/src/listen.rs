//! Listening sockets that outlive restarts. `cargo hot run --listen ADDR` binds ADDR once and
//! hands the same socket to every run of the program with the systemd protocol (`LISTEN_FDS`,
//! fds from 3), so connections that arrive while the program restarts wait in the socket's
//! backlog instead of being refused. Programs using the `listenfd` crate work unchanged;
//! [`listener`](crate::listener) is the one-liner for the others.

use std::io;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// Inherited listening sockets not yet taken by [`take`].
static INHERITED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Called before `main` (single-threaded): notes the sockets cargo hot passed, and completes the
/// systemd protocol for strict readers, which want `LISTEN_PID` to be this process.
pub(crate) fn init() {
    let Some(n) = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    if std::env::var_os("HOT_RUNTIME_LISTEN").is_none() {
        return; // not cargo hot's: leave them to whoever passed them
    }
    // SAFETY: constructors run before `main`, while the program has only this thread.
    unsafe {
        std::env::remove_var("HOT_RUNTIME_LISTEN");
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
    }
    *INHERITED.lock().unwrap_or_else(|p| p.into_inner()) = (3..3 + n).collect();
}

/// The inherited socket bound to one of `addrs`, if cargo hot passed one.
pub(crate) fn take(addrs: &[SocketAddr]) -> Option<TcpListener> {
    let mut fds = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
    let at = fds.iter().position(|&fd| {
        // SAFETY: the fd is an inherited socket we own; ManuallyDrop keeps it open.
        let probe = ManuallyDrop::new(unsafe { TcpListener::from_raw_fd(fd) });
        // The same address, or the same port when the program asks for any address
        // (`0.0.0.0:3000` takes cargo hot's `127.0.0.1:3000`: binding it would collide).
        probe.local_addr().is_ok_and(|a| {
            addrs
                .iter()
                .any(|w| *w == a || (w.ip().is_unspecified() && w.port() == a.port()))
        })
    })?;
    let fd = fds.remove(at);
    // SAFETY: as above; from here on the listener owns the fd.
    let l = unsafe { TcpListener::from_raw_fd(fd) };
    // SAFETY: plain fcntl on an fd we own: the program's own children must not inherit it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(l)
}

pub(crate) fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    Ok(addr.to_socket_addrs()?.collect())
}
