"""sysretstat_reason_detail_total and sysretstat_cgroup_returns_total:
exact exposition, bounds, escaping, and (the daemon's State) series that
never go down while cgroups and tracers enter and leave the top-N.
Synthetic snapshots: no kernel needed."""

import json
import random
import shutil
import subprocess

import pytest

from sysretstat.kernel import abi
from sysretstat.render import prometheus
from sysretstat.serve import server as daemon
from sysretstat.model.snapshot import Counts, Row, Snapshot

from test_daemon_limits import scrape_never_lower
from test_prometheus import counts, parse_metrics, snapshot, value

NASTY = 'we"ird\\tr\nacer'


def proc(pid, comm, c, cgroup=None, detail=None):
    """(pid, comm, Counts) for snapshot(), the Counts carrying `detail`
    ({(reason, name): n}) and the row, later, its cgroup."""
    c.detail = dict(detail) if detail else None
    return pid, comm, c, cgroup


def build(rows, totals=None):
    """A Snapshot of rows made by proc(); process fields get the cgroup
    where one is given."""
    s = snapshot([r[:3] for r in rows], totals=totals)
    for pid, _, _, cgroup in rows:
        if cgroup is not None:
            s.processes[(pid, 0)].fields["cgroup"] = cgroup
    return s


def family_lines(text, name):
    """The HELP, TYPE and sample lines of one family."""
    return [line for line in text.splitlines()
            if line.startswith((name + "{", "# HELP %s " % name,
                                "# TYPE %s " % name))]


# One snapshot on its own (report, tests; not the daemon) ----------------
def test_exact_lines_of_a_lone_snapshot():
    rows = [
        proc(1, "sshd", counts(sysret=90, signal=6, restart=2),
             "/system.slice/ssh.service",
             {("signal", "SIGURG"): 5, ("signal", "SIGALRM"): 1,
              ("restart", "ERESTARTSYS"): 2}),
        proc(2, "sshd", counts(sysret=10, fork_child=3),
             "/system.slice/ssh.service",
             {("fork_child", "process"): 1, ("fork_child", "thread"): 2}),
        proc(3, "strace", counts(sysret=40, ptrace=4), "/user.slice",
             {("ptrace", "strace"): 4}),
        proc(4, "init", counts(sysret=7), "/"),
    ]
    text = prometheus.render(build(rows), top_cgroups=2)
    assert family_lines(text, "sysretstat_reason_detail_total")[1:] == [
        '# TYPE sysretstat_reason_detail_total counter',
    ] + ['sysretstat_reason_detail_total{reason="%s",detail="%s"} %d'
         % row for row in [
             ("fork_child", "process", 1), ("fork_child", "thread", 2),
             ("fork_child", "other", 0),
             ("ptrace", "strace", 4), ("ptrace", "other", 0),
             ("restart", "ERESTARTSYS", 2), ("restart", "other", 0),
             ("signal", "SIGALRM", 1), ("signal", "SIGURG", 5),
             ("signal", "other", 0)]]
    # The two busiest cgroups, A to Z; the root's 7 in "other".
    assert family_lines(text, "sysretstat_cgroup_returns_total")[1:] == [
        '# TYPE sysretstat_cgroup_returns_total counter',
        'sysretstat_cgroup_returns_total{cgroup="/system.slice/ssh.service",'
        'path="sysret"} 100',
        'sysretstat_cgroup_returns_total{cgroup="/system.slice/ssh.service",'
        'path="iret"} 11',
        'sysretstat_cgroup_returns_total{cgroup="/user.slice",'
        'path="sysret"} 40',
        'sysretstat_cgroup_returns_total{cgroup="/user.slice",'
        'path="iret"} 4',
        'sysretstat_cgroup_returns_total{cgroup="other",path="sysret"} 7',
        'sysretstat_cgroup_returns_total{cgroup="other",path="iret"} 0',
    ]
    help_line = family_lines(text, "sysretstat_reason_detail_total")[0]
    assert help_line.startswith("# HELP sysretstat_reason_detail_total ")
    # The comm family is as it was.
    fams = parse_metrics(text)
    assert value(fams, "sysretstat_comm_returns_total", comm="sshd",
                 path="sysret") == 100


def test_no_detail_and_no_cgroup_give_only_other():
    """A recording made before detail and cgroups: no detail series, and
    every return in cgroup="other" (the family is always there)."""
    fams = parse_metrics(prometheus.render(
        snapshot([(1, "a", counts(sysret=3, signal=2))])))
    assert fams["sysretstat_reason_detail_total"]["samples"] == []
    assert [(ls["cgroup"], v) for _, ls, v in
            fams["sysretstat_cgroup_returns_total"]["samples"]] == [
        ("other", 3), ("other", 2)]


def test_lone_snapshot_bounds_tracers_and_other_takes_the_gap():
    tracers = {("ptrace", "t%02d" % i): 100 + i for i in range(15)}
    n = sum(tracers.values())
    # 9 ptrace returns the kernel could not name (lost.details).
    c = counts(sysret=1, ptrace=n + 9)
    c.detail = tracers
    s = snapshot([(1, "a", c)])
    fams = parse_metrics(prometheus.render(s, top=10))
    got = {ls["detail"]: v for _, ls, v in
           fams["sysretstat_reason_detail_total"]["samples"]
           if ls["reason"] == "ptrace"}
    assert len(got) == 11
    assert set(got) - {"other"} == {"t%02d" % i for i in range(5, 15)}
    assert got["other"] == sum(100 + i for i in range(5)) + 9
    assert sum(got.values()) == n + 9


def test_signal_names_are_not_cut_at_the_tracer_bound():
    c = counts(signal=64)
    c.detail = {("signal", "SIG%d" % i): 1 for i in range(1, 65)}
    fams = parse_metrics(prometheus.render(snapshot([(1, "a", c)]), top=3))
    got = {ls["detail"]: v for _, ls, v in
           fams["sysretstat_reason_detail_total"]["samples"]}
    assert len(got) == 65 and got["other"] == 0


def test_label_escaping_of_tracer_and_cgroup():
    c = counts(sysret=1, ptrace=3)
    text = prometheus.render(build([proc(1, "a", c, '/x"y\\z\nw',
                                         {("ptrace", NASTY): 3})]))
    assert 'sysretstat_reason_detail_total{reason="ptrace",' \
        'detail="we\\"ird\\\\tr\\nacer"} 3' in text.splitlines()
    assert 'sysretstat_cgroup_returns_total{cgroup="/x\\"y\\\\z\\nw",' \
        'path="sysret"} 1' in text.splitlines()
    fams = parse_metrics(text)
    assert value(fams, "sysretstat_reason_detail_total", reason="ptrace",
                 detail=NASTY) == 3
    assert value(fams, "sysretstat_cgroup_returns_total",
                 cgroup='/x"y\\z\nw', path="iret") == 3


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian package prometheus) missing")
def test_promtool_accepts_the_new_families():
    c = counts(sysret=10, signal=2, ptrace=1)
    text = prometheus.render(build([proc(1, "a", c, "/a b",
                                         {("signal", "SIGURG"): 2,
                                          ("ptrace", NASTY): 1})]))
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# The counters the daemon keeps ----------------------------------------
def test_a_rare_signal_is_exported_at_once():
    dc = prometheus.DetailCounters()
    c = counts(signal=1)
    c.detail = {("signal", "SIGSEGV"): 1}
    dc.update(snapshot([(1, "a", c)]))
    assert dc.series() == [("signal", "SIGSEGV", 1),
                           ("signal", "other", 0)]


def test_a_reason_counts_from_before_its_first_detail():
    dc = prometheus.DetailCounters()
    # ptrace returns with no name yet (detail map full, say).
    dc.update(snapshot([(1, "a", counts(ptrace=5))]))
    assert dc.series() == []
    c = counts(ptrace=2)
    c.detail = {("ptrace", "gdb"): 2}
    dc.update(snapshot([(1, "a", c)]))
    assert dc.series() == [("ptrace", "gdb", 2), ("ptrace", "other", 5)]


def test_top_zero_exports_no_command_or_tracer_name():
    st = daemon.State(top=0, top_cgroups=0)
    c = counts(sysret=4, ptrace=2)
    s = build([proc(1, "strace", c, "/user.slice", {("ptrace", "gdb"): 2})])
    for _ in range(5):
        st.publish(s, s)
    fams = parse_metrics(st.render("metrics")[0].decode())
    for fam, label in (("sysretstat_comm_returns_total", "comm"),
                       ("sysretstat_cgroup_returns_total", "cgroup"),
                       ("sysretstat_reason_detail_total", "detail")):
        assert {ls[label] for _, ls, _ in fams[fam]["samples"]} == \
            {"other"}, fam
    assert value(fams, "sysretstat_reason_detail_total", reason="ptrace",
                 detail="other") == 10


def _conserved(counters, total):
    """Exported, retired and other add up to what was fed."""
    width = len(total)
    acc = [0] * width
    for v in list(counters.exported.values()) + \
            list(counters.retired.values()) + [counters.other]:
        for i in range(width):
            acc[i] += v[i]
    return acc == total


def test_series_never_go_down_while_cgroups_and_tracers_churn():
    """300 publishes in which cgroups and tracers enter and leave the
    top-N, each rendered as a scrape sees it: no *_total sample is ever
    lower than the last one seen of it (also after an absence), "other"
    takes what is not exported, and everything fed is in exported,
    retired or other; the exported series sum to the totals until a
    name is first retired."""
    rng = random.Random(17)
    st = daemon.State(top=2, top_cgroups=2)
    cgroups = ["/system.slice/s%d.service" % i for i in range(7)]
    tracers = ["strace", "gdb", "ltrace", 'r"r', "perf", "rr"]
    cum = Snapshot({"version": "9.9", "kernel": "k", "duration_s": 0.0},
                   Counts.zero(False))
    fed_paths = [0, 0, 0]
    fed_ptrace = 0
    last, retired_seen = {}, {"cgroups": False, "tracers": False}
    for step in range(300):
        busy = set(rng.sample(cgroups, 2))
        busy_tracers = rng.sample(tracers, 2)
        rows = []
        for k, cg in enumerate(cgroups):
            hot = cg in busy
            n = rng.randint(0, 3)
            detail = {}
            if hot:
                detail = {("ptrace", t): rng.randint(50, 500)
                          for t in busy_tracers}
            n += sum(detail.values())
            rows.append(proc(k + 1, "c%d" % k,
                             counts(sysret=rng.randint(200, 900) if hot
                                    else rng.randint(0, 2), ptrace=n),
                             cg, detail))
        # Returns of processes gone before the read, in no row.
        delta = build(rows)
        delta.totals.n[abi.O_SYSRET] += rng.randint(0, 5)
        cum.totals.add(delta.totals)
        fed_paths = [a + b for a, b in zip(
            fed_paths, prometheus._path_counts(delta.totals.n))]
        fed_ptrace += delta.totals.n[abi.OUTCOMES.index("ptrace")]
        st.publish(cum, delta)

        fams = scrape_never_lower(st, last, step)
        cg_series = fams["sysretstat_cgroup_returns_total"]["samples"]
        by_tracer = [(ls["detail"], v) for _, ls, v in
                     fams["sysretstat_reason_detail_total"]["samples"]
                     if ls["reason"] == "ptrace"]
        assert len(cg_series) <= 2 * (2 + 1) and len(by_tracer) <= 2 + 1
        assert _conserved(st.cgroups, fed_paths), step
        assert _conserved(st.details.by_reason["ptrace"], [fed_ptrace])
        retired_seen["cgroups"] |= bool(st.cgroups.retired)
        retired_seen["tracers"] |= bool(st.details.by_reason["ptrace"]
                                        .retired)
        if not retired_seen["cgroups"]:
            for i, p in enumerate(("sysret", "iret")):
                assert sum(v for _, ls, v in cg_series
                           if ls["path"] == p) == fed_paths[i], step
        if not retired_seen["tracers"]:
            assert sum(v for _, v in by_tracer) == value(
                fams, "sysretstat_returns_total", path="iret",
                reason="ptrace")
    # The top-N did churn for both, and names came back.
    assert retired_seen == {"cgroups": True, "tracers": True}
    assert len({k for k in last if k[0] ==
                "sysretstat_cgroup_returns_total"}) > 2 * 2 * 2
    assert len({dict(k[1])["detail"] for k in last if k[0] ==
                "sysretstat_reason_detail_total"}) > 2 + 1


# The daemon's documents --------------------------------------------------
@pytest.mark.parametrize("expose", [False, True])
def test_documents_hold_no_grouped_table(expose):
    """comms and cgroups are sums of the process table: never in
    /api/v1 (unbounded, and they would name what --expose-processes
    hides); a client groups the process rows it is served."""
    st = daemon.State(top=1, expose_processes=expose)
    rows = [proc(i, "c%d" % i, counts(sysret=i, signal=1),
                 "/slice/s%d" % i, {("signal", "SIGURG"): 1})
            for i in range(1, 6)]
    s = build(rows)
    st.publish(s, s)
    for what in ("snapshot", "interval"):
        doc = json.loads(st.render(what)[0])
        assert "cgroups" not in doc and "comms" not in doc
        assert doc["totals"]["reason_detail"] == {"signal": {"SIGURG": 5}}
        if expose:
            assert sorted(p["cgroup"] for p in doc["processes"]) == \
                ["/slice/s%d" % i for i in range(1, 6)]
        else:
            assert doc["processes"] == [] and "cgroup" not in json.dumps(
                doc)


def test_daemon_cli_has_top_cgroups(run_cli):
    p = run_cli("daemon", "--help")
    assert p.returncode == 0 and "--top-cgroups" in p.stdout
    p = run_cli("daemon", "--top-cgroups", "-1")
    assert p.returncode == 2 and "--top-cgroups" in p.stderr
