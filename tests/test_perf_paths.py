"""The shortcuts that keep an interval of thousands of active processes
cheap (issue "Cost", item 3; benchmarks/interval_cpu.py times them):
each must give what the plain computation gives.  Nothing here is
timed; what is counted is what was made."""

import random
from operator import sub

import pytest
from fake_tracer import FakeTracer

from sysretstat.errors import KernelDataError
from sysretstat.kernel import abi, tracer
from sysretstat.kernel.tracer import Options, RawRead
from sysretstat.model.counts import Counts
from sysretstat.model.histogram import Hist
from sysretstat.model.snapshot import Row, Snapshot, check_invariants
from sysretstat.source.collector import Collector
from sysretstat.top import rows as tr
from sysretstat.top import state as ts

NR = abi.NR_OUTCOMES
SIGNAL = abi.OUTCOMES.index("signal")


def collector(latency=True, **kw):
    fake = FakeTracer()
    col = Collector(Options(latency=latency), tracer=fake,
                    clock=iter(range(10 ** 6)).__next__, **kw)
    return col, fake


def read(threads=(), procs=(), exited_threads=(), exited_procs=(),
         live=(), total=None):
    if total is None:
        total = [sum(c) for c in zip(*(t[5] for t in threads))] or [0] * NR
    return RawRead([{0: list(total)}], {}, list(threads), list(procs),
                   list(exited_threads), list(exited_procs), {},
                   list(live), [], [])


def n(sysret=0, signal=0):
    v = [0] * NR
    v[0], v[SIGNAL] = sysret, signal
    return v


def runs(rnd):
    out = []
    for _ in range(abi.NR_LAT):
        k = rnd.randrange(0, 4)
        body = b"".join(rnd.randrange(1, 9).to_bytes(8, "little")
                        for _ in range(k))
        out.append((rnd.randrange(0, 300), body, rnd.randrange(0, 10 ** 6)))
    return out


def test_a_process_of_one_thread_shares_its_threads_counts():
    col, fake = collector(latency=False)
    fake.reads.append(read([(10, 10, 100, 100, "w", n(5), 0)]))
    col.start()
    s1 = col.snapshot()
    assert s1.processes[(10, 100)].counts.n is s1.threads[(10, 100)].counts.n
    fake.reads.append(read([(10, 10, 100, 100, "w", n(9), 0)]))
    s2 = col.snapshot()
    assert s2.processes[(10, 100)].counts.n == n(9)
    assert s1.processes[(10, 100)].counts.n == n(5)
    # A second thread counts: the process's sums are its own from then on.
    fake.reads.append(read([(11, 10, 110, 100, "w", n(1, 2), 0)]))
    s3 = col.snapshot()
    assert s3.processes[(10, 100)].counts.n == n(10, 2)
    assert s3.threads[(10, 100)].counts.n == n(9)
    fake.reads.append(read([(10, 10, 100, 100, "w", n(12), 0),
                            (11, 10, 110, 100, "w", n(4, 2), 0)]))
    s4 = col.snapshot()
    assert s4.processes[(10, 100)].counts.n == n(16, 2)
    assert s4.threads[(10, 100)].counts.n == n(12)
    # The whole interval: a process's gain is its thread's, one list.
    d = s2.delta(s1)
    assert d.processes[(10, 100)].counts.n is d.threads[(10, 100)].counts.n
    assert d.threads[(10, 100)].counts.n == n(4)


def test_process_latency_is_the_kernels_until_read(monkeypatch):
    made = []
    from_kernel = Hist.from_kernel.__func__

    def counted(cls, *a, **kw):
        made.append(a)
        return from_kernel(cls, *a, **kw)
    monkeypatch.setattr(Hist, "from_kernel", classmethod(counted))
    col, fake = collector()
    for k in (1, 2):
        body = (3 * k).to_bytes(8, "little") + k.to_bytes(8, "little")
        fake.reads.append(read(
            [(10, 10, 100, 100, "w", n(4 * k), 0)],
            [(10, 100, "w", [(4, body, 70 * k), (0, b"", 0)])]))
    col.start()
    s1 = col.snapshot()
    s2 = col.snapshot()
    d = s2.delta(s1)
    top = tr.build_rows(s2.delta(s1, lazy=True), ts.ViewState())
    assert len(top) == 1 and made == []
    fast, iret = d.processes[(10, 100)].counts.lat
    assert (fast.buckets, fast.sum_ns, iret.count) == ({4: 3, 5: 1}, 70, 0)
    assert s2.processes[(10, 100)].counts.lat[0].buckets == {4: 6, 5: 2}
    assert made


def test_minus_of_rows_without_a_new_reason_is_the_plain_difference():
    rnd = random.Random(7)
    for _ in range(500):
        size = rnd.choice([NR, NR, NR, 2, 5])
        old = [rnd.randrange(0, 1000) for _ in range(size)]
        new = list(old)
        for _ in range(rnd.randrange(0, 3)):
            i = rnd.choice([0, 1, 0, rnd.randrange(size)])
            new[i] += rnd.randrange(0, 50)
        d = Counts(new).minus(Counts(old))
        assert d.n == list(map(sub, new, old))
        assert len(d.n) == size


@pytest.mark.parametrize("seed", range(12))
def test_random_reads_keep_every_table_exact(seed):
    """Threads of several processes count, exit, are cached on a CPU
    and folded away: every snapshot sums to its totals, no row goes
    down, rows a read did not touch are the same objects, and every
    delta row is the difference of its rows (lazy or not)."""
    rnd = random.Random(seed)
    # Without CPU caches every row is exactly what the kernel counted.
    caches = seed % 2 == 0
    col, fake = collector(latency=rnd.random() < 0.7,
                          max_threads=rnd.choice([6, 65536]),
                          max_processes=rnd.choice([4, 16384]))
    world = {}     # (tid, start) -> [tgid, leader start, counts, dead]
    total = [0] * NR
    pids = iter(range(100, 10 ** 6, 3))

    def spawn(tgid=None):
        tid = next(pids)
        key = (tid, tid * 10)
        leader = (tgid, tgid * 10) if tgid else key
        world[key] = [leader[0], leader[1], [0] * NR, False]

    def rec(key):
        tgid, lstart, c, _ = world[key]
        return (key[0], tgid, key[1], lstart, "p%d" % (tgid % 3), list(c),
                tgid % 2)
    for _ in range(6):
        spawn()
    prev = None
    for _ in range(20):
        touched, exited, live = [], [], []
        for key, w in world.items():
            if w[3]:
                continue
            if rnd.random() < 0.6:
                i = rnd.choice([0, 0, 0, 1, SIGNAL, NR - 1])
                v = rnd.randrange(1, 40)
                w[2][i] += v
                total[i] += v
                touched.append(key)
            if rnd.random() < 0.05:
                w[3] = True
                exited.append(rec(key))
                if key in touched:
                    touched.remove(key)
            elif caches and rnd.random() < 0.1:
                live.append({"tid": key[0], "tgid": w[0], "start_ns": key[1],
                             "leader_start_ns": w[1], "comm": "c",
                             "n": n(rnd.randrange(3)), "hist": runs(rnd)})
        procs = [(k[0], k[1], "p", runs(rnd)) for k, w in world.items()
                 if k[0] == w[0] and not w[3] and rnd.random() < 0.5]
        if rnd.random() < 0.4:
            spawn()
        if rnd.random() < 0.4:
            leaders = [k[0] for k, w in world.items()
                       if k[0] == w[0] and not w[3]]
            if leaders:
                spawn(rnd.choice(leaders))
        fake.reads.append(read([rec(k) for k in touched], procs,
                               exited_threads=exited, live=live,
                               total=total))
        if prev is None:
            col.start()
        s = col.snapshot()
        assert check_invariants(s) == []
        if not caches:
            sums = {}
            for key, (tgid, lstart, c, _) in world.items():
                if key in s.threads:
                    assert s.threads[key].counts.n == c
                p = sums.setdefault((tgid, lstart), [0] * NR)
                p[:] = map(sum, zip(p, c))
            # (A process folded away comes back with what it counts
            # from then on: its past is in lost.evicted_processes.)
            if not s.meta["lost"]["evicted_processes"]:
                for key, row in s.processes.items():
                    assert row.counts.n == sums[key]
        if prev is not None:
            full, lazy = s.delta(prev), s.delta(prev, lazy=True)
            for t in ("processes", "threads"):
                new, old = s.table(t), prev.table(t)
                changed = {(r[0], r[2]) for r in
                           [rec(k) for k in touched] + exited} \
                    if t == "threads" else None
                for k, row in new.items():
                    o = old.get(k)
                    if o is None:
                        continue
                    assert all(a <= b for a, b in zip(o.counts.n,
                                                      row.counts.n))
                    if changed is not None and k not in changed and \
                            not live and not any(
                                x["tid"] == k[0] for x in live):
                        assert row is o or row.counts.n == o.counts.n
                    gained = list(map(sub, row.counts.n, o.counts.n))
                    for d in (full, lazy):
                        got = d.table(t).get(k)
                        if any(gained):
                            assert got is not None and got.counts.n == gained
                        if got is not None and got.counts.lat is not None:
                            want = row.counts.lat
                            assert [h.sum_ns for h in got.counts.lat] == [
                                a.sum_ns - b.sum_ns for a, b in
                                zip(want, o.counts.lat or (Hist(), Hist()))]
        prev = s


def fields_rows(view, pairs):
    """A one-table interval whose rows are (key, fields) pairs, all with
    the same counts: order comes from the ties alone."""
    table = {k: Row(k, f, Counts(n(1))) for k, f in pairs}
    name = {"thread": "threads", "syscall": "syscalls"}.get(view,
                                                           "processes")
    return Snapshot({"interval_s": 1.0}, Counts.zero(), **{name: table})


@pytest.mark.parametrize("view,pairs", [
    ("thread", [((t, 1), {"tid": t % 3, "pid": p, "comm": c})
                for t, p, c in [(1, 9, "b"), (2, 1, "a"), (4, 9, "a"),
                                (5, 2, "z"), (7, 1, "z")]]),
    ("syscall", [((a, nr), {"nr": nr, "abi": a, "name": nm})
                 for a, nr, nm in [("x64", 1, "write"), ("i386", 1, "exit"),
                                   ("x64", 0, "read"), ("x32", 0, "read")]]),
    ("process", [((p, s), {"pid": p, "comm": c, "start_ns": s})
                 for p, s, c in [(5, 1, "b"), (5, 2, "a"), (3, 1, "\x1bq")]]),
])
def test_flat_ties_order_as_identity_then_name(view, pairs):
    snap = fields_rows(view, pairs)
    for rev in (False, True):
        st = ts.ViewState(view=view, sort="returns", reverse=rev)
        full = [tr.RowView(k, *tr._ident(view, f, k), r.counts, 1.0)
                for (k, f), r in zip(pairs, snap.table(
                    tr.TABLE_OF[view]).values())]
        tr.sort_rows(full, "returns", rev)
        assert [r.key for r in tr.build_rows(snap, st)] == \
            [r.key for r in full]


def test_a_renamed_row_is_shown_by_its_new_name():
    st = ts.ViewState()
    f = {"pid": 7, "comm": "old", "start_ns": 1}
    snap = fields_rows("process", [((7, 1), f)])
    assert tr.build_rows(snap, st)[0].name == "old"
    # The collector hands a new fields dict when a name changes.
    snap = fields_rows("process", [((7, 1), dict(f, comm="new"))])
    assert tr.build_rows(snap, st)[0].name == "new"


@pytest.mark.parametrize("kind", [0x100 | abi.REC_PROC,
                                  0x10000 | abi.REC_THREAD])
def test_a_kind_is_read_whole_not_by_its_low_byte(kind):
    rec = bytearray(abi.ProcDump(kind=abi.REC_PROC, tgid=1))
    rec[:4] = kind.to_bytes(4, "little")
    with pytest.raises(KernelDataError,
                       match="unknown record kind %d" % kind):
        tracer._parse_dump(bytes(rec) + bytes(256))
