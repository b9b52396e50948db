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
from sysretstat.kernel.cgroups import CgroupPaths
from sysretstat.source.sampling import Sampler
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
    __slots__ = ("tid", "start", "pkey", "comm", "n", "dead", "counts",
                 "extra", "row", "shown", "cgroup")

    def __init__(self, tid, start, pkey, comm):
        self.tid, self.start, self.pkey, self.comm = tid, start, pkey, comm
        self.cgroup = 0      # its cgroup v2 id (0: not read yet)
        self.n = [0] * abi.NR_OUTCOMES
        self.dead = False
        self.counts = None   # the Counts last handed out, until n changes
        self.extra = None    # deltas still in a CPU's cache, this read
        self.row = None      # the Row last handed out (False: no row)
        self.shown = None    # the counts last handed out (see _floor)


class _Proc:
    __slots__ = ("pid", "start", "comm", "n", "hist", "dead", "threads",
                 "counts", "extra_n", "extra_hist", "row", "shown",
                 "shown_hist", "shown_live", "fields", "cgroup")

    def __init__(self, pid, start, comm):
        self.pid, self.start, self.comm = pid, start, comm
        self.cgroup = 0
        self.n = [0] * abi.NR_OUTCOMES
        self.hist = None
        self.dead = False
        self.threads = 0   # live (not yet exited) threads remembered
        self.counts = None
        self.extra_n = None      # sums of its threads' cached deltas
        self.extra_hist = None
        self.row = None
        self.shown = None
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
        dirty = self._dirty["processes"]
        procs, new_proc = self.procs, _Proc
        from_kernel = Hist.from_kernel
        for pid, start, comm, hist in raw.procs + raw.exited_procs:
            key = (pid, start)
            dirty.add(key)
            p = procs.get(key)
            if p is None:
                p = procs[key] = new_proc(pid, start, comm)
            p.comm = comm or p.comm
            p.hist = [from_kernel(*h) for h in hist]
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
        dirty_t = self._dirty["threads"]
        dirty_p = self._dirty["processes"]
        threads, procs = self.threads, self.procs
        new_thread, new_proc = _Thread, _Proc
        for tid, tgid, start, leader_start, comm, new, cgroup in recs:
            key = (tid, start)
            pkey = (tgid, leader_start)
            dirty_t.add(key)
            dirty_p.add(pkey)
            p = procs.get(pkey)
            if p is None:
                p = procs[pkey] = new_proc(tgid, leader_start, comm)
            t = threads.get(key)
            if t is None:
                t = threads[key] = new_thread(tid, start, pkey, comm)
                p.threads += 1
            if tid == tgid or not p.comm:
                p.comm = comm
            t.comm = comm
            if cgroup and cgroup != t.cgroup:
                t.cgroup = cgroup
                if tid == tgid or not p.cgroup:
                    p.cgroup = cgroup
            if new != t.n:
                p.n = list(map(add, p.n, map(sub, new, t.n)))
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

        threads = self._update_rows("threads", self.threads,
                                    self._thread_row)
        processes = self._update_rows("processes", self.procs,
                                      self._proc_row)

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

    def _update_rows(self, table, known, make_row):
        """The table's rows: last snapshot's, with those of the entries
        touched since rebuilt (copied, so handed-out tables never
        change).  Unchanged rows are the same objects, which
        Snapshot.delta() skips by identity."""
        rows = self._rows[table]
        attributed = self._attributed[table]
        pop, get = rows.pop, known.get
        for key in self._dirty[table]:
            old = pop(key, None)
            if old is not None:
                attributed -= sum(old.counts.n)
            entry = get(key)
            row = make_row(key, entry) if entry is not None else None
            if row:
                rows[key] = row
                attributed += sum(row.counts.n)
        self._attributed[table] = attributed
        self._dirty[table] = set()
        return dict(rows)

    def _thread_row(self, key, t):
        if t.counts is None:
            t.shown = _floor(t.n if t.extra is None else
                             list(map(add, t.n, t.extra)), t.shown)
            t.counts = Counts(t.shown, None, self._det["threads"].get(key))
            t.row = None
        row = t.row
        if row is None or (row and row.fields["comm"] != t.comm):
            # The fields stay those of the last row while the name
            # does: a new Row then costs no new dict.
            f = row.fields if row else None
            if f is None or f["comm"] != t.comm:
                f = {"pid": t.pkey[0], "tid": t.tid, "comm": t.comm,
                     "start_ns": t.start}
            t.row = row = Row(key, f, t.counts) if any(t.counts.n) \
                else False
        return row

    def _proc_row(self, key, p):
        if p.counts is None:
            p.counts = self._proc_counts(p, self.options.latency)
            p.counts.detail = self._det["processes"].get(key)
            if p.counts.detail:
                p.counts.detail = dict(p.counts.detail)
            p.row = None
        row = p.row
        cgroup = self.cgroups.path(p.cgroup)
        if row is None or (row and (row.fields["comm"] != p.comm or
                                    row.fields.get("cgroup", "") != cgroup)):
            f = p.fields
            if f is None or f["comm"] != p.comm or \
                    f.get("cgroup", "") != cgroup:
                f = p.fields = {"pid": p.pid, "comm": p.comm,
                                "start_ns": p.start}
                if cgroup:
                    f["cgroup"] = cgroup
            p.row = row = Row(key, f, p.counts) \
                if not p.counts.is_zero() else False
        return row

    @staticmethod
    def _proc_counts(p, latency):
        n = p.n if p.extra_n is None else list(map(add, p.n, p.extra_n))
        p.shown = n = _floor(n, p.shown)
        if not latency:
            return Counts(n)
        hist = p.hist
        live = p.extra_hist is not None
        if live:
            hist = [(h.copy() if h is not None else Hist()).add(x)
                    for h, x in zip(hist or [None, None], p.extra_hist)]
        hist = hist or [Hist(), Hist()]
        shown = p.shown_hist
        if shown is not None and p.shown_live:
            # A read that missed a cache's flush (see _floor) has fewer
            # samples: the path keeps what was shown.  Only a histogram
            # shown with a cache's deltas can be ahead: storage alone
            # only grows from dump to dump, and summing the counts of
            # thousands of histograms per read would cost more than the
            # rest of their rows.
            kept = [new if new is old or (new.sum_ns >= old.sum_ns and
                                          new.count >= old.count) else old
                    for new, old in zip(hist, shown)]
            # What is kept is still ahead of storage: checked again.
            live = live or any(k is not h for k, h in zip(kept, hist))
            hist = kept
        p.shown_live = live
        p.shown_hist = hist
        return Counts(n, hist)

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
