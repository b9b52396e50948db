"""Render a Snapshot in the Prometheus text exposition format (0.0.4).

Pure functions of a Snapshot (plus, for the daemon, its per-command,
per-cgroup and reason detail counters); nothing here reads the kernel.
Metric names and labels are a contract (README, "Prometheus, Grafana
and fleets"; sysretstat-daemon(8)); everything else is an additive
extension.
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


# Series per name, bounded ----------------------------------------------
def _path_counts(n):
    """[sysret, iret, eretu] of an outcome vector."""
    return [n[reasons.O_SYSRET], sum(n[reasons.FIRST_IRET:]), n[reasons.O_ERETU]]


def field_paths(snap, field):
    """{value of a process field (comm, cgroup): [sysret, iret, eretu]
    returns} summed over processes; "" for processes without it."""
    out = {}
    for row in snap.processes.values():
        v = out.setdefault(row.fields.get(field) or "", [0, 0, 0])
        for i, x in enumerate(_path_counts(row.counts.n)):
            v[i] += x
    return out


class TopCounters:
    """Counters per name (a command, a cgroup, a tracer), as Prometheus
    series with few labels: each name's series holds a vector of
    `width` counts (a path's returns, or one count).

    Fed with each interval's increments, so counts of rows the collector
    has since evicted are kept.  At most `top` names are exported as
    their own series; the rest add to "other".  The exported set
    changes only when a name's recent rate (decayed over intervals)
    exceeds twice that of the weakest exported one.  No series ever goes
    down or comes back lower than it was (Prometheus would read either
    as a counter reset): a name seen for the first time starts at zero
    (what it did before stays in "other"); a name that leaves the top-N
    is retired with its value, its series is no longer exported, its
    later returns count in "other", and if it comes back its series
    resumes from the retired value.  At most `retired_max` names are
    remembered that way; once that many have been retired, the exported
    set stops changing rather than forget one.

    eager: while fewer than `top` names are exported, a name gets its
    series in the interval it is first seen, counting that interval:
    for small vocabularies (signal names), where the rare name is the
    one worth seeing, rather than a stream of short-lived ones.
    """

    HYSTERESIS = 2.0
    MIN_INTERVALS = 3

    def __init__(self, top=10, candidates=None, decay=0.5,
                 retired_max=None, width=3, eager=False):
        self.top = max(0, int(top))
        self.retired_max = retired_max or max(1024, 16 * self.top)
        self.retired = {}           # name -> its value when it left
        # Scores are remembered for a bounded number of names only: a
        # host that runs a million differently named processes must not
        # grow this table.
        self.candidates = candidates or max(64, 8 * self.top)
        self.decay = decay
        self.eager = eager
        self.exported = {}          # name -> [count per column]
        self.other = [0] * width
        self.score = {}             # name -> decayed returns per interval
        self.hits = {}              # name -> intervals with returns

    def add(self, inc, total):
        """Add one interval: `inc` {name: [count per column]} of the
        named rows, `total` [count per column] of everything, rows or
        not."""
        if self.eager:
            self._admit(inc)
        rest = list(total)
        for name, v in inc.items():
            dst = self.exported.get(name)
            if dst is None:
                dst = self.other
            for i, x in enumerate(v):
                dst[i] += max(0, x)
                rest[i] -= x
        # What no row holds (returns of rows that came and went within
        # the interval, evicted) counts as "other".
        for i, x in enumerate(rest):
            self.other[i] += max(0, x)
        self._rescore(inc)

    def _admit(self, inc):
        new = sorted((n for n, v in inc.items() if n and n != OTHER and
                      n not in self.exported and sum(v) > 0),
                     key=lambda n: (-sum(inc[n]), n))
        for name in new[:max(0, self.top - len(self.exported))]:
            self._export(name)

    def _rescore(self, inc):
        for name in list(self.score):
            self.score[name] *= self.decay
        for name, v in inc.items():
            if name and name != OTHER and sum(v) > 0:
                self.score[name] = self.score.get(name, 0.0) + sum(v)
                self.hits[name] = self.hits.get(name, 0) + 1
        for name in [c for c, s in self.score.items()
                     if s < 0.5 and c not in self.exported]:
            self._forget(name)
        if len(self.score) > self.candidates:
            keep = sorted(self.score, key=self.score.get, reverse=True)
            for name in keep[self.candidates:]:
                if name not in self.exported:
                    self._forget(name)
        ranked = sorted((c for c in self.score if c not in self.exported
                         and self.hits[c] >= self.MIN_INTERVALS),
                        key=lambda c: (-self.score[c], c))
        for name in ranked:
            if len(self.exported) < self.top:
                self._export(name)
                continue
            if not self.exported:
                break
            weakest = min(self.exported,
                          key=lambda c: (self.score.get(c, 0.0), c))
            if self.score[name] > self.HYSTERESIS * max(
                    self.score.get(weakest, 0.0), 0.5):
                if weakest not in self.retired and \
                        len(self.retired) >= self.retired_max:
                    # Forgetting a retired value could bring a series
                    # back lower: keep the set as it is instead.
                    break
                self.retired[weakest] = self.exported.pop(weakest)
                self._export(name)
            else:
                break

    def _export(self, name):
        # A name that was exported before resumes from its value.
        self.exported[name] = self.retired.pop(name, None) or \
            [0] * len(self.other)

    def _forget(self, name):
        del self.score[name]
        del self.hits[name]

    def series(self):
        """[(name, [count per column])], exported names A to Z, then
        "other"; copies, which later intervals leave as they are."""
        rows = sorted((k, list(v)) for k, v in self.exported.items())
        return rows + [(OTHER, list(self.other))]


class FieldCounters(TopCounters):
    """Returns per value of a process field, by path ([sysret, iret,
    eretu]); `field` is the subclass's."""

    field = None

    def __init__(self, top=10, **kwargs):
        super().__init__(top, width=len(PATHS), **kwargs)

    def update(self, delta):
        """Add one interval (a Snapshot from Snapshot.delta)."""
        self.add(field_paths(delta, self.field),
                 _path_counts(delta.totals.n))


class CommCounters(FieldCounters):
    """sysretstat_comm_returns_total: per command name."""

    field = "comm"


class CgroupCounters(FieldCounters):
    """sysretstat_cgroup_returns_total: per cgroup v2 path."""

    field = "cgroup"


# Reasons whose detail is a name anyone can choose (ptrace: the tracer's
# comm) rather than one of a small vocabulary: their names are bounded
# by the tracer top.  Every other reason's names are bounded at
# DETAIL_MAX (64 signals, 4 restart codes, 2 kinds of fork).
FREE_DETAIL = ("ptrace",)
DETAIL_MAX = 64


def _detail_by_reason(counts):
    """{reason: {detail: [returns]}} of a Counts' detail."""
    out = {}
    for (reason, name), v in (counts.detail or {}).items():
        if reason in reasons.REASONS:
            out.setdefault(reason, {})[name] = [v]
    return out


def _detail_top(reason, tracers):
    return tracers if reason in FREE_DETAIL else DETAIL_MAX


class DetailCounters:
    """sysretstat_reason_detail_total: per reason that has had a detail,
    a TopCounters of its detail names (eager: a rare signal shows at
    once), its "other" holding the reason's returns no exported name
    holds, so that a reason's series sum to its returns (until a name
    is retired)."""

    def __init__(self, tracers=10):
        self.tracers = tracers
        self.by_reason = {}
        # Each outcome's returns so far: a reason's "other" starts from
        # what it had before its first detail.
        self.seen = [0] * len(reasons.OUTCOMES)

    def update(self, delta):
        """Add one interval (a Snapshot from Snapshot.delta)."""
        t = delta.totals
        inc = _detail_by_reason(t)
        for reason in inc:
            if reason not in self.by_reason:
                tc = TopCounters(_detail_top(reason, self.tracers),
                                 width=1, eager=True)
                tc.other[0] = self.seen[reasons.OUTCOMES.index(reason)]
                self.by_reason[reason] = tc
        for reason, tc in self.by_reason.items():
            tc.add(inc.get(reason, {}), [t.n[reasons.OUTCOMES.index(reason)]])
        for i, x in enumerate(t.n):
            self.seen[i] += max(0, x)

    def series(self):
        """[(reason, detail, returns)], reasons A to Z, each reason's
        exported names A to Z and then "other"."""
        return [(reason, name, v[0])
                for reason in sorted(self.by_reason)
                for name, v in self.by_reason[reason].series()]


def _cut(by_name, total, top):
    """The `top` largest of {name: [counts]} (A to Z) and "other": the
    rest of `total`, so that the series sum to it."""
    names = sorted((c for c in by_name if c and c != OTHER),
                   key=lambda c: (-sum(by_name[c]), c))[:top]
    other = list(total)
    for c in names:
        other = [max(0, a - b) for a, b in zip(other, by_name[c])]
    return sorted((c, by_name[c]) for c in names) + [(OTHER, other)]


def field_series_from_snapshot(snap, field, top=10):
    """The per-comm or per-cgroup series of one cumulative snapshot on
    its own.

    For rendering a snapshot outside the daemon: the top values by
    returns, the rest (and what the collector evicted) as "other".
    """
    return _cut(field_paths(snap, field), _path_counts(snap.totals.n), top)


def detail_series_from_snapshot(snap, tracers=10):
    """DetailCounters.series() of one cumulative snapshot on its own."""
    t = snap.totals
    return [(reason, name, v[0])
            for reason, by in sorted(_detail_by_reason(t).items())
            for name, v in _cut(by, [t.n[reasons.OUTCOMES.index(reason)]],
                                _detail_top(reason, tracers))]


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


def render(snap, comms=None, top=10, penalty=None, extra=(),
           cgroups=None, details=None, top_cgroups=None):
    """The /metrics text of a cumulative Snapshot.

    comms, cgroups, details: CommCounters, CgroupCounters and
    DetailCounters (the daemon's, which keep their series monotonic
    across intervals), else derived from `snap` alone, with `top`
    command and tracer names and `top_cgroups` (default `top`) cgroups.
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

    rows = details.series() if details is not None else \
        detail_series_from_snapshot(snap, top)
    lines += family("sysretstat_reason_detail_total", "counter",
                    "IRET returns of a reason by what it was: the signal, "
                    "the restart code, the tracer's command name (the "
                    "busiest few), thread or process for fork_child; "
                    "detail=\"other\" for the rest.",
                    [("", (("reason", r), ("detail", d)), v)
                     for r, d, v in rows])

    if t.lat is not None:
        samples = []
        for path, h in zip((snap.fast_path, "iret"), t.lat):
            samples += _hist_samples(h, path)
        lines += family("sysretstat_syscall_duration_seconds", "histogram",
                        "Time from sys_enter to sys_exit, by return path, "
                        "of the calls timed: a sample of the returns, not "
                        "their count (see sysretstat_latency_sample).",
                        samples)
        rate = meta.get("latency_sample")
        if rate:
            lines += family("sysretstat_latency_sample", "gauge",
                            "Durations are taken for 1 in this many calls "
                            "of the syscalls in sysretstat_latency_sampled "
                            "(every call of the others).",
                            [("", (), rate)])
            lines += family(
                "sysretstat_latency_sampled", "gauge",
                "1 for each syscall whose durations have been sampled.",
                [("", (("syscall", s),), 1)
                 for s in meta.get("latency_sampled") or ()])

    paths = _fast_paths(snap) + ("iret",)
    series = comms.series() if comms is not None else \
        field_series_from_snapshot(snap, "comm", top)
    lines += _by_name("sysretstat_comm_returns_total", "comm", series,
                      paths, "Returns by command name: the busiest few "
                      "names, the rest as comm=\"other\".")
    series = cgroups.series() if cgroups is not None else \
        field_series_from_snapshot(
            snap, "cgroup", top if top_cgroups is None else top_cgroups)
    lines += _by_name("sysretstat_cgroup_returns_total", "cgroup", series,
                      paths, "Returns by cgroup v2 path: the busiest few "
                      "cgroups, the rest as cgroup=\"other\".")

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


def _by_name(name, label, series, paths, help_text):
    """A counter family of [(name, [sysret, iret, eretu])] by path."""
    return family(name, "counter", help_text,
                  [("", ((label, n), ("path", p)), v[PATHS.index(p)])
                   for n, v in series for p in paths])


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
