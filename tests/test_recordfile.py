"""The record file: round trip, checkpoints, cuts at every byte, damage,
foreign files, rotation and a full disk.  No BPF needed: recordings are
built from synthetic snapshots with the real Writer."""

import json
import os
import random
import subprocess
import sys

import pytest

from sysretstat.kernel import abi
from sysretstat import record
from sysretstat.errors import RecordFileError
from sysretstat.model.snapshot import TABLES, Counts, Hist, Row, Snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNAL = abi.OUTCOMES.index("signal")
RESTART = abi.OUTCOMES.index("restart")

META = {"version": "test", "kernel": "6.0-test", "cpu_model": "cpu",
        "hostname": "host", "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 0, "interval_s": 1.0, "command": None,
        "filters": {"latency": True},
        "guard": {"task_size_max": (1 << 47) - 4096, "xen_pv": False,
                  "fred": False, "la57": False},
        "lost": {"storage": 0}}


def counts(rng, n_sysret, reasons=None, lat=True, fast_ns=300, iret_ns=900):
    c = Counts()
    c.n[abi.O_SYSRET] = n_sysret
    for idx, v in (reasons or {}).items():
        c.n[idx] = v
    if lat:
        c.lat = [Hist.from_values(rng.gauss(fast_ns, fast_ns / 10)
                                  for _ in range(n_sysret)),
                 Hist.from_values(rng.gauss(iret_ns, iret_ns / 10)
                                  for _ in range(c.iret))]
    return c


def make_delta(rng, procs=(("alpha", 101), ("beta", 202)), signal=(0, 4),
               restart=(0, 0), fast_ns=300, iret_ns=900, dur=1.0):
    """One interval; every process has one thread; syscalls getppid (sysret)
    and tgkill (the IRET reasons); 2 CPUs split the totals."""
    s = Snapshot({"duration_s": dur, "lost": {"storage": rng.randint(0, 1)}},
                 Counts.zero())
    sc = {("x64", 110): Counts.zero(), ("x64", 234): Counts.zero()}
    for comm, pid in procs:
        c = counts(rng, rng.randint(1, 20),
                   {SIGNAL: rng.randint(*signal),
                    RESTART: rng.randint(*restart)}, fast_ns=fast_ns,
                   iret_ns=iret_ns)
        s.processes[(pid, pid * 10)] = Row((pid, pid * 10),
                                           {"pid": pid, "comm": comm}, c)
        s.threads[(pid, pid * 10)] = Row((pid, pid * 10),
                                         {"pid": pid, "tid": pid,
                                          "comm": comm}, Counts(c.n))
        s.totals.add(c)
        sc[("x64", 110)].add(Counts([c.sysret] + [0] * 16,
                                    [c.lat[0].copy(), Hist()]))
        rest = Counts(c.n)
        rest.n[abi.O_SYSRET] = 0
        rest.lat = [Hist(), c.lat[1].copy()]
        sc[("x64", 234)].add(rest)
    for (a, nr), c in sc.items():
        if not c.is_zero():
            s.syscalls[(a, nr)] = Row((a, nr), {"nr": nr, "abi": a, "name":
                                                {110: "getppid",
                                                 234: "tgkill"}[nr]}, c)
    half = Counts(s.totals.n)
    half.n = [v // 2 for v in half.n]
    half.lat = [Hist(), Hist()]
    other = s.totals.copy()
    other.add(half, -1)
    s.cpus[0] = Row(0, {"cpu": 0}, half)
    s.cpus[1] = Row(1, {"cpu": 1}, other)
    return s


def write_recording(path, deltas, checkpoint_every=3, complete=True,
                    meta=None):
    """Write deltas with the real Writer; returns the expected cumulative."""
    meta = dict(meta or META)
    w = record.Writer(path, checkpoint_every=checkpoint_every)
    w.begin(meta)
    total = Snapshot(dict(meta), Counts.zero())
    for d in deltas:
        total.merge(d)
        total.meta["duration_s"] = total.meta.get("duration_s", 0) + \
            d.meta["duration_s"]
        w.interval(d, total.copy())
    if complete:
        w.close(dict(meta, duration_s=total.meta["duration_s"],
                     lost=total.meta["lost"]), total)
    else:
        w.close()
    return total


def synth(path, n=8, seed=1, procs=(("alpha", 101), ("beta", 202)), **kw):
    rng = random.Random(seed)
    deltas = [make_delta(rng, procs) for _ in range(n)]
    return deltas, write_recording(str(path), deltas, **kw)


def same_data(a, b):
    """Totals and every table equal (meta aside)."""
    if a.totals != b.totals:
        return False
    for t in TABLES:
        ta, tb = a.table(t), b.table(t)
        if set(ta) != set(tb):
            return False
        if any(ta[k].counts != tb[k].counts for k in ta):
            return False
    return True


def sum_deltas(deltas):
    total = Snapshot({}, Counts.zero())
    for d in deltas:
        total.merge(d)
    return total


def test_round_trip(tmp_path):
    p = tmp_path / "r.data"
    deltas, expect = synth(p, n=10)
    rec = record.read(str(p))
    assert rec.complete and rec.warning is None
    assert rec.intervals == 10
    snap = rec.cumulative()
    assert same_data(snap, expect)
    assert snap.meta["recording"] == {"format_version": record.VERSION,
                                      "intervals": 10, "complete": True}
    assert snap.meta["duration_s"] == pytest.approx(10.0)
    # The series holds each interval's totals.
    rows = rec.series.rows()
    assert [c.n for _, _, c in rows] == [d.totals.n for d in deltas]
    assert [round(st, 6) for st, _, _ in rows] == [float(i)
                                                   for i in range(10)]
    # Fields survive: names and identities.
    assert {r.fields["comm"] for r in snap.processes.values()} == \
        {"alpha", "beta"}
    assert snap.syscalls[("x64", 234)].fields["name"] == "tgkill"


@pytest.mark.parametrize("every", [1, 2, 3, 7, 1000])
def test_checkpoint_cadence_does_not_change_result(tmp_path, every):
    p = tmp_path / "r.data"
    deltas, expect = synth(p, n=9, checkpoint_every=every)
    snap = record.read(str(p)).cumulative()
    assert same_data(snap, expect)
    assert same_data(snap, sum_deltas(deltas))


def test_checkpoint_by_size(tmp_path):
    p = str(tmp_path / "r.data")
    rng = random.Random(3)
    w = record.Writer(p, checkpoint_every=10 ** 6, checkpoint_bytes=1)
    w.begin(META)
    total = Snapshot(dict(META), Counts.zero())
    for _ in range(4):
        d = make_delta(rng)
        total.merge(d)
        w.interval(d, total.copy)
    w.close(META, total)
    kinds = [line[40:41] for line in open(p, "rb").read().split(b"\n")[1:-1]]
    assert kinds == [b"m"] + [b"d", b"i", b"c"] * 4 + [b"e"]
    assert same_data(record.read(p).cumulative(), total)


def frame_ends(path):
    """(byte offset just after each frame, kind)."""
    data = open(path, "rb").read()
    off = data.index(b"\n") + 1
    out = []
    while off < len(data):
        length = int(data[off + 7:off + 17])
        out.append((off + length, data[off + 40:off + 41]))
        off += length
    return out


def test_cut_at_every_byte(tmp_path):
    """Cut anywhere: either nothing to read (inside the header or
    metadata: an error), or the intervals committed before the cut, with
    a warning; never anything else."""
    p = tmp_path / "full.data"
    deltas, _ = synth(p, n=5, checkpoint_every=2, procs=(("a", 1),))
    data = p.read_bytes()
    ends = frame_ends(str(p))
    meta_end = ends[0][0]
    cut = tmp_path / "cut.data"
    seen_warnings = set()
    for size in range(len(data)):
        cut.write_bytes(data[:size])
        if size < meta_end:
            with pytest.raises(RecordFileError) as e:
                record.read(str(cut))
            msg = str(e.value)
            assert ("cut short" in msg or "empty file" in msg), (size, msg)
            continue
        rec = record.read(str(cut))
        committed = sum(1 for end, kind in ends if kind == b"i"
                        and end <= size)
        assert rec.intervals == committed, size
        assert rec.warning and not rec.complete, size
        seen_warnings.add(rec.warning.split(" (")[0])
        snap = rec.cumulative()
        assert same_data(snap, sum_deltas(deltas[:committed])), size
        assert snap.meta["recording"]["complete"] is False
    assert len(seen_warnings) >= 2     # "cut short at byte" and "no end"
    full = record.read(str(p))
    assert full.complete and full.warning is None


def test_damage_is_an_error_or_harmless(tmp_path):
    """Flip one bit anywhere: the reader either reports corruption (one
    RecordFileError) or gives exactly the right data (the byte was in a
    record this read did not need); nothing else."""
    p = tmp_path / "full.data"
    deltas, expect = synth(p, n=3, checkpoint_every=2, procs=(("a", 1),))
    data = bytearray(p.read_bytes())
    bad = tmp_path / "bad.data"
    errors = ok = 0
    for off in range(len(data)):
        for bit in (0x01, 0x10) if off % 5 == 0 else (0x01,):
            d = bytearray(data)
            d[off] ^= bit
            bad.write_bytes(bytes(d))
            try:
                snap = record.read(str(bad)).cumulative()
            except RecordFileError as e:
                assert "\n" not in str(e)
                errors += 1
                continue
            assert same_data(snap, expect), (off, bit)
            ok += 1
    # Both happen: deltas before the last checkpoint are not read.
    assert errors > 0 and ok > 0


def test_random_garbage_never_escapes(tmp_path):
    p = tmp_path / "full.data"
    synth(p, n=6, checkpoint_every=2)
    data = p.read_bytes()
    rng = random.Random(7)
    bad = tmp_path / "bad.data"
    for _ in range(300):
        d = bytearray(data)
        at = rng.randrange(len(d))
        n = rng.randint(1, 40)
        d[at:at + n] = bytes(rng.randrange(256) for _ in range(n))
        bad.write_bytes(bytes(d))
        try:
            record.read(str(bad)).cumulative()
        except RecordFileError:
            pass


@pytest.mark.parametrize("content,words", [
    (b"", "empty file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a sysretstat"),
    (b"hello world\n", "not a sysretstat"),
    (b'{"schema": "sysretstat/1", "meta": {}}\n', "not a sysretstat"),
    (b'{"format":"sysretstat-record","version":1,"schema":"sysretstat/1"}\n'
     b'{"t":"meta","meta":{}}\n', "format version 1"),
    (b'{"format":"sysretstat-record","version":2,"schema":"sysretstat/9"}\n',
     "schema 'sysretstat/9'"),
    (b'{"format":"sysretstat-rec', "cut short inside its header"),
    (b'{"format":"sysretstat-record","version":2,"schema":"sysretstat/1"}\n'
     b'{"len":        50,"crc":         0,"t":"d","x":1}\n',
     "no metadata frame"),
])
def test_foreign_files(tmp_path, content, words):
    p = tmp_path / "f.data"
    p.write_bytes(content)
    with pytest.raises(RecordFileError) as e:
        record.read(str(p)).cumulative()
    assert words in str(e.value)
    assert str(p) in str(e.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(RecordFileError, match="no such file"):
        record.read(str(tmp_path / "nope"))
    with pytest.raises(RecordFileError, match="directory"):
        record.read(str(tmp_path))


def test_rotation(tmp_path):
    p = tmp_path / "r.data"
    synth(p, n=2, seed=1)
    first = p.read_bytes()
    synth(p, n=3, seed=2)
    second = p.read_bytes()
    assert (tmp_path / "r.data.old").read_bytes() == first
    synth(p, n=1, seed=3)
    assert (tmp_path / "r.data.old").read_bytes() == second
    assert record.read(str(p)).intervals == 1
    # Never renames what is not a regular file.
    with pytest.raises(RecordFileError, match="directory"):
        record.Writer(str(tmp_path))
    with pytest.raises(RecordFileError, match="not a regular file"):
        record.check_writable("/dev/null")


def test_series_is_bounded():
    s = record.Series(max_points=8)
    total = [0] * abi.NR_OUTCOMES
    for i in range(1000):
        n = [i] + [0] * (abi.NR_OUTCOMES - 1)
        n[SIGNAL] = i % 3
        s.add(float(i), 1.0, n)
        total = [a + b for a, b in zip(total, n)]
        assert len(s) <= 8
    rows = s.rows()
    assert [sum(col) for col in zip(*(c.n for _, _, c in rows))] == total
    assert sum(d for _, d, _ in rows) == pytest.approx(1000.0)
    assert rows[0][0] == 0.0
    starts = [st for st, _, _ in rows]
    assert starts == sorted(starts)
    assert len(s.rows(3)) == 3


FULL_DISK = r"""
import random, resource, signal, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/tests")
from test_recordfile import make_delta, write_recording
from sysretstat.errors import RecordFileError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]),) * 2)
rng = random.Random(1)
try:
    write_recording(sys.argv[2], [make_delta(rng) for _ in range(50)])
except RecordFileError as e:
    print(e)
"""


def test_full_disk_keeps_complete_intervals(tmp_path):
    """A write that fails part-way (here: a file size limit, as a full
    disk would) is an error, and the file reads up to its last complete
    interval."""
    p = str(tmp_path / "r.data")
    out = subprocess.run([sys.executable, "-c", FULL_DISK, ROOT, p, "6000"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("writing %s:" % p)
    assert os.path.getsize(p) <= 6000
    rec = record.read(p)
    assert rec.warning and rec.intervals > 0
    rng = random.Random(1)
    deltas = [make_delta(rng) for _ in range(50)]
    assert same_data(rec.cumulative(), sum_deltas(deltas[:rec.intervals]))


def test_cli_cut_and_corrupt(tmp_path, run_cli):
    p = tmp_path / "r.data"
    synth(p, n=4)
    data = p.read_bytes()
    cut = tmp_path / "cut.data"
    cut.write_bytes(data[:len(data) - 30])
    r = run_cli("report", cut)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("sysretstat: warning: %s:" % cut)
    assert "returns" in r.stdout
    bad = tmp_path / "bad.data"
    ends = frame_ends(str(p))
    at = ends[-1][0] - 10      # inside the end frame, which is always read
    d = bytearray(data)
    d[at] ^= 0x04
    bad.write_bytes(bytes(d))
    for args in (["report", bad], ["report", bad, "--json"],
                 ["diff", bad, p]):
        r = run_cli(*args)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1
        assert r.stderr.startswith("sysretstat: error: %s: corrupt record "
                                   "file at byte" % bad)
        assert r.stdout == ""
    foreign = tmp_path / "foreign.data"
    foreign.write_bytes(json.dumps({"hello": 1}).encode())
    r = run_cli("report", foreign)
    assert (r.returncode, r.stderr) == (
        1, "sysretstat: error: %s: not a sysretstat recording\n" % foreign)
