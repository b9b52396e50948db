"""The data model: histograms, counts, deltas, the report schema."""

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from sysretstat.kernel import abi
from sysretstat.model.snapshot import (Counts, Hist, Row, Snapshot, SCHEMA,
                                       check_invariants)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**11), min_size=1,
                max_size=400),
       st.sampled_from([0.5, 0.9, 0.99, 0.999]))
def test_percentile_within_12_5_percent(values, q):
    h = Hist.from_values(values)
    vs = sorted(values)
    # The exact q-quantile by the rank rule the histogram uses.
    true = vs[max(0, math.ceil(q * len(vs)) - 1)]
    got = h.percentile(q)
    if true >= (1 << abi.HIST_MAX_POW):
        assert got == 1 << abi.HIST_MAX_POW
    else:
        assert abs(got - true) <= 0.125 * true + 0.5


def test_hist_count_sum_min_max():
    h = Hist.from_values([100, 200, 300])
    assert h.count == 3 and h.sum_ns == 600
    assert h.min <= 100 < h.min * 1.125 + 1
    assert h.max >= 300 and h.max <= 300 * 1.125 + 1
    assert h.mean == 200
    j = h.to_json()
    assert j["count"] == 3 and j["sum"] == 600
    assert sum(c for _, _, c in j["buckets"]) == 3
    assert all(lo < hi for lo, hi, _ in j["buckets"])
    assert Hist.from_json(j) == h


def test_empty_hist():
    h = Hist()
    assert h.count == 0 and h.percentile(.5) is None and h.min is None
    assert h.to_json()["buckets"] == []


def counts(**kw):
    c = Counts.zero()
    for k, v in kw.items():
        c.n[abi.OUTCOMES.index(k)] = v
    return c


def test_counts_paths_and_reasons():
    c = counts(sysret=10, signal=3, rcx_ne_rip=1)
    assert c.returns == 14 and c.sysret == 10 and c.iret == 4
    assert c.reasons() == {"signal": 3, "rcx_ne_rip": 1}
    assert c.top_reason() == "signal"
    j = c.to_json()
    assert j["returns"] == sum(j["paths"].values())
    assert j["paths"]["iret"] == sum(j["reasons"].values())
    assert Counts.from_json(j).n == c.n


def make_snapshot(dur, sysret, sig):
    s = Snapshot({"duration_s": dur, "guard": {"fred": False}, "lost": {
        "storage": 0, "unattributed_processes": 0}})
    s.totals = counts(sysret=sysret, signal=sig)
    s.totals.lat[0].add(Hist.from_values([100] * sysret))
    s.processes[(1, 0)] = Row((1, 0), {"pid": 1, "comm": "a"},
                              counts(sysret=sysret, signal=sig))
    s.cpus[0] = Row(0, {"cpu": 0}, counts(sysret=sysret, signal=sig))
    s.syscalls[("x64", 39)] = Row(("x64", 39), {"nr": 39, "name": "getpid",
                                                "abi": "x64"},
                                  counts(sysret=sysret, signal=sig))
    s.threads[(1, 0)] = Row((1, 0), {"pid": 1, "tid": 1, "comm": "a"},
                            Counts(counts(sysret=sysret, signal=sig).n))
    return s


def test_delta_subtracts_and_drops_unchanged_rows():
    a = make_snapshot(1.0, 10, 1)
    b = make_snapshot(3.0, 25, 1)
    b.processes[(2, 0)] = Row((2, 0), {"pid": 2, "comm": "b"},
                              counts(sysret=5))
    d = b.delta(a)
    assert d.meta["duration_s"] == 2.0 and d.meta["interval_s"] == 2.0
    assert d.totals.sysret == 15 and d.totals.iret == 0
    assert d.processes[(1, 0)].counts.sysret == 15
    assert d.processes[(2, 0)].counts.sysret == 5
    assert d.totals.lat[0].count == 15
    assert b.delta(b).processes == {}


def test_report_round_trip_and_schema():
    s = make_snapshot(1.0, 7, 2)
    doc = s.to_report()
    text = json.dumps(doc)
    back = Snapshot.from_report(json.loads(text))
    assert back.to_report() == doc
    assert doc["schema"] == SCHEMA
    for t in ("processes", "threads", "syscalls", "cpus"):
        for row in doc[t]:
            assert row["returns"] == sum(row["paths"].values())
            assert row["paths"]["iret"] == sum(row["reasons"].values())
    assert set(doc["totals"]["latency_ns"]) == {"sysret", "iret"}
    hist = doc["totals"]["latency_ns"]["sysret"]
    assert set(hist) == {"count", "sum", "min", "max", "p50", "p90", "p99",
                         "p999", "untimed", "buckets"}


def test_fred_snapshots_name_the_fast_path_eretu():
    s = Snapshot({"guard": {"fred": True}})
    s.totals = counts(eretu=4)
    assert "eretu" in s.to_report()["totals"]["latency_ns"]


def test_from_report_rejects_other_schema():
    with pytest.raises(ValueError):
        Snapshot.from_report({"schema": "sysretstat/2"})


def test_invariants_detect_mismatch():
    s = make_snapshot(1.0, 7, 2)
    assert check_invariants(s) == []
    s.processes[(1, 0)].counts.n[0] += 1
    assert check_invariants(s)


def test_merge_adds_rows():
    a, b = make_snapshot(1, 3, 1), make_snapshot(1, 4, 0)
    a.merge(b)
    assert a.totals.sysret == 7 and a.processes[(1, 0)].counts.sysret == 7


def _kernel_forms(dense):
    """The two ways the kernel writes a histogram's buckets, for the
    dense list `dense`: a run from its first non-zero bucket, and a
    bitmap of the non-zero ones with their counts."""
    import struct
    nz = [i for i, c in enumerate(dense) if c]
    if not nz:
        return [(0, b"")]
    run = (nz[0], struct.pack("<%dq" % (nz[-1] - nz[0] + 1),
                              *dense[nz[0]:nz[-1] + 1]))
    bits = sum(1 << i for i in nz).to_bytes(8 * abi.HIST_WORDS, "little")
    return [run, (bits, struct.pack("<%dq" % len(nz),
                                    *[dense[i] for i in nz]))]


dense_hists = st.lists(st.integers(min_value=0, max_value=1000),
                       min_size=abi.HIST_BUCKETS,
                       max_size=abi.HIST_BUCKETS).map(
    lambda d: [c if i % 7 == 0 or c < 100 else 0 for i, c in enumerate(d)])


@settings(max_examples=40, deadline=None)
@given(st.lists(dense_hists, min_size=1, max_size=12),
       st.lists(st.sampled_from([1, -1]), min_size=12, max_size=12))
def test_pending_kernel_histograms_equal_expanded_ones(dense, signs):
    """Hists read from the kernel stay pending (added and subtracted
    unexpanded, up to Hist.MAX_RUNS terms): the result must equal the
    same arithmetic on plain dicts, in either kernel form."""
    for form in (0, -1):
        want, got = Hist(), Hist()
        for d, sign in zip(dense, signs):
            where, raw = _kernel_forms(d)[form]
            h = Hist.from_kernel(where, raw, sum_ns=7)
            assert h.count == sum(d)
            want.add(Hist({i: c for i, c in enumerate(d) if c}, 7), sign)
            got.add(h.copy(), sign)
        assert got.count == want.count
        assert got == want and got.sum_ns == want.sum_ns


def test_counts_minus_reads_latency_lazily():
    a = Counts([5, 1], [Hist({3: 4}, 40), Hist({9: 1}, 90)])
    b = Counts([2, 0], [Hist({3: 1}, 10), Hist()])
    d = a.minus(b)
    assert d.n == [3, 1]
    assert d.lat[0] == Hist({3: 3}, 30) and d.lat[1] == Hist({9: 1}, 90)
    # Neither operand changed, and the result is its own.
    d.lat[0].add(Hist({3: 100}))
    assert a.lat[0] == Hist({3: 4}, 40) and b.lat[0] == Hist({3: 1}, 10)
    no_lat = Counts([1]).minus(Counts([1], [Hist({2: 2}, 4), Hist()]))
    assert no_lat.lat[0] == Hist({2: -2}, -4)


def test_untimed_returns_per_path_and_why():
    # 10 SYSRET returns, 7 timed; 5 IRET (3 fork children, 2 signal),
    # 1 timed: the fork children are never timed (no sys_enter).
    c = Counts()
    c.n[abi.O_SYSRET] = 10
    c.n[abi.OUTCOMES.index("fork_child")] = 3
    c.n[abi.OUTCOMES.index("signal")] = 2
    c.lat = [Hist.from_values([100] * 7), Hist.from_values([900])]
    assert c.untimed() == (3, 4)
    assert c.untimed_why() == {"fork_child": 3, "no_sys_enter": 4}
    d = c.to_json()
    assert d["latency_ns"]["sysret"]["untimed"] == 3
    assert d["latency_ns"]["iret"]["untimed"] == 4
    assert list(d["latency_ns"]["iret"])[-2:] == ["untimed", "buckets"]
    doc = Snapshot(totals=c).to_report()
    assert doc["meta"]["untimed_why"] == {"fork_child": 3, "no_sys_enter": 4}
    # A process's latency can lag its counts: never negative.
    c.lat = [Hist.from_values([100] * 12), Hist()]
    assert c.untimed() == (0, 5)


def test_interval_gap_is_the_change_of_the_gap():
    # unattributed_* is the gap between totals and tables at a live read:
    # it can shrink, and an interval's tables still sum to its totals up
    # to the change of the gap (negative when the tables caught up).
    a = Snapshot({"duration_s": 1.0, "lost": {"unattributed_threads": 14,
                                              "storage": 2}})
    b = Snapshot({"duration_s": 2.0, "lost": {"unattributed_threads": 3,
                                              "storage": 5}})
    d = b.delta(a)
    assert d.meta["lost"] == {"unattributed_threads": -11, "storage": 3}
