"""Facts read from the kernel's BTF: which tracepoints exist, and which
SYSRET guard the kernel compiles in.

Features are probed, never inferred from the version number: vendor
kernels backport.  The BTF is parsed once per process by libbpf
(`btf__parse`), and looked up by name and kind, not searched as bytes.
"""

import ctypes
import threading

from sysretstat.kernel import libbpf as _libbpf, hostinfo

# BTF kinds (include/uapi/linux/btf.h).
KIND_TYPEDEF = 8
KIND_FUNC = 12


class _BtfType(ctypes.Structure):
    # struct btf_type: name_off, info, then size or type (a union).
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32),
                ("type", ctypes.c_uint32)]


_SIGNATURES = {
    "btf__parse": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_void_p]),
    "btf__free": (None, [ctypes.c_void_p]),
    "btf__find_by_name_kind": (ctypes.c_int32, [ctypes.c_void_p,
                                                ctypes.c_char_p,
                                                ctypes.c_uint32]),
    "btf__type_by_id": (ctypes.POINTER(_BtfType), [ctypes.c_void_p,
                                                   ctypes.c_uint32]),
}

_lock = threading.Lock()
_cache = {}   # path -> btf pointer (0: unreadable)


def _lib():
    lb = _libbpf.lib()
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lb, name)
        fn.restype, fn.argtypes = res, args
    return lb


def _btf():
    """libbpf's parsed kernel BTF, or None where it cannot be read.
    hostinfo.btf_path() refuses a SYSRETSTAT_BTF that is not a regular
    file of a BTF's size (KernelFeatureMissing)."""
    path = hostinfo.btf_path()
    with _lock:
        if path not in _cache:
            _cache[path] = _lib().btf__parse(path.encode(), None) or 0
        return _cache[path] or None


def _find(name, kind):
    btf = _btf()
    if btf is None:
        return None
    tid = _lib().btf__find_by_name_kind(btf, name.encode(), kind)
    return tid if tid > 0 else None


def tracepoint_exists(name):
    """Whether the kernel has the typed (tp_btf) tracepoint `name`."""
    return _find("btf_trace_" + name, KIND_TYPEDEF) is not None


def sysret_guard_in_c():
    """True where do_syscall_64() decides SYSRET in C (Linux 6.7+: it
    returns bool), False where the guard is entry_64.S's (it returns
    void), None where the kernel's BTF does not say."""
    tid = _find("do_syscall_64", KIND_FUNC)
    if tid is None:
        return None
    lb = _lib()
    func = lb.btf__type_by_id(_btf(), tid)
    if not func:
        return None
    proto = lb.btf__type_by_id(_btf(), func.contents.type)
    if not proto:
        return None
    return proto.contents.type != 0   # return type id 0 is void


def tracepoint_args(name):
    """How many arguments the typed tracepoint `name` passes (its
    btf_trace_ typedef: a pointer to a prototype whose first argument is
    the context), or None where the kernel has no such tracepoint.  Some
    gain arguments over time: sched_process_exit has group_dead since
    6.16."""
    tid = _find("btf_trace_" + name, KIND_TYPEDEF)
    if tid is None:
        return None
    lb = _lib()
    btf = _btf()
    t = lb.btf__type_by_id(btf, tid)           # typedef -> pointer
    ptr = t and lb.btf__type_by_id(btf, t.contents.type)
    proto = ptr and lb.btf__type_by_id(btf, ptr.contents.type)
    if not proto:
        return None
    return (proto.contents.info & 0xffff) - 1  # vlen, less the context
