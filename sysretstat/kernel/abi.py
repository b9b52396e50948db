"""Python mirror of bpf/sysret.h, the kernel/user contract.

Keep in step with the header; tests/test_abi.py checks every structure
here against the BTF of the compiled object, so a drift fails the build.
"""

import ctypes

COMM_LEN = 16

# enum sr_outcome, in order.  Names are the spec's reason words.
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
SLOTS_X32 = 1024
NR_SLOTS = SLOTS_X64 + SLOTS_I386 + SLOTS_X32

HIST_MAX_POW = 42
HIST_BUCKETS = 8 + (HIST_MAX_POW - 3) * 8 + 1
HIST_WORDS = (HIST_BUCKETS + 63) // 64
LAT_FAST, LAT_IRET = 0, 1
NR_LAT = 2

REC_THREAD = 1
REC_PROC = 2


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
                ("proc_hists", ctypes.c_uint64)]


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
                ("counts", Counts)]


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


class Slot(ctypes.Structure):
    _fields_ = [("c", Counts), ("hidx", ctypes.c_uint32),
                ("seen", ctypes.c_uint32)]


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
    "sr_proc_dump": ProcDump,
    "sr_live_head": LiveHead,
}


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
