"""The Prometheus rendering of a Snapshot (no kernel needed)."""

import os
import random
import re
import shutil
import subprocess

import pytest

from sysretstat.kernel import abi
from sysretstat.render import prometheus
from sysretstat.model.snapshot import Counts, Hist, Row, Snapshot

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1),
                                                      m.group(1)), v)


def parse_metrics(text):
    """{family: {"type": t, "samples": [(name, {labels}, value)]}}.

    Strict: every sample must follow a TYPE line of its family, and
    every line must be a comment or a well-formed sample.
    """
    fams, current = {}, None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, mtype = line.split(" ", 3)
            assert name not in fams, "family %s twice" % name
            fams[name] = {"type": mtype, "samples": []}
            current = name
            continue
        m = SAMPLE.match(line)
        assert m, "malformed line %r" % line
        name, labels = m.group(1), dict(
            (k, unescape(v)) for k, v in LABEL.findall(m.group(3) or ""))
        assert current and (name == current or (
            fams[current]["type"] == "histogram" and
            name in (current + "_bucket", current + "_sum",
                     current + "_count"))), "%s outside its family" % name
        fams[current]["samples"].append((name, labels, float(m.group(4))))
    return fams


def value(fams, name, **labels):
    fam = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[:-len(suffix)] in fams:
            fam = name[:-len(suffix)]
    for n, ls, v in fams[fam]["samples"]:
        if n == name and all(ls.get(k) == v2 for k, v2 in labels.items()):
            return v
    raise KeyError((name, labels))


def counts(sysret=0, lat=None, **reasons):
    c = Counts.zero(lat is not None)
    c.n[abi.O_SYSRET] = sysret
    for r, v in reasons.items():
        c.n[abi.OUTCOMES.index(r)] = v
    if lat is not None:
        c.lat = lat
    return c


def snapshot(procs=(), fred=False, latency=True, lost=None, totals=None):
    """procs: [(pid, comm, Counts)]; totals default to their sum."""
    s = Snapshot({"version": "9.9", "kernel": "6.99-test",
                  "hostname": "h", "started_at": "2025-01-01T00:00:00+00:00",
                  "duration_s": 10.0, "guard": {"fred": fred},
                  "lost": dict(lost or {}), "bpf": {"run_time_ns": 0,
                                                    "run_count": 0,
                                                    "stats": False}},
                 Counts.zero(latency))
    for pid, comm, c in procs:
        s.processes[(pid, 0)] = Row((pid, 0), {"pid": pid, "comm": comm}, c)
        if totals is None:
            s.totals.add(c)
    if totals is not None:
        s.totals = totals
    return s


def test_returns_by_path_and_reason_and_latency_histogram():
    rng = random.Random(7)
    fast = [rng.randint(40, 50_000) for _ in range(3000)]
    slow = [rng.randint(300, 5_000_000) for _ in range(700)]
    c = counts(sysret=3000, signal=500, rcx_ne_rip=200,
               lat=[Hist.from_values(fast), Hist.from_values(slow)])
    fams = parse_metrics(prometheus.render(snapshot([(1, "a", c)])))
    assert fams["sysretstat_returns_total"]["type"] == "counter"
    assert value(fams, "sysretstat_returns_total", path="sysret",
                 reason="") == 3000
    assert value(fams, "sysretstat_returns_total", path="iret",
                 reason="signal") == 500
    assert value(fams, "sysretstat_returns_total", path="iret",
                 reason="rcx_ne_rip") == 200
    # Every reason is always there (a series that appears late loses its
    # first increase in rate()); no eretu on a non-FRED host.
    reasons = {ls["reason"] for n, ls, v in
               fams["sysretstat_returns_total"]["samples"]
               if ls["path"] == "iret"}
    assert reasons == set(abi.REASONS)
    assert not any(ls["path"] == "eretu" for _, ls, _ in
                   fams["sysretstat_returns_total"]["samples"])

    h = fams["sysretstat_syscall_duration_seconds"]
    assert h["type"] == "histogram"
    for path, vals in (("sysret", fast), ("iret", slow)):
        buckets = [(float(ls["le"]), v) for n, ls, v in h["samples"]
                   if n.endswith("_bucket") and ls["path"] == path]
        assert buckets[-1] == (float("inf"), len(vals))
        assert [b[1] for b in buckets] == sorted(b[1] for b in buckets)
        # Bounds are exact kernel bucket edges: counts are exact, a value
        # of exactly `le` ns falls in the next bucket.
        for le, cnt in buckets[:-1]:
            le_ns = round(le * 1e9)
            assert cnt == sum(1 for v in vals if v < le_ns), le_ns
        assert value(fams, "sysretstat_syscall_duration_seconds_count",
                     path=path) == len(vals)
        assert value(fams, "sysretstat_syscall_duration_seconds_sum",
                     path=path) == pytest.approx(sum(vals) / 1e9)


def test_fred_host_reports_eretu_and_no_latency_means_no_histogram():
    c = counts(lat=None)
    c.n[abi.O_ERETU] = 42
    fams = parse_metrics(prometheus.render(
        snapshot([(1, "a", c)], fred=True, latency=False)))
    assert value(fams, "sysretstat_returns_total", path="eretu",
                 reason="") == 42
    assert not any(ls["path"] == "sysret" for _, ls, _ in
                   fams["sysretstat_returns_total"]["samples"])
    assert "sysretstat_syscall_duration_seconds" not in fams
    assert value(fams, "sysretstat_comm_returns_total", comm="a",
                 path="eretu") == 42


def test_labels_are_escaped():
    nasty = 'we"ird\\na\nme'
    fams = parse_metrics(prometheus.render(
        snapshot([(1, nasty, counts(sysret=5, signal=1))])))
    assert value(fams, "sysretstat_comm_returns_total", comm=nasty,
                 path="sysret") == 5


def test_lost_counters_build_info_and_bpf_cost():
    s = snapshot([(1, "a", counts(sysret=1))],
                 lost={"exited_procs": 3, "evicted_threads": 9,
                       "unattributed_threads": 4})
    s.meta["bpf"] = {"run_time_ns": 2_500_000_000, "run_count": 77,
                     "stats": True}
    fams = parse_metrics(prometheus.render(s))
    assert value(fams, "sysretstat_lost_total", what="exited_procs") == 3
    assert value(fams, "sysretstat_lost_total", what="evicted_threads") == 9
    # A difference of two reads is not a counter.
    with pytest.raises(KeyError):
        value(fams, "sysretstat_lost_total", what="unattributed_threads")
    assert value(fams, "sysretstat_unattributed_returns",
                 table="threads") == 4
    assert value(fams, "sysretstat_build_info", version="9.9",
                 kernel="6.99-test") == 1
    assert value(fams, "sysretstat_bpf_run_time_seconds_total") == 2.5
    assert value(fams, "sysretstat_bpf_runs_total") == 77
    s.meta["bpf"]["stats"] = False
    fams = parse_metrics(prometheus.render(s))
    assert "sysretstat_bpf_run_time_seconds_total" not in fams
    assert value(fams, "sysretstat_bpf_stats_enabled") == 0


def test_penalty_gauges_from_a_calibration():
    class Cal:
        mean_penalty_ns = 150.0

        def penalty_ns(self, reason):
            if reason == "rseq":
                raise RuntimeError("not measured")
            return {"signal": 120.0, "rcx_ne_rip": 180.0}.get(reason)

    fams = parse_metrics(prometheus.render(snapshot(), penalty=Cal()))
    assert value(fams, "sysretstat_iret_penalty_seconds",
                 reason="signal") == pytest.approx(120e-9)
    assert len(fams["sysretstat_iret_penalty_seconds"]["samples"]) == 2
    assert "sysretstat_iret_penalty_seconds" not in parse_metrics(
        prometheus.render(snapshot(), penalty=None))


def test_process_metrics_of_this_process():
    fams = parse_metrics("\n".join(prometheus.process_lines()) + "\n")
    rss = value(fams, "process_resident_memory_bytes")
    with open("/proc/self/status") as f:
        status = f.read()
    vmrss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
    assert 0.5 * vmrss < rss < 2 * vmrss


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian package prometheus) missing")
def test_promtool_accepts_the_exposition():
    c = counts(sysret=10, signal=2, lat=[Hist.from_values([100, 2000]),
                                         Hist.from_values([5000])])
    text = prometheus.render(snapshot([(1, "a b", c)]),
                             extra=prometheus.process_lines())
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# Per-command counters ----------------------------------------------------
def _interval(rows, unattributed=0):
    """An interval delta: rows [(pid, comm, sysret, iret)]."""
    procs = [(pid, comm, counts(sysret=s, signal=i)) for pid, comm, s, i
             in rows]
    snap = snapshot(procs)
    snap.totals.n[abi.O_SYSRET] += unattributed
    return snap


def test_comm_counters_bounded_monotonic_and_conserving():
    rng = random.Random(11)
    cc = prometheus.CommCounters(top=5, candidates=40)
    seen, total, demoted = {}, [0, 0], False
    for step in range(400):
        # A few steady names and a stream of one-off names (short-lived
        # processes with random comms), plus evicted returns.
        rows = [(k + 1, "steady%d" % (k,), rng.randint(1, 50),
                 rng.randint(0, 5)) for k in range(3)]
        rows += [(100 + k, "oneoff-%d-%d" % (step, k), rng.randint(1, 30),
                  rng.randint(0, 3)) for k in range(20)]
        if step == 200:
            rows.append((9, "burst", 100000, 5000))
        ev = rng.randint(0, 10)
        d = _interval(rows, unattributed=ev)
        total[0] += d.totals.sysret
        total[1] += d.totals.iret
        before = set(cc.exported)
        cc.update(d)
        demoted |= bool(before - set(cc.exported))
        series = cc.series()
        assert len(series) <= 6
        assert len(cc.score) <= 40 + 5
        for comm, v in series:
            old = seen.get(comm)
            if old is not None and comm in before | {"other"}:
                assert v[0] >= old[0] and v[1] >= old[1], (step, comm)
            seen[comm] = v
        if not demoted:
            assert [sum(v[0] for _, v in series),
                    sum(v[1] for _, v in series)] == total
    # The steady names earned their own series; the one-offs did not.
    assert {"steady0", "steady1", "steady2"} <= set(cc.exported)
    assert not any(c.startswith("oneoff") for c in cc.exported)


def test_comm_counters_new_heavy_hitter_replaces_the_weakest():
    cc = prometheus.CommCounters(top=2)
    for _ in range(5):
        cc.update(_interval([(1, "a", 100, 0), (2, "b", 10, 0)]))
    assert set(cc.exported) == {"a", "b"}
    for _ in range(5):
        cc.update(_interval([(1, "a", 100, 0), (2, "b", 10, 0),
                             (3, "c", 1000, 10)]))
    assert set(cc.exported) == {"a", "c"}
    c = dict(cc.series())["c"]
    # Exported after its third interval, starting from zero: the
    # intervals that earned it the series counted in "other".
    assert c == [2000, 20, 0]


def test_comm_series_of_a_lone_snapshot_sum_to_totals():
    s = snapshot([(i, "c%d" % (i % 7), counts(sysret=i, signal=i % 3))
                  for i in range(1, 60)])
    s.totals.n[abi.O_SYSRET] += 17     # evicted, in no row
    series = prometheus.field_series_from_snapshot(s, "comm", top=3)
    assert len(series) == 4 and series[-1][0] == "other"
    assert sum(v[0] for _, v in series) == s.totals.sysret
    assert sum(v[1] for _, v in series) == s.totals.iret


def test_process_metrics_match_psutil_and_kernel():
    import psutil
    fams = parse_metrics("\n".join(prometheus.process_lines()) + "\n")
    me = psutil.Process()
    assert abs(value(fams, "process_start_time_seconds") -
               me.create_time()) < 1
    assert value(fams, "process_open_fds") == pytest.approx(
        len(os.listdir("/proc/self/fd")), abs=2)
    cpu = sum(os.times()[:2])
    assert 0 < value(fams, "process_cpu_seconds_total") <= cpu + 0.1


def test_process_metrics_of_a_gone_process_are_empty():
    assert prometheus.process_lines(2 ** 22 + 7) == []


def _scrapes_never_go_down(cc, steps, rng, names):
    """Feed `steps` intervals where names enter and leave the top-N;
    every exported series, at every scrape, is >= its last exported
    value (also after an absence), and none reappears from 0."""
    last = {}
    for step in range(steps):
        # Each step a random few names are busy, so the top-N churns.
        busy = rng.sample(names, 3)
        rows = [(k + 1, n, rng.randint(500, 5000) if n in busy else
                 rng.randint(0, 3), rng.randint(0, 9))
                for k, n in enumerate(names)]
        cc.update(_interval(rows, unattributed=rng.randint(0, 5)))
        text = prometheus.render(
            snapshot([(1, "x", counts(sysret=1))]), comms=cc)
        for line in text.splitlines():
            if not line.startswith("sysretstat_comm_returns_total{"):
                continue
            key, v = line.rsplit(" ", 1)
            v = float(v)
            if key in last:
                assert v >= last[key], (step, key, last[key], v)
            last[key] = v
    return last


def test_comm_series_never_go_down_while_names_churn():
    """Issue 12: series dropped to 0 or came back at 0 when a command
    left and re-entered the top-N (232 of ~650 scrapes)."""
    rng = random.Random(5)
    names = ["n%d" % i for i in range(12)]
    cc = prometheus.CommCounters(top=3)
    last = _scrapes_never_go_down(cc, 1000, rng, names)
    # The top-N did churn, and names came back.
    assert len({k for k in last if 'comm="other"' not in k}) > 3 * 2
    assert cc.retired


def test_comm_series_freeze_rather_than_forget():
    rng = random.Random(9)
    names = ["m%d" % i for i in range(10)]
    cc = prometheus.CommCounters(top=2, retired_max=3)
    _scrapes_never_go_down(cc, 400, rng, names)
    assert len(cc.retired) <= 3


def test_floats_print_shortest_without_binary_noise():
    from sysretstat.render.prometheus import fmt_value
    assert fmt_value(2.279e-08) == "2.279e-08"
    assert fmt_value(2279 * 1e-11) == "2.279e-08"   # 2.2789999999999998e-08
    assert fmt_value(0.1 + 0.2) == "0.3"
    assert fmt_value(1.0) == "1.0" and fmt_value(7) == "7"
    assert fmt_value(123456789.123456789) == "123456789.123"
    assert fmt_value(float("nan")) == "NaN"
