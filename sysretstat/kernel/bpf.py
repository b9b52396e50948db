"""A small Pythonic layer over libbpf: objects, maps and links.

Lifecycle, as libbpf-rs models it: `BpfObject.open()` returns an object
that still takes configuration (`.rodata` images, map sizes, autoload);
`load()` verifies it; `attach()` returns links.  `close()` destroys the
links first, then the object.  Every link is owned by a file descriptor
of this process, so the kernel detaches it when the process dies, even
on SIGKILL; nothing is ever pinned.
"""

import ctypes
import errno
import logging
import os
import re
import tempfile

from sysretstat.kernel import libbpf as _libbpf
from sysretstat.errors import (BpfLoadError, KernelFeatureMissing,
                               PermissionDenied, VerifierRejected)

log = logging.getLogger("sysretstat.kernel.bpf")

_LIBC = None
_captured = []  # libbpf messages of the current open/load
_print_cb = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                    ctypes.c_char_p, ctypes.c_void_p]
        _LIBC.vsnprintf.restype = ctypes.c_int
    return _LIBC


def _on_libbpf_print(level, fmt, args):
    # A va_list can be consumed once: format into a fixed buffer.
    try:
        buf = ctypes.create_string_buffer(4096)
        _libc().vsnprintf(buf, len(buf), fmt, args)
        text = buf.value.decode("utf-8", "replace").rstrip("\n")
        _captured.append(text)
        log.log(logging.DEBUG if level >= 2 else logging.INFO, "%s", text)
    except BaseException:  # never let an exception cross into C
        pass
    return 0


def _install_printer(lb):
    global _print_cb
    if _print_cb is None:
        _print_cb = _libbpf.PRINT_FN(_on_libbpf_print)
        lb.libbpf_set_print(_print_cb)


def strerror(err):
    err = abs(err)
    if err >= 4000:
        buf = ctypes.create_string_buffer(256)
        _libbpf.lib().libbpf_strerror(err, buf, len(buf))
        return buf.value.decode()
    return os.strerror(err)


def _raise_for(err, what):
    err = abs(err)
    msg = "%s: %s" % (what, strerror(err))
    if err in (errno.EPERM, errno.EACCES):
        raise PermissionDenied(
            "%s (run as root, or grant CAP_BPF and CAP_PERFMON)" % msg)
    # 524 is the kernel-internal ENOTSUPP.
    if err in (errno.ENOENT, errno.ESRCH, errno.EOPNOTSUPP, 524):
        raise KernelFeatureMissing(msg)
    raise BpfLoadError(msg, "\n".join(_captured))


# Large enough for a rejected program's whole log at level 1 (6.1's
# log of the biggest program here is under 3 MB at level 2).
VERIFIER_LOG_BYTES = 16 << 20

# Lines of a verifier log that are statistics, not the verdict.
_LOG_STATS = re.compile(r"^(processed \d+ insns|verification time|"
                        r"stack depth|max_states_per_insn|"
                        r"-- END PROG LOAD LOG)")
_LOG_INSN = re.compile(r"^\d+: (\(|R\d)")


def _failed_program():
    for line in _captured:
        m = re.search(r"prog '([^']+)': (BPF program )?load failed", line)
        if m:
            return m.group(1)
    return ""


def verifier_final_message(text):
    """The verifier's verdict: the lines after the last instruction it
    printed, without the statistics that follow."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    while lines and _LOG_STATS.match(lines[-1]):
        lines.pop()
    tail = []
    for l in reversed(lines):
        if _LOG_INSN.match(l):
            break
        tail.append(l)
    tail.reverse()
    return "; ".join(tail[-4:]) or (lines[-1] if lines else "")


def verifier_rejected(text, program, err):
    """VerifierRejected for a log: one line naming the program and the
    verdict, the whole log saved to a private file under $TMPDIR."""
    prog = program or "a BPF program"
    path = None
    try:
        fd, path = tempfile.mkstemp(
            prefix="sysretstat-verifier-%s-" % (program or "prog"),
            suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError:
        path = None
    verdict = verifier_final_message(text)
    if err == errno.ENOSPC:
        verdict += " (log longer than %d MiB: cut)" % (
            VERIFIER_LOG_BYTES >> 20)
    return VerifierRejected(
        "the kernel's verifier rejected %s: %s%s" % (
            prog, verdict, " (whole log: %s)" % path if path else ""),
        text, program, path)


def possible_cpus():
    n = _libbpf.lib().libbpf_num_possible_cpus()
    if n < 0:
        _raise_for(n, "reading possible CPUs")
    return n


class Map:
    """A loaded BPF map, read from user space by file descriptor."""

    def __init__(self, ptr, name):
        lb = _libbpf.lib()
        self.name = name
        self._ptr = ptr
        self.fd = lb.bpf_map__fd(ptr)
        self.key_size = lb.bpf_map__key_size(ptr)
        self.value_size = lb.bpf_map__value_size(ptr)
        self.max_entries = lb.bpf_map__max_entries(ptr)

    def lookup(self, key_bytes, value_len=None):
        lb = _libbpf.lib()
        key = ctypes.create_string_buffer(key_bytes, self.key_size)
        val = ctypes.create_string_buffer(value_len or self.value_size)
        rc = lb.bpf_map_lookup_elem(self.fd, key, val)
        if rc < 0:
            if -rc == errno.ENOENT:
                return None
            _raise_for(rc, "lookup in map %s" % self.name)
        return val.raw

    def update(self, key_bytes, value_bytes, flags=0):
        lb = _libbpf.lib()
        key = ctypes.create_string_buffer(key_bytes, self.key_size)
        val = ctypes.create_string_buffer(value_bytes, len(value_bytes))
        rc = lb.bpf_map_update_elem(self.fd, key, val, flags)
        if rc < 0:
            _raise_for(rc, "update of map %s" % self.name)

    def delete(self, key_bytes):
        lb = _libbpf.lib()
        key = ctypes.create_string_buffer(key_bytes, self.key_size)
        rc = lb.bpf_map_delete_elem(self.fd, key)
        if rc < 0 and -rc != errno.ENOENT:
            _raise_for(rc, "delete in map %s" % self.name)

    def items(self, value_len=None, limit=None):
        """Every (key, value) pair as bytes, in batches where possible.

        `limit` reads only the first entries of an array map.
        """
        value_len = value_len or self.value_size
        try:
            return list(self._items_batch(value_len, limit))
        except _BatchUnsupported:
            out = list(self._items_iter(value_len))
            return out[:limit] if limit is not None else out

    def _items_batch(self, value_len, limit=None):
        lb = _libbpf.lib()
        n = max(self.max_entries if limit is None else limit, 1)
        keys, vals, out_batch = self._buffers(n, value_len)
        count = ctypes.c_uint32(n)
        rc = lb.bpf_map_lookup_batch(self.fd, None, out_batch, keys, vals,
                                     ctypes.byref(count), None)
        if rc < 0 and -rc not in (errno.ENOENT,):
            if -rc in (errno.EINVAL, errno.ENOSPC, errno.EOPNOTSUPP, 524):
                raise _BatchUnsupported()
            _raise_for(rc, "batch read of map %s" % self.name)
        if rc == 0 and count.value == n and limit is None and \
                n < self.max_entries:
            raise _BatchUnsupported()
        kraw, vraw = keys.raw, vals.raw
        ks, vs = self.key_size, value_len
        for i in range(count.value):
            yield kraw[i * ks:(i + 1) * ks], vraw[i * vs:(i + 1) * vs]

    def _buffers(self, n, value_len):
        """Batch buffers for n entries, allocated once per map and size."""
        key = (n, value_len)
        if getattr(self, "_buf_key", None) != key:
            self._bufs = (ctypes.create_string_buffer(n * self.key_size),
                          ctypes.create_string_buffer(n * value_len),
                          ctypes.create_string_buffer(8))
            self._buf_key = key
        return self._bufs

    def drain(self, batch=256):
        """Read and delete every entry of a hash map, atomically per bucket.

        Returns a list of (key, value) byte pairs.
        """
        lb = _libbpf.lib()
        n = max(1, min(self.max_entries, batch))
        keys, vals, out_batch = self._buffers(n, self.value_size)
        out = []
        in_batch = None
        while True:
            count = ctypes.c_uint32(n)
            rc = lb.bpf_map_lookup_and_delete_batch(
                self.fd, in_batch, out_batch, keys, vals,
                ctypes.byref(count), None)
            if rc < 0 and -rc == errno.ENOSPC and n < self.max_entries:
                # One bucket holds more than a batch: retry bigger.
                n = min(self.max_entries, n * 4)
                keys, vals, out_batch = self._buffers(n, self.value_size)
                continue
            if rc < 0 and -rc != errno.ENOENT:
                if not out and -rc in (errno.EINVAL, errno.EOPNOTSUPP, 524):
                    return self._drain_slow()
                _raise_for(rc, "draining map %s" % self.name)
            ks, vs = self.key_size, self.value_size
            if count.value:
                kraw, vraw = keys.raw, vals.raw
                for i in range(count.value):
                    out.append((kraw[i * ks:(i + 1) * ks],
                                vraw[i * vs:(i + 1) * vs]))
            if rc < 0:  # ENOENT: done
                return out
            in_batch = ctypes.create_string_buffer(out_batch.raw, 8)

    def _drain_slow(self):
        out = list(self._items_iter(self.value_size))
        for k, _ in out:
            self.delete(k)
        return out

    def _items_iter(self, value_len):
        lb = _libbpf.lib()
        prev = None
        key = ctypes.create_string_buffer(self.key_size)
        val = ctypes.create_string_buffer(value_len)
        while True:
            rc = lb.bpf_map_get_next_key(self.fd, prev, key)
            if rc < 0:
                if -rc == errno.ENOENT:
                    return
                _raise_for(rc, "iterating map %s" % self.name)
            prev = ctypes.create_string_buffer(key.raw, self.key_size)
            rc = lb.bpf_map_lookup_elem(self.fd, key, val)
            if rc == 0:
                yield key.raw, val.raw


class _BatchUnsupported(Exception):
    pass


class BpfObject:
    """An opened (then loaded) BPF ELF object and the links it owns."""

    def __init__(self, ptr, image):
        self._ptr = ptr
        self._image = image  # libbpf may point into it until load
        self._links = []
        self._maps = {}
        self.loaded = False

    @classmethod
    def open(cls, elf_bytes, name="sysretstat", btf_path=None):
        lb = _libbpf.lib()
        _install_printer(lb)
        del _captured[:]
        image = ctypes.create_string_buffer(elf_bytes, len(elf_bytes))
        opts = _libbpf.OpenOpts()
        opts.sz = ctypes.sizeof(opts)
        opts.object_name = name.encode()
        btf = btf_path.encode() if btf_path else None
        opts.btf_custom_path = btf
        ctypes.set_errno(0)
        ptr = lb.bpf_object__open_mem(image, len(elf_bytes),
                                      ctypes.byref(opts))
        if not ptr:
            _raise_for(ctypes.get_errno() or errno.EINVAL,
                       "opening the BPF object")
        return cls(ptr, image)

    def _prog(self, name):
        p = _libbpf.lib().bpf_object__find_program_by_name(
            self._ptr, name.encode())
        if not p:
            raise BpfLoadError("BPF program %s not found in object" % name)
        return p

    def _map_ptr(self, name):
        m = _libbpf.lib().bpf_object__find_map_by_name(
            self._ptr, name.encode())
        if not m:
            raise BpfLoadError("BPF map %s not found in object" % name)
        return m

    def set_autoload(self, prog, enabled):
        rc = _libbpf.lib().bpf_program__set_autoload(self._prog(prog),
                                                     bool(enabled))
        if rc < 0:
            _raise_for(rc, "configuring program %s" % prog)

    def set_max_entries(self, map_name, n):
        rc = _libbpf.lib().bpf_map__set_max_entries(self._map_ptr(map_name),
                                                    int(n))
        if rc < 0:
            _raise_for(rc, "sizing map %s" % map_name)

    def set_rodata(self, section, data):
        m = self._map_ptr(section)
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        rc = _libbpf.lib().bpf_map__set_initial_value(m, buf, len(data))
        if rc < 0:
            _raise_for(rc, "setting %s (size %d)" % (section, len(data)))

    def _programs(self):
        lb = _libbpf.lib()
        p = lb.bpf_object__next_program(self._ptr, None)
        while p:
            yield p
            p = lb.bpf_object__next_program(self._ptr, p)

    def load(self):
        del _captured[:]
        lb = _libbpf.lib()
        # libbpf retries a failed program with logging on, into this
        # buffer: the whole log, where its own messages would be cut.
        # One buffer serves all: loading stops at the first failure.
        log = ctypes.create_string_buffer(VERIFIER_LOG_BYTES)
        for p in self._programs():
            lb.bpf_program__set_log_buf(p, log, len(log))
        rc = lb.bpf_object__load(self._ptr)
        for p in self._programs():
            lb.bpf_program__set_log_buf(p, None, 0)
        if rc < 0:
            err = abs(rc)
            text = log.value.decode("utf-8", "replace")
            del log
            if text.strip():
                raise verifier_rejected(text, _failed_program(), err)
            if err in (errno.EPERM, errno.EACCES):
                raise PermissionDenied(
                    "loading BPF programs: permission denied (run as root, "
                    "or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE)")
            raise BpfLoadError("loading the BPF object failed: %s"
                               % strerror(err), "\n".join(_captured))
        self.loaded = True

    def btf_struct_size(self, name):
        """Size of `struct name` in the object's BTF, or None."""
        lb = _libbpf.lib()
        btf = lb.bpf_object__btf(self._ptr)
        if not btf:
            return None
        tid = lb.btf__find_by_name_kind(btf, name.encode(), 4)  # STRUCT
        if tid < 0:
            return None
        return lb.btf__resolve_size(btf, tid)

    def map(self, name):
        if name not in self._maps:
            self._maps[name] = Map(self._map_ptr(name), name)
        return self._maps[name]

    def prog_fd(self, name):
        return _libbpf.lib().bpf_program__fd(self._prog(name))

    def attach(self, prog):
        ctypes.set_errno(0)
        link = _libbpf.lib().bpf_program__attach(self._prog(prog))
        if not link:
            err = ctypes.get_errno() or errno.EINVAL
            _raise_for(err, "attaching %s" % prog)
        self._links.append(link)
        return link

    def iter_link(self, prog):
        """Attach an iterator program; read it with `read_iter`."""
        ctypes.set_errno(0)
        link = _libbpf.lib().bpf_program__attach_iter(self._prog(prog), None)
        if not link:
            _raise_for(ctypes.get_errno() or errno.EINVAL,
                       "attaching iterator %s" % prog)
        self._links.append(link)
        return link

    @staticmethod
    def read_iter(link):
        """Run an iterator once and return everything it wrote."""
        lb = _libbpf.lib()
        fd = lb.bpf_iter_create(lb.bpf_link__fd(link))
        if fd < 0:
            _raise_for(fd, "creating an iterator")
        chunks = []
        try:
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def detach(self, link):
        """Destroy one link this object owns."""
        if link in self._links:
            self._links.remove(link)
            _libbpf.lib().bpf_link__destroy(link)

    def detach_all(self):
        lb = _libbpf.lib()
        while self._links:
            lb.bpf_link__destroy(self._links.pop())

    def close(self):
        if self._ptr is None:
            return
        self.detach_all()
        _libbpf.lib().bpf_object__close(self._ptr)
        self._ptr = None
        self._maps = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _ProgInfo(ctypes.Structure):
    # Leading part of struct bpf_prog_info, up to run_cnt (uapi bpf.h).
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32),
                ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64),
                ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64),
                ("created_by_uid", ctypes.c_uint32),
                ("nr_map_ids", ctypes.c_uint32),
                ("map_ids", ctypes.c_uint64),
                ("name", ctypes.c_char * 16),
                ("ifindex", ctypes.c_uint32),
                ("gpl_compatible", ctypes.c_uint32),
                ("netns_dev", ctypes.c_uint64),
                ("netns_ino", ctypes.c_uint64),
                ("nr_jited_ksyms", ctypes.c_uint32),
                ("nr_jited_func_lens", ctypes.c_uint32),
                ("jited_ksyms", ctypes.c_uint64),
                ("jited_func_lens", ctypes.c_uint64),
                ("btf_id", ctypes.c_uint32),
                ("func_info_rec_size", ctypes.c_uint32),
                ("func_info", ctypes.c_uint64),
                ("nr_func_info", ctypes.c_uint32),
                ("nr_line_info", ctypes.c_uint32),
                ("line_info", ctypes.c_uint64),
                ("jited_line_info", ctypes.c_uint64),
                ("nr_jited_line_info", ctypes.c_uint32),
                ("line_info_rec_size", ctypes.c_uint32),
                ("jited_line_info_rec_size", ctypes.c_uint32),
                ("nr_prog_tags", ctypes.c_uint32),
                ("prog_tags", ctypes.c_uint64),
                ("run_time_ns", ctypes.c_uint64),
                ("run_cnt", ctypes.c_uint64),
                ("recursion_misses", ctypes.c_uint64)]


def prog_run_stats(fd):
    """(run_time_ns, run_cnt, recursion_misses) of a program.

    Run time and count stay zero unless kernel BPF stats are enabled.
    """
    info = _ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    rc = _libbpf.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info),
                                              ctypes.byref(size))
    if rc < 0:
        return (0, 0, 0)
    return (info.run_time_ns, info.run_cnt, info.recursion_misses)


def enable_run_stats():
    """Turn on kernel BPF run-time stats for as long as the fd is open.

    Returns the fd (keep it), or -1 where the kernel refuses.
    """
    fn = getattr(_libbpf.lib(), "bpf_enable_stats", None)
    if fn is None:
        return -1
    fd = fn(0)  # BPF_STATS_RUN_TIME
    return fd if fd >= 0 else -1
