#!/usr/bin/env python3
"""cargo hot against `dx serve --hotpatch` (dioxus-cli 0.7.10, subsecond), side by side.

Runs the same program twice at once, from two copies of bench/dx/WORKLOAD: one under
`cargo hot run`, one under `dx serve --hotpatch`. The program is joined to both: `#[hot]` on the
edited fn (cargo hot patches it; in dx's plain build it is the fn as written) and
`dioxus_devtools::connect_subsecond()` + `subsecond::call` around its calls (dx patches those;
with no dx to connect to they are plain calls). The edited fn is a sync fn: subsecond swaps the
fns it calls, while a future keeps running the code it was made with. Then, N times, it saves
the same edit to cargo hot's copy and waits for the program to show it, then to dx's copy,
alternating, so both see the same machine state. Save -> first output line (or HTTP response)
of the new code, p50/p90. Also the first run of each (launch -> first output; each builds in
its own target dir).

usage: bench/vs_dx.py WORKLOAD [N]     WORKLOAD: hello | asyncapp | axum | libbin | ecs
needs: dx 0.7.10 (`cargo install dioxus-cli --version 0.7.10 --locked`, about 25 minutes)
Not part of `cargo test`.
"""
import http.client, os, statistics, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from patch_latency import REPO, copy_fixture, free_port, pct  # noqa: E402
WORKLOADS = {
    # file, marker the new code shows (the edit appends to it), how the program shows it:
    # "out" = a line of its output, "http" = the body of `GET /` (port in $BENCH_PORT)
    "hello": ("src/main.rs", "Hello from hot-patched code!", "out"),
    "asyncapp": ("src/main.rs", "traced v1", "out"),
    "axum": ("src/main.rs", "hello v1", "http"),
    # a lib + bin package: the edit is in the library
    "libbin": ("src/lib.rs", "Hello from the library", "out"),
    # a Bevy-shaped app (bevy_ecs + bevy_app): the edit is in a system
    "ecs": ("src/main.rs", "mood=calm", "out"),
}


class Proc:
    def __init__(self, args, cwd, env=None):
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True,
                                  env=None if env is None else {**os.environ, **env})
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

    def wait_http(self, port, needle, since, timeout):
        """The time of the first `GET /` answered with `needle` in its body, polling every 2 ms."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/")
                body = c.getresponse().read().decode()
                c.close()
                if needle in body:
                    return time.monotonic()
            except OSError:
                pass
            if self.p.poll() is not None:
                break
            time.sleep(0.002)
        return self.wait_for(needle, since, 0)  # reports what the tool said

    def stop(self):
        try:
            os.killpg(self.p.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, 9)


def save(path, text):
    # In place, as VS Code saves: dx reacts to the temporary file of a write + rename save and
    # then builds the old text (seen on this workload), which would not be a fair figure.
    with open(path, "w") as f:
        f.write(text)


def main():
    workload = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rel, marker, shows = WORKLOADS[workload]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "cargo-hot"], cwd=REPO, check=True)
    tool = os.path.join(REPO, "target", "release", "cargo-hot")
    src = os.path.join(REPO, "bench", "dx", workload)
    ours, theirs = copy_fixture(src, "vs-dx-hot-"), copy_fixture(src, "vs-dx-dx-")
    ports = {ours: free_port(), theirs: free_port()}
    # Each builds its dependencies once in its own target dir (not timed as a patch).
    hot = Proc([tool, "hot", "run", "--color", "never"], ours, {"BENCH_PORT": str(ports[ours])})
    dx = Proc(["dx", "serve", "--hotpatch", "--interactive", "false"], theirs,
              {"BENCH_PORT": str(ports[theirs])})

    def shown(proc, ws, needle, since, timeout):
        if shows == "http":
            return proc.wait_http(ports[ws], needle, since, timeout)
        return proc.wait_for(needle, since, timeout)

    # Both tools and their programs stop whatever happens (they run in sessions of their own).
    try:
        first_hot = shown(hot, ours, marker, 0, 1800) - hot.t0
        hot.wait_for("Watching", 0, 600)
        first_dx = shown(dx, theirs, marker, 0, 1800) - dx.t0
        time.sleep(3)
        times = {"cargo hot": [], "dx": []}
        # A tool that does not show an edit within 120 s is not given more of them; what it said
        # is kept for the report.
        failed = {}
        texts = {ours: open(os.path.join(ours, rel)).read(), theirs: open(os.path.join(theirs, rel)).read()}
        for i in range(1, n + 1):
            for name, proc, ws in (("cargo hot", hot, ours), ("dx", dx, theirs)):
                if name in failed:
                    continue
                new = f"{marker} e{i}."
                text = texts[ws].replace(marker, new, 1)
                t = time.monotonic()
                save(os.path.join(ws, rel), text)
                try:
                    seen = shown(proc, ws, new, t, 120)
                except SystemExit as e:
                    failed[name] = f"edit {i} not shown within 120 s; last lines:\n{e}"
                    continue
                times[name].append((seen - t) * 1000)
                time.sleep(1.0)
    finally:
        hot.stop()
        dx.stop()
    print(f"`{workload}`, {n} edits each, alternating (save -> the new code's first "
          + ("response" if shows == "http" else "output line") + "):")
    print("| tool | first run s | p50 ms | p90 ms |")
    print("|---|---:|---:|---:|")
    for name, first in (("cargo hot", first_hot), ("dx serve --hotpatch", first_dx)):
        v = times["cargo hot" if name == "cargo hot" else "dx"]
        if v:
            print(f"| {name} | {first:.1f} | {statistics.median(v):.0f} | {pct(v, 90):.0f} |")
        else:
            print(f"| {name} | {first:.1f} | not shown | not shown |")
    if times["cargo hot"] and times["dx"] and not failed:
        ratio = statistics.median(times["cargo hot"]) / statistics.median(times["dx"])
        print(f"cargo hot / dx, p50: {ratio:.2f}")
    for name, why in failed.items():
        print(f"{name}: {why}")


if __name__ == "__main__":
    main()
