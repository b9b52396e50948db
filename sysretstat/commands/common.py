"""Options and helpers shared by several commands."""

import math
import signal
import threading

import click

from sysretstat.errors import UsageError
from sysretstat.source.sampling import shift_of


# Linux's PID_MAX_LIMIT: no pid is larger (and a larger one does not fit
# the kernel's pid_t).
PID_MAX = 1 << 22
# A shorter interval spends the CPU on reading maps, not on the host.
INTERVAL_MIN = 0.01
INTERVAL_MAX = 86400.0
DURATION_MAX = 10 * 365 * 86400.0


def pid_option(f):
    return click.option("-p", "--pid", "pids",
                        type=click.IntRange(1, PID_MAX), multiple=True,
                        metavar="PID",
                        help="Trace this process and its threads "
                             "(repeatable).")(f)


def interval_option(default=1.0):
    def deco(f):
        return click.option("-i", "--interval", type=float, default=default,
                            show_default=True, metavar="SECONDS",
                            help="Seconds between snapshots (0.01 to "
                                 "86400).")(f)
    return deco


def latency_option(f):
    """--no-latency, --latency-sample N, and (for tests) sampling every
    syscall: see latency_options()."""
    f = click.option("--sample-every-syscall", "sample_every", is_flag=True,
                     hidden=True,
                     help="(testing) Sample every syscall at the "
                          "--latency-sample rate, hot or not.")(f)
    f = click.option("--latency-sample", "latency_sample", type=int,
                     default=64, show_default=True, metavar="N",
                     help="Time 1 in N calls of syscalls that are hot and "
                          "almost never take IRET (every call of the "
                          "rest); 1 times every call.  A power of two. "
                          "Every return is counted whatever N.")(f)
    return click.option("--no-latency", "no_latency", is_flag=True,
                        help="Counts only: no sys_enter program, no "
                             "latency histograms (lowest overhead).")(f)


def latency_options(no_latency, latency_sample, sample_every):
    """The tracer Options of latency_option's flags."""
    try:
        shift_of(latency_sample)
    except ValueError as e:
        raise UsageError("--latency-sample %s: not %s"
                         % (latency_sample, e))
    return {"latency": not no_latency, "latency_sample": latency_sample,
            "sample_every_syscall": sample_every}


def cgroup_option(f):
    return click.option("--cgroup", default="", metavar="PATH",
                        help="Only tasks in this cgroup v2 subtree, absolute "
                             "or relative to the cgroup2 mount (filtered in "
                             "the kernel).")(f)


def check_interval(interval):
    if not interval > 0:
        raise UsageError("interval must be a positive number of seconds")
    if not INTERVAL_MIN <= interval <= INTERVAL_MAX:
        raise UsageError("interval must be between %g and %g seconds"
                         % (INTERVAL_MIN, INTERVAL_MAX))


def check_duration(duration):
    if duration is None:
        return
    if not duration > 0:
        raise UsageError("duration must be a positive number of seconds")
    if math.isinf(duration) or duration > DURATION_MAX:
        raise UsageError("duration must be at most %g seconds"
                         % DURATION_MAX)


class StopFlag:
    """Set by SIGINT/SIGTERM; wait() sleeps until timeout or stop."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        self.event = threading.Event()
        self.signum = None
        self._old = {}
        for s in signals:
            self._old[s] = signal.signal(s, self._on_signal)

    def _on_signal(self, signum, frame):
        self.signum = signum
        self.event.set()

    def set(self):
        self.event.set()

    def is_set(self):
        return self.event.is_set()

    def wait(self, timeout):
        return self.event.wait(timeout)

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)


def other_syscall_tracers():
    """(None or a warning, detail) about BPF programs other than ours on
    the syscall tracepoints: they run on every syscall, so they lengthen
    the durations sysretstat measures and bias bench's figures.  The
    detail says "unknown" where the links cannot be listed."""
    from sysretstat.kernel import progs
    try:
        found = progs.syscall_tracers()
    except OSError as e:
        return None, "cannot list BPF links: %s" % e.strerror
    if not found:
        return None, "no BPF links on the syscall tracepoints"
    where = ", ".join("%s (prog %d)" % (tp, prog) for _, prog, tp in found)
    return ("another tracer is attached to the syscall tracepoints: %s; "
            "it adds to every syscall measured" % where), where
