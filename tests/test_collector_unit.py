"""The collector (source/collector.py) on synthetic kernel reads: a fake
tracer hands it RawRead values, so change tracking, the floor of live
reads, eviction and exits are checked without BPF or privilege."""

import pytest
from fake_tracer import FakeTracer

from sysretstat.kernel import abi
from sysretstat.kernel.tracer import Options, RawRead
from sysretstat.model.snapshot import check_invariants
from sysretstat.source.collector import Collector

SYSRET = abi.OUTCOMES.index("sysret")
SIGNAL = abi.OUTCOMES.index("signal")


def n(sysret=0, signal=0):
    v = [0] * abi.NR_OUTCOMES
    v[SYSRET], v[SIGNAL] = sysret, signal
    return v


def raw(total, threads=(), procs=(), exited_threads=(), exited_procs=(),
        live=(), details=()):
    """A RawRead whose per-syscall table holds `total` (counts list) on
    CPU 0: the collector takes totals from there."""
    return RawRead(slots=[{0: list(total)}, {}], slot_hists={},
                   threads=list(threads), procs=list(procs),
                   exited_threads=list(exited_threads),
                   exited_procs=list(exited_procs), lost={}, live=list(live),
                   details=list(details))


def thread(tid, tgid, counts, comm="w", start=None, leader_start=None,
           cgroup=0):
    return (tid, tgid, tid * 10 if start is None else start,
            tgid * 10 if leader_start is None else leader_start, comm,
            counts, cgroup)


def live(tid, tgid, counts, comm="w"):
    return {"tid": tid, "tgid": tgid, "start_ns": tid * 10,
            "leader_start_ns": tgid * 10, "comm": comm, "n": counts,
            "hist": [(0, b"", 0), (0, b"", 0)]}


@pytest.fixture
def make():
    made = []

    def make(latency=False, **kw):
        fake = FakeTracer()
        col = Collector(Options(latency=latency), tracer=fake,
                        clock=iter(range(1000)).__next__, **kw)
        col.start()
        made.append(col)
        return col, fake
    yield make
    for col in made:
        col.close()


def snap(col, fake, read):
    fake.reads.append(read)
    s = col.snapshot()
    assert check_invariants(s) == []
    return s


def test_unchanged_rows_are_shared_changed_rows_replaced(make):
    col, fake = make()
    s1 = snap(col, fake, raw(n(15, 1), threads=[
        thread(10, 10, n(5)), thread(11, 10, n(3, 1)),
        thread(20, 20, n(7))]))
    assert s1.threads[(11, 110)].counts.n == n(3, 1)
    assert s1.processes[(10, 100)].counts.n == n(8, 1)
    # The next dump holds only what changed: thread 11.
    s2 = snap(col, fake, raw(n(19, 1), threads=[thread(11, 10, n(7, 1))]))
    assert s2.threads[(10, 100)] is s1.threads[(10, 100)]
    assert s2.threads[(20, 200)] is s1.threads[(20, 200)]
    assert s2.processes[(20, 200)] is s1.processes[(20, 200)]
    assert s2.threads[(11, 110)] is not s1.threads[(11, 110)]
    assert s2.threads[(11, 110)].counts.n == n(7, 1)
    assert s2.processes[(10, 100)].counts.n == n(12, 1)
    # What was handed out is never changed afterwards.
    assert s1.threads[(11, 110)].counts.n == n(3, 1)
    assert s1.processes[(10, 100)].counts.n == n(8, 1)
    # A read where nothing changed shares every row.
    s3 = snap(col, fake, raw(n(19, 1)))
    for t in ("threads", "processes"):
        a, b = s2.table(t), s3.table(t)
        assert a.keys() == b.keys()
        assert all(a[k] is b[k] for k in a)
    assert s3.meta["lost"]["unattributed_threads"] == 0
    assert s3.meta["lost"]["unattributed_processes"] == 0


def test_a_thread_with_no_returns_has_no_row(make):
    col, fake = make()
    s = snap(col, fake, raw(n(4), threads=[thread(10, 10, n(4)),
                                           thread(11, 10, n())]))
    assert set(s.threads) == {(10, 100)}
    assert s.processes[(10, 100)].fields["comm"] == "w"


def test_live_deltas_are_replaced_each_read_not_added(make):
    col, fake = make()
    s1 = snap(col, fake, raw(n(8), threads=[thread(10, 10, n(5))],
                             live=[live(10, 10, n(3))]))
    assert s1.threads[(10, 100)].counts.n == n(8)
    # The cache was flushed: storage (in the dump) has it all, the
    # cache holds new deltas only.
    s2 = snap(col, fake, raw(n(10), threads=[thread(10, 10, n(8))],
                             live=[live(10, 10, n(2))]))
    assert s2.threads[(10, 100)].counts.n == n(10)
    assert s2.processes[(10, 100)].counts.n == n(10)
    # Known only from a cache (never flushed yet): a row all the same.
    s3 = snap(col, fake, raw(n(11), live=[live(30, 30, n(1), "new")]))
    assert s3.threads[(30, 300)].counts.n == n(1)
    assert s3.processes[(30, 300)].fields["comm"] == "new"
    # Thread 10 left the cache: its deltas went to storage, which the
    # dump does not show yet (see _floor).
    assert s3.threads[(10, 100)].counts.n == n(10)


def test_live_counts_never_go_down(make):
    col, fake = make()
    s1 = snap(col, fake, raw(n(8, 1), threads=[thread(10, 10, n(5, 1))],
                             live=[live(10, 10, n(3))]))
    assert s1.threads[(10, 100)].counts.n == n(8, 1)
    # The cache was flushed between the dump and the cache read: this
    # read sees neither the deltas nor storage's new total.
    s2 = snap(col, fake, raw(n(9, 1)))
    assert s2.threads[(10, 100)].counts.n == n(8, 1)
    assert s2.processes[(10, 100)].counts.n == n(8, 1)
    # An outcome can grow while another is held up.
    s3 = snap(col, fake, raw(n(9, 2), threads=[thread(10, 10, n(5, 2))]))
    assert s3.threads[(10, 100)].counts.n == n(8, 2)
    # The next dump brings them: counting goes on from the truth.
    s4 = snap(col, fake, raw(n(10, 2), threads=[thread(10, 10, n(10, 2))]))
    assert s4.threads[(10, 100)].counts.n == n(10, 2)
    assert s4.processes[(10, 100)].counts.n == n(10, 2)
    seen = [s.threads[(10, 100)].counts.n for s in (s1, s2, s3, s4)]
    for a, b in zip(seen, seen[1:]):
        assert all(x <= y for x, y in zip(a, b))


def test_exited_threads_and_processes(make):
    col, fake = make()
    snap(col, fake, raw(n(6), threads=[thread(10, 10, n(4)),
                                       thread(11, 10, n(2))]))
    # Thread 11 exits with returns the dump never showed.
    s2 = snap(col, fake, raw(n(9), exited_threads=[thread(11, 10, n(5))]))
    assert s2.threads[(11, 110)].counts.n == n(5)
    assert col.threads[(11, 110)].dead
    assert not col.procs[(10, 100)].dead
    # The leader exits: the process is gone, its rows stay.
    s3 = snap(col, fake, raw(n(10), exited_threads=[thread(10, 10, n(5))],
                             exited_procs=[(10, 100, "w",
                                            [(0, b"", 0), (0, b"", 0)])]))
    assert col.procs[(10, 100)].dead
    assert s3.processes[(10, 100)].counts.n == n(10)
    assert set(s3.threads) == {(10, 100), (11, 110)}
    # A tid reused: another thread (new start), another row.
    s4 = snap(col, fake, raw(n(11), threads=[thread(11, 40, n(1),
                                                    start=999)]))
    assert s4.threads[(11, 110)] is s3.threads[(11, 110)]
    assert s4.threads[(11, 999)].counts.n == n(1)


def test_eviction_drops_oldest_exited_and_reports_it(make):
    col, fake = make(max_threads=2, max_processes=2)
    s1 = snap(col, fake, raw(n(3), threads=[thread(10, 10, n(1)),
                                            thread(20, 20, n(1)),
                                            thread(30, 30, n(1))]))
    # Over the bounds, but every entry lives: none is dropped.
    assert len(s1.threads) == 3 and len(s1.processes) == 3
    assert s1.meta["lost"]["evicted_threads"] == 0
    s2 = snap(col, fake, raw(n(5), exited_threads=[
        thread(20, 20, n(2)), thread(10, 10, n(2))]))
    # Oldest first: 10 and 20 both exited, only one need go.
    assert set(s2.threads) == {(20, 200), (30, 300)}
    assert set(s2.processes) == {(20, 200), (30, 300)}
    lost = s2.meta["lost"]
    assert lost["evicted_threads"] == 1 and lost["evicted_processes"] == 1
    # Its returns stay in the totals, reported as not attributed.
    assert s2.totals.returns == 5
    assert lost["unattributed_threads"] == 2
    assert lost["unattributed_processes"] == 2
    assert s2.threads[(30, 300)] is s1.threads[(30, 300)]


def test_process_latency_from_dump_and_exit(make):
    col, fake = make(latency=True)
    body = (3).to_bytes(8, "little") + (1).to_bytes(8, "little")
    nz = (1 << 4 | 1 << 9).to_bytes(8 * abi.HIST_WORDS, "little")
    s1 = snap(col, fake, raw(n(4), threads=[thread(10, 10, n(4))],
                             procs=[(10, 100, "w", [(nz, body, 70),
                                                    (0, b"", 0)])]))
    fast, iret = s1.processes[(10, 100)].counts.lat
    assert fast.count == 4 and fast.sum_ns == 70
    assert fast.buckets == {4: 3, 9: 1} and iret.count == 0
    # At exit the process's dense histograms come as runs.
    run = (2, (5).to_bytes(8, "little"), 90)
    s2 = snap(col, fake, raw(n(5), exited_threads=[thread(10, 10, n(5))],
                             exited_procs=[(10, 100, "w",
                                            [(0, b"", 70), run])]))
    fast, iret = s2.processes[(10, 100)].counts.lat
    assert iret.buckets == {2: 5} and iret.sum_ns == 90


def test_stop_takes_a_final_snapshot_and_keeps_it(make):
    col, fake = make()
    snap(col, fake, raw(n(1), threads=[thread(10, 10, n(1))]))
    fake.reads.append(raw(n(2), threads=[thread(10, 10, n(2))]))
    final = col.stop()
    assert final.threads[(10, 100)].counts.n == n(2)
    assert fake.attached == [] and fake.obj is None
    assert col.snapshot() is final and fake.reads == []


def detail(tid, tgid, reason, name, count, key, slot=0, cpu=0):
    """An entry of the kernel's details map, as Tracer reads it."""
    return ((tid, tid * 10), (tgid, tgid * 10), slot, cpu, reason, name,
            count, key)


def test_reason_detail_reaches_every_table_and_survives_forgetting(make):
    col, fake = make()
    fork = [0] * abi.NR_OUTCOMES
    fork[abi.OUTCOMES.index("fork_child")] = 1
    s1 = snap(col, fake, raw(
        [a + b for a, b in zip(n(5, 3), fork)],
        threads=[thread(10, 10, n(5, 3)), thread(11, 10, fork)],
        details=[detail(10, 10, "signal", "SIGURG", 3, b"k1"),
                 detail(11, 10, "fork_child", "thread", 1, b"k2")]))
    both = {("signal", "SIGURG"): 3, ("fork_child", "thread"): 1}
    assert s1.totals.detail == both
    assert s1.processes[(10, 100)].counts.detail == both
    assert s1.threads[(10, 100)].counts.detail == {("signal", "SIGURG"): 3}
    assert s1.threads[(11, 110)].counts.detail == {("fork_child",
                                                   "thread"): 1}
    assert s1.syscalls[("x64", 0)].counts.detail == both
    assert s1.cpus[0].counts.detail == both
    assert fake.forgotten == []
    # Thread 11 exits: its entry is final, and forgotten in the kernel;
    # what it counted stays everywhere.
    s2 = snap(col, fake, raw(
        [a + b for a, b in zip(n(5, 5), fork)],
        threads=[thread(10, 10, n(5, 5))],
        exited_threads=[thread(11, 10, fork)],
        details=[detail(10, 10, "signal", "SIGURG", 5, b"k1"),
                 detail(11, 10, "fork_child", "thread", 1, b"k2")]))
    assert fake.forgotten == [b"k2"]
    assert s2.totals.detail == {("signal", "SIGURG"): 5,
                                ("fork_child", "thread"): 1}
    assert s2.delta(s1).totals.detail == {("signal", "SIGURG"): 2}
    # The snapshot handed out does not change with the collector's sums.
    assert s1.totals.detail == both
    s3 = snap(col, fake, raw(
        [a + b for a, b in zip(n(5, 5), fork)],
        details=[detail(10, 10, "signal", "SIGURG", 5, b"k1")]))
    assert s3.totals.detail == s2.totals.detail
    assert s3.processes[(10, 100)].counts.detail == s2.totals.detail
    assert s3.delta(s2).totals.detail is None
