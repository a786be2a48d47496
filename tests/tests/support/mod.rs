//! End-to-end harness: runs the real `cargo-hot` on a copy of a fixture crate, edits its
//! sources the way editors do (write a temporary file, rename it over the original), and reads
//! the program's output.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The fixtures share one target directory so that their dependencies build once.
pub fn shared_target() -> PathBuf {
    repo().join("target").join("e2e")
}

/// The `cargo-hot` binary, built once per test run (`cargo test` builds only test targets).
pub fn cargo_hot() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = repo().join("target").join("e2e-tool");
            let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--quiet", "-p", "cargo-hot", "--manifest-path"])
                .arg(repo().join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("running cargo build -p cargo-hot");
            assert!(status.success(), "building cargo-hot failed");
            target.join("debug").join("cargo-hot")
        })
        .clone()
}

/// End-to-end tests run one at a time: they share a target directory and two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|p| p.into_inner())
}

/// Copies fixture `name` to a fresh directory, pointing its path dependencies at this repo.
pub fn copy_fixture(name: &str) -> PathBuf {
    let src = repo().join("tests").join("fixtures").join(name);
    let dst = std::env::temp_dir().join(format!("cargo-hot-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(&src, &dst);
    dst
}

/// Copies `examples/NAME` to a fresh directory as a standalone crate.
pub fn copy_example(name: &str) -> PathBuf {
    let src = repo().join("examples").join(name);
    let dst = std::env::temp_dir().join(format!(
        "cargo-hot-e2e-example-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dst);
    copy_dir(&src, &dst);
    let manifest = dst.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(
        "../../hot-runtime",
        repo().join("hot-runtime").to_str().unwrap(),
    ) + "\n[workspace]\n";
    assert!(
        !text.contains(".workspace = true"),
        "examples must not inherit from the workspace"
    );
    std::fs::write(manifest, text).unwrap();
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "target" {
                copy_dir(&e.path(), &to);
            }
        } else {
            let text = std::fs::read(e.path()).unwrap();
            let text = String::from_utf8(text)
                .unwrap()
                .replace("@REPO@", repo().to_str().unwrap());
            std::fs::write(&to, text).unwrap();
        }
    }
}

pub struct Hot {
    pub child: Child,
    /// The tool's stdin when started with `start_piped`; the program inherits it.
    stdin: Option<std::process::ChildStdin>,
    pub dir: PathBuf,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn pump(r: impl std::io::Read + Send + 'static, buf: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let mut b = buf.lock().unwrap();
            b.push_str(&line);
            b.push('\n');
        }
    });
}

impl Hot {
    /// `cargo-hot hot run` in a copy of fixture `name` with `args`.
    pub fn start(name: &str, args: &[&str]) -> Hot {
        let dir = copy_fixture(name);
        Self::start_in(dir, args)
    }

    pub fn start_in(dir: PathBuf, args: &[&str]) -> Hot {
        Self::launch(dir, args, false, &[])
    }

    /// Like `start`, with extra environment variables for cargo hot.
    pub fn start_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Hot {
        Self::launch(copy_fixture(name), args, false, env)
    }

    /// Like `start_in`, with a pipe as stdin (see `send_line`).
    pub fn start_piped(dir: PathBuf, args: &[&str]) -> Hot {
        Self::launch(dir, args, true, &[])
    }

    /// Writes a line to the tool's stdin, which the program inherits (it is not a tty).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("started with start_piped");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// `cargo-hot hot run` in `dir`, returning at once: for tests that act before cargo hot
    /// says it is ready, as users do.
    pub fn spawn_in(dir: PathBuf, args: &[&str]) -> Hot {
        Self::spawn(dir, &shared_target(), args, false, &[])
    }

    fn launch(dir: PathBuf, args: &[&str], piped: bool, env: &[(&str, &str)]) -> Hot {
        let hot = Self::spawn(dir, &shared_target(), args, piped, env);
        // Ready once cargo hot has built the baseline it diffs saves against.
        hot.wait_err((0, 0), "Watching", 900);
        hot
    }

    /// `cargo-hot hot run` in `dir` with target directory `target`, returning at once.
    pub fn spawn_with_target(dir: PathBuf, target: &Path, args: &[&str]) -> Hot {
        Self::spawn(dir, target, args, false, &[])
    }

    fn spawn(dir: PathBuf, target: &Path, args: &[&str], piped: bool, env: &[(&str, &str)]) -> Hot {
        let mut cmd = Command::new(cargo_hot());
        cmd.envs(env.iter().copied());
        cmd.args(["hot", "run", "--color", "never", "--target-dir"])
            .arg(target)
            .args(args)
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            // Its own process group, as a shell gives a job: a test can send the group the
            // SIGINT a terminal's Ctrl-C sends (tool and builds alike).
            .process_group(0)
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting cargo-hot");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        pump(child.stdout.take().unwrap(), out.clone());
        pump(child.stderr.take().unwrap(), err.clone());
        let stdin = child.stdin.take();
        Hot {
            stdin,
            child,
            dir,
            out,
            err,
        }
    }

    pub fn out(&self) -> String {
        self.out.lock().unwrap().clone()
    }
    pub fn err(&self) -> String {
        self.err.lock().unwrap().clone()
    }
    /// Lengths of both logs, to wait for output that comes after this point.
    pub fn mark(&self) -> (usize, usize) {
        (
            self.out.lock().unwrap().len(),
            self.err.lock().unwrap().len(),
        )
    }

    fn dump(&self) -> String {
        let out = self.out();
        let tail: String = out
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "--- tool stderr ---\n{}\n--- program stdout (tail) ---\n{tail}",
            self.err()
        )
    }

    /// Waits until the program's stdout after `mark` has a line containing `needle`; returns it.
    pub fn wait_out(&self, mark: (usize, usize), needle: &str, secs: u64) -> String {
        self.wait_in(&self.out, mark.0, needle, secs, "program output")
    }

    /// Waits until cargo hot's stderr after `mark` has a line containing `needle`; returns it.
    pub fn wait_err(&self, mark: (usize, usize), needle: &str, secs: u64) -> String {
        self.wait_in(&self.err, mark.1, needle, secs, "cargo hot to print")
    }

    fn wait_in(
        &self,
        buf: &Mutex<String>,
        from: usize,
        needle: &str,
        secs: u64,
        what: &str,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            {
                let text = buf.lock().unwrap();
                if let Some(line) = text[from.min(text.len())..]
                    .lines()
                    .find(|l| l.contains(needle))
                {
                    return line.to_string();
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {secs}s waiting for {what} {needle:?}\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The program's stdout after `mark` (without copying what came before).
    pub fn out_since(&self, mark: (usize, usize)) -> String {
        let out = self.out.lock().unwrap();
        out[mark.0.min(out.len())..].to_string()
    }

    pub fn err_since(&self, mark: (usize, usize)) -> String {
        let err = self.err.lock().unwrap();
        err[mark.1.min(err.len())..].to_string()
    }

    /// Replaces every `from` by `to` in `file`, saving like an editor.
    pub fn edit_all(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} not in {file}");
        save(&path, &text.replace(from, to));
    }

    /// Replaces `from` by `to` in `file`, saving like an editor: temp file + rename.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} not in {file}");
        save(&path, &text.replacen(from, to, 1));
    }

    pub fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Hot {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc_kill(self.child.id() as i32, 15) };
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.child.kill();
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Writes `text` to `path` the way editors save: a temporary file renamed over the original.
pub fn save(path: &Path, text: &str) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let tmp = path.with_file_name(format!("{name}.cargo-hot-test-tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// kill(2), for programs that outlive a killed cargo hot.
pub fn kill_pid(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe { libc_kill(pid as i32, sig) };
}

/// A TCP port on loopback that nothing listens on (for a program under test to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// kill(2) to the process group led by `pid`.
pub fn kill_pid_group(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe { libc_kill(-(pid as i32), sig) };
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the parenthesized command name
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The `[pid]` prefix of a fixture's output line.
pub fn pid_of(line: &str) -> u32 {
    let s = line.trim_start();
    let s = s
        .strip_prefix('[')
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    s[..s.find(']').unwrap()].parse().unwrap()
}

/// Value of `key=NUMBER` in a line.
pub fn field(line: &str, key: &str) -> u64 {
    let pat = if key.ends_with(':') {
        key.to_string()
    } else {
        format!("{key}=")
    };
    let at = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + pat.len();
    line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}
