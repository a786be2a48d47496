//! The edit-coverage table: every kind of edit a user makes, what cargo hot must do with it, and
//! what the running program must print afterwards. The cases run in order on one running copy of
//! `tests/fixtures/edits`, so each starts from the source the previous one left.

/// What cargo hot does with a save.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The same process runs the new code.
    Patched,
    /// The program is rebuilt and started again (new pid), saying why.
    Restarted,
    /// The build fails; its diagnostic is shown and the program keeps its last good code.
    KeptOldCode,
    /// The changed code will not run in this process (`main`, start-up code): cargo hot says
    /// so, names it and what to do, and claims no patch; the program goes on unchanged.
    NotRun,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Restarted => "restart",
            Outcome::KeptOldCode => "kept old code",
            Outcome::NotRun => "told it will not run",
        }
    }
}

/// Replace the first `from` by `to` in `file` (relative to the fixture root).
pub struct Edit {
    pub file: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

pub struct Case {
    /// The kind of edit, as the README's table names it.
    pub name: &'static str,
    pub edits: &'static [Edit],
    pub expect: Outcome,
    /// A piece of the program's output line that shows the edit's effect (or, for
    /// `KeptOldCode`, that the old code still runs).
    pub output: &'static str,
    /// What the user sees, for the README.
    pub note: &'static str,
}

const MAIN: &str = "app/src/main.rs";

const fn e(file: &'static str, from: &'static str, to: &'static str) -> Edit {
    Edit { file, from, to }
}

pub const CASES: &[Case] = &[
    Case {
        name: "body of a free `#[hot]` fn",
        edits: &[e(
            MAIN,
            "fn free(x: u64) -> u64 {\n    x + 1",
            "fn free(x: u64) -> u64 {\n    x * 10",
        )],
        expect: Outcome::Patched,
        output: "free=70",
        note: "next call runs the new body",
    },
    Case {
        name: "body of a `#[hot]` inherent method",
        edits: &[e(MAIN, "self.base + 1", "self.base * 2")],
        expect: Outcome::Patched,
        output: "method=80",
        note: "next call runs the new body",
    },
    Case {
        name: "body of a `#[hot]` trait-impl method",
        edits: &[e(MAIN, "self.0 * self.0", "self.0 * 4")],
        expect: Outcome::Patched,
        output: "area=12",
        note: "next call runs the new body",
    },
    Case {
        name: "body of a generic `#[hot]` fn (two instantiations)",
        edits: &[e(MAIN, "format!(\"{x}{x}\")", "format!(\"{x}-{x}\")")],
        expect: Outcome::Patched,
        output: "twice=4-4/ab-ab",
        note: "each instantiation the program has runs the new body",
    },
    Case {
        name: "body of a `#[hot]` method of a generic impl",
        edits: &[e(MAIN, "self.0 + self.1\n", "self.0 + self.1 + self.1\n")],
        expect: Outcome::Patched,
        output: "pair=5/3.5",
        note: "`Pair<u64>` and `Pair<f64>` both run it",
    },
    Case {
        name: "body of a `#[hot]` fn with an `impl Trait` argument",
        edits: &[e(MAIN, "parts.join(\"+\")", "parts.join(\"*\")")],
        expect: Outcome::Patched,
        output: "joined=1*2/3",
        note: "next call runs the new body",
    },
    Case {
        name: "body of a loop that never returns, under `#[hot(rewind)]`",
        edits: &[e(MAIN, "l.label = \"lap1\";", "l.label = \"lap2\";")],
        expect: Outcome::Patched,
        output: "laps=lap2:",
        note: "the running loop is re-entered with the new body at its next hot call; its arguments (the state) are kept",
    },
    Case {
        name: "body of a `#[hot] async fn`",
        edits: &[e(MAIN, "x + 5", "x + 50")],
        expect: Outcome::Patched,
        output: "fetch=57",
        note: "futures created after the patch run the new body",
    },
    Case {
        name: "string literal",
        edits: &[e(MAIN, "\"hello\".to_string()", "\"bonjour\".to_string()")],
        expect: Outcome::Patched,
        output: "greet=bonjour",
        note: "",
    },
    Case {
        name: "`const` value",
        edits: &[e(MAIN, "const LIMIT: u64 = 3;", "const LIMIT: u64 = 4;")],
        expect: Outcome::Patched,
        output: "limit=4",
        note: "hot fns using it see the new value",
    },
    Case {
        name: "closure body inside a hot fn",
        edits: &[e(MAIN, "|v: u64| v + 1", "|v: u64| v * 10")],
        expect: Outcome::Patched,
        output: "closure=60",
        note: "",
    },
    Case {
        name: "body of a generic helper called from a hot fn",
        edits: &[e(MAIN, "    a + a\n", "    a + a + a\n")],
        expect: Outcome::Patched,
        output: "generic=63",
        note: "the instantiations hot fns use are patched",
    },
    Case {
        name: "new private fn, called from a hot fn",
        edits: &[
            e(
                MAIN,
                "// @ITEMS@",
                "fn helper_new() -> u64 {\n    77\n}\n// @ITEMS@",
            ),
            e(
                MAIN,
                "fn newfn() -> u64 {\n    0",
                "fn newfn() -> u64 {\n    helper_new()",
            ),
        ],
        expect: Outcome::Patched,
        output: "newfn=77",
        note: "",
    },
    Case {
        name: "new `#[hot]` fn",
        edits: &[
            e(
                MAIN,
                "// @ITEMS@",
                "#[hot]\nfn brand_new() -> u64 {\n    88\n}\n// @ITEMS@",
            ),
            e(
                MAIN,
                "fn newhot() -> u64 {\n    0",
                "fn newhot() -> u64 {\n    brand_new()",
            ),
        ],
        expect: Outcome::Patched,
        output: "newhot=88",
        note: "",
    },
    Case {
        name: "body of a `#[hot]` fn added by an earlier patch",
        edits: &[e(MAIN, "    88\n", "    89\n")],
        expect: Outcome::Patched,
        output: "newhot=89",
        note: "patches stack",
    },
    Case {
        name: "new `static`",
        edits: &[
            e(
                MAIN,
                "// @ITEMS@",
                "static FRESH: AtomicU64 = AtomicU64::new(7_000_000);\n// @ITEMS@",
            ),
            e(
                MAIN,
                "fn newstatic() -> u64 {\n    0",
                "fn newstatic() -> u64 {\n    FRESH.fetch_add(1, Ordering::Relaxed)",
            ),
        ],
        expect: Outcome::Patched,
        output: "newstatic=700",
        note: "starts at its initializer",
    },
    Case {
        name: "changed initializer of an existing `static`",
        edits: &[
            e(
                MAIN,
                "static SEEDED: AtomicU64 = AtomicU64::new(1);",
                "static SEEDED: AtomicU64 = AtomicU64::new(2);",
            ),
            e(MAIN, "format!(\"a{}\"", "format!(\"b{}\""),
        ],
        expect: Outcome::Patched,
        output: "seeded=b1",
        note: "the static keeps its current value: initializers are not re-run",
    },
    Case {
        name: "body of a non-hot trait impl (`Display`) used by a hot fn",
        edits: &[e(MAIN, "write!(f, \"sq{}\"", "write!(f, \"SQ{}\"")],
        expect: Outcome::Patched,
        output: "show=SQ3",
        note: "code a hot fn reaches is patched with it",
    },
    Case {
        name: "body of a workspace library crate",
        edits: &[e("edlib/src/lib.rs", "    x + 1\n", "    x + 100\n")],
        expect: Outcome::Patched,
        output: "lib=L107",
        note: "",
    },
    Case {
        name: "new code panics",
        edits: &[e(
            MAIN,
            "fn risky() -> u64 {\n    1",
            "fn risky() -> u64 {\n    panic!(\"boom in new code\")",
        )],
        expect: Outcome::Patched,
        output: "risky=panicked",
        note: "the panic unwinds into the program's own `catch_unwind`",
    },
    Case {
        name: "body of `main` (already running)",
        edits: &[e(MAIN, "from_millis(20)", "from_millis(21)")],
        expect: Outcome::NotRun,
        output: "free=70",
        note: "`main changed, but it already ran: press r to restart`",
    },
    Case {
        name: "syntax error",
        edits: &[e(MAIN, "    x * 10\n", "    x * \n")],
        expect: Outcome::KeptOldCode,
        output: "free=70",
        note: "rustc's diagnostic is shown; the next good save patches",
    },
    Case {
        name: "type error",
        edits: &[e(MAIN, "    x * 10\n", "    x * \"ten\"\n")],
        expect: Outcome::KeptOldCode,
        output: "free=70",
        note: "rustc's diagnostic is shown; the next good save patches",
    },
    Case {
        name: "new `thread_local!`",
        edits: &[
            e(
                MAIN,
                "// @ITEMS@",
                "thread_local! {\n    static TLS: std::cell::Cell<u64> = const { std::cell::Cell::new(5) };\n}\n// @ITEMS@",
            ),
            e(
                MAIN,
                "fn tls() -> u64 {\n    0",
                "fn tls() -> u64 {\n    TLS.with(|t| t.get())",
            ),
        ],
        expect: Outcome::Restarted,
        output: "tls=5",
        note: "a running thread's TLS block cannot grow",
    },
    Case {
        name: "signature of a `#[hot]` fn",
        edits: &[e(
            MAIN,
            "fn sig(x: u64) -> u64 {\n    x\n",
            "fn sig(x: u32) -> u64 {\n    x as u64 + 1\n",
        )],
        expect: Outcome::Restarted,
        output: "sig=6",
        note: "callers were compiled against the old one",
    },
    Case {
        name: "bound of a generic `#[hot]` fn",
        edits: &[e(
            MAIN,
            "fn twice<T: std::fmt::Display>(x: T)",
            "fn twice<T: std::fmt::Display + Copy>(x: T)",
        )],
        expect: Outcome::Restarted,
        output: "twice=4-4/ab-ab",
        note: "the reason names the fn; restarts",
    },
    Case {
        name: "struct field added",
        edits: &[
            e(
                MAIN,
                "    hits: u64,\n}",
                "    hits: u64,\n    tag: u64,\n}",
            ),
            e(MAIN, "hits: 2 }", "hits: 2, tag: 1 }"),
            e(MAIN, "c.base + c.hits", "c.base + c.hits + c.tag"),
        ],
        expect: Outcome::Restarted,
        output: "fields=43",
        note: "values of the old layout are live in memory",
    },
    Case {
        name: "struct fields reordered",
        edits: &[e(
            MAIN,
            "    base: u64,\n    hits: u64,\n",
            "    hits: u64,\n    base: u64,\n",
        )],
        expect: Outcome::Restarted,
        output: "fields=43",
        note: "values of the old layout are live in memory",
    },
    Case {
        name: "enum variant added",
        edits: &[
            e(
                MAIN,
                "    Calm,\n    Busy,\n",
                "    Calm,\n    Busy,\n    Idle,\n",
            ),
            e(
                MAIN,
                "Mode::Busy => \"busy\",",
                "Mode::Busy => \"busy\",\n        Mode::Idle => \"idle\",",
            ),
        ],
        expect: Outcome::Restarted,
        output: "mode=calm/busy",
        note: "values of the old layout are live in memory",
    },
    Case {
        name: "dependency added in `Cargo.toml`",
        edits: &[
            e(
                "app/Cargo.toml",
                "edlib = { path = \"../edlib\" }",
                "edlib = { path = \"../edlib\" }\nextra = { path = \"../extra\" }",
            ),
            e(
                MAIN,
                "fn dep() -> &'static str {\n    \"none\"",
                "fn dep() -> &'static str {\n    extra::NAME",
            ),
        ],
        expect: Outcome::Restarted,
        output: "dep=extra",
        note: "the program is rebuilt with it",
    },
];
