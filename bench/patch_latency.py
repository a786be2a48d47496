#!/usr/bin/env python3
"""Save-to-effect latency of cargo hot, measured from outside like a user sees it.

For each of N edits: rename an edited copy of the source over the original (as editors save),
then wait for the first line of program output that only the new body prints. Also collects
cargo hot's own split (rustc / link / load) from its `Patched` lines, and the same edit handled
by `cargo build` + kill + restart (what cargo-watch/bacon do), measured to the restarted program's
first new line.

usage: bench/patch_latency.py FIXTURE_DIR FILE MARKER [N]
  e.g. bench/patch_latency.py tests/fixtures/hello src/main.rs "Hello from hot-patched code!" 20
  FIXTURE_DIR  a crate or workspace using hot-runtime (copied to a temp dir first)
  FILE         source file (relative) containing MARKER inside a #[hot] fn's output
  MARKER       text printed by the hot fn; edits replace it by MARKER-<i>
"""
import os, re, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

class Proc:
    def __init__(self, args, cwd, env=None):
        self.p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.out, self.err = [], []
        for stream, sink in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self.pump, args=(stream, sink), daemon=True).start()
    def pump(self, stream, sink):
        for line in stream:
            sink.append((time.monotonic(), line.rstrip("\n")))
    def wait_for(self, sink, needle, since, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None and not any(needle in l for t, l in sink if t >= since):
                time.sleep(0.2)
                raise SystemExit(f"process exited ({self.p.returncode})\n" + "\n".join(l for _, l in self.err[-30:]))
            for t, l in list(sink):
                if t >= since and needle in l:
                    return t, l
            time.sleep(0.002)
        raise SystemExit(f"timeout waiting for {needle!r}\n" + "\n".join(l for _, l in self.err[-20:]))
    def stop(self):
        try:
            os.killpg(self.p.pid, 15)
        except ProcessLookupError:
            pass
        self.p.wait(timeout=20)

def free_port():
    """A TCP port nothing listens on now (bound once and released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def save(path, text):
    tmp = path + ".bench-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)

def copy_fixture(src, prefix="cargo-hot-bench-"):
    """A copy of the crate or workspace `src` in a fresh temp dir (`<tmp>/ws`), without its
    target dir, standalone: `@REPO@` and `../../hot-runtime` in its manifests point at this
    repository, and its root manifest is a workspace of its own."""
    dst = os.path.join(tempfile.mkdtemp(prefix=prefix), "ws")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("target"))
    for root, _, files in os.walk(dst):
        for f in files:
            if f == "Cargo.toml":
                p = os.path.join(root, f)
                s = open(p).read().replace("@REPO@", REPO)
                s = s.replace("../../hot-runtime", os.path.join(REPO, "hot-runtime"))
                if root == dst and "[workspace]" not in s:
                    s += "\n[workspace]\n"
                open(p, "w").write(s)
    return dst

def main():
    fixture, rel, marker = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    dst = copy_fixture(fixture)
    work = os.path.dirname(dst)
    target = os.path.join(REPO, "target", "bench")
    tool = os.path.join(REPO, "target", "release", "cargo-hot")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "cargo-hot"], cwd=REPO, check=True)
    path = os.path.join(dst, rel)
    original = open(path).read()
    assert marker in original, marker

    hot = Proc([tool, "hot", "run", "--color", "never", "--target-dir", target], dst)
    hot.wait_for(hot.err, "Watching", time.monotonic() - 1000, timeout=900)  # ready: baseline built
    _, running = hot.wait_for(hot.err, "Running `", time.monotonic() - 1000)
    exe_path = running.split("`")[1]
    prog_pid = int(subprocess.run(["pgrep", "-n", "-f", exe_path], capture_output=True, text=True).stdout.split()[0])
    patch_dir = os.path.join(target, "hot", "patches", str(hot.p.pid))
    def rss_kib():
        for line in open(f"/proc/{prog_pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    rss = [(0, rss_kib())]
    totals, rustc, link, load = [], [], [], []
    current = marker
    for i in range(n):
        new = f"{marker}-{i}"
        text = open(path).read().replace(current, new)
        time.sleep(0.3)
        t0 = time.monotonic()
        save(path, text)
        t1, _ = hot.wait_for(hot.out, new, t0)
        _, line = hot.wait_for(hot.err, "Patched", t0)
        totals.append((t1 - t0) * 1000)
        m = re.search(r"rustc (\d+) ms, link (\d+) ms, load (\d+) ms", line)
        rustc.append(int(m.group(1))); link.append(int(m.group(2))); load.append(int(m.group(3)))
        current = new
        if (i + 1) in (1, 10, 100, 300) or i + 1 == n:
            rss.append((i + 1, rss_kib()))
    sizes = [os.path.getsize(os.path.join(patch_dir, f)) for f in os.listdir(patch_dir) if f.endswith(".so")]
    hot.stop()
    save(path, original)

    # The restart cycle users have today: cargo build, kill, start, first new output.
    restart = []
    bin_dir = os.path.join(work, "plain-target")
    subprocess.run(["cargo", "build", "-q", "--target-dir", bin_dir], cwd=dst, check=True)
    exe = [os.path.join(bin_dir, "debug", f) for f in os.listdir(os.path.join(bin_dir, "debug")) if os.access(os.path.join(bin_dir, "debug", f), os.X_OK) and os.path.isfile(os.path.join(bin_dir, "debug", f))][0]
    prog = Proc([exe], dst)
    current = marker
    for i in range(min(n, 10)):
        new = f"{marker}-r{i}"
        text = open(path).read().replace(current, new)
        time.sleep(0.3)
        t0 = time.monotonic()
        save(path, text)
        subprocess.run(["cargo", "build", "-q", "--target-dir", bin_dir], cwd=dst, check=True)
        prog.stop()
        prog = Proc([exe], dst)
        t1, _ = prog.wait_for(prog.out, new, t0)
        restart.append((t1 - t0) * 1000)
        current = new
    prog.stop()
    shutil.rmtree(work, ignore_errors=True)

    def row(name, v):
        print(f"| {name} | {statistics.median(v):.0f} | {pct(v, 90):.0f} |")
    print(f"fixture {os.path.basename(fixture.rstrip('/'))}: {n} patches, {len(restart)} restarts")
    print("| step | p50 ms | p90 ms |")
    print("|---|---:|---:|")
    row("save -> new body running (cargo hot, total)", totals)
    row("  rustc replay", rustc)
    row("  rewrite + link", link)
    row("  send + dlopen + rebind", load)
    beyond = [t - r for t, r in zip(totals, rustc)]
    row("  everything beyond rustc (debounce, diff, link, load)", beyond)
    row("cargo build + kill + restart -> first new output", restart)
    print("| patches applied | program RSS KiB | growth per patch KiB |")
    print("|---:|---:|---:|")
    for k, v in rss:
        print(f"| {k} | {v} | {((v - rss[0][1]) / k) if k else 0:.1f} |")
    print(f"patch .so size: median {statistics.median(sizes) / 1024:.1f} KiB, max {max(sizes) / 1024:.1f} KiB over {len(sizes)} patches")
    print(f"beyond-rustc / rustc (p50): {statistics.median(beyond) / statistics.median(rustc):.2f}")
    print(f"cargo hot / restart (p50): {statistics.median(totals) / statistics.median(restart):.2f}")

if __name__ == "__main__":
    main()
