"""`sysretstat record`: filters (-p, -c, --cgroup, -- COMMAND), the live
progress line, .old rotation, and a recording killed with SIGKILL."""

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from sysretstat import record
from sysretstat.kernel.tracer import cgroup2_mount

ENV = dict(os.environ, PYTHONPATH=ROOT)


def start_record(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "sysretstat", "record"]
                            + [str(a) for a in args], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=kw.pop(
                                "stderr", subprocess.PIPE), **kw)


def wait_started(path, proc, timeout=60, intervals=0):
    """Tracing is attached once the metadata frame is on disk; with
    `intervals`, wait until that many intervals are committed too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("record exited: %s" % proc.stderr.read())
        try:
            if record.read(str(path)).intervals >= intervals:
                return
        except record.RecordFileError:
            pass
        time.sleep(0.05)
    raise AssertionError("record did not start (or commit %d intervals)"
                         % intervals)


def stop(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err


def report(run_cli, path):
    r = run_cli("report", path, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def getppid_returns(doc):
    return sum(s["returns"] for s in doc["syscalls"]
               if s["name"] == "getppid")


def test_unwritable_output_fails_before_tracing(run_cli, tmp_path):
    r = run_cli("record", "-o", tmp_path, "-d", "1")
    assert (r.returncode, r.stderr) == (
        1, "sysretstat: error: %s is a directory\n" % tmp_path)
    r = run_cli("record", "-o", tmp_path / "no" / "f.data", "-d", "1")
    assert r.returncode == 1 and "no such directory" in r.stderr
    r = run_cli("record", "-o", "/dev/null", "-d", "1")
    assert r.returncode == 1 and "not a regular file" in r.stderr
    assert os.path.exists("/dev/null") and not os.path.exists(
        "/dev/null.old")


@pytest.mark.bpf
def test_command_and_old_rotation(run_cli, workloads, tmp_path):
    f = tmp_path / "r.data"
    r = run_cli("record", "-o", f, "--", "%s/retpaths" % workloads,
                "sysret", 30)
    assert r.returncode == 0, r.stderr
    assert "moved the existing" not in r.stderr
    assert r.stderr.startswith("sysretstat: recorded ")
    first = f.read_bytes()
    doc, _ = report(run_cli, f)
    assert getppid_returns(doc) == 30
    r = run_cli("record", "-o", f, "--", "%s/retpaths" % workloads,
                "sysret", 7)
    assert r.returncode == 0, r.stderr
    assert "sysretstat: moved the existing %s to %s.old\n" % (f, f) \
        in r.stderr
    assert (tmp_path / "r.data.old").read_bytes() == first
    doc, _ = report(run_cli, f)
    assert getppid_returns(doc) == 7


@pytest.mark.bpf
def test_comm_filter(run_cli, workloads, tmp_path):
    # A private name, so other tests' workloads cannot match it.
    name = "srs_c%d" % (os.getpid() % 100000)
    mine = tmp_path / name
    shutil.copy("%s/retpaths" % workloads, mine)
    f = tmp_path / "c.data"
    p = start_record("-q", "-o", f, "-i", "0.2", "-c", name)
    try:
        wait_started(f, p)
        subprocess.run([str(mine), "sysret", "21"], check=True,
                       capture_output=True)
        subprocess.run(["%s/retpaths" % workloads, "sysret", "13"],
                       check=True, capture_output=True)
    finally:
        rc, err = stop(p)
    assert rc == 0, err
    doc, _ = report(run_cli, f)
    assert doc["meta"]["filters"]["comm"] == name
    assert {x["comm"] for x in doc["processes"]} == {name}
    assert getppid_returns(doc) == 21


def record_in_and_out_of_a_cgroup(workloads, f, name, record_args):
    """Record while `retpaths sysret 17` runs in a new cgroup v2 named
    `name` and `retpaths sysret 11` in ours; return the cgroup's path."""
    root = cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup v2 mount")
    cg = os.path.join(root, name)
    os.mkdir(cg)
    p = None
    try:
        p = start_record("-q", "-o", f, "-i", "0.2", *record_args(cg))
        wait_started(f, p)

        def enter():
            with open(os.path.join(cg, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        subprocess.run(["%s/retpaths" % workloads, "sysret", "17"],
                       check=True, capture_output=True, preexec_fn=enter)
        subprocess.run(["%s/retpaths" % workloads, "sysret", "11"],
                       check=True, capture_output=True)
        rc, err = stop(p)
        assert rc == 0, err
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        os.rmdir(cg)
    return cg


@pytest.mark.bpf
def test_cgroup_filter(run_cli, workloads, tmp_path):
    f = tmp_path / "g.data"
    cg = record_in_and_out_of_a_cgroup(
        workloads, f, "sysretstat-test-%d" % os.getpid(),
        lambda cg: ("--cgroup", cg))
    doc, _ = report(run_cli, f)
    assert doc["meta"]["filters"]["cgroup"] == cg
    assert getppid_returns(doc) == 17
    assert [x["comm"] for x in doc["processes"]] == ["retpaths"]


def own_cgroup():
    """This process's cgroup v2 path ("0::PATH" in /proc/self/cgroup)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


@pytest.mark.bpf
def test_returns_by_cgroup(run_cli, workloads, tmp_path):
    # One workload in a cgroup of its own, one in ours: report --by
    # cgroup names both paths, each with exactly its own returns, and
    # each process row carries its cgroup.
    name = "sysretstat-bycg-%d" % os.getpid()
    f = tmp_path / "g.data"
    record_in_and_out_of_a_cgroup(workloads, f, name,
                                  lambda cg: ("-c", "retpaths"))
    # The whole document holds both tables; --by cgroup keeps the one.
    doc, _ = report(run_cli, f)
    r = run_cli("report", f, "--json", "--by", "cgroup")
    assert r.returncode == 0, r.stderr
    by_cgroup = json.loads(r.stdout)
    assert by_cgroup["cgroups"] == doc["cgroups"]
    assert not by_cgroup.get("processes")
    rows = {c["cgroup"]: c for c in doc["cgroups"]}
    assert set(rows) == {"/" + name, own_cgroup()}, rows.keys()
    procs = {pr["cgroup"]: pr for pr in doc["processes"]}
    for path, row in rows.items():
        assert row["processes"] == 1
        assert row["returns"] == procs[path]["returns"]
    assert sum(c["returns"] for c in doc["cgroups"]) == \
        doc["totals"]["returns"]
    # The getppid loop tells the two apart: 17 in the new cgroup.
    assert procs["/" + name]["returns"] - procs[own_cgroup()]["returns"] \
        == 17 - 11


@pytest.mark.bpf
def test_a_build_by_comm_and_cgroup(run_cli, tmp_path):
    # `make -j2` of four C files, recorded from a cgroup of its own:
    # report --by comm shows one cc1 row and one as row of four
    # processes each (one per file, by construction), and --by cgroup
    # one row holding every return.
    root = cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup v2 mount")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / ("f%d.c" % i)).write_text("int f%d(void) { return %d; }\n"
                                         % (i, i))
    (src / "main.c").write_text(
        "int f0(void), f1(void), f2(void), f3(void);\n"
        "int main(void) { return f0() + f1() + f2() + f3() - 6; }\n")
    (src / "Makefile").write_text(
        "OBJS = f0.o f1.o f2.o f3.o\n"
        "prog: main.c $(OBJS)\n\tgcc -o prog main.c $(OBJS)\n"
        "%.o: %.c\n\tgcc -c -o $@ $<\n")
    name = "sysretstat-build-%d" % os.getpid()
    cg = os.path.join(root, name)
    os.mkdir(cg)
    f = tmp_path / "build.data"
    try:
        def enter():
            with open(os.path.join(cg, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        r = subprocess.run(
            [sys.executable, "-m", "sysretstat", "record", "-q", "-o",
             str(f), "-i", "0.2", "--", "make", "-s", "-j2", "-C",
             str(src)], cwd=ROOT, capture_output=True, text=True,
            timeout=120, preexec_fn=enter)
        assert r.returncode == 0, r.stderr
    finally:
        os.rmdir(cg)
    assert subprocess.run([str(src / "prog")]).returncode == 0
    doc, _ = report(run_cli, f)
    comms = {c["comm"]: c for c in doc["comms"]}
    # main.c is compiled too, by the link's gcc: five cc1 and five as.
    assert comms["cc1"]["processes"] == 5, sorted(comms)
    assert comms["as"]["processes"] == 5, sorted(comms)
    assert sum(c["returns"] for c in doc["comms"]) == \
        doc["totals"]["returns"]
    for comm, row in comms.items():
        assert row["returns"] == sum(p["returns"] for p in doc["processes"]
                                     if p["comm"] == comm), comm
    assert [(c["cgroup"], c["returns"]) for c in doc["cgroups"]] == \
        [("/" + name, doc["totals"]["returns"])]
    for by in ("comm", "cgroup"):
        r = run_cli("report", f, "--by", by)
        assert r.returncode == 0, r.stderr
        assert ("cc1" if by == "comm" else "/" + name) in r.stdout


@pytest.mark.bpf
def test_pid_filter(run_cli, workloads, tmp_path):
    # The target waits on stdin, then execs the workload (same pid).
    target = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; sys.stdin.read(1); "
         "os.execv(sys.argv[1], sys.argv[1:])",
         "%s/retpaths" % workloads, "sysret", "19"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    f = tmp_path / "p.data"
    p = start_record("-q", "-o", f, "-i", "0.2", "-p", target.pid)
    try:
        wait_started(f, p)
        subprocess.run(["%s/retpaths" % workloads, "sysret", "5"],
                       check=True, capture_output=True)
        target.stdin.write(b"g")
        target.stdin.close()
        assert target.wait(timeout=60) == 0
    finally:
        if target.poll() is None:
            target.kill()
        rc, err = stop(p)
    assert rc == 0, err
    doc, _ = report(run_cli, f)
    assert {x["pid"] for x in doc["processes"]} == {target.pid}
    assert getppid_returns(doc) == 19


@pytest.mark.bpf
def test_progress_line_on_a_terminal(tmp_path):
    master, slave = pty.openpty()
    f = tmp_path / "t.data"
    p = start_record("-o", f, "-d", "1.5", "-i", "0.25", "-c", "nobody-xyz",
                     stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=60)
    os.close(master)
    text = out.decode()
    assert p.returncode == 0, text
    lines = [x for x in text.split("\r\x1b[K") if x.startswith("recording:")]
    assert len(lines) >= 3
    assert "/1.5s  0 returns  0 IRET (0.00%)" in lines[0]
    assert "sysretstat: recorded 0 returns" in text


@pytest.mark.bpf
def test_sigkill_leaves_a_readable_file(run_cli, tmp_path):
    f = tmp_path / "k.data"
    p = start_record("-q", "-o", f, "-i", "0.1")
    wait_started(f, p, intervals=3)
    p.kill()
    p.wait()
    p.stdout.close()
    p.stderr.close()
    doc, err = report(run_cli, f)
    assert err.startswith("sysretstat: warning: %s: " % f)
    rec = doc["meta"]["recording"]
    assert rec["complete"] is False and rec["intervals"] >= 3
    assert len(doc["series"]) == rec["intervals"]
    assert doc["totals"]["returns"] == sum(x["returns"]
                                           for x in doc["series"]) > 0
