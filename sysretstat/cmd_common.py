"""Options and helpers shared by several commands."""

import signal
import threading

import click

from .errors import UsageError


def pid_option(f):
    return click.option("-p", "--pid", "pids", type=int, multiple=True,
                        metavar="PID",
                        help="Trace this process and its threads "
                             "(repeatable).")(f)


def interval_option(default=1.0):
    def deco(f):
        return click.option("-i", "--interval", type=float, default=default,
                            show_default=True, metavar="SECONDS",
                            help="Seconds between snapshots.")(f)
    return deco


def latency_option(f):
    return click.option("--no-latency", "no_latency", is_flag=True,
                        help="Counts only: no sys_enter program, no "
                             "latency histograms (lowest overhead).")(f)


def cgroup_option(f):
    return click.option("--cgroup", default="", metavar="PATH",
                        help="Only tasks in this cgroup v2 subtree, absolute "
                             "or relative to the cgroup2 mount (filtered in "
                             "the kernel).")(f)


def check_interval(interval):
    if not interval > 0:
        raise UsageError("interval must be a positive number of seconds")


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
