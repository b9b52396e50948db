"""Other BPF programs attached to the syscall tracepoints.

Another syscall tracer on sys_enter/sys_exit runs on every syscall, so
it adds to the durations sysretstat measures and to the bench's figures.
The kernel's BPF links say where each program is attached: raw
tracepoint links name their tracepoint, typed (tp_btf) links its BTF
type, perf-event links (Linux >= 6.6) their tracepoint.  A program
attached with the older perf_event_open + ioctl has no link and is not
seen; bpftool is not needed.
"""

import ctypes
import errno
import os

from sysretstat.kernel import btf as _btf

_SYS_BPF = 321          # x86_64
_LINK_GET_FD_BY_ID = 30
_LINK_GET_NEXT_ID = 31
_OBJ_GET_INFO_BY_FD = 15

_LINK_RAW_TRACEPOINT = 1
_LINK_TRACING = 2
_LINK_PERF_EVENT = 7
_PERF_EVENT_TRACEPOINT = 5

_libc = None


def _bpf(cmd, attr):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    r = _libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_int(cmd),
                      ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if r < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


def _link_ids():
    attr = _IdAttr()
    while True:
        try:
            _bpf(_LINK_GET_NEXT_ID, attr)
        except OSError as e:
            if e.errno == errno.ENOENT:    # past the last one
                return
            raise
        attr.id = attr.next_id
        yield attr.id


def _link_tracepoint(link_id):
    """(the tracepoint's name or None, prog_id) of one link."""
    attr = _IdAttr(id=link_id)
    try:
        fd = _bpf(_LINK_GET_FD_BY_ID, attr)
    except OSError:              # gone since it was listed
        return None, 0
    try:
        info = (ctypes.c_uint8 * 256)()
        name = ctypes.create_string_buffer(256)
        # Where the kernel writes a name: raw_tracepoint's pointer at 16,
        # perf_event tracepoint's at 24 (struct bpf_link_info).
        ctypes.c_uint64.from_buffer(info, 16).value = ctypes.addressof(name)
        ctypes.c_uint32.from_buffer(info, 24).value = len(name)
        first = _info(fd, info)
        if first is None:
            return None, 0
        kind, prog_id = first
        if kind == _LINK_RAW_TRACEPOINT:
            return name.value.decode(errors="replace"), prog_id
        if kind == _LINK_TRACING:
            btf_id = ctypes.c_uint32.from_buffer(info, 24).value
            return _tp_btf_name(btf_id), prog_id
        if kind == _LINK_PERF_EVENT:
            info = (ctypes.c_uint8 * 256)()
            ctypes.c_uint64.from_buffer(info, 24).value = \
                ctypes.addressof(name)
            ctypes.c_uint32.from_buffer(info, 32).value = len(name)
            if _info(fd, info) is None or ctypes.c_uint32.from_buffer(
                    info, 16).value != _PERF_EVENT_TRACEPOINT:
                return None, prog_id
            return name.value.decode(errors="replace"), prog_id
        return None, prog_id
    finally:
        os.close(fd)


def _info(fd, info):
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info),
                     info=ctypes.addressof(info))
    try:
        _bpf(_OBJ_GET_INFO_BY_FD, attr)
    except OSError:
        return None
    return (ctypes.c_uint32.from_buffer(info, 0).value,
            ctypes.c_uint32.from_buffer(info, 8).value)


def _tp_btf_name(btf_id):
    for tp in ("sys_enter", "sys_exit"):
        if btf_id and btf_id == _btf.tracepoint_type_id(tp):
            return tp
    return None


def is_syscall_tracepoint(name):
    # raw_syscalls' two, and the syscalls:sys_enter_NAME family.
    return bool(name) and (name in ("sys_enter", "sys_exit") or
                           name.startswith(("sys_enter_", "sys_exit_")))


def syscall_tracers(exclude_links=()):
    """[(link id, prog id, tracepoint)] of BPF links on the syscall
    tracepoints, but for `exclude_links`.  Raises OSError (EPERM) where
    this process may not list BPF objects."""
    found = []
    for link_id in list(_link_ids()):
        if link_id in exclude_links:
            continue
        tp, prog_id = _link_tracepoint(link_id)
        if is_syscall_tracepoint(tp):
            found.append((link_id, prog_id, tp))
    return found
