"""What an IRET reason's returns were (Counts.detail: the signal, the
restart code, the tracer, a thread or process fork) in the text report
and in top's detail pane: in the reasons' order, largest first, names
escaped.  Snapshots and recordings are built by hand (no BPF)."""

import json

from sysretstat.kernel import abi
from sysretstat.model.snapshot import Row, Snapshot
from sysretstat.render.text import (DETAIL_SHOWN, reason_detail_lines,
                                    render_report)
from sysretstat.top import rows as tr, state as ts, view as tv
from test_cgroup_view import META, counts, recording

# A tracer is named by its comm: anything a process wrote there.
TRACER = "st\x1b]0;PWN\x07race"
TRACER_SHOWN = "st\\e]0;PWN\\x07race"

DETAIL = {("signal", "SIGURG"): 1200, ("signal", "SIGALRM"): 34,
          ("restart", "ERESTARTSYS"): 20, ("restart", "ERESTARTNOINTR"): 5,
          ("ptrace", TRACER): 7, ("fork_child", "thread"): 3,
          ("fork_child", "process"): 1}


def detail_snap(detail=DETAIL):
    s = Snapshot(dict(META, duration_s=2.0, interval_s=2.0))
    c = counts(500, signal=1234, restart=25, ptrace=7, fork_child=4,
               rcx_ne_rip=9, detail=dict(detail))
    s.processes[(10, 1)] = Row((10, 1), {"pid": 10, "comm": "app",
                                         "cgroup": "/app.slice"}, c)
    s.totals.add(c)
    return s


def raw_controls(text):
    return [ch for ch in text if (ord(ch) < 32 and ch != "\n")
            or 0x7f <= ord(ch) <= 0x9f]


# Report ------------------------------------------------------------------
def test_text_report_shows_each_reasons_detail():
    out = render_report(detail_snap(), by="reason")
    lines = out.split("\n")
    i = lines.index("reason detail:")
    assert lines[i + 1:i + 5] == [
        "  signal: SIGURG 1200, SIGALRM 34",
        "  restart: ERESTARTSYS 20, ERESTARTNOINTR 5",
        "  ptrace: %s 7" % TRACER_SHOWN,
        "  fork_child: thread 3, process 1"]
    # Under the reasons table, in its order (most returns first); a
    # reason without detail has no line.
    assert out.index("typical cause") < out.index("reason detail:")
    assert "rcx_ne_rip:" not in out
    assert raw_controls(out) == []
    # The whole report has it too.
    assert "  signal: SIGURG 1200, SIGALRM 34" in render_report(
        detail_snap())


def test_markdown_is_a_list():
    out = render_report(detail_snap(), by="reason", markdown=True)
    assert "\nreason detail:\n\n- signal: SIGURG 1200, SIGALRM 34\n" in out
    assert "- ptrace: %s 7\n" % TRACER_SHOWN in out
    assert raw_controls(out) == []


def test_no_detail_no_section():
    s = detail_snap()
    s.totals.detail = None
    assert "reason detail" not in render_report(s, by="reason")
    assert reason_detail_lines(s.totals) == ""


def test_many_details_are_summed_after_the_first():
    detail = {("signal", "SIG%d" % (34 + i)): 100 - i for i in range(12)}
    s = detail_snap(detail)
    line = next(l for l in render_report(s, by="reason").split("\n")
                if l.startswith("  signal:"))
    shown = ["SIG%d %d" % (34 + i, 100 - i) for i in range(DETAIL_SHOWN)]
    rest = [100 - i for i in range(DETAIL_SHOWN, 12)]
    assert line == "  signal: %s, %d others %d" % (
        ", ".join(shown), len(rest), sum(rest))


def test_detail_wraps_at_the_width():
    detail = {("signal", "SIG%d" % (34 + i)): 100 - i for i in range(8)}
    out = render_report(detail_snap(detail), by="reason", width=50)
    assert max(len(l) for l in out.split("\n")) <= 50, out
    lines = out.split("\n")
    i = next(i for i, l in enumerate(lines) if l.startswith("  signal:"))
    assert lines[i + 1].startswith("      SIG")     # continuation indent


def test_cli_report_of_a_recording_with_detail(tmp_path, run_cli):
    path = recording(tmp_path / "d.data", detail_snap())
    r = run_cli("report", path, "--by", "reason")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "  signal: SIGURG 1200, SIGALRM 34\n" in r.stdout
    assert "  ptrace: %s 7\n" % TRACER_SHOWN in r.stdout
    assert raw_controls(r.stdout) == []
    doc = json.loads(run_cli("report", path, "--json").stdout)
    assert doc["totals"]["reason_detail"]["signal"] == {"SIGURG": 1200,
                                                        "SIGALRM": 34}
    # JSON keeps the name as it is.
    assert doc["totals"]["reason_detail"]["ptrace"] == {TRACER: 7}


# top ---------------------------------------------------------------------
def pane(snap, view="process", w=80, h=30):
    st = ts.ViewState(view=view)
    rows = tr.build_rows(snap, st)
    ts.handle_key(st, "enter", rows)
    lines = tv.render(snap, st, w, h)
    assert all(len(tv.line_text(l)) == w for l in lines)
    return tv.screen_text(lines)


def test_top_detail_pane_shows_each_reasons_detail():
    out = pane(detail_snap())
    lines = out.split("\n")
    sig = next(i for i, l in enumerate(lines) if l.startswith("signal "))
    # Right under its reason's row, as shares of that reason.
    assert lines[sig + 1] == "  signal: SIGURG 97.2%  SIGALRM 2.8%"
    rs = next(i for i, l in enumerate(lines) if l.startswith("restart "))
    assert lines[rs + 1] == "  restart: ERESTARTSYS 80.0%  " \
        "ERESTARTNOINTR 20.0%"
    assert "  ptrace: %s 100%%" % TRACER_SHOWN in lines
    assert "  fork_child: thread 75.0%  process 25.0%" in lines
    rcx = next(i for i, l in enumerate(lines) if l.startswith("rcx_ne_rip"))
    assert not lines[rcx + 1].startswith("  rcx_ne_rip:")
    assert raw_controls(out) == [] and "\x1b" not in out


def test_top_detail_pane_of_grouped_views_and_narrow_screens():
    s = detail_snap()
    for view in ("comm", "cgroup"):
        assert "  signal: SIGURG 97.2%  SIGALRM 2.8%" in pane(s, view)
    narrow = pane(s, w=30, h=24)
    assert "  signal: SIGURG 97.2%  SIGAL" in narrow


def test_top_interval_detail_is_the_change():
    old = detail_snap()
    new = detail_snap({**DETAIL, ("signal", "SIGURG"): 1300})
    new.processes[(10, 1)].counts.n[abi.OUTCOMES.index("signal")] += 100
    out = pane(new.delta(old))
    # 100 SIGURG this interval, no SIGALRM; the other reasons none.
    lines = out.split("\n")
    assert "  signal: SIGURG 100%" in lines
    assert not any(l.startswith(("  restart:", "  ptrace:")) for l in lines)
