#!/usr/bin/env python3
"""What a restart costs examples/server under load: requests lost and downtime per rude edit.

Starts examples/server under `cargo hot run` (release-built cargo hot from TREE, debug-built
server as users run it, a copy of the example in a temp dir), drives it with wrk on loopback for
the whole run, and makes RESTARTS rude edits: each adds a field to the struct `Inner` in
src/main.rs (a layout change, so cargo hot must restart the program; the script checks that it
prints `Restarting`). After each edit it waits until the new program serves and cargo hot watches
again, then lets the load run 3 s more before the next edit.

A separate poller requests `/` every 3 ms, each time on a fresh connection (so refused
connections show), and records every success with the server's `total=` counter; the counter
starting over marks the first response of the new program. Reported per run:
  * wrk's total requests and failed requests (connect, read, write, timeout errors + non-2xx);
  * the poller's failed requests;
  * per restart: save -> `Restarting` (the thin build that finds the edit rude), save -> the new
    program's first response, and the downtime: the gap between the old program's last
    successful response and the new program's first (also the longest gap between successes
    from the save to that response, which includes any stall of the old program while the new
    one builds).

TREE is the cargo-hot source tree to measure (default: this repository), so a git worktree of
an older commit can be measured with the same script:
  git worktree add /work/old 8db4f9e && python3 bench/restart_under_load.py /work/old
It builds TREE's cargo-hot (`cargo build --release -p cargo-hot` in TREE, so TREE's own target
dir), builds the server against TREE's hot-runtime in TREE/target/bench, and uses TREE's
Cargo.lock so both trees run the same dependency versions.

usage: python3 bench/restart_under_load.py [TREE] [RESTARTS=5] [--no-build] [--listen]
  --no-build  use TREE/target/release/cargo-hot as it is
  --listen    cargo hot holds the listening socket across restarts (`--listen ADDR`, the copy of
              the server takes it with `hot_runtime::listener`); needs a tree that has it
needs: wrk (Debian: apt-get install wrk)
Every process it starts is stopped before it exits; all traffic is on 127.0.0.1.
"""
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from patch_latency import REPO, pct, save  # noqa: E402
from under_load import copy_server, free_port  # noqa: E402

SETTLE = 3.0        # seconds of load between a restart being done and the next edit
POLL_EVERY = 0.003  # poller period


class Hot:
    """`cargo hot run` with its stderr kept line by line and its stdout (the server's log, one
    line per request under load) read in big chunks, keeping only the `listening` lines."""

    def __init__(self, args, cwd):
        self.p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True)
        self.err, self.listening = [], []  # (time, line), (time, pid)
        self.lock = threading.Lock()
        threading.Thread(target=self.pump_err, daemon=True).start()
        threading.Thread(target=self.pump_out, daemon=True).start()

    def pump_err(self):
        for line in self.p.stderr:
            self.err.append((time.monotonic(), line.decode(errors="replace").rstrip("\n")))

    def pump_out(self):
        fd, tail = self.p.stdout.fileno(), b""
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            t = time.monotonic()
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            whole, tail = data[:cut], data[cut:]
            if b"listening on" in whole:
                for m in re.finditer(rb"\[(\d+)\] listening on", whole):
                    self.listening.append((t, int(m.group(1))))

    def wait_err(self, needle, since, timeout):
        deadline, i = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            while i < len(self.err):
                t, line = self.err[i]
                i += 1
                if t >= since and needle in line:
                    return t, line
            if self.p.poll() is not None:
                time.sleep(0.2)
                raise SystemExit(f"cargo hot exited ({self.p.returncode}) waiting for {needle!r}\n"
                                 + "\n".join(l for _, l in self.err[-30:]))
            time.sleep(0.005)
        raise SystemExit(f"timeout waiting for {needle!r}\n" + "\n".join(l for _, l in self.err[-30:]))

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=20)
        # cargo hot starts the program in its own process group; it stops it on SIGTERM, but
        # make sure of it for every server process this run saw.
        for _, pid in self.listening:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Poller:
    """GET / every POLL_EVERY s, each on a new connection. `ok` holds (time, total counter),
    `failed` holds (time, kind). A success whose counter is below the previous success's is the
    first response of a new program: `starts` holds its index in `ok`."""

    REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

    def __init__(self, port):
        self.port, self.ok, self.failed, self.starts, self.stop_ = port, [], [], [], False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def one(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return "connect", None
        try:
            s.sendall(self.REQ)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return "read", None
        finally:
            s.close()
        if not data.startswith(b"HTTP/1.1 2"):
            return ("status" if data else "read"), None
        m = re.search(rb"total=(\d+)", data)
        return ("ok", int(m.group(1))) if m else ("body", None)

    def run(self):
        while not self.stop_:
            kind, total = self.one()
            t = time.monotonic()
            if kind == "ok":
                if self.ok and total < self.ok[-1][1]:
                    self.starts.append(len(self.ok))
                self.ok.append((t, total))
            else:
                self.failed.append((t, kind))
            time.sleep(POLL_EVERY)

    def new_program(self, k, timeout):
        """Index in `ok` of the first response of the program started after start number k."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.starts) > k:
                return self.starts[k]
            time.sleep(0.002)
        raise SystemExit("timeout waiting for the new program's first response")


class Others:
    """Samples, every 0.5 s, whether a compiler (cargo, rustc, cc, ld) outside this run's
    session is running: other builds on a shared machine take CPU from the measured one."""

    NAMES = {"cargo", "rustc", "cc", "cc1", "ld", "collect2"}

    def __init__(self, own_sid):
        self.own_sid, self.samples, self.busy, self.stop_ = own_sid, 0, 0, False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop_:
            found = False
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    stat = open(f"/proc/{pid}/stat").read()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                sid = int(stat[stat.rindex(")") + 2:].split()[3])
                if comm in self.NAMES and sid != self.own_sid:
                    found = True
                    break
            self.samples += 1
            self.busy += found
            time.sleep(0.5)


def parse_wrk(out):
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errs = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non-2xx": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            errs[k] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errs["non-2xx"] = int(m.group(1))
    return total, errs


def add_field(text, i):
    head = "struct Inner {\n"
    assert head in text, "examples/server/src/main.rs no longer has `struct Inner`"
    # First field: every later field moves, so the old layout is certainly not the new one.
    return text.replace(head, f"{head}    restart_{i}: AtomicU64,\n", 1)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    tree = os.path.abspath(args[0]) if args else REPO
    n = int(args[1]) if len(args) > 1 else 5
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (Debian: apt-get install wrk)")
    commit = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", tree, "status", "--porcelain", "--", "cargo-hot", "hot-runtime", "hot-macros"],
                           capture_output=True, text=True).stdout.strip()
    if "--no-build" not in sys.argv:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cargo-hot"], cwd=tree, check=True)
    tool = os.path.join(tree, "target", "release", "cargo-hot")
    target = os.path.join(tree, "target", "bench")

    dst = copy_server(tree, "cargo-hot-restart-")
    shutil.copy(os.path.join(tree, "Cargo.lock"), os.path.join(dst, "Cargo.lock"))
    path = os.path.join(dst, "src", "main.rs")
    listen = "--listen" in sys.argv
    if listen:
        bind = """    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
"""
        held = """    let listener = hot_runtime::listener(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
"""
        src = open(path).read()
        if "hot_runtime::listener" not in src:  # older trees: make the copy take the socket
            assert bind in src, "examples/server/src/main.rs no longer binds as this script expects"
            open(path, "w").write(src.replace(bind, held))

    load_start = os.getloadavg()
    port = free_port()
    hot = wrk = poller = others = None
    try:
        hot = Hot([tool, "hot", "run", "--color", "never", "--target-dir", target]
                  + (["--listen", f"127.0.0.1:{port}"] if listen else []) + ["--", str(port)], dst)
        hot.wait_err("Watching", 0, timeout=1800)
        deadline = time.monotonic() + 60
        while not hot.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        if not hot.listening:
            raise SystemExit("the server never printed `listening`")
        poller = Poller(port)
        others = Others(hot.p.pid)
        time.sleep(1)
        # Bounded even if this script dies: wrk stops by itself after this many seconds.
        bound = 120 + n * 300
        wrk = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{bound}s", f"http://127.0.0.1:{port}/"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
        t_load = time.monotonic()
        time.sleep(SETTLE)
        restarts = []
        for i in range(n):
            starts = len(poller.starts)
            t0 = time.monotonic()
            save(path, add_field(open(path).read(), i))
            t_restarting, why = hot.wait_err("Restarting", t0, timeout=300)
            k = poller.new_program(starts, timeout=600)
            t_serving = poller.ok[k][0]
            hot.wait_err("Watching", t0, timeout=120)
            time.sleep(SETTLE)
            # Downtime: last success of the old program -> first of the new one.
            switch_gap = t_serving - poller.ok[k - 1][0]
            window = [t for t, _ in poller.ok if t0 <= t <= t_serving]
            last_before = [t for t, _ in poller.ok if t < t0]
            if last_before:
                window.insert(0, last_before[-1])
            max_gap = max(b - a for a, b in zip(window, window[1:]))
            failed = sum(1 for t, _ in poller.failed if t0 <= t <= t_serving)
            # When the new program's `listening` line reached us (pipe + pump: a few ms late at
            # most), from the old program's last response: stop + start-up up to bind().
            heard = [t for t, _ in hot.listening if t >= t0]
            restarts.append({
                "save_to_restarting_ms": (t_restarting - t0) * 1000,
                "save_to_serving_ms": (t_serving - t0) * 1000,
                "downtime_ms": switch_gap * 1000,
                "max_gap_ms": max_gap * 1000,
                "poller_failed": failed,
                "last_ok_to_listening_ms": (heard[0] - poller.ok[k - 1][0]) * 1000 if heard else None,
                "why": why.split("Restarting", 1)[1].strip(),
            })
        t_end = time.monotonic()
        wrk.send_signal(signal.SIGINT)  # wrk stops and prints its totals
        out = wrk.communicate(timeout=30)[0]
        wrk_rc = wrk.returncode
        wrk = None
        if wrk_rc != 0 or "requests in" not in out:
            raise SystemExit(f"wrk failed ({wrk_rc}):\n{out}")
        total, errs = parse_wrk(out)
    finally:
        if wrk is not None and wrk.poll() is None:
            os.killpg(wrk.pid, signal.SIGKILL)
            wrk.wait()
        if others is not None:
            others.stop_ = True
        if poller is not None:
            poller.stop_ = True
            poller.th.join(timeout=10)
        if hot is not None:
            hot.stop()
        shutil.rmtree(os.path.dirname(dst), ignore_errors=True)
    load_end = os.getloadavg()

    # Gaps between successes with no restart going on: the poller's own resolution under load.
    quiet = [b - a for (a, _), (b, _) in zip(poller.ok, poller.ok[1:]) if t_load <= a and b < t_load + SETTLE]
    failed = sum(errs.values())
    print(f"examples/server under wrk -t1 -c16 (whole run, {t_end - t_load:.0f} s), {n} restarts by "
          f"adding a field to `Inner`; cargo-hot tree {tree} at {commit}"
          + ("; listening socket held by cargo hot (--listen)" if listen else "")
          + (" (with uncommitted changes)" if dirty else ""))
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} (1-minute); "
          f"another build (cargo/rustc/cc/ld not started by this run) was running in "
          f"{others.busy} of {others.samples} samples taken every 0.5 s")
    print(f"wrk: {total} requests, {failed} failed (connect {errs['connect']}, read {errs['read']}, "
          f"write {errs['write']}, timeout {errs['timeout']}, non-2xx {errs['non-2xx']})")
    print(f"poller: {len(poller.ok)} ok, {len(poller.failed)} failed "
          f"(every {POLL_EVERY * 1000:.0f} ms on a new connection; gap between successes with no "
          f"restart: p50 {statistics.median(quiet) * 1000:.1f} ms, max {max(quiet) * 1000:.1f} ms)")
    print("| restart | save -> Restarting ms | save -> new program serving ms | downtime ms | "
          "of which old's last response -> new's `listening` ms | longest gap ms | poller failed |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(restarts):
        ls = r["last_ok_to_listening_ms"]
        print(f"| {i + 1} | {r['save_to_restarting_ms']:.0f} | {r['save_to_serving_ms']:.0f} | "
              f"{r['downtime_ms']:.0f} | {'?' if ls is None else f'{ls:.0f}'} | {r['max_gap_ms']:.0f} | {r['poller_failed']} |")
    down = [r["downtime_ms"] for r in restarts]
    gaps = [r["max_gap_ms"] for r in restarts]
    serve = [r["save_to_serving_ms"] for r in restarts]
    print(f"downtime p50 {statistics.median(down):.0f} ms, max {max(down):.0f} ms; "
          f"longest gap p50 {statistics.median(gaps):.0f} ms, max {max(gaps):.0f} ms; "
          f"save -> serving p50 {statistics.median(serve):.0f} ms, max {max(serve):.0f} ms")
    print(f"reason given: {restarts[0]['why']}")
    print("json: " + json.dumps({"commit": commit, "listen": listen, "requests": total, "failed": failed, "wrk_errors": errs,
                                 "poller_failed": len(poller.failed), "restarts": restarts,
                                 "load": [load_start[0], load_end[0]],
                                 "other_builds": [others.busy, others.samples]}))


if __name__ == "__main__":
    main()
