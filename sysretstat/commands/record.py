"""`sysretstat record`: collect into a record file, interval by interval."""

import sys
import time

import click

from sysretstat import record
from sysretstat.commands.common import (StopFlag, cgroup_option,
                                        check_duration, check_interval,
                                        interval_option, latency_option,
                                        latency_options,
                                        pid_option)
from sysretstat.source.collector import Collector
from sysretstat.source.launch import GatedCommand
from sysretstat.ticker import Ticker
from sysretstat.model.quietgc import FrameGC
from sysretstat.render.safe import safe
from sysretstat.kernel.tracer import Options


@click.command("record", context_settings={"ignore_unknown_options": False})
@click.option("-o", "--output", default="sysretstat.data", show_default=True,
              metavar="FILE", help="Record file, mode 0600 (an existing one "
                                   "becomes FILE.old once the new one "
                                   "holds a complete interval).")
@click.option("-d", "--duration", type=float, metavar="SECONDS",
              help="Stop after this many seconds.")
@interval_option(1.0)
@pid_option
@click.option("-c", "--comm", default="", metavar="COMM",
              help="Only tasks with this command name (filtered in the "
                   "kernel).")
@cgroup_option
@latency_option
@click.option("--fsync", is_flag=True,
              help="fsync the file after each interval (survives a power "
                   "cut, costs a disk flush per interval).")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress line and no summary on stderr.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(output, duration, interval, pids, comm, cgroup, no_latency,
            latency_sample, sample_every, fsync, quiet, command):
    """Record SYSRET/IRET returns into FILE until SIGINT/SIGTERM, the end
    of -d SECONDS, or the end of COMMAND.

    System-wide unless -p, -c, --cgroup or a COMMAND narrows it.  With
    `-- COMMAND [ARG...]`, COMMAND is started, traced with all its
    descendants (and only them, unless -p adds more), and recording stops
    when it exits.  Each interval is on disk as soon as it ends, so a
    recording cut short (SIGKILL, full disk) reads up to its last
    complete interval.
    """
    check_interval(interval)
    check_duration(duration)
    latency = latency_options(no_latency, latency_sample, sample_every)
    # Before anything is loaded or started: a bad FILE fails fast.
    record.check_writable(output)
    cmd = None
    if command:
        cmd = GatedCommand(list(command))
    try:
        return _record(output, duration, interval, pids, comm, cgroup,
                       latency, fsync, quiet, cmd)
    finally:
        if cmd is not None and cmd.returncode is None:
            cmd.kill()


def _record(output, duration, interval, pids, comm, cgroup, latency,
            fsync, quiet, cmd):
    opts = Options(pids=tuple(pids), comm=comm, cgroup=cgroup,
                   filter=cmd is not None, **latency)
    col = Collector(opts, command=" ".join(cmd.argv) if cmd else None)
    stop = StopFlag()
    writer = None
    progress = Progress(sys.stderr, duration, quiet)
    try:
        col.start()
        if cmd is not None:
            col.add_pid(cmd.pid, follow=True)
        meta = dict(col.snapshot().meta, interval_s=interval)
        writer = record.Writer(output, fsync=fsync,
                               notify=progress.note)
        writer.begin(meta)
        # The first interval counts from attach, so nothing is missed.
        prev = None
        if cmd is not None:
            cmd.release()
        # After a stall (suspend, a slow read) the ticker skips missed
        # ticks rather than have a burst of empty intervals written.
        ticker = Ticker(interval, stop)
        end = ticker.started + duration if duration is not None else None
        gcf = FrameGC()
        while not stop.is_set():
            most = None if end is None else end - time.monotonic()
            if cmd is not None:
                # Poll the command often so that the end is prompt.
                most = 0.05 if most is None else min(most, 0.05)
            ticker.wait(most)
            done = (cmd is not None and cmd.poll() is not None) or (
                end is not None and time.monotonic() >= end)
            if done or stop.is_set():
                break
            if ticker.due():
                with gcf.frame():
                    snap = col.snapshot()
                    writer.interval(snap.delta(prev), snap)
                progress.show(snap)
                prev = snap
                ticker.advance()
        final = col.stop()
        writer.interval(final.delta(prev), final)
        writer.close(dict(final.meta, interval_s=interval), final)
        nbytes = writer.bytes
        writer = None
        progress.done(final, output, nbytes)
    finally:
        stop.restore()
        if writer is not None:
            # Leave it as a cut file: readable up to the last interval.
            writer.close()
        progress.clear()
        col.close()
    if cmd is not None:
        rc = cmd.wait()
        if rc != 0 and not quiet:
            sys.stderr.write("sysretstat: %s exited with status %d\n"
                             % (safe(cmd.argv[0]), rc))
    return 0


class Progress:
    """One live line on stderr (elapsed, returns, IRET share), only when
    stderr is a terminal; a one-line summary at the end."""

    def __init__(self, stream, duration=None, quiet=False):
        self.stream = stream
        self.duration = duration
        self.quiet = quiet
        self.tty = not quiet and stream.isatty()
        self.shown = False

    def line(self, snap):
        t = snap.totals
        el = snap.meta.get("duration_s") or 0.0
        of = "/%gs" % self.duration if self.duration else ""
        return ("recording: %.1fs%s  %d returns  %d IRET (%.2f%%)"
                % (el, of, t.returns, t.iret, 100 * t.iret_share))

    def show(self, snap):
        if not self.tty:
            return
        self.stream.write("\r\033[K" + self.line(snap))
        self.stream.flush()
        self.shown = True

    def note(self, message, always=False):
        """A line about the files (rotation); one that says something
        was deleted shows even with -q."""
        if self.quiet and not always:
            return
        self.clear()
        self.stream.write("sysretstat: %s\n" % safe(message))
        self.stream.flush()

    def clear(self):
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def done(self, snap, path, nbytes):
        self.clear()
        if self.quiet:
            return
        t = snap.totals
        self.stream.write("sysretstat: recorded %d returns, %d IRET (%.2f%%) "
                          "in %.1fs to %s (%s)\n"
                          % (t.returns, t.iret, 100 * t.iret_share,
                             snap.meta.get("duration_s") or 0, safe(path),
                             _size(nbytes)))


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" if unit == "bytes" else "%.1f %s") % (n, unit)
        n /= 1024.0
