"""Counts only grow: every count, bucket and sum of a live collection is
at least what the previous read showed, and no interval delta is
negative, while workloads make the verdicts that used to be corrected
after the fact: restarts under SIGSTOP/SIGCONT, tracer edits (one moving
its tracee across CPUs between the exit stop and the return), signal
frames, and forks that exit at once."""

import os
import subprocess

import pytest

from sysretstat.source.collector import Collector
from sysretstat.kernel.tracer import Options

pytestmark = pytest.mark.bpf

LOAD = [("restart", 40), ("ptrace_migrate", 300), ("ptrace_eintr", 30),
        ("ptrace_sigstop", 300), ("signal", 300), ("fork", 300),
        ("rcx_ne_rip", 300)]


def values(counts):
    """A Counts as {name: value}: outcomes, then each path's buckets and
    sum."""
    out = {("n", i): v for i, v in enumerate(counts.n)}
    for p, h in enumerate(counts.lat or ()):
        out[("sum", p)] = h.sum_ns
        for b, v in h.buckets.items():
            out[("b", p, b)] = v
    return out


def rows(snap):
    out = {("totals",): snap.totals}
    for t in ("cpus", "syscalls", "processes", "threads"):
        for k, r in snap.table(t).items():
            out[(t, k)] = r.counts
    return out


def shrunk(old, new):
    """What went down from snapshot old to new.  Per-process and
    per-thread rows of a live read are held to counts and sums (see
    collector._floor); their buckets are checked in the final read."""
    bad = []
    new_rows = rows(new)
    for key, c in rows(old).items():
        if key not in new_rows:
            continue        # an evicted row; none expected here
        now = values(new_rows[key])
        for name, v in values(c).items():
            if key[0] in ("processes", "threads") and name[0] == "b":
                continue
            if now.get(name, 0) < v:
                bad.append((key, name, v, now.get(name, 0)))
    return bad


def negative(delta):
    bad = []
    for key, c in rows(delta).items():
        bad += [(key, n, v) for n, v in values(c).items() if v < 0 and not
                (key[0] in ("processes", "threads") and n[0] == "b")]
    return bad


def under_load(workloads, check):
    """Run LOAD, calling check() while it runs and once after it ended;
    returns how many times check() ran."""
    procs = []
    try:
        procs = [subprocess.Popen([os.path.join(workloads, "retpaths"),
                                   name, str(n)], stdout=subprocess.DEVNULL)
                 for name, n in LOAD]
        checks = 0
        while True:
            done = all(p.poll() is not None for p in procs)
            check()
            checks += 1
            if done:
                break
        assert [p.returncode for p in procs] == [0] * len(procs)
        return checks
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPUs 0 and 1")
def test_counts_never_go_down(workloads):
    col = Collector(Options())
    col.start()
    try:
        last = [col.snapshot()]

        def check():
            snap = col.snapshot()
            assert shrunk(last[0], snap) == []
            assert negative(snap.delta(last[0])) == []
            last[0] = snap

        assert under_load(workloads, check) > 3
        # The load did produce the verdicts in question.
        reasons = last[0].totals.reasons()
        for r in ("restart", "ptrace", "signal", "fork_child"):
            assert reasons.get(r, 0) > 0, r
    finally:
        col.close()


def counter_samples(fams):
    """{(name, labels): value} of every counter and histogram series."""
    out = {}
    for fam in fams.values():
        if fam["type"] not in ("counter", "histogram"):
            continue
        for name, labels, v in fam["samples"]:
            out[(name, tuple(sorted(labels.items())))] = v
    return out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPUs 0 and 1")
def test_daemon_exports_never_go_down(workloads):
    # Every sysretstat_*_total and histogram series scraped from a live
    # daemon is at least what the previous scrape showed, and no
    # interval document holds a negative count, bucket or sum, while
    # the load above runs (SIGSTOP/SIGCONT, tracer edits across CPUs,
    # exits).
    from test_daemon import get, start_daemon, stop_daemon
    from test_prometheus import parse_metrics
    from test_classify import negatives
    import json

    p, url = start_daemon("-i", "0.1", "--expose-processes")
    try:
        prev = counter_samples(parse_metrics(get(url + "/metrics")[2]
                                             .decode()))

        def check():
            now = counter_samples(parse_metrics(get(url + "/metrics")[2]
                                                .decode()))
            down = [(k, v, now[k]) for k, v in prev.items()
                    if k in now and now[k] < v]
            assert down == []
            iv = json.loads(get(url + "/api/v1/interval")[2])
            # unattributed_* is a gap, not a count: an interval's is its
            # change, negative when the tables caught up (it keeps each
            # interval's tables summing to its totals).
            assert [n for n in negatives(iv)
                    if not n[0].startswith(".meta.lost.unattributed_")] == []
            prev.update(now)

        assert under_load(workloads, check) > 3
    finally:
        stop_daemon(p)
