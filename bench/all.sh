#!/usr/bin/env bash
# Every figure in BENCHMARKS.md, one after the other, printed as the tables BENCHMARKS.md holds
# (about an hour on the 2-core machine with dx installed). Run from anywhere: bash bench/all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench/all.sh needs wrk (Debian: apt-get install wrk)" >&2; exit 1; }
echo "## Call overhead, hot mode (hot-runtime built with its test feature \`hot\`)"
cargo bench -q -p hot-runtime --features hot --bench call_overhead
echo "## Call overhead, plain mode"
cargo bench -q -p hot-runtime --bench call_overhead
echo "## Save -> effect, hello-sized crate"
python3 bench/patch_latency.py tests/fixtures/hello src/main.rs "Hello from hot-patched code!" 20
echo "## Save -> effect, tokio + tracing + serde_json crate"
python3 bench/patch_latency.py tests/fixtures/asyncapp src/main.rs "traced v1" 20
echo "## Memory over 300 patches"
python3 bench/patch_latency.py tests/fixtures/hello src/main.rs "Hello from hot-patched code!" 300
echo "## examples/server under load"
python3 bench/under_load.py 10 20
echo "## Patch work at idle priority: the tool before (9499d5b, nice 19) and after, alternating"
old3=$(mktemp -d)
git worktree add -q --detach "$old3/tree" 9499d5b
(cd "$old3/tree" && CARGO_TARGET_DIR="$old3/target" cargo build -q --release -p cargo-hot)
cargo build -q --release -p cargo-hot
for run in 1 2; do
  python3 bench/under_load.py 10 20 --tool "$old3/target/release/cargo-hot"
  python3 bench/under_load.py 10 20
done
git worktree remove --force "$old3/tree"; rm -rf "$old3"
echo "## Restarts under load: before (8db4f9e: stop, then build) and after (this tree: build, then swap)"
# The before figure needs the old tool: a temporary worktree of 8db4f9e, removed on exit.
old=$(mktemp -d)
git worktree add -q --detach "$old/tree" 8db4f9e
trap 'git worktree remove --force "$old/tree"; rm -rf "$old"' EXIT
python3 bench/restart_under_load.py "$old/tree" 5
python3 bench/restart_under_load.py . 5
python3 bench/restart_under_load.py . 5 --listen
echo "## First run after the user's own build: before (a7df92b: RUSTFLAGS) and after (this tree)"
old2=$(mktemp -d)
git worktree add -q --detach "$old2/tree" a7df92b
trap 'git worktree remove --force "$old/tree"; git worktree remove --force "$old2/tree"; rm -rf "$old" "$old2"' EXIT
python3 bench/first_run.py examples/server "listening on" "$old2/tree" .
python3 bench/first_run.py tests/fixtures/ecs "mood=calm" "$old2/tree" .
echo "## Call overhead in a user's hot loop, under cargo hot run --release"
cargo build -q --release -p cargo-hot
python3 - <<'PY'
import os, subprocess
p = subprocess.Popen(["../../target/release/cargo-hot", "hot", "run", "--release", "--color", "never"],
                     cwd="bench/call_loop", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                     text=True, start_new_session=True)
for line in p.stdout:
    print(line, end="")
    if "call-loop done" in line:
        break
os.killpg(p.pid, 15)
p.wait()
PY
echo "## Side by side with dx serve --hotpatch"
if command -v dx >/dev/null; then
  for w in hello asyncapp axum libbin ecs; do python3 bench/vs_dx.py "$w" 20; done
else
  echo "dx not installed: cargo install dioxus-cli --version 0.7.10 --locked"
fi
