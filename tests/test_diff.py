"""`sysretstat diff`: expected changes between two runs of different
workloads, ordering by impact, and refusal of what cannot be compared."""

import json
import random

import pytest

from test_recordfile import make_delta, write_recording


def record(path, seed, **kw):
    rng = random.Random(seed)
    return write_recording(str(path), [make_delta(rng, **kw)
                                       for _ in range(5)])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("diff")
    # Before: signals (IRET) in both processes, slow fast path.  After:
    # no signals, some restarts, a faster fast path, a new process.
    b = record(d / "before.data", 1, signal=(5, 9), fast_ns=360,
               iret_ns=900)
    a = record(d / "after.data", 2, signal=(0, 0), restart=(1, 2),
               fast_ns=280, iret_ns=900,
               procs=(("alpha", 101), ("beta", 202), ("gamma", 303)))
    return str(d / "before.data"), str(d / "after.data"), b, a


def test_json_shows_expected_changes(pair, run_cli):
    pb, pa, b, a = pair
    r = run_cli("diff", pb, pa, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "sysretstat-diff/1"
    assert doc["before"]["file"] == pb and doc["after"]["file"] == pa
    reasons = {x["reason"]: x for x in doc["reasons"]}
    sig = b.totals.reason("signal")
    assert reasons["signal"]["before"] == sig
    assert reasons["signal"]["after"] == 0
    assert reasons["signal"]["delta"] == -sig
    assert reasons["restart"]["delta"] == a.totals.reason("restart") > 0
    assert reasons["signal"]["share_before"] == pytest.approx(
        sig / b.totals.returns, abs=1e-6)
    # Largest change first.
    impacts = [abs(x["delta"]) for x in doc["reasons"]]
    assert impacts == sorted(impacts, reverse=True)
    t = doc["totals"]
    assert t["delta"]["iret"] == a.totals.iret - b.totals.iret
    assert t["delta"]["iret_share"] == pytest.approx(
        a.totals.iret_share - b.totals.iret_share, abs=1e-6)
    # The fast path got ~80 ns faster (360 -> 280), within the 12.5%
    # bucket precision of each side.
    p50b = t["before"]["latency_ns"]["sysret"]["p50"]
    p50a = t["after"]["latency_ns"]["sysret"]["p50"]
    assert 360 * .875 <= p50b <= 360 * 1.125
    assert 280 * .875 <= p50a <= 280 * 1.125
    assert t["delta"]["latency_ns"]["sysret"]["p50"] == p50a - p50b < 0
    procs = {x["comm"]: x for x in doc["processes"]}
    assert procs["gamma"]["before"]["returns"] == 0
    assert procs["gamma"]["after"]["returns"] == sum(
        r.counts.returns for r in a.processes.values()
        if r.fields["comm"] == "gamma")
    for name in ("alpha", "beta"):
        assert procs[name]["delta"]["iret"] < 0
    keys = [tuple(x["impact"]) for x in doc["processes"]]
    assert keys == sorted(keys, reverse=True)
    sc = {x["name"]: x for x in doc["syscalls"]}
    assert sc["tgkill"]["before"]["iret"] == b.totals.iret
    assert doc["processes_total"] == 3


def test_text(pair, run_cli):
    pb, pa, b, a = pair
    r = run_cli("diff", pb, pa)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("before: %s" % pb)
    sig = b.totals.reason("signal")
    line = [x for x in out.splitlines() if x.startswith("signal ")][0]
    assert line.split()[1:4] == [str(sig), "0", str(-sig)]
    assert "By process name (top 3 of 3, largest change first)" in out
    md = run_cli("diff", pb, pa, "--format", "markdown").stdout
    assert "## IRET reasons" in md and "| signal" in md


def test_same_file_is_all_zero(pair, run_cli):
    pb = pair[0]
    doc = json.loads(run_cli("diff", pb, pb, "--json").stdout)
    assert all(x["delta"] == 0 for x in doc["reasons"])
    assert all(x["delta"]["returns"] == 0 for x in doc["processes"])


def test_report_json_as_input(pair, run_cli, tmp_path):
    pb, pa, b, a = pair
    j = tmp_path / "after.json"
    j.write_text(run_cli("report", pa, "--json").stdout)
    d1 = json.loads(run_cli("diff", pb, pa, "--json").stdout)
    d2 = json.loads(run_cli("diff", pb, j, "--json").stdout)
    assert d1["reasons"] == d2["reasons"]
    assert d1["totals"] == d2["totals"]


def test_refuses_other_schemas(pair, run_cli, tmp_path):
    pb = pair[0]
    other = tmp_path / "v2.json"
    doc = json.loads(run_cli("report", pb, "--json").stdout)
    doc["schema"] = "sysretstat/2"
    other.write_text(json.dumps(doc))
    r = run_cli("diff", pb, other)
    assert r.returncode == 1
    assert r.stderr == ("sysretstat: error: %s: report schema sysretstat/2; "
                        "this sysretstat compares sysretstat/1.x\n" % other)
    # A 1.0 document (before the comms table) compares with today's.
    doc["schema"] = "sysretstat/1"
    del doc["comms"]
    other.write_text(json.dumps(doc))
    r = run_cli("diff", pb, other, "--json")
    assert r.returncode == 0, r.stderr
    old = tmp_path / "v1.data"
    old.write_text('{"format":"sysretstat-record","version":1,'
                   '"schema":"sysretstat/1"}\n{"t":"meta","meta":{}}\n')
    r = run_cli("diff", old, pb)
    assert r.returncode == 1
    assert r.stderr.startswith("sysretstat: error: %s: record format "
                               "version 1;" % old)
    assert r.stderr.count("\n") == 1
    r = run_cli("diff", pb, tmp_path / "missing")
    assert r.returncode == 1 and "no such file" in r.stderr


@pytest.mark.bpf
def test_real_workloads(tmp_path, run_cli, workloads):
    """signal N vs sysret N: N signal IRETs gone, N getppid SYSRETs new."""
    n = 40
    b, a = tmp_path / "b.data", tmp_path / "a.data"
    for path, scenario in ((b, "signal"), (a, "sysret")):
        r = run_cli("record", "-q", "-o", path, "--",
                    "%s/retpaths" % workloads, scenario, n)
        assert r.returncode == 0, r.stderr
    doc = json.loads(run_cli("diff", b, a, "--json").stdout)
    reasons = {x["reason"]: x for x in doc["reasons"]}
    assert reasons["signal"]["delta"] == -n
    assert doc["reasons"][0]["reason"] == "signal"    # biggest change
    sc = {x["name"]: x for x in doc["syscalls"]}
    assert sc["tgkill"]["delta"]["iret"] == -n
    assert sc["rt_sigreturn"]["delta"]["returns"] == -n
    assert sc["getppid"]["delta"]["returns"] == n
    assert sc["getppid"]["after"]["sysret"] == n
    assert doc["syscalls"][0]["name"] == "tgkill"
    assert doc["processes"][0]["comm"] == "retpaths"
    assert doc["processes"][0]["delta"]["iret"] == -n
