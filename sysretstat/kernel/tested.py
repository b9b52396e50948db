"""The kernels sysretstat was tested on, and what each showed.

One table for the README (a test keeps its copy equal) and for
`doctor`, which prints the rows that match the running kernel.  A row
is added only for a real boot: the host suite, or a column of the kernel
matrix (tools/vmtest.py, `make test-kernels`).
"""

from collections import namedtuple

Tested = namedtuple("Tested", "series build where paging compat guard shown")

TESTED = (
    Tested("6.18", "6.18.44", "host (AMD EPYC VM)", "4-level", "SYSCALL",
           ">= 6.7 (C)", "loads; every classification test exact"),
    Tested("6.18", "6.18.44", "Intel Xeon VM (cross-CPU check)", "4-level",
           "SYSENTER", ">= 6.7 (C)", "loads; every classification test exact"),
    Tested("6.1", "6.1.0-57-amd64 (Debian 12)", "guest A (qemu TCG, AMD model)",
           "4-level", "SYSCALL", "<= 6.6 (entry_64.S)",
           "loads; every classification test exact"),
    Tested("6.1", "6.1.0-57-amd64 (Debian 12)", "guest B (qemu TCG -cpu max)",
           "5-level", "SYSCALL", "<= 6.6 (entry_64.S)",
           "loads; every classification test exact"),
    Tested("6.1", "6.1.0-57-amd64 (Debian 12)",
           "guest C (qemu TCG, Intel model)", "4-level", "SYSENTER",
           "<= 6.6 (entry_64.S)", "loads; every classification test exact"),
)

# What the BPF programs need that older kernels lack, oldest first.
# Not booted here: read from the kernel's history of each helper.
NEEDS = (
    ("5.11", "task storage and bpf_get_current_task_btf()"),
    ("5.15", "bpf_task_pt_regs()"),
    ("5.17", "bpf_loop()"),
)
OLDEST = NEEDS[-1][0]

HEADER = ("| kernel | build | where | paging | compat entry | guard model "
          "| result |")


def markdown():
    """The README's table."""
    rows = [HEADER, "|" + "---|" * len(Tested._fields)]
    rows += ["| %s |" % " | ".join(t) for t in TESTED]
    return "\n".join(rows)


def series(release):
    """'6.1' of '6.1.0-57-amd64'."""
    return ".".join(release.split("-")[0].split(".")[:2])


def rows_for(release):
    """The tested rows of this kernel's series (empty: untested)."""
    return [t for t in TESTED if t.series == series(release)]


def describe(release):
    """One line for doctor: what was shown on this kernel's series."""
    rows = rows_for(release)
    if not rows:
        return ("%s: untested series (tested: %s; the programs need %s or "
                "newer)" % (release, ", ".join(sorted(
                    {t.series for t in TESTED}, key=_key)), OLDEST))
    return "%s: tested on %s: %s" % (
        release, "; ".join("%s, %s paging, %s" % (t.where, t.paging,
                                                  t.compat) for t in rows),
        rows[0].shown)


def _key(s):
    return tuple(int(x) for x in s.split("."))
