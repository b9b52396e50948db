"""`sysretstat report`: every view in every format, from a synthetic
recording (exact expectations) and from a real one (BPF)."""

import csv
import io
import json
import os
import random

import pytest

from sysretstat.kernel import abi
from sysretstat.render.hist import power_rows, render_hist
from sysretstat.render.units import fmt_ns
from sysretstat.render.text import NO_CGROUPS, VIEWS
from sysretstat.model.fields import PERCENTILES, REPORT_VIEWS
from sysretstat.model.snapshot import SCHEMA, TABLES, Counts, Hist, Snapshot
from test_recordfile import make_delta, synth, write_recording

FORMATS = ("text", "json", "csv", "markdown")


@pytest.fixture(scope="module")
def rec_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("rep") / "r.data"
    _, expect = synth(p, n=12)
    return str(p), expect


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("by", (None,) + VIEWS)
def test_every_view_and_format(rec_file, run_cli, fmt, by):
    path, expect = rec_file
    args = ["report", path, "--format", fmt] + (["--by", by] if by else [])
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    # The synthetic recording's processes have no cgroup: documents stay
    # documents, and a note on stderr says why the table is empty.
    assert r.stderr == ("sysretstat: note: %s: %s\n" % (path, NO_CGROUPS)
                        if by == "cgroup" and fmt in ("json", "csv")
                        else "")
    out = r.stdout
    t = expect.totals
    if fmt == "json":
        doc = json.loads(out)
        assert doc["schema"] == SCHEMA
        assert doc["totals"]["returns"] == t.returns
        assert doc["totals"]["reasons"] == t.reasons()
        kept = [tb for tb in TABLES if doc[tb]]
        if by in ("process", "thread", "syscall", "cpu"):
            assert kept == [{"process": "processes", "thread": "threads",
                             "syscall": "syscalls", "cpu": "cpus"}[by]]
        elif by is None:
            assert kept == list(TABLES)
        elif by == "comm":
            assert kept == [] and sum(c["processes"] for c in doc["comms"]) \
                == len(expect.processes)
        elif by == "cgroup":
            assert kept == [] and doc["cgroups"] == []
        else:
            assert kept == []
        assert len(doc["series"]) == 12
        assert sum(p["returns"] for p in doc["series"]) == t.returns
        return
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        view = by or "process"
        if view == "reason":
            assert {r["reason"]: int(r["returns"]) for r in rows} == \
                t.reasons()
            assert all(r["typical_cause"] for r in rows)
        elif view == "latency":
            for path_name, h in (("sysret", t.lat[0]), ("iret", t.lat[1])):
                mine = [r for r in rows if r["path"] == path_name]
                assert sum(int(r["count"]) for r in mine) == h.count
        elif view == "interval":
            assert len(rows) == 12
            assert sum(int(r["returns"]) for r in rows) == t.returns
            assert sum(int(r["signal"]) for r in rows) == \
                t.reason("signal")
        elif view == "cgroup":
            assert rows == [] and out.startswith("cgroup,procs,returns,")
        else:
            table = REPORT_VIEWS[view]
            assert len(rows) == len(expect.table(table))
            # Each table sums to the totals, outcome by outcome.
            for col in ("returns", "sysret", "iret", "signal", "restart"):
                assert sum(int(r[col]) for r in rows) == (
                    t.returns if col == "returns" else
                    t.sysret if col == "sysret" else t.iret
                    if col == "iret" else t.reason(col))
        return
    # text and markdown
    assert "returns %d  sysret %d  iret %d" % (t.returns, t.sysret,
                                               t.iret) in out
    sections = {"reason": "IRET reasons", "latency": "Syscall duration "
                "(sys_enter to sys_exit)", "interval": "Over time",
                "process": "By process", "comm": "By command",
                "thread": "By thread", "syscall": "By syscall",
                "cpu": "By CPU"}
    # No "By cgroup" for a recording without cgroups: a note instead,
    # where it was asked for.
    assert "By cgroup" not in out
    assert (NO_CGROUPS in out) == (by == "cgroup")
    want = [sections[by]] if by in sections else \
        [] if by else list(sections.values())
    for v, title in sections.items():
        assert (title in out) == (title in want), (v, title)
    if fmt == "markdown":
        assert out.startswith("# sysretstat report\n")
        for title in want:
            assert "\n## " + title in out
    if by in (None, "reason"):
        assert "a signal handler frame was built" in out
    if by in (None, "latency"):
        for name, q in (("p50", .5), ("p99.9", .999)):
            assert "%s %s" % (name, fmt_ns(t.lat[0].percentile(q))) in out


def test_json_round_trips_and_matches_schema_code(rec_file, run_cli):
    path, expect = rec_file
    r = run_cli("report", path, "--json")
    doc = json.loads(r.stdout)
    back = Snapshot.from_report(doc)
    # Process and thread keys hold start times, which the schema has
    # not: match rows by their fields instead.
    assert back.totals == expect.totals
    for t in TABLES:
        def rows(s):
            return sorted((sorted(r.fields.items()), r.counts)
                          for r in s.table(t).values())
        got, want = rows(back), rows(expect)
        assert [f for f, _ in got] == [f for f, _ in want]
        assert [c for _, c in got] == [c for _, c in want]


def test_counts_json_statistics_match_the_histogram():
    # to_json computes every percentile in one walk of the sorted
    # buckets; Hist.percentile, min and max are the reference.
    rng = random.Random(5)
    for _ in range(200):
        c = Counts([rng.choice([0, 0, rng.randint(1, 10 ** 6)])
                    for _ in range(abi.NR_OUTCOMES)])
        c.lat = [Hist.from_values(rng.lognormvariate(6, 2)
                                  for _ in range(rng.randint(0, 50))),
                 Hist()]
        d = c.to_json("eretu")
        assert d["returns"] == c.returns and d["paths"]["iret"] == c.iret
        assert d["reasons"] == c.reasons()
        for h, doc in zip(c.lat, (d["latency_ns"]["eretu"],
                                  d["latency_ns"]["iret"])):
            assert doc["count"] == h.count and doc["sum"] == h.sum_ns
            assert (doc["min"], doc["max"]) == (h.min, h.max)
            for p in PERCENTILES:
                assert doc[p.key] == h.percentile(p.q)


def test_top_sort_and_conflicts(rec_file, run_cli):
    path, expect = rec_file
    r = run_cli("report", path, "--by", "syscall", "--top", "1",
                "--sort", "iret", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [x["syscall"] for x in rows] == ["tgkill"]
    r = run_cli("report", path, "--json", "--format", "csv")
    assert r.returncode == 2
    assert r.stderr.startswith("sysretstat: error: --json conflicts")
    r = run_cli("report", path, "--by", "nonsense")
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("fmt", ("json", "csv"))
def test_words_and_ids_sort_a_to_z_like_top(rec_file, run_cli, fmt):
    path, _ = rec_file
    for key, col, table in (("name", "comm", "processes"),
                            ("id", "pid", "processes"),
                            ("name", "name", "syscalls"),
                            ("id", "tid", "threads")):
        by = table[:-1] if table != "processes" else "process"
        r = run_cli("report", path, "--by", by, "--sort", key,
                    "--format", fmt)
        assert r.returncode == 0, r.stderr
        if fmt == "json":
            rows = json.loads(r.stdout)[table]
        else:
            rows = list(csv.DictReader(io.StringIO(r.stdout)))
            col = {"name": "syscall"}.get(col, col)
        conv = int if col in ("pid", "tid") else str
        got = [conv(x[col]) for x in rows]
        assert len(got) > 1 and got == sorted(got)


def test_reason_sort_puts_rows_without_iret_last(rec_file, run_cli):
    path, _ = rec_file
    r = run_cli("report", path, "--by", "syscall", "--sort", "reason",
                "--json")
    rows = json.loads(r.stdout)["syscalls"]
    tops = [max(x["reasons"], key=x["reasons"].get) if x["reasons"]
            else "~" for x in rows]
    assert tops[0] != "~"


@pytest.mark.parametrize("by,sort", [("thread", "p99"), ("threads", "p50"),
                                     ("thread", "iret_p99"),
                                     ("reason", "iret"),
                                     ("latency", "returns")])
def test_a_sort_the_view_cannot_have_is_an_error(rec_file, run_cli, by,
                                                  sort):
    path, _ = rec_file
    r = run_cli("report", path, "--by", by, "--sort", sort)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("sysretstat: error: --sort %s: " % sort)
    assert r.stderr.count("\n") == 1


def test_thread_view_keeps_its_figure_sorts(rec_file, run_cli):
    path, _ = rec_file
    for key in ("returns", "iret", "iret_share", "name", "id"):
        r = run_cli("report", path, "--by", "thread", "--sort", key)
        assert r.returncode == 0, r.stderr
    # The default sort is no choice of the user's, in every view.
    r = run_cli("report", path, "--by", "reason")
    assert r.returncode == 0, r.stderr


def test_histogram_bars():
    h = Hist.from_values([300] * 90 + [5000] * 9 + [2 ** 20])
    text = render_hist("sysret", h)
    lines = text.splitlines()
    assert lines[0].startswith("sysret: 100 samples")
    assert "p50 " in lines[0] and "p99.9 " in lines[0]
    rows = power_rows(h)
    assert sum(c for _, _, c in rows) == 100
    assert rows[0][:2] == (256, 512) and rows[-1][:2] == (2 ** 20, 2 ** 21)
    # One line per power of two, empty ones included; the biggest bar
    # is the full width.
    assert len(lines) == 1 + len(rows) == 1 + 13
    assert "|" + "@" * 40 + "|" in text
    assert render_hist("iret", Hist()) == "iret: no samples\n"


def test_long_series_is_merged(tmp_path, run_cli):
    p = str(tmp_path / "long.data")
    rng = random.Random(2)
    deltas = [make_delta(rng, procs=(("a", 1),)) for _ in range(100)]
    write_recording(p, deltas, checkpoint_every=25)
    r = run_cli("report", p, "--by", "interval")
    assert r.returncode == 0
    assert "(each row sums 3 intervals)" in r.stdout
    body = r.stdout.split("IRET rate\n", 1)[1].split("\n\n")[0]
    assert len(body.splitlines()[1:]) == 34


@pytest.mark.bpf
def test_real_recording_all_formats(tmp_path, run_cli, workloads):
    """retpaths signal N: N tgkill returns by IRET with reason signal."""
    n = 25
    p = tmp_path / "sig.data"
    r = run_cli("record", "-q", "-o", p, "--", "%s/retpaths" % workloads,
                "signal", n)
    assert r.returncode == 0, r.stderr
    doc = json.loads(run_cli("report", p, "--json").stdout)
    procs = [x for x in doc["processes"] if x["comm"] == "retpaths"]
    assert len(procs) == 1
    assert procs[0]["reasons"]["signal"] == n
    tg = [x for x in doc["syscalls"] if x["name"] == "tgkill"][0]
    assert tg["paths"]["iret"] == n and tg["reasons"] == {"signal": n}
    assert doc["meta"]["recording"]["complete"] is True
    rows = list(csv.DictReader(io.StringIO(run_cli(
        "report", p, "--format", "csv", "--by", "syscall").stdout)))
    tg = [x for x in rows if x["syscall"] == "tgkill"][0]
    assert int(tg["signal"]) == n and float(tg["iret_p50"]) > 0
    text = run_cli("report", p).stdout
    assert "signal" in text and "tgkill" in text
    md = run_cli("report", p, "--format", "markdown", "--by",
                 "reason").stdout
    assert "| signal" in md


def test_time_lost_uses_this_machines_calibration(rec_file, run_cli,
                                                 tmp_path):
    from sysretstat.penalty import calibration
    path, expect = rec_file
    meta = json.loads(run_cli("report", path, "--json").stdout)["meta"]
    env = {calibration.ENV: str(tmp_path / "cal.json")}
    r = run_cli("report", path, env=env)
    assert "run 'sysretstat bench' on this machine" in r.stdout
    # A penalty measured for the recording's CPU model and kernel.
    calibration.save({
        "meta": {"cpu_model": meta["cpu_model"], "kernel": meta["kernel"],
                 "started_at": "2026-01-01T00:00:00+0000",
                 "iterations": 1000, "fred": False, "xen_pv": False},
        "iret_penalty_ns": {"ns": 100.0, "ci95_ns": [90.0, 110.0],
                            "reasons": {}},
        "getpid_ns": 300.0, "warnings": []}, str(tmp_path / "cal.json"))
    r = run_cli("report", path, env=env)
    assert r.returncode == 0, r.stderr
    assert "time lost to IRET: ~" in r.stdout and "est. lost" in r.stdout
    doc = json.loads(run_cli("report", path, "--json", env=env).stdout)
    assert doc["meta"]["iret_penalty"]["mean_penalty_ns"] == 100.0
    assert doc["totals"]["iret_time_lost_s"] == pytest.approx(
        expect.totals.iret * 100e-9)


def test_a_calibrated_report_reads_back():
    # report --json adds the calibration it used to meta (an object);
    # the document must still read as a snapshot (diff, top --connect).
    golden = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "fixtures", "golden", "cmd.json")
    with open(golden) as f:
        doc = json.load(f)
    assert isinstance(doc["meta"]["iret_penalty"], dict)
    snap = Snapshot.from_report(doc)
    assert snap.totals.returns == doc["totals"]["returns"]
    doc["meta"]["iret_penalty"] = "64ns"
    with pytest.raises(ValueError):
        Snapshot.from_report(doc)

