"""The task dump and exit-record parsers (kernel/tracer.py) on kernel
bytes built with the abi.py structures: no BPF, no privilege."""

import ctypes

import pytest

from sysretstat.errors import KernelDataError, SysretstatError
from sysretstat.kernel import abi, tracer


def thread_rec(tid, tgid, start, leader_start, comm, counts=(), cgroup=0):
    r = abi.ThreadRec(kind=abi.REC_THREAD, tid=tid, tgid=tgid, pad=0xdead,
                      start_ns=start, leader_start_ns=leader_start,
                      comm=comm, cgroup_id=cgroup)
    for i, v in enumerate(counts):
        r.counts.n[i] = v
    return bytes(r)


def proc_dump(tgid, start, comm, sums=(0, 0), buckets=({}, {})):
    """A live process record: header, then the counts of the buckets
    whose bits are set, path by path, in increasing bucket order."""
    h = abi.ProcDump(kind=abi.REC_PROC, tgid=tgid, start_ns=start,
                     comm=comm, pad=0xbeef)
    body = b""
    for p, b in enumerate(buckets):
        h.sum_ns[p] = sums[p]
        h.n[p] = len(b)
        for i in sorted(b):
            h.nz[p][i // 64] |= 1 << (i % 64)
            body += ctypes.c_int64(b[i]).value.to_bytes(8, "little",
                                                         signed=True)
    return bytes(h) + body


def counts(**by_outcome):
    n = [0] * abi.NR_OUTCOMES
    for k, v in by_outcome.items():
        n[abi.OUTCOMES.index(k)] = v
    return n


def test_empty_dump():
    assert tracer._parse_dump(b"") == ([], [])


def test_threads_and_processes_in_dump_order():
    n1 = counts(sysret=5, signal=2)
    n2 = counts(eretu=1, compat_guard=-3)    # signed, as the kernel's
    data = (thread_rec(10, 10, 100, 100, b"leader", n1, cgroup=1) +
            proc_dump(10, 100, b"leader", sums=(700, 90),
                      buckets=({3: 4, 70: 1}, {300: 2})) +
            thread_rec(11, 10, 150, 100, b"x" * abi.COMM_LEN, n2) +
            proc_dump(12, 200, b"idle"))
    threads, procs = tracer._parse_dump(data)
    assert threads == [(10, 10, 100, 100, "leader", n1, 1),
                       (11, 10, 150, 100, "x" * abi.COMM_LEN, n2, 0)]
    assert isinstance(threads[0][5], list)
    (tgid, start, comm, runs), idle = procs
    assert (tgid, start, comm) == (10, 100, "leader")
    (nz0, raw0, s0), (nz1, raw1, s1) = runs
    assert (s0, s1) == (700, 90)
    assert abi.set_bits(nz0) == [3, 70] and abi.set_bits(nz1) == [300]
    assert memoryview(raw0).cast("q").tolist() == [4, 1]
    assert memoryview(raw1).cast("q").tolist() == [2]
    assert idle[:3] == (12, 200, "idle")
    assert [(abi.set_bits(nz), raw, s) for nz, raw, s in idle[3]] == \
        [([], b"", 0), ([], b"", 0)]


def test_comm_is_cut_at_nul_and_never_fails_to_decode():
    data = (thread_rec(1, 1, 0, 0, b"ab\0cd") +
            thread_rec(2, 2, 0, 0, b"\xff\xfeok"))
    threads, _ = tracer._parse_dump(data)
    assert [t[4] for t in threads] == ["ab", "\ufffd\ufffdok"]


def valid_dump():
    return (thread_rec(10, 10, 1, 1, b"a", counts(sysret=1)) +
            proc_dump(10, 1, b"a", buckets=({5: 1}, {6: 2})) +
            thread_rec(11, 10, 2, 1, b"a", counts(sysret=2)))


@pytest.mark.parametrize("cut", [
    1, 3,                                             # no whole kind
    ctypes.sizeof(abi.ThreadRec) - 1,                 # inside a thread
    ctypes.sizeof(abi.ThreadRec) + 4,                 # proc header
    ctypes.sizeof(abi.ThreadRec) + ctypes.sizeof(abi.ProcDump) + 8,  # counts
    len(valid_dump()) - 8,                            # last thread
])
def test_truncated_dump_is_a_clear_error(cut):
    data = valid_dump()[:cut]
    with pytest.raises(KernelDataError) as e:
        tracer._parse_dump(data)
    # One line the CLI can print, saying where.
    assert isinstance(e.value, SysretstatError)
    assert not isinstance(e.value, OSError)
    assert "malformed task dump" in str(e.value) and "\n" not in str(e.value)


def test_truncation_reports_the_record_it_cuts():
    data = valid_dump()
    at = ctypes.sizeof(abi.ThreadRec) + ctypes.sizeof(abi.ProcDump)
    with pytest.raises(KernelDataError, match="offset %d " %
                       ctypes.sizeof(abi.ThreadRec)):
        tracer._parse_dump(data[:at + 8])


@pytest.mark.parametrize("kind", [0, 3, 0x100 | abi.REC_THREAD])
def test_unknown_kind_is_a_clear_error(kind):
    bad = bytearray(thread_rec(12, 12, 3, 3, b"b"))
    bad[:4] = kind.to_bytes(4, "little")
    data = valid_dump() + bytes(bad)
    with pytest.raises(KernelDataError,
                       match="offset %d .*unknown record kind %d"
                       % (len(valid_dump()), kind)):
        tracer._parse_dump(data)


def test_exit_records():
    t = tracer._thread_rec(thread_rec(7, 6, 70, 60, b"gone",
                                      counts(fork_child=1), cgroup=1 << 40))
    assert t == (7, 6, 70, 60, "gone", counts(fork_child=1), 1 << 40)
    r = abi.ProcRec(kind=abi.REC_PROC, tgid=6, start_ns=60, comm=b"gone")
    r.hist[0].sum_ns, r.hist[0].b[9], r.hist[0].b[12] = 50, 3, 1
    tgid, start, comm, (fast, iret) = tracer._proc_rec(bytes(r))
    assert (tgid, start, comm) == (6, 60, "gone")
    lo, raw, s = fast
    # A run: from the first non-zero bucket to the last.
    assert (lo, s) == (9, 50)
    assert memoryview(raw).cast("q").tolist() == [3, 0, 0, 1]
    assert iret == (0, b"", 0)


def test_a_dump_of_many_threads_parses_whole():
    recs = [thread_rec(i, i // 3, i, i - i % 3, b"w%d" % (i % 7),
                       counts(sysret=i)) for i in range(1, 5000)]
    threads, procs = tracer._parse_dump(b"".join(recs))
    assert procs == [] and len(threads) == 4999
    assert threads[-1] == (4999, 1666, 4999, 4998, "w1", counts(sysret=4999),
                           0)
