"""The one data model: a snapshot of counters and latency histograms.

The collector produces cumulative snapshots; `Snapshot.delta()` turns
two of them into an interval; every output (top, report, JSON,
Prometheus, diff) renders a Snapshot and nothing else.  A snapshot
round-trips through the report schema "sysretstat/1" (see spec.md):
`Snapshot.from_report(s.to_report()) == s` up to the `--top` cut.
"""

import copy
import itertools
import math

from sysretstat.kernel import abi

SCHEMA = "sysretstat/1"
REASONS = abi.REASONS
OUTCOMES = abi.OUTCOMES


class Hist:
    """A sparse log-linear latency histogram (bucket index -> count).

    A histogram read from the kernel can stay *pending*: its int64
    bucket counts as the kernel wrote them, plus the ones added or
    subtracted since, turned into the dict only when the buckets are
    read.  A frame of `top` shows the percentiles of a screen of rows,
    so the thousands of process histograms it reads and subtracts are
    mostly never expanded.
    """

    __slots__ = ("_data", "sum_ns")

    # Pending terms kept before they are expanded: bounds the memory and
    # the cost of a histogram that sums many others.
    MAX_RUNS = 8

    def __init__(self, buckets=None, sum_ns=0):
        # (dict, pending runs): one attribute, replaced whole, so that a
        # thread reading a histogram another expands sees one state or
        # the other, never half of each (the daemon's scrapes render
        # snapshots the collector's thread also reads).  Each run is
        # (sign, where, bytes of int64 counts).
        self._data = (dict(buckets) if buckets else {}, ())
        self.sum_ns = int(sum_ns)

    @classmethod
    def from_kernel(cls, where, raw, sum_ns=0):
        """Counts as the kernel wrote them: `raw`, bytes of int64s (never
        mutated, so shared by every copy), count the buckets `where`
        says: from bucket `where` on (an int), or those whose bits are
        set in the little-endian bitmap `where` (bytes), in order."""
        h = cls(None, sum_ns)
        if raw:
            h._data = ({}, ((1, where, raw),))
        return h

    @property
    def buckets(self):
        b, runs = self._data
        if runs:
            b = _expanded(b, runs)
            self._data = (b, ())
        return b

    @buckets.setter
    def buckets(self, value):
        self._data = (dict(value), ())

    @classmethod
    def from_values(cls, values):
        h = cls()
        b = h._data[0]
        for v in values:
            i = abi.bucket_of(v)
            b[i] = b.get(i, 0) + 1
            h.sum_ns += int(v)
        return h

    @property
    def count(self):
        b, runs = self._data
        # Summing pending runs needs no dict.
        return sum(b.values()) + sum(sign * sum(memoryview(raw).cast("q"))
                                     for sign, _, raw in runs)

    def add(self, other, sign=1):
        """Add `other` (times sign) to this histogram, which must be this
        caller's own: in place."""
        b, runs = self._data
        ob, oruns = other._data
        if oruns and not ob and len(runs) + len(oruns) <= self.MAX_RUNS:
            self._data = (b, runs + tuple((s * sign, where, raw)
                                          for s, where, raw in oruns))
        else:
            for i, c in other.buckets.items():
                v = b.get(i, 0) + sign * c
                if v:
                    b[i] = v
                else:
                    b.pop(i, None)
        self.sum_ns += sign * other.sum_ns
        return self

    def copy(self):
        h = Hist.__new__(Hist)
        b, runs = self._data
        h._data = (dict(b), runs)
        h.sum_ns = self.sum_ns
        return h

    def __eq__(self, other):
        return (isinstance(other, Hist) and self.sum_ns == other.sum_ns
                and {b: c for b, c in self.buckets.items() if c}
                == {b: c for b, c in other.buckets.items() if c})

    def __repr__(self):
        return "Hist(count=%d, sum_ns=%d)" % (self.count, self.sum_ns)

    def _nonempty(self):
        return sorted(b for b, c in self.buckets.items() if c > 0)

    @property
    def min(self):
        """Lower bound of the lowest non-empty bucket (None if empty)."""
        bs = self._nonempty()
        return abi.bucket_bounds(bs[0])[0] if bs else None

    @property
    def max(self):
        """Upper bound of the highest non-empty bucket (None if empty)."""
        bs = self._nonempty()
        if not bs:
            return None
        lo, hi = abi.bucket_bounds(bs[-1])
        return hi if hi is not None else lo

    def percentile(self, q):
        """The q-quantile (0 < q <= 1), as the middle of its bucket.

        Bucket widths are at most 1/8 of their lower bound, so the
        result is within 12.5% (6.25% typically) of the true value.
        """
        n = self.count
        if n <= 0:
            return None
        rank = q * n
        seen = 0
        for b in self._nonempty():
            seen += self.buckets[b]
            if seen >= rank:
                lo, hi = abi.bucket_bounds(b)
                return lo if hi is None else (lo + hi) / 2.0
        lo, hi = abi.bucket_bounds(self._nonempty()[-1])
        return lo if hi is None else (lo + hi) / 2.0

    @property
    def mean(self):
        n = self.count
        return self.sum_ns / n if n > 0 else None

    def to_json(self):
        pct = {name: self.percentile(q) for name, q in
               (("p50", .5), ("p90", .9), ("p99", .99), ("p999", .999))}
        return {
            "count": self.count,
            "sum": self.sum_ns,
            "min": self.min,
            "max": self.max,
            "p50": pct["p50"], "p90": pct["p90"], "p99": pct["p99"],
            "p999": pct["p999"],
            "buckets": [[lo, hi, self.buckets[b]]
                        for b in self._nonempty()
                        for lo, hi in (abi.bucket_bounds(b),)],
        }

    @classmethod
    def from_json(cls, d):
        h = cls(sum_ns=count(d.get("sum", 0)))
        for lo, _hi, c in d.get("buckets", []):
            h.buckets[abi.bucket_of(count(lo))] = count(c)
        return h


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


def _expanded(base, runs):
    """A new dict: `base` plus the pending runs (see Hist)."""
    b = dict(base)
    for sign, where, raw in runs:
        for i, c in zip(_positions(where), memoryview(raw).cast("q")):
            if c:
                v = b.get(i, 0) + sign * c
                if v:
                    b[i] = v
                else:
                    b.pop(i, None)
    return b


def _positions(where):
    """Bucket indexes of a pending term (see Hist.from_kernel)."""
    if isinstance(where, int):
        return itertools.count(where)
    return abi.set_bits(where)


class Counts:
    """Returns of one row by outcome, and its latency per path."""

    __slots__ = ("n", "_lat")

    def __init__(self, n=None, lat=None):
        self.n = list(n) if n is not None else [0] * abi.NR_OUTCOMES
        # lat[0]: SYSRET (ERETU on FRED kernels), lat[1]: IRET; None
        # where the row has no latency (threads).  minus() leaves a
        # tuple (theirs, to subtract): computed when lat is first read,
        # as a frame of top sorts thousands of interval rows by their
        # counts and reads the latency of a screenful.  One attribute,
        # replaced whole, like Hist._data.
        self._lat = list(lat) if type(lat) is tuple else lat

    @property
    def lat(self):
        lat = self._lat
        if type(lat) is tuple:
            base, minus = lat
            lat = [h.copy() for h in base or (Hist(), Hist())]
            for a, b in zip(lat, minus):
                a.add(b, -1)
            self._lat = lat
        return lat

    @lat.setter
    def lat(self, value):
        self._lat = list(value) if type(value) is tuple else value

    @classmethod
    def zero(cls, with_latency=True):
        return cls(lat=[Hist(), Hist()] if with_latency else None)

    @property
    def returns(self):
        return sum(self.n)

    @property
    def sysret(self):
        return self.n[abi.O_SYSRET]

    @property
    def eretu(self):
        return self.n[abi.O_ERETU]

    @property
    def iret(self):
        return sum(self.n[abi.FIRST_IRET:])

    def reason(self, name):
        return self.n[abi.OUTCOMES.index(name)]

    def reasons(self):
        """Non-zero IRET reasons, largest first."""
        rs = [(name, self.n[i]) for i, name in
              enumerate(abi.OUTCOMES) if i >= abi.FIRST_IRET and self.n[i]]
        return dict(sorted(rs, key=lambda kv: (-kv[1], kv[0])))

    def top_reason(self):
        rs = self.reasons()
        return next(iter(rs)) if rs else None

    @property
    def iret_share(self):
        r = self.returns
        return self.iret / r if r else 0.0

    def add(self, other, sign=1):
        if sign == 1:
            self.n = [a + b for a, b in zip(self.n, other.n)]
        else:
            self.n = [a + sign * b for a, b in zip(self.n, other.n)]
        if other.lat is not None:
            if self.lat is None:
                self.lat = [Hist(), Hist()]
            for a, b in zip(self.lat, other.lat):
                a.add(b, sign)
        return self

    def copy(self):
        return Counts(self.n, None if self.lat is None
                      else [h.copy() for h in self.lat])

    def minus(self, older):
        """A new Counts: self - older, its latency computed when read.
        Both must stay unchanged until then, as snapshots do."""
        c = Counts([a - b for a, b in zip(self.n, older.n)], self.lat)
        if c._lat is not None or older.lat is not None:
            c._lat = (c._lat, older.lat or ())
        return c

    def same(self, other):
        """Whether other has the same counts and latency sums.  A latency
        sample is only taken with a return, so equal counts and sums mean
        equal histograms, short of a recount that moved a sample between
        buckets of one path, which changes no count."""
        return self.n == other.n and (
            self.lat is None or other.lat is None or (
                self.lat[0].sum_ns == other.lat[0].sum_ns and
                self.lat[1].sum_ns == other.lat[1].sum_ns))

    def is_zero(self):
        return not any(self.n) and (self.lat is None or
                                    not any(h.count for h in self.lat))

    def __eq__(self, other):
        return isinstance(other, Counts) and self.n == other.n and \
            (self.lat or [Hist(), Hist()]) == (other.lat or [Hist(), Hist()])

    def __repr__(self):
        return "Counts(returns=%d, sysret=%d, iret=%d, %r)" % (
            self.returns, self.sysret, self.iret, self.reasons())

    def to_json(self, fast_path="sysret"):
        d = {
            "returns": self.returns,
            "paths": {"sysret": self.sysret, "iret": self.iret,
                      "eretu": self.eretu},
            "reasons": self.reasons(),
        }
        if self.lat is not None:
            d["latency_ns"] = {fast_path: self.lat[0].to_json(),
                               "iret": self.lat[1].to_json()}
        return d

    @classmethod
    def from_json(cls, d):
        c = cls()
        c.n[abi.O_SYSRET] = count(d["paths"].get("sysret", 0))
        c.n[abi.O_ERETU] = count(d["paths"].get("eretu", 0))
        for name, v in d.get("reasons", {}).items():
            if name not in abi.REASONS:
                raise ValueError("unknown reason %.40r" % name)
            c.n[abi.OUTCOMES.index(name)] = count(v)
        lat = d.get("latency_ns")
        if lat:
            fast = lat.get("sysret") or lat.get("eretu") or {}
            c.lat = [Hist.from_json(fast), Hist.from_json(lat.get("iret", {}))]
        return c


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


TABLES = ("processes", "threads", "syscalls", "cpus")
BY_TO_TABLE = {"process": "processes", "thread": "threads",
               "syscall": "syscalls", "cpu": "cpus"}


class Snapshot:
    """Counters at one moment (cumulative) or over one interval (delta).

    meta follows the report schema's "meta"; totals is a Counts; each
    table maps a row key to a Row.  Keys: processes (pid, start_ns),
    threads (tid, start_ns), syscalls (abi, nr), cpus cpu.
    """

    def __init__(self, meta=None, totals=None, processes=None, threads=None,
                 syscalls=None, cpus=None):
        self.meta = meta if meta is not None else {}
        self.totals = totals if totals is not None else Counts.zero()
        self.processes = processes if processes is not None else {}
        self.threads = threads if threads is not None else {}
        self.syscalls = syscalls if syscalls is not None else {}
        self.cpus = cpus if cpus is not None else {}

    def __getattr__(self, name):
        # A table left out of __dict__ by delta(lazy=True): computed
        # when first read, then an attribute like the others.
        lazy = self.__dict__.get("_lazy")
        if lazy and name in lazy:
            value = lazy.pop(name)()
            setattr(self, name, value)
            return value
        raise AttributeError(name)

    def table(self, name):
        return getattr(self, BY_TO_TABLE.get(name, name))

    @property
    def fast_path(self):
        return "eretu" if self.meta.get("guard", {}).get("fred") else "sysret"

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
        totals = self.totals if older is None else \
            self.totals.minus(older.totals)
        out = Snapshot(meta, totals.copy() if older is None else totals)
        for t in TABLES:
            if lazy:
                del out.__dict__[t]
                out.__dict__.setdefault("_lazy", {})[t] = (
                    lambda t=t: self._table_delta(t, older))
            else:
                setattr(out, t, self._table_delta(t, older))
        return out

    def _table_delta(self, t, older):
        theirs = older.table(t) if older is not None else {}
        out = {}
        for k, row in self.table(t).items():
            o = theirs.get(k)
            if o is None:
                c = row.counts.copy()
            elif o.counts is row.counts or row.counts.same(o.counts):
                # The collector shares unchanged counts between
                # snapshots; equal ones made this interval nothing.
                continue
            else:
                c = row.counts.minus(o.counts)
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

    def sorted_rows(self, table, key="returns", reverse=True):
        rows = list(self.table(table).values())
        rows.sort(key=lambda r: (sort_value(r, key), _tiebreak(r)),
                  reverse=reverse)
        return rows

    def to_report(self, top=None):
        fp = self.fast_path
        doc = {"schema": SCHEMA, "meta": self.meta,
               "totals": self.totals.to_json(fp)}
        for t in TABLES:
            rows = self.sorted_rows(t)
            if top is not None:
                rows = rows[:top]
            doc[t] = [dict(r.fields, **r.counts.to_json(fp)) for r in rows]
        return doc

    @classmethod
    def from_report(cls, doc):
        if doc.get("schema") != SCHEMA:
            raise ValueError("unsupported schema %r (this version reads %s)"
                             % (doc.get("schema"), SCHEMA))
        s = cls(check_meta(doc.get("meta", {})),
                Counts.from_json(doc["totals"]))
        for t in TABLES:
            for item in doc.get(t, []):
                c = Counts.from_json(item)
                fields = check_fields({
                    k: v for k, v in item.items()
                    if k not in ("returns", "paths", "reasons",
                                 "latency_ns")}, t)
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


def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v)) and abs(v) < 1e18
    except OverflowError:
        return False


_META_STR = ("version", "kernel", "cpu_model", "hostname", "started_at",
             "command")
_META_NUM = ("duration_s", "interval_s", "latency_sample", "iret_penalty")
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
    pids = f.get("pids")
    if pids is not None and not (isinstance(pids, list) and all(
            isinstance(p, int) and not isinstance(p, bool) for p in pids)):
        raise ValueError("meta.filters.pids is not a list of pids")
    return meta


_FIELD_TYPES = {"pid": int, "tid": int, "nr": int, "cpu": int,
                "start_ns": int, "comm": str, "name": str, "abi": str,
                "cgroup": str}


# The identity every output reads from a row of each table.
REQUIRED_FIELDS = {"processes": ("pid",), "threads": ("pid", "tid"),
                   "syscalls": ("abi", "nr"), "cpus": ("cpu",)}


def check_fields(fields, table=None):
    """ValueError unless a row's identity fields have their types (and,
    given its table, are all there)."""
    for k in REQUIRED_FIELDS.get(table, ()):
        if fields.get(k) is None:
            raise ValueError("a row of %s without %s" % (table, k))
    for k, t in _FIELD_TYPES.items():
        v = fields.get(k)
        if v is None:
            continue
        if not isinstance(v, t) or isinstance(v, bool) or (
                t is int and not -(1 << 63) <= v < 1 << 64):
            raise ValueError("%s %r is not %s" % (
                k, v, "an integer" if t is int else "a string"))
    return fields


def row_key(table, fields):
    if table == "processes":
        return (fields["pid"], fields.get("start_ns", 0))
    if table == "threads":
        return (fields["tid"], fields.get("start_ns", 0))
    if table == "syscalls":
        return (fields["abi"], fields["nr"])
    return fields["cpu"]


def _tiebreak(row):
    f = row.fields
    return tuple(f.get(k, 0) for k in ("pid", "tid", "abi", "nr", "cpu")
                 if not isinstance(f.get(k, 0), str)) or (0,)


SORT_KEYS = ("returns", "iret", "sysret", "iret_share", "reason", "p50",
             "p99", "iret_p50", "iret_p99", "name", "id")


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
        return str(row.fields.get("comm") or row.fields.get("name") or "")
    if key == "id":
        f = row.fields
        return f.get("tid", f.get("pid", f.get("nr", f.get("cpu", 0))))
    return row.counts.returns


def _lost_delta(new, old):
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
