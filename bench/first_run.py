#!/usr/bin/env python3
"""First-run cost of `cargo hot run` on a project the user has already built.

Copies FIXTURE_DIR to a fresh temp dir (its own `target/`), then:
  1. `cargo build` there: the user's own build (timed);
  2. `cargo hot run` with the tool built from TOOL_REPO, timed from launch to the program's first
     line containing MARKER (the first run: cargo hot's own build in `target/hot`);
  3. the same again (a warm run: nothing to build).
Prints one table row per tool: user build, first run, warm run, and how many crates the first
run compiled (cargo's `Compiling` lines).

usage: bench/first_run.py FIXTURE_DIR MARKER TOOL_REPO [TOOL_REPO ...]
  e.g. bench/first_run.py examples/server "listening on" /tmp/old-tree .
Each TOOL_REPO is a checkout of this repository whose `cargo-hot` is built (release) first.
"""
import os, shutil, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from patch_latency import REPO, copy_fixture  # noqa: E402


def first_line(tool, cwd, marker, timeout=1800):
    """Seconds from launching `cargo hot run` to the program's first MARKER line, and the
    number of crates cargo compiled meanwhile."""
    t0 = time.monotonic()
    p = subprocess.Popen([tool, "hot", "run", "--color", "never"], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    compiled = []
    threading.Thread(target=lambda: [compiled.append(l) for l in p.stderr if "Compiling " in l],
                     daemon=True).start()
    seen = None
    deadline = t0 + timeout
    for line in p.stdout:
        if marker in line:
            seen = time.monotonic() - t0
            break
        if time.monotonic() > deadline:
            break
    os.killpg(p.pid, 15)
    p.wait(timeout=30)
    if seen is None:
        raise SystemExit(f"no {marker!r} from the program")
    return seen, len(compiled)


def main():
    fixture, marker, repos = sys.argv[1], sys.argv[2], sys.argv[3:]
    print(f"`{fixture}`, first line containing {marker!r}")
    print("| tool | user's `cargo build` s | first `cargo hot run` s | crates it compiled | warm run s |")
    print("|---|---:|---:|---:|---:|")
    for repo in map(os.path.abspath, repos):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cargo-hot"], cwd=repo, check=True)
        tool = os.path.join(repo, "target", "release", "cargo-hot")
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                             text=True).stdout.strip()
        ws = copy_fixture(os.path.join(REPO, fixture), "cargo-hot-first-run-")
        t0 = time.monotonic()
        subprocess.run(["cargo", "build", "-q"], cwd=ws, check=True)
        user = time.monotonic() - t0
        first, n = first_line(tool, ws, marker)
        warm, _ = first_line(tool, ws, marker)
        print(f"| {rev} | {user:.1f} | {first:.1f} | {n} | {warm:.1f} |")
        shutil.rmtree(os.path.dirname(ws))


if __name__ == "__main__":
    main()
