#!/usr/bin/env python3
"""cargo hot against `dx serve --hotpatch` (dioxus-cli 0.7.10, subsecond), side by side.

Runs the same program twice at once: tests/fixtures/WORKLOAD under `cargo hot run`, and
bench/dx/WORKLOAD (the same code, joined to subsecond with `dioxus_devtools::connect_subsecond()`
and `subsecond::call` around the hot calls) under `dx serve --hotpatch`. Then, N times, it saves
an edit to cargo hot's copy and waits for the program's first line showing it, then the same edit
to dx's copy, alternating, so both see the same machine state. Save -> first new line, p50/p90.
Also the first run of each (launch -> first program line; dx builds in its own target dir).

usage: bench/vs_dx.py WORKLOAD [N]     WORKLOAD: hello | asyncapp
needs: dx 0.7.10 (`cargo install dioxus-cli --version 0.7.10 --locked`, about 25 minutes)
Not part of `cargo test`.
"""
import os, shutil, statistics, subprocess, sys, tempfile, threading, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = {
    # file, marker printed by the hot code, line to wait for (contains the edited marker)
    "hello": ("src/main.rs", "Hello from hot-patched code!"),
    "asyncapp": ("src/main.rs", "traced v1"),
}


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Proc:
    def __init__(self, args, cwd):
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True)
        self.lines = []
        threading.Thread(target=self.pump, daemon=True).start()

    def pump(self):
        for line in self.p.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, needle, since, timeout):
        deadline = time.monotonic() + timeout
        # Only the lines from `since` on, each looked at once: the programs print hundreds of
        # lines a second, and a slow reader would block them on a full pipe.
        i = len(self.lines)
        while i > 0 and self.lines[i - 1][0] >= since:
            i -= 1
        while time.monotonic() < deadline:
            n = len(self.lines)
            for t, l in self.lines[i:n]:
                if needle in l:
                    return t
            i = n
            if self.p.poll() is not None:
                break
            time.sleep(0.002)
        notes = [l for _, l in self.lines if "atch" in l or "rror" in l or "uild" in l]
        tail = "\n".join(notes[-10:] + [l for _, l in self.lines[-5:]])
        raise SystemExit(f"no {needle!r} within {timeout}s\n{tail}")

    def stop(self):
        try:
            os.killpg(self.p.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, 9)


def copy(src, name):
    dst = os.path.join(tempfile.mkdtemp(prefix=f"vs-dx-{name}-"), "ws")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("target"))
    p = os.path.join(dst, "Cargo.toml")
    text = open(p).read().replace("@REPO@", REPO)
    open(p, "w").write(text)
    return dst


def save(path, text):
    # In place, as VS Code saves: dx reacts to the temporary file of a write + rename save and
    # then builds the old text (seen on this workload), which would not be a fair figure.
    with open(path, "w") as f:
        f.write(text)


def main():
    workload = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rel, marker = WORKLOADS[workload]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "cargo-hot"], cwd=REPO, check=True)
    tool = os.path.join(REPO, "target", "release", "cargo-hot")
    ours = copy(os.path.join(REPO, "tests", "fixtures", workload), "hot")
    theirs = copy(os.path.join(REPO, "bench", "dx", workload), "dx")
    # Each builds its dependencies once in its own target dir (not timed as a patch).
    hot = Proc([tool, "hot", "run", "--color", "never"], ours)
    first_hot = hot.wait_for(marker, 0, 1800) - hot.t0
    hot.wait_for("Watching", 0, 600)
    dx = Proc(["dx", "serve", "--hotpatch", "--interactive", "false"], theirs)
    first_dx = dx.wait_for(marker, 0, 1800) - dx.t0
    time.sleep(3)
    times = {"cargo hot": [], "dx": []}
    texts = {ours: open(os.path.join(ours, rel)).read(), theirs: open(os.path.join(theirs, rel)).read()}
    for i in range(1, n + 1):
        for name, proc, ws in (("cargo hot", hot, ours), ("dx", dx, theirs)):
            new = f"{marker} e{i}."
            text = texts[ws].replace(marker, new, 1)
            t = time.monotonic()
            save(os.path.join(ws, rel), text)
            seen = proc.wait_for(new, t, 120)
            times[name].append((seen - t) * 1000)
            time.sleep(1.0)
    hot.stop()
    dx.stop()
    print(f"`{workload}`, {n} edits each, alternating (save -> first line of the new code):")
    print("| tool | first run s | p50 ms | p90 ms |")
    print("|---|---:|---:|---:|")
    for name, first in (("cargo hot", first_hot), ("dx serve --hotpatch", first_dx)):
        v = times["cargo hot" if name == "cargo hot" else "dx"]
        print(f"| {name} | {first:.1f} | {statistics.median(v):.0f} | {pct(v, 90):.0f} |")
    ratio = statistics.median(times["cargo hot"]) / statistics.median(times["dx"])
    print(f"cargo hot / dx, p50: {ratio:.2f}")


if __name__ == "__main__":
    main()
