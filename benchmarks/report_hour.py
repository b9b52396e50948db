#!/usr/bin/env python3
"""How long `sysretstat report` takes on a one-hour recording.

Writes a synthetic recording with the real Writer: PROCESSES processes
(one thread each, plus a few multi-threaded ones), every one of them
active in every interval, ~80 syscalls, 2 CPUs, latency histograms
everywhere, INTERVALS intervals of 1 s.  Then runs `report` (text,
json, csv --by interval) on it, and on a copy cut just before its end
frame and in the middle of its last checkpoint span (the worst case:
the most deltas to decode), in child processes, and prints each run's
CPU seconds (user+sys) and peak RSS.

Memory must not grow with the length of the recording: the same runs on
a recording SHORT intervals long give the ratio (expect ~1.0).

    python3 benchmarks/report_hour.py [--processes 2000] [--intervals 3600]
                                      [--short 600] [--dir DIR] [--keep]

Generation is the slow part (minutes on a small machine); --dir with
--keep reuses the files on a later run.
"""

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sysretstat.kernel import abi
from sysretstat import record  # noqa: E402
from sysretstat.model.snapshot import Counts, Hist, Row, Snapshot  # noqa: E402

VARIANTS = 8
TARGET_CPU_S = 5.0


def hist(rng, center, spread, n):
    h = Hist()
    for _ in range(spread):
        b = abi.bucket_of(max(1, int(rng.gauss(center, center / 3))))
        h.buckets[b] = h.buckets.get(b, 0) + max(1, n // spread)
    h.sum_ns = int(center * h.count)
    return h


def counts(rng, n, lat=True):
    c = Counts()
    c.n[abi.O_SYSRET] = n
    if rng.random() < 0.3:
        c.n[abi.OUTCOMES.index("signal")] = rng.randint(1, 5)
    if rng.random() < 0.05:
        c.n[abi.OUTCOMES.index("fork_child")] = 1
    if lat:
        c.lat = [hist(rng, 400, 6, n), hist(rng, 1200, 3, c.iret or 1)]
        if not c.iret:
            c.lat[1] = Hist()
    return c


def variant(rng, procs):
    """One interval's delta: every process active."""
    s = Snapshot({"duration_s": 1.0, "lost": {}})
    s.totals = Counts.zero()
    for pid, comm, nthreads in procs:
        c = counts(rng, rng.randint(20, 2000))
        s.processes[(pid, 1000 + pid)] = Row((pid, 1000 + pid),
                                             {"pid": pid, "comm": comm}, c)
        for k in range(nthreads):
            tid = pid if k == 0 else pid * 100 + k
            tc = Counts(c.n) if k == 0 else counts(rng, 10, lat=False)
            s.threads[(tid, 2000 + tid)] = Row(
                (tid, 2000 + tid), {"pid": pid, "tid": tid, "comm": comm}, tc)
        s.totals.add(c)
    for nr in range(80):
        c = counts(rng, rng.randint(100, 20000))
        s.syscalls[("x64", nr)] = Row(("x64", nr), {"nr": nr, "name": "sc%d"
                                                    % nr, "abi": "x64"}, c)
    for cpu in range(2):
        s.cpus[cpu] = Row(cpu, {"cpu": cpu}, s.totals.copy())
    return s


def generate(path, nprocs, intervals, seed=1):
    rng = random.Random(seed)
    procs = [(1000 + i, "proc%d" % (i % 300), 1 + (i % 50 == 0) * 7)
             for i in range(nprocs)]
    variants = [variant(rng, procs) for _ in range(VARIANTS)]
    used = [0] * VARIANTS
    meta = {"version": "bench", "kernel": "synthetic", "hostname": "bench",
            "started_at": None, "duration_s": 0, "interval_s": 1.0,
            "command": None, "filters": {"latency": True},
            "guard": {"task_size_max": (1 << 47) - 4096, "xen_pv": False,
                      "fred": False, "la57": False}, "lost": {}}

    def cumulative():
        # Sum of the variants by how often each was written: exact, and
        # only computed when the Writer wants a checkpoint.
        total = Snapshot(dict(meta, duration_s=float(sum(used))))
        for v, k in zip(variants, used):
            if k:
                scaled = v.copy()
                for c in [scaled.totals] + [r.counts for t in
                                            ("processes", "threads",
                                             "syscalls", "cpus")
                                            for r in scaled.table(t).values()]:
                    c.n = [x * k for x in c.n]
                    for h in c.lat or ():
                        h.buckets = {b: x * k for b, x in h.buckets.items()}
                        h.sum_ns *= k
                total.merge(scaled)
        return total

    w = record.Writer(path)
    w.begin(meta)
    for i in range(intervals):
        v = i % VARIANTS
        used[v] += 1
        w.interval(variants[v], cumulative)
    w.close(dict(meta, duration_s=float(intervals)), cumulative)


# Runs the report from a fresh, small interpreter: Linux carries the
# peak RSS of a process across exec, so a child of this (large) process
# would report our peak, not its own.
LAUNCHER = """
import os, sys, json, subprocess
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
_, status, ru = os.wait4(p.pid, 0)
err = p.stderr.read().decode()
print(json.dumps([os.waitstatus_to_exitcode(status), err,
                  ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0]))
"""


def run(args):
    """CPU seconds, peak RSS (MiB) and wall seconds of one report."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable,
                          "-m", "sysretstat"] + args, env=env, check=True,
                         capture_output=True, text=True).stdout
    rc, err, cpu, rss = json.loads(out)
    if rc != 0:
        raise SystemExit("report failed: %s" % err)
    return cpu, rss, time.monotonic() - t0


def frame_offsets(path):
    """(offset, kind) of every frame, stepping by the length fields."""
    out = []
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        off = len(f.readline())
        while off < size:
            head = os.pread(fd, record.HEADER_LEN, off)
            out.append((off, head[-1:]))
            off += int(head[7:17])
    return out


def cut_copies(path, workdir):
    """Copies cut (a) before the end frame, (b) half a frame into the
    checkpoint before the final one: the most deltas to decode."""
    offs = frame_offsets(path)
    end_at = [o for o, t in offs if t == b"e"][-1]
    ckpts = [o for o, t in offs if t == b"c"]
    before_last = ckpts[-2] if len(ckpts) > 1 else ckpts[-1]
    out = []
    for name, at in (("no-end", end_at), ("mid-span", before_last + 17)):
        p = os.path.join(workdir, "cut-%s.data" % name)
        with open(path, "rb") as src, open(p, "wb") as dst:
            left = at
            while left:
                left -= os.copy_file_range(src.fileno(), dst.fileno(), left)
        out.append((name, p))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=2000)
    ap.add_argument("--intervals", type=int, default=3600)
    ap.add_argument("--short", type=int, default=600)
    ap.add_argument("--dir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--generate", metavar="FILE", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.generate:
        generate(a.generate, a.processes, a.intervals)
        return 0
    workdir = a.dir or tempfile.mkdtemp(prefix="sysretstat-bench-")
    os.makedirs(workdir, exist_ok=True)
    files = {}
    for n in (a.intervals, a.short):
        p = os.path.join(workdir, "hour-%dp-%di.data" % (a.processes, n))
        if not os.path.exists(p):
            t0 = time.monotonic()
            # In a child: a big parent would lend its peak RSS to every
            # report it starts (Linux keeps ru_maxrss across exec).
            subprocess.run([sys.executable, os.path.abspath(__file__),
                            "--generate", p, "--processes",
                            str(a.processes), "--intervals", str(n)],
                           check=True)
            print("generated %s: %.1f MiB in %.0fs"
                  % (p, os.path.getsize(p) / 2**20, time.monotonic() - t0),
                  flush=True)
        files[n] = p
    big, short = files[a.intervals], files[a.short]
    print("file: %d processes x %d intervals, %.1f MiB"
          % (a.processes, a.intervals, os.path.getsize(big) / 2**20))
    results = []
    cases = [("text", [big]), ("json", [big, "--json"]),
             ("csv interval", [big, "--format", "csv", "--by", "interval"])]
    cases += [("cut " + name, [p]) for name, p in cut_copies(big, workdir)]
    worst = 0.0
    for name, argv in cases:
        cpu, rss, wall = run(["report"] + argv)
        worst = max(worst, cpu)
        results.append((name, cpu, rss, wall))
        print("report %-14s cpu %5.2fs  wall %5.2fs  peak RSS %6.1f MiB"
              % (name, cpu, wall, rss), flush=True)
    cpu_s, rss_s, _ = run(["report", short])
    rss_big = results[0][2]
    print("report text of %d intervals: cpu %.2fs  peak RSS %.1f MiB"
          % (a.short, cpu_s, rss_s))
    print("RSS ratio %d/%d intervals: %.2f (bounded memory: ~1.0)"
          % (a.intervals, a.short, rss_big / rss_s))
    print("worst CPU %.2fs: %s (target < %.0fs)"
          % (worst, "PASS" if worst < TARGET_CPU_S else "FAIL",
             TARGET_CPU_S))
    if not a.keep and not a.dir:
        shutil.rmtree(workdir)
    return 0 if worst < TARGET_CPU_S else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
