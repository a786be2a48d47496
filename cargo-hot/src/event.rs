//! Everything the session reacts to, as one event type on one channel: saves (the watcher),
//! lines typed on the terminal, signals, and the program's exit.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use anyhow::Result;

use crate::watch;

pub enum Event {
    /// Source files were saved.
    Saved(Vec<PathBuf>),
    /// The watcher failed or lost events.
    WatchTrouble(String),
    /// A program cargo hot started has exited.
    Exited(u32, ExitStatus),
    /// A line typed on cargo hot's terminal.
    Key(String),
    /// Ctrl-C or SIGTERM/SIGHUP.
    Interrupt,
}

/// Set once an interrupt arrived: builds in flight were interrupted too (they share the
/// terminal's process group), and their failure is not the user's code.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Acquire)
}

/// The session's inbox. Events taken out of order (to join saves into one build) wait in
/// `deferred` and come first.
pub struct Events {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    deferred: VecDeque<Event>,
}

impl Events {
    pub fn new() -> Events {
        let (tx, rx) = channel();
        Events {
            tx,
            rx,
            deferred: VecDeque::new(),
        }
    }

    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    /// Ctrl-C, SIGTERM and SIGHUP become `Interrupt`. `on_second_chance` runs if the session
    /// has not exited 2 s later (it may be busy in a build): it must stop the program and exit.
    pub fn catch_signals(&self, on_second_chance: fn()) {
        let tx = self.tx.clone();
        let _ = ctrlc::set_handler(move || {
            INTERRUPTED.store(true, Ordering::Release);
            let _ = tx.send(Event::Interrupt);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                on_second_chance();
            });
        });
    }

    /// Watches `dirs`: each debounced batch of saves becomes `Saved`.
    pub fn watch(
        &self,
        dirs: &[PathBuf],
        filter: watch::Filter,
        debounce: Duration,
        poll: bool,
    ) -> Result<Box<dyn std::any::Any>> {
        let tx = self.tx.clone();
        watch::start(dirs, filter, debounce, poll, move |c| {
            let _ = tx.send(match c {
                watch::Change::Paths(p) => Event::Saved(p),
                watch::Change::Trouble(t) => Event::WatchTrouble(t),
            });
        })
    }

    /// Reads the terminal: each line becomes `Key`.
    pub fn read_keys(&self) {
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(Event::Key(line)).is_err() {
                    break;
                }
            }
        });
    }

    /// The next event; `None` after `timeout` (if given) or when every sender is gone.
    pub fn next(&mut self, timeout: Option<Duration>) -> Option<Event> {
        if let Some(ev) = self.deferred.pop_front() {
            return Some(ev);
        }
        match timeout {
            None => self.rx.recv().ok(),
            Some(t) => self.rx.recv_timeout(t).ok(),
        }
    }

    /// Puts an event back at the front.
    pub fn push_front(&mut self, ev: Event) {
        self.deferred.push_front(ev);
    }

    /// Moves the saves already queued into `paths` (the rest stay queued, in order). True if
    /// there was any: a build in progress is then superseded by a newer one.
    pub fn take_saves(&mut self, paths: &mut Vec<PathBuf>) -> bool {
        let mut saved = false;
        let mut rest = VecDeque::new();
        for ev in self.deferred.drain(..).chain(self.rx.try_iter()) {
            match ev {
                Event::Saved(more) => {
                    paths.extend(more);
                    saved = true;
                }
                other => rest.push_back(other),
            }
        }
        self.deferred = rest;
        if saved {
            paths.sort();
            paths.dedup();
        }
        saved
    }
}
