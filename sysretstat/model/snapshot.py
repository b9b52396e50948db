"""The one data model: a snapshot of counters and latency histograms.

The collector produces cumulative snapshots; `Snapshot.delta()` turns
two of them into an interval; every output (top, report, JSON,
Prometheus, diff) renders a Snapshot and nothing else.  A snapshot
round-trips through the report schema "sysretstat/1.1" (sysretstat(8),
OUTPUT): `Snapshot.from_report(s.to_report()) == s` up to the `--top`
cut.

The parts: model/histogram.py (Hist), model/counts.py (Counts, a row's
returns by outcome), model/fields.py (tables, identity fields,
percentiles), model/validate.py (what a file may hold).
"""

import copy

from sysretstat.kernel import abi
from sysretstat.model import fields
from sysretstat.model.counts import Counts
from sysretstat.model.fields import (COUNT_KEYS, GROUPED, REPORT_VIEWS,
                                     TABLES, row_key)
from sysretstat.model.histogram import Hist
from sysretstat.model.validate import (bucket, check_fields, check_meta,
                                       count)

# The report schema this version writes.  A minor version only adds
# (1.1: the "comms" and "cgroups" tables, processes summed by command
# name and by cgroup; reason_detail; untimed returns), so every 1.x
# document reads, its unknown members ignored.
SCHEMA = "sysretstat/1.1"
SCHEMA_MAJOR = "sysretstat/1"


def schema_readable(schema):
    """Whether a document or record file of this schema reads here."""
    return isinstance(schema, str) and (
        schema == SCHEMA_MAJOR or (schema.startswith(SCHEMA_MAJOR + ".")
                                   and schema[len(SCHEMA_MAJOR) + 1:]
                                   .isdigit()))
REASONS = abi.REASONS
OUTCOMES = abi.OUTCOMES
# Kept for callers of the earlier single module.
__all__ = ["SCHEMA", "SCHEMA_MAJOR", "schema_readable", "REASONS", "OUTCOMES", "TABLES", "Counts", "Hist",
           "Row", "Snapshot", "bucket", "check_fields", "check_meta",
           "count", "row_key", "SORT_KEYS", "ASCENDING_SORTS",
           "LATENCY_SORTS", "counts_sort_value",
           "sort_value", "check_invariants"]


class Row:
    """A keyed row of a table: its identity fields and its Counts."""

    __slots__ = ("key", "fields", "counts")

    def __init__(self, key, fields, counts):
        self.key = key          # unique within the table
        self.fields = fields    # e.g. {"pid": 1, "comm": "init"}
        self.counts = counts

    def copy(self):
        return Row(self.key, dict(self.fields), self.counts.copy())

    def __repr__(self):
        return "Row(%r, %r)" % (self.fields, self.counts)


def grouped(rows, field):
    """Rows summed by one of their fields: {value: Row}, each with that
    field and how many rows it sums ("processes" for comms).  None of
    them with the field (a recording made before processes had a
    cgroup): no rows, rather than one of unknown."""
    out = {}
    if field != "comm" and not any(field in r.fields
                                   for r in rows.values()):
        return out
    for r in rows.values():
        v = r.fields.get(field) or ""
        g = out.get(v)
        if g is None:
            out[v] = Row(v, {field: v, "processes": 1}, r.counts.copy())
        else:
            g.fields["processes"] += 1
            g.counts.add(r.counts)
    return out


class _Deferred:
    """A table of a lazy delta: computed when first read (top shows one
    table of four)."""

    __slots__ = ("fn", "args")

    def __init__(self, fn, *args):
        self.fn = fn
        self.args = args


def _table(name):
    """A table attribute of Snapshot that computes a _Deferred table the
    first time it is read."""
    def get(self):
        t = self._tables[name]
        if isinstance(t, _Deferred):
            t = self._tables[name] = t.fn(*t.args)
        return t

    def set(self, value):
        self._tables[name] = value
    return property(get, set)


class Snapshot:
    """Counters at one moment (cumulative) or over one interval (delta).

    meta follows the report schema's "meta"; totals is a Counts; each
    table maps a row key to a Row.  Keys: processes (pid, start_ns),
    threads (tid, start_ns), syscalls (abi, nr), cpus cpu.
    """

    processes = _table("processes")
    threads = _table("threads")
    syscalls = _table("syscalls")
    cpus = _table("cpus")

    def __init__(self, meta=None, totals=None, processes=None, threads=None,
                 syscalls=None, cpus=None):
        self.meta = meta if meta is not None else {}
        self.totals = totals if totals is not None else Counts.zero()
        self._tables = {}
        self.processes = processes if processes is not None else {}
        self.threads = threads if threads is not None else {}
        self.syscalls = syscalls if syscalls is not None else {}
        self.cpus = cpus if cpus is not None else {}

    def table(self, name):
        """A table by its name or by its view's (process, thread, ...);
        a grouped one (fields.GROUPED) is summed when read."""
        name = REPORT_VIEWS.get(name, name)
        if name in GROUPED:
            return grouped(self.table(GROUPED[name][0]), GROUPED[name][1])
        return getattr(self, name)

    @property
    def fast_path(self):
        return fields.fast_path(self.meta)

    def copy(self):
        return Snapshot(copy.deepcopy(self.meta), self.totals.copy(),
                        *[{k: r.copy() for k, r in self.table(t).items()}
                          for t in TABLES])

    def delta(self, older, lazy=False):
        """This snapshot minus an older one of the same collection.

        Rows absent from `older` count from zero; rows that did not
        change are left out.  meta.duration_s becomes the interval.
        Delta rows share their fields with this snapshot's rows.

        lazy: compute each table when it is first read (top shows one
        table of four); both snapshots must then stay unchanged, as the
        collector's do.
        """
        meta = copy.deepcopy(self.meta)
        if older is not None:
            dt = self.meta.get("duration_s", 0) - older.meta.get(
                "duration_s", 0)
            meta["interval_s"] = round(dt, 6)
            meta["duration_s"] = round(dt, 6)
            meta["lost"] = _lost_delta(self.meta.get("lost", {}),
                                       older.meta.get("lost", {}))
            if "untimed_sampled" in meta:
                meta["untimed_sampled"] -= older.meta.get(
                    "untimed_sampled", 0)
        totals = self.totals if older is None else \
            self.totals.minus(older.totals)
        out = Snapshot(meta, totals.copy() if older is None else totals)
        # The returns each table's rows gained, by the lists subtracted
        # (see _table_delta), when every table is made now.
        gained = None if lazy else {}
        for t in TABLES:
            if lazy:
                out._tables[t] = _Deferred(self._table_delta, t, older)
            else:
                setattr(out, t, self._table_delta(t, older, gained))
        return out

    def _table_delta(self, t, older, gained=None):
        theirs = older.table(t) if older is not None else {}
        get = theirs.get
        new_row = Row.__new__
        out = {}
        for k, row in self.table(t).items():
            rc = row.counts
            o = get(k)
            if o is None:
                c = rc.copy()
            else:
                oc = o.counts
                if oc is rc:
                    # The collector shares unchanged counts between
                    # snapshots.
                    continue
                if rc.n != oc.n:
                    # Returns changed, so the row is in the interval:
                    # no need to ask is_zero().
                    if gained is None:
                        c = rc.minus(oc)
                    else:
                        # A process whose one thread holds all its
                        # returns has that thread's count lists (see
                        # the collector): its row and the thread's
                        # gained the same, subtracted once.
                        seen = gained.get(id(rc.n))
                        if seen is not None and seen[0] is oc.n:
                            c = rc.minus(oc, seen[1])
                        else:
                            c = rc.minus(oc)
                            gained[id(rc.n)] = (oc.n, c.n)
                    # Made without Row.__init__ (a Python frame per
                    # row): a delta has thousands.
                    out[k] = r = new_row(Row)
                    r.key, r.fields, r.counts = k, row.fields, c
                    continue
                if rc.same(oc):
                    # Equal ones made this interval nothing.
                    continue
                c = rc.minus(oc)
            if not c.is_zero():
                out[k] = Row(k, row.fields, c)
        return out

    def merge(self, other):
        """Add another snapshot's counts (e.g. another host's) into this."""
        self.totals.add(other.totals)
        for t in TABLES:
            dst = self.table(t)
            for k, row in other.table(t).items():
                if k in dst:
                    dst[k].counts.add(row.counts)
                else:
                    dst[k] = row.copy()
        lost = self.meta.setdefault("lost", {})
        for k, v in other.meta.get("lost", {}).items():
            if isinstance(v, (int, float)):
                lost[k] = lost.get(k, 0) + v
        return self

    def sorted_rows(self, table, key="returns", reverse=None):
        if reverse is None:
            reverse = key not in ASCENDING_SORTS
        rows = list(self.table(table).values())
        rows.sort(key=lambda r: (sort_value(r, key), _tiebreak(r)),
                  reverse=reverse)
        return rows

    def to_report(self, top=None, tables=TABLES, sort="returns",
                  series=None):
        """The report schema document (SCHEMA).  Only `tables`
        get rows, the `top` first by `sort` (the others are empty
        lists); a recording's `series` is added as "series" (an
        extension of the schema)."""
        fp = self.fast_path
        meta = self.meta
        if self.totals.lat is not None:
            meta = dict(meta, untimed_why=self.totals.untimed_why(
                meta.get("untimed_sampled")))
        doc = {"schema": SCHEMA, "meta": meta,
               "totals": self.totals.to_json(fp)}
        # Grouped tables are in the document only when asked for: they
        # are sums of a stored one, which a reader can redo.
        for t in TABLES + tuple(g for g in GROUPED if g in tables):
            rows = self.sorted_rows(t, sort) if t in tables else []
            if top is not None:
                rows = rows[:top]
            doc[t] = [dict(r.fields, **r.counts.to_json(fp)) for r in rows]
        if series is not None:
            doc["series"] = [dict(c.to_json(), start_s=round(start, 6),
                                  duration_s=round(dur, 6))
                             for start, dur, c in series.rows()]
        return doc

    @classmethod
    def from_report(cls, doc):
        if not schema_readable(doc.get("schema")):
            raise ValueError("unsupported schema %r (this version reads %s.x)"
                             % (doc.get("schema"), SCHEMA_MAJOR))
        s = cls(check_meta(doc.get("meta", {})),
                Counts.from_json(doc["totals"]))
        for t in TABLES:
            for item in doc.get(t, []):
                c = Counts.from_json(item)
                fields = check_fields({
                    k: v for k, v in item.items()
                    if k not in COUNT_KEYS}, t)
                key = row_key(t, fields)
                table = s.table(t)
                # Rows carry no start time: a pid or tid reused (or
                # taken over by an exec'ing thread) must not merge two
                # rows into one.
                n = 0
                while key in table:
                    n += 1
                    key = (key[0], -n)
                table[key] = Row(key, fields, c)
        return s


def _tiebreak(row):
    f = row.fields
    return tuple(f.get(k, 0) for k in ("pid", "tid", "abi", "nr", "cpu")
                 if not isinstance(f.get(k, 0), str)) or (0,)


SORT_KEYS = ("returns", "iret", "sysret", "iret_share", "reason", "p50",
             "p99", "iret_p50", "iret_p99", "name", "id")
# Words and ids read best A to Z, as in top (top/state.py); figures
# biggest first.
ASCENDING_SORTS = ("id", "name", "reason")
# Sorts by a latency histogram: a table whose rows keep none (threads)
# cannot have them.
LATENCY_SORTS = ("p50", "p99", "iret_p50", "iret_p99")


def counts_sort_value(c, key):
    """What a figure column sorts by, or None if `key` is not one."""
    if key == "returns":
        return c.returns
    if key == "iret":
        return c.iret
    if key == "sysret":
        return c.sysret
    if key == "iret_share":
        return c.iret_share
    if key == "reason":
        return c.top_reason() or "~"   # rows without IRET last
    if key in ("p50", "p99", "iret_p50", "iret_p99"):
        if not c.lat:
            return -1
        v = c.lat[1 if key.startswith("iret") else 0].percentile(
            .5 if key.endswith("50") else .99)
        return -1 if v is None else v
    return None


def sort_value(row, key):
    """The value a table is sorted by; unknown keys sort by returns."""
    v = counts_sort_value(row.counts, key)
    if v is not None:
        return v
    if key == "name":
        f = row.fields
        return str(f.get("comm") or f.get("name") or f.get("cgroup") or "")
    if key == "id":
        f = row.fields
        return f.get("tid", f.get("pid", f.get("nr", f.get("cpu", 0))))
    return row.counts.returns


def _lost_delta(new, old):
    """An interval's lost counts: what each counter added.  The
    unattributed_* entries are the gap between the totals and the
    tables at a live read, which shrinks as well as grows: an
    interval's is the change of the gap, negative when the tables
    caught up with returns the totals had counted before, so that each
    interval's tables still sum to its totals up to it."""
    out = {}
    for k, v in new.items():
        if isinstance(v, (int, float)) and isinstance(old.get(k, 0),
                                                      (int, float)):
            out[k] = v - old.get(k, 0)
        else:
            out[k] = v
    return out


def check_invariants(snap):
    """Return a list of violated invariants (empty when all hold).

    returns == sum(paths) and paths.iret == sum(reasons) hold by
    construction of Counts; what is checked is that each table sums to
    the totals, up to what meta.lost says was not attributed.
    """
    problems = []
    lost = snap.meta.get("lost", {})
    for t in TABLES:
        rows = snap.table(t)
        if not rows and snap.totals.returns == 0:
            continue
        total = Counts.zero(False)
        for r in rows.values():
            total.add(Counts(r.counts.n))
        slack = lost.get("unattributed_" + t, 0)
        diff = snap.totals.returns - total.returns
        if diff != slack:
            problems.append("%s sum to %d returns, totals %d (unattributed %d)"
                            % (t, total.returns, snap.totals.returns, slack))
        elif slack == 0 and total.n != snap.totals.n:
            problems.append("%s outcomes %r != totals %r"
                            % (t, total.n, snap.totals.n))
    return problems
