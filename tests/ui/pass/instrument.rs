// `#[hot]` with `#[tracing::instrument]` above or below it, on async methods taking `self`,
// `mut self`, `&self` and `&mut self` (inherent and trait-impl), on sync methods and on free fns.
//
// Whatever the order, `#[hot]` runs last (it puts itself after the attribute macros below it),
// so `#[instrument]` always rewrites the fn as written, never the hot-mode dispatcher: that is
// what let tracing-attributes 0.1.15 (syn 1, which cannot parse the dispatcher) work in a
// hot build. The spans must also look the same as in a plain build: the recorded receiver is
// the field `self`, although an async hot body calls it by another name.
#![deny(warnings)]

use std::fmt::Write as _;
use std::sync::Mutex;

use hot_runtime::hot;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, info, instrument};

#[path = "../support/block_on.rs"]
mod block_on;
use block_on::block_on;

/// Every span and event, as `name{field=value ...}`.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recorder;

struct Fields(String);
impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut f = Fields(String::new());
        span.record(&mut f);
        LOG.lock()
            .unwrap()
            .push(format!("{}{{{}}}", span.metadata().name(), f.0.trim()));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        LOG.lock().unwrap().push(format!("event{{{}}}", f.0.trim()));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn take_log() -> Vec<String> {
    std::mem::take(&mut *LOG.lock().unwrap())
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

struct Db;
impl Db {
    fn get(&self, key: &str) -> Option<String> {
        Some(key.to_string())
    }
}

#[derive(Debug)]
struct Get {
    key: String,
}

impl Get {
    #[hot]
    #[instrument(skip(self, db))]
    async fn apply(self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }

    #[instrument(skip(self, db))]
    #[hot]
    async fn apply_below(self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }

    #[hot]
    #[instrument(skip(db))]
    async fn apply_mut(mut self, db: &Db) -> Option<String> {
        self.key.push('+');
        db.get(&self.key)
    }

    #[instrument(skip(db))]
    #[hot]
    async fn apply_mut_below(mut self, db: &Db) -> Option<String> {
        self.key.push('+');
        db.get(&self.key)
    }

    #[hot]
    #[instrument(skip(self, db))]
    async fn by_ref(&self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }

    #[instrument(skip(self, db))]
    #[hot]
    async fn by_ref_below(&self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }

    #[hot]
    #[instrument(skip(self, db))]
    async fn by_mut(&mut self, db: &Db) -> Option<String> {
        self.key.push('!');
        db.get(&self.key)
    }

    #[instrument(skip(self, db))]
    #[hot]
    async fn by_mut_below(&mut self, db: &Db) -> Option<String> {
        self.key.push('!');
        db.get(&self.key)
    }

    // The receiver recorded as a field, a field computed from it, and an event naming `self`.
    #[hot]
    #[instrument(fields(len = self.key.len()))]
    async fn fields(&self, n: u32) -> usize {
        info!(self = ?self, "in fields");
        self.key.len() + n as usize
    }

    #[instrument(fields(len = self.key.len()))]
    #[hot]
    async fn fields_below(&self, n: u32) -> usize {
        info!(self = ?self, "in fields_below");
        self.key.len() + n as usize
    }

    #[hot]
    #[instrument(err)]
    async fn fallible(&self, ok: bool) -> Result<u32, String> {
        if ok {
            Ok(1)
        } else {
            Err(format!("no {}", self.key))
        }
    }

    #[instrument(err)]
    #[hot]
    async fn fallible_below(&self, ok: bool) -> Result<u32, String> {
        if ok {
            Ok(1)
        } else {
            Err(format!("no {}", self.key))
        }
    }

    #[hot]
    #[instrument(skip(self))]
    fn sync_ref(&self, n: u32) -> usize {
        self.key.len() + n as usize
    }

    #[instrument(skip(self))]
    #[hot]
    fn sync_ref_below(&self, n: u32) -> usize {
        self.key.len() + n as usize
    }
}

trait Cmd {
    async fn run(&self, db: &Db) -> Option<String>;
    async fn run_below(&self, db: &Db) -> Option<String>;
    async fn run_mut(&mut self, db: &Db) -> Option<String>;
    async fn run_mut_below(&mut self, db: &Db) -> Option<String>;
    async fn consume(self, db: &Db) -> Option<String>;
    async fn consume_below(self, db: &Db) -> Option<String>;
}

impl Cmd for Get {
    #[hot]
    #[instrument(skip(self, db))]
    async fn run(&self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }

    #[instrument(skip(self, db))]
    #[hot]
    async fn run_below(&self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }

    #[hot]
    #[instrument(skip(db))]
    async fn run_mut(&mut self, db: &Db) -> Option<String> {
        self.key.push('#');
        db.get(&self.key)
    }

    #[instrument(skip(db))]
    #[hot]
    async fn run_mut_below(&mut self, db: &Db) -> Option<String> {
        self.key.push('#');
        db.get(&self.key)
    }

    #[hot]
    #[instrument(skip(self, db))]
    async fn consume(self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }

    #[instrument(skip(self, db))]
    #[hot]
    async fn consume_below(self, db: &Db) -> Option<String> {
        db.get(&self.key)
    }
}

#[hot]
#[instrument]
fn free_sync(x: u32) -> u32 {
    x + 1
}

#[instrument]
#[hot]
fn free_sync_below(x: u32) -> u32 {
    x + 1
}

#[hot]
#[instrument(level = "debug")]
async fn free_async(x: u32) -> u32 {
    x + 1
}

#[instrument(level = "debug")]
#[hot]
async fn free_async_below(x: u32) -> u32 {
    x + 1
}

// Not a macro, but may add one: `#[hot]` goes after it too.
#[hot]
#[cfg_attr(all(), instrument)]
#[inline]
async fn cfg_attr_instrument(x: u32) -> u32 {
    x + 2
}

fn main() {
    tracing::subscriber::set_global_default(Recorder).unwrap();
    let db = Db;
    let mut g = Get { key: "k".into() };

    assert_eq!(block_on(assert_send(g.by_ref(&db))).as_deref(), Some("k"));
    assert_eq!(
        block_on(assert_send(g.by_ref_below(&db))).as_deref(),
        Some("k")
    );
    assert_eq!(block_on(assert_send(g.by_mut(&db))).as_deref(), Some("k!"));
    assert_eq!(
        block_on(assert_send(g.by_mut_below(&db))).as_deref(),
        Some("k!!")
    );
    assert_eq!(
        take_log(),
        ["by_ref{}", "by_ref_below{}", "by_mut{}", "by_mut_below{}"]
    );

    assert_eq!(block_on(assert_send(g.fields(1))), 4);
    assert_eq!(block_on(assert_send(g.fields_below(2))), 5);
    let me = r#"Get { key: "k!!" }"#;
    assert_eq!(
        take_log(),
        [
            format!("fields{{self={me} n=1 len=3}}"),
            format!("event{{message=in fields self={me}}}"),
            format!("fields_below{{self={me} n=2 len=3}}"),
            format!("event{{message=in fields_below self={me}}}"),
        ]
    );

    assert_eq!(block_on(g.fallible(true)), Ok(1));
    assert_eq!(block_on(g.fallible_below(false)), Err("no k!!".to_string()));
    assert_eq!(g.sync_ref(1), 4);
    assert_eq!(g.sync_ref_below(2), 5);
    assert_eq!(
        take_log(),
        [
            format!("fallible{{self={me} ok=true}}"),
            format!("fallible_below{{self={me} ok=false}}"),
            "event{error=no k!!}".to_string(),
            "sync_ref{n=1}".to_string(),
            "sync_ref_below{n=2}".to_string(),
        ]
    );

    assert_eq!(block_on(assert_send(g.run(&db))).as_deref(), Some("k!!"));
    assert_eq!(block_on(g.run_below(&db)).as_deref(), Some("k!!"));
    assert_eq!(
        block_on(assert_send(g.run_mut(&db))).as_deref(),
        Some("k!!#")
    );
    assert_eq!(block_on(g.run_mut_below(&db)).as_deref(), Some("k!!##"));
    let fut = assert_send(Get { key: "a".into() }.apply(&db));
    assert_eq!(block_on(fut).as_deref(), Some("a"));
    let fut = assert_send(Get { key: "b".into() }.apply_below(&db));
    assert_eq!(block_on(fut).as_deref(), Some("b"));
    assert_eq!(
        block_on(Get { key: "c".into() }.apply_mut(&db)).as_deref(),
        Some("c+")
    );
    assert_eq!(
        block_on(Get { key: "d".into() }.apply_mut_below(&db)).as_deref(),
        Some("d+")
    );
    assert_eq!(
        block_on(Get { key: "e".into() }.consume(&db)).as_deref(),
        Some("e")
    );
    assert_eq!(
        block_on(Get { key: "f".into() }.consume_below(&db)).as_deref(),
        Some("f")
    );
    assert_eq!(
        take_log(),
        [
            "run{}",
            "run_below{}",
            r#"run_mut{self=Get { key: "k!!" }}"#,
            r#"run_mut_below{self=Get { key: "k!!#" }}"#,
            "apply{}",
            "apply_below{}",
            r#"apply_mut{self=Get { key: "c" }}"#,
            r#"apply_mut_below{self=Get { key: "d" }}"#,
            "consume{}",
            "consume_below{}",
        ]
    );

    assert_eq!(free_sync(1), 2);
    assert_eq!(free_sync_below(2), 3);
    assert_eq!(block_on(assert_send(free_async(3))), 4);
    assert_eq!(block_on(assert_send(free_async_below(4))), 5);
    assert_eq!(block_on(cfg_attr_instrument(5)), 7);
    assert_eq!(
        take_log(),
        [
            "free_sync{x=1}",
            "free_sync_below{x=2}",
            "free_async{x=3}",
            "free_async_below{x=4}",
            "cfg_attr_instrument{x=5}",
        ]
    );
}
