"""ctypes declarations for the system libbpf (libbpf.so.1, >= 1.1).

This module only declares signatures; `bpf.py` gives them a Pythonic
face.  Nothing here runs at import time: `lib()` binds on first use so
that `sysretstat --help` and the unit tests work without libbpf.
"""

import ctypes
import ctypes.util
import threading

c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_uint32 = ctypes.c_uint32
c_size_t = ctypes.c_size_t
c_char_p = ctypes.c_char_p


class OpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts as of libbpf 1.1 (80 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", c_char_p),
        ("attach_prog_fd", c_uint32),  # deprecated slot, keep layout
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_char_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint32),
    ]


PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)

# name: (restype, argtypes)
_SIGNATURES = {
    "libbpf_major_version": (c_uint32, []),
    "libbpf_minor_version": (c_uint32, []),
    "libbpf_set_print": (c_void_p, [PRINT_FN]),
    "libbpf_strerror": (c_int, [c_int, c_char_p, c_size_t]),
    "libbpf_num_possible_cpus": (c_int, []),
    "bpf_object__open_mem": (c_void_p, [c_void_p, c_size_t, c_void_p]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_program__set_autoload": (c_int, [c_void_p, ctypes.c_bool]),
    "bpf_program__attach": (c_void_p, [c_void_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_link__destroy": (c_int, [c_void_p]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_map__value_size": (c_uint32, [c_void_p]),
    "bpf_map__key_size": (c_uint32, [c_void_p]),
    "bpf_map__max_entries": (c_uint32, [c_void_p]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
    "bpf_map__set_initial_value": (c_int, [c_void_p, c_void_p, c_size_t]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p,
                                    ctypes.c_uint64]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_lookup_batch": (c_int, [c_int, c_void_p, c_void_p, c_void_p,
                                     c_void_p, ctypes.POINTER(c_uint32),
                                     c_void_p]),
    "bpf_map_lookup_and_delete_batch": (c_int, [c_int, c_void_p, c_void_p,
                                                c_void_p, c_void_p,
                                                ctypes.POINTER(c_uint32),
                                                c_void_p]),
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p,
                                       ctypes.POINTER(c_uint32)]),
    "bpf_enable_stats": (c_int, [c_int]),
    "bpf_program__attach_iter": (c_void_p, [c_void_p, c_void_p]),
    "bpf_link__fd": (c_int, [c_void_p]),
    "bpf_object__btf": (c_void_p, [c_void_p]),
    "btf__find_by_name_kind": (ctypes.c_int32, [c_void_p, c_char_p,
                                                c_uint32]),
    "btf__resolve_size": (ctypes.c_int64, [c_void_p, c_uint32]),
    "bpf_iter_create": (c_int, [c_int]),
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    "bpf_program__name": (c_char_p, [c_void_p]),
    "bpf_program__set_log_buf": (c_int, [c_void_p, c_void_p, c_size_t]),
}

_lock = threading.Lock()
_lib = None


def lib():
    """Return the bound libbpf, loading it on first use.

    Raises KernelFeatureMissing if libbpf.so.1 cannot be found.
    """
    global _lib
    with _lock:
        if _lib is None:
            name = "libbpf.so.1"
            try:
                handle = ctypes.CDLL(name, use_errno=True)
            except OSError:
                found = ctypes.util.find_library("bpf")
                if not found:
                    from sysretstat.errors import KernelFeatureMissing
                    raise KernelFeatureMissing(
                        "libbpf.so.1 not found: install libbpf 1.1 or newer "
                        "(apt-get install libbpf1)") from None
                handle = ctypes.CDLL(found, use_errno=True)
            for fname, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(handle, fname, None)
                if fn is None:
                    continue  # optional in older versions
                fn.restype = restype
                fn.argtypes = argtypes
            _lib = handle
        return _lib


def version():
    lb = lib()
    return (lb.libbpf_major_version(), lb.libbpf_minor_version())


def check_version():
    """Refuse libbpf older than 1.1 (different error conventions)."""
    v = version()
    if v < (1, 1):
        from sysretstat.errors import KernelFeatureMissing
        raise KernelFeatureMissing("libbpf %d.%d is too old: sysretstat "
                                   "needs 1.1 or newer" % v)
