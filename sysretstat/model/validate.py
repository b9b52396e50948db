"""What a record file or a report document may hold: each value read
from one is checked here before any output relies on its type.

A bad value raises ValueError; the reader turns it into a one-line
error naming the file and where in it.
"""

import math

from sysretstat.kernel import abi
from sysretstat.model.fields import FIELD_TYPES, REQUIRED


COUNT_MAX = 1 << 63


def count(v):
    """A count read from a file or a document: an integer of 64 bits,
    else ValueError.  Negative values are allowed: an interval's delta
    can carry a correction (a return first counted as SYSRET, then
    moved to "signal" in the next interval)."""
    if isinstance(v, bool) or not isinstance(v, int) or \
            not -COUNT_MAX <= v < COUNT_MAX:
        raise ValueError("count %.40r is not a 64-bit integer" % (v,))
    return v


def bucket(v):
    """A histogram bucket index read from a file, else ValueError."""
    if isinstance(v, bool) or not isinstance(v, int) or \
            not 0 <= v < abi.HIST_BUCKETS:
        raise ValueError("bucket %.40r out of range" % (v,))
    return v


def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v)) and abs(v) < 1e18
    except OverflowError:
        return False


_META_STR = ("version", "kernel", "cpu_model", "hostname", "started_at",
             "command")
_META_NUM = ("duration_s", "interval_s", "latency_sample",
             "untimed_sampled")
_META_DICT = ("filters", "guard", "lost", "bpf", "recording")


def check_meta(meta):
    """ValueError unless `meta` (from a file or a JSON document) has the
    types every output relies on; unknown keys are kept as they are."""
    if not isinstance(meta, dict):
        raise ValueError("meta is not an object")
    for k in _META_STR:
        if meta.get(k) is not None and not isinstance(meta[k], str):
            raise ValueError("meta.%s is not a string" % k)
    for k in _META_NUM:
        if meta.get(k) is not None and not _number(meta[k]):
            raise ValueError("meta.%s is not a number" % k)
    # The calibration `report --json` and the daemon add (an object);
    # a bare number is the mean penalty.
    pen = meta.get("iret_penalty")
    if pen is not None and not isinstance(pen, dict) and not _number(pen):
        raise ValueError("meta.iret_penalty is neither a calibration nor "
                         "a number")
    for k in _META_DICT:
        # Present means an object: outputs read them with .get(k, {}).
        if k in meta and not isinstance(meta[k], dict):
            raise ValueError("meta.%s is not an object" % k)
    rec = meta.get("recording") or {}
    for k in ("intervals", "format_version"):
        if rec.get(k) is not None:
            count(rec[k])
    for k, v in (meta.get("lost") or {}).items():
        if not _number(v):
            raise ValueError("meta.lost.%s is not a number" % k)
    for k, v in (meta.get("bpf") or {}).items():
        if v is not None and not isinstance(v, bool) and not _number(v):
            raise ValueError("meta.bpf.%s is not a number" % k)
    g = meta.get("guard") or {}
    if "task_size_max" in g and not (
            isinstance(g["task_size_max"], int)
            and 0 <= g["task_size_max"] < 1 << 64):
        raise ValueError("meta.guard.task_size_max is not an address")
    f = meta.get("filters") or {}
    for k in ("comm", "cgroup"):
        if f.get(k) is not None and not isinstance(f[k], str):
            raise ValueError("meta.filters.%s is not a string" % k)
    sampled = meta.get("latency_sampled")
    if sampled is not None and not (isinstance(sampled, list) and all(
            isinstance(x, str) for x in sampled)):
        raise ValueError("meta.latency_sampled is not a list of syscalls")
    pids = f.get("pids")
    if pids is not None and not (isinstance(pids, list) and all(
            isinstance(p, int) and not isinstance(p, bool) for p in pids)):
        raise ValueError("meta.filters.pids is not a list of pids")
    return meta


def check_fields(fields, table=None):
    """ValueError unless a row's identity fields have their types (and,
    given its table, are all there)."""
    for k in REQUIRED.get(table, ()):
        if fields.get(k) is None:
            raise ValueError("a row of %s without %s" % (table, k))
    for k, t in FIELD_TYPES.items():
        v = fields.get(k)
        if v is None:
            continue
        if not isinstance(v, t) or isinstance(v, bool) or (
                t is int and not -(1 << 63) <= v < 1 << 64):
            raise ValueError("%s %r is not %s" % (
                k, v, "an integer" if t is int else "a string"))
    return fields
