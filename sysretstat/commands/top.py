"""`sysretstat top`: live SYSRET/IRET rates, reasons and latency.

Data comes from a *feed* of intervals: Feed over this host's Collector,
or with --connect FleetFeed over running daemons (source/remote.py's
Fleet).  Each tick shows the difference between two snapshots, so every
figure is a rate over the last interval.
"""

import signal
import sys
import time

import click

from sysretstat.top import batch as top_batch, view as top_view
from sysretstat.top import rows as top_rows, state as top_state
from sysretstat.ticker import Ticker
from sysretstat.model.quietgc import FrameGC
from sysretstat.render.width import output_width
from sysretstat.commands.common import (StopFlag, check_interval,
                                        interval_option, latency_option,
                                        latency_options,
                                        pid_option)
from sysretstat.errors import UsageError


@click.command("top")
@pid_option
@interval_option(1.0)
@click.option("-b", "--batch", is_flag=True,
              help="Print a table every interval instead of the "
                   "full-screen view (the default when stdout is not a "
                   "terminal); it fits $COLUMNS or the terminal's "
                   "width as the screen does.")
@click.option("-n", "--iterations", type=click.IntRange(min=1),
              metavar="N", help="Stop after N intervals.")
@click.option("--json", "as_json", is_flag=True,
              help="Batch: one JSON document per interval (report schema, "
                   "interval deltas), one per line.")
@click.option("--by", type=click.Choice(top_state.VIEW_KEYS),
              default=None, help="Table shown first (default: process; "
                                 "host with --per-host); comm sums "
                                 "processes by command name, cgroup by "
                                 "cgroup v2 path.")
@click.option("--sort", type=click.Choice(top_state.SORT_KEYS),
              default="iret", show_default=True,
              help="Sort column (descending; id, name and reason "
                   "ascending).")
@click.option("--top", "top_n", type=click.IntRange(min=1), metavar="N",
              help="Batch: at most N rows per table (JSON: per table).")
@latency_option
@click.option("--bpf-stats/--no-bpf-stats", default=True, show_default=True,
              help="Show the tool's own BPF run time.  Enables the "
                   "kernel's BPF run-time statistics while top runs, which "
                   "adds two clock reads to every BPF program run on the "
                   "host.")
@click.option("--connect", "urls", multiple=True, metavar="URL",
              help="Show running `sysretstat daemon`s (repeatable; their "
                   "counts are merged) instead of tracing locally.  The "
                   "process, comm, thread and cgroup views need daemons "
                   "run with --expose-processes.")
@click.option("--per-host", is_flag=True,
              help="With --connect: add a table of hosts (view 6).")
@click.option("--frame-log", type=click.Path(dir_okay=False), hidden=True,
              help="Append each frame's CPU seconds and row count "
                   "(benchmarks/top_frame.py).")
def command(pids, interval, batch, iterations, as_json, by, sort, top_n,
            no_latency, latency_sample, sample_every, bpf_stats, urls,
            per_host, frame_log):
    """Live view of syscall returns: how many fall back to IRET, why,
    who causes them, and what each path's latency looks like.

    Keys in the full-screen view: Tab or 1-7 switch the table (process,
    comm, thread, syscall, cpu, 6 host with --per-host, cgroup), s/S
    choose the sort column, r reverses it, / filters by name or id, p
    pauses, arrows or j/k select, Enter opens the detail pane, h shows
    help, q quits.
    """
    check_interval(interval)
    latency = latency_options(no_latency, latency_sample, sample_every)
    if per_host and not urls:
        raise UsageError("--per-host needs --connect URL")
    if urls and pids:
        raise UsageError("-p cannot be combined with --connect (filter "
                         "on the daemon)")
    if by == "host" and not per_host:
        raise UsageError("--by host needs --per-host")
    views = top_state.VIEWS + (("host",) if per_host else ())
    state = top_state.ViewState(view=by or ("host" if per_host
                                           else "process"),
                               sort=sort, views=views, interval=interval)
    interactive = not (batch or as_json) and sys.stdout.isatty() and \
        sys.stdin.isatty()
    # A calibration measures this machine: daemons run on others, and
    # each serves its own (meta.iret_penalty).
    calibration = load_calibration() if not urls else None
    source = open_source(pids, latency, bpf_stats, urls)
    try:
        feed = FleetFeed(source, per_host, interval) if urls else \
            Feed(source, calibration)
        if interactive:
            return run_interactive(feed, state, interval, iterations,
                                   frame_log)
        return run_batch(feed, state, interval, iterations, as_json,
                         top_n)
    finally:
        source.close()


def load_calibration():
    """This host's calibration from `sysretstat bench`, or None: then
    the cost column is left out.  A bad file is a warning on stderr,
    before the screen is taken."""
    from sysretstat.penalty import calibration
    return calibration.load()


def open_source(pids, latency, bpf_stats, urls):
    if urls:
        from sysretstat.source.remote import Fleet
        return Fleet(list(urls))
    from sysretstat.source.collector import Collector
    from sysretstat.kernel.tracer import Options
    col = Collector(Options(pids=tuple(pids), bpf_stats=bpf_stats,
                            **latency))
    try:
        col.start()
    except BaseException:
        col.close()
        raise
    return col


class Feed:
    """Successive snapshots of this host's collector, as intervals.

    tick() takes a snapshot; delta is the interval since the previous
    one, cumulative the snapshot itself.  (hosts, one interval per host,
    is FleetFeed's: always None here.)
    """

    def __init__(self, source, calibration=None):
        self.source = source
        self.calibration = calibration
        self.warnings = []
        self.delta = self.cumulative = self.hosts = None
        self._prev = source.snapshot()

    def tick(self):
        snap = self.source.snapshot()
        self.delta = interval_delta(snap, self._prev)
        self.cumulative = self._prev = snap
        return self.delta


class FleetFeed:
    """The intervals of `top --connect`: each daemon's, merged.

    A daemon snapshots every few seconds (its -i), top draws every
    second: a frame's figures are the difference between a daemon's two
    latest snapshots, the same until it publishes the next, so that
    no frame reads 0/s for falling between two of them.  A daemon that
    cannot be read keeps its place, marked, and is retried; the view
    goes on with the others.  COST/s is each host's counts times its
    own calibration (FleetPenalty).
    """

    def __init__(self, fleet, per_host=False, interval=1.0):
        self.fleet = fleet
        self.per_host = per_host
        # A frame waits this long at most for daemons in flight.
        self.wait = min(fleet.timeout, max(0.05, interval / 2))
        self.delta = self.cumulative = self.hosts = None
        self.calibration = None
        self.warnings = []
        self._deltas = {}           # url -> (its cur, cur - prev)
        self._cum = (None, None)    # (ids of the curs, their merge)
        self._dt = interval
        # First contact waits for every daemon: a wrong URL is then one
        # line and an exit status, not a screen of unreachable hosts.
        deadline = time.monotonic() + fleet.timeout + 1
        fleet.poll(fleet.timeout)
        while fleet.pending() and time.monotonic() < deadline:
            fleet.poll(0.1)
        failed = fleet.failure()
        if failed:
            from sysretstat.errors import RemoteError
            raise RemoteError(failed)
        self._build()

    def tick(self):
        self.fleet.poll(self.wait)
        self._build()
        return self.delta

    def _build(self):
        from sysretstat.model.counts import Counts
        from sysretstat.model.snapshot import Snapshot
        from sysretstat.source.remote import (FleetPenalty, merge,
                                              merge_intervals)
        hosts = self.fleet.hosts
        deltas, cums, pens, shown, names = {}, {}, {}, {}, []
        for h in hosts:
            if h.cur is not None:
                cums[h.label] = h.cur
            pens[h.label] = h.penalty
            mark = None
            if h.down_since is not None:
                mark = "unreachable since %s" % time.strftime(
                    "%H:%M:%S", time.localtime(h.down_since))
            elif h.prev is None:
                mark = "first snapshot pending"
            else:
                got = self._deltas.get(h.url)
                if got is None or got[0] is not h.cur:
                    got = (h.cur, interval_delta(h.cur, h.prev))
                    self._deltas[h.url] = got
                deltas[h.label] = shown[h.label] = got[1]
            names.append(h.label if mark is None else
                         "%s (%s)" % (h.label, mark))
            if mark is not None:
                # Its row stays, named for what is wrong, with no counts
                # (none were read: a zero here is not a measurement).
                shown["%s (%s)" % (h.label, mark)] = Snapshot(
                    {"hostname": h.label, "interval_s": self._dt,
                     "duration_s": self._dt, "unreachable_since":
                     time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(
                         h.down_since)) if h.down_since else None,
                     "error": h.message}, Counts.zero(False))
        key = tuple(id(s) for s in cums.values())
        if key != self._cum[0]:
            self._cum = (key, merge(cums))
        self.cumulative = self._cum[1]
        title = ",".join(names)
        if deltas:
            self.delta = merge_intervals(deltas, title)
            self._dt = self.delta.meta.get("interval_s") or self._dt
        elif self.delta is not None:
            # Every daemon is down: an empty interval, not the last one
            # again (its figures would read as current).
            self.delta = Snapshot(dict(self.delta.meta, hostname=title,
                                       lost={}, hosts={}),
                                  Counts.zero(False))
        self.hosts = shown if self.per_host else None
        self.calibration = FleetPenalty(pens, deltas) if any(
            p is not None for p in pens.values()) else None
        self.warnings = [h.status() for h in hosts
                         if h.down_since is not None]


def interval_delta(snap, prev):
    """snap.delta(prev), with meta.bpf as the interval's cost."""
    # Lazy: a frame shows one table, and the others are computed only if
    # the user switches to them (or --json prints them).
    d = snap.delta(prev, lazy=True)
    if prev is None:
        return d
    # meta.bpf holds run time since the programs were loaded; the
    # interval's cost is the difference.
    new, old = snap.meta.get("bpf"), prev.meta.get("bpf")
    if new and old:
        d.meta["bpf"] = dict(new, **{
            k: max(0, new.get(k, 0) - old.get(k, 0))
            for k in ("run_time_ns", "run_count")})
    return d


def run_batch(feed, state, interval, iterations, as_json, top_n):
    stop = StopFlag((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    ticker = Ticker(interval, stop)
    gcf = FrameGC()
    n = 0
    warned = []
    try:
        while ticker.wait():
            with gcf.frame():
                delta = feed.tick()
                ticker.advance()
                if delta is None:
                    # --connect: no daemon has published twice yet.
                    continue
                if as_json:
                    if feed.warnings != warned:
                        # stdout stays one document per line.
                        for w in feed.warnings:
                            sys.stderr.write("sysretstat: %s\n" % w)
                    out = top_batch.json_lines(delta, top_n, feed.hosts)
                else:
                    out = "".join("warning: %s\n" % w
                                  for w in feed.warnings)
                    out += top_batch.text_frame(
                        delta, state, feed.calibration, feed.hosts,
                        top_n or 20, width=output_width())
                warned = feed.warnings
            sys.stdout.write(out)
            sys.stdout.flush()
            n += 1
            if iterations and n >= iterations:
                break
    finally:
        stop.restore()
    return 0


def run_interactive(feed, state, interval, iterations, frame_log):
    from sysretstat.top.painter import Painter, session, use_colour

    stop = StopFlag((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    log = open(frame_log, "a") if frame_log else None
    try:
        session(_loop, feed, state, interval, iterations, stop, log,
                Painter, use_colour())
    finally:
        stop.restore()
        if log is not None:
            log.close()
    return 0


def _loop(scr, feed, state, interval, iterations, stop, log, painter_cls,
          colour):
    painter = painter_cls(scr, colour)
    state.ascii = _ascii_only()
    # delta, cumulative, hosts, calibration on screen
    shown = [feed.delta, feed.cumulative, feed.hosts, feed.calibration]
    said = [""]                     # the footer message top set
    ticker = Ticker(interval)
    gcf = FrameGC()
    frames = 0

    def draw():
        w, h = painter.size()
        painter.paint(top_view.render(shown[0], state, w, h,
                                      cumulative=shown[1],
                                      calibration=shown[3],
                                      hosts=shown[2], now=time.time()))

    draw()
    while not stop.is_set():
        wait = ticker.remaining()
        if wait <= 0:
            with gcf.frame():
                cpu0 = time.process_time()
                feed.tick()
                cpu1 = time.process_time()
                ticker.advance()
                frames += 1
                if not state.paused:
                    shown[:] = [feed.delta, feed.cumulative, feed.hosts,
                                feed.calibration]
                # Hosts that are down, in the footer until they are back
                # (a key clears it for one frame).
                text = "; ".join(feed.warnings)
                if text or state.message == said[0]:
                    state.message = text
                said[0] = text
                draw()
            if log is not None and feed.delta is not None:
                # CPU seconds: data (read, snapshot, delta), view (render,
                # paint); active and known processes.
                log.write("%.6f %.6f %d %d\n" % (
                    cpu1 - cpu0, time.process_time() - cpu1,
                    len(feed.delta.processes), len(
                        feed.cumulative.processes)))
                log.flush()
            if iterations and frames >= iterations:
                break
            continue
        key = painter.key(min(wait, 0.25) * 1000)
        if key is None:
            if painter.resized():
                draw()
            continue
        if key != "resize":
            rows = top_rows.build_rows(shown[0], state, shown[3],
                                       shown[2]) if shown[0] else []
            _, h = painter.size()
            if top_state.handle_key(state, key, rows,
                                   page=max(1, h - 8)) == "quit":
                break
        draw()
    return 0


def _ascii_only():
    enc = (getattr(sys.stdout, "encoding", None) or "").lower()
    return "utf" not in enc
