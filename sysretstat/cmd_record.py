"""`sysretstat record`: collect into a record file, interval by interval."""

import os
import sys
import time

import click

from . import recordfile
from .cmd_common import (StopFlag, check_interval, interval_option,
                         latency_option, pid_option)
from .collector import Collector
from .errors import UsageError
from .launch import GatedCommand
from .tracer import Options


@click.command("record", context_settings={"ignore_unknown_options": False})
@click.option("-o", "--output", default="sysretstat.data", show_default=True,
              metavar="FILE", help="Record file (an existing one becomes "
                                   "FILE.old).")
@click.option("-d", "--duration", type=float, metavar="SECONDS",
              help="Stop after this many seconds.")
@interval_option(1.0)
@pid_option
@click.option("-c", "--comm", default="", metavar="COMM",
              help="Only tasks with this command name (filtered in the "
                   "kernel).")
@click.option("--cgroup", default="", metavar="PATH",
              help="Only tasks in this cgroup v2 subtree (filtered in the "
                   "kernel).")
@latency_option
@click.option("--fsync", is_flag=True,
              help="fsync the file after each interval.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(output, duration, interval, pids, comm, cgroup, no_latency,
            fsync, command):
    """Record SYSRET/IRET returns into FILE until SIGINT/SIGTERM, the end
    of -d SECONDS, or the end of COMMAND.

    With `-- COMMAND [ARG...]`, COMMAND is started, traced with all its
    descendants (and only them, unless -p adds more), and recording stops
    when it exits.
    """
    check_interval(interval)
    if duration is not None and duration <= 0:
        raise UsageError("duration must be a positive number of seconds")
    cmd = None
    if command:
        cmd = GatedCommand(list(command))
    try:
        return _record(output, duration, interval, pids, comm, cgroup,
                       no_latency, fsync, cmd)
    finally:
        if cmd is not None and cmd.returncode is None:
            cmd.kill()


def _record(output, duration, interval, pids, comm, cgroup, no_latency,
            fsync, cmd):
    opts = Options(pids=tuple(pids), latency=not no_latency, comm=comm,
                   cgroup=cgroup, filter=cmd is not None)
    col = Collector(opts, command=" ".join(cmd.argv) if cmd else None)
    stop = StopFlag()
    writer = None
    progress = Progress(sys.stderr)
    try:
        col.start()
        if cmd is not None:
            col.add_pid(cmd.pid, follow=True)
        prev = col.snapshot()
        writer = recordfile.Writer(output, prev.meta, fsync=fsync)
        writer.interval(prev)      # what happened before the first tick
        if cmd is not None:
            cmd.release()
        t0 = time.monotonic()
        next_tick = t0 + interval
        while not stop.is_set():
            now = time.monotonic()
            end = t0 + duration if duration is not None else None
            wake = min(next_tick, end) if end is not None else next_tick
            if cmd is not None:
                # Poll the command often so that the end is prompt.
                wake = min(wake, now + 0.05)
            stop.wait(max(0.0, wake - now))
            done = (cmd is not None and cmd.poll() is not None) or (
                end is not None and time.monotonic() >= end)
            if done or stop.is_set():
                break
            if time.monotonic() >= next_tick:
                snap = col.snapshot()
                writer.interval(snap.delta(prev))
                progress.show(snap)
                prev = snap
                next_tick += interval
        final = col.stop()
        writer.interval(final.delta(prev))
        writer.close(final.meta)
        writer = None
        progress.done(final, output)
    finally:
        stop.restore()
        if writer is not None:
            writer.close()
        col.close()
    if cmd is not None:
        rc = cmd.wait()
        if rc != 0:
            sys.stderr.write("sysretstat: %s exited with status %d\n"
                             % (cmd.argv[0], rc))
    return 0


class Progress:
    """One live line on stderr, when stderr is a terminal."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()

    def show(self, snap):
        if not self.tty:
            return
        t = snap.totals
        self.stream.write("\r\033[Krecording: %6.1fs  %d returns  "
                          "%.2f%% IRET" % (snap.meta.get("duration_s", 0),
                                           t.returns, 100 * t.iret_share))
        self.stream.flush()

    def done(self, snap, path):
        t = snap.totals
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write("sysretstat: recorded %d returns (%.2f%% IRET) "
                          "in %.1fs to %s\n"
                          % (t.returns, 100 * t.iret_share,
                             snap.meta.get("duration_s", 0), path))
