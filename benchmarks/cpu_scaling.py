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

What fdinfo's memlock counts depends on the kernel: 6.1 counts every
map at its full size (the hash maps without preallocation too, as if
full), newer kernels (6.18 here) what the map uses now.  A per-CPU
array counts value size x entries x possible CPUs in both, so the
growth from one CPU count to the next is the same figure.  Each guest
runs chrooted in a cached export of / as tools/vmtest.py's do; under
TCG on 2 host cores a 64-vCPU guest takes about 12 minutes to boot and
measure (--timeout, default 1800 s a guest).
"""

import argparse
import ctypes
import json
import os
import re
import shlex
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


class _MapInfo(ctypes.Structure):
    # The head of struct bpf_map_info (the kernel fills what fits).
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16)]


def _map_name(fd):
    from sysretstat.kernel import libbpf
    info = _MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    if libbpf.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info),
                                           ctypes.byref(size)) < 0:
        return "?"
    return info.name.decode(errors="replace") or "?"


def memlock():
    """{map id: (name, bytes locked)} of this process's BPF maps (a map
    held by two fds counts once)."""
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
            out[mid] = (_map_name(int(fd)), int(m.group(1)))
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
                "memlock_bytes": sum(b for _, b in mem.values()),
                "maps": len(mem),
                "memlock_by_map": sorted(
                    ([n, b] for n, b in mem.values()),
                    key=lambda x: -x[1])[:8],
                "read_ms_median": round(statistics.median(reads) * 1e3, 2),
                "snapshot_ms_median": round(statistics.median(snaps) * 1e3,
                                            2)}
    finally:
        col.stop()
        col.close()


def _vmtest():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "vmtest", os.path.join(ROOT, "tools", "vmtest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# After tools/vmtest.py's CACHED_ROOT (Python runs chrooted in a second
# export of / mounted with cache=loose: vng's own root mount reads every
# file anew, seconds per Python start under TCG).
GUEST_RUN = """\
export PYTHONDONTWRITEBYTECODE=1
echo "cpu_scaling: $(uname -r), $(nproc) CPUs online, possible $(cat /sys/devices/system/cpu/possible)"
{py} {me} --inner {out}
echo "cpu_scaling: inner exit $?"
"""


def in_guest(kernel, cpus, tmp, timeout, log=sys.stderr):
    vm = _vmtest()
    out = os.path.join(tmp, "g%d.json" % cpus)
    script = os.path.join(tmp, "guest%d.sh" % cpus)
    with open(script, "w") as f:
        f.write((vm.CACHED_ROOT + GUEST_RUN).format(
            log=shlex.quote(os.path.join(tmp, "guest%d.log" % cpus)),
            tag=vm.CACHED_TAG,
            script=shlex.quote(script), root=shlex.quote(ROOT),
            py=shlex.quote(sys.executable),
            me=shlex.quote(os.path.abspath(__file__)),
            out=shlex.quote(out)))
    qemu = ("-fsdev local,id=%s,path=/,security_model=none,readonly=on,"
            "multidevs=remap -device virtio-9p-pci,fsdev=%s,mount_tag=%s"
            % ((vm.CACHED_TAG,) * 3))
    cmd = [vm.vng(), "--run", kernel, "--disable-kvm", "--force-9p",
           "--cpus", str(cpus), "--memory", "4G", "--rwdir", tmp,
           "--cwd", ROOT, "--append", "no5lvl", "--qemu-opts=" + qemu,
           "--exec", "bash %s" % shlex.quote(script)]
    print("cpu_scaling: booting %s with %d vCPUs (TCG)" % (
        os.path.basename(kernel), cpus), file=log, flush=True)
    t0 = time.monotonic()
    done = vm._run_session(cmd, timeout)
    secs = time.monotonic() - t0
    glog = vm._read(os.path.join(tmp, "guest%d.log" % cpus)) or ""
    if done is None or not os.path.exists(out):
        why = ("no result within %d s" % timeout if done is None else
               "no result (vng exit %d)" % done[0])
        tail = glog.strip().splitlines()[-8:] or (
            done[1].strip().splitlines()[-8:] if done else [])
        raise RuntimeError("guest with %d vCPUs: %s; its log ends:\n  %s"
                           % (cpus, why, "\n  ".join(tail) or "(empty)"))
    print("cpu_scaling: %d vCPUs done in %.0f s" % (cpus, secs), file=log,
          flush=True)
    with open(out) as f:
        r = json.load(f)
    r["guest_seconds"] = round(secs)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guest", type=int, nargs="*", metavar="CPUS",
                    help="measure in qemu guests with these vCPU counts")
    ap.add_argument("--kernel", default=None,
                    help="guest kernel (default: the newest /boot/vmlinuz-*)")
    ap.add_argument("--timeout", type=int, default=1800,
                    help="seconds for one guest's boot and measure")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--inner", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        r = measure()   # no file unless it succeeded
        with open(args.inner, "w") as f:
            json.dump(r, f)
        return 0
    if os.geteuid() != 0:
        sys.exit("cpu_scaling.py: needs root (BPF)")
    results, failed = [], []
    if args.guest:
        kernel = args.kernel or sorted(
            p for p in (os.path.join("/boot", n) for n in os.listdir("/boot"))
            if os.path.basename(p).startswith("vmlinuz-"))[-1]
        with tempfile.TemporaryDirectory(prefix="cpu-scaling-") as tmp:
            for n in args.guest:
                try:
                    r = in_guest(kernel, n, tmp, args.timeout)
                except RuntimeError as e:
                    # Keep what the other counts gave.
                    print("cpu_scaling: %s" % e, file=sys.stderr)
                    failed.append(n)
                    continue
                r["where"] = "qemu TCG guest"
                results.append(r)
        # TCG slows every guest, the more vCPUs the more: their times
        # compare with the fewest-CPU guest's of the same run.
        if results:
            base = min(results, key=lambda r: r["possible_cpus"])
            for r in results:
                for k in ("read_ms_median", "snapshot_ms_median"):
                    r[k[:-len("_ms_median")] + "_vs_%dcpu" %
                      base["possible_cpus"]] = round(
                          r[k] / base[k], 2) if base[k] else None
    else:
        r = measure()
        r["where"] = "this machine"
        results.append(r)
    print("%-16s %-16s %5s %12s %10s %13s %s" % (
        "where", "kernel", "cpus", "memlock MiB", "read ms", "snapshot ms",
        "relative read/snapshot"))
    for r in results:
        rel = ["%s %.2f" % (k, v) for k, v in sorted(r.items())
               if "_vs_" in k and v is not None]
        print("%-16s %-16s %5d %12.2f %10.2f %13.2f %s" % (
            r["where"][:16], r["kernel"][:16], r["possible_cpus"],
            r["memlock_bytes"] / 2 ** 20, r["read_ms_median"],
            r["snapshot_ms_median"], ", ".join(rel)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if failed:
        print("cpu_scaling: no result for %s vCPUs" %
              " ".join(map(str, failed)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
