#!/usr/bin/env python3
"""What leaving sysretstat running costs: added time per syscall, time to
attach, memory, and the syscall rate it keeps up with.

  python3 benchmarks/overhead.py [--rounds N] [--calls N] [--json FILE]

Needs root (BPF).  Every round runs each workload once under each
configuration, in a fresh random order per round, so slow drifts of a
shared machine spread over all configurations alike:

  none          no tracing
  floor         empty BPF programs on sys_enter and sys_exit (bpf/floor):
                the cost any tracer on those two tracepoints starts from
  floor_exit    the empty sys_exit program alone (the counts-only floor)
  full          sysretstat's collector, default mode (latency histograms)
  counts        sysretstat's collector, --no-latency (no sys_enter)
  bpftrace      tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }
                (installed with apt-get when missing; tracefs is mounted
                when it is not)

Workloads, pinned to one CPU, timed with the thread's CPU clock (BPF
programs run in the thread's own kernel time; time the thread spends
preempted by other load does not count): a raw getpid loop, and a mix of
six cheap syscalls per iteration.  Added cost = median of the
configuration minus median of "none", in ns per syscall.

Then: time to attach (Collector.start: open, verify, load, attach),
resident memory of a collecting process and the BPF maps' memory, and
the rate sustained with getpid loops on every CPU with no lost counts
(each loop's returns as counted by sysretstat must equal its calls).
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sysretstat.kernel import bpf
from sysretstat import objects  # noqa: E402
from sysretstat.source.collector import Collector  # noqa: E402
from sysretstat.kernel.tracer import Options  # noqa: E402

BPFTRACE_PROG = ('BEGIN { printf("ready\\n"); } '
                 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }')

# The workloads.  Raw `syscall` instructions so no libc caching hides a
# syscall; after the gate (one read of stdin) the process makes exactly
# `n` (getpid) or 6n (mix) syscalls, then one write, then exit_group.
LOAD_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline long sc3(long nr, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return r;
}

int main(int argc, char **argv)
{
	long n = atol(argv[2]), per = 1;
	int cpu = atoi(argv[3]), gate = argc > 4;
	int zero = open("/dev/zero", O_RDONLY), null = open("/dev/null", O_WRONLY);
	char buf[64], c;
	struct timespec a, b, wa, wb;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) || zero < 0 || null < 0)
		return 1;
	if (gate && read(0, &c, 1) != 1)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &wa);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	if (strcmp(argv[1], "getpid") == 0) {
		for (long i = 0; i < n; i++)
			sc3(39, 0, 0, 0);
	} else {
		per = 6;
		for (long i = 0; i < n; i++) {
			sc3(110, 0, 0, 0);			/* getppid */
			sc3(102, 0, 0, 0);			/* getuid */
			sc3(0, zero, (long)buf, sizeof(buf));	/* read */
			sc3(1, null, (long)buf, sizeof(buf));	/* write */
			sc3(8, zero, 0, SEEK_CUR);		/* lseek */
			sc3(3, -1, 0, 0);			/* close: EBADF */
		}
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	clock_gettime(CLOCK_MONOTONIC, &wb);
	/* Only vDSO clock reads above; one write below. */
	printf("%.3f %.6f\n",
	       ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (n * per),
	       (wb.tv_sec - wa.tv_sec) + (wb.tv_nsec - wa.tv_nsec) / 1e9);
	fflush(stdout);
	return 0;
}
"""


def build_load(tmp, prebuilt=None):
    if prebuilt:
        return prebuilt
    src = os.path.join(tmp, "ovhload.c")
    exe = os.path.join(tmp, "ovhload")
    with open(src, "w") as f:
        f.write(LOAD_C)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, src], check=True)
    return exe


# ------------------------------------------------------------ configurations

class NoTracing:
    name = "none"

    def start(self):
        pass

    def stop(self):
        pass


class Floor:
    def __init__(self, name, progs):
        self.name, self.progs, self.obj = name, progs, None

    def start(self):
        self.obj = bpf.BpfObject.open(objects.object_bytes("floor"),
                                      name="floor")
        for p in ("floor_sys_enter", "floor_sys_exit"):
            if p not in self.progs:
                self.obj.set_autoload(p, False)
        self.obj.load()
        for p in self.progs:
            self.obj.attach(p)

    def stop(self):
        self.obj.close()
        self.obj = None


class Sysretstat:
    def __init__(self, name, latency):
        self.name, self.latency, self.coll = name, latency, None
        self.attach_s = []

    def start(self):
        t0 = time.perf_counter()
        self.coll = Collector(Options(latency=self.latency)).start()
        self.attach_s.append(time.perf_counter() - t0)

    def stop(self):
        self.coll.stop()
        self.coll.close()
        self.coll = None


def _sigint_default():
    # A background job inherits SIGINT ignored, and bpftrace then never
    # stops on it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Bpftrace:
    name = "bpftrace"

    def __init__(self):
        self.proc = None
        self.attach_s = []
        self.rss_kib = []

    def start(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(["bpftrace", "-B", "line", "-e",
                                      BPFTRACE_PROG],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True,
                                     preexec_fn=_sigint_default)
        # BEGIN runs once every probe is attached.  A watchdog, so that a
        # bpftrace that never says "ready" cannot hang the benchmark.
        timer = threading.Timer(60, self.proc.kill)
        timer.start()
        for line in self.proc.stdout:
            if line.strip() == "ready":
                break
        else:
            timer.cancel()
            raise RuntimeError("bpftrace exited before attaching")
        timer.cancel()
        self.attach_s.append(time.perf_counter() - t0)
        self.rss_kib.append(rss_kib(self.proc.pid))

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        # Its map dump at exit can be long: drain it.  Its detach was
        # seen to hang on a busy machine: the measurement is over, kill.
        try:
            self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.proc = None


def ensure_bpftrace():
    """bpftrace runnable here, or the reason it is not."""
    if not shutil.which("bpftrace"):
        r = subprocess.run(["apt-get", "install", "-y", "bpftrace"],
                           capture_output=True, text=True)
        if r.returncode != 0 or not shutil.which("bpftrace"):
            return "apt-get install bpftrace failed: " + \
                (r.stderr.strip().splitlines() or ["?"])[-1]
    if not os.path.exists("/sys/kernel/tracing/events/raw_syscalls"):
        subprocess.run(["mount", "-t", "tracefs", "nodev",
                        "/sys/kernel/tracing"], capture_output=True)
    if not os.path.exists("/sys/kernel/tracing/events/raw_syscalls"):
        return "tracefs with raw_syscalls events is not available"
    try:
        b = Bpftrace()
        b.start()
        b.stop()
    except Exception as e:          # report why, keep benchmarking
        return "bpftrace cannot run here: %s" % e
    return None


# ------------------------------------------------------------ measuring

def foreign_progs():
    """Names of tracing BPF programs loaded by anyone right now (another
    tracer on the syscall path inflates every configuration), or None
    without bpftool."""
    if not shutil.which("bpftool"):
        return None
    r = subprocess.run(["bpftool", "-j", "prog", "show"],
                       capture_output=True, text=True)
    try:
        progs = json.loads(r.stdout)
    except ValueError:
        return None
    return sorted(p.get("name", "?") for p in progs
                  if p.get("type") in ("tracing", "raw_tracepoint",
                                       "tracepoint", "kprobe"))


def wait_quiet(limit_s):
    """Wait up to limit_s for no other tracing program to be loaded."""
    t_end = time.monotonic() + limit_s
    while True:
        f = foreign_progs()
        if not f or time.monotonic() >= t_end:
            return f
        time.sleep(1)


def rss_kib(pid="self"):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_load(exe, workload, calls, cpu):
    out = subprocess.run([exe, workload, str(calls), str(cpu)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def overhead(exe, configs, rounds, calls, cpu):
    workloads = {"getpid": calls, "mix": max(1, calls // 6)}
    res = {w: {c.name: [] for c in configs} for w in workloads}
    rnd = random.Random(1)
    for r in range(rounds):
        order = list(configs)
        rnd.shuffle(order)
        for c in order:
            c.start()
            try:
                for w, n in workloads.items():
                    res[w][c.name].append(run_load(exe, w, n, cpu))
            finally:
                c.stop()
        print("round %d/%d done" % (r + 1, rounds), file=sys.stderr)
    return res


def memory(mode_latency):
    """RSS of a process that imported sysretstat and collects, and the
    memory its BPF maps hold (memlock in fdinfo)."""
    code = r"""
import os, sys, json
sys.path.insert(0, %r)
from sysretstat.source.collector import Collector
from sysretstat.kernel.tracer import Options
def rss():
    for l in open("/proc/self/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
base = rss()
c = Collector(Options(latency=%r)).start()
c.snapshot()
maps = 0
for fd in os.listdir("/proc/self/fdinfo"):
    try: text = open("/proc/self/fdinfo/" + fd).read()
    except OSError: continue
    if "map_type:" in text:
        for l in text.splitlines():
            if l.startswith("memlock:"): maps += int(l.split()[1])
print(json.dumps({"rss_kib": rss(), "rss_before_attach_kib": base,
                  "bpf_maps_kib": maps // 1024}))
c.stop(); c.close()
""" % (ROOT, mode_latency)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def max_rate(exe, latency, calls):
    """getpid loops on every CPU at once under the collector; every
    loop's returns must be counted."""
    cpus = sorted(os.sched_getaffinity(0))
    coll = Collector(Options(latency=latency)).start()
    try:
        # The last one makes no getpid calls: its returns are the start-up
        # and gate syscalls that every loop makes besides its calls.
        procs = [subprocess.Popen([exe, "getpid", str(n), str(c), "g"],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
                 for c, n in [(c, calls) for c in cpus] + [(cpus[0], 0)]]
        time.sleep(0.2)              # every loop waits in its gate read
        for p in procs:
            p.stdin.write("x")
            p.stdin.flush()
        walls = []
        for p in procs:
            out, _ = p.communicate(timeout=300)
            walls.append(float(out.split()[1]))
        walls.pop()
        snap = coll.stop()
    finally:
        coll.close()
    pids = {p.pid for p in procs}
    counted = {r.fields["pid"]: r.counts.returns
               for r in snap.processes.values() if r.fields["pid"] in pids}
    base = counted.pop(procs[-1].pid, None)
    expected = calls + base if base is not None else None
    # meta.lost is machine-wide (other processes too); the loops' own
    # counts are the test.
    lost = {k: v for k, v in snap.meta.get("lost", {}).items() if v}
    return {"cpus": len(cpus), "calls_per_cpu": calls,
            "rate_per_s": len(cpus) * calls / max(walls),
            "counted": sorted(counted.values()), "expected_each": expected,
            "exact": len(counted) == len(cpus) and
            all(v == expected for v in counted.values()),
            "lost": lost}


def summarize(res):
    out = {}
    for w, by in res.items():
        med = {c: statistics.median(v) for c, v in by.items()}
        base = med["none"]
        added = {c: med[c] - base for c in med if c != "none"}
        out[w] = {"median_ns": med, "added_ns": added,
                  "spread_ns": {c: [min(v), max(v)] for c, v in by.items()}}
        fl, fx = added.get("floor"), added.get("floor_exit")
        r = {}
        if fl:
            r["full_vs_floor"] = added["full"] / fl
        if fx:
            r["counts_vs_floor_exit"] = added["counts"] / fx
        if added.get("bpftrace"):
            r["full_vs_bpftrace"] = added["full"] / added["bpftrace"]
            r["counts_vs_bpftrace"] = added["counts"] / added["bpftrace"]
        out[w]["ratios"] = r
    return out


def markdown(doc):
    """The README's results table."""
    cfgs = ["floor", "floor_exit", "full", "counts", "bpftrace"]
    out = ["| workload | none ns/syscall | " +
           " | ".join("+%s" % c for c in cfgs) + " |",
           "|---|---:|" + "---:|" * len(cfgs)]
    for w, o in doc["overhead"].items():
        cells = ["%+.0f" % o["added_ns"][c] if c in o["added_ns"] else "-"
                 for c in cfgs]
        out.append("| %s | %.0f | %s |" % (w, o["median_ns"]["none"],
                                           " | ".join(cells)))
    out.append("")
    out.append("| ratio (target) | " + " | ".join(doc["overhead"]) + " |")
    out.append("|---|" + "---:|" * len(doc["overhead"]))
    for key, target in (("full_vs_floor", "<= 1.3"),
                        ("counts_vs_floor_exit", "<= 1.3"),
                        ("full_vs_bpftrace", "< 0.4"),
                        ("counts_vs_bpftrace", "< 0.4")):
        out.append("| %s (%s) | %s |" % (key, target, " | ".join(
            "%.2f" % o["ratios"][key] if key in o["ratios"] else "-"
            for o in doc["overhead"].values())))
    a, m, r = doc["attach_s"], doc["memory"], doc["max_rate"]
    out.append("")
    out.append("attach (median of %d): full %.3f s, counts %.3f s%s"
               % (doc["rounds"], a["full"], a["counts"],
                  ", bpftrace %.3f s" % a["bpftrace"] if a["bpftrace"]
                  else ""))
    out.append("memory: full RSS %d KiB (+%d on attach), counts RSS %d KiB,"
               " BPF maps %d KiB%s"
               % (m["full"]["rss_kib"], m["full"]["rss_kib"] -
                  m["full"]["rss_before_attach_kib"],
                  m["counts"]["rss_kib"], m["full"]["bpf_maps_kib"],
                  "; bpftrace RSS %d KiB" % m["bpftrace_rss_kib"]
                  if m["bpftrace_rss_kib"] else ""))
    for mode in ("full", "counts"):
        out.append("max rate (%s): %.2f M syscalls/s on %d CPUs, counts "
                   "%s" % (mode, r[mode]["rate_per_s"] / 1e6, r[mode]["cpus"],
                           "exact" if r[mode]["exact"] else
                           "NOT exact: %s vs %s each" % (
                               r[mode]["counted"], r[mode]["expected_each"])))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=1000000,
                    help="syscalls per workload run (default 1000000)")
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--no-bpftrace", action="store_true")
    ap.add_argument("--load-exe", metavar="PATH",
                    help="a load program built elsewhere (--print-load-"
                         "source), for machines without a compiler")
    ap.add_argument("--print-load-source", action="store_true",
                    help="print the load program's C source and exit")
    ap.add_argument("--json", metavar="FILE",
                    help="write the full result there and print only the "
                         "README tables")
    ap.add_argument("--markdown-from", metavar="FILE",
                    help="print the README tables of an earlier --json")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="first wait up to S seconds until no other "
                         "tracing BPF program is loaded")
    args = ap.parse_args()
    if args.print_load_source:
        sys.stdout.write(LOAD_C)
        return 0
    if args.markdown_from:
        with open(args.markdown_from) as f:
            print(markdown(json.load(f)))
        return
    if os.geteuid() != 0:
        sys.exit("overhead.py: needs root (BPF)")

    with tempfile.TemporaryDirectory() as tmp:
        exe = build_load(tmp, args.load_exe)
        full, counts = Sysretstat("full", True), Sysretstat("counts", False)
        configs = [NoTracing(), Floor("floor", ["floor_sys_enter",
                                                "floor_sys_exit"]),
                   Floor("floor_exit", ["floor_sys_exit"]), full, counts]
        why_no_bpftrace = "skipped (--no-bpftrace)" if args.no_bpftrace \
            else ensure_bpftrace()
        bt = None
        if why_no_bpftrace is None:
            bt = Bpftrace()
            configs.append(bt)
        before = wait_quiet(args.wait_quiet)
        if before:
            print("warning: %d other tracing BPF programs are loaded (%s); "
                  "every configuration pays for them"
                  % (len(before), ", ".join(sorted(set(before)))),
                  file=sys.stderr)
        res = overhead(exe, configs, args.rounds, args.calls, args.cpu)
        after = foreign_progs()
        doc = {
            "command": " ".join(["python3", "benchmarks/overhead.py"] +
                                sys.argv[1:]),
            "kernel": os.uname().release,
            "cpu": args.cpu, "rounds": args.rounds, "calls": args.calls,
            "loadavg_at_start": open("/proc/loadavg").read().split()[0],
            "foreign_bpf_progs": {"before": before, "after": after},
            "overhead": summarize(res),
            "raw": res,
            "attach_s": {"full": statistics.median(full.attach_s),
                         "counts": statistics.median(counts.attach_s),
                         "bpftrace": statistics.median(bt.attach_s)
                         if bt else None},
            "attach_s_max": {"full": max(full.attach_s),
                             "counts": max(counts.attach_s)},
            "memory": {"full": memory(True), "counts": memory(False),
                       "bpftrace_rss_kib": max(bt.rss_kib) if bt else None},
            "max_rate": {"full": max_rate(exe, True, args.calls * 5),
                         "counts": max_rate(exe, False, args.calls * 5)},
            "bpftrace": why_no_bpftrace or "ok",
        }
    text = json.dumps(doc, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
        print(markdown(doc))
    else:
        print(text)


if __name__ == "__main__":
    main()
