"""A sparse log-linear latency histogram, as the kernel keeps it.

Buckets split each power of two of nanoseconds into 8 (bpf/sysret.h,
kernel/abi.py's bucket_of and bucket_bounds), so a percentile read from
them is within 12.5% of the true value.
"""

import itertools

from sysretstat.kernel import abi
from sysretstat.kernel.abi import HIST_MAX_POW, bucket_bounds
from sysretstat.model.fields import PERCENTILES
from sysretstat.model.validate import count

# Outputs read bucket bounds from the model, not from the kernel side.
__all__ = ["Hist", "bucket_bounds", "HIST_MAX_POW"]


class Hist:
    """A sparse log-linear latency histogram (bucket index -> count).

    A histogram read from the kernel can stay *pending*: its int64
    bucket counts as the kernel wrote them, plus the ones added or
    subtracted since, turned into the dict only when the buckets are
    read.  A frame of `top` shows the percentiles of a screen of rows,
    so the thousands of process histograms it reads and subtracts are
    mostly never expanded.
    """

    __slots__ = ("_data", "sum_ns", "_runs_n")

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
        # (runs, their count summed): the pending runs are immutable,
        # so their sum holds while they are the ones pending.  The dict
        # is summed every time: readers of record files add to it in
        # place.
        self._runs_n = ((), 0)

    @classmethod
    def from_kernel(cls, where, raw, sum_ns=0):
        """Counts as the kernel wrote them: `raw`, bytes of int64s (never
        mutated, so shared by every copy), count the buckets `where`
        says: from bucket `where` on (an int), or those whose bits are
        set in the little-endian bitmap `where` (bytes), in order."""
        # Without __init__: the collector makes two per active process
        # per read.
        h = cls.__new__(cls)
        h._data = ({}, ((1, where, raw),)) if raw else ({}, ())
        h.sum_ns = int(sum_ns)
        h._runs_n = ((), 0)
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
        if not runs:
            return sum(b.values())
        done, n = self._runs_n
        if done is not runs:
            # Summing pending runs needs no dict.
            n = sum(sign * sum(memoryview(raw).cast("q"))
                    for sign, _, raw in runs)
            self._runs_n = (runs, n)
        return sum(b.values()) + n

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
        h._runs_n = self._runs_n
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

    def to_json(self, untimed=None):
        """The histogram in the report document: count, sum, bounds,
        PERCENTILES, `untimed` (returns of its path without a duration,
        when given) and the non-empty buckets.  One sort of the buckets
        serves every statistic: with thousands of rows this dominates
        `report --json`."""
        b = self.buckets
        bs = sorted(i for i, c in b.items() if c > 0)
        cs = [b[i] for i in bs]
        n = sum(b.values())
        bounds = [abi.bucket_bounds(i) for i in bs]
        mids = [lo if hi is None else (lo + hi) / 2.0 for lo, hi in bounds]
        out = {"count": n, "sum": self.sum_ns,
               "min": bounds[0][0] if bs else None,
               "max": (bounds[-1][1] if bounds[-1][1] is not None
                       else bounds[-1][0]) if bs else None}
        for p in PERCENTILES:
            v = None
            if n > 0 and bs:
                rank = p.q * n
                seen = 0
                v = mids[-1]
                for m, c in zip(mids, cs):
                    seen += c
                    if seen >= rank:
                        v = m
                        break
            out[p.key] = v
        if untimed is not None:
            out["untimed"] = untimed
        out["buckets"] = [[lo, hi, c] for (lo, hi), c in zip(bounds, cs)]
        return out

    @classmethod
    def from_json(cls, d):
        h = cls(sum_ns=count(d.get("sum", 0)))
        for lo, _hi, c in d.get("buckets", []):
            h.buckets[abi.bucket_of(count(lo))] = count(c)
        return h


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
