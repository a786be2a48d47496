#!/usr/bin/env python3
"""examples/server under load while patches land, side by side with a restart cycle.

Starts examples/server under `cargo hot run` (release-built cargo hot, debug-built server as
users run it), drives it with wrk on loopback, and measures three phases of equal length:
before any patch, while PATCHES patches of the `hello` handler land, and after. Reports
requests/s and failed requests (socket errors + non-2xx) per phase, and save -> first response
with the new body for each patch (a separate poller measures it, every 2 ms). Then the same edit
handled by cargo build + kill + restart, timed to the first response with the new body.

usage: python3 bench/under_load.py [SECONDS_PER_PHASE=10] [PATCHES=20] [--pin] [--tool PATH]
  --pin  cargo hot and rustc on CPU 1, the server and wrk on CPU 0: separates what patching
         costs the server from the compiler competing with it for the same two cores
  --tool PATH  that cargo-hot binary instead of this tree's release build (to compare two
         builds of the tool, alternating runs)
needs: wrk (Debian: apt-get install wrk)
"""
import http.client, os, re, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from patch_latency import Proc, REPO, free_port, pct, save  # noqa: E402

PIN = "--pin" in sys.argv
# `--tool PATH`: that cargo-hot binary instead of this tree's release build (to compare builds
# of the tool side by side, alternating runs).
TOOL = sys.argv[sys.argv.index("--tool") + 1] if "--tool" in sys.argv else None
CPU0 = ["taskset", "-c", "0"] if PIN else []

def wrk(port, secs):
    r = subprocess.run(CPU0 + ["wrk", "-t1", "-c16", f"-d{secs}s", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", r).group(1))
    total = int(re.search(r"(\d+) requests in", r).group(1))
    failed = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", r)
    if m:
        failed += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", r)
    if m:
        failed += int(m.group(1))
    return rps, total, failed

class Poller:
    """GETs / every 2 ms on its own connection; records (time, body)."""
    def __init__(self, port):
        self.port, self.seen, self.stop_ = port, [], False
        threading.Thread(target=self.run, daemon=True).start()
    def run(self):
        c = None
        while not self.stop_:
            try:
                c = c or http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/")
                body = c.getresponse().read().decode()
                self.seen.append((time.monotonic(), body))
            except Exception:
                c = None
            time.sleep(0.002)
    def wait_for(self, needle, since, timeout=60):
        # Scan only responses newer than `since` (the list grows by ~500 a second; rescanning
        # it all every 2 ms would make the harness itself a CPU load in the measured phase).
        i = len(self.seen)
        while i > 0 and self.seen[i - 1][0] >= since:
            i -= 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while i < len(self.seen):
                t, b = self.seen[i]
                i += 1
                if needle in b:
                    return t
            time.sleep(0.002)
        raise SystemExit(f"timeout waiting for a response containing {needle!r}")

def copy_server(tree, prefix):
    """A copy of TREE's examples/server in a temp dir, standalone (its own workspace, TREE's
    hot-runtime). Its `[package.metadata.hot]` (the port cargo hot would hold) is dropped: the
    benchmarks pick a free port and pass `--listen` themselves when they want one held."""
    dst = os.path.join(tempfile.mkdtemp(prefix=prefix), "server")
    shutil.copytree(os.path.join(tree, "examples", "server"), dst, ignore=shutil.ignore_patterns("target"))
    manifest = os.path.join(dst, "Cargo.toml")
    text = open(manifest).read().replace("../../hot-runtime", os.path.join(tree, "hot-runtime"))
    lines = text.splitlines(keepends=True)
    cut = next((i for i, l in enumerate(lines) if l.startswith("[package.metadata.hot]")), len(lines))
    while cut > 0 and lines[cut - 1].startswith("#"):
        cut -= 1  # the table's comment goes with it
    text = "".join(lines[:cut])
    open(manifest, "w").write(text + "\n[workspace]\n")
    return dst

def main():
    args = [a for a in sys.argv[1:] if a != "--pin" and a != "--tool" and a != TOOL]
    secs = int(args[0]) if len(args) > 0 else 10
    patches = int(args[1]) if len(args) > 1 else 20
    dst = copy_server(REPO, "cargo-hot-load-")
    work = os.path.dirname(dst)
    path = os.path.join(dst, "src", "main.rs")
    original = open(path).read()
    marker = "hello v1"
    assert marker in original
    if TOOL:
        tool = TOOL
    else:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cargo-hot"], cwd=REPO, check=True)
        tool = os.path.join(REPO, "target", "release", "cargo-hot")
    target = os.path.join(REPO, "target", "bench")
    port = free_port()
    hot = Proc((["taskset", "-c", "1"] if PIN else []) + [tool, "hot", "run", "--color", "never", "--target-dir", target, "--", str(port)], dst)
    hot.wait_for(hot.err, "Watching", time.monotonic() - 1000, timeout=1800)
    _, listening = hot.wait_for(hot.out, "listening", time.monotonic() - 1000)
    if PIN:
        pid = int(listening.split("]")[0].strip("["))
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(pid)], check=True, capture_output=True)
    poller = Poller(port)
    time.sleep(1)

    # Save -> effect without load first: the figure comparable with the restart cycle.
    quiet, split = [], []
    current = marker
    for i in range(patches):
        new = f"hello v1-q{i}"
        time.sleep(0.3)
        t0 = time.monotonic()
        save(path, open(path).read().replace(current, new))
        t1 = poller.wait_for(new, t0)
        _, line = hot.wait_for(hot.err, "Patched", t0)
        quiet.append((t1 - t0) * 1000)
        m = re.search(r"rustc (\d+) ms, link (\d+) ms, load (\d+) ms", line)
        split.append(tuple(int(x) for x in m.groups()))
        current = new
    marker = current

    before = wrk(port, secs)
    lat, during = [], [None]
    def load():
        during[0] = wrk(port, secs)
    th = threading.Thread(target=load)
    th.start()
    t_start = time.monotonic()
    current = marker
    for i in range(patches):
        # Spread the patches over the phase.
        time.sleep(max(0, t_start + (i + 0.2) * secs / patches - time.monotonic()))
        new = f"hello v1-{i}"
        t0 = time.monotonic()
        save(path, open(path).read().replace(current, new))
        t1 = poller.wait_for(new, t0)
        hot.wait_for(hot.err, "Patched", t0)
        lat.append((t1 - t0) * 1000)
        current = new
    th.join()
    after = wrk(port, secs)
    poller.stop_ = True
    hot.stop()
    save(path, original)

    # The restart cycle: cargo build, kill, start, first response with the new body.
    restart = []
    bin_dir = os.path.join(work, "plain-target")
    subprocess.run(["cargo", "build", "-q", "--target-dir", bin_dir], cwd=dst, check=True)
    exe = os.path.join(bin_dir, "debug", "server")
    port2 = free_port()
    prog = Proc([exe, str(port2)], dst)
    prog.wait_for(prog.out, "listening", time.monotonic() - 1000)
    poller = Poller(port2)
    current = "hello v1"
    for i in range(10):
        new = f"hello v1-r{i}"
        time.sleep(0.3)
        t0 = time.monotonic()
        save(path, open(path).read().replace(current, new))
        subprocess.run(["cargo", "build", "-q", "--target-dir", bin_dir], cwd=dst, check=True)
        prog.stop()
        prog = Proc([exe, str(port2)], dst)
        restart.append((poller.wait_for(new, t0) - t0) * 1000)
        current = new
    poller.stop_ = True
    prog.stop()
    shutil.rmtree(work, ignore_errors=True)

    print(f"examples/server, wrk -t1 -c16, {secs} s per phase, {patches} patches during the second"
          + (", server + wrk pinned to CPU 0, cargo hot + rustc to CPU 1" if PIN else ""))
    print("| phase | requests/s | requests | failed |")
    print("|---|---:|---:|---:|")
    for name, (rps, total, failed) in (("before", before), ("during 20 patches", during[0]), ("after", after)):
        print(f"| {name} | {rps:.0f} | {total} | {failed} |")
    dip = 1 - during[0][0] / before[0]
    print(f"throughput dip during patches: {dip * 100:.1f} %")
    # The machine's speed drifts between phases (a shared VM); against the mean of the phases
    # around it, a drift in either direction counts half.
    around = 1 - during[0][0] / ((before[0] + after[0]) / 2)
    print(f"dip against the mean of before and after: {around * 100:.1f} %")
    print("| save -> first response with the new body | p50 ms | p90 ms |")
    print("|---|---:|---:|")
    print(f"| cargo hot, no load | {statistics.median(quiet):.0f} | {pct(quiet, 90):.0f} |")
    for k, name in enumerate(("rustc replay", "rewrite + link", "send + dlopen + rebind")):
        v = [x[k] for x in split]
        print(f"|   {name} | {statistics.median(v):.0f} | {pct(v, 90):.0f} |")
    beyond = [q - x[0] for q, x in zip(quiet, split)]
    print(f"|   everything beyond rustc | {statistics.median(beyond):.0f} | {pct(beyond, 90):.0f} |")
    print(f"| cargo hot, under load (during phase) | {statistics.median(lat):.0f} | {pct(lat, 90):.0f} |")
    print(f"| cargo build + kill + restart (no load) | {statistics.median(restart):.0f} | {pct(restart, 90):.0f} |")
    print(f"ratio cargo hot (no load) / restart (p50): {statistics.median(quiet) / statistics.median(restart):.2f}")
    print(f"beyond-rustc / rustc (p50): {statistics.median(beyond) / statistics.median([x[0] for x in split]):.2f}")

if __name__ == "__main__":
    main()
