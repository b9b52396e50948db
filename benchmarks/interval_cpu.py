#!/usr/bin/env python3
"""CPU of one interval's user space with N active processes, no BPF.

A synthetic task dump of N single-thread processes, every one active in
every interval (a thread record and a process record with two latency
buckets each), goes through what a live read does after the map reads:
the dump parser (kernel/tracer.py), the collector (source/collector.py,
fed RawReads by a fake tracer), the interval delta and then either top's
rows (lazy delta, build_rows, a screenful's percentiles), the whole
delta as the daemon takes it (every table), or record's interval: the
whole delta and the snapshot written by the real record.Writer to a
file in a temporary directory, checkpoints included (with 5,000 active
one falls every few intervals: CHECKPOINT_BYTES of deltas).  Record's
line also gives the mean, which counts the checkpoint intervals the
median passes over, and the bytes written per interval.

Usage:  python3 benchmarks/interval_cpu.py [-n 5000] [-i 12] [--mode M]
Run it from a checkout (it imports the tree it is in); compare two
trees in one run of alternations, never two timed runs apart.  Each
mode runs in a process of its own, as top and the daemon do: run after
the other in one process, the second ran 10 to 20% slower, on a heap
the first had left in pieces (and with its last rows still held).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sysretstat import record  # noqa: E402
from sysretstat.kernel import abi, tracer  # noqa: E402
from sysretstat.kernel.tracer import Options, RawRead  # noqa: E402
from sysretstat.model.quietgc import FrameGC  # noqa: E402
from sysretstat.source.collector import Collector  # noqa: E402
from sysretstat.top import rows as top_rows  # noqa: E402
from sysretstat.top.state import ViewState  # noqa: E402


class Fake:
    guard = {"task_size_max": 1 << 47, "xen_pv": False, "fred": False,
             "la57": False, "pre_6_7": False}
    attached, obj = ["sr_sys_exit"], None

    def __init__(self, dumps):
        self.dumps = dumps

    def open(self):
        return self

    attach = detach = close = open

    def run_stats(self):
        return {}

    def set_sample_shifts(self, shifts):
        pass

    def read(self):
        threads, procs = tracer._parse_dump(self.dumps.pop(0))
        total = [sum(t[5][0] for t in threads)] + [0] * (abi.NR_OUTCOMES - 1)
        return RawRead([{39: total}], {}, threads, procs, [], [], {}, [])


def dump(n, k):
    parts = []
    for pid in range(1000, 1000 + n):
        t = abi.ThreadRec(kind=abi.REC_THREAD, tid=pid, tgid=pid,
                          start_ns=pid, leader_start_ns=pid, comm=b"swarm")
        t.counts.n[0] = k * 3 + pid % 5
        parts.append(bytes(t))
        h = abi.ProcDump(kind=abi.REC_PROC, tgid=pid, start_ns=pid,
                         comm=b"swarm")
        h.n[0], h.n[1] = 2, 1
        h.nz[0][0], h.nz[1][0] = 3 << (k % 4), 1
        h.sum_ns[0], h.sum_ns[1] = 300 * k, 900 * k
        parts.append(bytes(h) + (k).to_bytes(8, "little") * 3)
    return b"".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--processes", type=int, default=5000)
    ap.add_argument("-i", "--intervals", type=int, default=12)
    ap.add_argument("--mode", choices=("top", "daemon", "record"),
                    help="only this one, in this process")
    args = ap.parse_args()
    if args.mode is None:
        for mode in ("top", "daemon", "record"):
            sys.stdout.flush()
            subprocess.run([sys.executable, os.path.abspath(__file__),
                            "-n", str(args.processes),
                            "-i", str(args.intervals), "--mode", mode],
                           check=True)
        return
    mode = args.mode
    if mode == "record":
        with tempfile.TemporaryDirectory() as d:
            return run(args, mode, os.path.join(d, "bench.data"))
    return run(args, mode)


def run(args, mode, path=None):
    fake = Fake([dump(args.processes, k)
                 for k in range(1, args.intervals + 2)])
    col = Collector(Options(latency=True), tracer=fake,
                    clock=iter(range(10 ** 6)).__next__)
    col.start()
    prev = col.snapshot()
    writer = None
    if mode == "record":
        # As record does: meta first, then each interval's delta and
        # the snapshot after it (a checkpoint when one is due).
        writer = record.Writer(path)
        writer.begin(dict(prev.meta, interval_s=1.0))
    gcf = FrameGC()
    st = ViewState()
    cpu = []
    for _ in range(args.intervals):
        with gcf.frame():
            t0 = time.process_time()
            s = col.snapshot()
            if mode == "top":
                d = s.delta(prev, lazy=True)
                rows = top_rows.build_rows(d, st)
                for r in rows[:20]:
                    r.counts.lat[0].percentile(.99)
            elif mode == "record":
                writer.interval(s.delta(prev), s)
            else:
                d = s.delta(prev)
            cpu.append(time.process_time() - t0)
            prev = s
    steady = cpu[len(cpu) // 2:]
    extra = ""
    if writer is not None:
        nbytes = writer.bytes
        writer.close()
        extra = "; mean %.1f ms (checkpoints included), %.0f KB per " \
            "interval" % (statistics.mean(cpu) * 1e3,
                          nbytes / 1e3 / args.intervals)
    print("%s: %d active processes, median interval %.1f ms CPU "
          "(%.1f us per process)%s" % (
              mode, args.processes, statistics.median(steady) * 1e3,
              statistics.median(steady) * 1e6 / args.processes, extra))


if __name__ == "__main__":
    main()
