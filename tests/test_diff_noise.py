"""`sysretstat diff` and the limits of what it measures: sample counts
beside latency changes, changes within the histogram's bucket error or
on too few samples flagged as noise, runs of different lengths compared
per second and per 1,000 returns, and the change in time lost to IRET
from each machine's calibration (hermetic: SYSRETSTAT_CALIBRATION)."""

import json
import os

import pytest

from conftest import ROOT
from sysretstat.kernel import abi
from sysretstat.model import diff
from sysretstat.model.snapshot import Counts, Hist, Row, Snapshot
from test_recordfile import META, write_recording

SIGNAL = abi.OUTCOMES.index("signal")
RESTART = abi.OUTCOMES.index("restart")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "records")


def counts(n_fast, fast_ns, signal=0, restart=0, iret_ns=900):
    c = Counts()
    c.n[abi.O_SYSRET] = n_fast
    c.n[SIGNAL] = signal
    c.n[RESTART] = restart
    c.lat = [Hist.from_values([fast_ns] * n_fast),
             Hist.from_values([iret_ns] * (signal + restart))]
    return c


def interval(procs, dur=1.0):
    """One interval: procs is {comm: Counts}; syscalls getppid (the fast
    path) and tgkill (the IRET returns)."""
    s = Snapshot({"duration_s": dur, "lost": {"storage": 0}},
                 Counts.zero())
    sc = {110: Counts.zero(), 234: Counts.zero()}
    for pid, (comm, c) in enumerate(sorted(procs.items()), 100):
        s.processes[(pid, pid)] = Row((pid, pid), {"pid": pid,
                                                   "comm": comm}, c)
        s.threads[(pid, pid)] = Row((pid, pid), {"pid": pid, "tid": pid,
                                                 "comm": comm}, c.copy())
        s.totals.add(c)
        fast = Counts.zero()
        fast.n[abi.O_SYSRET] = c.sysret
        fast.lat = [c.lat[0].copy(), Hist()]
        sc[110].add(fast)
        rest = Counts(list(c.n))
        rest.n[abi.O_SYSRET] = 0
        rest.lat = [Hist(), c.lat[1].copy()]
        sc[234].add(rest)
    for nr, c in sc.items():
        if not c.is_zero():
            s.syscalls[("x64", nr)] = Row(("x64", nr), {
                "nr": nr, "abi": "x64",
                "name": {110: "getppid", 234: "tgkill"}[nr]}, c)
    s.cpus[0] = Row(0, {"cpu": 0}, s.totals.copy())
    return s


def recording(path, *intervals, meta=None):
    write_recording(str(path), list(intervals), meta=meta)
    return str(path)


def diff_json(run_cli, b, a, env=None):
    r = run_cli("diff", b, a, "--json", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def column(text, title, head):
    """The cells under `head` in the table after the line `title`."""
    lines = text[text.index(title):].splitlines()
    heads = lines[1]
    col = heads.index(head)
    out = []
    for line in lines[3:]:
        if not line.strip():
            break
        out.append(line[col:].split("  ")[0].strip())
    return out


# --------------------------------------------------------------------------
# Noise


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """Same length (1 s).  alpha: 1000 samples, 300 -> 320 ns (inside the
    bucket error).  beta: 20 samples, 300 -> 600 ns (too few).  gamma:
    1000 samples, 300 -> 600 ns (a measured change)."""
    d = tmp_path_factory.mktemp("noise")
    b = recording(d / "b.data", interval({
        "alpha": counts(1000, 300), "beta": counts(20, 300),
        "gamma": counts(1000, 300)}))
    a = recording(d / "a.data", interval({
        "alpha": counts(1000, 320), "beta": counts(20, 600),
        "gamma": counts(1000, 600)}))
    return b, a


def test_sample_counts_and_noise_json(noisy, run_cli):
    doc = diff_json(run_cli, *noisy)
    assert doc["schema"] == "sysretstat-diff/1"
    assert doc["noise_rule"] == {"bucket_error": 0.125, "min_samples": 100,
                                 "min_tail_samples": 10}
    p = {r["comm"]: r for r in doc["processes"]}
    for comm, n in (("alpha", 1000), ("beta", 20), ("gamma", 1000)):
        lat = p[comm]["delta"]["latency_ns"]["sysret"]
        assert lat["samples"] == {"before": n, "after": n}
        assert p[comm]["before"]["latency_ns"]["sysret"]["count"] == n
    alpha = p["alpha"]["delta"]["latency_ns"]["sysret"]
    assert 0 < alpha["rel"]["p50"] <= 0.125
    assert alpha["noise"]["p50"] is True
    beta = p["beta"]["delta"]["latency_ns"]["sysret"]
    assert beta["rel"]["p50"] > 0.8 and beta["noise"]["p50"] is True
    gamma = p["gamma"]["delta"]["latency_ns"]["sysret"]
    assert gamma["rel"]["p50"] > 0.8
    # 1,000 samples: 10 beyond the p99, too few beyond the p99.9.
    assert gamma["noise"] == {"p50": False, "p90": False, "p99": False,
                              "p999": True}
    assert gamma["p50_rel"] == gamma["rel"]["p50"]
    # No change to judge on an empty path.
    assert p["gamma"]["delta"]["latency_ns"]["iret"]["noise"] == {
        k: None for k in gamma["noise"]}
    # The measured change ranks before the noise ones (same counts).
    assert [r["comm"] for r in doc["processes"]] == ["gamma", "alpha",
                                                    "beta"]
    assert p["beta"]["impact"] == [0, 0, 0]
    assert doc["normalisation"]["applied"] is False
    assert doc["normalisation"]["order"] == "raw"


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_sample_counts_and_noise_text(noisy, run_cli, fmt):
    r = run_cli("diff", *noisy, "--format", fmt)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "counts: raw (the runs last 1.0s and 1.0s)" in out
    title = "By process name (top 3 of 3, largest change first)"
    if fmt == "text":
        comms = column(out, title, "comm")
        n = dict(zip(comms, column(out, title, "sysret n")))
        p50 = dict(zip(comms, column(out, title, "sysret p50")))
    else:
        lines = out[out.index(title):].splitlines()[2:]
        heads = [c.strip() for c in lines[0].strip("|").split("|")]
        rows = [[c.strip() for c in line.strip("|").split("|")]
                for line in lines[2:5]]
        n = {row[0]: row[heads.index("sysret n")] for row in rows}
        p50 = {row[0]: row[heads.index("sysret p50")] for row in rows}
    assert n == {"alpha": "1000->1000", "beta": "20->20",
                 "gamma": "1000->1000"}
    assert p50["alpha"].endswith("%)~")
    assert p50["beta"].endswith("%)~")
    assert p50["gamma"].endswith("%)") and "~" not in p50["gamma"]
    assert ("~: noise, not a measured change: within 12.5%" in
            " ".join(out.split()))
    assert "under 100 samples" in out


def test_is_noise_bounds():
    assert diff.is_noise(0.125, 1000, 1000, .5) is True
    assert diff.is_noise(-0.125, 1000, 1000, .5) is True
    assert diff.is_noise(0.126, 1000, 1000, .5) is False
    assert diff.is_noise(1.0, 99, 1000, .5) is True
    assert diff.is_noise(1.0, 100, 100, .5) is False
    assert diff.is_noise(1.0, 999, 5000, .99) is True
    assert diff.is_noise(None, 1000, 1000, .5) is None


# --------------------------------------------------------------------------
# Runs of different lengths


@pytest.fixture(scope="module")
def lengths(tmp_path_factory):
    """Before 1 s, after 2 s (two intervals of 1 s).  alpha keeps its rate
    (1000 returns and 10 signals a second); beta goes from 100 to 300
    returns a second."""
    d = tmp_path_factory.mktemp("lengths")
    b = recording(d / "b.data", interval({
        "alpha": counts(1000, 300, signal=10), "beta": counts(100, 300)}))
    one = {"alpha": counts(1000, 300, signal=10), "beta": counts(300, 300)}
    a = recording(d / "a.data", interval(one), interval(one))
    return b, a


def test_per_second_same_rate_is_no_change(lengths, run_cli):
    doc = diff_json(run_cli, *lengths)
    n = doc["normalisation"]
    assert n["applied"] is True and n["order"] == "per_s"
    assert n["duration_s"] == {"before": 1.0, "after": 2.0}
    assert n["returns"] == {"before": 1110, "after": 2620}
    p = {r["comm"]: r for r in doc["processes"]}
    alpha = p["alpha"]
    # Raw: twice as many; per second: the same.
    assert alpha["delta"]["returns"] == 1010
    assert alpha["per_s"] == {
        "before": {"returns": 1010.0, "iret": 10.0},
        "after": {"returns": 1010.0, "iret": 10.0},
        "delta": {"returns": 0.0, "iret": 0.0}}
    assert p["beta"]["per_s"]["delta"] == {"returns": 200.0, "iret": 0.0}
    assert p["beta"]["per_1k_returns"]["before"]["returns"] == \
        pytest.approx(1000 * 100 / 1110, abs=1e-6)
    assert p["beta"]["per_1k_returns"]["after"]["returns"] == \
        pytest.approx(1000 * 600 / 2620, abs=1e-6)
    # Raw alpha changed most (+1010 vs +500); per second beta did.
    assert [r["comm"] for r in doc["processes"]] == ["beta", "alpha"]
    sig = {r["reason"]: r for r in doc["reasons"]}["signal"]
    assert (sig["before"], sig["after"], sig["delta"]) == (10, 20, 10)
    assert (sig["per_s_before"], sig["per_s_after"], sig["per_s_delta"]) \
        == (10.0, 10.0, 0.0)
    assert sig["impact"] == [0.0]
    t = doc["totals"]["per_s"]
    assert t["delta"] == {"returns": 200.0, "iret": 0.0}


def test_per_second_text(lengths, run_cli):
    out = run_cli("diff", *lengths).stdout
    assert ("counts: raw, per second and per 1,000 returns (the runs last "
            "1.0s and 2.0s); largest change per second first") in out
    title = "By process name (top 2 of 2, largest change per second first)"
    assert column(out, title, "comm") == ["beta", "alpha"]
    assert column(out, title, "returns") == ["100->600", "1010->2020"]
    assert column(out, title, "returns/s") == ["100->300", "1010->1010"]
    line = [x for x in out.splitlines()
            if x.startswith("IRET per second")][0]
    assert line.split()[3:] == ["10", "10", "0"]


def test_same_length_is_raw():
    b = Snapshot({"duration_s": 10.0}, counts(10, 300))
    a = Snapshot({"duration_s": 10.05}, counts(20, 300))
    assert diff.normalisation(b, a)["applied"] is False
    a.meta["duration_s"] = 10.2
    assert diff.normalisation(b, a)["applied"] is True
    # Unknown durations: raw, and nothing per second.
    a.meta["duration_s"] = None
    doc = diff.compare(b, a)
    assert doc["normalisation"]["applied"] is False
    assert "per_s" not in doc["totals"]
    assert "per_1k_returns" in doc["totals"]


# --------------------------------------------------------------------------
# Time lost


def calibration_file(path, cpu="cpu", kernel="6.0-test"):
    path.write_text(json.dumps({
        "schema": "sysretstat-calibration/1",
        "machines": {"%s|%s" % (cpu, kernel): {
            "cpu_model": cpu, "kernel": kernel, "mean_penalty_ns": 40.0,
            "reasons": {"signal": 50.0}}}}))
    return str(path)


def test_time_lost_change(run_cli, tmp_path):
    b = recording(tmp_path / "b.data", interval({
        "alpha": counts(1000, 300, signal=10, restart=4)}))
    a = recording(tmp_path / "a.data", interval({
        "alpha": counts(1000, 300, signal=30, restart=1)}))
    env = {"SYSRETSTAT_CALIBRATION": calibration_file(tmp_path / "c.json")}
    doc = diff_json(run_cli, b, a, env=env)
    tl = doc["time_lost"]
    assert tl["before"] == pytest.approx(10 * 50e-9 + 4 * 40e-9)
    assert tl["after"] == pytest.approx(30 * 50e-9 + 1 * 40e-9)
    # The calibration times each reason's change.
    assert tl["delta"] == pytest.approx(20 * 50e-9 - 3 * 40e-9)
    assert tl["calibration"]["before"]["cpu_model"] == "cpu"
    assert tl["calibration"]["after"]["mean_penalty_ns"] == 40.0
    r = {x["reason"]: x for x in doc["reasons"]}
    assert r["signal"]["time_lost_delta_s"] == pytest.approx(20 * 50e-9)
    assert r["restart"]["time_lost_delta_s"] == pytest.approx(-3 * 40e-9)
    assert doc["processes"][0]["time_lost_s"]["delta"] == \
        pytest.approx(tl["delta"])
    out = run_cli("diff", b, a, env=env).stdout
    line = [x for x in out.splitlines()
            if x.startswith("time lost to IRET")][0]
    assert line.split()[4:] == ["660ns", "1.54us", "+880ns"]
    assert "40 ns per IRET return (cpu, 6.0-test)" in out
    # Another machine's calibration is not used.
    env = {"SYSRETSTAT_CALIBRATION": calibration_file(
        tmp_path / "o.json", cpu="other")}
    doc = diff_json(run_cli, b, a, env=env)
    assert "time_lost" not in doc
    assert "time_lost_s" not in doc["totals"]
    assert "time lost" not in run_cli("diff", b, a, env=env).stdout


def test_time_lost_kept_recordings(run_cli):
    env = {"SYSRETSTAT_CALIBRATION": os.path.join(FIXTURES,
                                                  "calibration.json")}
    b, a = (os.path.join(FIXTURES, f) for f in ("cmd.data", "sys.data"))
    doc = diff_json(run_cli, b, a, env=env)
    with open(env["SYSRETSTAT_CALIBRATION"]) as f:
        entry = json.load(f)["machines"]["AMD EPYC|6.18.44-fc-v1252"]
    want = sum(r["delta"] * entry["reasons"].get(
        r["reason"], entry["mean_penalty_ns"]) for r in doc["reasons"])
    assert doc["time_lost"]["delta"] == pytest.approx(want * 1e-9, abs=1e-9)
    assert doc["normalisation"]["applied"] is True


def test_text_fits_and_escapes_calibration(run_cli, tmp_path):
    evil = "cpu\x1b]0;PWN\x07"
    meta = dict(META, cpu_model=evil)
    b = recording(tmp_path / "b.data", interval({
        "alpha": counts(1000, 300, signal=10)}), meta=meta)
    one = interval({"alpha": counts(1000, 300, signal=10),
                    "a\x1b[2J": counts(5, 300)})
    a = recording(tmp_path / "a.data", one, one, meta=meta)
    env = {"SYSRETSTAT_CALIBRATION": calibration_file(tmp_path / "c.json",
                                                      cpu=evil)}
    full = run_cli("diff", b, a, env=env).stdout
    assert "\x1b" not in full and "cpu\\e]0;PWN\\x07" in full
    assert "a\\e[2J" in full and "time lost per second" in full
    for cols in (80, 60):
        out = run_cli("diff", b, a, env=dict(env, COLUMNS=str(cols))).stdout
        assert max(len(x) for x in out.splitlines()) <= cols, out
        assert "\x1b" not in out
