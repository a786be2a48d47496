//! One run of the user's program: launch, the handshake on the control channel, patches sent
//! and answered, and stop. The program never outlives cargo hot: it gets the parent-death
//! signal, and its runtime stops it when the control channel closes.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hot_runtime::protocol::Message;

use crate::event::Event;
use crate::ui;

/// Pid of the running program, for the last-resort signal path.
static CURRENT: AtomicU32 = AtomicU32::new(0);

/// Where patches may be mapped in the program (from its hello).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub base: u64,
    pub next_addr: u64,
    pub reserve_end: u64,
}

pub struct Program {
    pub pid: u32,
    ctl: UnixStream,
    replies: Receiver<Message>,
    /// `None`: the program did not connect (no `hot-runtime`, or it refused): edits restart it.
    pub link: Option<Link>,
    /// The program's stdin when cargo hot owns the terminal: lines that are not `r`/`q` go here.
    stdin: Option<std::process::ChildStdin>,
    exit: Arc<OnceLock<ExitStatus>>,
}

/// How to start the program.
pub struct Launch<'a> {
    pub exe: &'a Path,
    pub args: &'a [std::ffi::OsString],
    pub build_id: &'a str,
    pub patch_dir: &'a Path,
    /// Directories of shared libraries the program links (Rust `dylib`s, std), as `cargo run`
    /// puts them on the library path.
    pub lib_dirs: Vec<std::path::PathBuf>,
    pub forward_stdin: bool,
    /// Listening sockets cargo hot holds across runs: passed as fds 3.. (systemd protocol).
    pub listeners: &'a [RawFd],
    /// The `kept!` values the previous run wrote, for this one to read.
    pub kept: Option<&'a Path>,
}

/// Most listening sockets one program can be given (fds are arranged without allocating, after
/// fork).
pub const MAX_LISTENERS: usize = 32;

impl Program {
    /// Starts the program and waits for its hello (or its early exit).
    pub fn launch(l: &Launch, events: Sender<Event>) -> Result<Program> {
        let (parent, child_end) = UnixStream::pair().context("creating the control channel")?;
        let mut cmd = Command::new(l.exe);
        // The listeners take fds 3..3+n, as the systemd protocol wants; the channel comes next.
        let ctl_fd = 3 + l.listeners.len() as RawFd;
        cmd.args(l.args)
            .env("HOT_RUNTIME_FD", ctl_fd.to_string())
            .env("HOT_RUNTIME_BUILD_ID", l.build_id)
            .env("HOT_RUNTIME_PATCH_DIR", l.patch_dir)
            // Its own process group: Ctrl-C reaches the tool, which stops the program cleanly.
            .process_group(0);
        if let Some(path) = library_path(&l.lib_dirs) {
            cmd.env("LD_LIBRARY_PATH", path);
        }
        if let Some(k) = l.kept {
            cmd.env("HOT_RUNTIME_KEPT", k);
        }
        if !l.listeners.is_empty() {
            // `listenfd` accepts an empty LISTEN_PID; hot-runtime sets it to the pid at start.
            cmd.env("LISTEN_FDS", l.listeners.len().to_string())
                .env("LISTEN_PID", "")
                .env("HOT_RUNTIME_LISTEN", "1");
        }
        inherit_and_die_with_parent(&mut cmd, child_end.as_raw_fd(), l.listeners)?;
        if l.forward_stdin {
            cmd.stdin(std::process::Stdio::piped());
        }
        ui::good("Running", &format!("`{}`", l.exe.display()));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", l.exe.display()))?;
        let stdin = child.stdin.take();
        drop(child_end);
        let pid = child.id();
        CURRENT.store(pid, Ordering::Release);
        let exit = Arc::new(OnceLock::new());
        let exit2 = exit.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit2.set(status);
                let _ = events.send(Event::Exited(pid, status));
            }
        });
        let replies = read_replies(parent.try_clone()?);
        let mut prog = Program {
            pid,
            ctl: parent,
            replies,
            link: None,
            stdin,
            exit,
        };
        prog.link = prog.handshake(l)?;
        Ok(prog)
    }

    /// The program's hello, checked; `None` (said why) when patching is off for this run.
    fn handshake(&mut self, l: &Launch) -> Result<Option<Link>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let hello = loop {
            match self.replies.recv_timeout(Duration::from_millis(20)) {
                Ok(m) => break m,
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    self.say_why_unconnected(l.exe);
                    return Ok(None);
                }
            }
        };
        let Message::Hello {
            pid,
            build_id,
            base,
            reserve_start,
            reserve_end,
            ..
        } = hello
        else {
            ui::bad(
                "error",
                &format!("unexpected first message from the program: {hello:?}"),
            );
            return Ok(None);
        };
        if pid != self.pid || build_id != l.build_id {
            ui::bad(
                "error",
                "the program that connected is not the one just built; patching is off",
            );
            return Ok(None);
        }
        if reserve_end == 0 {
            ui::bad(
                "error",
                "the program could not reserve address space for patches; patching is off",
            );
            return Ok(None);
        }
        Ok(Some(Link {
            base,
            next_addr: reserve_start,
            reserve_end,
        }))
    }

    fn say_why_unconnected(&self, exe: &Path) {
        // The exit status lands a moment after the channel closes.
        let deadline = Instant::now() + Duration::from_millis(300);
        while self.exit.get().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        match self.exit.get() {
            Some(status) => ui::bad(
                "error",
                &format!(
                    "`{}` exited during start-up ({status}); its own error output is above",
                    exe.display()
                ),
            ),
            None => ui::warn(
                "Unpatchable",
                "the program did not connect to cargo hot; does it depend on `hot-runtime` and have a #[hot] fn? Edits will restart it",
            ),
        }
    }

    pub fn has_exited(&self) -> bool {
        self.exit.get().is_some()
    }

    /// Sends one control line.
    pub fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.ctl.write_all(line)
    }

    /// The next message from the program within `timeout`.
    pub fn answer(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.replies.recv_timeout(timeout)
    }

    /// A message that arrived without being waited for, if any.
    pub fn try_answer(&self) -> Option<Message> {
        self.replies.try_recv().ok()
    }

    /// Asks the program to write its `kept!` values to `path` (a new file in the private patch
    /// directory); returns how many it wrote.
    pub fn keep(&mut self, path: &Path) -> Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        anyhow::ensure!(
            self.link.is_some(),
            "the program is not connected to cargo hot"
        );
        let msg = Message::Keep {
            path: path.as_os_str().as_bytes().to_vec(),
        };
        self.send(format!("{}\n", msg.encode()).as_bytes())?;
        match self.answer(Duration::from_secs(5)) {
            Ok(Message::Kept { count }) => Ok(count),
            Ok(Message::Failed { reason, .. }) => anyhow::bail!("{reason}"),
            Ok(other) => anyhow::bail!("unexpected answer {other:?}"),
            Err(_) => anyhow::bail!("no answer within 5 s"),
        }
    }

    /// Forwards a typed line to the program's stdin (when cargo hot owns the terminal).
    pub fn type_line(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            // A program that stopped reading stdin is not an error worth reporting.
            let _ = writeln!(stdin, "{line}");
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // Every way out of a run (quit, error, restart) ends the program it started.
        stop(self.pid);
    }
}

/// Gives the child the listeners as fds 3.. and the control channel right after them, and ties
/// its life to ours: SIGTERM when cargo hot dies (the thread that spawns it is the session's,
/// which lives as long as cargo hot).
fn inherit_and_die_with_parent(cmd: &mut Command, ctl: RawFd, listeners: &[RawFd]) -> Result<()> {
    anyhow::ensure!(
        listeners.len() <= MAX_LISTENERS,
        "at most {MAX_LISTENERS} listening sockets can be passed to the program"
    );
    let n = listeners.len();
    let mut sources = [0 as RawFd; MAX_LISTENERS + 1];
    sources[..n].copy_from_slice(listeners);
    sources[n] = ctl;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close, prctl, getppid, kill) between
    // fork and exec, and no allocation (fixed arrays).
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (above every target), then into place: a source may sit
            // where another one must go.
            let mut moved = [0 as RawFd; MAX_LISTENERS + 1];
            for i in 0..=n {
                moved[i] = libc::fcntl(sources[i], libc::F_DUPFD_CLOEXEC, 4 + n as RawFd);
                if moved[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &fd) in moved.iter().enumerate().take(n + 1) {
                // dup2 leaves the new fd without FD_CLOEXEC: the program inherits it.
                if libc::dup2(fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // cargo hot died between fork and prctl: nobody would deliver the signal.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
            Ok(())
        });
    }
    Ok(())
}

/// `LD_LIBRARY_PATH` with `dirs` first, as cargo sets it for `cargo run`.
fn library_path(dirs: &[std::path::PathBuf]) -> Option<std::ffi::OsString> {
    if dirs.is_empty() {
        return None;
    }
    let mut all: Vec<std::path::PathBuf> = dirs.to_vec();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        all.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(all).ok()
}

/// Reads the program's control messages on a thread of their own.
fn read_replies(stream: UnixStream) -> Receiver<Message> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => match Message::parse(&line) {
                    Ok(m) => {
                        if tx.send(m).is_err() {
                            break;
                        }
                    }
                    Err(e) => ui::bad("error", &format!("from the program: {e}")),
                },
            }
        }
    });
    rx
}

/// SIGTERM to the program's process group, SIGKILL after 3 s.
pub fn stop(pid: u32) {
    let pgid = -(pid as i32);
    // SAFETY: plain kill(2) on the process group we created.
    unsafe { libc::kill(pgid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // SAFETY: probing with signal 0.
        if unsafe { libc::kill(pgid, 0) } != 0 {
            return;
        }
        // Short: the next program starts (and a restart's downtime ends) as soon as this one
        // is gone.
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pgid, libc::SIGKILL) };
}

/// Stops the program last started, from a signal path where the session cannot be reached.
pub fn stop_current() {
    let pid = CURRENT.load(Ordering::Acquire);
    if pid != 0 {
        stop(pid);
    }
}
