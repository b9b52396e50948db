"""Exact return-path counts on the real kernel, for workloads whose paths
are known by construction (tests/workloads/README.md).

Each workload runs under `sysretstat record -o F -- CMD`; `report F --json`
must give exactly the expected reasons for the command's process tree
and for the syscall that produced them, and the spec's invariants.
"""

import json
import os
import re
import subprocess

import pytest

from sysretstat.kernel import hostinfo
from sysretstat.model.snapshot import Snapshot, check_invariants
from sysretstat.render import prometheus

pytestmark = pytest.mark.bpf
N = 40
EXEC = {"rcx_ne_rip": 1}       # the workload's own execve


def record(run_cli, tmp_path, argv, *extra):
    out = tmp_path / "r.data"
    p = run_cli("record", "-o", out, *extra, "--", *argv)
    assert p.returncode == 0, p.stderr
    r = run_cli("report", out, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert negatives(doc) == []
    snap = Snapshot.from_report(doc)
    assert check_invariants(snap) == [], check_invariants(snap)
    lost = doc["meta"]["lost"]
    assert all(v == 0 for v in lost.values()), lost
    # Per-process latency (task dump and exit records) and the totals
    # (per-CPU syscall tables) come from different maps: they must agree.
    for path, h in doc["totals"].get("latency_ns", {}).items():
        assert sum(pr["latency_ns"][path]["count"]
                   for pr in doc["processes"]) == h["count"], path
        assert sum(pr["latency_ns"][path]["sum"]
                   for pr in doc["processes"]) == h["sum"], path
    # A final report's reason detail sums to its reason, in every row.
    for t in ("processes", "syscalls", "cpus"):
        for row in [doc["totals"]] + doc[t]:
            assert detail_sums(row) == {
                r: n for r, n in row["reasons"].items() if r in DETAILED}, row
    return doc, p


# The reasons with a detail (sysretstat(8): reason_detail).
DETAILED = ("signal", "restart", "ptrace", "fork_child")


def detail_sums(row):
    return {r: sum(by.values())
            for r, by in row.get("reason_detail", {}).items()}


def negatives(doc, path=""):
    """Every count, bucket or sum below zero in a report (a syscall's
    number is an identity, not a count)."""
    if isinstance(doc, dict):
        return [n for k, v in doc.items() if k != "nr"
                for n in negatives(v, path + "." + str(k))]
    if isinstance(doc, list):
        return [n for i, v in enumerate(doc)
                for n in negatives(v, "%s[%d]" % (path, i))]
    if isinstance(doc, (int, float)) and not isinstance(doc, bool) \
            and doc < 0:
        return [(path, doc)]
    return []


def syscall(doc, name, abi="x64"):
    rows = [s for s in doc["syscalls"] if s["name"] == name
            and s["abi"] == abi]
    assert len(rows) == 1, (name, [s["name"] for s in doc["syscalls"]])
    return rows[0]


def merged(*dicts):
    out = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


# scenario -> (expected reasons of the whole tree, {syscall: reasons},
#              {syscall: sysret count})
GUARD = ("r11_ne_rflags", "cs_not_user", "ss_not_user", "rip_noncanonical",
         "rflags_rf", "rflags_tf")
CASES = {
    "sysret": ({}, {}, {"getppid": N}),
    "signal": ({"signal": N}, {"tgkill": {"signal": N}},
               {"rt_sigreturn": N}),
    "rcx_ne_rip": ({"signal": N, "rcx_ne_rip": N},
                   {"rt_sigreturn": {"rcx_ne_rip": N},
                    "tgkill": {"signal": N}}, {}),
    "restart": ({"restart": N, "fork_child": 1}, {"read": {"restart": N}},
                {}),
    "fork": ({"fork_child": N}, {"clone": {"fork_child": N}}, {}),
    "exec": ({"rcx_ne_rip": N}, {"execve": {"rcx_ne_rip": N + 1}}, {}),
    "ptrace": ({"ptrace": N, "fork_child": 1},
               {"getppid": {"ptrace": N}}, {}),
    # Tracer edits the old code missed: after PTRACE_DETACH, with
    # orig_rax = -1 (gdb), at a signal-delivery stop.
    "ptrace_detach": ({"ptrace": N, "fork_child": N},
                      {"getppid": {"ptrace": N}}, {}),
    "ptrace_origax": ({"ptrace": N, "fork_child": 1},
                      {"getppid": {"ptrace": N}}, {}),
    "ptrace_sigstop": ({"ptrace": N, "fork_child": 1},
                       {"tgkill": {"ptrace": N}}, {}),
    # At a group stop (PTRACE_SEIZE, PTRACE_EVENT_STOP), and a
    # PTRACE_SINGLESTEP from the exit stop (TF set by the tracer).
    "ptrace_groupstop": ({"ptrace": N, "fork_child": 1},
                         {"tgkill": {"ptrace": N}}, {}),
    "ptrace_step": ({"ptrace": N, "fork_child": 1},
                    {"getppid": {"ptrace": N}}, {}),
    # -ERESTARTSYS turned into -EINTR at the exit stop: no restart (the
    # tracee checks it got -EINTR N times).
    "ptrace_eintr": ({"fork_child": 1}, {"read": {}}, {}),
}
for g in GUARD:
    CASES[g] = ({"signal": N, g: N}, {"rt_sigreturn": {g: N},
                                      "tgkill": {"signal": N}},
                {"rt_sigreturn": N} if g == "rflags_tf" else {})


# scenario -> the totals' reason_detail (the workload's own, without
# the launcher's: see test_retpaths_exact).
SIGUSR1 = {"signal": {"SIGUSR1": N}}
DETAIL = {
    "signal": SIGUSR1,
    "restart": {"restart": {"ERESTARTSYS": N},
                "fork_child": {"process": 1}},
    "fork": {"fork_child": {"process": N}},
    "ptrace": {"ptrace": {"retpaths": N}, "fork_child": {"process": 1}},
    "ptrace_detach": {"ptrace": {"retpaths": N},
                      "fork_child": {"process": N}},
    "ptrace_sigstop": {"ptrace": {"retpaths": N},
                       "fork_child": {"process": 1}},
}
for g in GUARD + ("rcx_ne_rip",):
    DETAIL[g] = SIGUSR1


@pytest.mark.parametrize("scenario", sorted(CASES))
def test_retpaths_exact(run_cli, workloads, tmp_path, scenario):
    tree, per_syscall, sysrets = CASES[scenario]
    doc, p = record(run_cli, tmp_path,
                    [os.path.join(workloads, "retpaths"), scenario, N])
    assert "ok %s %d" % (scenario if scenario != "exec" else "exec", N) \
        in p.stdout
    assert doc["totals"]["reasons"] == merged(EXEC, tree)
    if scenario in DETAIL:
        assert doc["totals"]["reason_detail"] == DETAIL[scenario]
    for name, reasons in per_syscall.items():
        assert syscall(doc, name)["reasons"] == reasons, name
    for name, n in sysrets.items():
        s = syscall(doc, name)
        assert s["paths"]["sysret"] == n, name
        # Every return of these had its entry seen: one latency sample each.
        assert s["latency_ns"]["sysret"]["count"] == n
    # The command is one process here (or its children), all in the tree.
    assert sum(pr["returns"] for pr in doc["processes"]) == \
        doc["totals"]["returns"]


def test_go_style_preemption_signals_by_signal(run_cli, workloads, tmp_path):
    # Two threads each send themselves N SIGURG (as Go's runtime
    # preempts) and a SIGALRM every fourth time, each with a handler:
    # `signal` broken down by signal, in the totals, the process, the
    # syscall, each thread, and the Prometheus exposition.
    doc, p = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "sigurg", N])
    assert "ok sigurg %d" % N in p.stdout
    alrm = 2 * ((N + 3) // 4)
    signals = {"SIGURG": 2 * N, "SIGALRM": alrm}
    assert doc["totals"]["reasons"] == merged(
        EXEC, {"signal": 2 * N + alrm, "fork_child": 1})
    assert doc["totals"]["reason_detail"] == {
        "signal": signals, "fork_child": {"thread": 1}}
    (proc,) = doc["processes"]
    assert proc["reason_detail"]["signal"] == signals
    assert syscall(doc, "tgkill")["reason_detail"] == {"signal": signals}
    r = run_cli("report", tmp_path / "r.data", "--json", "--by", "thread")
    threads = json.loads(r.stdout)["threads"]
    assert sorted(t.get("reason_detail", {}).get("signal", {}).get(
        "SIGURG", 0) for t in threads) == [N, N]
    # The daemon's exposition of this snapshot.
    text = prometheus.render(Snapshot.from_report(doc))
    for sig, n in signals.items():
        assert 'sysretstat_reason_detail_total{reason="signal",' \
            'detail="%s"} %d' % (sig, n) in text.splitlines(), text


def test_rip_at_task_size_max_follows_the_kernels_guard(run_cli, workloads,
                                                       tmp_path):
    # rt_sigreturn to RIP = TASK_SIZE_MAX with RCX == RIP, R11 == RFLAGS.
    # Linux <= 6.6 tests that RIP is canonical and takes SYSRET; 6.7+
    # tests RIP < TASK_SIZE_MAX and takes IRET.  The expectation comes
    # from the kernel's version (both kernels' entry code is known), the
    # tool's choice from BTF: they must agree.
    doc, p = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "rip_top_page", N])
    assert "ok rip_top_page %d" % N in p.stdout
    sr = syscall(doc, "rt_sigreturn")
    if hostinfo.kernel_version() < (6, 7):
        assert sr["reasons"] == {} and sr["paths"]["sysret"] == N
        tree = {"signal": N}
    else:
        assert sr["reasons"] == {"rip_noncanonical": N}
        tree = {"signal": N, "rip_noncanonical": N}
    assert doc["totals"]["reasons"] == merged(EXEC, tree)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPUs 0 and 1")
def test_return_counted_on_the_cpu_it_ran(run_cli, workloads, tmp_path):
    # Each getppid enters on CPU 0, its tracer breaks RCX at the exit
    # stop and moves it to CPU 1, where it returns by IRET.  The old code
    # counted SYSRET on CPU 0 and corrected it on CPU 1: -N there.
    doc, p = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "ptrace_migrate", N])
    assert "ok ptrace_migrate %d" % N in p.stdout
    assert syscall(doc, "getppid")["reasons"] == {"ptrace": N}
    cpus = {c["cpu"]: c for c in doc["cpus"]}
    assert cpus[1]["reasons"].get("ptrace") == N
    assert cpus.get(0, {"reasons": {}})["reasons"].get("ptrace", 0) == 0
    for c in cpus.values():
        assert c["paths"]["iret"] <= c["returns"]


def test_exec_from_a_thread(run_cli, workloads, tmp_path):
    # A second thread execs: de_thread() kills the leader and gives the
    # thread the leader's pid (and start time).  Each life is counted
    # once: the leader, the thread before exec (an exit record under its
    # old tid), the thread after (from zero); the process keeps the
    # latency of both images (record() checks it against the totals).
    n = 20
    doc, p = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "exec_thread", n])
    assert "ok exec_thread %d" % n in p.stdout
    assert doc["totals"]["reasons"] == merged(
        EXEC, {"fork_child": 2 * n, "rcx_ne_rip": n})
    total = doc["totals"]["returns"]
    assert sum(pr["returns"] for pr in doc["processes"]) == total
    r = run_cli("report", tmp_path / "r.data", "--json", "--by", "thread")
    threads = json.loads(r.stdout)["threads"]
    assert sum(t["returns"] for t in threads) == total
    assert len(threads) == 3 * n + 1
    assert all(v == 0 for v in doc["meta"]["lost"].values())


def test_threads_ending_in_exit_group(run_cli, workloads, tmp_path):
    # 200 processes of 8 busy threads each end with exit_group: do_exit()
    # runs on all threads at once, and more than one saw the group dead
    # (signal->live read after another's decrement).  record() asserts
    # that no exit record was lost and that per-process latency adds up
    # to the totals.  The old code lost about one run in three.
    n = 200
    doc, p = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "threads", n])
    assert "ok threads %d" % n in p.stdout
    assert doc["totals"]["reasons"] == merged(EXEC, {"fork_child": 9 * n})
    assert len([pr for pr in doc["processes"]]) >= n


@pytest.mark.parametrize("mode", [(), ("--no-latency",)],
                         ids=["latency", "counts-only"])
def test_seccomp_errno_512_is_not_a_restart(run_cli, workloads, tmp_path,
                                            mode):
    # errno 512 (ERESTARTSYS's number) from a seccomp filter: the call
    # never ran and the kernel restarts nothing (the workload checks
    # each returned -512); every one returns by SYSRET.  Decided from
    # the pending signal work, not from the entry event, so counts-only
    # mode (no sys_enter) gets it right too.
    doc, p = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "seccomp_errno", N], *mode)
    assert "ok seccomp_errno %d" % N in p.stdout
    g = syscall(doc, "getppid")
    assert g["reasons"] == {} and g["paths"]["sysret"] == N
    assert doc["totals"]["reasons"] == EXEC


def test_syscall_minus_one_is_not_x32(run_cli, workloads, tmp_path):
    doc, p = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "nosys", N])
    assert "ok nosys %d" % N in p.stdout
    assert [s for s in doc["syscalls"] if s["abi"] == "x32"] == []
    u = syscall(doc, "unknown")
    assert u["paths"]["sysret"] == N and u["reasons"] == {}


def test_signal_on_interrupt_return_is_not_charged(run_cli, workloads,
                                                   tmp_path):
    # getppid and write return; the process spins; a child's signal comes
    # 2 ms later and is delivered on an interrupt return: no syscall
    # return is charged with it, and the handler's rt_sigreturn goes back
    # to the interrupted loop (IRET, RCX != RIP).  On a loaded machine
    # the parent may still be on its way out of write when the signal
    # comes: then that write's return rightly gets the frame, and the
    # sigreturn goes back to a syscall return (SYSRET).  Never getppid's.
    doc, _ = record(run_cli, tmp_path, [os.path.join(workloads, "retpaths"),
                                        "async_signal", N])
    on_write = syscall(doc, "write")["reasons"].get("signal", 0)
    assert syscall(doc, "getppid")["reasons"] == {}
    assert syscall(doc, "getppid")["paths"]["sysret"] == N
    assert syscall(doc, "write")["reasons"] in ({}, {"signal": on_write})
    sr = syscall(doc, "rt_sigreturn")
    assert sr["reasons"] == ({"rcx_ne_rip": N - on_write}
                             if on_write < N else {})
    assert sr["paths"]["sysret"] == on_write
    assert doc["totals"]["reasons"] == merged(
        EXEC, {"fork_child": 1}, {"rcx_ne_rip": N - on_write} if
        on_write < N else {}, {"signal": on_write} if on_write else {})


def test_rseq_aborts_counted(run_cli, workloads, tmp_path):
    doc, p = record(run_cli, tmp_path,
                    [os.path.join(workloads, "retpaths"), "rseq", N])
    k = int(re.search(r"aborted=(\d+)", p.stdout).group(1))
    assert k > 0
    assert doc["totals"]["reasons"] == merged(EXEC, {"rseq": k,
                                                     "fork_child": 1})
    assert syscall(doc, "sched_yield")["reasons"] == {"rseq": k}


def test_latency_paths_follow_outcomes(run_cli, workloads, tmp_path):
    doc, _ = record(run_cli, tmp_path,
                    [os.path.join(workloads, "retpaths"), "signal", N])
    tg = syscall(doc, "tgkill")
    # The signal frame moved each tgkill return, and its latency sample,
    # from the SYSRET path to the IRET path.
    assert tg["latency_ns"]["iret"]["count"] == N
    assert tg["latency_ns"]["sysret"]["count"] == 0
    assert tg["latency_ns"]["iret"]["p50"] > 0


@pytest.mark.parametrize("scenario", ["signal", "ptrace", "restart"])
def test_counts_only_mode_gives_same_reasons(run_cli, workloads, tmp_path,
                                             scenario):
    tree = CASES[scenario][0]
    doc, _ = record(run_cli, tmp_path,
                    [os.path.join(workloads, "retpaths"), scenario, N],
                    "--no-latency")
    assert doc["totals"]["reasons"] == merged(EXEC, tree)
    assert "latency_ns" not in doc["totals"] or \
        doc["totals"]["latency_ns"]["sysret"]["count"] == 0


def compat(run_cli, workloads, tmp_path, *args):
    return record(run_cli, tmp_path,
                  [os.path.join(workloads, "compat32")] + list(args))[0]


def test_int80_always_iret(run_cli, workloads, tmp_path):
    base = compat(run_cli, workloads, tmp_path, "int80", 0)
    doc = compat(run_cli, workloads, tmp_path, "int80", N)
    # glibc's 32-bit loader itself uses int $0x80: compare with N=0.
    assert doc["totals"]["reasons"]["int80"] - \
        base["totals"]["reasons"]["int80"] == N
    assert syscall(doc, "getppid", "i386")["reasons"] == {"int80": N}


def test_fast_syscall_sysretl(run_cli, workloads, tmp_path):
    doc = compat(run_cli, workloads, tmp_path, "fast", N)
    g = syscall(doc, "getppid", "i386")
    assert g["paths"] == {"sysret": N, "iret": 0, "eretu": 0}


@pytest.mark.parametrize("scenario,readv,handler", [
    # No handler (SIGSTOP/SIGCONT): the first return restarts the call on
    # the vDSO's int $0x80, and every re-run enters and leaves by it.
    ("restart", {"restart": 1, "int80": N}, False),
    # SA_RESTART: the frame is built on the first return; the sigreturn
    # goes back to the int $0x80, so the re-runs are int80 again.
    ("restart_sa", {"signal": 1, "int80": N}, True),
    # No SA_RESTART: -EINTR, and the child calls readv again (fast path).
    ("restart_eintr", {"signal": N}, True),
])
def test_compat_fast_syscall_interrupted(run_cli, workloads, tmp_path,
                                         scenario, readv, handler):
    doc = compat(run_cli, workloads, tmp_path, scenario, N)
    assert syscall(doc, "readv", "i386")["reasons"] == readv
    if scenario == "restart":
        # A compat syscall's return value is an int: its code still reads.
        assert syscall(doc, "readv", "i386")["reason_detail"] == {
            "restart": {"ERESTARTSYS": 1}}
    if handler:
        # The handler's own fast calls are SYSRETL, not taken for the
        # int $0x80 re-run (getppid, then its write to the parent).
        g = syscall(doc, "getppid", "i386")
        assert g["reasons"] == {} and g["paths"]["sysret"] == N
        assert syscall(doc, "sigreturn", "i386")["reasons"] == {"int80": N}


def test_compat_tracer_rewind(run_cli, workloads, tmp_path):
    # A 32-bit debugger re-runs each fast getppid: EIP back onto the
    # vDSO's int $0x80 at the exit stop.  That return fails the SYSRETL
    # predicate by the tracer's hand; the re-run is int80.
    doc = compat(run_cli, workloads, tmp_path, "rewind", N)
    g = syscall(doc, "getppid", "i386")
    assert g["reasons"] == {"ptrace": N, "int80": N}
    assert g["paths"]["sysret"] == 0


def test_compat_entry_follows_the_cpu_vendor(workloads):
    # The fast path the SYSRETL tests exercise enters with SYSENTER on
    # Intel and SYSCALL on AMD, as the kernel patched the vDSO; read
    # from its code, not from the tool.
    out = subprocess.run([os.path.join(workloads, "compat32"), "entry"],
                         capture_output=True, text=True, check=True).stdout
    want = {"intel": "sysenter", "amd": "syscall", "hygon": "syscall"}
    assert out.strip() == "entry " + want[hostinfo.cpu_vendor()]


def test_compat_guard_on_exec_from_fast_path(run_cli, workloads, tmp_path):
    doc = compat(run_cli, workloads, tmp_path, "exec",
                 os.path.join(workloads, "retpaths"), "exec_done", "1")
    assert syscall(doc, "execve", "i386")["reasons"] == {"compat_guard": 1}


@pytest.fixture
def churn(workloads):
    """30 processes sleeping 100 us and calling getppid in a loop: every
    CPU switches tasks all the time, and programs get preempted."""
    procs = [subprocess.Popen([os.path.join(workloads, "retpaths"), "churn",
                               "1000000"], stdout=subprocess.DEVNULL)
             for _ in range(30)]
    yield
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


@pytest.mark.parametrize("scenario", ["signal", "restart"])
def test_exact_under_load(run_cli, workloads, tmp_path, churn, scenario):
    # The per-CPU state cache is claimed and flushed across thousands of
    # context switches here; counts stay exact and nothing is lost
    # (record() asserts every meta.lost counter is zero).
    tree = CASES[scenario][0]
    doc, _ = record(run_cli, tmp_path,
                    [os.path.join(workloads, "retpaths"), scenario, N])
    assert doc["totals"]["reasons"] == merged(EXEC, tree)
