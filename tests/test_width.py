"""Text output follows the terminal width ($COLUMNS, else the tty; a
pipe gets every column): report, diff and `top -b` wrap or drop the
long explanatory columns first, then the least important numbers."""

import os
import pty
import struct
import subprocess
import sys
import fcntl
import termios

import pytest

from sysretstat.render import width as textwidth
from sysretstat.top import state as ts
from sysretstat.top import batch as top_batch
from sysretstat.model.reasons import EXPLAIN
from test_recordfile import synth
from test_top_view import Penalty, snap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    """run_cli's report and top see no saved calibration (its COST
    columns) outside tmp_path."""
    monkeypatch.setenv("SYSRETSTAT_CALIBRATION", str(tmp_path / "none.json"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture(scope="module")
def recs(tmp_path_factory):
    d = tmp_path_factory.mktemp("width")
    synth(str(d / "a.data"), n=12)
    synth(str(d / "b.data"), n=6)
    return str(d / "a.data"), str(d / "b.data")


def widest(text):
    return max(len(line) for line in text.splitlines())


def cli(run_cli, columns, *args):
    r = run_cli(*args, env={"COLUMNS": str(columns)} if columns else None)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("width", [80, 100, 60])
def test_report_fits_columns(recs, run_cli, width):
    full = cli(run_cli, None, "report", recs[0])
    assert widest(full) > 100            # a pipe gets every column
    out = cli(run_cli, width, "report", recs[0])
    assert widest(out) <= width
    # Every section is still there.
    for title in ("IRET reasons", "Syscall duration (sys_enter to sys_exit)", "Over time",
                  "By process", "By syscall", "By thread", "By CPU"):
        assert title in out


def test_report_wraps_the_explanation_before_dropping_it(recs, run_cli):
    cause = EXPLAIN["signal"]
    full = cli(run_cli, None, "report", recs[0], "--by", "reason")
    assert cause in full
    # 70 columns: the cause is wrapped, every word still there.
    out = cli(run_cli, 70, "report", recs[0], "--by", "reason")
    assert cause not in out and "typical cause" in out
    lines = out[out.index("IRET reasons"):].splitlines()
    col = lines[1].index("typical cause")
    assert " ".join(line[col:] for line in lines[3:]).split() == \
        cause.split()
    assert len(lines) > 4          # on more than one line
    # 40 columns: no room to wrap it usefully, so it goes.
    out = cli(run_cli, 40, "report", recs[0], "--by", "reason")
    assert "typical cause" not in out and "signal" in out


def test_report_tables_drop_latency_before_counts(recs, run_cli):
    full = cli(run_cli, None, "report", recs[0], "--by", "process")
    assert "sysret p50" in full and "iret p99" in full
    out = cli(run_cli, 80, "report", recs[0], "--by", "process")
    heads = [line for line in out.splitlines() if "returns" in line and
             "comm" in line][0]
    assert "sysret p50" not in heads and "iret p50" not in heads
    for kept in ("pid", "comm", "returns", "iret", "iret%", "top reason"):
        assert kept in heads


def test_diff_fits_columns(recs, run_cli):
    full = cli(run_cli, None, "diff", *recs)
    assert widest(full) > 80 and "iret p50" in full
    out = cli(run_cli, 80, "diff", *recs)
    assert widest(out) <= 80
    assert "iret p50" not in out and "IRET%" in out


def test_markdown_has_no_width(recs, run_cli):
    full = cli(run_cli, None, "report", recs[0], "--format", "markdown")
    assert cli(run_cli, 60, "report", recs[0], "--format",
               "markdown") == full


def test_top_batch_frame_fits():
    full = top_batch.text_frame(snap(), ts.ViewState(), Penalty())
    assert widest(full) > 60
    out = top_batch.text_frame(snap(), ts.ViewState(), Penalty(), width=60)
    assert widest(out) <= 60
    titles = out.splitlines()[
        [i for i, line in enumerate(out.splitlines())
         if line.lstrip().startswith("PID")][0]].split()
    # The columns the screen drops first went first: COST/s, latency.
    assert titles[:6] == ["PID", "COMM", "RET/s", "IRET/s", "IRET%",
                          "REASON"]
    assert "COST/s" not in titles


def test_output_width_sources(monkeypatch):
    monkeypatch.setenv("COLUMNS", "91")
    assert textwidth.output_width() == 91
    for junk in ("", "0", "-3", "wide"):
        monkeypatch.setenv("COLUMNS", junk)
        with open(os.devnull, "w") as f:
            assert textwidth.output_width(f) is None
    # A terminal: its size.
    monkeypatch.delenv("COLUMNS")
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 24, 73, 0, 0))
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert textwidth.output_width(tty) == 73
    finally:
        os.close(master)
        os.close(slave)


def test_report_on_a_terminal_follows_its_width(recs):
    # No COLUMNS: the pty's own width (70) is used.
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 70, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = ROOT
    p = subprocess.Popen([sys.executable, "-m", "sysretstat", "report",
                          recs[0]], stdout=slave, stderr=subprocess.PIPE,
                         env=env, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:         # EIO: the child closed the terminal
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    assert p.wait(timeout=60) == 0, p.stderr.read()
    p.stderr.close()
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "By process" in text
    assert widest(text) <= 70
