"""top's rows are sorted without making a RowView per row: a frame of
thousands of active processes makes only the rows it shows (the cost
this guards is benchmarks/top_frame.py's; here it is counted, not
timed)."""

from sysretstat.model.counts import Counts
from sysretstat.model.snapshot import Row, Snapshot
from sysretstat.top import rows as tr
from sysretstat.top import state as ts
from sysretstat.top.view import render

N = 2000


def interval():
    procs = {}
    for pid in range(1, N + 1):
        c = Counts.zero()
        c.n[0] = pid % 97
        c.n[11] = pid % 13          # signal: an IRET reason
        procs[(pid, pid)] = Row((pid, pid), {"pid": pid, "comm": "p%d" % (
            pid % 7), "start_ns": pid}, c)
    return Snapshot({"interval_s": 1.0, "duration_s": 1.0}, Counts.zero(),
                    processes=procs)


def counting(monkeypatch):
    made = []

    class Counted(tr.RowView):
        __slots__ = ()

        def __init__(self, *a, **kw):
            made.append(a[0])
            super().__init__(*a, **kw)
    monkeypatch.setattr(tr, "RowView", Counted)
    return made


def test_a_frame_makes_only_the_rows_on_screen(monkeypatch):
    made = counting(monkeypatch)
    snap = interval()
    st = ts.ViewState(sort="iret")
    render(snap, st, 80, 24, cumulative=snap)
    render(snap, st, 80, 24, cumulative=snap)   # a selection to follow
    assert 0 < len(made) <= 2 * 24


def test_lazy_rows_keep_the_order_of_full_rows(monkeypatch):
    snap = interval()
    for sort in ts.SORT_KEYS:
        for rev in (False, True):
            st = ts.ViewState(sort=sort, reverse=rev)
            lazy = tr.build_rows(snap, st)
            full = [tr.RowView(r.key, *tr._ident("process", r.fields, r.key),
                               r.counts, 1.0)
                    for r in snap.processes.values()]
            tr.sort_rows(full, sort, rev)
            assert [r.key for r in lazy] == [r.key for r in full], (sort, rev)
            assert [r.key for r in lazy[5:9]] == [r.key for r in full[5:9]]
            assert lazy[-1].key == full[-1].key


def test_filter_and_selection_without_rows(monkeypatch):
    made = counting(monkeypatch)
    snap = interval()
    st = ts.ViewState(sort="returns", filter="p3")
    rows = tr.build_rows(snap, st)
    assert len(rows) == len([p for p in range(1, N + 1) if p % 7 == 3])
    st.sel_key = rows.keys[len(rows) // 2]
    assert tr.follow_selection(st, rows) and st.sel == len(rows) // 2
    assert made == []
