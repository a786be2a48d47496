//! End to end: restarts that lose nothing. With `--listen`, cargo hot holds the listening socket
//! and hands it to every run of the program, so a client hammering it across restarts sees no
//! refused or failed connection: they wait in the backlog while the new program starts. And
//! `kept!` values (a slow login, a hit counter) are handed from each run to the next.

mod support;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Hot, pid_of};

/// One request: connect, read the reply line.
fn ask(port: u16) -> Result<String, String> {
    let c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut line = String::new();
    BufReader::new(c)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if line.is_empty() {
        return Err("closed without a reply".into());
    }
    Ok(line)
}

/// The `listen` fixture under `cargo hot run --listen`, on a free port: (tool, port, first line).
fn start_listening() -> (Hot, u16, String) {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let hot = Hot::spawn_in(
        support::copy_fixture("listen"),
        &["--listen", &addr, "--", &addr],
    );
    let first = hot.wait_out((0, 0), "serving on", 600);
    (hot, port, first)
}

#[test]
fn a_client_hammering_across_restarts_sees_no_failed_request() {
    let _serial = support::serial();
    let (hot, port, first) = start_listening();
    let mut pids = vec![pid_of(&first)];

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Result<String, String>>::new()));
    let client = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let r = ask(port);
                seen.lock().unwrap().push(r);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Three rude edits (a struct field each): three restarts under load.
    for (i, field) in ["b", "c", "d"].iter().enumerate() {
        let m = hot.mark();
        hot.edit(
            "src/main.rs",
            "pub a: u32,",
            &format!("pub a: u32,\n    pub {field}: u8,"),
        );
        hot.edit(
            "src/main.rs",
            "shape = Shape {",
            &format!("shape = Shape {{ {field}: 0,"),
        );
        hot.edit(
            "src/main.rs",
            &format!("a: {} }}", i + 1),
            &format!("a: {} }}", i + 2),
        );
        let line = hot.wait_out(m, &format!("a={}", i + 2), 300);
        pids.push(pid_of(&line));
        // Requests reach the new program.
        let want = format!("a={}", i + 2);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(3)
            .any(|r| r.as_ref().is_ok_and(|l| l.contains(&want)))
        {
            assert!(Instant::now() < deadline, "no reply from the new program");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let seen = seen.lock().unwrap();
    // The login ran once, in the first program; every later one got it handed over.
    let out = hot.out();
    assert_eq!(out.matches("logging in").count(), 1, "{out}");
    let login = support::field(&first, "login");
    let last = seen.iter().rev().find_map(|r| r.as_ref().ok()).unwrap();
    assert_eq!(support::field(last, "login"), login, "same login: {last}");
    // The hit counter went on across restarts: it counts every request served.
    let served = seen.iter().filter(|r| r.is_ok()).count() as u64;
    assert_eq!(support::field(last, "hits"), served, "hits kept: {last}");
    let failed: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
    let served_by = |pid: u32| {
        seen.iter()
            .filter(|r| r.as_ref().is_ok_and(|l| pid_of(l) == pid))
            .count()
    };
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)],
        hot.err()
    );
    for pid in &pids {
        assert!(served_by(*pid) > 0, "pid {pid} served on the same socket");
    }
    let said = hot.err();
    assert_eq!(said.matches("Restarting").count(), 3, "{said}");
    hot.stop();
}

#[test]
fn a_kept_value_whose_type_changed_is_initialized_anew_and_says_so() {
    let _serial = support::serial();
    let (hot, port, first) = start_listening();
    hot.wait_err((0, 0), "Watching", 120);
    // The kept type itself changes (and a field makes this a restart).
    let m = hot.mark();
    hot.edit(
        "src/main.rs",
        "pub id: u64,",
        "pub id: u64,\n    pub name: String,",
    );
    hot.edit(
        "src/main.rs",
        "* 1000 + 7,",
        "* 1000 + 7,\n            name: \"x\".into(),",
    );
    let line = hot.wait_out(m, "serving on", 300);
    assert_ne!(pid_of(&line), pid_of(&first), "restarted");
    assert!(hot.out_since(m).contains("logging in"), "logged in again");
    assert_ne!(
        support::field(&line, "login"),
        support::field(&first, "login")
    );
    let said = hot.wait_err(m, "initialized anew", 10);
    assert!(
        said.contains("LOGIN") && said.contains("src/main.rs:"),
        "{said}"
    );
    let _ = ask(port);
    hot.stop();
}
