"""The kernel side of a collection: configure, load, attach, read.

`Tracer` owns one BPF object and its links; `read()` returns a `RawRead`
of plain Python values, which `source/collector.py` turns into snapshots.  This
is the only module that reads BPF maps.
"""

import ctypes
import os
from dataclasses import dataclass, field

from sysretstat.kernel import abi, bpf, hostinfo, btf as kernelbtf, objects
# cgroup2_mount is used through this module too (doctor, tests).
from sysretstat.kernel.cgroups import cgroup2_mount  # noqa: F401
from sysretstat.errors import (KernelDataError, KernelFeatureMissing,
                               PermissionDenied, UsageError)

# Programs by role; optional ones are skipped where the kernel lacks
# their tracepoint.
CORE_PROGS = ("sr_sys_exit", "sr_fork", "sr_exit", "sr_signal_deliver",
              "sr_switch", "sr_exec")
OPTIONAL_PROGS = {"sr_rseq_ip_fixup": "rseq_ip_fixup",
                  "sr_page_fault_user": "page_fault_user",
                  "sr_signal_generate": "signal_generate"}
# What is lost where an optional program's tracepoint is missing.
OPTIONAL_LOSS = {
    "sr_rseq_ip_fixup": "rseq aborts after a syscall not seen",
    "sr_page_fault_user": "a signal from a fault at the first instruction "
                          "after rt_sigreturn is charged to the sigreturn",
    "sr_signal_generate": "a signal from an exception (#UD, #GP, #DE) at "
                          "the first instruction after rt_sigreturn is "
                          "charged to the sigreturn",
}
TRACEPOINTS = {"sr_sys_enter": "sys_enter", "sr_sys_exit": "sys_exit",
               "sr_switch": "sched_switch", "sr_fork": "sched_process_fork",
               "sr_exit": "sched_process_exit",
               "sr_exit_gd": "sched_process_exit",
               "sr_exec": "sched_process_exec",
               "sr_signal_deliver": "signal_deliver",
               "sr_rseq_ip_fixup": "rseq_ip_fixup",
               "sr_page_fault_user": "page_fault_user",
               "sr_signal_generate": "signal_generate"}

# The one test of a tracepoint's presence (kept here for callers).
tracepoint_exists = kernelbtf.tracepoint_exists


@dataclass(frozen=True)
class Options:
    pids: tuple = ()            # tgids to trace (with their threads)
    filter: bool = False        # trace only selected processes
    latency: bool = True        # attach sys_enter, keep histograms
    assume: dict = field(default_factory=dict)  # guard overrides (tests)
    sc_hists: int = 512         # per-CPU syscall histogram entries
    exclude_self: bool = True
    comm: str = ""              # only tasks of this name
    cgroup: str = ""            # only tasks in this cgroup v2 subtree
    bpf_stats: bool = False     # enable kernel BPF run-time statistics
    latency_sample: int = 64    # time 1 in N calls of hot syscalls
    sample_every_syscall: bool = False   # tests: all syscalls at that rate


@dataclass
class RawRead:
    """One read of every map, as plain values (see source/collector.py)."""
    slots: list          # per CPU: {slot: counts list}
    slot_hists: dict     # {slot: [fast, iret]} (Hist.from_kernel runs)
    # Tuples, not dicts: a dump can hold tens of thousands.
    # (tid, tgid, start_ns, leader_start_ns, comm, n, cgroup_id)
    threads: list
    procs: list          # (tgid, start_ns, comm, [fast, iret])
    exited_threads: list
    exited_procs: list
    lost: dict
    live: list = field(default_factory=list)   # per-CPU cache deltas
    cpu_hists: list = field(default_factory=list)  # per CPU: [fast, iret]
    # ((tid, start_ns), (tgid, leader_start_ns), slot, cpu, reason,
    # detail, n, key): cumulative counts of the `details` map, read
    # after the exit drain (see Tracer.forget_details).
    details: list = field(default_factory=list)


def cgroup_target(path):
    """(id, level) of a cgroup v2 directory, for the in-kernel filter.

    `path` is absolute, or relative to the cgroup2 mount.  The id of a
    cgroup v2 directory is its inode number; its level is its depth.
    """
    root = cgroup2_mount()
    if root is None:
        raise KernelFeatureMissing("no cgroup v2 hierarchy is mounted")
    full = path if path.startswith(root) else os.path.join(
        root, path.lstrip("/"))
    full = os.path.normpath(full)
    if not os.path.isdir(full) or not (full + "/").startswith(root.rstrip("/") + "/"):
        raise UsageError("not a cgroup v2 directory: %s" % path)
    rel = os.path.relpath(full, root)
    level = 0 if rel == "." else len(rel.split(os.sep))
    return os.stat(full).st_ino, level


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Tracer:
    def __init__(self, options=None):
        self.options = options or Options()
        self.guard = hostinfo.guard_model(self.options.assume)
        self.obj = None
        self._iter = None
        self.ncpus = 0
        self.attached = []
        self.ran = []
        self._links = []
        self.skipped = []
        self.exit_prog = "sr_exit"

    # Lifecycle -------------------------------------------------------
    def open(self):
        opts = self.options
        for pid in opts.pids:
            if pid <= 0 or not _pid_alive(pid):
                raise UsageError("no such process: %d" % pid)
        if not hostinfo.has_btf():
            raise KernelFeatureMissing(
                "kernel BTF missing (%s): sysretstat needs a kernel built "
                "with CONFIG_DEBUG_INFO_BTF=y, or SYSRETSTAT_BTF=FILE"
                % hostinfo.btf_path())
        if not hostinfo.can_trace():
            raise PermissionDenied(
                "tracing needs root, or CAP_BPF and CAP_PERFMON")
        bpf._libbpf.check_version()
        self.ncpus = bpf.possible_cpus()
        obj = bpf.BpfObject.open(
            objects.object_bytes("sysret"),
            btf_path=hostinfo.btf_path() if hostinfo.btf_is_custom()
            else None)
        try:
            g = self.guard
            cfg = abi.Config(
                task_size_max=g["task_size_max"],
                self_tgid=os.getpid() if opts.exclude_self else 0,
                sc_hists=opts.sc_hists,
                fred=int(bool(g["fred"])), xen_pv=int(bool(g["xen_pv"])),
                pre_6_7=int(bool(g["pre_6_7"])), la57=int(bool(g["la57"])),
                latency=int(opts.latency),
                filter=int(bool(opts.pids) or opts.filter))
            if opts.comm:
                name = opts.comm.encode()
                if len(name) > abi.COMM_LEN - 1:
                    raise UsageError("command name longer than %d bytes "
                                     "(the kernel keeps %d): %s"
                                     % (abi.COMM_LEN - 1, abi.COMM_LEN - 1,
                                        opts.comm))
                cfg.comm = name
            if opts.cgroup:
                cfg.cgroup_id, cfg.cgroup_level = cgroup_target(opts.cgroup)
            obj.set_rodata(".rodata.cfg", bytes(cfg))
            obj.set_max_entries("sc_hist", max(1, opts.sc_hists))
            # Counts only: no sys_enter program at all, the cheapest mode.
            obj.set_autoload("sr_sys_enter", opts.latency)
            for prog, tp in OPTIONAL_PROGS.items():
                if not tracepoint_exists(tp):
                    obj.set_autoload(prog, False)
                    self.skipped.append(prog)
            # The exit program that takes the tracepoint's own group_dead
            # where it has one (6.16+); the other reads signal->live.
            gd = kernelbtf.tracepoint_args("sched_process_exit") == 2
            obj.set_autoload("sr_exit", not gd)
            obj.set_autoload("sr_exit_gd", gd)
            self.exit_prog = "sr_exit_gd" if gd else "sr_exit"
            for prog in CORE_PROGS:
                if not tracepoint_exists(TRACEPOINTS[prog]):
                    raise KernelFeatureMissing(
                        "tracepoint %s not found in kernel BTF"
                        % TRACEPOINTS[prog])
            obj.load()
            for pid in opts.pids:
                self._select(obj, pid, follow=False)
        except BaseException:
            obj.close()
            raise
        self.obj = obj
        return self

    @staticmethod
    def _select(obj, pid, follow):
        # 1: this process; 2: it and every process it forks, later on.
        obj.map("filter_tgids").update(_u32(pid),
                                       b"\x02" if follow else b"\x01")

    def add_pid(self, pid, follow=False):
        """Trace another process (before or after attach)."""
        self._select(self.obj, pid, follow)

    def attach(self):
        progs = (["sr_sys_enter"] if self.options.latency else []) + \
            [self.exit_prog if p == "sr_exit" else p for p in CORE_PROGS] + \
            [p for p in OPTIONAL_PROGS if p not in self.skipped]
        # sched_switch first: it flushes the per-CPU caches the other
        # programs claim, and a thread that claimed one and was switched
        # out before it was attached would own that cache for good.
        # sys_exit last: by the time returns are counted, every
        # correction that can follow them is in place.  detach() goes
        # in the reverse order.
        progs.remove("sr_switch")
        progs.remove("sr_sys_exit")
        progs = ["sr_switch"] + progs + ["sr_sys_exit"]
        for p in progs:
            self._links.append(self.obj.attach(p))
            self.attached.append(p)
        # Programs stay loaded after detach(): their statistics too.
        self.ran = list(progs)
        self._iter = self.obj.iter_link("sr_dump")
        return self

    def detach(self):
        """Stop counting; maps stay readable until close()."""
        if self.obj is not None:
            # The iterator link only reads: it stays for the final read.
            for link in reversed(self._links):
                self.obj.detach(link)
            self._links = []
            self.attached = []

    def close(self):
        if self.obj is not None:
            self.obj.close()
            self.obj = None
            self._iter = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Reading ---------------------------------------------------------
    def read(self):
        obj = self.obj
        ncpu = self.ncpus
        # Drains and the dump first, the counters last: a return counted
        # in between shows as unattributed rather than as a negative.
        exited_t = [_thread_rec(v) for _, v in
                    obj.map("exited_threads").drain()]
        exited_p = [_proc_rec(v) for _, v in obj.map("exited_procs").drain()]
        threads, procs = _parse_dump(obj.read_iter(self._iter))
        # After the dump: a flush in between can only delay deltas to the
        # next read, never count them twice.
        live = self._read_live(ncpu)
        # After the exit drain: a thread's last detail is in the map
        # before its exit record is, so a drained thread's are final.
        details = self._read_details()
        slots, hists, cpu_hists = self._read_slots(ncpu)
        lost = self._read_lost()
        return RawRead(slots, hists, threads, procs, exited_t, exited_p, lost,
                       live, cpu_hists, details)

    def _read_details(self):
        out = []
        unpack = _DETAIL.unpack_from
        for k, v in self.obj.map("details").items():
            d = unpack(k)
            out.append(((d[_D_TID], d[_D_START]), (d[_D_TGID], d[_D_LEADER]),
                        d[_D_SLOT], d[_D_CPU],
                        abi.OUTCOMES[d[_D_OUTCOME]]
                        if d[_D_OUTCOME] < abi.NR_OUTCOMES else "?",
                        abi.detail_name(d[_D_OUTCOME], d[_D_CODE],
                                        d[_D_TRACER]),
                        int.from_bytes(v[:8], "little"), k))
        return out

    def set_sample_shifts(self, shifts):
        """Time 1 in 2^shifts[slot] calls of each syscall slot from now
        on (bytes of abi.NR_SLOTS; source/sampling.py chooses them)."""
        if len(shifts) != abi.NR_SLOTS:
            raise ValueError("%d shifts for %d slots"
                             % (len(shifts), abi.NR_SLOTS))
        self.obj.map(".data.sample").update(_u32(0), bytes(shifts))

    def forget_details(self, keys):
        """Delete entries of the details map (threads whose exit user
        space has drained: nothing adds to them again)."""
        m = self.obj.map("details")
        for k in keys:
            m.delete(k)

    def _read_live(self, ncpu):
        """What each CPU's cache holds for its running thread, not yet
        flushed to task storage: count and latency deltas."""
        m = self.obj.map("run_cache")
        # The map's value is larger than struct sr_live, which starts it.
        stride = abi.percpu_stride(m.value_size)
        raw = m.lookup(_u32(0), stride * ncpu)
        out = []
        hs = ctypes.sizeof(abi.Hist)
        ph_off = abi.LiveHead.ph.offset
        counts_off = abi.Live.counts.offset
        for c in range(ncpu):
            base = c * stride
            h = abi.LiveHead.from_buffer_copy(
                raw[base:base + ctypes.sizeof(abi.LiveHead)])
            if not h.owner:
                continue
            n = list(_COUNTS.unpack_from(raw, base + counts_off))
            hist = [_run(raw, base + ph_off + p * hs)
                    for p in range(abi.NR_LAT)]
            out.append({"tid": h.tid, "tgid": h.tgid, "start_ns": h.start_ns,
                        "leader_start_ns": h.leader_start_ns,
                        "comm": _comm(h.comm), "n": n, "hist": hist})
        return out

    def _read_slots(self, ncpu):
        """Per CPU {slot: counts}; {slot: histogram runs}; per CPU its
        histogram runs, all syscalls together.

        Only the slots slots_seen marks are read for counts: a host uses
        a few dozen of the 1,600, and each is read for every CPU.  The
        histograms are shared by CPUs: one read of the entries handed
        out (struct sr_hist_index).
        """
        m = self.obj.map("syscalls")
        stride = abi.percpu_stride(abi.Slot)
        unpack = _SLOT.unpack_from
        c_at = _SLOT.at("c")
        per_cpu = [dict() for _ in range(ncpu)]
        zero = bytes(stride)
        for slot in self._seen_slots():
            v = m.lookup(_u32(slot), stride * ncpu)
            for c in range(ncpu):
                # Most slots are empty on most CPUs: compare bytes first.
                if v[c * stride:(c + 1) * stride] == zero:
                    continue
                vals = unpack(v, c * stride)
                if any(vals[c_at]):
                    per_cpu[c][slot] = list(vals[c_at])
        hists, cpu_hists = {}, []
        if not self.options.latency:
            return per_cpu, hists, cpu_hists
        index = abi.HistIndex.from_buffer_copy(
            self.obj.map("hist_index").lookup(_u32(0)))
        hm = self.obj.map("sc_hist")
        used = min(index.next, hm.max_entries)
        if used:
            slot_of = {d - 1: s for s, d in enumerate(index.idx) if d}
            hs = ctypes.sizeof(abi.ScHistPair)
            one = ctypes.sizeof(abi.Hist)
            for k, v in hm.items(value_len=hs, limit=used):
                slot = slot_of.get(int.from_bytes(k, "little"))
                if slot is not None:
                    hists[slot] = [_run(v, p * one)
                                   for p in range(abi.NR_LAT)]
        cm = self.obj.map("cpu_hist")
        hs = abi.percpu_stride(abi.ScHistPair)
        one = ctypes.sizeof(abi.Hist)
        v = cm.lookup(_u32(0), hs * ncpu)
        for c in range(ncpu):
            cpu_hists.append([_run(v, c * hs + p * one)
                              for p in range(abi.NR_LAT)])
        return per_cpu, hists, cpu_hists

    def _seen_slots(self):
        return abi.set_bits(self.obj.map("slots_seen").lookup(_u32(0)))

    def _read_lost(self):
        m = self.obj.map(".bss")
        raw = m.lookup(_u32(0))
        lost = abi.Lost.from_buffer_copy(raw[:ctypes.sizeof(abi.Lost)])
        out = {name: getattr(lost, name) for name, _ in abi.Lost._fields_}
        misses = 0
        for p in self.ran:
            misses += bpf.prog_run_stats(self.obj.prog_fd(p))[2]
        out["recursion"] = misses
        return out

    def run_stats(self):
        """{program: (run_time_ns, run_cnt)} (zero unless stats enabled)."""
        out = {}
        for p in self.attached:
            t, n, _ = bpf.prog_run_stats(self.obj.prog_fd(p))
            out[p] = (t, n)
        return out


def _u32(v):
    """A u32 map key or value (array indexes, tgids)."""
    return v.to_bytes(4, "little")


# Parsers, generated from the abi mirrors (see abi.Layout).  Fields are
# found by name; none is decoded that no reader uses.
_KIND = abi.Layout(abi.RecHead)
_THREAD = abi.Layout(abi.ThreadRec, skip=("pad",))
_DETAIL = abi.Layout(abi.DetailKey, skip=("pad", "pad2"))
_PDUMP = abi.Layout(abi.ProcDump, skip=("pad",), raw=("nz",))
_COUNTS = abi.Layout(abi.Counts)
_SLOT = abi.Layout(abi.Slot, skip=("seen", "pad"))
# The bucket body as bytes: Hist.from_kernel keeps them undecoded.
_HIST = abi.Layout(abi.Hist, raw=("b",))

# Names repeat across records and reads: decode each once.
_comms = {}


def _comm(b):
    s = _comms.get(b)
    if s is None:
        if len(_comms) > 65536:
            _comms.clear()
        s = _comms[b] = b.split(b"\0", 1)[0].decode("utf-8", "replace")
    return s


_T_TID, _T_TGID = _THREAD.at("tid"), _THREAD.at("tgid")
_T_START, _T_LEADER = _THREAD.at("start_ns"), _THREAD.at("leader_start_ns")
_T_COMM, _T_COUNTS = _THREAD.at("comm"), _THREAD.at("counts")
_T_CGROUP = _THREAD.at("cgroup_id")
_D_TID, _D_TGID = _DETAIL.at("tid"), _DETAIL.at("tgid")
_D_START, _D_LEADER = _DETAIL.at("start_ns"), _DETAIL.at("leader_start_ns")
_D_SLOT, _D_CPU = _DETAIL.at("slot"), _DETAIL.at("cpu")
_D_OUTCOME, _D_CODE = _DETAIL.at("outcome"), _DETAIL.at("code")
_D_TRACER = _DETAIL.at("tracer")


def _thread_rec(raw, off=0):
    v = _THREAD.unpack_from(raw, off)
    return (v[_T_TID], v[_T_TGID], v[_T_START], v[_T_LEADER],
            _comm(v[_T_COMM]), list(v[_T_COUNTS]), v[_T_CGROUP])


_H_SUM, _H_BODY = _HIST.at("sum_ns"), _HIST.at("b")


def _run(buf, off):
    """The struct sr_hist at buf[off:] as (lo, bytes of int64 counts,
    sum_ns): its buckets from the first to the last non-zero one, found
    at C speed (histograms are mostly empty).  See Hist.from_kernel."""
    v = _HIST.unpack_from(buf, off)
    body = v[_H_BODY]
    left = body.lstrip(b"\0")
    if not left:
        return 0, b"", v[_H_SUM]
    lo = (len(body) - len(left)) // 8
    hi = -(-len(body.rstrip(b"\0")) // 8)
    return lo, body[lo * 8:hi * 8], v[_H_SUM]


def _proc_rec(raw):
    """An exit record (dense histograms), with each as a run."""
    r = abi.ProcRec.from_buffer_copy(raw[:ctypes.sizeof(abi.ProcRec)])
    hs = ctypes.sizeof(abi.Hist)
    base = abi.ProcRec.hist.offset
    return (r.tgid, r.start_ns, _comm(r.comm),
            [_run(raw, base + p * hs) for p in range(abi.NR_LAT)])


def _malformed(data, off, why):
    return KernelDataError(
        "malformed task dump at offset %d of %d: %s (the BPF object and "
        "this sysretstat disagree on the record layout)"
        % (off, len(data), why))


def _in_order(layout, names):
    """Whether a layout's values are those of the fields `names`, in
    this order and nothing else."""
    at = 0
    for name in names:
        where = layout.at(name)
        if isinstance(where, slice):
            if where.start != at:
                return False
            at = where.stop
        elif where != at:
            return False
        else:
            at += 1
    return at == layout.nvalues


# _parse_dump unpacks records by position, into names: the layouts
# (built from the abi mirrors) must put the fields in this order.
if not (_in_order(_THREAD, ("kind", "tid", "tgid", "start_ns",
                            "leader_start_ns", "comm", "counts",
                            "cgroup_id")) and
        _in_order(_PDUMP, ("kind", "tgid", "start_ns", "comm", "sum_ns",
                           "nz", "n"))):
    raise TypeError("abi.ThreadRec or abi.ProcDump changed: update "
                    "_parse_dump")


def _parse_dump(data):
    """(threads, procs) of a task dump: records as abi.ThreadRec and
    abi.ProcDump (with its bucket counts) back to back.  A record the
    layout cannot account for raises KernelDataError."""
    threads, procs = [], []
    off, size = 0, len(data)
    # Locals: this loop runs once per thread of the host.
    t_unpack, tsize = _THREAD.unpack_from, _THREAD.size
    p_unpack, psize = _PDUMP.unpack_from, _PDUMP.size
    thread_kind, proc_kind = abi.REC_THREAD, abi.REC_PROC
    comms = _comms
    add_thread, add_proc = threads.append, procs.append
    two = abi.NR_LAT == 2
    while off < size:
        # The kind's low byte picks the record's parser, which decodes
        # it whole; its kind field, decoded with it, confirms it.
        low = data[off]
        if low == thread_kind and off + tsize <= size:
            # Unpacked into names (an index per field costs more); the
            # counts and the cgroup id after them come as one list.
            kind, tid, tgid, start, leader, raw, *n = t_unpack(data, off)
            if kind == thread_kind:
                cgroup = n.pop()
                c = comms.get(raw)
                if c is None:
                    c = _comm(raw)
                add_thread((tid, tgid, start, leader, c, n, cgroup))
                off += tsize
                continue
        elif low == proc_kind and off + psize <= size:
            v = p_unpack(data, off)
            if v[0] == proc_kind:
                b = off + psize
                if two:
                    # The usual two paths unrolled: one record per
                    # active process, thousands per read.
                    _, tgid, start, raw, s0, s1, nz0, nz1, n0, n1 = v
                    m = b + 8 * n0
                    e = m + 8 * n1
                    if e > size:
                        raise _malformed(data, off, "process record's %d "
                                         "bucket counts cut short"
                                         % (n0 + n1))
                    runs = [(nz0, data[b:m], s0), (nz1, data[m:e], s1)]
                else:
                    tgid, start, raw = v[1:4]
                    s, nz, nb = (v[4 + i * abi.NR_LAT:4 + (i + 1) * abi.NR_LAT]
                                 for i in range(3))
                    e = b + 8 * sum(nb)
                    if e > size:
                        raise _malformed(data, off, "process record's %d "
                                         "bucket counts cut short"
                                         % sum(nb))
                    runs = []
                    for p in range(abi.NR_LAT):
                        m = b + 8 * nb[p]
                        runs.append((nz[p], data[b:m], s[p]))
                        b = m
                c = comms.get(raw)
                if c is None:
                    c = _comm(raw)
                add_proc((tgid, start, c, runs))
                off = e
                continue
        raise _bad_record(data, off)
    return threads, procs


def _bad_record(data, off):
    """What is wrong with the record at data[off:], which neither
    parser of _parse_dump took."""
    n = len(data)
    if off + _KIND.size > n:
        return _malformed(data, off, "%d bytes left, no record kind"
                          % (n - off))
    kind = _KIND.unpack_from(data, off)[0]
    if kind == abi.REC_THREAD:
        return _malformed(data, off, "thread record cut short")
    if kind != abi.REC_PROC:
        return _malformed(data, off, "unknown record kind %d" % kind)
    return _malformed(data, off, "process record cut short")
