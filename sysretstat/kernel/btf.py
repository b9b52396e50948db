"""Facts read from the kernel's BTF: which tracepoints exist, and which
SYSRET guard the kernel compiles in.

Features are probed, never inferred from the version number: vendor
kernels backport.  libbpf parses the BTF (`btf__parse`) and types are
looked up by name and kind, not searched as bytes.  Only the answers
are kept: the parsed BTF (several MiB) is freed once the questions of a
burst (the tracer's set-up asks a few at once) have been answered.
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
_answers = {}   # (path, question) -> answer
_held = None    # [path, btf pointer or 0, release timer] while in use
# How long a parsed BTF is kept after the last parse, for the questions
# that follow (parsing costs ~10 ms; an idle daemon should not pay 5 MiB).
HOLD_S = 2.0


def _lib():
    lb = _libbpf.lib()
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lb, name)
        fn.restype, fn.argtypes = res, args
    return lb


def _ask(question, answer):
    """The cached answer to `question`, else `answer(lib, btf)` on the
    kernel's BTF (btf None where it cannot be read), cached.
    hostinfo.btf_path() refuses a SYSRETSTAT_BTF that is not a regular
    file of a BTF's size (KernelFeatureMissing)."""
    global _held
    path = hostinfo.btf_path()
    key = (path, question)
    with _lock:
        if key in _answers:
            return _answers[key]
        lb = _lib()
        if _held is None or _held[0] != path:
            _release_locked()
            _held = [path, lb.btf__parse(path.encode(), None) or 0, None]
            if HOLD_S > 0:
                t = threading.Timer(HOLD_S, release)
                t.daemon = True
                _held[2] = t
                t.start()
        try:
            out = _answers[key] = answer(lb, _held[1] or None)
        finally:
            if HOLD_S <= 0:
                _release_locked()
        return out


def release():
    """Free the parsed BTF now (the answers stay)."""
    with _lock:
        _release_locked()


def _release_locked():
    global _held
    if _held is None:
        return
    _, btf, timer = _held
    _held = None
    if timer is not None and timer is not threading.current_thread():
        timer.cancel()
    if btf:
        _lib().btf__free(btf)


def _find(lb, btf, name, kind):
    if btf is None:
        return None
    tid = lb.btf__find_by_name_kind(btf, name.encode(), kind)
    return tid if tid > 0 else None


def tracepoint_type_id(name):
    """The BTF id of the typed (tp_btf) tracepoint `name` (what a tp_btf
    link reports as its target), or None where the kernel has none."""
    return _ask(("tracepoint", name), lambda lb, btf: _find(
        lb, btf, "btf_trace_" + name, KIND_TYPEDEF))


def tracepoint_exists(name):
    """Whether the kernel has the typed (tp_btf) tracepoint `name`."""
    return tracepoint_type_id(name) is not None


def sysret_guard_in_c():
    """True where do_syscall_64() decides SYSRET in C (Linux 6.7+: it
    returns bool), False where the guard is entry_64.S's (it returns
    void), None where the kernel's BTF does not say."""
    return _ask(("sysret_guard_in_c",), _guard_in_c)


def _guard_in_c(lb, btf):
    tid = _find(lb, btf, "do_syscall_64", KIND_FUNC)
    if tid is None:
        return None
    func = lb.btf__type_by_id(btf, tid)
    if not func:
        return None
    proto = lb.btf__type_by_id(btf, func.contents.type)
    if not proto:
        return None
    return proto.contents.type != 0   # return type id 0 is void


def tracepoint_args(name):
    """How many arguments the typed tracepoint `name` passes (its
    btf_trace_ typedef: a pointer to a prototype whose first argument is
    the context), or None where the kernel has no such tracepoint.  Some
    gain arguments over time: sched_process_exit has group_dead since
    6.16."""
    return _ask(("tracepoint_args", name),
                lambda lb, btf: _tracepoint_args(lb, btf, name))


def _tracepoint_args(lb, btf, name):
    tid = _find(lb, btf, "btf_trace_" + name, KIND_TYPEDEF)
    if tid is None:
        return None
    t = lb.btf__type_by_id(btf, tid)           # typedef -> pointer
    ptr = t and lb.btf__type_by_id(btf, t.contents.type)
    proto = ptr and lb.btf__type_by_id(btf, ptr.contents.type)
    if not proto:
        return None
    return (proto.contents.info & 0xffff) - 1  # vlen, less the context
