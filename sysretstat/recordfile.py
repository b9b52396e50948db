"""The record file: a versioned stream that survives being cut anywhere.

Format (version 1): UTF-8 JSON, one record per line, each line written
with a single write() and flushed, so that a reader after SIGKILL or a
full disk sees every complete interval:

    {"format": "sysretstat-record", "version": 1, "schema": "sysretstat/1"}
    {"t": "meta", "meta": {...}}                 collection metadata
    {"t": "interval", "i": 1, "d": DELTA}        one per interval
    ...
    {"t": "end", "meta": {...}}                  final metadata (clean stop)

DELTA is a compact snapshot delta (see `encode_delta`).  The cumulative
snapshot is the sum of the deltas; "end" carries the final meta (lost
counts, duration).  A file without "end" was cut short: it is read up
to its last complete interval, with a warning.
"""

import json
import os

from . import abi
from .errors import RecordFileError
from .snapshot import Counts, Hist, Row, Snapshot, TABLES

MAGIC = "sysretstat-record"
VERSION = 1


# Compact encoding of counts: [n (17 ints), lat] where lat is null or
# [sum_fast, [[bucket, count], ...], sum_iret, [[bucket, count], ...]].
def _enc_counts(c):
    if c.lat is None:
        return [c.n]
    return [c.n, [c.lat[0].sum_ns, sorted(c.lat[0].buckets.items()),
                  c.lat[1].sum_ns, sorted(c.lat[1].buckets.items())]]


def _dec_counts(v):
    n = v[0]
    if len(n) != abi.NR_OUTCOMES:
        raise ValueError("counts of %d outcomes" % len(n))
    if len(v) < 2 or v[1] is None:
        return Counts(n)
    s0, b0, s1, b1 = v[1]
    return Counts(n, [Hist(dict(map(tuple, b0)), s0),
                      Hist(dict(map(tuple, b1)), s1)])


def encode_delta(d):
    out = {"dur": d.meta.get("duration_s"), "tot": _enc_counts(d.totals),
           "lost": d.meta.get("lost", {})}
    out["p"] = [[r.fields["pid"], r.key[1], r.fields.get("comm", ""),
                 _enc_counts(r.counts)] for r in d.processes.values()]
    out["t"] = [[r.fields["tid"], r.key[1], r.fields["pid"],
                 r.fields.get("comm", ""), _enc_counts(r.counts)]
                for r in d.threads.values()]
    out["s"] = [[r.fields["abi"], r.fields["nr"], r.fields.get("name", ""),
                 _enc_counts(r.counts)] for r in d.syscalls.values()]
    out["c"] = [[r.fields["cpu"], _enc_counts(r.counts)]
                for r in d.cpus.values()]
    return out


def decode_delta(e, meta):
    s = Snapshot(dict(meta), _dec_counts(e["tot"]))
    s.meta["duration_s"] = e.get("dur")
    s.meta["interval_s"] = e.get("dur")
    s.meta["lost"] = e.get("lost", {})
    for pid, start, comm, c in e.get("p", []):
        s.processes[(pid, start)] = Row((pid, start),
                                        {"pid": pid, "comm": comm},
                                        _dec_counts(c))
    for tid, start, pid, comm, c in e.get("t", []):
        s.threads[(tid, start)] = Row((tid, start),
                                      {"pid": pid, "tid": tid, "comm": comm},
                                      _dec_counts(c))
    for abi_name, nr, name, c in e.get("s", []):
        s.syscalls[(abi_name, nr)] = Row((abi_name, nr),
                                         {"nr": nr, "name": name,
                                          "abi": abi_name}, _dec_counts(c))
    for cpu, c in e.get("c", []):
        s.cpus[cpu] = Row(cpu, {"cpu": cpu}, _dec_counts(c))
    return s


def rotate(path):
    """Never overwrite silently: an existing FILE becomes FILE.old."""
    if os.path.exists(path):
        os.replace(path, path + ".old")


class Writer:
    def __init__(self, path, meta, fsync=False):
        self.path = path
        self.fsync = fsync
        rotate(path)
        try:
            self.f = open(path, "x", encoding="utf-8")
        except OSError as e:
            raise RecordFileError("cannot create %s: %s"
                                  % (path, e.strerror))
        self.n = 0
        self._line({"format": MAGIC, "version": VERSION,
                    "schema": "sysretstat/1"})
        self._line({"t": "meta", "meta": meta})

    def _line(self, obj):
        data = json.dumps(obj, separators=(",", ":")) + "\n"
        try:
            self.f.write(data)
            self.f.flush()
            if self.fsync:
                os.fsync(self.f.fileno())
        except OSError as e:
            raise RecordFileError("writing %s: %s" % (self.path, e.strerror))

    def interval(self, delta):
        self.n += 1
        self._line({"t": "interval", "i": self.n, "d": encode_delta(delta)})

    def close(self, final_meta=None):
        if self.f is None:
            return
        if final_meta is not None:
            self._line({"t": "end", "meta": final_meta})
        self.f.close()
        self.f = None


class Recording:
    """A record file read back: meta, per-interval deltas, cumulative."""

    def __init__(self, meta, intervals, complete, warning=None):
        self.meta = meta
        self.intervals = intervals      # list of delta Snapshots
        self.complete = complete
        self.warning = warning

    def cumulative(self):
        total = Snapshot(dict(self.meta))
        if self.intervals:
            first = self.intervals[0]
            total.totals = Counts.zero(first.totals.lat is not None)
        for d in self.intervals:
            total.totals.add(d.totals)
            for t in TABLES:
                dst = total.table(t)
                for k, r in d.table(t).items():
                    if k in dst:
                        dst[k].counts.add(r.counts)
                        dst[k].fields.update(r.fields)
                    else:
                        dst[k] = r.copy()
        if self.intervals and "lost" not in self.meta:
            total.meta["lost"] = _sum_lost(self.intervals)
        total.meta["duration_s"] = self.meta.get(
            "duration_s", sum((d.meta.get("duration_s") or 0)
                              for d in self.intervals))
        return total


def _sum_lost(intervals):
    lost = {}
    for d in intervals:
        for k, v in d.meta.get("lost", {}).items():
            if isinstance(v, (int, float)):
                lost[k] = lost.get(k, 0) + v
    return lost


def read(path):
    """Read a record file; raise RecordFileError if it is not one."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise RecordFileError("%s: no such file" % path)
    except OSError as e:
        raise RecordFileError("%s: %s" % (path, e.strerror))
    with f:
        data = f.read()
    lines = data.split(b"\n")
    # The part after the last newline is an unfinished line.
    tail, lines = lines[-1], lines[:-1]
    if not lines:
        raise RecordFileError("%s: not a sysretstat record file%s"
                              % (path, " (empty)" if not data else ""))
    try:
        head = json.loads(lines[0])
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("format") != MAGIC:
        raise RecordFileError("%s: not a sysretstat record file" % path)
    if head.get("version") != VERSION:
        raise RecordFileError("%s: record format version %r, this "
                              "sysretstat reads version %d"
                              % (path, head.get("version"), VERSION))
    meta, intervals, complete, warning = None, [], False, None
    for no, line in enumerate(lines[1:], start=2):
        try:
            rec = json.loads(line)
            kind = rec["t"]
            if kind == "meta":
                meta = rec["meta"]
            elif kind == "interval":
                if meta is None:
                    raise ValueError("interval before meta")
                intervals.append(decode_delta(rec["d"], meta))
            elif kind == "end":
                meta = dict(meta or {}, **rec["meta"])
                complete = True
            else:
                raise ValueError("unknown record %r" % kind)
        except (ValueError, KeyError, TypeError) as e:
            if no == len(lines) and not tail:
                warning = "last line %d is damaged (%s); read up to " \
                          "interval %d" % (no, e, len(intervals))
                break
            raise RecordFileError("%s: corrupt record at line %d (%s)"
                                  % (path, no, e))
    if meta is None:
        raise RecordFileError("%s: record file has no metadata (cut short "
                              "before the first interval)" % path)
    if not complete and warning is None:
        warning = "file was cut short (no end record); read %d complete " \
                  "intervals" % len(intervals)
    return Recording(meta, intervals, complete, warning)
