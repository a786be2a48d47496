//! `bot`: an event-driven bot in the spirit of a chat bot. It logs in once (slowly), then handles
//! events from a timer and from stdin, one `#[hot]` handler per event kind in `handlers/`.
//!
//! Try it: `cargo hot run -p bot`, type `join alice`, `alice: !ping` or `hello`, then edit a reply
//! in `examples/bot/src/handlers/message.rs` and save. The next reply is the new one, and the bot
//! did not log in again.
//!
//! An edit that needs a restart (a new `Event` variant, say) does not log in again either: the
//! session is `kept!`, handed from the old program to the new one.
//!
//! Arguments: `[TICK_MS]`, the timer period (default 1000).

mod handlers;
mod session;

use std::io::BufRead;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

enum Event {
    Tick(u64),
    Join(String),
    Message { from: String, text: String },
}

/// `join NAME`, `NAME: TEXT`, or plain text from `you`.
fn parse(line: &str) -> Option<Event> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if let Some(who) = line.strip_prefix("join ") {
        return Some(Event::Join(who.trim().to_string()));
    }
    let (from, text) = match line.split_once(": ") {
        Some((from, text)) if !from.contains(' ') => (from, text),
        _ => ("you", line),
    };
    Some(Event::Message {
        from: from.to_string(),
        text: text.to_string(),
    })
}

hot_runtime::kept! {
    /// Logged in once per `cargo hot run`, not once per restart. Locked per event: a lock held
    /// for good would keep cargo hot from reading it before a restart.
    static SESSION: Mutex<session::Session> = Mutex::new(session::Session::login("hotbot"));
}

fn main() {
    let tick_ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let pid = std::process::id();
    let token = SESSION.lock().unwrap().token;
    println!("[{pid}] ready (session token {token})");

    let (tx, rx) = mpsc::channel();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for n in 1.. {
                std::thread::sleep(Duration::from_millis(tick_ms));
                if tx.send(Event::Tick(n)).is_err() {
                    break;
                }
            }
        });
    }
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if let Some(ev) = parse(&line) {
                if tx.send(ev).is_err() {
                    break;
                }
            }
        }
    });

    for ev in rx {
        let mut session = SESSION.lock().unwrap();
        let reply = match ev {
            Event::Tick(n) => handlers::tick::on_tick(&mut session, n),
            Event::Join(who) => Some(handlers::join::on_join(&mut session, &who)),
            Event::Message { from, text } => {
                handlers::message::on_message(&mut session, &from, &text)
            }
        };
        if let Some(reply) = reply {
            println!("[{pid}] bot> {reply}");
        }
    }
}
