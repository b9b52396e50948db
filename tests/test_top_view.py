"""The top screen model, on made-up snapshots (no terminal, no BPF)."""

import random

import pytest

from sysretstat.kernel import abi
from sysretstat.top import state as ts, rows as tr, detail as td
from sysretstat.render import units
from sysretstat.top import view as tv
from sysretstat.top import batch as top_batch
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
    assert ts.VIEWS == ("process", "comm", "thread", "syscall", "cpu",
                        "cgroup")
    ts.handle_key(st, "4", [])
    out = text(s, st)
    assert st.view == "syscall" and "[4 syscall]" in out
    names = [r[2] for r in data_rows(out)]
    assert names == ["tgkill", "rt_sigreturn"]
    ts.handle_key(st, "tab", [])
    assert st.view == "cpu"
    ts.handle_key(st, "tab", [])
    assert st.view == "cgroup"
    ts.handle_key(st, "tab", [])
    assert st.view == "process"
    ts.handle_key(st, "tab", [])
    assert st.view == "comm"
    ts.handle_key(st, "btab", [])
    ts.handle_key(st, "btab", [])
    assert st.view == "cgroup"
    ts.handle_key(st, "btab", [])
    assert st.view == "cpu"
    # 6 is the host view's key, there only with --per-host.
    ts.handle_key(st, "6", [])
    assert st.view == "cpu"
    ts.handle_key(st, "3", [])
    out = text(s, st)
    assert "TID" in out and "IRp50" not in out   # threads: no latency


def comm_snap():
    """snap() with two more processes named alpha: three of them."""
    s = snap()
    for pid in (101, 102):
        c = counts(50, signal=100)
        s.processes[(pid, 9)] = Row((pid, 9), {"pid": pid, "comm": "alpha"},
                                    c)
        s.totals.add(c)
    return s


def test_comm_view_sums_processes_by_name():
    s, st = comm_snap(), ts.ViewState()
    ts.handle_key(st, "2", [])
    assert st.view == "comm"
    out = text(s, st)
    assert "[2 comm]" in out and "3/3 rows" in out
    head = next(l for l in out.split("\n") if "REASON" in l)
    assert head.split()[:3] == ["COMM", "PROCS", "RET/s"]
    # alpha: 3 processes, 600 + 2 * 50 SYSRET and 400 + 2 * 100 IRET for
    # signal, over 2 s.
    rows = data_rows(out)
    assert [r[:2] for r in rows] == [["alpha", "3"], ["gamma", "1"],
                                     ["beta", "1"]]
    assert rows[0][2:6] == ["650", "300", "46.2%", "signal"]
    # The detail pane names the command and how many processes it sums.
    ts.handle_key(st, "enter", tr.build_rows(s, st))
    out = text(s, st)
    assert "comm alpha (3 processes)" in out
    assert "signal" in out and "SYSRET latency (n=" in out
    # Tab from the comm view goes on to threads.
    ts.handle_key(st, "esc", [])
    ts.handle_key(st, "tab", [])
    assert st.view == "thread"


def test_comm_view_filter_sort_and_cost():
    s, st = comm_snap(), ts.ViewState(view="comm", sort="name")
    assert [r.name for r in tr.build_rows(s, st)] == ["alpha", "beta",
                                                      "gamma"]
    st.sort = "id"      # PROCS, ascending; ties by name
    assert [r.name for r in tr.build_rows(s, st)] == ["beta", "gamma",
                                                      "alpha"]
    st.filter = "alp"
    rows = tr.build_rows(s, st, Penalty())
    assert [r.ident for r in rows] == [(3,)]
    assert rows[0].cost_ns == 600 * 1000.0


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
    assert "2 hosts" in out and "[6 host]" in out
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


# Layout by priority (sysretstat-top(8), COLUMNS): names in full, the
# optional columns (COST/s, percentiles) hidden first and named.

from sysretstat.model.reasons import REASONS
from sysretstat.model import syscall_table
from sysretstat.top import columns as tc

SYSCALL_NAMES = {n for t in (syscall_table.X64, syscall_table.I386,
                             syscall_table.X32) for n in t.values()}
LONGEST_SYSCALLS = [("i386", 423, "sched_rr_get_interval_time64"),
                    ("x64", 444, "landlock_create_ruleset"),
                    ("x64", 230, "clock_nanosleep"),
                    ("x64", 15, "rt_sigreturn")]
OPTIONAL = ("COST/s", "SRp50", "SRp99", "IRp50", "IRp99")


def wide_snap():
    """A row per reason, the longest first; 15-character comms (the
    kernel's longest), the longest syscall names, several CPUs."""
    s = snap()
    by_len = sorted(REASONS, key=len, reverse=True)
    for i, reason in enumerate(by_len):
        pid = 4000000 + i
        comm = ("%s-%d" % (reason, i))[:15].ljust(15, "x")
        c = counts(10, **{reason: 500 - i})
        s.processes[(pid, 1)] = Row((pid, 1), {"pid": pid, "comm": comm}, c)
        s.threads[(pid, 1)] = Row((pid, 1), {"pid": pid, "tid": pid,
                                             "comm": comm}, Counts(c.n))
        s.cpus[i + 1] = Row(i + 1, {"cpu": i + 1}, c.copy())
    # A cgroup per process, as long as a service's name makes one.
    for r in s.processes.values():
        r.fields["cgroup"] = "/system.slice/%s.service" % r.fields["comm"]
    for i, (abi_, nr, name) in enumerate(LONGEST_SYSCALLS):
        reason = by_len[i]
        s.syscalls[(abi_, nr)] = Row((abi_, nr), {"nr": nr, "name": name,
                                                  "abi": abi_},
                                     counts(5, **{reason: 900 - i}))
    return s


def table_lines(screen):
    lines = screen.split("\n")
    i = tv.HEADER_LINES     # below the summary and the status line
    out = []
    for l in lines[i + 1:]:
        if not l.strip() or l.startswith("q quit"):
            break
        out.append(l)
    return lines[i], out


def column(head, lines, title):
    """The cells of a left-aligned column, by its title's offset."""
    at = head.index(title)
    return [l[at:].split()[0] for l in lines]


VIEW_COLUMNS = {"process": ("PID", "COMM"), "thread": ("TID", "PID", "COMM"),
                "comm": ("COMM", "PROCS"), "cgroup": ("CGROUP", "PROCS"),
                "syscall": ("NR", "ABI", "SYSCALL"), "cpu": ("CPU",),
                "host": ("HOST",)}


def check_layout(out, view, with_cost):
    head, lines = table_lines(out)
    assert lines
    titles = head.split()
    for t in VIEW_COLUMNS[view] + ("RET/s", "IRET/s", "IRET%", "REASON"):
        assert t in titles or t + "v" in titles, (t, out)
    reasons = column(head, lines, "REASON")
    assert set(reasons) <= set(REASONS) | {"-"}, out
    if view == "syscall":
        assert set(column(head, lines, "SYSCALL")) <= SYSCALL_NAMES, out
    if view in ("process", "thread", "comm"):
        assert all(len(c) == 15 or c in ("alpha", "beta", "gamma")
                   for c in column(head, lines, "COMM")), out
    if view == "cgroup":
        assert all(c.startswith("/system.slice/") and c.endswith(
            ".service") for c in column(head, lines, "CGROUP")), out
    status = out.split("\n")[4]
    hidden = status.split("hidden: ")[1].split() if "hidden: " in status \
        else []
    for t in OPTIONAL:
        if t == "COST/s" and not with_cost or view == "thread" and \
                t != "COST/s":
            assert t not in titles and t not in hidden
            continue
        # Shown, or named hidden (a percentile pair as SR/IRp50).
        named = t in hidden or "SR/" + t in hidden or \
            t.startswith("SR") and "SR/IR" + t[2:] in hidden
        assert (t in titles) != named, (t, out)
    return reasons


@pytest.mark.parametrize("w,h", [(80, 24), (100, 30), (200, 50)])
@pytest.mark.parametrize("cal", [None, Penalty()], ids=["nocal", "cal"])
@pytest.mark.parametrize("view", ts.VIEWS)
def test_full_names_at_every_size(view, cal, w, h):
    s = wide_snap()
    st = ts.ViewState(view=view)
    seen = set()
    # Page through every row: names in full wherever they scroll to.
    for _ in range(len(s.table(view)) + 1):
        out = text(s, st, w, h, calibration=cal)
        seen |= set(check_layout(out, view, cal is not None))
        ts.handle_key(st, "down", tr.build_rows(s, st, cal))
    want = {r.counts.top_reason() for r in s.table(view).values()} - {None}
    assert seen - {"-"} == want


@pytest.mark.parametrize("w,h", [(80, 24), (100, 30), (200, 50)])
@pytest.mark.parametrize("cal", [None, Penalty()], ids=["nocal", "cal"])
def test_host_view_full_names(cal, w, h):
    a, b = wide_snap(), snap()
    b.totals = counts(3, rip_noncanonical=100)
    st = ts.ViewState(view="host", views=ts.VIEWS + ("host",))
    hosts = {"build-server-17.example": a, "h2": b}
    out = text(a.copy().merge(b), st, w, h, hosts=hosts, calibration=cal)
    check_layout(out, "host", cal is not None)
    head, lines = table_lines(out)
    assert column(head, lines, "HOST") == ["build-server-17.example", "h2"]
    assert "rip_noncanonical" in lines[1]


def test_80x24_with_calibration_hides_cost_and_percentiles_not_names():
    out = text(wide_snap(), ts.ViewState(), 80, 24, calibration=Penalty())
    status = out.split("\n")[4]
    assert "hidden: COST/s SRp50" in status, out
    head, lines = table_lines(out)
    assert "rip_noncanonical" in column(head, lines, "REASON")
    # The room COST/s and SRp50 freed goes to the names first.
    assert "rip_noncanonica" in column(head, lines, "COMM")


def test_longest_reason_fits_its_column():
    assert tc.REASON_WIDTH == max(len(r) for r in REASONS)
    cols = tc.columns("process", "SR", True, True, [])
    assert next(c for c in cols if c.name == "reason").width >= \
        tc.REASON_WIDTH


def test_names_cut_only_when_essentials_cannot_fit():
    rows = tr.build_rows(wide_snap(), ts.ViewState(view="syscall"))
    cols = tc.columns("syscall", "SR", True, True, rows)
    need = sum(c.width for c in cols if c.prio >= tc.ESSENTIAL)
    need += sum(1 for c in cols if c.prio >= tc.ESSENTIAL) - 1
    fitted, hidden = tc.fit_columns(tc.columns("syscall", "SR", True, True,
                                               rows), need)
    assert hidden == ["COST/s", "SRp50", "IRp50", "SRp99", "IRp99"]
    assert next(c for c in fitted if c.name == "name").width == 28
    fitted, _ = tc.fit_columns(tc.columns("syscall", "SR", True, True,
                                          rows), need - 5)
    assert next(c for c in fitted if c.name == "name").width == 23
    assert [c.name for c in fitted][-1] == "reason"
    assert next(c for c in fitted if c.name == "reason").width == 16


def test_status_line_pairs_percentiles_when_short_of_room():
    st = ts.ViewState(view="syscall")
    s = tv.status_line(st, 300, 9000, ["COST/s", "SRp50", "IRp50", "SRp99",
                                       "IRp99"], 80)
    assert len(s) <= 80
    assert s.startswith("[4 syscall]") and s.endswith(
        "hidden: COST/s SR/IRp50 SR/IRp99")
    wide = tv.status_line(st, 3, 9, ["COST/s"], 200)
    assert wide.startswith("1 process") and wide.endswith("hidden: COST/s")


def test_help_fits_80x24():
    st = ts.ViewState(help=True)
    lines = tv.render(snap(), st, 80, 24)
    shown = " ".join(tv.line_text(l).strip() for l in lines)
    for key, what in tv.HELP:
        assert key in shown and " ".join(what.split()) in " ".join(
            shown.split()), what
    assert " ".join(tv.HELP_COLUMNS.split()) in " ".join(shown.split())
    assert "Any key closes this help." in shown


def test_one_host_is_singular():
    a = snap()
    st = ts.ViewState(view="host", views=ts.VIEWS + ("host",))
    out = text(a, st, hosts={"h1": a})
    assert "1 host " in out.split("\n")[0]
    first = top_batch.text_frame(a, st, hosts={"h1": a}).split("\n")[0]
    assert "1 host " in first and "1 hosts" not in first


def sel_of(lines):
    """The first cell of the highlighted row, or None."""
    for l in lines:
        if any(style == "sel" for _, style in l):
            return tv.line_text(l).split()[0]
    return None


def churn(keys, cumulative):
    """An interval holding only `keys`, in that order by IRET/s."""
    s = snap()
    s.processes = {}
    for i, pid in enumerate(keys):
        row = cumulative.processes[(pid, pid)]
        s.processes[(pid, pid)] = Row((pid, pid), dict(row.fields),
                                      counts(10, signal=100 * (9 - i)))
    return s


def test_selection_stays_on_its_pid_while_rows_churn():
    cum = snap()
    cum.processes = {(p, p): Row((p, p), {"pid": p, "comm": "p%d" % p},
                                 counts(10, signal=1))
                     for p in (11, 22, 33, 44, 55)}
    st = ts.ViewState()
    first = churn([11, 22, 33, 44], cum)
    tv.render(first, st, 80, 24, cumulative=cum)
    for _ in range(2):
        ts.handle_key(st, "down", tr.build_rows(first, st))
    assert sel_of(tv.render(first, st, 80, 24, cumulative=cum)) == "33"
    # Reordered: the highlight follows 33 to its new place.
    assert sel_of(tv.render(churn([44, 33, 11], cum), st, 80, 24,
                            cumulative=cum)) == "33"
    # 33 idle this interval: nothing highlighted rather than another pid.
    frame = tv.render(churn([55, 22, 11, 44], cum), st, 80, 24,
                      cumulative=cum)
    assert sel_of(frame) is None and st.sel_key == (33, 33)
    # ...and highlighted again when it is back, wherever it lands.
    assert sel_of(tv.render(churn([55, 11, 22, 44, 33], cum), st, 80, 24,
                            cumulative=cum)) == "33"
    # Enter on a remembered idle row opens that row, not a neighbour.
    tv.render(churn([22, 11], cum), st, 80, 24, cumulative=cum)
    ts.handle_key(st, "enter", tr.build_rows(churn([22, 11], cum), st))
    out = tv.screen_text(tv.render(churn([22, 11], cum), st, 80, 24,
                                   cumulative=cum))
    assert "process 33 p33" in out
    ts.handle_key(st, "esc", [])
    # Gone for good (out of the cumulative table too): the selection
    # moves to the row now at its place.
    del cum.processes[(33, 33)]
    frame = tv.render(churn([55, 22, 11], cum), st, 80, 24, cumulative=cum)
    assert sel_of(frame) in ("55", "22", "11")
    assert st.sel_key != (33, 33)


def test_selection_survives_an_empty_interval():
    cum = snap()
    st = ts.ViewState()
    tv.render(cum, st, 80, 24, cumulative=cum)
    ts.handle_key(st, "down", tr.build_rows(cum, st))
    key = st.sel_key
    empty = snap()
    empty.processes = {}
    tv.render(empty, st, 80, 24, cumulative=cum)
    assert st.sel_key == key
    assert sel_of(tv.render(cum, st, 80, 24, cumulative=cum)) == str(key[0])


def test_evicted_rows_are_not_lost_entries():
    s = snap()
    s.meta["lost"] = {"storage": 0, "unattributed_threads": 9,
                      "evicted_processes": 3, "evicted_threads": 4}
    assert tv.lost_count(s.meta) == 0 and tv.evicted_count(s.meta) == 7
    lines = tv.render(s, ts.ViewState(), 80, 24)
    tool = lines[3]
    assert "lost 0  evicted 7" in tv.line_text(tool)
    assert {st for _, st in tool} <= {"dim", None}
    first = top_batch.summary_line(s, ts.ViewState())
    assert first.endswith("  evicted 7") and "lost" not in first
    s.meta["lost"]["storage"] = 2
    lines = tv.render(s, ts.ViewState(), 80, 24)
    assert "lost 2  evicted 7" in tv.line_text(lines[3])
    assert lines[3][0][1] == "warn"
    assert top_batch.summary_line(s, ts.ViewState()).endswith(
        "  lost 2  evicted 7")
    s.meta["lost"] = {"storage": 0, "evicted_threads": 0}
    out = tv.line_text(tv.render(s, ts.ViewState(), 80, 24)[3])
    assert "lost 0" in out and "evicted" not in out
    assert "evicted" not in top_batch.summary_line(s, ts.ViewState())
