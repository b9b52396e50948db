"""The choice of which syscalls have their duration sampled
(source/sampling.py), on syscall rows built by hand."""

import pytest

from sysretstat.kernel import abi
from sysretstat.model.snapshot import Counts, Hist, Row
from sysretstat.source.sampling import MIN_SAMPLES, Sampler, shift_of


def rows(**calls):
    """{(abi, nr): Row} with cumulative counts: name=(returns, irets,
    timed)."""
    out = {}
    for name, (n, irets, timed) in calls.items():
        key = {"getpid": ("x64", 39), "tgkill": ("x64", 234),
               "rt_sigreturn": ("x64", 15), "read": ("x64", 0)}[name]
        c = [0] * abi.NR_OUTCOMES
        c[abi.O_SYSRET] = n - irets
        c[abi.OUTCOMES.index("signal")] = irets
        out[key] = Row(key, {"abi": key[0], "nr": key[1], "name": name},
                       Counts(c, [Hist({10: timed}, 0), Hist()]))
    return out


def slot(name):
    return abi.syscall_to_slot(*{"getpid": ("x64", 39),
                                 "tgkill": ("x64", 234),
                                 "rt_sigreturn": ("x64", 15),
                                 "read": ("x64", 0)}[name])


@pytest.mark.parametrize("bad", [0, 3, -4, 1 << 17, True, 2.0])
def test_rates_are_powers_of_two(bad):
    with pytest.raises(ValueError):
        shift_of(bad)


def test_hot_sysret_only_syscalls_are_sampled_the_rest_timed():
    s = Sampler(64)
    hot = MIN_SAMPLES * 64
    shifts = s.update(rows(getpid=(hot, 0, hot), tgkill=(hot, hot, hot),
                           read=(hot // 2, 0, hot // 2)), 1.0)
    assert shifts[slot("getpid")] == 6
    assert shifts[slot("tgkill")] == 0          # takes IRET
    assert shifts[slot("read")] == 0            # not hot enough
    assert s.meta()["latency_sampled"] == []    # not yet sampled
    # Sampled at 1 in 64 from here: untimed returns are sampling's.
    shifts = s.update(rows(getpid=(2 * hot, 0, hot + hot // 64),
                           tgkill=(2 * hot, 2 * hot, 2 * hot),
                           read=(hot, 0, hot)), 1.0)
    assert shifts is None
    assert s.meta() == {"latency_sample": 64,
                        "latency_sampled": ["x64:getpid"],
                        "untimed_sampled": hot - hot // 64}


def test_hysteresis_and_windows():
    s = Sampler(64)
    hot = MIN_SAMPLES * 64
    assert s.update(rows(getpid=(hot, 0, hot)), 1.0)[slot("getpid")] == 6
    # Below the line but above half of it: stays sampled.
    assert s.update(rows(getpid=(hot + hot * 2 // 3, 0, hot)), 1.0) is None
    # Snapshots faster than the window: no decision until 0.5 s.
    assert s.update(rows(getpid=(hot + hot * 2 // 3 + 1, 0, hot)),
                    0.2) is None
    assert s.update(rows(getpid=(hot + hot * 2 // 3 + 2, 0, hot)),
                    0.2) is None
    shifts = s.update(rows(getpid=(hot + hot * 2 // 3 + 3, 0, hot)), 0.2)
    assert shifts[slot("getpid")] == 0


def test_entry_only_syscalls_are_never_sampled():
    # Even sampling every syscall (the tests' mode): rt_sigreturn's
    # number is gone at its exit.
    s = Sampler(2, every_syscall=True)
    init = s.initial()
    assert init[slot("getpid")] == 1
    for key in abi.NEED_ENTRY:
        assert init[abi.syscall_to_slot(*key)] == 0
    hot = MIN_SAMPLES * 64
    s = Sampler(64)
    shifts = s.update(rows(rt_sigreturn=(hot, 0, hot),
                           getpid=(hot, 0, hot)), 1.0)
    assert shifts[slot("rt_sigreturn")] == 0 and shifts[slot("getpid")]


def test_rate_one_never_samples():
    s = Sampler(1)
    hot = MIN_SAMPLES * 1024
    assert s.update(rows(getpid=(hot, 0, hot)), 1.0) is None
    assert not any(s.initial())


def test_the_report_says_what_was_sampled():
    from sysretstat.model.snapshot import Snapshot
    from sysretstat.render import text
    c = [0] * abi.NR_OUTCOMES
    c[abi.O_SYSRET] = 6400
    totals = Counts(c, [Hist({10: 100}, 1000), Hist()])
    snap = Snapshot({"latency_sample": 64,
                     "latency_sampled": ["x64:getpid", "x64:\x1b[2J"],
                     "untimed_sampled": 6300}, totals)
    out = text.latency_text(snap)
    assert "sampled: durations of 1 in 64 calls of x64:getpid, " \
        "x64:\\e[2J (hot, almost never IRET; every call of the rest " \
        "timed)" in out
    assert "untimed: 6300 of 6400 returns: 6300 not sampled (1 in 64 " \
        "calls of hot syscalls timed)" in out
    doc = snap.to_report()
    assert doc["meta"]["untimed_why"] == {"fork_child": 0, "sampled": 6300,
                                          "no_sys_enter": 0}
    # Every call timed: neither line.
    snap = Snapshot({"latency_sample": 1, "latency_sampled": [],
                     "untimed_sampled": 0}, Counts(c, [Hist({10: 6400}, 1),
                                                      Hist()]))
    out = text.latency_text(snap)
    assert "sampled:" not in out and "untimed:" not in out


def test_prometheus_says_what_was_sampled():
    from sysretstat.model.snapshot import Snapshot
    from sysretstat.render import prometheus
    c = [0] * abi.NR_OUTCOMES
    c[abi.O_SYSRET] = 6400
    snap = Snapshot({"latency_sample": 64, "latency_sampled": ["x64:getpid"],
                     "untimed_sampled": 6300},
                    Counts(c, [Hist({10: 100}, 1000), Hist()]))
    lines = prometheus.render(snap).splitlines()
    assert "sysretstat_latency_sample 64" in lines
    assert 'sysretstat_latency_sampled{syscall="x64:getpid"} 1' in lines


def test_top_says_what_was_sampled():
    from sysretstat.model.snapshot import Snapshot
    from sysretstat.top import state as top_state, view
    c = [0] * abi.NR_OUTCOMES
    c[abi.O_SYSRET] = 6400
    meta = {"latency_sample": 64, "latency_sampled": ["x64:getpid",
                                                       "x64:read"],
            "duration_s": 1.0, "interval_s": 1.0, "lost": {}}
    delta = Snapshot(meta, Counts(c, [Hist({10: 100}, 1000), Hist()]))
    lines = view.header(delta, top_state.ViewState(), 80)
    text = "\n".join("".join(s for s, _ in line) for line in lines)
    assert "latency 1/64 of getpid +1" in text, text
