"""Render a Snapshot in the Prometheus text exposition format (0.0.4).

Pure functions of a Snapshot (plus, for the daemon, its per-command
counters); nothing here reads the kernel.  Metric names and labels are
a contract (README, "Prometheus, Grafana and fleets"; sysretstat-daemon(8));
everything else is an additive extension.
"""

import datetime
import math

import psutil

from sysretstat.model import reasons
from sysretstat.model.histogram import bucket_bounds

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Histogram bounds in ns: every power of two and the half-way point
# between two powers, from 64 ns to 2^34 ns (17 s).  Both are exact
# bucket edges of the kernel's log-linear histogram (8 sub-buckets per
# power of two), so the cumulative counts are exact, not interpolated.
LE_NS = tuple(sorted({1 << k for k in range(6, 35)} |
                     {3 << (k - 1) for k in range(6, 34)}))

PATHS = ("sysret", "iret", "eretu")
_FAST = {"sysret": reasons.O_SYSRET, "eretu": reasons.O_ERETU}

# meta.lost entries that are not counters: unattributed_* are a
# difference of two reads and may go down; they become a gauge.
_NOT_COUNTERS = ("unattributed_",)

OTHER = "other"


# Text format helpers ----------------------------------------------------
def escape(value):
    return (str(value).replace("\\", "\\\\").replace("\n", "\\n")
            .replace('"', '\\"'))


def _labels(labels):
    if not labels:
        return ""
    return "{" + ",".join('%s="%s"' % (k, escape(v))
                          for k, v in labels) + "}"


def fmt_value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    # 12 significant digits hide binary noise (2.279e-08, not
    # 2.2789999999999998e-08) and keep more than any figure measures.
    return repr(float("%.12g" % v))


def family(name, mtype, help_text, samples):
    """Lines of one metric family; samples: [(suffix, labels, value)]."""
    out = ["# HELP %s %s" % (name, help_text.replace("\\", "\\\\")
                              .replace("\n", " ")),
           "# TYPE %s %s" % (name, mtype)]
    for suffix, labels, value in samples:
        out.append("%s%s%s %s" % (name, suffix, _labels(labels),
                                  fmt_value(value)))
    return out


# Per-command counters ----------------------------------------------------
def _path_counts(n):
    """[sysret, iret, eretu] of an outcome vector."""
    return [n[reasons.O_SYSRET], sum(n[reasons.FIRST_IRET:]), n[reasons.O_ERETU]]


def comm_paths(snap):
    """{comm: [sysret, iret, eretu] returns} summed over processes."""
    out = {}
    for row in snap.processes.values():
        v = out.setdefault(row.fields.get("comm") or "", [0, 0, 0])
        for i, x in enumerate(_path_counts(row.counts.n)):
            v[i] += x
    return out


class CommCounters:
    """Returns per command name, as Prometheus counters with few labels.

    Fed with each interval's delta, so counts of processes the collector
    has since evicted are kept.  At most `top` names are exported as
    their own series; the rest add to comm="other".  The exported set
    changes only when a command's recent rate (decayed over intervals)
    exceeds twice that of the weakest exported one.  No series ever goes
    down or comes back lower than it was (Prometheus would read either
    as a counter reset): a name seen for the first time starts at zero
    (what it did before stays in "other"); a name that leaves the top-N
    is retired with its value, its series is no longer exported, its
    later returns count in "other", and if it comes back its series
    resumes from the retired value.  At most `retired_max` names are
    remembered that way; once that many have been retired, the exported
    set stops changing rather than forget one.
    """

    HYSTERESIS = 2.0
    MIN_INTERVALS = 3

    def __init__(self, top=10, candidates=None, decay=0.5,
                 retired_max=None):
        self.top = max(0, int(top))
        self.retired_max = retired_max or max(1024, 16 * self.top)
        self.retired = {}           # comm -> its value when it left
        # Scores are remembered for a bounded number of names only: a
        # host that runs a million differently named processes must not
        # grow this table.
        self.candidates = candidates or max(64, 8 * self.top)
        self.decay = decay
        self.exported = {}          # comm -> [sysret, iret, eretu]
        self.other = [0, 0, 0]
        self.score = {}             # comm -> decayed returns per interval
        self.hits = {}              # comm -> intervals with returns

    def update(self, delta):
        """Add one interval (a Snapshot from Snapshot.delta)."""
        inc = comm_paths(delta)
        rest = _path_counts(delta.totals.n)
        for comm, v in inc.items():
            dst = self.exported.get(comm)
            if dst is None:
                dst = self.other
            for i in range(3):
                dst[i] += max(0, v[i])
                rest[i] -= v[i]
        # Returns of processes that came and went (evicted) within the
        # interval belong to no row; they count as "other".
        for i in range(3):
            self.other[i] += max(0, rest[i])
        self._rescore(inc)

    def _rescore(self, inc):
        for comm in list(self.score):
            self.score[comm] *= self.decay
        for comm, v in inc.items():
            if comm and comm != OTHER and sum(v) > 0:
                self.score[comm] = self.score.get(comm, 0.0) + sum(v)
                self.hits[comm] = self.hits.get(comm, 0) + 1
        for comm in [c for c, s in self.score.items()
                     if s < 0.5 and c not in self.exported]:
            self._forget(comm)
        if len(self.score) > self.candidates:
            keep = sorted(self.score, key=self.score.get, reverse=True)
            for comm in keep[self.candidates:]:
                if comm not in self.exported:
                    self._forget(comm)
        ranked = sorted((c for c in self.score if c not in self.exported
                         and self.hits[c] >= self.MIN_INTERVALS),
                        key=lambda c: (-self.score[c], c))
        for comm in ranked:
            if len(self.exported) < self.top:
                self._export(comm)
                continue
            if not self.exported:
                break
            weakest = min(self.exported,
                          key=lambda c: (self.score.get(c, 0.0), c))
            if self.score[comm] > self.HYSTERESIS * max(
                    self.score.get(weakest, 0.0), 0.5):
                if weakest not in self.retired and \
                        len(self.retired) >= self.retired_max:
                    # Forgetting a retired value could bring a series
                    # back lower: keep the set as it is instead.
                    break
                self.retired[weakest] = self.exported.pop(weakest)
                self._export(comm)
            else:
                break

    def _export(self, comm):
        # A name that was exported before resumes from its value.
        self.exported[comm] = self.retired.pop(comm, None) or [0, 0, 0]

    def _forget(self, comm):
        del self.score[comm]
        del self.hits[comm]

    def series(self):
        """[(comm, [sysret, iret, eretu])], exported names then other."""
        rows = sorted(self.exported.items(), key=lambda kv: kv[0])
        return rows + [(OTHER, list(self.other))]


def comm_series_from_snapshot(snap, top=10):
    """The per-command series of one cumulative snapshot on its own.

    For rendering a snapshot outside the daemon: the top names by
    returns, the rest (and what the collector evicted) as "other".
    """
    by_comm = comm_paths(snap)
    names = sorted((c for c in by_comm if c and c != OTHER),
                   key=lambda c: (-sum(by_comm[c]), c))[:top]
    other = _path_counts(snap.totals.n)
    for c in names:
        other = [max(0, a - b) for a, b in zip(other, by_comm[c])]
    return sorted((c, by_comm[c]) for c in names) + [(OTHER, other)]


# The metrics ---------------------------------------------------------------
def _fast_paths(snap):
    return ("eretu",) if snap.fast_path == "eretu" else ("sysret",)


def _hist_samples(h, path):
    """Cumulative buckets, sum and count of one Hist, in seconds."""
    bounds = sorted((bucket_bounds(b)[1], c)
                    for b, c in h.buckets.items() if c)
    samples, i, acc = [], 0, 0
    for le in LE_NS:
        while i < len(bounds) and bounds[i][0] is not None and \
                bounds[i][0] <= le:
            acc += bounds[i][1]
            i += 1
        samples.append(("_bucket", (("path", path),
                                    ("le", fmt_value(le / 1e9))), acc))
    total = h.count
    samples.append(("_bucket", (("path", path), ("le", "+Inf")), total))
    samples.append(("_sum", (("path", path),), h.sum_ns / 1e9))
    samples.append(("_count", (("path", path),), total))
    return samples


def render(snap, comms=None, top=10, penalty=None, extra=()):
    """The /metrics text of a cumulative Snapshot.

    comms: CommCounters (the daemon's), else derived from `snap`.
    penalty: a calibration (see calibration.py) or None.
    extra: more lines (already formatted families) to append.
    """
    meta = snap.meta
    t = snap.totals
    lines = []
    lines += family("sysretstat_build_info", "gauge",
                    "sysretstat version and the kernel it runs on.",
                    [("", (("version", meta.get("version", "")),
                           ("kernel", meta.get("kernel", ""))), 1)])

    samples = [("", (("path", p), ("reason", "")), t.n[_FAST[p]])
               for p in _fast_paths(snap)]
    for i, reason in enumerate(reasons.OUTCOMES):
        if i >= reasons.FIRST_IRET:
            samples.append(("", (("path", "iret"), ("reason", reason)),
                            t.n[i]))
    lines += family("sysretstat_returns_total", "counter",
                    "Syscall returns to user mode by path and, for IRET, "
                    "the reason (reason=\"\" for the fast path).", samples)

    if t.lat is not None:
        samples = []
        for path, h in zip((snap.fast_path, "iret"), t.lat):
            samples += _hist_samples(h, path)
        lines += family("sysretstat_syscall_duration_seconds", "histogram",
                        "Time from sys_enter to sys_exit, by return path.",
                        samples)

    series = comms.series() if comms is not None else \
        comm_series_from_snapshot(snap, top)
    paths = _fast_paths(snap) + ("iret",)
    samples = [("", (("comm", comm), ("path", p)), v[PATHS.index(p)])
               for comm, v in series for p in paths]
    lines += family("sysretstat_comm_returns_total", "counter",
                    "Returns by command name: the busiest few names, the "
                    "rest as comm=\"other\".", samples)

    samples = []
    for (abi_name, nr), row in sorted(
            snap.syscalls.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        sname = row.fields.get("name") or str(nr)
        c = row.counts
        for p in paths:
            samples.append(("", (("abi", abi_name), ("syscall", sname),
                                 ("path", p)),
                            _path_counts(c.n)[PATHS.index(p)]))
    lines += family("sysretstat_syscall_returns_total", "counter",
                    "Returns by syscall and path (syscalls seen so far).",
                    samples)

    lost = meta.get("lost", {}) or {}
    counters = sorted((k, v) for k, v in lost.items()
                      if isinstance(v, (int, float)) and not
                      k.startswith(_NOT_COUNTERS))
    lines += family("sysretstat_lost_total", "counter",
                    "Entries the kernel dropped or the collector evicted "
                    "(see meta.lost in the report schema).",
                    [("", (("what", k),), v) for k, v in counters])
    gauges = sorted((k[len("unattributed_"):], v) for k, v in lost.items()
                    if k.startswith("unattributed_") and
                    isinstance(v, (int, float)))
    lines += family("sysretstat_unattributed_returns", "gauge",
                    "Returns counted in the totals but in no row of this "
                    "table (evicted or in flight).",
                    [("", (("table", k),), v) for k, v in gauges])

    bpf = meta.get("bpf") or {}
    if bpf.get("stats"):
        lines += family("sysretstat_bpf_run_time_seconds_total", "counter",
                        "CPU time spent in sysretstat's BPF programs "
                        "(kernel BPF stats).",
                        [("", (), bpf.get("run_time_ns", 0) / 1e9)])
        lines += family("sysretstat_bpf_runs_total", "counter",
                        "Runs of sysretstat's BPF programs.",
                        [("", (), int(bpf.get("run_count", 0)))])
    lines += family("sysretstat_bpf_stats_enabled", "gauge",
                    "1 when kernel BPF run-time stats are on (daemon "
                    "--bpf-stats), so the run-time metrics exist.",
                    [("", (), 1 if bpf.get("stats") else 0)])

    if penalty is not None:
        lines += penalty_lines(penalty)

    started = _epoch(meta.get("started_at"))
    if started is not None:
        lines += family("sysretstat_start_time_seconds", "gauge",
                        "When the collection started (Unix time).",
                        [("", (), started)])
    lines += family("sysretstat_collection_seconds", "gauge",
                    "Seconds covered by the counters.",
                    [("", (), float(meta.get("duration_s") or 0.0))])
    lines += list(extra)
    return "\n".join(lines) + "\n"


def penalty_lines(cal):
    """Gauges of the calibrated IRET penalty; [] when none is known."""
    samples = []
    for reason in reasons.REASONS:
        try:
            v = cal.penalty_ns(reason)
        except Exception:
            v = None
        if v is not None:
            samples.append(("", (("reason", reason),), float(v) / 1e9))
    mean = getattr(cal, "mean_penalty_ns", None)
    if mean is not None and not samples:
        samples.append(("", (("reason", ""),), float(mean) / 1e9))
    if not samples:
        return []
    return family("sysretstat_iret_penalty_seconds", "gauge",
                  "Extra cost of one IRET return over SYSRET, from this "
                  "host's calibration (reason=\"\": the mean).", samples)


def _epoch(iso):
    if not iso:
        return None
    try:
        return datetime.datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


# The daemon's own process ------------------------------------------------
def process_lines(pid=None):
    """The usual process_* metrics of a process (default: this one), read
    with psutil; [] when the process cannot be read."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            cpu = proc.cpu_times()
            mem = proc.memory_info()
            nfd = proc.num_fds()
            started = proc.create_time()
    except psutil.Error:
        return []
    lines = []
    lines += family("process_cpu_seconds_total", "counter",
                    "User and system CPU time of the sysretstat process.",
                    [("", (), cpu.user + cpu.system)])
    lines += family("process_resident_memory_bytes", "gauge",
                    "Resident memory of the sysretstat process.",
                    [("", (), mem.rss)])
    lines += family("process_virtual_memory_bytes", "gauge",
                    "Virtual memory of the sysretstat process.",
                    [("", (), mem.vms)])
    lines += family("process_open_fds", "gauge",
                    "Open file descriptors.", [("", (), nfd)])
    lines += family("process_start_time_seconds", "gauge",
                    "Start of the process (Unix time).",
                    [("", (), started)])
    return lines
