//! End to end on the examples: each is edited under `cargo hot run` and the change is observed
//! in the same process.

mod support;
use support::{Hot, pid_of};

fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        + key.len();
    line[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn hello_is_patched_and_keeps_counting() {
    let _serial = support::serial();
    let hot = Hot::start_in(support::copy_example("hello"), &["--", "1000000"]);
    let first = hot.wait_out(hot.mark(), "Hello from hot-patched code!", 120);
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "Hello from hot-patched code!",
        "Hello, edited!",
    );
    let l = hot.wait_out(m, "Hello, edited!", 60);
    assert!(
        field(&l, "call #") > field(&first, "call #"),
        "COUNT kept counting: {first} -> {l}"
    );
    hot.stop();
}

#[test]
fn sim_takes_patches_only_at_frame_boundaries_and_keeps_its_world() {
    let _serial = support::serial();
    let hot = Hot::start_in(support::copy_example("sim"), &[]);
    let first = hot.wait_out(hot.mark(), "gen ", 120);
    let pid = pid_of(&first);
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "format!(\"gen {} alive",
        "format!(\"GEN {} alive",
    );
    let applied = hot.wait_out(m, "at frame boundary", 60);
    let after = hot.wait_out(m, "GEN ", 10);
    assert_eq!(pid_of(&after), pid);
    assert!(
        field(&after, "GEN") > field(&first, "gen"),
        "the world kept evolving: {first} -> {after}"
    );
    // Nothing rendered by the new code before the frame boundary that applied it.
    let out = hot.out();
    let tail = &out[m.0..];
    assert!(
        tail.find("at frame boundary").unwrap() < tail.find("GEN ").unwrap(),
        "{applied}"
    );
    hot.wait_err(m, "Queued", 5);
    // The game loop never returns; it is `#[hot(rewind)]`, so an edit of its own body is left
    // and re-entered at its next hot call, with the same world.
    let m = hot.mark();
    hot.edit("src/main.rs", "loop=v1", "loop=v2");
    let after_loop = hot.wait_out(m, "loop=v2", 60);
    assert_eq!(pid_of(&after_loop), pid, "same process");
    assert!(
        field(&after_loop, "GEN") > field(&after, "GEN"),
        "the world kept evolving across the rewind: {after} -> {after_loop}"
    );
    let said = hot.wait_err(m, "Applied", 10);
    assert!(said.contains("run"), "names the loop: {said}");
    hot.stop();
}

fn request(port: u16, method: &str, path: &str, body: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(out);
    }
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// examples/server under `cargo hot run --listen` on a free port, with key `user` stored:
/// (tool, port, the program's `listening on` line). `ready` waits for cargo hot's baseline.
fn start_server(ready: bool) -> (Hot, u16, String) {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let arg = port.to_string();
    let args = ["--listen", addr.as_str(), "--", arg.as_str()];
    let dir = support::copy_example("server");
    let hot = if ready {
        Hot::start_in(dir, &args)
    } else {
        Hot::spawn_in(dir, &args)
    };
    // Printed once at start-up, maybe before cargo hot is ready: search the whole output.
    let line = hot.wait_out((0, 0), "listening on", 600);
    assert_eq!(
        request(port, "PUT", "/kv/user", "ada").unwrap(),
        "stored user\n"
    );
    (hot, port, line)
}

/// A client sending `GET /` back to back on fresh connections until stopped (or 15 minutes).
struct Hammer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// (requests answered, failures, answers starting with `hello v2`)
    thread: std::thread::JoinHandle<(u64, Vec<String>, u64)>,
}

impl Hammer {
    fn start(port: u16) -> Hammer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed, mut v2) = (0u64, Vec::new(), 0u64);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
            while !flag.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                match request(port, "GET", "/", "") {
                    Ok(body) => {
                        ok += 1;
                        if body.starts_with("hello v2") {
                            v2 += 1;
                        }
                    }
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, v2)
        });
        Hammer { stop, thread }
    }

    /// Stops it; asserts no request failed; returns (answered, answers starting `hello v2`).
    fn finish(self, what: &str) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed, v2) = self.thread.join().unwrap();
        assert!(
            failed.is_empty(),
            "{} of {} requests failed {what}: {:?}",
            failed.len(),
            ok + failed.len() as u64,
            &failed[..failed.len().min(3)]
        );
        (ok, v2)
    }
}

#[test]
fn server_handlers_are_patched_under_load_without_failed_requests() {
    let _serial = support::serial();
    let (hot, port, line) = start_server(true);
    let pid = pid_of(&line);
    let client = Hammer::start(port);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = request(port, "GET", "/", "").unwrap();
    let m = hot.mark();
    hot.edit("src/main.rs", "hello v1 requests", "hello v2 requests");
    hot.wait_err(m, "Patched", 120);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let after = loop {
        let body = request(port, "GET", "/", "").unwrap();
        if body.starts_with("hello v2") || std::time::Instant::now() > deadline {
            break body;
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (ok, v2) = client.finish("during the patch");
    assert!(after.starts_with("hello v2"), "{after}");
    assert!(
        v2 > 0 && ok > v2,
        "requests before and after the patch: ok={ok} v2={v2}"
    );
    assert!(
        field(&after, "requests=") > field(&before, "requests="),
        "{before} -> {after}"
    );
    assert_eq!(
        request(port, "GET", "/kv/user", "").unwrap(),
        "user=ada\n",
        "the store survived"
    );
    assert!(hot.out().contains(&format!("[{pid}] listening")));
    hot.stop();
}

#[test]
fn server_restarts_under_load_lose_no_request_and_no_key() {
    let _serial = support::serial();
    let (hot, port, first) = start_server(false);
    let client = Hammer::start(port);
    // Five rude edits (a field of `Inner` each): five restarts while the client hammers.
    let mut pids = vec![pid_of(&first)];
    for i in 0..5 {
        let m = hot.mark();
        hot.edit(
            "src/main.rs",
            "struct Inner {\n",
            &format!("struct Inner {{\n    restart_{i}: AtomicU64,\n"),
        );
        let line = hot.wait_out(m, "listening on", 300);
        pids.push(pid_of(&line));
        assert_ne!(pids[i + 1], pids[i], "restarted");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    client.finish("across 5 restarts");
    assert_eq!(
        request(port, "GET", "/kv/user", "").unwrap(),
        "user=ada\n",
        "the store was handed to every new program"
    );
    assert_eq!(hot.err().matches("Restarting").count(), 5, "{}", hot.err());
    hot.stop();
}

#[test]
fn bot_handlers_are_patched_without_logging_in_again() {
    let _serial = support::serial();
    let mut hot = Hot::start_piped(support::copy_example("bot"), &["--", "100"]);
    let login = hot.wait_out((0, 0), "logged in as hotbot", 120);
    let pid = pid_of(&login);
    let token = field(&login, "session token");

    // Events from stdin reach the handlers.
    let m = hot.mark();
    hot.send_line("join alice");
    hot.wait_out(m, "welcome, alice! (1 in the room)", 10);
    hot.send_line("alice: !ping");
    hot.wait_out(m, "pong, alice", 10);
    hot.wait_out(m, "all quiet", 10);

    // Edit the message handler (its own file): the next reply is the new one.
    let m = hot.mark();
    hot.edit(
        "src/handlers/message.rs",
        "format!(\"pong, {from}\")",
        "format!(\"PONG!! {from}, token {}\", session.token)",
    );
    hot.wait_err(m, "Patched handlers::message::on_message", 60);
    hot.send_line("alice: !ping");
    let pong = hot.wait_out(m, "PONG!! alice", 10);
    assert_eq!(pid_of(&pong), pid, "same process");
    assert_eq!(field(&pong, "token"), token, "same session");

    // Edit the timer handler and the join handler; the room keeps its members.
    let m = hot.mark();
    hot.edit("src/handlers/tick.rs", "all quiet", "still here");
    hot.wait_out(m, "still here", 60);
    hot.edit(
        "src/handlers/join.rs",
        "\"welcome, {who}!",
        "\"hi {who}, glad you came!",
    );
    hot.wait_err(m, "Patched handlers::join::on_join", 60);
    hot.send_line("join bob");
    let hi = hot.wait_out(m, "hi bob, glad you came! (2 in the room)", 10);
    assert_eq!(pid_of(&hi), pid);

    // An edit that needs a restart (a new event kind) does not log in again: the session,
    // with its token and the room's members, is handed to the new program.
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "    Tick(u64),",
        "    Tick(u64),\n    Leave(String),",
    );
    hot.edit(
        "src/main.rs",
        "        let reply = match ev {",
        "        let reply = match ev {\n            Event::Leave(_) => None,",
    );
    let ready = hot.wait_out(m, "ready (session token", 300);
    assert_ne!(pid_of(&ready), pid, "restarted");
    assert_eq!(field(&ready, "session token"), token, "same session");
    hot.send_line("join carol");
    hot.wait_out(m, "(3 in the room)", 10);

    let out = hot.out();
    assert_eq!(
        out.matches("logging in as").count(),
        1,
        "logged in once:\n{out}"
    );
    hot.stop();
}
