"""The report's vocabulary, defined once: tables and their views, each
table's identity fields, the percentiles every output shows, and the
label of each return path.

Every renderer (text, CSV, JSON, Prometheus, top, diff) and the record
format read these; a new table, identity field or percentile is added
here and nowhere else.  The outcome and reason names themselves come
from the kernel contract (sysretstat.kernel.abi, mirroring bpf/sysret.h)
and what each reason means from model/reasons.py.
"""

from collections import namedtuple

# The four tables of a snapshot, in the order of the report document.
TABLES = ("processes", "threads", "syscalls", "cpus")
# `--by VIEW` and top's views name a table by its row.
TABLE_OF_VIEW = {"process": "processes", "thread": "threads",
                 "syscall": "syscalls", "cpu": "cpus"}
# Tables summed from another by one of its fields, when they are read
# (not collected, not stored): processes by command name, and by the
# cgroup v2 path (a container or a service) they ran in.
GROUPED = {"comms": ("processes", "comm"), "cgroups": ("processes", "cgroup")}
# Every view of a report, stored or grouped.
REPORT_VIEWS = dict(TABLE_OF_VIEW, comm="comms", cgroup="cgroups")
TABLE_TITLES = {"processes": "By process", "threads": "By thread",
                "syscalls": "By syscall", "cpus": "By CPU",
                "comms": "By command", "cgroups": "By cgroup"}

# An identity field of a row: its name in the report document, its type
# there, and its column header in text and CSV.
Ident = namedtuple("Ident", "name type header")

# The identity columns of each table, in the order text and CSV show
# them.  Fields a row may carry beyond these (start_ns, host, cgroup)
# are in FIELD_TYPES.
IDENTITY = {
    "processes": (Ident("pid", int, "pid"), Ident("comm", str, "comm")),
    "threads": (Ident("pid", int, "pid"), Ident("tid", int, "tid"),
                Ident("comm", str, "comm")),
    "syscalls": (Ident("abi", str, "abi"), Ident("nr", int, "nr"),
                 Ident("name", str, "syscall")),
    "cpus": (Ident("cpu", int, "cpu"),),
    "comms": (Ident("comm", str, "comm"), Ident("processes", int, "procs")),
    "cgroups": (Ident("cgroup", str, "cgroup"),
                Ident("processes", int, "procs")),
}
# Identity fields a row of each table cannot do without (its key).
REQUIRED = {"processes": ("pid",), "threads": ("pid", "tid"),
            "syscalls": ("abi", "nr"), "cpus": ("cpu",), "comms": ("comm",),
            "cgroups": ("cgroup",)}
FIELD_TYPES = dict({i.name: i.type for idents in IDENTITY.values()
                    for i in idents}, start_ns=int, cgroup=str)
# What a row document holds besides its identity.
COUNT_KEYS = ("returns", "paths", "reasons", "reason_detail", "latency_ns")


def ident_headers(table):
    return [i.header for i in IDENTITY[table]]


def row_key(table, fields):
    """The key of a row within its table: a pid or tid with its start
    time (ids are reused), a syscall's ABI and number, a CPU."""
    if table == "processes":
        return (fields["pid"], fields.get("start_ns", 0))
    if table == "threads":
        return (fields["tid"], fields.get("start_ns", 0))
    if table == "syscalls":
        return (fields["abi"], fields["nr"])
    if table == "comms":
        return fields["comm"]
    if table == "cgroups":
        return fields["cgroup"]
    return fields["cpu"]


# Percentiles of a latency histogram: the report document's key, the
# quantile, and the label text shows (one decimal point, as people read
# it).
Percentile = namedtuple("Percentile", "key q label")
PERCENTILES = (Percentile("p50", .5, "p50"), Percentile("p90", .9, "p90"),
               Percentile("p99", .99, "p99"),
               Percentile("p999", .999, "p99.9"))

# The fast return path: SYSRET, or ERETU on a FRED kernel, where every
# return takes ERETU and none takes SYSRET or IRET.
FAST_PATHS = ("sysret", "eretu")


def fast_path(meta):
    """The name of the fast path in a snapshot's meta."""
    return "eretu" if (meta.get("guard") or {}).get("fred") else "sysret"


# The short labels top's narrow columns use.
PATH_ABBREV = {"sysret": "SR", "eretu": "ER", "iret": "IR"}
