"""Facts about this host that decide how a return is classified.

Everything here reads files under /proc and /sys through `_read`, so
tests can substitute the files (see tests/test_hostinfo.py).  Nothing
runs at import time.
"""

import os
import platform
import re
import socket

# TASK_SIZE_MAX: (1 << 47) - PAGE_SIZE with 4-level paging, (1 << 56) -
# PAGE_SIZE with 5-level (arch/x86/include/asm/page_64.h).
TASK_SIZE_MAX_4LEVEL = (1 << 47) - 4096
TASK_SIZE_MAX_5LEVEL = (1 << 56) - 4096

BTF_VMLINUX = "/sys/kernel/btf/vmlinux"


def btf_path():
    """The kernel BTF to relocate against: $SYSRETSTAT_BTF (for kernels
    whose BTF ships as a file, e.g. from BTFHub) or the kernel's own."""
    custom = os.environ.get("SYSRETSTAT_BTF")
    if custom:
        check_btf_file(custom)
    return custom or BTF_VMLINUX


# A vmlinux BTF is a few MiB; SYSRETSTAT_BTF must be a regular file no
# larger than this (reading /dev/zero would never end).
BTF_MAX_BYTES = 64 << 20


def check_btf_file(path):
    """KernelFeatureMissing (exit 1, as a missing kernel BTF) unless
    `path` is a readable regular file of at most BTF_MAX_BYTES.  Opened
    O_NONBLOCK, so a FIFO cannot block it."""
    from sysretstat.errors import KernelFeatureMissing
    import stat
    why = None
    try:
        if "\0" in path:
            raise OSError(22, "a file name cannot hold a NUL byte")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        elif st.st_size > BTF_MAX_BYTES:
            why = "%d bytes, more than a BTF file (limit %d)" % (
                st.st_size, BTF_MAX_BYTES)
    except OSError as e:
        why = e.strerror or str(e)
    if why:
        raise KernelFeatureMissing("SYSRETSTAT_BTF=%s: %s" % (path, why))


def btf_is_custom():
    return btf_path() != BTF_VMLINUX


def _read(path):
    """Contents of a text file, or None if it cannot be read."""
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpu_flags():
    text = _read("/proc/cpuinfo") or ""
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


def cpu_model():
    text = _read("/proc/cpuinfo") or ""
    m = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    return m.group(1).strip() if m else platform.processor() or "unknown"


def cpu_vendor():
    text = _read("/proc/cpuinfo") or ""
    m = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    return {"GenuineIntel": "intel", "AuthenticAMD": "amd",
            "HygonGenuine": "hygon", "CentaurHauls": "centaur",
            "  Shanghai  ": "zhaoxin"}.get(m.group(1), m.group(1)) \
        if m else "unknown"


def kernel_release():
    return platform.release()


def kernel_version(release=None):
    """(major, minor) of a release string such as '6.18.44-fc'."""
    m = re.match(r"(\d+)\.(\d+)", release or kernel_release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def la57(flags=None):
    """5-level paging in use: the la57 flag is cleared otherwise."""
    return "la57" in (cpu_flags() if flags is None else flags)


def fred(flags=None):
    """FRED active: the flag is cleared when FRED is not enabled."""
    return "fred" in (cpu_flags() if flags is None else flags)


def xen_pv():
    """Running as a Xen PV guest (every return then takes IRET)."""
    if (_read("/sys/hypervisor/type") or "").strip() != "xen":
        return False
    guest = (_read("/sys/hypervisor/guest_type") or "").strip()
    if guest:
        return guest == "PV"
    # Without guest_type (old kernels), PV guests have no HVM-only flag.
    return "hypervisor" in cpu_flags() and os.path.exists("/proc/xen") \
        and not os.path.exists("/sys/hypervisor/properties/features")


def task_size_max(flags=None):
    return TASK_SIZE_MAX_5LEVEL if la57(flags) else TASK_SIZE_MAX_4LEVEL


def has_btf():
    return os.path.exists(btf_path())


def is_root():
    return os.geteuid() == 0


def capabilities():
    """Effective capability names this process holds (best effort)."""
    text = _read("/proc/self/status") or ""
    m = re.search(r"^CapEff:\s*([0-9a-f]+)", text, re.M)
    if not m:
        return set()
    eff = int(m.group(1), 16)
    names = {21: "CAP_SYS_ADMIN", 24: "CAP_SYS_RESOURCE",
             38: "CAP_PERFMON", 39: "CAP_BPF", 19: "CAP_SYS_PTRACE"}
    return {n for bit, n in names.items() if eff >> bit & 1}


def can_trace():
    caps = capabilities()
    return "CAP_SYS_ADMIN" in caps or {"CAP_BPF", "CAP_PERFMON"} <= caps


def guard_in_c():
    """(True/False, how it was decided): does do_syscall_64() test the
    SYSRET guard in C (6.7+), or entry_64.S (<= 6.6)?  Probed from the
    kernel's BTF; the version number is the fallback where BTF does not
    describe do_syscall_64."""
    from sysretstat.kernel import btf as kernelbtf
    try:
        in_c = kernelbtf.sysret_guard_in_c()
    except Exception:   # unreadable BTF: open() reports it
        in_c = None
    if in_c is not None:
        return in_c, "btf"
    return kernel_version() >= (6, 7), "version"


def guard_model(assume=None):
    """The guard facts the BPF side needs, as reported in meta.guard.

    `assume` overrides detection (e.g. {"fred": True}) for testing the
    decisions that this hardware cannot produce.
    """
    flags = cpu_flags()
    in_c, source = guard_in_c()
    g = {
        "task_size_max": task_size_max(flags),
        "xen_pv": xen_pv(),
        "fred": fred(flags),
        "la57": la57(flags),
        "pre_6_7": not in_c,
        "guard_source": source,
    }
    for k, v in (assume or {}).items():
        g[k] = v
    if "la57" in (assume or {}) and "task_size_max" not in (assume or {}):
        g["task_size_max"] = (TASK_SIZE_MAX_5LEVEL if g["la57"]
                              else TASK_SIZE_MAX_4LEVEL)
    return g


def hostname():
    return socket.gethostname()


def mitigations():
    """Names and states of CPU vulnerability mitigations (for bench)."""
    base = "/sys/devices/system/cpu/vulnerabilities"
    out = {}
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return out
    for n in names:
        out[n] = (_read(os.path.join(base, n)) or "").strip()
    return out
