"""Python mirror of bpf/sysret.h, the kernel/user contract.

Keep in step with the header; tests/test_abi.py checks every structure
here, member by member, against the BTF of the compiled object, so a
drift fails the build.  The ctypes structures are the only statement of
the layout on this side: readers build their parsers from them
(`Layout`), never from format strings of their own.
"""

import ctypes
import struct

COMM_LEN = 16

# enum sr_outcome, in order.  Names are the reason words of
# every output (sysretstat(8), REASONS).
OUTCOMES = (
    "sysret", "eretu",
    "xen_pv", "rcx_ne_rip", "r11_ne_rflags", "cs_not_user", "ss_not_user",
    "rip_noncanonical", "rflags_rf", "rflags_tf",
    "fork_child", "signal", "restart", "ptrace", "rseq",
    "int80", "compat_guard",
)
NR_OUTCOMES = len(OUTCOMES)
O_SYSRET = 0
O_ERETU = 1
FIRST_IRET = 2
REASONS = OUTCOMES[FIRST_IRET:]
PATHS = ("sysret", "iret", "eretu")

ABI_X64, ABI_I386, ABI_X32 = 0, 1, 2
ABI_NAMES = ("x64", "i386", "x32")
SLOTS_X64 = 512
SLOTS_I386 = 512
SLOTS_X32 = 576
NR_SLOTS = SLOTS_X64 + SLOTS_I386 + SLOTS_X32

HIST_MAX_POW = 42
HIST_BUCKETS = 8 + (HIST_MAX_POW - 3) * 8 + 1
HIST_WORDS = (HIST_BUCKETS + 63) // 64
LAT_FAST, LAT_IRET = 0, 1
NR_LAT = 2

REC_THREAD = 1
REC_PROC = 2


# The -ERESTART* codes a syscall returns to ask for a restart
# (include/linux/errno.h); user space never sees them.
RESTART_CODES = {512: "ERESTARTSYS", 513: "ERESTARTNOINTR",
                 514: "ERESTARTNOHAND", 516: "ERESTART_RESTARTBLOCK"}
# Signal names of x86-64 (asm/signal.h); 32 and up are real-time.
SIGNAL_NAMES = (None, "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP",
                "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
                "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
                "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
                "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
                "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR",
                "SIGSYS")


def detail_name(outcome, code, tracer):
    """The name of a reason detail (struct sr_detail_key): a signal's
    name, a restart code's, the tracer's comm (bytes), or thread or
    process for a fork child."""
    reason = OUTCOMES[outcome] if 0 <= outcome < NR_OUTCOMES else None
    if reason == "signal":
        if 0 < code < len(SIGNAL_NAMES):
            return SIGNAL_NAMES[code]
        return "SIG%d" % code
    if reason == "restart":
        return RESTART_CODES.get(code, "E%d" % code)
    if reason == "ptrace":
        return tracer.split(b"\0", 1)[0].decode("utf-8", "replace")
    if reason == "fork_child":
        return {FORK_PROCESS: "process", FORK_THREAD: "thread"}.get(
            code, "fork%d" % code)
    return str(code)


# Syscalls whose return sys_exit cannot place on its own: rt_sigreturn
# and sigreturn set orig_ax to -1 (their number is gone), and an execve
# or execveat can change the ABI of the task under it (a 64-bit program
# exec'ing a 32-bit one is a compat task at its exit).  Only the entry
# knows them, so their entry is always seen: never sampled out.
NEED_ENTRY = frozenset((
    ("x64", 15), ("x64", 59), ("x64", 322),
    ("x32", 513), ("x32", 520), ("x32", 545),
    ("i386", 11), ("i386", 119), ("i386", 173), ("i386", 358),
))


def slot_to_syscall(slot):
    """(abi name, nr) of a per-syscall slot; nr is -1 for 'unknown'."""
    if slot < SLOTS_X64:
        return "x64", (slot if slot < SLOTS_X64 - 1 else -1)
    slot -= SLOTS_X64
    if slot < SLOTS_I386:
        return "i386", (slot if slot < SLOTS_I386 - 1 else -1)
    slot -= SLOTS_I386
    return "x32", (slot if slot < SLOTS_X32 - 1 else -1)


def syscall_to_slot(abi, nr):
    if abi == "x64":
        return nr if 0 <= nr < SLOTS_X64 - 1 else SLOTS_X64 - 1
    if abi == "i386":
        return SLOTS_X64 + (nr if 0 <= nr < SLOTS_I386 - 1
                            else SLOTS_I386 - 1)
    return SLOTS_X64 + SLOTS_I386 + (nr if 0 <= nr < SLOTS_X32 - 1
                                     else SLOTS_X32 - 1)


class Counts(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64 * NR_OUTCOMES)]


class Hist(ctypes.Structure):
    _fields_ = [("sum_ns", ctypes.c_int64),
                ("b", ctypes.c_int64 * HIST_BUCKETS)]


class Config(ctypes.Structure):
    _fields_ = [("task_size_max", ctypes.c_uint64),
                ("self_tgid", ctypes.c_uint32),
                ("sc_hists", ctypes.c_uint32),
                ("fred", ctypes.c_uint8),
                ("xen_pv", ctypes.c_uint8),
                ("pre_6_7", ctypes.c_uint8),
                ("la57", ctypes.c_uint8),
                ("latency", ctypes.c_uint8),
                ("filter", ctypes.c_uint8),
                ("follow_forks", ctypes.c_uint8),
                ("cgroup_level", ctypes.c_uint8),
                ("cgroup_id", ctypes.c_uint64),
                ("comm", ctypes.c_char * COMM_LEN)]


class Lost(ctypes.Structure):
    _fields_ = [("exited_threads", ctypes.c_uint64),
                ("exited_procs", ctypes.c_uint64),
                ("storage", ctypes.c_uint64),
                ("syscall_hists", ctypes.c_uint64),
                ("entries", ctypes.c_uint64),
                ("cache", ctypes.c_uint64),
                ("migrated", ctypes.c_uint64),
                ("proc_hists", ctypes.c_uint64),
                ("details", ctypes.c_uint64)]


class LiveHead(ctypes.Structure):
    _fields_ = [("owner", ctypes.c_uint64),
                ("tid", ctypes.c_int32),
                ("tgid", ctypes.c_int32),
                ("start_ns", ctypes.c_uint64),
                ("leader_start_ns", ctypes.c_uint64),
                ("comm", ctypes.c_char * COMM_LEN),
                ("ph", Hist * NR_LAT),
                ("ph_nz", (ctypes.c_uint64 * HIST_WORDS) * NR_LAT),
                ("busy", ctypes.c_uint32),
                ("pad", ctypes.c_uint32),
                ("switches", ctypes.c_uint64)]


class Live(ctypes.Structure):
    _fields_ = [("h", LiveHead), ("counts", Counts)]


class ThreadRec(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint32),
                ("tid", ctypes.c_int32),
                ("tgid", ctypes.c_int32),
                ("pad", ctypes.c_uint32),
                ("start_ns", ctypes.c_uint64),
                ("leader_start_ns", ctypes.c_uint64),
                ("comm", ctypes.c_char * COMM_LEN),
                ("counts", Counts),
                ("cgroup_id", ctypes.c_uint64)]


FORK_PROCESS, FORK_THREAD = 1, 2


class DetailKey(ctypes.Structure):
    """Key of the `details` map (its value: a u64 count of returns)."""
    _fields_ = [("tid", ctypes.c_int32),
                ("tgid", ctypes.c_int32),
                ("start_ns", ctypes.c_uint64),
                ("leader_start_ns", ctypes.c_uint64),
                ("cpu", ctypes.c_uint32),
                ("slot", ctypes.c_uint16),
                ("outcome", ctypes.c_uint8),
                ("pad", ctypes.c_uint8),
                ("code", ctypes.c_uint32),
                ("pad2", ctypes.c_uint32),
                ("tracer", ctypes.c_char * COMM_LEN)]


class ProcRec(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint32),
                ("tgid", ctypes.c_int32),
                ("start_ns", ctypes.c_uint64),
                ("comm", ctypes.c_char * COMM_LEN),
                ("hist", Hist * NR_LAT)]


class ProcDump(ctypes.Structure):
    """Header of a live process record; bucket counts follow it."""
    _fields_ = [("kind", ctypes.c_uint32),
                ("tgid", ctypes.c_int32),
                ("start_ns", ctypes.c_uint64),
                ("comm", ctypes.c_char * COMM_LEN),
                ("sum_ns", ctypes.c_int64 * NR_LAT),
                ("nz", (ctypes.c_uint64 * HIST_WORDS) * NR_LAT),
                ("n", ctypes.c_uint16 * NR_LAT),
                ("pad", ctypes.c_uint32)]


class RecHead(ctypes.Structure):
    """What every dump record starts with (enum sr_rec_kind): the one
    field a reader decodes before it knows the record's type."""
    _fields_ = [("kind", ctypes.c_uint32)]


class Slot(ctypes.Structure):
    _fields_ = [("c", Counts), ("seen", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class HistIndex(ctypes.Structure):
    _fields_ = [("next", ctypes.c_uint32),
                ("idx", ctypes.c_uint32 * NR_SLOTS)]


class SlotsSeen(ctypes.Structure):
    _fields_ = [("w", ctypes.c_uint64 * (NR_SLOTS // 64))]


class ScHistPair(ctypes.Structure):
    _fields_ = [("h", Hist * NR_LAT)]


# C struct name -> mirror, for the BTF check.
MIRRORS = {
    "sr_counts": Counts,
    "sr_hist": Hist,
    "sr_config": Config,
    "sr_lost": Lost,
    "sr_thread_rec": ThreadRec,
    "sr_proc_rec": ProcRec,
    "sc_hist_pair": ScHistPair,
    "sr_slot": Slot,
    "sr_slots_seen": SlotsSeen,
    "sr_hist_index": HistIndex,
    "sr_proc_dump": ProcDump,
    "sr_live_head": LiveHead,
    "sr_detail_key": DetailKey,
}


# Integer types struct can decode, standard sizes, little-endian (the
# BPF target's byte order is the host's, and x86 is little-endian).
_INT_CODES = {ctypes.c_int8: "b", ctypes.c_uint8: "B",
              ctypes.c_int16: "h", ctypes.c_uint16: "H",
              ctypes.c_int32: "i", ctypes.c_uint32: "I",
              ctypes.c_int64: "q", ctypes.c_uint64: "Q"}


class Layout:
    """A struct.Struct decoding one of the structures above, built from
    its ctypes fields, so that a parser cannot disagree with the mirror
    that tests/test_abi.py checks against the kernel object.

    Values come in field order, nested structures flattened: an integer
    field is one value, an array of integers one value per element, a
    char array one bytes value.  Fields in `skip` become padding (never
    decoded: cheaper), fields in `raw` are kept as bytes, one value per
    innermost row (bitmaps, histogram bodies).  Gaps the compiler leaves
    are padding too.  `at(name)` says where a field's values are, by
    dotted path ("counts", "counts.n", "ph.sum_ns").
    """

    def __init__(self, ctype, skip=(), raw=()):
        self.ctype = ctype
        self.skip, self.raw = frozenset(skip), frozenset(raw)
        leaves = []
        self._walk(ctype, 0, "", leaves)
        fmt, pos, nvals = ["<"], 0, 0
        self._where = {}   # path -> [positions], and whether it is whole
        for off, size, code, count, path, whole in leaves:
            if off < pos:
                raise TypeError("%s: %s overlaps the field before it"
                                % (ctype.__name__, path))
            if off > pos:
                fmt.append("%dx" % (off - pos))
            fmt.append(code)
            for prefix in _prefixes(path):
                entry = self._where.setdefault(prefix, [[], False])
                entry[0].extend(range(nvals, nvals + count))
            self._where[path][1] = whole
            pos, nvals = off + size, nvals + count
        size = ctypes.sizeof(ctype)
        if pos < size:
            fmt.append("%dx" % (size - pos))
        self.struct = struct.Struct("".join(fmt))
        if self.struct.size != size:
            raise TypeError("%s: layout of %d bytes, ctypes says %d"
                            % (ctype.__name__, self.struct.size, size))
        self.size = size
        self.nvalues = nvals
        self.unpack_from = self.struct.unpack_from
        self.iter_unpack = self.struct.iter_unpack

    def _walk(self, ctype, off, path, out):
        if path in self.skip:
            return
        if ctype in _INT_CODES:
            out.append((off, ctypes.sizeof(ctype), _INT_CODES[ctype], 1,
                        path, True))
        elif issubclass(ctype, ctypes.Array):
            elem, n = ctype._type_, ctype._length_
            if elem is ctypes.c_char or (path in self.raw and
                                         elem in _INT_CODES):
                out.append((off, ctypes.sizeof(ctype),
                            "%ds" % ctypes.sizeof(ctype), 1, path, True))
            elif elem in _INT_CODES:
                out.append((off, ctypes.sizeof(ctype),
                            "%d%s" % (n, _INT_CODES[elem]), n, path, False))
            else:
                # Elements share the array's path: a raw 2-D array gives
                # one bytes value per row.
                es = ctypes.sizeof(elem)
                for i in range(n):
                    self._walk(elem, off + i * es, path, out)
        elif issubclass(ctype, ctypes.Structure):
            for f in ctype._fields_:
                if len(f) != 2:
                    raise TypeError("%s.%s: bit fields are not supported"
                                    % (ctype.__name__, f[0]))
                name = f[0]
                self._walk(f[1], off + getattr(ctype, name).offset,
                           path + "." + name if path else name, out)
        else:
            raise TypeError("%s at %r: no struct code for this type"
                            % (ctype.__name__, path))

    def at(self, name):
        """The index of a field's value when it is one (an integer, a
        char array, a raw row), else the slice of its values."""
        if name not in self._where:
            raise KeyError("%s has no decoded field %r"
                           % (self.ctype.__name__, name))
        positions, whole = self._where[name]
        if whole and len(positions) == 1:
            return positions[0]
        if positions != list(range(positions[0], positions[-1] + 1)):
            raise KeyError("%s.%s: values not contiguous"
                           % (self.ctype.__name__, name))
        return slice(positions[0], positions[-1] + 1)


def _prefixes(path):
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def percpu_stride(ctype_or_size):
    """Bytes between CPUs in a per-CPU map's value: the kernel copies
    each CPU's value 8-byte aligned (bpf_map_lookup_elem on PERCPU maps),
    whatever the structure's own alignment."""
    size = ctype_or_size if isinstance(ctype_or_size, int) \
        else ctypes.sizeof(ctype_or_size)
    return (size + 7) & ~7


def set_bits(raw):
    """Indexes of the bits set in a little-endian bitmap of u64 words
    (bytes), in increasing order: sr_slots_seen, sr_proc_dump.nz."""
    out = []
    bits = int.from_bytes(raw, "little")
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


def bucket_of(v):
    """The histogram bucket of a latency `v` in ns (as the BPF side)."""
    if v < 8:
        return int(v)
    if v >= (1 << HIST_MAX_POW):
        return HIST_BUCKETS - 1
    msb = int(v).bit_length() - 1
    return 8 + (msb - 3) * 8 + ((int(v) >> (msb - 3)) & 7)


def bucket_bounds(i):
    """[lower, upper) in ns of bucket i; the last one is open-ended."""
    if i < 8:
        return i, i + 1
    if i >= HIST_BUCKETS - 1:
        return 1 << HIST_MAX_POW, None
    k = (i - 8) // 8 + 3
    sub = (i - 8) % 8
    return (8 + sub) << (k - 3), (9 + sub) << (k - 3)
