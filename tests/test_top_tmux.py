"""The full-screen `sysretstat top`, driven in tmux against workloads whose
IRET causes are known by construction (tests/workloads/README.md)."""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from sysretstat.model import syscall_table
from sysretstat.model.reasons import REASONS
from sysretstat.penalty.calibration import machine_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.bpf, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None,
                                 reason="tmux missing")]


_SERVERS = itertools.count()


class Tmux:
    def __init__(self, command, w=80, h=24, env=""):
        # A server of its own per terminal: the previous test's server
        # may still be exiting after its kill-server, and a new session
        # on a dying server fails.
        self.sock = "sysretstat-top-test-%d-%d" % (os.getpid(),
                                                  next(_SERVERS))
        sh = "cd %s && %s PYTHONPATH=%s %s -m sysretstat %s; " \
             "echo EXITED $?; sleep 600" % (ROOT, env, ROOT, sys.executable,
                                            command)
        self.tmux("new-session", "-d", "-x", str(w), "-y", str(h), sh)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock] + list(args),
                              capture_output=True, text=True, check=True
                              ).stdout

    def screen(self, escapes=False):
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []))

    def keys(self, *keys):
        self.tmux("send-keys", *keys)

    def wait_for(self, pred, timeout=15):
        end = time.monotonic() + timeout
        while True:
            s = self.screen()
            if pred(s):
                return s
            if time.monotonic() > end:
                raise AssertionError("screen (%s) never matched:\n%s" % (
                    self.tmux("display", "-p",
                              "#{window_width}x#{window_height}").strip(),
                    s))
            time.sleep(0.2)

    def top_pid(self):
        shell = int(self.tmux("display", "-p", "#{pane_pid}").strip())
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(shell)],
                              capture_output=True, text=True).stdout.split()
        return int(kids[0])

    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"],
                       capture_output=True)


def rows(screen):
    lines = screen.split("\n")
    i = next(i for i, l in enumerate(lines) if "REASON" in l)
    out = []
    for l in lines[i + 1:]:
        # The prompt line ends the table: it holds what is being typed.
        if not l.strip() or l.startswith(("q quit", "filter (")):
            break
        out.append(l.split())
    return out


def held_programs(pid):
    """Ids of the BPF programs process `pid` holds an fd of (a program
    or a link).  bpftool's pid column needs a bpftool built with BPF
    skeletons, which Debian's is not; fdinfo always has the ids."""
    ids = set()
    fddir = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(fddir):
        try:
            with open(os.path.join(fddir, fd)) as f:
                text = f.read()
        except OSError:
            continue
        ids.update(int(m) for m in re.findall(r"^prog_id:\s*(\d+)", text,
                                              re.M))
    return ids


def loaded_programs():
    out = subprocess.run(["bpftool", "prog", "show", "-j"],
                         capture_output=True, text=True, check=True).stdout
    return {p["id"]: p.get("name", "") for p in json.loads(out or "[]")}


@pytest.fixture
def hermetic(tmp_path):
    """Environment for top that no saved calibration outside tmp_path
    reaches (/var/lib/sysretstat, $XDG_STATE_HOME, ~/.local/state)."""
    return "SYSRETSTAT_CALIBRATION=%s XDG_STATE_HOME=%s HOME=%s" % (
        tmp_path / "no-calibration.json", tmp_path, tmp_path)


@pytest.fixture
def calibrated(tmp_path):
    """The same, with the fixture's calibration entry as this machine's."""
    with open(os.path.join(ROOT, "tests", "fixtures", "records",
                           "calibration.json")) as f:
        doc = json.load(f)
    entry = next(iter(doc["machines"].values()))
    doc["machines"] = {machine_key(): entry}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(doc))
    return "SYSRETSTAT_CALIBRATION=%s XDG_STATE_HOME=%s HOME=%s" % (
        path, tmp_path, tmp_path)


@pytest.fixture
def workload(workloads):
    procs = [subprocess.Popen([os.path.join(workloads, "retpaths"), sc,
                               "100000000"], stdout=subprocess.DEVNULL)
             for sc in ("signal", "rcx_ne_rip")]
    yield procs
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()


def test_interactive_view(workload, hermetic):
    sig, rcx = (str(p.pid) for p in workload)
    t = Tmux("top -i 0.5", env=hermetic)
    try:
        s = t.wait_for(lambda s: "REASON" in s and {sig, rcx} <= {
            r[0] for r in rows(s)})
        lines = s.split("\n")
        assert "sysretstat top" in lines[0] and "paging" in lines[0]
        assert re.search(r"returns \S+/s +SYSRET \S+%", lines[1])
        assert "signal" in lines[2]
        assert "tool: BPF" in lines[3]
        titles = next(l for l in lines if "REASON" in l).split()
        assert titles[:6] == ["PID", "COMM", "RET/s", "IRET/s", "IRET%",
                              "REASON"]
        # A percentile that does not fit is named on the status line.
        for p in ("SRp50", "SRp99", "IRp50", "IRp99"):
            assert p in titles or p in lines[4].split("hidden: ")[-1]
        assert lines[23].startswith("q quit")
        by_pid = {r[0]: r for r in rows(s)}
        assert by_pid[sig][1] == "retpaths" and by_pid[sig][5] == "signal"
        # rcx_ne_rip: tgkill (signal) and rt_sigreturn (rcx_ne_rip), one
        # each per iteration, out of two returns: all of them IRET.
        assert float(by_pid[rcx][4].rstrip("%")) > 95
        assert by_pid[rcx][5] in ("rcx_ne_rip", "signal")
        # Both workloads run ~100k IRET/s or more: they lead by IRET/s.
        assert {r[0] for r in rows(s)[:2]} == {sig, rcx}
        top = t.top_pid()
        mine = held_programs(top)
        loaded = loaded_programs()
        assert mine and all(loaded.get(i, "").startswith("sr_")
                            for i in mine), (mine, loaded)

        # Sort: S twice goes from IRET/s (default) to name, ascending.
        t.keys("S", "S")
        s = t.wait_for(lambda s: "sort name asc" in s)
        names = [r[1] for r in rows(s)]
        assert names == sorted(names, key=str.lower)
        t.keys("r")
        s = t.wait_for(lambda s: "sort name desc" in s)
        names = [r[1] for r in rows(s)]
        assert names == sorted(names, key=str.lower, reverse=True)

        # Filter by pid: only the rcx_ne_rip workload is left.
        t.keys("/", rcx, "Enter")
        s = t.wait_for(lambda s: "filter '%s'" % rcx in s)
        assert [r[0] for r in rows(s)] == [rcx]

        # Detail pane: both reasons, both histograms with percentiles.
        t.keys("Enter")
        s = t.wait_for(lambda s: "typical cause" in s and "IRET latency"
                       in s)
        assert "process %s retpaths" % rcx in s
        reasons = [l.split()[0] for l in s.split("\n")
                   if l.startswith(("rcx_ne_rip ", "signal "))]
        assert sorted(reasons) == ["rcx_ne_rip", "signal"]
        pct = [l for l in s.split("\n") if l.startswith("p50 ")]
        assert pct and pct[0].count("p50") == 2
        t.keys("Escape")
        s = t.wait_for(lambda s: "REASON" in s)

        # Views: the syscall table shows tgkill for the signals.
        t.keys("Escape", "4", "/", "tgkill", "Enter")
        s = t.wait_for(lambda s: "[4 syscall]" in s and "tgkill" in s
                       and "filter 'tgkill'" in s)
        tg = rows(s)
        assert len(tg) == 1 and tg[0][:3] == ["234", "x64", "tgkill"]
        assert tg[0][6] == "signal", s

        # Thread view, its table computed only when first shown: the
        # signal workload's one thread, with its reason.
        t.keys("Escape", "3", "/", sig, "Enter")
        s = t.wait_for(lambda s: "[3 thread]" in s and "filter '%s'" % sig
                       in s and rows(s))
        th = rows(s)
        assert len(th) == 1 and th[0][:3] == [sig, sig, "retpaths"], s
        assert th[0][6] == "signal", s

        # Comm view: both workloads are one retpaths row.
        t.keys("Escape", "2", "/", "retpaths", "Enter")
        s = t.wait_for(lambda s: "[2 comm]" in s and "filter 'retpaths'"
                       in s and rows(s) and int(rows(s)[0][1]) >= 2)
        cm = rows(s)
        assert len(cm) == 1 and cm[0][0] == "retpaths", s
        assert cm[0][5] in ("signal", "rcx_ne_rip"), s

        # Resize: the footer follows the new last line.
        t.tmux("resize-window", "-x", "100", "-y", "30")
        s = t.wait_for(lambda s: len(s.split("\n")) > 29 and s.split(
            "\n")[29].startswith("q quit") and len(s.split("\n")[0]) > 80)

        # Help, then quit: top exits 0 and leaves nothing attached.
        t.keys("h")
        t.wait_for(lambda s: "reverse the sort order" in s)
        t.keys("x", "q")
        t.wait_for(lambda s: "EXITED 0" in s)
        assert not os.path.exists("/proc/%d" % top)
        # The kernel frees programs shortly after their last fd closes
        # (deferred work): give it a few seconds.
        deadline = time.time() + 10
        while mine & set(loaded_programs()) and time.time() < deadline:
            time.sleep(0.1)
        assert not mine & set(loaded_programs())
    finally:
        t.kill()


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colours(screen):
    """Whether any SGR sequence on the screen sets a colour."""
    for params in SGR.findall(screen):
        for p in params.split(";"):
            if p.isdigit() and (30 <= int(p) <= 37 or 90 <= int(p) <= 97
                                or int(p) == 38):
                return True
    return False


@pytest.mark.parametrize("no_color", [False, True])
def test_colour_and_iterations(workload, no_color, hermetic):
    env = hermetic + (" NO_COLOR=1" if no_color else "")
    t = Tmux("top -i 0.4 -n 4", env=env)
    try:
        t.wait_for(lambda s: "REASON" in s and "retpaths" in s)
        assert colours(t.screen(escapes=True)) != no_color
        # -n: top ends by itself after 4 intervals.
        t.wait_for(lambda s: "EXITED 0" in s, timeout=20)
    finally:
        t.kill()


SYSCALL_NAMES = {n for t in (syscall_table.X64, syscall_table.I386,
                             syscall_table.X32) for n in t.values()}


def table(screen):
    """The column titles' line and the table's lines below it."""
    lines = screen.split("\n")
    out = []
    for l in lines[6:]:
        # The prompt line ends the table: it holds what is being typed.
        if not l.strip() or l.startswith(("q quit", "filter (")):
            break
        out.append(l)
    return lines[5], out


def cells(screen, title):
    head, lines = table(screen)
    if title not in head.split():
        return []
    at, end = head.index(title), head.index(title) + len(title)
    out = []
    for l in lines:
        # The word under the title: right-aligned ids end where it ends.
        word = next((m.group() for m in re.finditer(r"\S+", l)
                     if m.start() < end and m.end() > at), None)
        if word is not None:
            out.append(word)
    return out


def full(names, known):
    return bool(names) and all(n in known or n == "-" or
                               re.fullmatch(r"sys_\d+|unknown", n)
                               for n in names)


@pytest.mark.parametrize("cal", ["nocal", "cal"])
def test_full_names_at_80x24(workload, hermetic, calibrated, cal):
    """Every reason and syscall name on the 80x24 screen is whole, with
    and without a calibration (with one, COST/s takes room)."""
    sig, rcx = (str(p.pid) for p in workload)
    t = Tmux("top -i 0.5", env=calibrated if cal == "cal" else hermetic)
    try:
        # Waits are for the rows; whole names must hold in every frame.
        s = t.wait_for(lambda s: "REASON" in s and {sig, rcx} <= set(
            cells(s, "PID")) and dict(zip(cells(s, "PID"), cells(
                s, "REASON"))).get(sig) == "signal")
        assert ("COST/s" in s) == (cal == "cal"), s
        reasons = cells(s, "REASON")
        assert full(reasons, REASONS), s
        by_pid = dict(zip(cells(s, "PID"), reasons))
        assert by_pid[rcx] in ("rcx_ne_rip", "signal"), s
        assert dict(zip(cells(s, "PID"), cells(s, "COMM")))[sig] == \
            "retpaths"
        # Thread view: the workloads' threads, reasons whole.
        t.keys("3", "/", rcx, "Enter")
        s = t.wait_for(lambda s: "[3 thread]" in s and "filter '%s'" % rcx
                       in s and cells(s, "REASON")[:1] in (["rcx_ne_rip"],
                                                           ["signal"]))
        assert full(cells(s, "REASON"), REASONS), s
        # Syscall view: rt_sigreturn's rcx_ne_rip, both names whole.
        t.keys("Escape", "4", "/", "rt_sigreturn", "Enter")
        # The applied filter names itself: an earlier frame, typed
        # into, would pass a wait on the rows alone.
        s = t.wait_for(lambda s: "[4 syscall]" in s and "filter "
                       "'rt_sigreturn'" in s and "rcx_ne_rip" in
                       cells(s, "REASON"))
        assert "rt_sigreturn" in cells(s, "SYSCALL"), s
        t.keys("Escape")
        s = t.wait_for(lambda s: "[4 syscall]" in s and "filter '" not in s
                       and "filter (" not in s and {"tgkill", "rt_sigreturn"}
                       <= set(cells(s, "SYSCALL")))
        assert full(cells(s, "SYSCALL"), SYSCALL_NAMES), s
        assert full(cells(s, "REASON"), REASONS), s
        # Comm view.
        t.keys("2")
        s = t.wait_for(lambda s: "[2 comm]" in s and "retpaths" in cells(
            s, "COMM") and {"signal", "rcx_ne_rip"} & set(cells(s,
                                                                "REASON")))
        assert full(cells(s, "REASON"), REASONS), s
        # CPU view.
        t.keys("5")
        s = t.wait_for(lambda s: "[5 cpu]" in s and {"signal",
                       "rcx_ne_rip"} & set(cells(s, "REASON")))
        assert full(cells(s, "REASON"), REASONS), s
        # Cgroup view: the workloads run in ours.
        t.keys("7")
        s = t.wait_for(lambda s: "[7 cgroup]" in s and {"signal",
                       "rcx_ne_rip"} & set(cells(s, "REASON")))
        assert full(cells(s, "REASON"), REASONS), s
        # Help: whole at 80x24.
        t.keys("h")
        s = t.wait_for(lambda s: "Any key closes this help." in s)
        assert "(6 host: --per-host)" in s and "Esc clears)" in s
        t.keys("x", "q")
        t.wait_for(lambda s: "EXITED 0" in s)
    finally:
        t.kill()
