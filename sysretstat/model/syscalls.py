"""Syscall names, by ABI ("x64", "i386", "x32") and number."""

from sysretstat.model import syscall_table

_TABLES = {"x64": syscall_table.X64, "i386": syscall_table.I386,
           "x32": syscall_table.X32}


def syscall_name(abi, nr):
    """The syscall's name; "unknown" for -1, "sys_<nr>" if not listed."""
    if nr is None or nr < 0:
        return "unknown"
    return _TABLES.get(abi, {}).get(nr, "sys_%d" % nr)


def syscall_number(name, abi="x64"):
    for nr, n in _TABLES.get(abi, {}).items():
        if n == name:
            return nr
    return None
