"""Calibration file: what bench stores and what top/report/daemon load."""

import json
import os
import stat

import pytest

from sysretstat.penalty import calibration
from sysretstat.kernel import hostinfo
from sysretstat.penalty.calibration import Calibration
from sysretstat.render import units


def result(ns=80.0, reasons=None, fred=False, kernel=None, cpu=None):
    return {
        "meta": {"cpu_model": cpu or hostinfo.cpu_model(),
                 "kernel": kernel or hostinfo.kernel_release(),
                 "started_at": "2024-01-01T00:00:00+0000",
                 "iterations": 1000, "fred": fred, "xen_pv": False},
        "iret_penalty_ns": {"ns": ns, "ci95_ns": [ns - 5, ns + 5],
                            "reasons": reasons if reasons is not None
                            else {"rcx_ne_rip": 90.0, "rflags_rf": 70.0}},
        "getpid_ns": 300.0, "warnings": [],
    }


@pytest.fixture
def calfile(tmp_path, monkeypatch):
    path = tmp_path / "state" / "calibration.json"
    monkeypatch.setenv(calibration.ENV, str(path))
    return path


def test_save_then_load_this_machine(calfile):
    assert calibration.load() is None
    assert calibration.save(result()) == str(calfile)
    cal = calibration.load()
    assert cal.mean_penalty_ns == 80.0
    assert cal.penalty_ns("rcx_ne_rip") == 90.0
    # Not measured on its own: the pooled value.
    assert cal.penalty_ns("signal") == 80.0
    assert cal.penalty_ns("fork_child") == 80.0
    # Not an IRET reason.
    assert cal.penalty_ns("sysret") is None
    assert cal.penalty_ns("") is None
    assert cal.time_lost_ns({"rcx_ne_rip": 10, "signal": 5}) == 1300.0
    assert cal.time_lost_s({"rflags_rf": 1000000}) == pytest.approx(0.07)
    mode = stat.S_IMODE(os.stat(calfile).st_mode)
    assert mode == 0o644


def test_other_kernel_is_not_used(calfile):
    calibration.save(result(kernel="1.2.3-other"))
    assert calibration.load() is None
    assert calibration.load(kernel="1.2.3-other").mean_penalty_ns == 80.0


def test_save_keeps_other_machines(calfile):
    calibration.save(result(ns=50, cpu="Other CPU"))
    calibration.save(result(ns=60))
    calibration.save(result(ns=70))
    doc = json.loads(calfile.read_text())
    assert doc["schema"] == calibration.SCHEMA
    assert len(doc["machines"]) == 2
    assert calibration.load().mean_penalty_ns == 70
    assert calibration.load(cpu_model="Other CPU").mean_penalty_ns == 50


def test_nothing_saved_on_fred(calfile):
    assert calibration.save(result(fred=True)) is None
    assert not calfile.exists()


@pytest.mark.parametrize("content", ["{not json", '{"schema": "x"}', "[]"])
def test_unreadable_file_is_ignored(calfile, content):
    calfile.parent.mkdir(parents=True)
    calfile.write_text(content)
    assert calibration.load() is None
    # And bench replaces it rather than failing.
    calibration.save(result())
    assert calibration.load().mean_penalty_ns == 80.0


def test_save_error_is_one_clean_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(calibration.CalibrationError, match="cannot save"):
        calibration.save(result(), str(blocker / "sub" / "cal.json"))


def test_paths_root_and_user(monkeypatch, tmp_path):
    monkeypatch.delenv(calibration.ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert calibration.save_path() == calibration.SYSTEM_PATH
    assert calibration.search_path() == [calibration.SYSTEM_PATH]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    user = str(tmp_path / "sysretstat" / "calibration.json")
    assert calibration.save_path() == user
    assert calibration.search_path() == [user, calibration.SYSTEM_PATH]


def test_calibration_object_round_trip():
    c = Calibration({"cpu_model": "c", "kernel": "k", "mean_penalty_ns": 1,
                     "reasons": {"ss_not_user": 2}})
    assert c.to_json()["reasons"] == {"ss_not_user": 2.0}
    assert c.penalty_ns("ss_not_user") == 2.0
    assert c.penalty_ns("rseq") == 1.0


def test_bench_stores_what_load_returns(run_cli, calfile):
    p = run_cli("bench", "--json", "-n", "500",
                env={calibration.ENV: str(calfile)})
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    cal = calibration.load()
    assert cal is not None
    assert cal.mean_penalty_ns == pytest.approx(doc["iret_penalty_ns"]["ns"],
                                                abs=0.01)
    for reason, ns in doc["iret_penalty_ns"]["reasons"].items():
        assert cal.penalty_ns(reason) == pytest.approx(ns, abs=0.01)


@pytest.mark.parametrize("s,text", [(2.5, "2.5s"), (0.00456, "4.56ms"),
                                    (12.3e-6, "12.3us"), (8.5e-7, "850ns"),
                                    (0, "0ns")])
def test_fmt_time(s, text):
    assert units.fmt_time(s) == text


def test_describe_names_the_source():
    c = Calibration({"cpu_model": "c", "kernel": "k", "mean_penalty_ns": 84.4,
                     "measured_at": "2024-05-01T10:00:00+0000"})
    assert c.describe() == "84 ns per IRET return (sysretstat bench, " \
        "2024-05-01)"


# The one loader top, report and the daemon use -----------------------
def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == calibration.__name__ and r.levelname == "WARNING"]


def _entry(**kw):
    e = {"cpu_model": hostinfo.cpu_model(),
         "kernel": hostinfo.kernel_release(), "mean_penalty_ns": 75.0,
         "reasons": {"rcx_ne_rip": 90.0}}
    e.update(kw)
    return e


def _write(path, machines, schema=calibration.SCHEMA):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": schema, "machines": machines}))


def test_load_missing_file_is_none_and_quiet(calfile, caplog):
    assert calibration.load() is None
    assert _warnings(caplog) == []


@pytest.mark.parametrize("content,why", [
    ("{not json", "Expecting property name"),
    (b"\xff\xfe{}", "codec can't decode"),
    ("[" * 100000 + "]" * 100000, "recursion"),
    ('{"schema": "sysretstat-calibration/0", "machines": {}}',
     "not sysretstat-calibration/1"),
    ('{"schema": "sysretstat-calibration/1", "machines": []}',
     "not sysretstat-calibration/1"),
])
def test_load_bad_file_is_none_and_one_warning(calfile, caplog, content,
                                               why):
    calfile.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        calfile.write_bytes(content)
    else:
        calfile.write_text(content)
    assert calibration.load() is None
    assert calibration.load() is None       # asked again: no new line
    w = _warnings(caplog)
    assert len(w) == 1, w
    assert w[0].startswith("ignoring calibration file %s: " % calfile)
    assert why in w[0]


def test_load_unreadable_path_is_none_and_a_warning(calfile, caplog):
    calfile.mkdir(parents=True)              # a directory
    assert calibration.load() is None
    assert len(_warnings(caplog)) == 1


@pytest.mark.parametrize("entry", [
    "80", [80], {}, _entry(mean_penalty_ns="x"),
    _entry(mean_penalty_ns=None), _entry(reasons=[1, 2]),
    _entry(reasons={"signal": "slow"}),
])
def test_load_bad_entry_is_none_and_one_warning(calfile, caplog, entry):
    _write(calfile, {calibration.machine_key(): entry})
    assert calibration.load() is None
    assert calibration.load() is None
    w = _warnings(caplog)
    assert len(w) == 1, w
    assert w[0].startswith("ignoring calibration entry in %s: " % calfile)


def test_load_good_entry_is_its_penalty(calfile, caplog):
    _write(calfile, {calibration.machine_key(): _entry(),
                     "Other CPU|1.0": "junk for another machine"})
    cal = calibration.load()
    assert cal.mean_penalty_ns == 75.0
    assert cal.penalty_ns("rcx_ne_rip") == 90.0
    assert cal.penalty_ns("signal") == 75.0
    assert cal.path == str(calfile)
    assert _warnings(caplog) == []


def test_a_bad_user_file_falls_back_to_the_system_one(monkeypatch,
                                                      tmp_path, caplog):
    user, system = tmp_path / "user.json", tmp_path / "system.json"
    user.write_text("{not json")
    _write(system, {calibration.machine_key(): _entry()})
    monkeypatch.setattr(calibration, "search_path",
                        lambda: [str(user), str(system)])
    assert calibration.load().mean_penalty_ns == 75.0
    assert len(_warnings(caplog)) == 1


def test_top_uses_the_loader(calfile):
    from sysretstat.commands import top
    _write(calfile, {calibration.machine_key(): _entry()})
    assert top.load_calibration().mean_penalty_ns == 75.0
    calfile.write_text("{not json")
    assert top.load_calibration() is None
