"""The top screen model, on made-up snapshots (no terminal, no BPF)."""

import random

import pytest

from sysretstat.kernel import abi
from sysretstat.top import state as ts, rows as tr, detail as td
from sysretstat.render import units
from sysretstat.top import view as tv
from sysretstat.commands.top import interval_delta
from sysretstat.model.snapshot import Counts, Hist, Row, Snapshot

SIG = abi.OUTCOMES.index("signal")
RCX = abi.OUTCOMES.index("rcx_ne_rip")


def counts(sysret, **reasons):
    c = Counts.zero()
    c.n[abi.O_SYSRET] = sysret
    for name, v in reasons.items():
        c.n[abi.OUTCOMES.index(name)] = v
    c.lat = [Hist.from_values([1000] * 90 + [50000] * 10),
             Hist.from_values([3000] * 99 + [800000])] if c.returns else \
        [Hist(), Hist()]
    return c


def snap(dt=2.0, fred=False, bpf=True):
    procs = {(100, 1): ("alpha", counts(600, signal=400)),
             (200, 2): ("beta", counts(500)),
             (300, 3): ("gamma", counts(0, rcx_ne_rip=30, signal=20))}
    s = Snapshot(meta={
        "hostname": "box1", "kernel": "6.18.0-test", "interval_s": dt,
        "duration_s": dt, "filters": {"latency": True},
        "guard": {"task_size_max": (1 << 47) - 4096, "xen_pv": False,
                  "fred": fred, "la57": False},
        "lost": {"storage": 0, "unattributed_threads": 0},
        "bpf": {"run_time_ns": 4_000_000, "run_count": 20000, "stats": bpf}})
    for key, (name, c) in procs.items():
        s.processes[key] = Row(key, {"pid": key[0], "comm": name}, c)
        s.threads[key] = Row(key, {"pid": key[0], "tid": key[0],
                                   "comm": name}, Counts(c.n))
        s.totals.add(c)
    s.syscalls[("x64", 234)] = Row(("x64", 234), {"nr": 234, "name": "tgkill",
                                                  "abi": "x64"},
                                   counts(0, signal=420))
    s.syscalls[("x64", 15)] = Row(("x64", 15), {"nr": 15,
                                                "name": "rt_sigreturn",
                                                "abi": "x64"},
                                  counts(1100, rcx_ne_rip=30))
    s.cpus[0] = Row(0, {"cpu": 0}, s.totals.copy())
    return s


class Penalty:
    mean_penalty_ns = 100.0

    def penalty_ns(self, reason):
        return 1000.0 if reason == "signal" else None


def text(snapshot, state, w=80, h=24, **kw):
    lines = tv.render(snapshot, state, w, h, **kw)
    assert len(lines) == h
    for line in lines:
        assert len(tv.line_text(line)) == w
    return tv.screen_text(lines)


def ns(cell):
    for unit, mult in (("ns", 1), ("us", 1e3), ("ms", 1e6), ("s", 1e9)):
        if cell.endswith(unit):
            return float(cell[:-len(unit)]) * mult
    raise AssertionError("not a duration: %r" % cell)


def data_rows(screen):
    """Table lines: after the column titles, up to the first blank."""
    lines = screen.split("\n")
    i = next(i for i, l in enumerate(lines) if "RET/s" in l and "REASON"
             in l)
    out = []
    for l in lines[i + 1:]:
        if not l.strip():
            break
        out.append(l.split())
    return out


def test_header_shows_host_guard_rates_reasons_and_cost():
    out = text(snap(), ts.ViewState())
    head = out.split("\n")[:5]
    assert "box1" in head[0] and "6.18.0-test" in head[0]
    assert "4-level paging" in head[0]
    # 1550 returns over 2 s; 450 IRET; SYSRET share 1100/1550.
    assert "returns 775/s" in head[1]
    assert "IRET 225/s (29.0%)" in head[1]
    assert "SYSRET 71.0%" in head[1]
    assert "signal 93.3%" in head[2] and "rcx_ne_rip 6.7%" in head[2]
    assert head[2].index("signal") < head[2].index("rcx_ne_rip")
    # 4 ms of BPF over 2 s.
    assert "BPF 2.0ms/s (0.2% of a CPU)" in head[3] and "lost 0" in head[3]


def test_header_without_bpf_stats_and_on_fred():
    out = text(snap(bpf=False, fred=True), ts.ViewState())
    assert "not measured" in out
    assert "FRED" in out.split("\n")[0]
    assert "ERETU" in out and "ERp50" in out


def test_table_columns_fit_80x24_and_rows_sorted_by_iret():
    out = text(snap(), ts.ViewState())
    titles = next(l for l in out.split("\n") if "REASON" in l)
    for col in ("PID", "COMM", "RET/s", "IRET/s", "IRET%", "REASON",
                "SRp50", "SRp99", "IRp50", "IRp99"):
        assert col in titles
    rows = data_rows(out)
    assert [r[0] for r in rows] == ["100", "300", "200"]
    alpha = rows[0]
    assert alpha[1:6] == ["alpha", "500", "200", "40.0%", "signal"]
    # p50 of 1 us samples, within the histogram's 12.5%.
    assert 875 <= ns(alpha[6]) <= 1125
    assert 50000 * .875 <= ns(alpha[7]) <= 50000 * 1.125
    assert 3000 * .875 <= ns(alpha[8]) <= 3000 * 1.125
    assert rows[1][5] == "rcx_ne_rip"
    assert "q quit" in out.split("\n")[-1]


@pytest.mark.parametrize("w,h", [(40, 10), (60, 15), (200, 50), (1, 1)])
def test_any_size_gives_exact_lines(w, h):
    st = ts.ViewState()
    text(snap(), st, w, h)
    st.detail = True
    text(snap(), st, w, h)
    st.help = True
    text(snap(), st, w, h)


def test_narrow_screen_drops_low_priority_columns_first():
    out = text(snap(), ts.ViewState(), 50, 20)
    titles = next(l for l in out.split("\n") if "REASON" in l)
    assert "PID" in titles and "IRET/s" in titles and "REASON" in titles
    assert "SRp50" not in titles


def test_sort_keys_and_reverse():
    s, st = snap(), ts.ViewState()
    rows = tr.build_rows(s, st)
    ts.handle_key(st, "r", rows)
    assert [r[0] for r in data_rows(text(s, st))] == ["200", "300", "100"]
    ts.handle_key(st, "S", rows)   # iret -> returns
    assert st.sort == "returns" and not st.reverse
    assert [r[0] for r in data_rows(text(s, st))] == ["100", "200", "300"]
    ts.handle_key(st, "S", rows)   # wraps to name, ascending
    out = text(s, st)
    assert st.sort == "name" and "sort name asc" in out
    assert [r[1] for r in data_rows(out)] == ["alpha", "beta", "gamma"]
    for _ in range(len(ts.SORT_KEYS)):
        ts.handle_key(st, "s", rows)
        text(s, st)
    assert st.sort == "name"


def test_filter_by_name_and_by_pid():
    s, st = snap(), ts.ViewState()
    for k in ["/", "G", "a", "m", "x", "backspace", "enter"]:
        ts.handle_key(st, k, [])
    out = text(s, st)
    assert [r[1] for r in data_rows(out)] == ["gamma"]
    assert "filter 'Gam'" in out and "1/3 rows" in out
    for k in ["/", "backspace", "backspace", "backspace", "2", "0", "0",
              "enter"]:
        ts.handle_key(st, k, [])
    assert [r[0] for r in data_rows(text(s, st))] == ["200"]
    ts.handle_key(st, "esc", [])
    assert len(data_rows(text(s, st))) == 3


def test_filter_prompt_is_shown_while_typing():
    st = ts.ViewState()
    ts.handle_key(st, "/", [])
    ts.handle_key(st, "q", [])      # typed, not quit
    assert st.editing == "q"
    assert "filter (name or id): q_" in text(snap(), st)


def test_views_switch_with_tab_and_digits():
    s, st = snap(), ts.ViewState()
    ts.handle_key(st, "3", [])
    out = text(s, st)
    assert st.view == "syscall" and "[3 syscall]" in out
    names = [r[2] for r in data_rows(out)]
    assert names == ["tgkill", "rt_sigreturn"]
    ts.handle_key(st, "tab", [])
    assert st.view == "cpu"
    ts.handle_key(st, "tab", [])
    assert st.view == "process"
    ts.handle_key(st, "btab", [])
    assert st.view == "cpu"
    ts.handle_key(st, "2", [])
    out = text(s, st)
    assert "TID" in out and "IRp50" not in out   # threads: no latency


def test_selection_moves_and_follows_its_row():
    s, st = snap(), ts.ViewState()
    text(s, st)
    rows = tr.build_rows(s, st)
    ts.handle_key(st, "j", rows)
    assert st.sel_key == (300, 3)
    ts.handle_key(st, "r", rows)       # re-sorted: gamma still selected
    text(s, st)
    assert st.sel == 1 and st.sel_key == (300, 3)
    ts.handle_key(st, "G", tr.build_rows(s, st))
    assert st.sel == 2
    ts.handle_key(st, "k", tr.build_rows(s, st))
    ts.handle_key(st, "up", tr.build_rows(s, st))
    ts.handle_key(st, "up", tr.build_rows(s, st))
    assert st.sel == 0


def test_detail_pane_reasons_and_histograms():
    s, st = snap(), ts.ViewState()
    text(s, st)
    rows = tr.build_rows(s, st)
    ts.handle_key(st, "down", rows)
    ts.handle_key(st, "enter", rows)
    out = text(s, st, 80, 30)
    assert "process 300 gamma" in out
    lines = out.split("\n")
    rcx = next(l for l in lines if l.startswith("rcx_ne_rip"))
    assert "15" in rcx and "60.0%" in rcx and "RCX != RIP" in rcx
    assert any(l.startswith("signal") and "40.0%" in l for l in lines)
    hist = next(l for l in lines if "SYSRET latency" in l)
    assert "IRET latency (n=100)" in hist
    assert hist.index("SYSRET") < 40 <= hist.index("IRET latency")
    pct = next(l for l in lines if l.startswith("p99"))
    # SYSRET p99 at 50 us, IRET p99 at 3 us (99 of 100 samples).
    left, right = pct[:40].split(), pct[40:].split()
    assert left[0] == right[0] == "p99"
    assert 50000 * .875 <= ns(left[1]) <= 50000 * 1.125
    assert 3000 * .875 <= ns(right[1]) <= 3000 * 1.125
    bars = [l for l in lines if "\u2588" in l]
    assert len(bars) >= 2
    ts.handle_key(st, "esc", rows)
    assert not st.detail and "REASON" in text(s, st)


def test_detail_pane_keeps_a_row_idle_this_interval():
    s, st = snap(), ts.ViewState()
    rows = tr.build_rows(s, st)
    text(s, st)
    ts.handle_key(st, "enter", rows)
    later = snap()
    del later.processes[(100, 1)]
    out = text(later, st, cumulative=s)
    assert "process 100 alpha" in out and "since start" in out


def test_cost_column_only_with_calibration():
    s = snap()
    assert "COST/s" not in text(s, ts.ViewState())
    out = text(s, ts.ViewState(), 100, 24, calibration=Penalty())
    assert "COST/s" in out
    # alpha: 400 signal x 1000 ns over 2 s = 200 us/s; gamma: 20 x 1000
    # + 30 x 100 (mean penalty) = 23 us over 2 s.
    rows = {r[0]: r for r in data_rows(out)}
    assert "200us" in rows["100"] and "11.5us" in rows["300"]
    assert "IRET cost ~" in out


def test_help_pause_and_quit():
    s, st = snap(), ts.ViewState()
    assert ts.handle_key(st, "h", []) is None
    out = text(s, st)
    assert "keys" in out and "reverse the sort order" in out
    ts.handle_key(st, "x", [])
    assert not st.help
    ts.handle_key(st, "p", [])
    assert st.paused and "PAUSED" in text(s, st, now=0)
    ts.handle_key(st, " ", [])
    assert not st.paused
    assert ts.handle_key(st, "q", []) == "quit"


def test_first_frame_before_data():
    out = text(None, ts.ViewState(interval=2))
    assert "collecting the first interval (2s)" in out


def test_host_view():
    a, b = snap(), snap()
    b.totals = counts(100)
    st = ts.ViewState(view="host", views=ts.VIEWS + ("host",))
    merged = a.copy().merge(b)
    out = text(merged, st, hosts={"h1": a, "h2": b})
    assert "2 hosts" in out and "[5 host]" in out
    assert [r[0] for r in data_rows(out)] == ["h1", "h2"]


@pytest.mark.parametrize("v", [0, 0.5, 3, 9.99, 10, 999, 999.7, 9999,
                               9999.7, 10000, 99999, 999999, 1e6, 5.5e8,
                               99999e6, 1e12])
def test_formats_fit_six_characters(v):
    assert len(units.fmt_rate(v)) <= 6
    assert len(units.fmt_ns_short(v)) <= 6


def test_hist_bins_fit_the_rows():
    h = Hist.from_values([2 ** p for p in range(4, 30)])
    bins = td.hist_bins([h, Hist()], 6)
    assert len(bins) <= 6
    assert sum(b[1] for b in bins) == h.count


def test_interval_delta_equals_snapshot_delta():
    rng = random.Random(7)
    old = snap()
    new = old.copy()
    new.meta["duration_s"] = old.meta["duration_s"] + 1.5
    new.meta["bpf"] = dict(old.meta["bpf"], run_time_ns=7_000_000,
                           run_count=26000)
    for table in ("processes", "syscalls", "threads"):
        for row in new.table(table).values():
            if rng.random() < 0.5:
                row.counts.n[SIG] += 3
                if row.counts.lat:
                    row.counts.lat[1].add(Hist.from_values([5000] * 3))
    new.processes[(400, 4)] = Row((400, 4), {"pid": 400, "comm": "delta"},
                                  counts(7, rcx_ne_rip=1))
    want = new.delta(old)
    got = interval_delta(new, old)
    assert got.meta["bpf"]["run_time_ns"] == 3_000_000
    assert got.meta["bpf"]["run_count"] == 6000
    got.meta["bpf"] = want.meta["bpf"]
    assert got.to_report() == want.to_report()
    assert (400, 4) in got.processes and got.meta["interval_s"] == 1.5
