"""The collector on the real kernel: guard models this hardware cannot
produce (forced through the same BPF code), system-wide collection, and
what happens to the kernel objects when the collector goes away."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sysretstat.source.collector import Collector
from sysretstat.source.launch import GatedCommand
from sysretstat.model.snapshot import check_invariants
from sysretstat.kernel.tracer import Options

pytestmark = pytest.mark.bpf
N = 30


@contextlib.contextmanager
def traced(workloads, args, **opts):
    """retpaths ARGS held at its gate, and a collection following it."""
    cmd = GatedCommand([os.path.join(workloads, "retpaths")] +
                       [str(a) for a in args])
    col = Collector(Options(filter=True, **opts))
    col.start()
    try:
        col.add_pid(cmd.pid, follow=True)
        yield cmd, col
    finally:
        col.close()


def collect(workloads, args, **opts):
    with traced(workloads, args, **opts) as (cmd, col):
        assert cmd.wait() == 0
        return col.stop()


@pytest.mark.parametrize("latency", [True, False])
def test_xen_pv_makes_every_return_iret(workloads, latency):
    s = collect(workloads, ["signal", str(N)], latency=latency,
                assume={"xen_pv": True})
    assert s.totals.returns > 2 * N
    assert s.totals.reasons() == {"xen_pv": s.totals.returns}
    assert s.meta["guard"]["xen_pv"] is True


def test_xen_pv_still_names_fork_children(workloads):
    # ret_from_fork never consults the guard: fork_child stays specific.
    s = collect(workloads, ["fork", str(N)], assume={"xen_pv": True})
    assert s.totals.reasons()["fork_child"] == N
    assert set(s.totals.reasons()) == {"fork_child", "xen_pv"}


def test_fred_makes_every_return_eretu(workloads):
    s = collect(workloads, ["signal", str(N)], assume={"fred": True})
    assert s.totals.eretu == s.totals.returns > 2 * N
    assert s.totals.iret == 0 and s.totals.sysret == 0
    doc = s.to_report()
    assert set(doc["totals"]["latency_ns"]) == {"eretu", "iret"}
    assert doc["totals"]["latency_ns"]["eretu"]["count"] > 0


def test_reason_detail_entries_go_with_their_threads(workloads):
    # N fork children, each one entry in the kernel's details map: once
    # their exits are read, the collector forgets them there (the map
    # is bounded), and the snapshot keeps what they counted.
    with traced(workloads, ["fork", N]) as (cmd, col):
        assert cmd.wait() == 0
        s = col.snapshot()
        assert s.totals.detail == {("fork_child", "process"): N}
        assert col.tracer.obj.map("details").items() == []
        s = col.snapshot()
        assert s.totals.detail == {("fork_child", "process"): N}


def test_sampled_durations_match_every_duration(workloads):
    # Two collections of one workload at once: one times every call, the
    # other 1 in 4 (every syscall sampled, at random).  The sampled
    # durations are a random quarter of the same calls: the same
    # distribution, within a histogram bucket (12.5%), and about a
    # quarter as many; the counts of both are exact.
    n = 2000
    cmd = GatedCommand([os.path.join(workloads, "retpaths"), "churn",
                        str(n)])
    every = Collector(Options(filter=True, latency_sample=1))
    sampled = Collector(Options(filter=True, latency_sample=4,
                                sample_every_syscall=True))
    every.start()
    try:
        sampled.start()
        try:
            every.add_pid(cmd.pid, follow=True)
            sampled.add_pid(cmd.pid, follow=True)
            assert cmd.wait() == 0
            s_sampled = sampled.stop()
        finally:
            sampled.close()
        s_every = every.stop()
    finally:
        every.close()
    assert s_every.totals.n == s_sampled.totals.n
    key = ("x64", 35)      # nanosleep
    full = s_every.syscalls[key].counts.lat[0]
    part = s_sampled.syscalls[key].counts.lat[0]
    assert full.count == n
    assert n / 4 * 0.7 < part.count < n / 4 * 1.3, part.count
    for q in (.5, .9):
        a, b = full.percentile(q), part.percentile(q)
        assert abs(a - b) <= 0.125 * a, (q, a, b)
    assert s_sampled.meta["latency_sample"] == 4
    assert "x64:nanosleep" in s_sampled.meta["latency_sampled"]
    why = s_sampled.to_report()["meta"]["untimed_why"]
    assert why["sampled"] > 0 and why["no_sys_enter"] == 0, why


def test_a_hot_syscall_is_sampled_and_its_counts_stay_exact(workloads):
    # Default rate (1 in 64): a getppid loop far above 100 samples a
    # second is sampled once the first decision window has seen it;
    # every return is still counted, and the untimed ones are put down
    # to sampling exactly.
    calls = 3000000
    with traced(workloads, ["sysret", calls]) as (cmd, col):
        cmd.release()
        while cmd.poll() is None:
            col.snapshot()
        assert cmd.wait() == 0
        s = col.stop()
    getppid = s.syscalls[("x64", 110)].counts
    assert getppid.sysret == calls
    assert s.meta["latency_sample"] == 64
    assert s.meta["latency_sampled"] == ["x64:getppid"]
    assert getppid.lat[0].count < calls
    why = s.to_report()["meta"]["untimed_why"]
    assert why["sampled"] == calls - getppid.lat[0].count, why


def test_la57_raises_the_noncanonical_limit(workloads):
    # With 5-level paging TASK_SIZE_MAX is 2^56 - 4096: the workload's
    # RIP 0x8000000000000000 still fails, with the same reason.
    s = collect(workloads, ["rip_noncanonical", str(N)],
                assume={"la57": True})
    assert s.totals.reasons()["rip_noncanonical"] == N
    assert s.meta["guard"]["task_size_max"] == (1 << 56) - 4096


def test_system_wide_sees_the_workload(workloads):
    col = Collector(Options())
    col.start()
    try:
        p = subprocess.run([os.path.join(workloads, "retpaths"), "signal",
                            str(N)], capture_output=True)
        assert p.returncode == 0
        s = col.stop()
    finally:
        col.close()
    rows = [r for r in s.processes.values()
            if r.fields["comm"] == "retpaths"]
    assert len(rows) == 1
    c = rows[0].counts
    # Forked after attach: its first return, from clone, is seen too.
    assert c.reasons() == {"signal": N, "rcx_ne_rip": 1, "fork_child": 1}
    # Returns of processes that came and went are all attributed.
    assert check_invariants(s) == []
    assert s.meta["lost"]["unattributed_processes"] == 0
    # The collector never counts itself.
    assert os.getpid() not in {r.fields["pid"] for r in s.processes.values()}


def test_pid_filter_keeps_only_that_process(workloads):
    # The sleeper's loop starts once tracing has (a line on stdin): 200
    # getppid calls and 200 sleeps, each a return, all after attach.
    sleeper = subprocess.Popen([sys.executable, "-c",
                                "import sys,time,os\nsys.stdin.readline()\n"
                                "for _ in range(200):\n"
                                " os.getppid(); time.sleep(0.005)"],
                               stdin=subprocess.PIPE)
    col = Collector(Options(pids=(sleeper.pid,)))
    col.start()
    try:
        sleeper.stdin.write(b"go\n")
        sleeper.stdin.close()
        subprocess.run([os.path.join(workloads, "retpaths"), "signal", "5"],
                       check=True, capture_output=True)
        assert sleeper.wait() == 0
        s = col.stop()
    finally:
        col.close()
        if sleeper.poll() is None:
            sleeper.kill()
    assert {r.fields["pid"] for r in s.processes.values()} == {sleeper.pid}
    assert s.totals.returns >= 400


# Waits for a line, makes syscalls whose latencies span the histogram
# (getppid: ~100 ns; sleeps: 1 us to 20 ms), says so, waits again.
SPREAD = """
import os, sys, time
sys.stdin.readline()
for i in range(200):
    os.getppid()
for d in (1e-6, 1e-5, 1e-4, 1e-3, 5e-3, 2e-2):
    for _ in range(3):
        time.sleep(d)
print("done", flush=True)
sys.stdin.readline()
"""


def wait_blocked(pid, timeout=30):
    """Until the process sleeps (state S): it has been switched out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "S":
                return
        time.sleep(0.01)
    raise AssertionError("process %d never blocked" % pid)


def test_live_process_histogram_is_exact():
    """A live process's histograms come from the task dump (the buckets
    its bitmap marks); with one process traced they must equal, bucket
    for bucket, the per-syscall ones, counted separately."""
    child = subprocess.Popen([sys.executable, "-c", SPREAD], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    col = Collector(Options(pids=(child.pid,)))
    try:
        col.start()
        col.snapshot()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        wait_blocked(child.pid)     # in read again: switched out, flushed
        s = col.snapshot()
        (row,) = s.processes.values()
        fast = row.counts.lat[0]
        assert fast.count >= 200 + 18
        assert fast == s.totals.lat[0] and \
            row.counts.lat[1] == s.totals.lat[1]
        assert row.counts.n == s.totals.n
        # Buckets in at least three of the bitmap's 64-bucket words.
        assert len({b // 64 for b in fast.buckets}) >= 3
    finally:
        child.kill()
        child.wait()
        col.close()


def test_threads_sum_to_their_process(workloads):
    s = collect(workloads, ["rseq", "20"])
    for key, proc in s.processes.items():
        threads = [t for t in s.threads.values()
                   if t.fields["pid"] == proc.fields["pid"]]
        assert sum(t.counts.returns for t in threads) == proc.counts.returns


def bpf_prog_ids_of(pid):
    """IDs of the BPF programs whose fds process `pid` holds (fdinfo)."""
    ids = set()
    base = "/proc/%d/fdinfo" % pid
    try:
        fds = os.listdir(base)
    except OSError:
        return ids
    for fd in fds:
        try:
            with open(os.path.join(base, fd)) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def bpf_prog_ids():
    """IDs of every BPF program loaded on the host."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"],
                         capture_output=True, text=True, check=True).stdout
    return {p["id"] for p in json.loads(out or "[]")}


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_nothing_stays_attached(run_cli, tmp_path, how):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    out = tmp_path / "k.data"
    p = subprocess.Popen([sys.executable, "-m", "sysretstat", "record",
                          "-o", str(out)], env=env,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        ids = set()
        while time.time() < deadline and not ids:
            time.sleep(0.2)
            ids = bpf_prog_ids_of(p.pid)
        assert ids, "record never loaded its programs"
        # Wait until the file, still being written, reports some returns.
        deadline = time.time() + 20
        while time.time() < deadline:
            time.sleep(0.3)
            r = run_cli("report", out, "--json")
            if r.returncode == 0 and \
                    json.loads(r.stdout)["totals"]["returns"]:
                break
        p.send_signal(getattr(signal, how))
        p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # The kernel frees programs and links with their last fd.
    deadline = time.time() + 10
    while time.time() < deadline and ids & bpf_prog_ids():
        time.sleep(0.1)
    assert not ids & bpf_prog_ids()
    # What was recorded is readable either way.
    r = run_cli("report", out, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["returns"] > 0
    # A killed recording has no end record, and report says so.
    interrupted = "warning" in r.stderr and "interrupted" in r.stderr
    if how == "SIGKILL":
        assert interrupted, r.stderr
    else:
        assert p.returncode == 0 and not interrupted, r.stderr
