"""`sysretstat top -b` and `--json`: content and the spec's invariants."""

import json
import os
import signal
import subprocess

import pytest

from sysretstat.top import state as ts
from sysretstat.top import batch as top_batch
from sysretstat.model.snapshot import SCHEMA, Snapshot, check_invariants

from test_top_view import Penalty, snap


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    """run_cli's top sees no saved calibration outside tmp_path."""
    monkeypatch.setenv("SYSRETSTAT_CALIBRATION", str(tmp_path / "none.json"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_text_frame_summary_and_table():
    out = top_batch.text_frame(snap(), ts.ViewState())
    first, titles, *rows = out.rstrip("\n").split("\n")
    assert "box1" in first and "returns 775/s" in first
    assert "reasons: signal 93.3%, rcx_ne_rip 6.7%" in first
    assert titles.split()[:6] == ["PID", "COMM", "RET/s", "IRET/s", "IRET%",
                                  "REASON"]
    assert rows[0].split()[:6] == ["100", "alpha", "500", "200", "40.0%",
                                   "signal"]
    assert len(rows) == 3


def test_text_frame_top_and_cost():
    out = top_batch.text_frame(snap(), ts.ViewState(), Penalty(), top=1)
    assert "COST/s" in out and "(2 more rows)" in out
    assert "IRET cost ~" in out


def test_json_lines_are_report_documents():
    out = top_batch.json_lines(snap())
    assert out.count("\n") == 1
    doc = json.loads(out)
    assert doc["schema"] == SCHEMA
    assert doc["totals"]["paths"]["iret"] == 450
    s = Snapshot.from_report(doc)
    assert check_invariants(s) == []
    hosts = {"b": snap(), "a": snap()}
    lines = top_batch.json_lines(None, hosts=hosts).splitlines()
    assert len(lines) == 2


def _cli_error(run_cli, *args):
    r = run_cli("top", *args)
    assert r.returncode == 2, r
    assert r.stderr.startswith("sysretstat: error: ")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    return r.stderr


def test_usage_errors(run_cli):
    assert "interval" in _cli_error(run_cli, "-b", "-i", "0")
    assert "--connect" in _cli_error(run_cli, "--per-host")
    assert "--per-host" in _cli_error(run_cli, "--by", "host")
    _cli_error(run_cli, "--sort", "nope")


def test_connect_to_nothing_is_one_error_line(run_cli):
    r = run_cli("top", "-b", "-n", "1", "--connect", "127.0.0.1:1")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "sysretstat: error: cannot reach sysretstat daemon at "
        "http://127.0.0.1:1: connection refused"]


def test_help_mentions_cost_of_bpf_stats(run_cli):
    r = run_cli("top", "--help")
    assert r.returncode == 0
    assert "--no-bpf-stats" in r.stdout and "clock reads" in r.stdout


@pytest.fixture
def signal_workload(workloads):
    p = subprocess.Popen([os.path.join(workloads, "retpaths"), "signal",
                          "100000000"], stdout=subprocess.DEVNULL)
    yield p
    p.send_signal(signal.SIGKILL)
    p.wait()


@pytest.mark.bpf
def test_batch_lists_the_workload_with_its_reason(run_cli, signal_workload):
    r = run_cli("top", "-b", "-n", "2", "-i", "0.5", "--top", "5")
    assert r.returncode == 0, r.stderr
    frames = r.stdout.strip().split("\n\n")
    assert len(frames) == 2
    for f in frames:
        rows = [l.split() for l in f.split("\n")[2:]]
        mine = [row for row in rows if row and row[0] ==
                str(signal_workload.pid)]
        assert mine, f
        assert mine[0][1] == "retpaths" and mine[0][5] == "signal"
        # tgkill then rt_sigreturn: half of its returns are IRET.
        assert 45 <= float(mine[0][4].rstrip("%")) <= 55


@pytest.mark.bpf
def test_json_intervals_with_pid_filter(run_cli, signal_workload):
    pid = signal_workload.pid
    r = run_cli("top", "--json", "-n", "3", "-i", "0.4", "-p", pid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        doc = json.loads(line)
        assert doc["schema"] == SCHEMA
        s = Snapshot.from_report(doc)
        assert check_invariants(s) == []
        assert 0.3 < doc["meta"]["interval_s"] < 1.0
        assert doc["meta"]["filters"]["pids"] == [pid]
        assert [p["pid"] for p in doc["processes"]] == [pid]
        t = doc["totals"]
        assert t["returns"] == sum(t["paths"].values())
        assert t["paths"]["iret"] == sum(t["reasons"].values())
        # An interval, not the cumulative count: the signal loop runs
        # far more than 10k times a second, and not for hours.
        assert t["reasons"]["signal"] > 1000
        assert t["reasons"]["signal"] < 10_000_000
        tg = [c for c in doc["syscalls"] if c["name"] == "tgkill"][0]
        # Every tgkill here is an IRET for `signal`; a return being
        # corrected (signal_deliver after sys_exit) as the interval ends
        # may show as SYSRET in that interval only.
        assert list(tg["reasons"]) == ["signal"]
        assert tg["reasons"]["signal"] >= tg["returns"] - 2
        lat = t["latency_ns"]["iret"]
        assert lat["count"] > 0 and lat["p50"] <= lat["p99"]
        assert doc["meta"]["bpf"]["stats"] is True


def test_text_frame_by_comm():
    from test_top_view import comm_snap
    out = top_batch.text_frame(comm_snap(), ts.ViewState(view="comm"))
    first, titles, *rows = out.rstrip("\n").split("\n")
    assert "returns 925/s" in first
    assert titles.split()[:6] == ["COMM", "PROCS", "RET/s", "IRET/s",
                                  "IRET%", "REASON"]
    assert [r.split()[:6] for r in rows] == [
        ["alpha", "3", "650", "300", "46.2%", "signal"],
        ["gamma", "1", "25", "25", "100%", "rcx_ne_rip"],
        ["beta", "1", "250", "0", "0%", "-"]]
    # At 60 columns, the percentiles go and the names stay whole.
    narrow = top_batch.text_frame(comm_snap(), ts.ViewState(view="comm"),
                                  width=60)
    assert all(len(l) <= 60 for l in narrow.split("\n"))
    assert "alpha" in narrow and "rcx_ne_rip" in narrow


def test_by_comm_is_a_choice(run_cli):
    r = run_cli("top", "--help")
    assert "process|comm|thread|syscall|cpu|host" in r.stdout.replace(
        "\n", "").replace(" ", "")
    assert "comm" in _cli_error(run_cli, "--by", "nope")
