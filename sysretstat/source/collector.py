"""Turn successive kernel reads into cumulative Snapshots.

Rows of successive snapshots share what did not change: the collector
never mutates a count list or histogram it has handed out, it replaces
it, so a snapshot costs little for idle processes and Snapshot.delta()
can skip shared rows by identity.

The kernel keeps counts per thread (live until the thread exits, then
drained once); the collector remembers them, sums threads into
processes, and bounds what it remembers: beyond `max_threads` /
`max_processes`, the oldest exited entries are folded away and their
returns reported in meta.lost (evicted_*, unattributed_*).
"""

import datetime
import os
import time
from collections import OrderedDict
from operator import add, ge, sub

from sysretstat import __version__
from sysretstat.kernel import abi, bpf, hostinfo
from sysretstat.kernel.abi import FIRST_IRET
from sysretstat.kernel.cgroups import CgroupPaths
from sysretstat.source.sampling import Sampler
from sysretstat.model.counts import KernelLatency
from sysretstat.model.snapshot import Counts, Hist, Row, Snapshot
from sysretstat.model.syscalls import syscall_name
from sysretstat.kernel.tracer import Options, Tracer

# 1 while the kernel's BPF run-time stats are on host-wide (sysctl).
BPF_STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def bpf_stats_sysctl():
    """Whether sysctl kernel.bpf_stats_enabled is 1 (False if unreadable)."""
    try:
        with open(BPF_STATS_SYSCTL) as f:
            return f.read().strip() == "1"
    except (OSError, ValueError):
        return False


class _Thread:
    __slots__ = ("key", "tid", "start", "pkey", "proc", "comm", "n", "dead",
                 "evicted", "counts", "extra", "row", "shown", "total",
                 "ahead", "cgroup", "fields")

    def __init__(self, tid, start, pkey, comm):
        self.key = (tid, start)
        self.tid, self.start, self.pkey, self.comm = tid, start, pkey, comm
        self.proc = None     # the _Proc of pkey, while not evicted
        self.evicted = False
        self.cgroup = 0      # its cgroup v2 id (0: not read yet)
        self.n = [0] * abi.NR_OUTCOMES
        self.dead = False
        self.counts = None   # the Counts last handed out, until n changes
        self.extra = None    # deltas still in a CPU's cache, this read
        self.row = None      # the Row last handed out (False: no row)
        self.shown = None    # the counts last handed out (see _floor)
        self.total = 0       # their sum
        # Whether shown may be ahead of storage (it held a cache's
        # deltas): only then can a read go below it (see _floor).
        self.ahead = False
        self.fields = None   # identity fields of its rows, while unchanged


class _Proc:
    __slots__ = ("key", "pid", "start", "comm", "n", "hist", "dead",
                 "evicted", "threads", "counts", "extra_n", "extra_hist",
                 "row", "shown", "total", "ahead", "shown_hist",
                 "shown_live", "fields", "cgroup")

    def __init__(self, pid, start, comm, n=None):
        self.key = (pid, start)
        self.pid, self.start, self.comm = pid, start, comm
        self.evicted = False
        self.cgroup = 0
        # Sums of its threads' storage.  While one thread holds all of
        # its returns, n is that thread's own list (see _threads_update).
        self.n = n if n is not None else [0] * abi.NR_OUTCOMES
        self.hist = None     # a KernelLatency, or None
        self.dead = False
        self.threads = 0   # live (not yet exited) threads remembered
        self.counts = None
        self.extra_n = None      # sums of its threads' cached deltas
        self.extra_hist = None
        self.row = None
        self.shown = None
        self.total = 0
        self.ahead = False   # as _Thread.ahead
        self.shown_hist = None
        self.shown_live = False   # shown_hist held a cache's deltas
        self.fields = None   # identity fields of its rows, while unchanged


class Collector:
    """A running collection.  Use as a context manager.

    snapshot() returns the cumulative Snapshot since start(); stop()
    detaches first, so its snapshot is final and exact.
    """

    def __init__(self, options=None, command=None, max_threads=65536,
                 max_processes=16384, clock=time.monotonic, tracer=None):
        self.options = options or Options()
        self.command = command
        self.max_threads = max_threads
        self.max_processes = max_processes
        self.clock = clock
        # Any object with Tracer's open/attach/read/detach/close,
        # run_stats, guard and attached: the unit tests feed RawReads.
        self.tracer = tracer if tracer is not None else Tracer(self.options)
        self.threads = OrderedDict()   # (tid, start) -> _Thread
        self.procs = OrderedDict()     # (pid, start) -> _Proc
        self.evicted = {"threads": 0, "processes": 0}
        self.started_at = None
        self.extra_pids = []
        self._live_keys = []
        # Rows of the last snapshot, updated for what each read touched
        # (a dump holds only what changed), and the returns they hold.
        self._rows = {"threads": {}, "processes": {}}
        self._attributed = {"threads": 0, "processes": 0}
        # What a read touched: entries (_Thread, _Proc; a set of objects
        # hashes by identity, cheaper than by key for thousands), and
        # the keys of the rest (exits folded away, reason detail).
        self._touched = {"threads": set(), "processes": set()}
        self._dirty = {"threads": set(), "processes": set()}
        self._stats_fd = -1
        self._t0 = None
        self._last = None
        self.final = None
        self.cgroups = CgroupPaths()
        o = self.options
        self.sampler = Sampler(o.latency_sample, o.sample_every_syscall) \
            if o.latency else None
        # Reason detail (see Tracer._read_details): the count last read
        # of each entry of the kernel's map, and the sums by thread,
        # process, syscall slot and CPU, each {(reason, detail): n}.
        self._det_seen = {}
        self._det = {"threads": {}, "processes": {}, "slots": {},
                     "cpus": {}, "totals": {}}

    # Lifecycle -------------------------------------------------------
    def start(self):
        self.tracer.open()
        # Kernel BPF run-time stats, for the tool's own cost (meta.bpf),
        # on while this fd is open.  Opt-in: they time every BPF program
        # run on the host, which costs two clock reads per run.
        if self.options.bpf_stats:
            self._stats_fd = bpf.enable_run_stats()
        if self.sampler is not None and any(self.sampler.initial()):
            self.tracer.set_sample_shifts(self.sampler.initial())
        self.tracer.attach()
        self._t0 = self.clock()
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        return self

    def add_pid(self, pid, follow=False):
        """Trace a process too; with follow, every process it forks."""
        self.tracer.add_pid(pid, follow)
        self.extra_pids.append(pid)

    def stop(self):
        """Detach, take the final snapshot, free the kernel objects."""
        if self.final is None and self.tracer.obj is not None:
            self.tracer.detach()
            self.final = self.snapshot()
            self.tracer.close()
        return self.final

    def close(self):
        self.tracer.close()
        if getattr(self, "_stats_fd", -1) >= 0:
            os.close(self._stats_fd)
            self._stats_fd = -1

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # Snapshots -------------------------------------------------------
    def snapshot(self):
        if self.final is not None:
            return self.final
        raw = self.tracer.read()
        now = self.clock()
        self._apply(raw)
        snap = self._build(raw, now - self._t0)
        if self.sampler is not None:
            shifts = self.sampler.update(snap.syscalls,
                                         now - (self._last or self._t0))
            self._last = now
            if shifts is not None and self.tracer.attached:
                self.tracer.set_sample_shifts(shifts)
            snap.meta.update(self.sampler.meta())
        return snap

    def _apply(self, raw):
        self._threads_update(raw.threads, dead=False)
        self._threads_update(raw.exited_threads, dead=True)
        touched = self._touched["processes"]
        procs, new_proc = self.procs, _Proc
        for pid, start, comm, hist in raw.procs + raw.exited_procs:
            key = (pid, start)
            p = procs.get(key)
            if p is None:
                p = procs[key] = new_proc(pid, start, comm)
            touched.add(p)
            p.comm = comm or p.comm
            # Hists only when read: most processes' latency never is.
            p.hist = KernelLatency(hist)
            p.counts = None
        for pid, start, _, _ in raw.exited_procs:
            procs[(pid, start)].dead = True
        self._apply_live(raw.live)
        self._apply_details(getattr(raw, "details", ()))
        self._evict()

    def _apply_details(self, entries):
        """Add what each detail entry gained since the last read to its
        thread, process, syscall, CPU and the totals; then forget the
        entries of threads whose exit was drained (they are final)."""
        seen, det = self._det_seen, self._det
        dirty_t, dirty_p = self._dirty["threads"], self._dirty["processes"]
        done = []
        for tkey, pkey, slot, cpu, reason, detail, n, kb in entries:
            gain = n - seen.get(kb, 0)
            if gain > 0:
                seen[kb] = n
                what = (reason, detail)
                for table, key in (("threads", tkey), ("processes", pkey),
                                   ("slots", slot), ("cpus", cpu)):
                    d = det[table].setdefault(key, {})
                    d[what] = d.get(what, 0) + gain
                det["totals"][what] = det["totals"].get(what, 0) + gain
                dirty_t.add(tkey)
                dirty_p.add(pkey)
                t = self.threads.get(tkey)
                if t is not None:
                    t.counts = None
                p = self.procs.get(pkey)
                if p is not None:
                    p.counts = None
            t = self.threads.get(tkey)
            if t is not None and t.dead:
                done.append(kb)
        if done:
            forget = getattr(self.tracer, "forget_details", None)
            if forget is not None:
                forget(done)
            for kb in done:
                seen.pop(kb, None)

    def _apply_live(self, live):
        """Deltas a CPU's cache holds for the thread running there, on
        top of what storage had: replaced, never accumulated, per read."""
        for key in self._live_keys:
            self._dirty["threads"].add(key)
            t = self.threads.get(key)
            if t is not None:
                self._dirty["processes"].add(t.pkey)
                t.extra = None
                t.counts = None
                p = self.procs.get(t.pkey)
                if p is not None:
                    p.extra_n = p.extra_hist = None
                    p.counts = None
        self._live_keys = []
        for rec in live:
            key = (rec["tid"], rec["start_ns"])
            t = self.threads.get(key)
            if t is None:
                # Never flushed yet: known only from the cache.
                self._thread_update((rec["tid"], rec["tgid"],
                                     rec["start_ns"], rec["leader_start_ns"],
                                     rec["comm"], [0] * abi.NR_OUTCOMES, 0),
                                    dead=False)
                t = self.threads[key]
            p = self.procs[t.pkey]
            self._dirty["threads"].add(key)
            self._dirty["processes"].add(t.pkey)
            t.extra = rec["n"]
            t.counts = None
            p.extra_n = [a + b for a, b in zip(p.extra_n or
                                               [0] * abi.NR_OUTCOMES,
                                               rec["n"])]
            hs = [Hist.from_kernel(*h) for h in rec["hist"]]
            if p.extra_hist is None:
                p.extra_hist = hs
            else:
                for a, b in zip(p.extra_hist, hs):
                    a.add(b)
            p.counts = None
            self._live_keys.append(key)

    def _proc(self, pid, start, comm):
        key = (pid, start)
        p = self.procs.get(key)
        if p is None:
            p = self.procs[key] = _Proc(pid, start, comm)
        return p

    def _thread_update(self, rec, dead):
        self._threads_update((rec,), dead)

    def _threads_update(self, recs, dead):
        """Thread records of a dump or of the exit queue: one loop over
        thousands, with what it touches held in locals."""
        touched_t = self._touched["threads"]
        touched_p = self._touched["processes"]
        threads, procs = self.threads, self.procs
        new_thread, new_proc = _Thread, _Proc
        for tid, tgid, start, leader_start, comm, new, cgroup in recs:
            key = (tid, start)
            t = threads.get(key)
            if t is None:
                pkey = (tgid, leader_start)
                p = procs.get(pkey)
                t = threads[key] = new_thread(tid, start, pkey, comm)
                if p is None:
                    # Its sums are this thread's: the same list, which
                    # saves a sum per read while no other thread counts.
                    p = procs[pkey] = new_proc(tgid, leader_start, comm,
                                               t.n)
                t.proc = p
                p.threads += 1
            else:
                p = t.proc
                if p.evicted:
                    p = procs.get(t.pkey)
                    if p is None:
                        p = procs[t.pkey] = new_proc(tgid, leader_start,
                                                     comm)
                    t.proc = p
            touched_t.add(t)
            touched_p.add(p)
            if tid == tgid or not p.comm:
                p.comm = comm
            t.comm = comm
            if cgroup and cgroup != t.cgroup:
                t.cgroup = cgroup
                if tid == tgid or not p.cgroup:
                    p.cgroup = cgroup
            if new != t.n:
                old = t.n
                if p.n is old:
                    p.n = new
                elif new[FIRST_IRET:] == old[FIRST_IRET:]:
                    # Only its fast paths' counts changed, as most do:
                    # two additions rather than seventeen.
                    pn = p.n
                    p.n = [pn[0] + new[0] - old[0], pn[1] + new[1] - old[1]]
                    p.n += pn[FIRST_IRET:]
                else:
                    p.n = list(map(add, p.n, map(sub, new, old)))
                p.counts = None
                t.n = new
                t.counts = None
            if dead and not t.dead:
                t.dead = True
                p.threads -= 1
                # Gone when no thread it is known to have lives (the
                # leader may exit before the others): it may then be
                # evicted.
                if p.threads <= 0:
                    p.dead = True
            elif not dead:
                p.dead = False

    def _evict(self):
        """Bound memory: drop the oldest exited threads and processes."""
        self._evict_dead(self.threads, self.max_threads, "threads")
        self._evict_dead(self.procs, self.max_processes, "processes")

    def _evict_dead(self, rows, limit, table):
        # Oldest first (dicts keep insertion order); live rows stay.
        for key in list(rows) if len(rows) > limit else ():
            if len(rows) <= limit:
                break
            if rows[key].dead:
                rows[key].evicted = True
                del rows[key]
                self._det[table].pop(key, None)
                self._dirty[table].add(key)
                self.evicted[table] += 1

    def _build(self, raw, elapsed):
        latency = self.options.latency
        ncpu = len(raw.slots)
        totals = Counts.zero(latency)
        cpus, syscalls = {}, {}

        def syscall_row(slot):
            key = abi.slot_to_syscall(slot)
            row = syscalls.get(key)
            if row is None:
                abi_name, nr = key
                row = syscalls[key] = Row(
                    key, {"nr": nr, "name": syscall_name(abi_name, nr),
                          "abi": abi_name}, Counts.zero(latency))
            return row

        for c in range(ncpu):
            cc = Counts.zero(latency)
            for slot, n in raw.slots[c].items():
                _add(cc.n, n)
                _add(syscall_row(slot).counts.n, n)
            cc.detail = self._det["cpus"].get(c)
            if latency and c < len(raw.cpu_hists):
                cc.lat = [Hist.from_kernel(*h) for h in raw.cpu_hists[c]]
            if any(cc.n) or (latency and any(h.count for h in cc.lat)):
                cpus[c] = Row(c, {"cpu": c}, cc)
            totals.add(cc)
            if cc.detail:
                cc.detail = dict(cc.detail)
        for slot, pair in raw.slot_hists.items():
            for h, dst in zip(pair, syscall_row(slot).counts.lat):
                dst.add(Hist.from_kernel(*h))
        for k in [k for k, r in syscalls.items() if r.counts.is_zero()]:
            del syscalls[k]
        for slot, d in self._det["slots"].items():
            row = syscalls.get(abi.slot_to_syscall(slot))
            if row is not None:
                row.counts.detail = _detail_of(row.counts.detail, d)
        totals.detail = dict(self._det["totals"]) or None

        threads = self._thread_rows()
        processes = self._proc_rows()

        lost = dict(raw.lost)
        lost["evicted_threads"] = self.evicted["threads"]
        lost["evicted_processes"] = self.evicted["processes"]
        for t in ("threads", "processes"):
            lost["unattributed_" + t] = totals.returns - self._attributed[t]
        lost["unattributed_syscalls"] = 0
        lost["unattributed_cpus"] = 0
        meta = self._meta(elapsed, lost)
        run_ns = run_cnt = 0
        for t, n in self.tracer.run_stats().values():
            run_ns += t
            run_cnt += n
        prev = getattr(self, "_bpf", None)
        if self.tracer.attached:
            self._bpf = {"run_time_ns": run_ns, "run_count": run_cnt}
            # Stats are on while our fd is open, while the sysctl is 1,
            # or while another process holds them on (the runs advance).
            self._stats_on = (self._stats_fd >= 0 or bpf_stats_sysctl() or
                              (prev is not None and
                               run_cnt > prev["run_count"]))
        meta["bpf"] = dict(getattr(self, "_bpf", None) or
                           {"run_time_ns": 0, "run_count": 0},
                           stats=bool(getattr(self, "_stats_on", False)))
        return Snapshot(meta, totals, processes, threads, syscalls, cpus)

    # Rows of a table are the last snapshot's, with those of the entries
    # touched since rebuilt (copied, so handed-out tables never
    # change).  Unchanged rows are the same objects, which
    # Snapshot.delta() skips by identity.  One loop per table, with what
    # it touches in locals: with thousands of active processes these
    # two loops were the collector's largest cost.  A changed row
    # replaces its key's in place: deleting and adding thousands of
    # keys per read left the dict to be resized and compacted, and its
    # order (first seen) is then stable.

    def _thread_rows(self):
        rows = self._rows["threads"]
        touched, gone = self._entries_touched("threads", self.threads)
        attributed = self._attributed["threads"]
        shown = rows.get
        det = self._det["threads"]
        counts_of, new_row = Counts.of, Row.__new__
        for t in touched:
            c = t.counts
            was_n, was_total = t.shown, t.total
            if c is None:
                n = _shown_counts(t, t.extra)
                d = det.get(t.key) if det else None
                c = t.counts = counts_of(n, None, dict(d) if d else None)
                t.row = None
            row = t.row
            if row is None or (row and row.fields["comm"] != t.comm):
                if any(c.n):
                    # The fields stay those of the last row while the
                    # name does: a new Row then costs no new dict.
                    f = t.fields
                    if f is None or f["comm"] != t.comm:
                        f = t.fields = {"pid": t.pkey[0], "tid": t.tid,
                                        "comm": t.comm, "start_ns": t.start}
                    # Without Row.__init__ (a Python frame each).
                    row = t.row = new_row(Row)
                    row.key, row.fields, row.counts = t.key, f, c
                else:
                    row = t.row = False
            old = shown(t.key)
            if row is not old:
                # With the sums kept: thousands of rows per read.
                attributed += _replace(rows, t.key, old, row, t.total,
                                       was_n, was_total)
        return self._rows_made("threads", gone, attributed)

    def _proc_rows(self):
        rows = self._rows["processes"]
        touched, gone = self._entries_touched("processes", self.procs)
        attributed = self._attributed["processes"]
        shown = rows.get
        det = self._det["processes"]
        new_row = Row.__new__
        latency = self.options.latency
        proc_counts = self._proc_counts
        cgroup_path = self.cgroups.path
        for p in touched:
            c = p.counts
            was_n, was_total = p.shown, p.total
            if c is None:
                d = det.get(p.key) if det else None
                c = p.counts = proc_counts(p, latency,
                                           dict(d) if d else None)
                p.row = None
            row = p.row
            cgroup = cgroup_path(p.cgroup) if p.cgroup else ""
            if row is None or (row and (
                    row.fields["comm"] != p.comm or
                    row.fields.get("cgroup", "") != cgroup)):
                if any(c.n) or not c.is_zero():
                    f = p.fields
                    if f is None or f["comm"] != p.comm or \
                            f.get("cgroup", "") != cgroup:
                        f = p.fields = {"pid": p.pid, "comm": p.comm,
                                        "start_ns": p.start}
                        if cgroup:
                            f["cgroup"] = cgroup
                    row = p.row = new_row(Row)
                    row.key, row.fields, row.counts = p.key, f, c
                else:
                    row = p.row = False
            old = shown(p.key)
            if row is not old:
                attributed += _replace(rows, p.key, old, row, p.total,
                                       was_n, was_total)
        return self._rows_made("processes", gone, attributed)

    def _rows_made(self, table, gone, attributed):
        """Drop the rows of the keys `gone`, keep the table's attributed
        returns, and hand out a copy of its rows."""
        rows = self._rows[table]
        for key in gone:
            attributed += _replace(rows, key, rows.get(key), None)
        self._attributed[table] = attributed
        return dict(rows)

    def _entries_touched(self, table, known):
        """The entries of `table` touched since its rows were last made,
        and the keys it touched that no longer have one (folded away);
        both start empty again."""
        touched, dirty = self._touched[table], self._dirty[table]
        self._touched[table], self._dirty[table] = set(), set()
        gone = []
        for key in dirty:
            e = known.get(key)
            if e is None:
                gone.append(key)
            else:
                touched.add(e)
        return touched, gone

    @staticmethod
    def _proc_counts(p, latency, detail):
        n = _shown_counts(p, p.extra_n)
        if not latency:
            return Counts.of(n, None, detail)
        hist = p.hist
        live = p.extra_hist is not None
        if live:
            base = hist.compute() if hist is not None else (None, None)
            hist = [(h.copy() if h is not None else Hist()).add(x)
                    for h, x in zip(base, p.extra_hist)]
        shown = p.shown_hist
        if shown is not None and p.shown_live:
            # A read that missed a cache's flush (see _floor) has fewer
            # samples: the path keeps what was shown.  Only a histogram
            # shown with a cache's deltas can be ahead: storage alone
            # only grows from dump to dump, and summing the counts of
            # thousands of histograms per read would cost more than the
            # rest of their rows.
            if hist is None:
                hist = [Hist(), Hist()]
            elif not live:
                hist = hist.compute()
            kept = [new if new is old or (new.sum_ns >= old.sum_ns and
                                          new.count >= old.count) else old
                    for new, old in zip(hist, shown)]
            # What is kept is still ahead of storage: checked again.
            live = live or any(k is not h for k, h in zip(kept, hist))
            hist = kept
        p.shown_live = live
        p.shown_hist = hist
        return Counts.of(n, hist if hist is not None else [Hist(), Hist()],
                         detail)

    def _meta(self, elapsed, lost):
        o = self.options
        g = dict(self.tracer.guard)
        return {
            "version": __version__,
            "kernel": hostinfo.kernel_release(),
            "cpu_model": hostinfo.cpu_model(),
            "hostname": hostinfo.hostname(),
            "started_at": self.started_at.isoformat(timespec="seconds")
            if self.started_at else None,
            "duration_s": round(elapsed, 6),
            "interval_s": None,
            "command": self.command,
            "filters": {"pids": sorted(set(o.pids) | set(self.extra_pids)),
                        "command_tree": self.command is not None,
                        "comm": o.comm or None, "cgroup": o.cgroup or None,
                        "latency": o.latency},
            "guard": {"task_size_max": g["task_size_max"],
                      "xen_pv": bool(g["xen_pv"]), "fred": bool(g["fred"]),
                      "la57": bool(g["la57"])},
            "lost": lost,
        }


def _floor(n, shown):
    """n, but never below what was shown before.  A thread's returns only
    grow; a live read can still miss the deltas a CPU's cache wrote back
    to storage between the task dump and the read of the caches (they
    come with the next read), and a row must not go down meanwhile."""
    if shown is None or all(map(ge, n, shown)):
        return n
    return list(map(max, n, shown))


def _shown_counts(e, extra):
    """The counts an entry (thread or process) shows now: storage plus
    a CPU cache's deltas `extra`, never below what it showed before;
    kept as e.shown with their sum e.total."""
    n = e.n
    if extra is not None:
        n = list(map(add, n, extra))
    if e.ahead:
        n = _floor(n, e.shown)
    # Storage only grows: shown is ahead of it only with a cache's
    # deltas or a floor's values in it.
    e.ahead = n is not e.n
    e.shown = n
    e.total = sum(n)
    return n


def _replace(rows, key, old, row, row_sum=None, old_n=None, old_sum=0):
    """Put `row` (None or False: no row) in the place of `old` in
    rows[key]; the returns the table gained.  `row_sum` is the sum of
    the new row's counts, and `old_sum` that of `old_n`, where the
    caller keeps them: `old`'s counts are summed only when they are no
    longer `old_n`."""
    gained = 0
    if old is not None:
        gained -= old_sum if old.counts.n is old_n else sum(old.counts.n)
    if row:
        rows[key] = row
        gained += sum(row.counts.n) if row_sum is None else row_sum
    elif old is not None:
        del rows[key]
    return gained


def _detail_of(have, add):
    """A copy of detail `add` (a collector's running sums, which change
    after the snapshot is handed out), added to `have`."""
    out = dict(have) if have else {}
    for k, v in add.items():
        out[k] = out.get(k, 0) + v
    return out or None


def _add(dst, src):
    for i, v in enumerate(src):
        dst[i] += v
