"""The cgroup view (processes summed by cgroup v2 path) in every output:
report text, CSV and JSON, top's screen, batch and keys, and diff; a
long path loses its start, not its leaf; a recording or source from
before cgroups were kept says so rather than showing an empty table.
Snapshots and recordings are built by hand (no BPF)."""

import csv
import io
import json

from sysretstat.kernel import abi
from sysretstat.model.snapshot import Counts, Hist, Row, Snapshot
from sysretstat.render import json as render_json
from sysretstat.render.csv import render_csv
from sysretstat.render.text import NO_CGROUPS, render_report
from sysretstat.render.width import elide_left
from sysretstat.top import batch as top_batch, rows as tr
from sysretstat.top import state as ts, view as tv
from test_recordfile import META, write_recording

SERVICE = "/system.slice/nginx.service"
# A container's cgroup: far longer than any column gives it at 80.
POD = ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-"
       "pod0f1e2d3c.slice/cri-containerd-" + "ab" * 32 + ".scope")
LEAF = "/cri-containerd-" + "ab" * 32 + ".scope"
DOCKER = "/system.slice/docker-0123456789abcdef.scope"
EVIL = "/x\x1b]0;PWN\x07"
EVIL_SHOWN = "/x\\e]0;PWN\\x07"


def counts(sysret, lat=True, detail=None, **reasons):
    c = Counts.zero(lat)
    c.n[abi.O_SYSRET] = sysret
    for name, v in reasons.items():
        c.n[abi.OUTCOMES.index(name)] = v
    if lat:
        c.lat = [Hist.from_values([300] * sysret),
                 Hist.from_values([900] * c.iret)]
    c.detail = detail
    return c


# pid: (comm, cgroup or None, counts)
PROCS = {
    101: ("nginx", SERVICE, dict(sysret=50, signal=10)),
    102: ("nginx", SERVICE, dict(sysret=30, signal=5)),
    201: ("app", POD, dict(sysret=20, restart=40)),
    301: ("evil", EVIL, dict(sysret=7, ptrace=3)),
    401: ("init", "/", dict(sysret=100)),
}
# What each cgroup sums: processes, returns, IRET.
EXPECT = {SERVICE: (2, 95, 15), POD: (1, 60, 40), EVIL: (1, 10, 3),
          "/": (1, 100, 0)}


def make_snap(procs=PROCS, lat=True, dur=1.0):
    s = Snapshot(dict(META, duration_s=dur, interval_s=dur))
    for pid, (comm, cg, kw) in procs.items():
        c = counts(lat=lat, **kw)
        fields = {"pid": pid, "comm": comm}
        if cg is not None:
            fields["cgroup"] = cg
        s.processes[(pid, 1)] = Row((pid, 1), fields, c)
        s.threads[(pid, 1)] = Row((pid, 1), dict(fields, tid=pid),
                                  Counts(c.n))
        s.totals.add(c)
    s.cpus[0] = Row(0, {"cpu": 0}, s.totals.copy())
    return s


def old_snap():
    """Processes recorded before sysretstat kept their cgroup."""
    return make_snap({pid: (comm, None, kw)
                      for pid, (comm, _, kw) in PROCS.items()})


def recording(path, snap):
    write_recording(str(path), [snap])
    return str(path)


# Report ------------------------------------------------------------------
def test_text_rows_sum_processes_by_cgroup():
    out = render_report(make_snap(), by="cgroup")
    assert "By cgroup (top 4 of 4)" in out
    lines = out.split("\n")
    head = next(i for i, l in enumerate(lines) if l.startswith("cgroup "))
    assert lines[head].split()[:4] == ["cgroup", "procs", "returns",
                                       "sysret"]
    body = [l.split() for l in lines[head + 2:head + 6]]
    # By returns, biggest first; the name escaped.
    assert [r[0] for r in body] == ["/", SERVICE, POD, EVIL_SHOWN]
    for r in body:
        name = EVIL if r[0] == EVIL_SHOWN else r[0]
        assert [int(x) for x in r[1:3]] + [int(r[4])] == list(EXPECT[name])
    assert "\x1b" not in out


def test_full_report_has_the_cgroup_table_after_commands():
    out = render_report(make_snap())
    assert out.index("By command") < out.index("By cgroup") < \
        out.index("By syscall")


def test_csv_rows_and_sums():
    snap = make_snap()
    rows = list(csv.DictReader(io.StringIO(render_csv(snap, "cgroup"))))
    assert list(rows[0])[:3] == ["cgroup", "procs", "returns"]
    got = {r["cgroup"]: (int(r["procs"]), int(r["returns"]), int(r["iret"]))
           for r in rows}
    # CSV, a text output, shows names escaped (README, Terminal safety).
    want = dict(EXPECT)
    want[EVIL_SHOWN] = want.pop(EVIL)
    assert got == want
    for col in ("returns", "signal", "restart", "ptrace"):
        assert sum(int(r[col]) for r in rows) == (
            snap.totals.returns if col == "returns"
            else snap.totals.reason(col))


def test_json_rows_and_sums():
    snap = make_snap()
    doc = snap.to_report(tables=render_json.tables_for("cgroup"))
    assert all(doc[t] == [] for t in ("processes", "threads", "syscalls",
                                      "cpus"))
    got = {r["cgroup"]: (r["processes"], r["returns"], r["paths"]["iret"])
           for r in doc["cgroups"]}
    # JSON keeps the name as it is.
    assert got == EXPECT
    assert sum(r["returns"] for r in doc["cgroups"]) == \
        doc["totals"]["returns"]


def test_cli_report_by_cgroup_in_every_format(tmp_path, run_cli):
    path = recording(tmp_path / "cg.data", make_snap())
    text = run_cli("report", path, "--by", "cgroup")
    assert text.returncode == 0 and text.stderr == "", text.stderr
    assert "By cgroup (top 4 of 4)" in text.stdout and SERVICE in \
        text.stdout
    doc = json.loads(run_cli("report", path, "--by", "cgroup",
                             "--json").stdout)
    assert {r["cgroup"]: r["processes"] for r in doc["cgroups"]} == {
        k: v[0] for k, v in EXPECT.items()}
    rows = list(csv.DictReader(io.StringIO(run_cli(
        "report", path, "--by", "cgroup", "--format", "csv").stdout)))
    assert sorted(int(r["returns"]) for r in rows) == sorted(
        v[1] for v in EXPECT.values())
    md = run_cli("report", path, "--by", "cgroup", "--format", "markdown")
    assert "## By cgroup (top 4 of 4)" in md.stdout
    assert "| " + SERVICE in md.stdout


def test_text_at_80_columns_keeps_the_leaf(tmp_path, run_cli):
    path = recording(tmp_path / "cg.data", make_snap())
    out = run_cli("report", path, "--by", "cgroup",
                  env={"COLUMNS": "80"}).stdout
    assert max(len(l) for l in out.split("\n")) <= 80, out
    pod = next(l for l in out.split("\n") if l.startswith("..."))
    assert pod.split()[0].endswith(".scope") and POD not in out
    assert SERVICE in out
    # The same in diff's table.
    out = run_cli("diff", path, path, "--by", "cgroup",
                  env={"COLUMNS": "80"}).stdout
    assert max(len(l) for l in out.split("\n")) <= 80, out
    assert any(l.startswith("...") and ".scope" in l
               for l in out.split("\n")), out


def test_old_recording_says_it_has_no_cgroups(tmp_path, run_cli):
    path = recording(tmp_path / "old.data", old_snap())
    r = run_cli("report", path, "--by", "cgroup")
    assert r.returncode == 0 and r.stderr == ""
    assert "\n%s\n" % NO_CGROUPS in r.stdout
    assert "By cgroup" not in r.stdout
    assert NO_CGROUPS.startswith("no cgroups in this recording")
    # The whole report leaves the view out, as before cgroups.
    full = run_cli("report", path).stdout
    assert "By cgroup" not in full and NO_CGROUPS not in full
    # JSON and CSV stay documents; the note goes to stderr.
    for fmt in ("json", "csv"):
        r = run_cli("report", path, "--by", "cgroup", "--format", fmt)
        assert r.returncode == 0
        assert r.stderr == "sysretstat: note: %s: %s\n" % (path, NO_CGROUPS)
    doc = json.loads(run_cli("report", path, "--by", "cgroup",
                             "--json").stdout)
    assert doc["cgroups"] == []


def test_report_rejects_an_unknown_view(run_cli, tmp_path):
    path = recording(tmp_path / "cg.data", make_snap())
    r = run_cli("report", path, "--by", "cgroups-nope")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "cgroup" in r.stderr


# Diff --------------------------------------------------------------------
def test_diff_by_cgroup(tmp_path, run_cli):
    before = recording(tmp_path / "b.data", make_snap())
    more = dict(PROCS)
    more[202] = ("app", POD, dict(sysret=5, restart=10))
    after = recording(tmp_path / "a.data", make_snap(more))
    doc = json.loads(run_cli("diff", before, after, "--by", "cgroup",
                             "--json").stdout)
    assert doc["tables"] == ["cgroups"]
    assert doc["processes"] == [] and doc["syscalls"] == []
    rows = {r["cgroup"]: r for r in doc["cgroups"]}
    assert set(rows) == set(EXPECT) and doc["cgroups_total"] == 4
    assert rows[POD]["delta"]["iret"] == 10
    assert doc["cgroups"][0]["cgroup"] == POD      # the largest change
    # By default, cgroups are compared where both runs have them.
    doc = json.loads(run_cli("diff", before, after, "--json").stdout)
    assert doc["tables"] == ["processes", "cgroups", "syscalls"]
    text = run_cli("diff", before, after, "--by", "cgroup").stdout
    assert "By cgroup (top 4 of 4" in text and "By process name" not in text
    assert EVIL_SHOWN in text and "\x1b" not in text
    text = run_cli("diff", before, after, "--by", "comm").stdout
    assert "By process name" in text and "By cgroup" not in text \
        and "By syscall" not in text


def test_diff_with_a_run_without_cgroups(tmp_path, run_cli):
    old = recording(tmp_path / "old.data", old_snap())
    new = recording(tmp_path / "new.data", make_snap())
    doc = json.loads(run_cli("diff", old, new, "--json").stdout)
    assert "cgroups" not in doc and doc["tables"] == ["processes",
                                                      "syscalls"]
    r = run_cli("diff", old, new, "--by", "cgroup")
    assert r.returncode == 0 and r.stderr == ""
    assert ("no cgroups in %s (recorded before sysretstat kept them): "
            "nothing to compare by cgroup" % old) in r.stdout
    assert "By cgroup" not in r.stdout
    r = run_cli("diff", old, new, "--by", "cgroup", "--json")
    assert r.returncode == 0 and "no cgroups in %s" % old in r.stderr
    assert json.loads(r.stdout)["tables"] == []
    r = run_cli("diff", old, new, "--by", "thread")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


# top ---------------------------------------------------------------------
def screen(snap, state, w=80, h=24, **kw):
    lines = tv.render(snap, state, w, h, **kw)
    assert len(lines) == h
    assert all(len(tv.line_text(l)) == w for l in lines)
    return tv.screen_text(lines)


def table_of(out):
    lines = out.split("\n")
    head = lines[tv.HEADER_LINES]
    body = []
    for l in lines[tv.HEADER_LINES + 1:]:
        if not l.strip() or l.startswith("q quit"):
            break
        body.append(l)
    return head, body


def test_key_7_is_the_cgroup_view_at_80x24():
    s, st = make_snap(), ts.ViewState()
    ts.handle_key(st, "7", [])
    assert st.view == "cgroup"
    out = screen(s, st)
    assert "[7 cgroup]" in out.split("\n")[4]
    head, body = table_of(out)
    assert head.split()[:3] == ["CGROUP", "PROCS", "RET/s"]
    cells = {l.split()[0]: l.split()[1:3] for l in body}
    # The pod's path is elided from the left: its leaf is whole.
    pod = next(c for c in cells if c.startswith("\u2026"))
    assert pod == "\u2026" + LEAF[-(len(pod) - 1):]
    assert pod.endswith(".scope") and len(pod) < len(POD)
    assert cells[pod] == ["1", "60"]
    assert cells[SERVICE] == ["2", "95"] and cells["/"] == ["1", "100"]
    assert cells[EVIL_SHOWN] == ["1", "10"] and "\x1b" not in out


def test_elide_left_keeps_whole_components():
    assert elide_left(DOCKER, len(DOCKER)) == DOCKER
    # From a "/" on: whole components, not the end of one.
    assert elide_left(DOCKER, 31) == "\u2026/docker-0123456789abcdef.scope"
    assert elide_left(DOCKER, 40) == "\u2026/docker-0123456789abcdef.scope"
    assert elide_left("/a.slice/b.slice/c.scope", 12) == "\u2026/c.scope"
    assert elide_left("/a.slice/b.slice/c.scope", 12, ascii=True) == \
        ".../c.scope"
    # A leaf longer than the room: its end.
    assert elide_left(DOCKER, 20) == "\u2026" + DOCKER[-19:]
    assert elide_left(DOCKER, 20, ascii=True) == "..." + DOCKER[-17:]
    for w in range(0, 50):
        assert len(elide_left(POD, w)) <= w
        assert len(elide_left(POD, w, True)) <= w


def test_cgroup_view_everywhere_at_every_width():
    s = make_snap()
    st = ts.ViewState(view="cgroup")
    for w, h in ((40, 10), (60, 15), (80, 24), (120, 30), (250, 40)):
        out = screen(s, st, w, h)
        head, body = table_of(out)
        if w >= 80:
            names = [l.split()[0] for l in body]
            assert all(n.endswith(".scope") for n in names
                       if n.startswith("\u2026")), out
        if w >= 250:
            assert POD in out           # room to spare shows it whole
    narrow = top_batch.text_frame(s, st, width=80)
    assert max(len(l) for l in narrow.split("\n")) <= 80, narrow
    pod = next(l for l in narrow.split("\n") if l.startswith("..."))
    assert pod.split()[0].endswith(".scope") and "\u2026" not in narrow
    wide = top_batch.text_frame(s, st)
    assert POD in wide and "CGROUP" in wide


def test_cgroup_filter_sort_and_detail_title():
    s = make_snap()
    st = ts.ViewState(view="cgroup", sort="name")
    assert [r.name for r in tr.build_rows(s, st)] == sorted(
        [SERVICE, POD, EVIL_SHOWN, "/"], key=str.lower)
    st.filter = "nginx"
    rows = tr.build_rows(s, st)
    assert [r.name for r in rows] == [SERVICE]
    ts.handle_key(st, "enter", rows)
    out = screen(s, st)
    assert "cgroup %s (2 processes)" % SERVICE in out
    st = ts.ViewState(view="cgroup", filter="cri-containerd")
    rows = tr.build_rows(s, st)
    ts.handle_key(st, "enter", rows)
    title = screen(s, st).split("\n")[tv.HEADER_LINES]
    assert title.startswith("cgroup \u2026") and ".scope (1 process)" in \
        title and "(Esc or Enter: back)" in title


def test_a_source_without_cgroups_says_so():
    s = old_snap()
    st = ts.ViewState(view="cgroup")
    out = screen(s, st, 100, 24)
    assert "0/0 rows" in out
    assert "no cgroups: this source's processes carry none" in out
    assert "no returns in this interval" not in out
    assert "no cgroups" in top_batch.text_frame(s, st)
    # A source with no processes at all has nothing to say about them.
    empty = Snapshot(dict(META))
    assert "no returns in this interval" in screen(empty, st)


def test_status_line_and_help_name_every_key():
    st = ts.ViewState(view="cgroup", views=ts.VIEWS + ("host",))
    line = tv.status_line(st, 1, 1, (), None)
    assert line.startswith("1 process 2 comm 3 thread 4 syscall 5 cpu "
                           "6 host [7 cgroup]")
    # Without --per-host, cgroup keeps its key.
    line = tv.status_line(ts.ViewState(), 1, 1, (), None)
    assert "5 cpu 7 cgroup" in line
    help_text = " ".join(tv.line_text(l).strip() for l in
                         tv.render(make_snap(), ts.ViewState(help=True),
                                   80, 24))
    assert "7 cgroup" in help_text and "(6 host: --per-host)" in help_text
    assert "Tab, 1-7" in help_text


def test_cli_top_by_cgroup_is_a_choice(run_cli):
    r = run_cli("top", "--help")
    assert "process|comm|thread|syscall|cpu|host|cgroup" in \
        r.stdout.replace("\n", "").replace(" ", "")
    r = run_cli("top", "--by", "cgroups")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
