"""Facts read from the kernel's BTF: which tracepoints exist, and which
SYSRET guard the kernel compiles in.

Features are probed, never inferred from the version number: vendor
kernels backport.  The BTF is parsed once per process by libbpf
(`btf__parse`), and looked up by name and kind, not searched as bytes.
"""

import ctypes
import os
import stat
import threading

from . import _libbpf, hostinfo
from .errors import KernelFeatureMissing

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

# The largest BTF file read: vmlinux BTF is about 6 MB; a path to a
# device or a huge file must not make the tool read without end.
MAX_BTF_BYTES = 256 << 20


def _lib():
    lb = _libbpf.lib()
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lb, name)
        fn.restype, fn.argtypes = res, args
    return lb


def _btf():
    """libbpf's parsed kernel BTF, or None where it cannot be read."""
    path = hostinfo.btf_path()
    with _lock:
        if path not in _cache:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and (not stat.S_ISREG(st.st_mode) or
                                   st.st_size > MAX_BTF_BYTES):
                raise KernelFeatureMissing(
                    "kernel BTF %s is not a regular file of at most %d MiB"
                    % (path, MAX_BTF_BYTES >> 20))
            ptr = _lib().btf__parse(path.encode(), None)
            _cache[path] = ptr or 0
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
