"""record -- COMMAND follows the command's whole process tree, however
many processes it forks: the selection is inherited in task storage at
fork, not kept in a table of pids (which filled at 4,095 and silently
dropped the rest)."""

import json
import os
import subprocess

import pytest

from sysretstat.source.collector import Collector
from sysretstat.source.launch import GatedCommand
from sysretstat.kernel.tracer import Options

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

# Well past the 4,096-entry table the selection used to live in, and
# past the collector's bound on remembered processes (16,384).
FORKS = 20000


def test_filtered_run_keeps_nothing_for_other_tasks(workloads):
    # State is created only for selected tasks: the dump of a run
    # filtered to one command holds that command's threads only, however
    # busy the rest of the host is.  (It held every task that made a
    # syscall, each dumped again every interval.)
    busy = subprocess.Popen([os.path.join(workloads, "retpaths"), "churn",
                             "1000000"], stdout=subprocess.DEVNULL)
    cmd = GatedCommand([os.path.join(workloads, "retpaths"), "fork", "20"])
    col = Collector(Options(filter=True))
    try:
        col.start()
        col.add_pid(cmd.pid, follow=True)
        raw = col.tracer.read()     # the churn runs meanwhile
        assert cmd.wait() == 0
        raw2 = col.tracer.read()
    finally:
        busy.kill()
        busy.wait()
        col.close()
    tgids = {t[1] for r in (raw, raw2) for t in r.threads + r.exited_threads}
    assert busy.pid not in tgids
    assert cmd.pid in tgids
    assert len(tgids) <= 21


def test_record_follows_a_tree_bigger_than_any_table(run_cli, workloads,
                                                     tmp_path):
    out = tmp_path / "r.data"
    p = run_cli("record", "-o", out, "--",
                os.path.join(workloads, "retpaths"), "fork", FORKS)
    assert p.returncode == 0, p.stderr
    assert "ok fork %d" % FORKS in p.stdout
    r = run_cli("report", out, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    # One first return per child (fork_child), the command's own execve.
    assert doc["totals"]["reasons"] == {"fork_child": FORKS,
                                        "rcx_ne_rip": 1}
    lost = doc["meta"]["lost"]
    # Nothing is lost in the kernel; the collector keeps at most 16,384
    # processes and folds the oldest exited ones away, saying how many
    # and how many returns they had.
    assert {k: v for k, v in lost.items() if v and k not in (
        "evicted_processes", "unattributed_processes")} == {}, lost
    # Every child is a traced process of its own: the parent and FORKS.
    assert len(doc["processes"]) + lost["evicted_processes"] == FORKS + 1
    assert sum(pr["returns"] for pr in doc["processes"]) + \
        lost["unattributed_processes"] == doc["totals"]["returns"]
