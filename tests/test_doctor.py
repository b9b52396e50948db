"""`sysretstat doctor`: one line per check, the missing capability by
name, and the advisory checks (cgroup v2, calibration, matplotlib, other
syscall tracers)."""

import json
import re

import pytest

from sysretstat.commands import doctor
from sysretstat.kernel import progs


def test_root_without_cap_bpf_names_the_missing_capability():
    c = doctor.privileges_check(caps={"CAP_PERFMON"}, uid=0)
    assert doctor.mark(c) == "FAIL"
    assert c["detail"].startswith("uid 0: missing CAP_BPF (effective: "
                                  "CAP_PERFMON);")
    c = doctor.privileges_check(caps=set(), uid=0)
    assert "missing CAP_BPF and CAP_PERFMON (effective: none)" in c["detail"]
    assert "root" not in c["detail"]


@pytest.mark.parametrize("caps", [{"CAP_SYS_ADMIN"},
                                  {"CAP_BPF", "CAP_PERFMON"}])
def test_enough_capabilities(caps):
    c = doctor.privileges_check(caps=caps, uid=1000)
    assert doctor.mark(c) == "ok" and c["detail"].startswith("uid 1000, ")


def test_marks():
    assert doctor.mark(doctor._check("x", True, "")) == "ok"
    assert doctor.mark(doctor._check("x", True, "", warn=True)) == "WARN"
    assert doctor.mark(doctor._check("x", False, "", required=False)) \
        == "WARN"
    assert doctor.mark(doctor._check("x", False, "")) == "FAIL"


def test_calibration_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SYSRETSTAT_CALIBRATION", str(tmp_path / "c.json"))
    c = doctor.calibration_check()
    assert doctor.mark(c) == "WARN" and c["ok"]
    assert str(tmp_path / "c.json") in c["detail"]
    assert "sysretstat bench" in c["detail"]


def test_cgroup_and_matplotlib_are_advice(monkeypatch):
    monkeypatch.setattr(doctor.tracer, "cgroup2_mount", lambda: None)
    c = doctor.cgroup_check()
    assert (c["ok"], doctor.mark(c)) == (True, "WARN")
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda n: None)
    c = doctor.matplotlib_check()
    assert (c["ok"], doctor.mark(c)) == (True, "WARN")
    assert "--plot" in c["detail"]


def test_other_tracers_line(monkeypatch):
    monkeypatch.setattr(progs, "syscall_tracers",
                        lambda: [(7, 42, "sys_enter"), (8, 43, "sys_exit")])
    c = doctor.tracers_check()
    assert doctor.mark(c) == "WARN"
    assert "sys_enter (prog 42), sys_exit (prog 43)" in c["detail"]
    monkeypatch.setattr(progs, "syscall_tracers", lambda: [])
    assert doctor.mark(doctor.tracers_check()) == "ok"


def test_syscall_tracepoint_names():
    for n in ("sys_enter", "sys_exit", "sys_enter_read", "sys_exit_openat"):
        assert progs.is_syscall_tracepoint(n)
    for n in (None, "", "sched_switch", "sys_enterx"):
        assert not progs.is_syscall_tracepoint(n)


@pytest.mark.bpf
def test_a_tracer_on_sys_enter_and_sys_exit_is_seen():
    from sysretstat.kernel import tracer
    before = {link for link, _, _ in progs.syscall_tracers()}
    t = tracer.Tracer(tracer.Options())
    try:
        t.open()
        t.attach()
        mine = [(tp) for link, _, tp in progs.syscall_tracers()
                if link not in before]
    finally:
        t.close()
    assert sorted(mine) == ["sys_enter", "sys_exit"]
    after = {link for link, _, _ in progs.syscall_tracers()}
    assert after <= before


@pytest.mark.bpf
def test_doctor_text_is_one_line_per_check(run_cli):
    r = run_cli("doctor")
    j = json.loads(run_cli("doctor", "--json").stdout)
    lines = [x for x in r.stdout.split("\n\n")[1].splitlines()]
    assert len(lines) == len(j["checks"])
    for line, c in zip(lines, j["checks"]):
        assert re.match(r"(ok  |WARN|FAIL)  ", line), line
        assert line[6:].startswith(c["check"])
    names = {c["check"] for c in j["checks"]}
    assert {"cgroup v2", "calibration", "matplotlib",
            "other syscall tracers"} <= names
