#!/usr/bin/env python3
"""Does the daemon's memory stay flat while processes come and go?

  python3 benchmarks/daemon_memory.py [--processes N] [--batch N]
                                      [--interval S] [--json FILE]

Needs root (BPF).  Starts `sysretstat daemon` (default table bounds) on
a free loopback port, then creates N short-lived processes in batches
(`retpaths fork BATCH`: each child is a bare clone that exits at once)
and, after each batch and one daemon interval, reads the daemon's
resident memory (/proc/PID/status VmRSS) and its /metrics: evictions
(sysretstat_lost_total{what="evicted_*"}), kernel-side drops, rows
held.  Memory is judged by a ratio, not an absolute: RSS at the end
over RSS half-way (the tables are full long before), which should
stay near 1.0.  Exit status 1 when it grows
by more than 10% or no eviction was counted.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'sysretstat_lost_total\{what="(\w+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = int(float(m.group(2)))
    return out


def rows(url):
    with urllib.request.urlopen(url + "/api/v1/snapshot", timeout=30) as r:
        doc = json.loads(r.read())
    return len(doc["processes"]), len(doc["threads"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("daemon_memory: needs root (BPF)")

    wl = tempfile.mkdtemp(prefix="sysretstat-wl-")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tests",
                                                      "workloads"),
                    "O=%s" % wl], check=True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    d = subprocess.Popen([sys.executable, "-m", "sysretstat", "daemon",
                          "--listen", "127.0.0.1:0", "-i", str(a.interval)],
                         stderr=subprocess.PIPE, text=True, env=env)
    line = d.stderr.readline()
    m = re.search(r"http://(127\.0\.0\.1:\d+)/", line)
    if not m:
        d.kill()
        sys.exit("daemon_memory: daemon did not start: %s" % line.strip())
    url = "http://" + m.group(1)
    points = []
    try:
        time.sleep(2 * a.interval)
        points.append({"processes": 0, "rss_kib": rss_kib(d.pid),
                       "lost": metrics(url), "rows": rows(url)})
        made = 0
        while made < a.processes:
            n = min(a.batch, a.processes - made)
            subprocess.run([os.path.join(wl, "retpaths"), "fork", str(n)],
                           check=True, stdout=subprocess.DEVNULL)
            made += n
            time.sleep(1.5 * a.interval)
            points.append({"processes": made, "rss_kib": rss_kib(d.pid),
                           "lost": metrics(url), "rows": rows(url)})
    finally:
        d.terminate()
        d.wait(30)

    print("%9s %9s %10s %10s %10s %10s" % (
        "processes", "rss_MiB", "evicted_p", "evicted_t", "exited_p*",
        "rows p/t"))
    for p in points:
        lo = p["lost"]
        print("%9d %9.1f %10d %10d %10d %10s" % (
            p["processes"], p["rss_kib"] / 1024,
            lo.get("evicted_processes", 0), lo.get("evicted_threads", 0),
            lo.get("exited_procs", 0), "%d/%d" % p["rows"]))
    print("* exited_procs: exit records the kernel map had no room for "
          "(per-process latency only; counts are kept per thread)")
    full = next((p for p in points if p["processes"] >= a.processes / 2),
                points[-1])
    ratio = points[-1]["rss_kib"] / full["rss_kib"]
    evicted = points[-1]["lost"].get("evicted_processes", 0)
    print("RSS end / RSS at %d processes: %.3f; processes evicted: %d"
          % (full["processes"], ratio, evicted))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"points": points, "ratio": ratio}, f, indent=1)
    return 0 if ratio < 1.10 and evicted > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
