#!/usr/bin/env python3
"""BPF time per program run when threads switch a lot.

A context switch is where sysretstat writes a thread's cached state
back (sched_switch): counts, and the latency buckets it used.  This runs
two processes bouncing a byte over pipes on one CPU (every read blocks:
two switches per round trip; a getppid and, now and then, a 200 us
sleep spread their latency over many buckets) under the collector with
the kernel's BPF statistics on, and prints each program's mean run time.

Usage (root):  python3 benchmarks/switch_cost.py [-n ROUNDS] [--repeat N]
To compare two trees, run it from each (PYTHONPATH picks the package).
The statistics add two clock reads to every run: compare figures from
one machine and one run, not with overhead.py's.
"""

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PINGPONG_C = r"""
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int n = atoi(argv[1]), a[2], b[2];
	char c = 0;
	struct timespec ts = {0, 200000};

	if (pipe(a) || pipe(b))
		return 1;
	pid_t p = fork();
	for (int i = 0; i < n; i++) {
		syscall(SYS_getppid);
		if (i % 1000 == 0)
			nanosleep(&ts, NULL);
		if (p == 0) {
			if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
				return 1;
		} else {
			if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
				return 1;
		}
	}
	if (p)
		wait(NULL);
	return 0;
}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--rounds", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("switch_cost: needs root (BPF)")
    from sysretstat.source.collector import Collector
    from sysretstat.kernel.tracer import Options
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "pingpong.c"), os.path.join(tmp, "pp")
        with open(src, "w") as f:
            f.write(PINGPONG_C)
        subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
        for _ in range(args.repeat):
            col = Collector(Options(bpf_stats=True)).start()
            try:
                before = col.tracer.run_stats()
                subprocess.run(["taskset", "-c", "0", exe, str(args.rounds)],
                               check=True)
                after = col.tracer.run_stats()
            finally:
                col.close()
            print("  ".join(
                "%s %.0f ns x %d" % (p, (after[p][0] - before[p][0]) / n, n)
                for p in ("sr_switch", "sr_sys_exit", "sr_sys_enter")
                for n in (max(1, after[p][1] - before[p][1]),)))


if __name__ == "__main__":
    main()
