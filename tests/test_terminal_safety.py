"""No escape sequence from a name or a command line reaches the terminal:
every text output shows a comm like ESC ] 0 ; PWN BEL ESC [ 2 J as
escaped text.  Unit tests on synthetic data, plus the real thing: a
process that renames itself, recorded, reported, diffed and watched."""

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import ROOT
from sysretstat.top import batch as top_batch, view as top_view
from sysretstat.top import state as top_state
from sysretstat.commands.diff import render as diff_render
from sysretstat.render.csv import render_csv
from sysretstat.render.text import render_report
from sysretstat.render.safe import safe
from test_recordfile import META, make_delta

EVIL = "\x1b]0;PWN\x07\x1b[2J"      # 11 bytes: fits a comm
SHOWN = "\\e]0;PWN\\x07\\e[2J"


def raw_controls(text):
    """Control characters other than newline (the only one we emit)."""
    return [c for c in text if (ord(c) < 32 and c != "\n")
            or 0x7f <= ord(c) <= 0x9f]


@pytest.mark.parametrize("raw,shown", [
    (EVIL, SHOWN),
    ("plain name", "plain name"),
    ("tab\there\nnl\r", "tab\\there\\nnl\\r"),
    ("back\\slash", "back\\\\slash"),
    ("\x9b31m", "\\x9b31m"),             # C1 CSI
    ("rtl\u202eevil", "rtl\\u202eevil"),  # bidi override
    ("caf\u00e9", "caf\u00e9"),
    (42, "42"),
])
def test_safe(raw, shown):
    assert safe(raw) == shown


def evil_snapshot(seed=1):
    rng = random.Random(seed)
    snap = make_delta(rng, procs=((EVIL, 101), ("ok", 202)))
    snap.meta.update(META, command="./run " + EVIL, hostname="h" + EVIL,
                     filters={"latency": True, "comm": EVIL,
                              "cgroup": "/x" + EVIL})
    return snap


@pytest.mark.parametrize("by", [None, "process", "thread"])
@pytest.mark.parametrize("markdown", [False, True])
def test_report_text_and_markdown(by, markdown):
    out = render_report(evil_snapshot(), by=by, markdown=markdown)
    assert raw_controls(out) == []
    assert SHOWN in out


@pytest.mark.parametrize("view", ["process", "thread"])
def test_csv(view):
    out = render_csv(evil_snapshot(), view=view)
    assert raw_controls(out) == []
    assert SHOWN in out


def test_top_batch_and_screen():
    snap = evil_snapshot()
    for view in ("process", "thread"):
        st = top_state.ViewState(view=view, interval=1.0)
        out = top_batch.text_frame(snap, st)
        assert raw_controls(out) == [] and SHOWN in out, out
        text = top_view.screen_text(top_view.render(snap, st, 200, 40))
        assert raw_controls(text) == [] and SHOWN in text, text


def test_diff_text_and_markdown():
    from sysretstat.model import diff
    doc = diff.compare(evil_snapshot(1), evil_snapshot(2))
    doc["before"] = diff.describe("a" + EVIL, evil_snapshot(1), "s")
    doc["after"] = diff.describe("b", evil_snapshot(2), "s")
    for md in (False, True):
        out = diff_render(doc, 15, markdown=md)
        assert raw_controls(out) == [] and SHOWN in out, out


def test_doctor_text(monkeypatch):
    from click.testing import CliRunner
    from sysretstat.commands import doctor as cmd_doctor
    monkeypatch.setattr(cmd_doctor, "host_facts",
                        lambda: {"hostname": EVIL})
    monkeypatch.setattr(cmd_doctor, "run_checks", lambda: [
        {"check": "x", "ok": True, "detail": "found " + EVIL,
         "required": True}])
    out = CliRunner().invoke(cmd_doctor.command, []).output
    assert raw_controls(out) == [] and SHOWN in out


def test_error_line():
    r = subprocess.run([sys.executable, "-m", "sysretstat", "report",
                        "/nonexistent/" + EVIL], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 1
    assert raw_controls(r.stderr) == [] and SHOWN in r.stderr


# The real thing ------------------------------------------------------------

RENAME = r"""
import os, select, sys
with open("/proc/self/comm", "w") as f:
    f.write(sys.argv[1])
sys.stdout.write("ready\n")
sys.stdout.flush()
n = int(sys.argv[2])
if n:
    for _ in range(n):
        os.getppid()
else:
    # Busy until stdin closes, so that top has rows to show.
    while not select.select([sys.stdin], [], [], 0.001)[0]:
        os.getppid()
"""


@pytest.mark.bpf
def test_real_comm_in_every_text_output(run_cli, tmp_path):
    recs = []
    for k in (1, 2):
        f = tmp_path / ("r%d.data" % k)
        r = run_cli("record", "-q", "-o", f, "--", sys.executable, "-c",
                    RENAME, EVIL, 200 * k)
        assert r.returncode == 0, r.stderr
        recs.append(f)
    # The name is in the file as it was (JSON escapes it).
    doc = json.loads(run_cli("report", recs[0], "--json").stdout)
    assert EVIL in {p["comm"] for p in doc["processes"]}
    runs = [("report", recs[0]),
            ("report", recs[0], "--format", "markdown"),
            ("report", recs[0], "--format", "csv", "--by", "thread"),
            ("diff", recs[0], recs[1]),
            ("diff", recs[0], recs[1], "--format", "markdown")]
    for args in runs:
        r = run_cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert raw_controls(r.stdout + r.stderr) == [], args
        assert SHOWN in r.stdout, args
    # top -b, watching the renamed process live.
    w = subprocess.Popen([sys.executable, "-c", RENAME, EVIL, "0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert w.stdout.readline() == b"ready\n"
        r = run_cli("top", "-b", "-i", "0.3", "-n", "2", "-p", w.pid,
                    "--sort", "returns")
    finally:
        w.stdin.close()
        w.wait(timeout=60)
    assert r.returncode == 0, r.stderr
    assert raw_controls(r.stdout + r.stderr) == []
    assert SHOWN in r.stdout, r.stdout
