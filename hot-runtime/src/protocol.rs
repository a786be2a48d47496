//! The control channel between `cargo hot` and the running program.
//!
//! One message per line of ASCII text over an inherited socket (never a path or a port, so no
//! other process can reach it). Text keeps the runtime free of serialization dependencies and
//! makes the channel easy to read in a trace; every field is validated and every line is
//! size-limited, so a malformed line is an error, never a panic.
//!
//! ```text
//! program -> tool   hello <pid> <build-id> <base> <reserve-start> <reserve-end> <n-hot-fns>
//! tool -> program   patch <seq> <pid> <build-id> <addr> <len> <path-hex> [<host-entry>:<patch-entry>:<target>]...
//! program -> tool   applied <seq> <generation> <n-rebound> [<host-entry>:<reason>]...
//! program -> tool   failed <seq> <reason-hex>
//! program -> tool   pending <seq>
//! tool -> program   keep <path-hex>
//! program -> tool   kept <n-values>
//! ```
//! Numbers in hex are written without `0x`; `<reason>` is a [`Refusal`] code.

use std::fmt::Write as _;

// The contract between `#[hot]` (hot-macros), this runtime and `cargo hot`: what the macro
// emits for each hot fn, which the runtime walks and the tool finds in objects and executables.
// hot-macros cannot depend on this crate (this crate re-exports it), so it spells these names
// out; `tests/tests/runtime.rs` checks that what it emits matches them.

/// Link section holding every hot fn's registry entry (`__start_`/`__stop_` bound it).
pub const REGISTRY_SECTION: &str = "hot_runtime_fns";
/// Link section holding one `Instance` record per compiled copy of a sync hot fn (one per
/// instantiation of a generic fn): `{entry, slot, code, layouts}`, four 8-byte fields written by
/// `__private::instance_slot!` next to the code that reads the slot. `code` is an address inside
/// that copy, so the copy's symbol (`app::f::<u32>`) names the instantiation; `layouts` (at
/// [`INSTANCE_LAYOUTS`]) is the layout hash of its argument and return types, a plain number.
pub const INSTANCE_SECTION: &str = "hot_runtime_instances";
/// Size of one instance record.
pub const INSTANCE_SIZE: u64 = 32;
/// Offset of an instance record's layout hash.
pub const INSTANCE_LAYOUTS: u64 = 24;
/// Name of the static holding a hot fn's registry entry, inside the fn: `f::__HOT_ENTRY`.
pub const ENTRY_STATIC: &str = "__HOT_ENTRY";
/// Name of the static holding a hot fn's slot (its current code), inside the fn.
pub const SLOT_STATIC: &str = "__HOT_SLOT";
/// Demangled-path suffix of a registry entry: the hot fn's path is what comes before it.
pub const ENTRY_SUFFIX: &str = "::__HOT_ENTRY";
/// Demangled-path suffix of a slot.
pub const SLOT_SUFFIX: &str = "::__HOT_SLOT";

/// `Entry::kind` of a plain `fn`: the slot holds the address of a newer copy of the fn itself.
pub const KIND_SYNC: u32 = 0;
/// `Entry::kind` of an `async fn`: the slot holds its boxed-future entry closure.
pub const KIND_ASYNC: u32 = 1;

/// Longest line either side accepts (a patch naming thousands of functions still fits).
pub const MAX_LINE: usize = 1 << 20;
/// Most functions one patch may rebind.
pub const MAX_FNS: usize = 65_536;

/// Why one function of a patch was not rebound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The host has no hot function with that identity.
    UnknownFunction,
    /// Signature or argument layout differs from the running code.
    FingerprintDiffers,
    /// Sync/async flavour differs.
    KindDiffers,
    /// An address of the patch lies outside the loaded patch.
    OutOfPatch,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Refusal::UnknownFunction => "unknown",
            Refusal::FingerprintDiffers => "fingerprint",
            Refusal::KindDiffers => "kind",
            Refusal::OutOfPatch => "range",
        }
    }
    fn from_code(s: &str) -> Option<Self> {
        Some(match s {
            "unknown" => Refusal::UnknownFunction,
            "fingerprint" => Refusal::FingerprintDiffers,
            "kind" => Refusal::KindDiffers,
            "range" => Refusal::OutOfPatch,
            _ => return None,
        })
    }
    /// What to tell the user.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::UnknownFunction => "not a hot function of the running program",
            Refusal::FingerprintDiffers => "signature or argument layout changed",
            Refusal::KindDiffers => "changed between `fn` and `async fn`",
            Refusal::OutOfPatch => "address outside the patch",
        }
    }
}

/// One function of a patch: which host function, the patch's own registry entry, the new code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FnRebind {
    pub host_entry: u64,
    pub patch_entry: u64,
    pub target: u64,
}

/// A message on the control channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello {
        pid: u32,
        build_id: String,
        base: u64,
        reserve_start: u64,
        reserve_end: u64,
        hot_fns: u64,
    },
    Patch {
        seq: u64,
        pid: u32,
        build_id: String,
        addr: u64,
        len: u64,
        path: Vec<u8>,
        fns: Vec<FnRebind>,
    },
    Applied {
        seq: u64,
        generation: u64,
        rebound: u64,
        refused: Vec<(u64, Refusal)>,
    },
    Failed {
        seq: u64,
        reason: String,
    },
    Pending {
        seq: u64,
    },
    /// Before a restart: write the program's `kept!` values to `path` (a file in the private
    /// patch directory) for the next run.
    Keep {
        path: Vec<u8>,
    },
    /// How many `kept!` values were written.
    Kept {
        count: u64,
    },
}

/// A line that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad control message: {}", self.0)
    }
}
impl std::error::Error for ProtocolError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

fn hex_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hex_decode(s: &str) -> Result<Vec<u8>, ProtocolError> {
    if s.len() % 2 != 0 || s.len() > MAX_LINE {
        return err("odd-length hex string");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ProtocolError("bad hex string".into()))
        })
        .collect()
}

fn num(s: Option<&str>, what: &str) -> Result<u64, ProtocolError> {
    let s = s.ok_or_else(|| ProtocolError(format!("missing {what}")))?;
    if s.is_empty() || s.len() > 16 {
        return err(format!("bad {what}"));
    }
    u64::from_str_radix(s, 16).map_err(|_| ProtocolError(format!("bad {what}: {s:?}")))
}

/// A hex-encoded, non-empty path.
fn path_field(s: Option<&str>) -> Result<Vec<u8>, ProtocolError> {
    let path = hex_decode(s.ok_or_else(|| ProtocolError("missing path".into()))?)?;
    if path.is_empty() {
        return err("empty path");
    }
    Ok(path)
}

fn word<'a>(s: Option<&'a str>, what: &str) -> Result<&'a str, ProtocolError> {
    match s {
        Some(w) if !w.is_empty() && w.len() <= 128 && w.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(w)
        }
        _ => err(format!("bad {what}")),
    }
}

impl Message {
    /// The line for this message, without the trailing newline.
    pub fn encode(&self) -> String {
        match self {
            Message::Hello {
                pid,
                build_id,
                base,
                reserve_start,
                reserve_end,
                hot_fns,
            } => format!(
                "hello {pid:x} {build_id} {base:x} {reserve_start:x} {reserve_end:x} {hot_fns:x}"
            ),
            Message::Patch {
                seq,
                pid,
                build_id,
                addr,
                len,
                path,
                fns,
            } => {
                let mut s = format!(
                    "patch {seq:x} {pid:x} {build_id} {addr:x} {len:x} {}",
                    hex_encode(path)
                );
                for f in fns {
                    let _ = write!(s, " {:x}:{:x}:{:x}", f.host_entry, f.patch_entry, f.target);
                }
                s
            }
            Message::Applied {
                seq,
                generation,
                rebound,
                refused,
            } => {
                let mut s = format!("applied {seq:x} {generation:x} {rebound:x}");
                for (e, r) in refused {
                    let _ = write!(s, " {e:x}:{}", r.code());
                }
                s
            }
            Message::Failed { seq, reason } => {
                format!("failed {seq:x} {}", hex_encode(reason.as_bytes()))
            }
            Message::Pending { seq } => format!("pending {seq:x}"),
            Message::Keep { path } => format!("keep {}", hex_encode(path)),
            Message::Kept { count } => format!("kept {count:x}"),
        }
    }

    /// Parses one line (with or without its newline).
    pub fn parse(line: &[u8]) -> Result<Message, ProtocolError> {
        if line.len() > MAX_LINE {
            return err("line too long");
        }
        let line = std::str::from_utf8(line).map_err(|_| ProtocolError("not UTF-8".into()))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut it = line.split(' ');
        let kind = it.next().unwrap_or("");
        let msg = match kind {
            "hello" => Message::Hello {
                pid: u32::try_from(num(it.next(), "pid")?)
                    .map_err(|_| ProtocolError("bad pid".into()))?,
                build_id: word(it.next(), "build id")?.to_string(),
                base: num(it.next(), "base")?,
                reserve_start: num(it.next(), "reservation start")?,
                reserve_end: num(it.next(), "reservation end")?,
                hot_fns: num(it.next(), "function count")?,
            },
            "patch" => {
                let seq = num(it.next(), "sequence number")?;
                let pid = u32::try_from(num(it.next(), "pid")?)
                    .map_err(|_| ProtocolError("bad pid".into()))?;
                let build_id = word(it.next(), "build id")?.to_string();
                let addr = num(it.next(), "address")?;
                let len = num(it.next(), "length")?;
                let path = path_field(it.next())?;
                let mut fns = Vec::new();
                for f in it.by_ref() {
                    if fns.len() >= MAX_FNS {
                        return err("too many functions");
                    }
                    let mut p = f.split(':');
                    let host_entry = num(p.next(), "host entry")?;
                    let patch_entry = num(p.next(), "patch entry")?;
                    let target = num(p.next(), "target")?;
                    if p.next().is_some() {
                        return err("bad function triple");
                    }
                    fns.push(FnRebind {
                        host_entry,
                        patch_entry,
                        target,
                    });
                }
                Message::Patch {
                    seq,
                    pid,
                    build_id,
                    addr,
                    len,
                    path,
                    fns,
                }
            }
            "applied" => {
                let seq = num(it.next(), "sequence number")?;
                let generation = num(it.next(), "generation")?;
                let rebound = num(it.next(), "rebound count")?;
                let mut refused = Vec::new();
                for f in it.by_ref() {
                    if refused.len() >= MAX_FNS {
                        return err("too many refusals");
                    }
                    let (e, r) = f
                        .split_once(':')
                        .ok_or_else(|| ProtocolError("bad refusal".into()))?;
                    let r = Refusal::from_code(r)
                        .ok_or_else(|| ProtocolError("unknown refusal".into()))?;
                    refused.push((num(Some(e), "entry")?, r));
                }
                Message::Applied {
                    seq,
                    generation,
                    rebound,
                    refused,
                }
            }
            "failed" => {
                let seq = num(it.next(), "sequence number")?;
                let reason = hex_decode(it.next().unwrap_or(""))?;
                Message::Failed {
                    seq,
                    reason: String::from_utf8_lossy(&reason).into_owned(),
                }
            }
            "keep" => {
                let path = path_field(it.next())?;
                Message::Keep { path }
            }
            "kept" => Message::Kept {
                count: num(it.next(), "value count")?,
            },
            "pending" => Message::Pending {
                seq: num(it.next(), "sequence number")?,
            },
            _ => {
                return err(format!(
                    "unknown message kind {:?}",
                    kind.chars().take(16).collect::<String>()
                ));
            }
        };
        if it.next().is_some() {
            return err("trailing fields");
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        let line = m.encode();
        assert_eq!(Message::parse(line.as_bytes()).unwrap(), m, "{line}");
    }

    #[test]
    fn messages_round_trip() {
        round_trip(Message::Hello {
            pid: 42,
            build_id: "abc123".into(),
            base: 0x5555_0000_0000,
            reserve_start: 0x5515_0000_0000,
            reserve_end: 0x5555_0000_0000,
            hot_fns: 3,
        });
        round_trip(Message::Patch {
            seq: 7,
            pid: 42,
            build_id: "abc123".into(),
            addr: 0x1000,
            len: 0x2000,
            path: b"/tmp/x y/patch-1.so".to_vec(),
            fns: vec![FnRebind {
                host_entry: 1,
                patch_entry: 2,
                target: 3,
            }],
        });
        round_trip(Message::Applied {
            seq: 1,
            generation: 2,
            rebound: 3,
            refused: vec![(9, Refusal::FingerprintDiffers)],
        });
        round_trip(Message::Failed {
            seq: 1,
            reason: "dlopen: no such file".into(),
        });
        round_trip(Message::Pending { seq: 5 });
        round_trip(Message::Keep {
            path: b"/tmp/x/kept-1.json".to_vec(),
        });
        round_trip(Message::Kept { count: 3 });
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            &b""[..],
            b"hello",
            b"hello 1 x 2 3 4",
            b"hello zz id 1 2 3 4",
            b"patch 1 2 id 3 4 0g",
            b"patch 1 2 id 3 4 41 1:2",
            b"patch 1 2 id 3 4 41 1:2:3:4",
            b"applied 1 2 3 9:nope",
            b"failed 1 abc",
            b"pending 1 extra",
            b"\xff\xfe",
            b"hello 1 id 2 3 4 5 6",
            b"patch 1 100000000 id 3 4 41",
        ] {
            assert!(
                Message::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(Message::parse(&vec![b'a'; MAX_LINE + 1]).is_err());
    }
}
