#!/usr/bin/env python3
"""CPU time of one `sysretstat top` frame with thousands of live processes.

Spawns N processes (default 5000) that each make a syscall about twice
per second, so that every interval has N active rows, then runs the
full-screen `sysretstat top` in a detached tmux pane (80x24) with the
hidden --frame-log option.  Each logged frame is the tool's own CPU
time (time.process_time) to read the kernel maps, build the snapshot
and its interval delta, render the view and paint it with curses.

Usage (root):  python3 benchmarks/top_frame.py [-n 5000] [-f 8] [-i 1]
Prints one line per frame, then the median and maximum over the second
half of the frames (by then every process has made a syscall).
"""

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A parent that forks N children that each make a raw getppid and sleep,
# forever.  Active: 400-600 ms sleeps, so every interval has about N
# active rows.  Sparse: 8-12 s sleeps, so every process is known after
# a few seconds but only ~10% are active in an interval, closer to a
# real host.  Idle: 5 as in active, the rest blocked in a read
# (benchmarks/interval_real.py).  SIGTERM to the group ends it.
SWARM_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int n = atoi(argv[1]);
	/* sparse: one syscall every ~10 s, so ~10% of the rows are active
	 * in an interval; active: one every ~0.5 s, every row is. */
	long base = argc > 2 && argv[2][0] == 's' ? 8000 : 400;
	long spread = argc > 2 && argv[2][0] == 's' ? 4000 : 200;
	/* idle: the first 5 as in active, the rest block in a read of a
	 * pipe nothing writes (no syscall returns), until the parent ends. */
	int idle = argc > 2 && argv[2][0] == 'i', fds[2];
	setpgid(0, 0);
	if (idle && pipe(fds) != 0)
		return 1;
	for (int i = 0; i < n; i++) {
		pid_t p = fork();
		if (p == 0) {
			char c;
			if (idle)
				close(fds[1]);
			if (idle && i >= 5) {
				while (read(fds[0], &c, 1) < 0)
					;
				_exit(0);
			}
			long ms = base + (i * 7919L) % spread;
			struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
			for (;;) {
				syscall(SYS_getppid);
				nanosleep(&ts, NULL);
			}
		}
		if (p < 0)
			return 1;
	}
	write(1, "ready\n", 6);
	pause();
	return 0;
}
"""


def build_swarm(tmp):
    src = os.path.join(tmp, "swarm.c")
    exe = os.path.join(tmp, "swarm")
    with open(src, "w") as f:
        f.write(SWARM_C)
    subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
    return exe


@contextlib.contextmanager
def swarm(exe, n, mode):
    """N processes of `mode` (SWARM_C: sparse, active or idle), all
    spawned, for the duration of the block; then the whole group ends."""
    p = subprocess.Popen([exe, str(n), mode], stdout=subprocess.PIPE,
                         text=True)
    try:
        # SWARM_C's first call is setpgid: the group is there once it
        # says anything (or exits).
        if p.stdout.readline().strip() != "ready":
            sys.exit("top_frame: could not spawn %d processes" % n)
        yield p
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        p.wait()
        p.stdout.close()


def run(exe, mode, args, tmp):
    """Frames of one top run next to N processes: [(data s, view s,
    active rows, known processes)]."""
    log = os.path.join(tmp, "frames.%s.log" % mode)
    sock = "top_frame_%d" % os.getpid()
    with swarm(exe, args.processes, mode):
        cmd = "cd %s && PYTHONPATH=%s %s -m sysretstat top -i %g -n %d " \
              "--frame-log %s" % (ROOT, ROOT, sys.executable, args.interval,
                                  args.frames, log)
        try:
            subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x",
                            "80", "-y", "24", cmd], check=True)
            deadline = time.monotonic() + args.frames * args.interval + 60
            while time.monotonic() < deadline:
                if subprocess.run(["tmux", "-L", sock, "has-session"],
                                  capture_output=True).returncode != 0:
                    break
                time.sleep(0.5)
        finally:
            subprocess.run(["tmux", "-L", sock, "kill-server"],
                           capture_output=True)
    frames = []
    with open(log) as f:
        for line in f:
            data, view, rows, procs = line.split()
            frames.append((float(data), float(view), int(rows), int(procs)))
    return frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--processes", type=int, default=5000)
    ap.add_argument("-f", "--frames", type=int, default=16)
    ap.add_argument("-i", "--interval", type=float, default=1.0)
    ap.add_argument("--mode", choices=("sparse", "active", "both"),
                    default="both")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("top_frame: needs root (BPF)")
    if shutil.which("tmux") is None:
        sys.exit("top_frame: needs tmux")
    tmp = tempfile.mkdtemp(prefix="top_frame.")
    exe = build_swarm(tmp)
    modes = ("sparse", "active") if args.mode == "both" else (args.mode,)
    for mode in modes:
        frames = run(exe, mode, args, tmp)
        for i, (data, view, rows, procs) in enumerate(frames):
            print("%s frame %d: data %.1f ms + view %.1f ms CPU, %d active "
                  "of %d process rows" % (mode, i, data * 1e3, view * 1e3,
                                          rows, procs))
        # Sparse processes are all known only after their first sleep:
        # count the second half of the run.
        steady = frames[len(frames) // 2:] or frames
        tot = [d + v for d, v, _, _ in steady]
        print("%s: %d processes, median frame %.1f ms CPU (data %.1f, view "
              "%.1f), max %.1f ms (second half of the frames)"
              % (mode, args.processes, statistics.median(tot) * 1e3,
                 statistics.median(d for d, _, _, _ in steady) * 1e3,
                 statistics.median(v for _, v, _, _ in steady) * 1e3,
                 max(tot) * 1e3))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
