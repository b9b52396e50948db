#!/usr/bin/env python3
"""What the kernel side costs in memory, and one interval's read in time,
as the CPU count grows.

Maps are sized by the kernel's possible CPUs, so a qemu guest with more
vCPUs than the host has cores shows the memory of a bigger machine
exactly; its read time is slowed by the emulation (TCG), so the
figures to compare are the guests' with each other.

    sudo python3 benchmarks/cpu_scaling.py               # this machine
    sudo python3 benchmarks/cpu_scaling.py --guest 2 16 64 \\
        --kernel /boot/vmlinuz-6.1.0-57-amd64 --json /tmp/scaling.json

Inside (or here), with a collection attached in full mode: a load runs
a mix of 40 syscalls on every CPU (so that every CPU has state in every
slot used), then 7 reads are timed (Tracer.read, and the whole
Collector.snapshot); the locked memory is the sum of `memlock` over the
collection's BPF maps (fdinfo), also shown per map.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Syscalls without side effects, called with bad arguments where that is
# enough (EFAULT, EBADF): 40 slots in use, as on a busy host.
LOAD = r"""
import os, sys
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
NRS = [39, 110, 102, 104, 107, 108, 186, 24, 63, 97, 98, 99, 100, 96, 201,
       228, 229, 3, 8, 5, 4, 6, 0, 1, 17, 18, 19, 20, 72, 32, 33, 21, 89,
       79, 80, 161, 95, 121, 124, 111]
cpus = sorted(os.sched_getaffinity(0))
kids = []
for c in cpus:
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {c})
        for _ in range(int(sys.argv[1])):
            for nr in NRS:
                libc.syscall(nr, -1, 0, 0)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
"""


def memlock():
    """{map name: bytes locked} of this process's BPF maps."""
    out = {}
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open("/proc/self/fdinfo/" + fd) as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"memlock:\s+(\d+)", text)
        if m and "map_type" in text:
            mid = re.search(r"map_id:\s+(\d+)", text).group(1)
            out[mid] = int(m.group(1))
    return out


def measure(rounds=7, calls=200):
    from sysretstat.kernel import bpf
    from sysretstat.kernel.tracer import Options
    from sysretstat.source.collector import Collector
    col = Collector(Options()).start()
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".py") as f:
            f.write(LOAD)
            f.flush()
            subprocess.run([sys.executable, f.name, str(calls)], check=True)
        col.snapshot()
        reads, snaps = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            col.tracer.read()
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            col.snapshot()
            snaps.append(time.perf_counter() - t0)
        mem = memlock()
        return {"possible_cpus": bpf.possible_cpus(),
                "kernel": os.uname().release,
                "memlock_bytes": sum(mem.values()),
                "memlock_by_map": sorted(mem.values(), reverse=True)[:8],
                "read_ms_median": round(statistics.median(reads) * 1e3, 2),
                "snapshot_ms_median": round(statistics.median(snaps) * 1e3,
                                            2)}
    finally:
        col.stop()
        col.close()


def in_guest(kernel, cpus, tmp):
    out = os.path.join(tmp, "g%d.json" % cpus)
    cmd = ("cd %s && %s %s --inner %s" % (ROOT, sys.executable,
                                         os.path.abspath(__file__), out))
    subprocess.run(["vng", "--run", kernel, "--disable-kvm", "--force-9p",
                    "--cpus", str(cpus), "--memory", "4G", "--rwdir", tmp,
                    "--append", "no5lvl", "--exec", cmd], check=True,
                   capture_output=True, timeout=1800)
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guest", type=int, nargs="*", metavar="CPUS",
                    help="measure in qemu guests with these vCPU counts")
    ap.add_argument("--kernel", default=None,
                    help="guest kernel (default: the newest /boot/vmlinuz-*)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--inner", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        with open(args.inner, "w") as f:
            json.dump(measure(), f)
        return 0
    if os.geteuid() != 0:
        sys.exit("cpu_scaling.py: needs root (BPF)")
    results = []
    if args.guest:
        kernel = args.kernel or sorted(
            p for p in (os.path.join("/boot", n) for n in os.listdir("/boot"))
            if os.path.basename(p).startswith("vmlinuz-"))[-1]
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.guest:
                r = in_guest(kernel, n, tmp)
                r["where"] = "qemu TCG guest"
                results.append(r)
    else:
        r = measure()
        r["where"] = "this machine"
        results.append(r)
    print("%-16s %5s %12s %10s %13s" % ("where", "cpus", "memlock MiB",
                                        "read ms", "snapshot ms"))
    for r in results:
        print("%-16s %5d %12.2f %10.2f %13.2f" % (
            r["where"][:16], r["possible_cpus"],
            r["memlock_bytes"] / 2 ** 20, r["read_ms_median"],
            r["snapshot_ms_median"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
