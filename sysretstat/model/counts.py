"""Returns of one row (or of everything) by outcome, with the latency
of each return path."""

from operator import sub

from sysretstat.kernel import abi
from sysretstat.model.histogram import Hist
from sysretstat.model.validate import count


class _Pending:
    """Latency a Counts holds but has not made Hists of yet (see
    Counts.lat): most rows' latency is never read."""

    __slots__ = ()

    def compute(self):
        raise NotImplementedError


class KernelLatency(_Pending):
    """A row's latency as the kernel wrote it: the (where, raw, sum_ns)
    runs of each path (Hist.from_kernel), made Hists when first read.

    The collector gives one to a process each time its record comes;
    every Counts made from it until the next shares it, and so the
    Hists made from it: a frame of top reads the latency of a
    screenful of thousands of processes."""

    __slots__ = ("runs", "_hists")

    def __init__(self, runs):
        self.runs = runs
        self._hists = None

    def compute(self):
        hists = self._hists
        if hists is None:
            from_kernel = Hist.from_kernel
            hists = self._hists = [from_kernel(*r) for r in self.runs]
        return hists


class _Difference(_Pending):
    """Latency not yet subtracted: `new`'s minus `older`'s, per path.

    Counts.minus() leaves one, and Counts.lat computes it when first
    read: a frame of top sorts thousands of interval rows by their
    counts and reads the latency of a screenful.  It holds the two
    Counts, not their latency, which may be pending too."""

    __slots__ = ("new", "older")

    def __init__(self, new, older):
        self.new = new
        self.older = older

    def compute(self):
        lat = [h.copy() for h in self.new.lat or (Hist(), Hist())]
        for a, b in zip(lat, self.older.lat or ()):
            a.add(b, -1)
        return lat


# An interval's counts of the reasons when none changed (Counts.minus).
assert (abi.O_SYSRET, abi.O_ERETU, abi.FIRST_IRET) == (0, 1, 2)
_NO_REASONS = (0,) * (abi.NR_OUTCOMES - abi.FIRST_IRET)


def _detail_sum(a, b, sign=1):
    """{(reason, detail): n} a + sign * b, without the zeros."""
    if not b:
        return dict(a) if a else None
    out = dict(a) if a else {}
    for k, v in b.items():
        v = out.get(k, 0) + sign * v
        if v:
            out[k] = v
        else:
            out.pop(k, None)
    return out or None


class Counts:
    """Returns of one row by outcome, and its latency per path.

    detail: what the returns of a reason were, where the reason has more
    to say (the signal, the restart code, the tracer, thread or process
    fork), as {(reason, detail): returns}; None when there is none."""

    __slots__ = ("n", "_lat", "detail")

    def __init__(self, n=None, lat=None, detail=None):
        self.n = list(n) if n is not None else [0] * abi.NR_OUTCOMES
        self.detail = dict(detail) if detail else None
        # lat[0]: SYSRET (ERETU on FRED kernels), lat[1]: IRET; None
        # where the row has no latency (threads); or _Pending.  One
        # attribute, replaced whole, like Hist._data, so that a thread
        # reading it while another computes it sees one or the other.
        self._lat = list(lat) if isinstance(lat, tuple) else lat

    @classmethod
    def of(cls, n, lat=None, detail=None):
        """Counts holding n, lat (a list, or a KernelLatency) and detail
        themselves, not copies: the caller never changes them.  The
        collector makes one per changed row per read."""
        c = cls.__new__(cls)
        c.n = n
        c._lat = lat
        c.detail = detail or None
        return c

    @property
    def lat(self):
        lat = self._lat
        if isinstance(lat, _Pending):
            lat = lat.compute()
            self._lat = lat
        return lat

    @lat.setter
    def lat(self, value):
        self._lat = list(value) if isinstance(value, tuple) else value

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
        if other.detail:
            self.detail = _detail_sum(self.detail, other.detail, sign)
        return self

    def copy(self):
        return Counts(self.n, None if self.lat is None
                      else [h.copy() for h in self.lat], self.detail)

    def minus(self, older, n=None):
        """A new Counts: self - older, its latency computed when read.
        Both must stay unchanged until then, as snapshots do.  n: the
        difference of their counts, where the caller has it (a list
        it never changes)."""
        # Without __init__ (its copy of n): top's interval makes one per
        # active row.
        c = Counts.__new__(Counts)
        if n is None:
            new, old = self.n, older.n
            if len(new) == abi.NR_OUTCOMES and \
                    new[abi.FIRST_IRET:] == old[abi.FIRST_IRET:]:
                # No IRET return in between, as for most rows of an
                # interval: only the fast paths' counts differ, and
                # subtracting two ints costs far less than seventeen.
                n = [new[0] - old[0], new[1] - old[1]]
                n += _NO_REASONS
            else:
                n = list(map(sub, new, old))
        c.n = n
        if self._lat is not None or older._lat is not None:
            # Made as c is: a Python __init__ costs a frame per row.
            c._lat = d = _Difference.__new__(_Difference)
            d.new, d.older = self, older
        else:
            c._lat = None
        c.detail = _detail_sum(self.detail, older.detail, -1) \
            if older.detail else self.detail
        return c

    def same(self, other):
        """Whether other has the same counts and latency sums.  A latency
        sample is only taken with a return, so equal counts and sums mean
        equal histograms, short of a recount that moved a sample between
        buckets of one path, which changes no count."""
        return self.n == other.n and self.detail == other.detail and (
            self.lat is None or other.lat is None or (
                self.lat[0].sum_ns == other.lat[0].sum_ns and
                self.lat[1].sum_ns == other.lat[1].sum_ns))

    def is_zero(self):
        # Returns first: most rows have some, and their latency may be
        # pending.
        return not any(self.n) and (self.lat is None or
                                    not any(h.count for h in self.lat))

    def __eq__(self, other):
        return isinstance(other, Counts) and self.n == other.n and \
            (self.detail or None) == (other.detail or None) and \
            (self.lat or [Hist(), Hist()]) == (other.lat or [Hist(), Hist()])

    def __repr__(self):
        return "Counts(returns=%d, sysret=%d, iret=%d, %r)" % (
            self.returns, self.sysret, self.iret, self.reasons())

    def to_json(self, fast_path="sysret"):
        """The counts in the report document (reasons largest first)."""
        n = self.n
        rs = sorted(((name, n[i]) for i, name in enumerate(abi.OUTCOMES)
                     if i >= abi.FIRST_IRET and n[i]),
                    key=lambda kv: (-kv[1], kv[0]))
        d = {"returns": sum(n),
             "paths": {"sysret": n[abi.O_SYSRET],
                       "iret": sum(n[abi.FIRST_IRET:]),
                       "eretu": n[abi.O_ERETU]},
             "reasons": dict(rs)}
        if self.detail:
            d["reason_detail"] = self.reason_detail()
        lat = self.lat
        if lat is not None:
            fast, iret = self.untimed()
            d["latency_ns"] = {fast_path: lat[0].to_json(fast),
                               "iret": lat[1].to_json(iret)}
        return d

    def reason_detail(self):
        """{reason: {detail: returns}}, each largest first."""
        out = {}
        for (reason, detail), v in sorted(self.detail.items(),
                                          key=lambda kv: (-kv[1], kv[0])):
            out.setdefault(reason, {})[detail] = v
        return {r: out[r] for r in sorted(out)}

    def untimed(self):
        """Returns without a duration, (fast path, IRET): a fork child's
        first return (no sys_enter of its own) and a syscall whose entry
        was not seen.  Never negative: a process's latency can lag its
        counts (lost.proc_hists)."""
        lat = self.lat
        if lat is None:
            return 0, 0
        n = self.n
        return (max(0, n[abi.O_SYSRET] + n[abi.O_ERETU] - lat[0].count),
                max(0, sum(n[abi.FIRST_IRET:]) - lat[1].count))

    def untimed_why(self, sampled=None):
        """Why returns have no duration: {"fork_child": n, "no_sys_enter":
        n} (a fork child's first return takes IRET and is never timed),
        and with `sampled` (the collector's count of returns its 1-in-N
        sampling left untimed) "sampled" too."""
        fast, iret = self.untimed()
        fork = min(self.n[abi.OUTCOMES.index("fork_child")], iret)
        rest = fast + iret - fork
        if sampled is None:
            return {"fork_child": fork, "no_sys_enter": rest}
        sampled = min(max(0, sampled), rest)
        return {"fork_child": fork, "sampled": sampled,
                "no_sys_enter": rest - sampled}

    @classmethod
    def from_json(cls, d):
        c = cls()
        c.n[abi.O_SYSRET] = count(d["paths"].get("sysret", 0))
        c.n[abi.O_ERETU] = count(d["paths"].get("eretu", 0))
        for name, v in d.get("reasons", {}).items():
            if name not in abi.REASONS:
                raise ValueError("unknown reason %.40r" % name)
            c.n[abi.OUTCOMES.index(name)] = count(v)
        detail = d.get("reason_detail")
        if detail:
            c.detail = parse_detail(detail)
        lat = d.get("latency_ns")
        if lat:
            fast = lat.get("sysret") or lat.get("eretu") or {}
            c.lat = [Hist.from_json(fast), Hist.from_json(lat.get("iret", {}))]
        return c


def parse_detail(doc):
    """A document's reason_detail as Counts.detail, checked."""
    if not isinstance(doc, dict):
        raise ValueError("reason_detail is not an object")
    out = {}
    for reason, by in doc.items():
        if reason not in abi.REASONS:
            raise ValueError("reason_detail of unknown reason %.40r" % reason)
        if not isinstance(by, dict):
            raise ValueError("reason_detail.%s is not an object" % reason)
        for name, v in by.items():
            if not isinstance(name, str) or len(name) > 64:
                raise ValueError("bad detail name %.40r" % (name,))
            v = count(v)
            if v:
                out[(reason, name)] = v
    return out or None
