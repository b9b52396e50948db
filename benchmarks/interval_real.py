#!/usr/bin/env python3
"""Real CPU per interval of `top -b`, `daemon` and `record` next to N
live processes, with about 5, about 600 or all N active per interval.

Spawns N processes with benchmarks/top_frame.py's swarm, at one level
of activity at a time:

    idle    5 make a syscall every 0.4-0.6 s; the rest are blocked in a
            read of a pipe (live, but no syscall returns)
    sparse  each makes a syscall every 8-12 s: ~10% active in a second
    active  each makes one every 0.4-0.6 s: all N active in a second

and, next to each, runs each tool in a process of its own, one after
the other, with a 1 s interval (-i):

    top     sysretstat top -b -i 1 (20 rows of text per interval,
            stdout to a file, COLUMNS=80)
    daemon  sysretstat daemon -i 1 --listen 127.0.0.1:PORT (a snapshot,
            its delta and the published counters every interval; HTTP
            renders only when asked, so unscraped)
    scraped the same daemon, /metrics fetched once per interval (the
            worst case of a Prometheus scrape; its rendering counts)
    record  sysretstat record -q -i 1 -o FILE

The tool's CPU (all its threads, user and system: the kernel's time in
its map reads counts) is read every 10 ms from outside, from its
process CPU clock (clock_gettime of the pid's CPUCLOCK, nanoseconds;
utime+stime of /proc/PID/stat, in ticks, is printed beside it as a
check).  Intervals 1 and 2 (start-up, BPF load, the first snapshot,
first imports) are left out: the window runs from the end of interval 2
to the end of interval -n, cut at the quiet moment of each interval
(the phase of the 1 s grid where the tool uses least CPU, so that an
interval's work is never split).  Printed per tool and level: mean and
median CPU per interval over the window, and the range.

Usage (root, BPF; next to other BPF jobs take their lock):
    sudo flock /tmp/bpf-tests.lock python3 benchmarks/interval_real.py \\
        [-n 5000] [-i 12] [--levels idle,sparse,active] \\
        [--tools top,daemon,scraped,record] [--repeat 1] [--json FILE]
About 20 s per tool and level with -i 12, plus the spawns.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import top_frame  # noqa: E402

LEVELS = ("idle", "sparse", "active")
TOOLS = ("top", "daemon", "scraped", "record")
SAMPLE_S = 0.01
TICKS = os.sysconf("SC_CLK_TCK")


class Stop(Exception):
    """SIGTERM or SIGHUP to this script: clean up as for ^C."""


def _stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def cpu_clock(pid):
    """The clock id of process `pid`'s CPU time (all its threads, live
    and exited): glibc's clock_getcpuclockid, MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)."""
    return ((~pid) << 3) | 2


def stat_ticks(pid):
    """utime + stime of /proc/PID/stat, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def gone(pgid, most=60):
    """Wait until the swarm's processes are reaped (PID 1 reaps them,
    here in seconds), so that the next level starts among N, not 2N."""
    end = time.monotonic() + most
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """One tool process: its command, a way to know its first tick, and
    the CPU trace taken while it runs."""

    def __init__(self, tool, tmp, interval, intervals):
        self.tool = tool
        self.interval = interval
        self.intervals = intervals
        self.out = os.path.join(tmp, "%s.out" % tool)
        self.err = os.path.join(tmp, "%s.err" % tool)
        self.port = None
        self.data = None
        base = [sys.executable, "-m", "sysretstat"]
        if tool == "top":
            # One more than measured: it exits on its own after the end
            # of the window.
            self.argv = base + ["top", "-b", "-i", str(interval), "-n",
                                str(intervals + 1)]
        elif tool in ("daemon", "scraped"):
            self.port = free_port()
            self.argv = base + ["daemon", "-i", str(interval), "--listen",
                                "127.0.0.1:%d" % self.port]
        elif tool == "record":
            self.data = os.path.join(tmp, "record.data")
            self.argv = base + ["record", "-q", "-i", str(interval), "-o",
                                self.data]
        else:
            raise ValueError(tool)

    def first_tick(self):
        """Monotonic time of the end of interval 1's work (top's first
        table, record's file taking its name) or of the start of the
        tool's interval grid (the daemon's 'listening' line), whichever
        the tool shows; (time, kind).  None while not yet."""
        if self.tool == "top":
            if os.path.getsize(self.out) > 0:
                return time.monotonic(), "after1"
        elif self.tool == "record":
            # The file gets its name once it holds interval 1.
            if os.path.exists(self.data):
                return time.monotonic(), "after1"
        else:
            with open(self.err, "rb") as f:
                if b"listening on" in f.read():
                    return time.monotonic(), "grid"
        return None

    def go(self):
        env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="80")
        trace = []
        scrapes = []
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            p = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=out,
                                 stderr=err, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        clk = cpu_clock(p.pid)
        scraper = None
        done = threading.Event()
        try:
            first = None
            t_end = None
            start = time.monotonic()
            while True:
                now = time.monotonic()
                try:
                    cpu = time.clock_gettime_ns(clk)
                    ticks = stat_ticks(p.pid)
                except (OSError, IndexError, ValueError):
                    break
                trace.append((now, cpu, ticks))
                if p.poll() is not None:
                    break
                if first is None:
                    first = self.first_tick()
                    if first is not None:
                        # End of interval -n (+ the quiet part after it)
                        # is at most one interval past tick -n.
                        ticks_left = self.intervals + (
                            1 if first[1] == "grid" else 0)
                        t_end = first[0] + (ticks_left + .2) * \
                            self.interval
                        if self.tool == "scraped":
                            scraper = threading.Thread(
                                target=self._scrape, daemon=True,
                                args=(first[0], done, scrapes))
                            scraper.start()
                    elif now - start > 60:
                        raise RuntimeError("%s: no first interval after 60 "
                                           "s: %s" % (self.tool,
                                                      self._tail()))
                elif now >= t_end:
                    break
                time.sleep(SAMPLE_S)
        finally:
            done.set()
            if scraper is not None:
                scraper.join(5)
            self._end(p)
        if first is None:
            raise RuntimeError("%s exited with status %s before its first "
                               "interval: %s" % (self.tool, p.returncode,
                                                 self._tail()))
        return first, trace, scrapes

    def _scrape(self, t0, done, scrapes):
        """GET /metrics once per interval, half an interval after the
        daemon's ticks (its work for the interval done by then)."""
        url = "http://127.0.0.1:%d/metrics" % self.port
        k = 1
        while not done.wait(max(0.0, t0 + (k + 0.5) * self.interval -
                                time.monotonic())):
            k += 1
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    scrapes.append(len(r.read()))
            except OSError as e:
                scrapes.append(repr(e))

    def _end(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                p.wait()

    def rows(self):
        """Rows of top's last table (active processes in its interval):
        20 shown and '(N more rows)'."""
        with open(self.out, "rb") as f:
            text = f.read().decode(errors="replace")
        # Each frame starts with its summary line, "HH:MM:SS  host ...".
        last = re.split(r"(?m)^(?=\d\d:\d\d:\d\d  )", text)[-1]
        m = re.search(r"\((\d+) more rows\)", last)
        return 20 + int(m.group(1)) if m else "<= 20"

    def _tail(self):
        with open(self.err, "rb") as f:
            return f.read()[-600:].decode(errors="replace").strip()


def analyse(first, trace, interval, intervals, bins=50):
    """CPU (ms) of each interval 3..`intervals`, cut at the quiet phase,
    and the user/system ticks over the same window."""
    t_first, kind = first
    # Fold the trace on the tool's 1 s grid, after start-up: where in an
    # interval the CPU goes.
    per_bin = [0] * bins
    for (t0, c0, _), (t1, c1, _) in zip(trace, trace[1:]):
        if t0 >= t_first:
            per_bin[int((t1 % interval) / interval * bins) % bins] += c1 - c0
    width = max(1, bins // 10)
    quiet = min(range(bins), key=lambda b: sum(
        per_bin[(b + j) % bins] for j in range(width)))
    phase = (quiet + width / 2) / bins * interval
    # The first quiet moment after interval 1's work.
    t = t_first + (interval if kind == "grid" else 0.0)
    b1 = t + ((phase - t) % interval)
    bounds = [b1 + k * interval for k in range(1, intervals)]
    if bounds[-1] > trace[-1][0]:
        raise RuntimeError("trace ends %.2f s before the window"
                           % (bounds[-1] - trace[-1][0]))

    def at(when):
        for (t0, c0, k0), (t1, c1, k1) in zip(trace, trace[1:]):
            if t0 <= when <= t1:
                f = (when - t0) / (t1 - t0) if t1 > t0 else 0.0
                return c0 + f * (c1 - c0), (k0 if f < .5 else k1)
        raise RuntimeError("no sample at %.2f" % when)

    pts = [at(b) for b in bounds]
    ms = [(b[0] - a[0]) / 1e6 for a, b in zip(pts, pts[1:])]
    (u0, s0), (u1, s1) = pts[0][1], pts[-1][1]
    n = len(ms)
    return {"ms": ms, "mean": sum(ms) / n, "median": statistics.median(ms),
            "min": min(ms), "max": max(ms),
            "user_ms": (u1 - u0) * 1e3 / TICKS / n,
            "sys_ms": (s1 - s0) * 1e3 / TICKS / n,
            "phase_s": phase}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--processes", type=int, default=5000)
    ap.add_argument("-i", "--intervals", type=int, default=12,
                    help="intervals per run; 1 and 2 are left out")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--levels", default=",".join(LEVELS))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each tool per level, alternating")
    ap.add_argument("--json", metavar="FILE", help="every figure, as JSON")
    args = ap.parse_args()
    levels = args.levels.split(",")
    tools = args.tools.split(",")
    for x in levels:
        if x not in LEVELS:
            ap.error("--levels: %r is not one of %s" % (x, LEVELS))
    for x in tools:
        if x not in TOOLS:
            ap.error("--tools: %r is not one of %s" % (x, TOOLS))
    if args.intervals < 4:
        ap.error("-i: at least 4 (1 and 2 are left out)")
    if os.geteuid() != 0:
        sys.exit("interval_real: needs root (BPF)")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    tmp = tempfile.mkdtemp(prefix="interval_real.")
    results = {}
    try:
        exe = top_frame.build_swarm(tmp)
        for level in levels:
            t = time.monotonic()
            with top_frame.swarm(exe, args.processes, level) as sw:
                print("%s: %d processes spawned in %.1f s" % (
                    level, args.processes, time.monotonic() - t),
                    flush=True)
                time.sleep(1)
                for rep in range(args.repeat):
                    for tool in tools:
                        run = Run(tool, tmp, args.interval, args.intervals)
                        first, trace, scrapes = run.go()
                        r = analyse(first, trace, args.interval,
                                    args.intervals)
                        if scrapes:
                            bad = [s for s in scrapes if isinstance(s, str)]
                            r["scrapes"] = len(scrapes)
                            if bad:
                                r["scrape_errors"] = bad[:3]
                        if tool == "top":
                            r["rows"] = run.rows()
                        if run.data:
                            r["record_bytes"] = os.path.getsize(run.data)
                            os.unlink(run.data)
                        results.setdefault(level, {}).setdefault(
                            tool, []).append(r)
                        print("%s %s: %.1f ms CPU per interval (median %.1f,"
                              " %.1f-%.1f; user %.0f + sys %.0f by "
                              "/proc ticks) over %d intervals%s" % (
                                  level, tool, r["mean"], r["median"],
                                  r["min"], r["max"], r["user_ms"],
                                  r["sys_ms"], len(r["ms"]),
                                  "; %d scrapes" % r["scrapes"]
                                  if scrapes else "") + (
                                  "; top's last table: %s rows" % r["rows"]
                                  if tool == "top" else ""), flush=True)
                        time.sleep(1)
            gone(sw.pid)
    except (KeyboardInterrupt, Stop) as e:
        sys.exit("interval_real: stopped (%s)" % (e or "SIGINT"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nms CPU per interval (mean over intervals 3-%d; median of "
          "the runs' means with --repeat), %d processes:"
          % (args.intervals, args.processes))
    print("%-8s" % "tool" + "".join("%10s" % lv for lv in levels))
    for tool in tools:
        print("%-8s" % tool + "".join(
            "%10.1f" % statistics.median(r["mean"] for r in
                                         results[lv][tool])
            for lv in levels))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"processes": args.processes,
                       "intervals": args.intervals, "results": results},
                      f, indent=1)


if __name__ == "__main__":
    main()
