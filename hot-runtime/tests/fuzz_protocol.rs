//! Property-based fuzzing of the control-channel parser (`hot_runtime::protocol`), on stable.
//!
//! Properties:
//! * `Message::parse` of arbitrary bytes (random, token soup, non-UTF-8, embedded newlines,
//!   lines around and above `MAX_LINE`) returns `Ok` or `Err` within a time limit, never panics;
//! * every valid message survives `parse(encode(m)) == m` (with or without the newline), and an
//!   encoding longer than `MAX_LINE` is an error, not a panic;
//! * flipped, set, inserted, deleted, duplicated and truncated bytes of valid encodings never
//!   panic;
//! * whatever `parse` accepts satisfies the protocol's limits and re-encodes to a line that parses
//!   back to the same message.
//!
//! Each test runs a bounded number of cases (a few seconds in all, debug build). For a longer
//! run set `HOT_FUZZ_CASES` (or proptest's own `PROPTEST_CASES`), e.g.
//! `HOT_FUZZ_CASES=200000 cargo test -p hot-runtime --features hot --test fuzz_protocol -- --nocapture`;
//! each test prints how many cases it ran and for how long.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hot_runtime::protocol::{FnRebind, MAX_FNS, MAX_LINE, Message, ProtocolError, Refusal};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

/// Longest a single `parse` may take before the case counts as a hang (debug build, 1 MiB line,
/// busy machine: real parses take milliseconds).
const HANG_LIMIT: Duration = Duration::from_secs(10);

/// Cases for a test whose default is `default`; `HOT_FUZZ_CASES` / `PROPTEST_CASES` override it,
/// divided by `weight` for tests whose cases are heavier (megabyte lines).
fn cases(default: u32, weight: u32) -> u32 {
    ["HOT_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse::<u32>().ok())
        .map(|n| n.div_ceil(weight).max(1))
        .unwrap_or(default)
}

thread_local! {
    /// Lines `parse` accepted in the current test (each test runs on its own thread).
    static ACCEPTED: Cell<u64> = const { Cell::new(0) };
}

/// Runs `test` on `cases` values of `strategy`; failures are shrunk and reported with the input.
fn run<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut config = Config::with_cases(cases);
    config.max_shrink_time = 120_000; // ms; a hang would otherwise shrink forever
    config.failure_persistence = None;
    let mut runner = TestRunner::new(config);
    let ran = AtomicU64::new(0);
    ACCEPTED.set(0);
    let start = Instant::now();
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    let accepted = match ACCEPTED.get() {
        0 => String::new(),
        n => format!(" ({n} of them parsed as messages)"),
    };
    eprintln!(
        "{name}: {} cases{accepted} in {:.2?}",
        ran.load(Ordering::Relaxed),
        start.elapsed()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// `Message::parse(line)` on its own thread: a panic is re-raised here (proptest records it and
/// shrinks the input), a parse running past `HANG_LIMIT` fails the case as a hang.
fn parse_bounded(line: &[u8]) -> Result<Message, ProtocolError> {
    let owned = line.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = Message::parse(&owned);
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
            "Message::parse did not return within {HANG_LIMIT:?} on a {}-byte line",
            line.len()
        ),
    }
}

/// What holds for any message `parse` returned from `line`.
fn check_accepted(line: &[u8], m: &Message) -> Result<(), TestCaseError> {
    ACCEPTED.set(ACCEPTED.get() + 1);
    prop_assert!(
        line.len() <= MAX_LINE,
        "accepted a {}-byte line",
        line.len()
    );
    match m {
        Message::Hello { build_id, .. } | Message::Patch { build_id, .. } => {
            prop_assert!(!build_id.is_empty() && build_id.len() <= 128);
            prop_assert!(build_id.bytes().all(|b| b.is_ascii_graphic()));
        }
        _ => {}
    }
    match m {
        Message::Patch { path, fns, .. } => {
            prop_assert!(!path.is_empty());
            prop_assert!(fns.len() <= MAX_FNS);
        }
        Message::Applied { refused, .. } => prop_assert!(refused.len() <= MAX_FNS),
        _ => {}
    }
    // The canonical form of an accepted line means the same message. (Its length can exceed
    // MAX_LINE: a `failed` reason's invalid UTF-8 becomes U+FFFD, three bytes per bad byte.)
    let again = m.encode();
    if again.len() <= MAX_LINE {
        prop_assert_eq!(
            &parse_bounded(again.as_bytes()),
            &Ok(m.clone()),
            "{}",
            again
        );
    }
    Ok(())
}

/// Parses `line`; accepted messages are checked, errors are fine.
fn parse_any(line: &[u8]) -> Result<(), TestCaseError> {
    match parse_bounded(line) {
        Ok(m) => check_accepted(line, &m),
        Err(e) => {
            // The error must be printable without trouble too.
            let _ = e.to_string();
            prop_assert!(!e.0.is_empty());
            Ok(())
        }
    }
}

// --- generators ---------------------------------------------------------------------------

/// Numbers: full range, small, and the edges (hex width 1 and 16).
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => 0u64..0x100,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => Just(1u64 << 63),
    ]
}

fn pid() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), Just(0u32), Just(u32::MAX), 1u32..100_000]
}

/// Build ids: what `word` accepts, 1 to 128 printable ASCII bytes.
fn build_id() -> BoxedStrategy<String> {
    prop_oneof![
        "[0-9a-f]{16,24}",
        "[!-~]{1,8}",
        "[!-~]{120,128}",
        "[!-~]{1,128}",
    ]
    .boxed()
}

/// Bytes biased towards the ones that matter to a line protocol.
fn odd_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        1 => prop::sample::select(vec![
            0u8, b' ', b'\n', b'\r', b'\t', b':', b'+', b'-', b'0', b'f', b'g', 0x7f, 0x80, 0xc3,
            0xe2, 0xf0, 0xff,
        ]),
    ]
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "(/[a-z0-9 ._-]{1,12}){1,6}".prop_map(String::into_bytes),
        2 => vec(odd_byte(), 1..64),
        1 => vec(any::<u8>(), 1..2048),
    ]
}

fn fn_rebind() -> impl Strategy<Value = FnRebind> {
    (number(), number(), number()).prop_map(|(host_entry, patch_entry, target)| FnRebind {
        host_entry,
        patch_entry,
        target,
    })
}

fn refusal() -> impl Strategy<Value = Refusal> {
    prop::sample::select(vec![
        Refusal::UnknownFunction,
        Refusal::FingerprintDiffers,
        Refusal::KindDiffers,
        Refusal::OutOfPatch,
    ])
}

/// Every variant with arbitrary fields; `many` is the most functions/refusals one message gets.
fn message(many: usize) -> BoxedStrategy<Message> {
    let hello = (pid(), build_id(), number(), number(), number(), number()).prop_map(
        |(pid, build_id, base, reserve_start, reserve_end, hot_fns)| Message::Hello {
            pid,
            build_id,
            base,
            reserve_start,
            reserve_end,
            hot_fns,
        },
    );
    let patch = (
        number(),
        pid(),
        build_id(),
        number(),
        number(),
        path(),
        vec(fn_rebind(), 0..=many),
    )
        .prop_map(
            |(seq, pid, build_id, addr, len, path, fns)| Message::Patch {
                seq,
                pid,
                build_id,
                addr,
                len,
                path,
                fns,
            },
        );
    let applied = (
        number(),
        number(),
        number(),
        vec((number(), refusal()), 0..=many),
    )
        .prop_map(|(seq, generation, rebound, refused)| Message::Applied {
            seq,
            generation,
            rebound,
            refused,
        });
    let failed = (
        number(),
        prop_oneof![
            3 => any::<String>(),
            1 => Just(String::new()),
            1 => "[ -~\n\t\u{fffd}é€😀]{0,200}",
        ],
    )
        .prop_map(|(seq, reason)| Message::Failed { seq, reason });
    let pending = number().prop_map(|seq| Message::Pending { seq });
    prop_oneof![hello, patch, applied, failed, pending].boxed()
}

/// Pieces of lines: message kinds, numbers, separators, refusal codes, hex, junk.
fn token() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "hello",
        "patch",
        "applied",
        "failed",
        "pending",
        "Hello",
        "PATCH",
        " ",
        " ",
        " ",
        "  ",
        ":",
        "::",
        "\n",
        "\r\n",
        "\t",
        "+",
        "-",
        "0x",
        "unknown",
        "fingerprint",
        "kind",
        "range",
        "é",
        "\u{fffd}",
        "ffffffffffffffff",
        "10000000000000000",
        "100000000",
        "0",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![
        4 => words,
        3 => "[0-9a-fA-F]{1,18}".prop_map(String::into_bytes),
        1 => "[0-9a-f]{1,8}:[0-9a-f]{1,8}(:[0-9a-f]{1,8})?".prop_map(String::into_bytes),
        1 => "[0-9a-f]{1,8}:(unknown|fingerprint|kind|range|x)".prop_map(String::into_bytes),
        1 => vec(odd_byte(), 1..4),
    ]
}

/// Lines that look like messages often enough to reach every branch of the parser: token soup,
/// and a message kind followed by space-separated fields that are mostly well-formed.
fn token_line() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop::sample::select(vec!["hello", "patch", "applied", "failed", "pending"])
        .prop_map(|s| s.as_bytes().to_vec());
    let field = prop_oneof![
        4 => "[0-9a-f]{1,16}".prop_map(String::into_bytes),
        1 => "[+-]?[0-9a-fA-F]{0,17}".prop_map(String::into_bytes),
        1 => "([0-9a-f]{2}){1,8}".prop_map(String::into_bytes),
        2 => "[0-9a-f]{1,16}:[0-9a-f]{1,16}:[0-9a-f]{1,16}".prop_map(String::into_bytes),
        2 => "[0-9a-f]{1,16}:(unknown|fingerprint|kind|range)".prop_map(String::into_bytes),
        1 => "[!-~]{1,130}".prop_map(String::into_bytes),
        1 => Just(Vec::new()),
        1 => token(),
    ];
    prop_oneof![
        1 => vec(token(), 0..40).prop_map(|ts| ts.concat()),
        1 => (kind, vec(field, 0..12), prop::option::of(Just(b"\n".to_vec()))).prop_map(
            |(kind, fields, newline)| {
                let mut line = kind;
                for f in fields {
                    line.push(b' ');
                    line.extend(f);
                }
                line.extend(newline.unwrap_or_default());
                line
            }
        ),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Duplicate(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), odd_byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), prop_oneof![vec(odd_byte(), 1..6), token()])
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..24).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut line: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = line.len();
        // Positions in 0..len (edits) or 0..=len (insertion points).
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        let point = |i: &Index| i.index(len + 1);
        match m {
            Mutation::Flip(i, bit) if len > 0 => line[at(i)] ^= 1 << bit,
            Mutation::Set(i, b) if len > 0 => line[at(i)] = *b,
            Mutation::Insert(i, bytes) => {
                let p = point(i);
                line.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let p = at(i);
                line.drain(p..(p + n).min(len));
            }
            Mutation::Duplicate(i, n) if len > 0 => {
                let p = at(i);
                let chunk = line[p..(p + n).min(len)].to_vec();
                line.splice(p..p, chunk);
            }
            Mutation::Truncate(i) => line.truncate(point(i)),
            _ => {}
        }
    }
    line
}

// --- properties -----------------------------------------------------------------------------

#[test]
fn arbitrary_bytes_never_panic() {
    let lines = prop_oneof![
        2 => vec(any::<u8>(), 0..256),
        1 => vec(odd_byte(), 0..256),
        4 => token_line(),
        // A valid message with junk after it, and junk before a valid message.
        1 => (message(8), vec(odd_byte(), 0..16)).prop_map(|(m, junk)| {
            let mut line = m.encode().into_bytes();
            line.extend(junk);
            line
        }),
        1 => (vec(odd_byte(), 0..16), message(8)).prop_map(|(mut junk, m)| {
            junk.extend(m.encode().into_bytes());
            junk
        }),
    ];
    run("arbitrary bytes", cases(4000, 1), lines, |line| {
        parse_any(&line)
    });
}

#[test]
fn valid_messages_round_trip() {
    run("round trip", cases(2000, 1), message(64), |m| {
        let line = m.encode();
        prop_assert!(!line.contains('\n'), "encoded line has a newline: {line:?}");
        prop_assert_eq!(parse_bounded(line.as_bytes()), Ok(m.clone()), "{}", line);
        let with_newline = format!("{line}\n");
        prop_assert_eq!(parse_bounded(with_newline.as_bytes()), Ok(m), "{}", line);
        Ok(())
    });
}

#[test]
fn mutated_messages_never_panic() {
    let mutated = (message(16), vec(mutation(), 1..8))
        .prop_map(|(m, muts)| mutate(m.encode().into_bytes(), &muts));
    run("mutations", cases(4000, 1), mutated, |line| {
        parse_any(&line)
    });
}

/// Messages with thousands of functions, up to and past `MAX_LINE`: they round-trip when their
/// encoding fits and are refused, without a panic, when it does not.
#[test]
fn many_functions_round_trip_or_refuse() {
    run("many functions", cases(12, 128), message(24_000), |m| {
        let line = m.encode();
        match parse_bounded(line.as_bytes()) {
            Ok(back) => {
                prop_assert!(line.len() <= MAX_LINE);
                prop_assert_eq!(back, m);
            }
            Err(e) => prop_assert!(
                line.len() > MAX_LINE,
                "{}-byte line refused: {}",
                line.len(),
                e
            ),
        }
        Ok(())
    });
}

/// Lines at the limits: around `MAX_LINE` bytes, around `MAX_FNS` functions or refusals, long
/// hex fields, megabytes of non-UTF-8 and of newlines.
#[test]
fn lines_at_the_limits() {
    #[derive(Debug, Clone)]
    enum Long {
        /// `patch` or `applied` with `n` minimal entries.
        Entries { applied: bool, n: usize },
        /// A valid line padded to `len` bytes with a trailing function list / hex reason.
        Padded { kind: u8, len: usize },
        /// `len` bytes of one byte value.
        Fill { byte: u8, len: usize },
    }
    let around = |center: usize| (center - 3)..=(center + 3);
    let long = prop_oneof![
        (any::<bool>(), around(MAX_FNS)).prop_map(|(applied, n)| Long::Entries { applied, n }),
        (0u8..3, prop_oneof![around(MAX_LINE), 0..2 * MAX_LINE])
            .prop_map(|(kind, len)| Long::Padded { kind, len }),
        (odd_byte(), prop_oneof![around(MAX_LINE), 0..2 * MAX_LINE])
            .prop_map(|(byte, len)| Long::Fill { byte, len }),
    ];
    let input = (long, vec(mutation(), 0..3));
    run("limits", cases(48, 64), input, |(long, muts)| {
        let line: Vec<u8> = match &long {
            Long::Entries { applied: false, n } => {
                let mut s = b"patch 1 2 id 3 4 41".to_vec();
                s.extend(b" 0:0:0".repeat(*n));
                s
            }
            Long::Entries { applied: true, n } => {
                let mut s = b"applied 1 2 3".to_vec();
                s.extend(b" 0:kind".repeat(*n));
                s
            }
            Long::Padded { kind, len } => {
                let (mut s, unit): (Vec<u8>, &[u8]) = match kind {
                    0 => (b"patch 1 2 id 3 4 41".to_vec(), b" 1:2:3"),
                    1 => (b"failed 1 ".to_vec(), b"41"),
                    _ => (b"patch 1 2 id 3 4 ".to_vec(), b"2f"),
                };
                while s.len() < *len {
                    s.extend_from_slice(unit);
                }
                s.truncate((*len).max(1));
                s
            }
            Long::Fill { byte, len } => vec![*byte; *len],
        };
        let line = if muts.is_empty() {
            line
        } else {
            mutate(line, &muts)
        };
        let parsed = parse_bounded(&line);
        if let (Long::Entries { applied, n }, true) = (&long, muts.is_empty()) {
            // The function and refusal limits are exact.
            match &parsed {
                Ok(Message::Patch { fns, .. }) if !applied => prop_assert_eq!(fns.len(), *n),
                Ok(Message::Applied { refused, .. }) if *applied => {
                    prop_assert_eq!(refused.len(), *n)
                }
                Ok(other) => prop_assert!(false, "parsed as {:?}", std::mem::discriminant(other)),
                Err(_) => prop_assert!(*n > MAX_FNS, "{n} entries refused"),
            }
            prop_assert_eq!(parsed.is_ok(), *n <= MAX_FNS);
        }
        if line.len() > MAX_LINE {
            prop_assert!(parsed.is_err(), "accepted a {}-byte line", line.len());
        }
        match parsed {
            Ok(m) => check_accepted(&line, &m),
            Err(_) => Ok(()),
        }
    });
}
