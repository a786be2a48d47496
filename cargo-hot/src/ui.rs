//! Cargo-style status lines on stderr: a right-aligned, coloured status word and a message.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static COLOR: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);
/// cargo hot reads `r`/`q` from its terminal (stdin is one).
static KEYS: AtomicBool = AtomicBool::new(false);

/// Whether `r` + Enter restarts (cargo hot reads its terminal).
pub fn set_keys(on: bool) {
    KEYS.store(on, Ordering::Relaxed);
}

/// How the user restarts the program, as the rest of a sentence.
pub fn restart_hint() -> &'static str {
    if KEYS.load(Ordering::Relaxed) {
        "press `r` + Enter to restart"
    } else {
        "restart cargo hot to pick it up (its stdin is not a terminal, so `r` is not read)"
    }
}

/// `--color auto|always|never`, defaulting from `CARGO_TERM_COLOR`; `NO_COLOR` turns it off.
pub fn init(color: Option<&str>, quiet: bool) {
    let choice = color
        .map(str::to_string)
        .or_else(|| std::env::var("CARGO_TERM_COLOR").ok())
        .unwrap_or_else(|| "auto".into());
    let on = match choice.as_str() {
        "always" => true,
        "never" => false,
        _ => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    COLOR.store(on, Ordering::Relaxed);
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

#[derive(Clone, Copy)]
pub enum Tone {
    Good,
    Warn,
    Bad,
    /// Routine news that needs no action (a build superseded by a newer save).
    Dim,
}

pub fn status(tone: Tone, word: &str, msg: &str) {
    if QUIET.load(Ordering::Relaxed) && !matches!(tone, Tone::Bad) {
        return;
    }
    if color() {
        let code = match tone {
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "31",
            Tone::Dim => "2",
        };
        eprintln!("\x1b[1;{code}m{word:>12}\x1b[0m {msg}");
    } else {
        eprintln!("{word:>12} {msg}");
    }
}

pub fn good(word: &str, msg: &str) {
    status(Tone::Good, word, msg)
}
pub fn warn(word: &str, msg: &str) {
    status(Tone::Warn, word, msg)
}
pub fn bad(word: &str, msg: &str) {
    status(Tone::Bad, word, msg)
}
pub fn dim(word: &str, msg: &str) {
    status(Tone::Dim, word, msg)
}

/// Rendered rustc diagnostics, with colour codes removed when colour is off.
pub fn diagnostics(text: &str) {
    if color() {
        eprint!("{text}");
    } else {
        eprint!("{}", strip_ansi(text));
    }
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `CARGO_HOT_DEBUG` is set: print what patch selection decided, how long steps took, and ELF
/// details (relocation types) in refusals.
pub fn debugging() -> bool {
    std::env::var_os("CARGO_HOT_DEBUG").is_some()
}

/// With `CARGO_HOT_DEBUG`, how long a step took (for profiling the time beyond rustc).
pub fn debug_time(what: &str, since: std::time::Instant) {
    if debugging() {
        eprintln!(
            "[debug] {what}: {:.1} ms",
            since.elapsed().as_secs_f64() * 1000.0
        );
    }
}
