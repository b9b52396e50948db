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
  full          sysretstat's collector, default mode: latency histograms,
                1 in 64 calls timed of hot syscalls that (almost) never
                take IRET, every call of the rest
  full_every    the same with --latency-sample 1: every call timed
  counts        sysretstat's collector, --no-latency (no sys_enter)
  bpftrace      tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }
  bpftrace_hist the per-command latency histogram one-liner:
                sys_enter { @s[tid] = nsecs; }  sys_exit /@s[tid]/ {
                @[comm] = hist(nsecs - @s[tid]); delete(@s[tid]); }
                (bpftrace is installed with apt-get when missing; tracefs
                is mounted when it is not)

While a sysretstat configuration is attached, a thread takes a snapshot
every 0.25 s, as record, top and the daemon do each interval (the
sampler decides which syscalls to sample only then), and before each
measured run the same workload runs unmeasured for about 1 s, so that
the sampler has reached its steady state for that workload.

Workloads, pinned to one CPU, timed with the thread's CPU clock (BPF
programs run in the thread's own kernel time; time the thread spends
preempted by other load does not count): a raw getpid loop, and a mix of
six cheap syscalls per iteration.  Added cost = median of the
configuration minus median of "none", in ns per syscall; and the same
from each configuration's fastest round (see summarize()).

Then: time to attach (Collector.start: open, verify, load, attach),
resident memory of a collecting process and the BPF maps' memory, the
rate sustained with getpid loops on every CPU with no lost counts
(each loop's returns as counted by sysretstat must equal its calls),
and each BPF program's mean run time from the kernel's statistics
(bpf_enable_stats) under each configuration.
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

from sysretstat.kernel import abi, bpf, objects  # noqa: E402
from sysretstat.model.syscalls import syscall_name  # noqa: E402
from sysretstat.source.collector import Collector  # noqa: E402
from sysretstat.kernel.tracer import Options  # noqa: E402

# BEGIN runs once every probe is attached: "ready" tells start() so.
BPFTRACE_READY = 'BEGIN { printf("ready\\n"); } '
BPFTRACE_PROGS = {
    "bpftrace": 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }',
    # What a user would write for per-command syscall latency.
    "bpftrace_hist": 'tracepoint:raw_syscalls:sys_enter { @s[tid] = nsecs; } '
                     'tracepoint:raw_syscalls:sys_exit /@s[tid]/ { '
                     '@[comm] = hist(nsecs - @s[tid]); delete(@s[tid]); }',
}
# Seconds each unmeasured warm-up run lasts, and between two snapshots.
WARM_S = 1.0
SNAPSHOT_S = 0.25

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

    def warm(self, run):
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

    def warm(self, run):
        pass

    def run_stats(self):
        out = {}
        for p in self.progs:
            t, n, _ = bpf.prog_run_stats(self.obj.prog_fd(p))
            out[p] = (t, n)
        return out

    def stop(self):
        self.obj.close()
        self.obj = None


class Snapshots(threading.Thread):
    """Collector.snapshot() every `every` seconds, as record, top and
    the daemon do each interval: the sampler remakes its choice of
    syscalls only in a snapshot."""

    def __init__(self, coll, every=SNAPSHOT_S):
        super().__init__(daemon=True)
        self.coll, self.every = coll, every
        self.done = threading.Event()
        self.error = None
        self.taken = 0

    def run(self):
        try:
            while not self.done.wait(self.every):
                self.coll.snapshot()
                self.taken += 1
        except Exception as e:      # raised again by halt()
            self.error = e

    def halt(self):
        self.done.set()
        self.join()
        if self.error is not None:
            raise self.error


def sampled_names(coll):
    """The syscalls (x64) whose calls are sampled right now."""
    s = coll.sampler
    if s is None:
        return []
    return sorted(str(syscall_name("x64", nr) or nr)
                  for nr in range(abi.SLOTS_X64 - 1) if s.shifts[nr])


class Sysretstat:
    def __init__(self, name, **options):
        self.name, self.options, self.coll = name, options, None
        self.snaps = None
        self.attach_s = []
        self.sampled = {}       # workload -> [sampled syscalls, per run]

    def start(self):
        t0 = time.perf_counter()
        self.coll = Collector(Options(**self.options)).start()
        self.attach_s.append(time.perf_counter() - t0)
        self.snaps = Snapshots(self.coll)
        self.snaps.start()

    def warm(self, run):
        """Run the next measured workload, unmeasured, for WARM_S, with
        snapshots going: the sampler's choice is then the one for that
        workload (a syscall is sampled or not from its rate over 0.5 s
        windows, so a workload that just started would pay for every
        call timed until the next decision)."""
        t_end = time.monotonic() + WARM_S
        while time.monotonic() < t_end:
            run()

    def note(self, workload):
        self.sampled.setdefault(workload, []).append(
            sampled_names(self.coll))

    def run_stats(self):
        return self.coll.tracer.run_stats()

    def stop(self):
        try:
            self.snaps.halt()       # before stop(): it takes the last one
        finally:
            self.snaps = None
            self.coll.stop()
            self.coll.close()
            self.coll = None


def _sigint_default():
    # A background job inherits SIGINT ignored, and bpftrace then never
    # stops on it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Bpftrace:
    def __init__(self, name="bpftrace"):
        self.name, self.prog = name, BPFTRACE_READY + BPFTRACE_PROGS[name]
        self.proc = None
        self.attach_s = []
        self.rss_kib = []

    def start(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(["bpftrace", "-B", "line", "-e",
                                      self.prog],
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

    def warm(self, run):
        pass

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
        for name in BPFTRACE_PROGS:
            b = Bpftrace(name)
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


def workloads_of(calls):
    return {"getpid": calls, "mix": max(1, calls // 6)}


def overhead(exe, configs, rounds, calls, cpu):
    workloads = workloads_of(calls)
    res = {w: {c.name: [] for c in configs} for w in workloads}
    rnd = random.Random(1)
    for r in range(rounds):
        order = list(configs)
        rnd.shuffle(order)
        for c in order:
            c.start()
            try:
                for w, n in workloads.items():
                    c.warm(lambda: run_load(exe, w, n, cpu))
                    if hasattr(c, "note"):
                        c.note(w)
                    res[w][c.name].append(run_load(exe, w, n, cpu))
            finally:
                c.stop()
        print("round %d/%d done" % (r + 1, rounds), file=sys.stderr)
    return res


def prog_stats(exe, configs, calls, cpu):
    """Each BPF program's mean run time (kernel BPF statistics) while a
    workload runs under each configuration, warmed as in overhead():
    {workload: {config: {program: [ns per run, runs]}}}.  The
    statistics' own clock reads are outside the time they count; a
    floor's empty program shows what any program costs to enter."""
    fd = bpf.enable_run_stats()
    if fd < 0:
        return None
    out = {}
    try:
        for c in configs:
            c.start()
            try:
                for w, n in workloads_of(calls).items():
                    c.warm(lambda: run_load(exe, w, n, cpu))
                    before = c.run_stats()
                    run_load(exe, w, n, cpu)
                    after = c.run_stats()
                    out.setdefault(w, {})[c.name] = {
                        p: [(after[p][0] - before[p][0]) /
                            max(1, after[p][1] - before[p][1]),
                            after[p][1] - before[p][1]]
                        for p in after}
            finally:
                c.stop()
    finally:
        os.close(fd)
    return out


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


def max_rate(exe, calls, **options):
    """getpid loops on every CPU at once under the collector, snapshots
    every SNAPSHOT_S and the sampler warmed (getpid loops on every CPU
    for WARM_S first); every loop's returns must be counted."""
    cpus = sorted(os.sched_getaffinity(0))
    coll = Collector(Options(**options)).start()
    snaps = Snapshots(coll)
    snaps.start()
    try:
        t_end = time.monotonic() + WARM_S
        while time.monotonic() < t_end:
            warm = [subprocess.Popen([exe, "getpid", str(calls // 5),
                                      str(c)], stdout=subprocess.DEVNULL)
                    for c in cpus]
            for p in warm:
                p.wait()
        sampled = sampled_names(coll)
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
        snaps.halt()
        snap = coll.stop()
    finally:
        snaps.done.set()
        snaps.join()
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
            "sampled_at_start": sampled,
            "untimed_sampled": snap.meta.get("untimed_sampled"),
            "lost": lost}


def summarize(res):
    """Added ns per syscall and the ratios, from the medians over the
    rounds and from each configuration's fastest round.  On a shared VM
    whole rounds step between levels some tens of ns apart (the host
    moving the vCPU), and a median of few rounds can land on either:
    the fastest round of each configuration is the steadier figure
    there, and the one the kernel's per-program statistics agree with."""
    out = {}
    for w, by in res.items():
        med = {c: statistics.median(v) for c, v in by.items()}
        fast = {c: min(v) for c, v in by.items()}
        added = {c: med[c] - med["none"] for c in med if c != "none"}
        added_f = {c: fast[c] - fast["none"] for c in fast if c != "none"}
        out[w] = {"median_ns": med, "added_ns": added,
                  "fastest_ns": fast, "added_fastest_ns": added_f,
                  "spread_ns": {c: [min(v), max(v)] for c, v in by.items()},
                  "ratios": _ratios(added),
                  "ratios_fastest": _ratios(added_f)}
    return out


def _ratios(added):
    r = {}
    for key, (a, b, _) in RATIOS.items():
        if added.get(a) is not None and added.get(b):
            r[key] = added[a] / added[b]
    return r


# name: (configuration, its yardstick, target); the targets of issue
# "Cost".  full_every has none: it shows what sampling saves.
RATIOS = {
    "full_vs_floor": ("full", "floor", "<= 1.2"),
    "full_vs_bpftrace_hist": ("full", "bpftrace_hist", "<= 0.15"),
    "counts_vs_floor_exit": ("counts", "floor_exit", "<= 1.15"),
    "counts_vs_bpftrace": ("counts", "bpftrace", "<= 0.2"),
    "full_every_vs_floor": ("full_every", "floor", "-"),
    "full_every_vs_bpftrace_hist": ("full_every", "bpftrace_hist", "-"),
}
CONFIGS = ["floor", "floor_exit", "full", "full_every", "counts",
           "bpftrace", "bpftrace_hist"]


def markdown(doc):
    """The README's results table."""
    cfgs = CONFIGS
    ovh = summarize(doc["raw"]) if "raw" in doc else doc["overhead"]
    stats = [("median", "median_ns", "added_ns", "ratios"),
             ("fastest", "fastest_ns", "added_fastest_ns", "ratios_fastest")]
    out = ["| workload | of %d rounds | none ns/syscall | " % doc["rounds"] +
           " | ".join("+%s" % c for c in cfgs) + " |",
           "|---|---|---:|" + "---:|" * len(cfgs)]
    for w, o in ovh.items():
        for label, base, added, _ in stats:
            if added not in o:
                continue
            cells = ["%+.0f" % o[added][c] if c in o[added] else "-"
                     for c in cfgs]
            out.append("| %s | %s | %.0f | %s |" % (
                w, label, o[base]["none"], " | ".join(cells)))
    cols = [(w, label, key) for w, o in ovh.items()
            for label, _, _, key in stats if key in o]
    out.append("")
    out.append("| ratio (target) | " + " | ".join(
        "%s, %s" % (w, label) for w, label, _ in cols) + " |")
    out.append("|---|" + "---:|" * len(cols))
    for key, (_, _, target) in RATIOS.items():
        out.append("| %s (%s) | %s |" % (key, target, " | ".join(
            "%.2f" % ovh[w][k][key] if key in ovh[w][k] else "-"
            for w, _, k in cols)))
    a, m, r = doc["attach_s"], doc["memory"], doc["max_rate"]
    out.append("")
    out.append("attach (median of %d): %s" % (doc["rounds"], ", ".join(
        "%s %.3f s" % (k, v) for k, v in a.items() if v is not None)))
    bt = m.get("bpftrace_rss_kib")
    if not isinstance(bt, dict):            # a --json from before
        bt = {"bpftrace": bt}
    out.append("memory: full RSS %d KiB (+%d on attach), counts RSS %d KiB,"
               " BPF maps %d KiB%s"
               % (m["full"]["rss_kib"], m["full"]["rss_kib"] -
                  m["full"]["rss_before_attach_kib"],
                  m["counts"]["rss_kib"], m["full"]["bpf_maps_kib"],
                  "".join("; %s RSS %d KiB" % (k, v)
                          for k, v in bt.items() if v)))
    for mode, o in r.items():
        out.append("max rate (%s): %.2f M syscalls/s on %d CPUs, counts "
                   "%s%s" % (mode, o["rate_per_s"] / 1e6, o["cpus"],
                             "exact" if o["exact"] else
                             "NOT exact: %s vs %s each" % (
                                 o["counted"], o["expected_each"]),
                             ", sampled: %s" % (
                                 " ".join(o["sampled_at_start"]) or "none")
                             if "sampled_at_start" in o else ""))
    ps = doc.get("prog_stats")
    if ps:
        out.append("")
        out.append("BPF program mean run time, ns per run (kernel "
                   "statistics), runs per workload syscall in brackets:")
        out.append("")
        out.append("| workload | config | " + " | ".join(PROGS) + " |")
        out.append("|---|---|" + "---:|" * len(PROGS))
        for w, by in ps.items():
            n = doc["calls"] if w == "getpid" else max(1, doc["calls"] // 6) * 6
            for c, progs in by.items():
                cells = []
                for p in PROGS:
                    v = progs.get(p) or progs.get(FLOOR_PROGS.get(p))
                    cells.append("%.0f (%.2f)" % (v[0], v[1] / n)
                                 if v else "-")
                out.append("| %s | %s | %s |" % (w, c, " | ".join(cells)))
    sampled = doc.get("sampled")
    if sampled:
        out.append("")
        for c, by in sampled.items():
            for w, runs in by.items():
                names = sorted({" ".join(x) or "none" for x in runs})
                out.append("sampled when measured (%s, %s): %s"
                           % (c, w, "; ".join(names)))
    return "\n".join(out) + "\n"


# The programs run_stats() reports, in table order (a floor's empty
# programs stand in the columns of the ones they are the floor of).
PROGS = ["sr_sys_enter", "sr_sys_exit", "sr_switch"]
FLOOR_PROGS = {"sr_sys_enter": "floor_sys_enter",
               "sr_sys_exit": "floor_sys_exit"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=1000000,
                    help="syscalls per workload run (default 1000000)")
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--no-bpftrace", action="store_true")
    ap.add_argument("--no-prog-stats", action="store_true",
                    help="skip the per-program BPF statistics")
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
        full = Sysretstat("full")
        every = Sysretstat("full_every", latency_sample=1)
        counts = Sysretstat("counts", latency=False)
        floors = [Floor("floor", ["floor_sys_enter", "floor_sys_exit"]),
                  Floor("floor_exit", ["floor_sys_exit"])]
        ours = [full, every, counts]
        configs = [NoTracing()] + floors + ours
        why_no_bpftrace = "skipped (--no-bpftrace)" if args.no_bpftrace \
            else ensure_bpftrace()
        bts = []
        if why_no_bpftrace is None:
            bts = [Bpftrace(name) for name in BPFTRACE_PROGS]
            configs += bts
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
            "sampled": {c.name: c.sampled for c in ours},
            "snapshot_every_s": SNAPSHOT_S, "warm_s": WARM_S,
            "attach_s": dict({c.name: statistics.median(c.attach_s)
                              for c in ours},
                             **{b.name: statistics.median(b.attach_s)
                                for b in bts}),
            "attach_s_max": {c.name: max(c.attach_s) for c in ours},
            "memory": {"full": memory(True), "counts": memory(False),
                       "bpftrace_rss_kib": {b.name: max(b.rss_kib)
                                            for b in bts}},
            "max_rate": {"full": max_rate(exe, args.calls * 5),
                         "full_every": max_rate(exe, args.calls * 5,
                                                latency_sample=1),
                         "counts": max_rate(exe, args.calls * 5,
                                            latency=False)},
            "prog_stats": None if args.no_prog_stats else
            prog_stats(exe, floors + ours, args.calls, args.cpu),
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
