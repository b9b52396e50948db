"""record -- COMMAND follows the command's whole process tree, however
many processes it forks: the selection is inherited in task storage at
fork, not kept in a table of pids (which filled at 4,095 and silently
dropped the rest)."""

import json
import os

import pytest

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

# Well past the 4,096-entry table the selection used to live in.
FORKS = 6000


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
    assert all(v == 0 for v in doc["meta"]["lost"].values()), \
        doc["meta"]["lost"]
    # Every child is a traced process of its own: the parent and FORKS.
    assert len(doc["processes"]) == FORKS + 1
