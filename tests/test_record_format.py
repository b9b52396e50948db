"""Record files name their outcomes: a version-3 file says which outcome
each position of its count lists holds, and the reader maps them by name,
so a reordered sr_outcome enum cannot misread a file.  Version-2 files,
which do not say, are read in the order frozen as V2_OUTCOMES."""

import json
import os

import pytest

from sysretstat import record
from sysretstat.errors import RecordFileError
from sysretstat.kernel import abi
from sysretstat.record.format import PREFIX_LEN, frame
from test_recordfile import synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = os.path.join(ROOT, "tests", "fixtures", "records")
ORDER = tuple(abi.OUTCOMES)
TABLES = ("processes", "threads", "syscalls", "cpus")


def split(data):
    """(head line as an object, [frame objects]) of a record file."""
    nl = data.index(b"\n") + 1
    head, objs, off = json.loads(data[:nl]), [], nl
    while off < len(data):
        n = int(data[off + 7:off + 17])
        objs.append(json.loads(b"{" + data[off + PREFIX_LEN:off + n - 1]))
        off += n
    return head, objs


def join(head, objs):
    return (json.dumps(head, separators=(",", ":")).encode() + b"\n"
            + b"".join(frame(o) for o in objs))


def remap(n, src, dst, trim):
    full = list(n) + [0] * (len(src) - len(n))
    by_name = dict(zip(src, full))
    assert all(not v for k, v in by_name.items() if k not in dst)
    out = [by_name.get(name, 0) for name in dst]
    while trim and out and not out[-1]:
        out.pop()
    return out


def reorder(objs, dst):
    """The frames with every count list rewritten into the order `dst`
    (which may leave out outcomes that are zero throughout)."""
    src = None
    out = []
    for o in objs:
        o = json.loads(json.dumps(o))
        if o["t"] == "m":
            src = o["outcomes"]
            o["outcomes"] = list(dst)
        elif o["t"] == "i":
            o["n"] = remap(o["n"], src, dst, False)
        elif o["t"] in "dc":
            o["tot"][0] = remap(o["tot"][0], src, dst, True)
            for t in ("proc", "thr", "sys", "cpu"):
                for row in o[t]:
                    row[-1][0] = remap(row[-1][0], src, dst, True)
        out.append(o)
    return out


def by_name(n, order=None):
    order = order or abi.OUTCOMES
    return {name: n[i] for i, name in enumerate(order)}


def assert_same_by_name(got, want, got_order=None, want_order=None):
    """Every table's counts agree outcome by outcome, by name."""
    pairs = [(got.totals, want.totals)]
    for t in TABLES:
        g, w = getattr(got, t), getattr(want, t)
        assert set(g) == set(w), t
        pairs += [(g[k].counts, w[k].counts) for k in w]
    for g, w in pairs:
        assert by_name(g.n, got_order) == by_name(w.n, want_order)
        assert [(h.sum_ns, dict(h.buckets)) for h in g.lat or ()] == \
            [(h.sum_ns, dict(h.buckets)) for h in w.lat or ()]


def test_v2_order_is_frozen():
    """Every version-2 file was written in this order and does not say
    so: it must never follow abi.OUTCOMES.  Each name must also still be
    one this sysretstat knows, or version-2 files stop reading."""
    assert record.V2_OUTCOMES == (
        "sysret", "eretu",
        "xen_pv", "rcx_ne_rip", "r11_ne_rflags", "cs_not_user",
        "ss_not_user", "rip_noncanonical", "rflags_rf", "rflags_tf",
        "fork_child", "signal", "restart", "ptrace", "rseq",
        "int80", "compat_guard")
    assert set(record.V2_OUTCOMES) <= set(abi.OUTCOMES)


def test_kept_recordings_are_version_2():
    """The golden test reads these, so it covers the version-2 path."""
    for name in ("cmd", "sys", "nolat"):
        with open(os.path.join(RECORDS, name + ".data"), "rb") as f:
            head, objs = split(f.read())
        assert head["version"] == 2 and "outcomes" not in objs[0]
        rec = record.read(os.path.join(RECORDS, name + ".data"))
        assert rec.version == 2
        assert rec.cumulative().meta["recording"]["format_version"] == 2


def test_v4_round_trip(tmp_path):
    p = tmp_path / "r.data"
    deltas, expect = synth(p, n=6, checkpoint_every=4)
    head, objs = split(p.read_bytes())
    assert head["version"] == record.VERSION == 4
    assert objs[0]["t"] == "m" and objs[0]["outcomes"] == list(ORDER)
    rec = record.read(str(p))
    assert (rec.version, rec.complete, rec.warning) == (4, True, None)
    snap = rec.cumulative()
    assert snap.meta["recording"]["format_version"] == 4
    assert_same_by_name(snap, expect)
    assert [c.n for _, _, c in rec.series.rows()] == \
        [d.totals.n for d in deltas]


def test_v3_reads(tmp_path):
    """Version 4 only adds optional members: a file without them, named
    version 3, reads the same."""
    p = tmp_path / "r.data"
    deltas, expect = synth(p, n=6, checkpoint_every=4)
    head, objs = split(p.read_bytes())
    p.write_bytes(join(dict(head, version=3), objs))
    rec = record.read(str(p))
    assert (rec.version, rec.complete, rec.warning) == (3, True, None)
    assert_same_by_name(rec.cumulative(), expect)


@pytest.mark.parametrize("complete", [True, False])
def test_v3_in_another_order_reads_the_same(tmp_path, complete):
    """The same recording with its lists in reverse order (and, the
    second time, cut: the deltas after the checkpoint are added up raw)
    reads to the same counts."""
    p = tmp_path / "r.data"
    deltas, expect = synth(p, n=7, checkpoint_every=3, complete=complete)
    head, objs = split(p.read_bytes())
    other = tmp_path / "other.data"
    other.write_bytes(join(head, reorder(objs, ORDER[::-1])))
    assert split(other.read_bytes())[1][0]["outcomes"][0] == ORDER[-1]
    rec = record.read(str(other))
    assert rec.intervals == 7 and rec.complete == complete
    assert_same_by_name(rec.cumulative(), expect)
    assert [by_name(c.n) for _, _, c in rec.series.rows()] == \
        [by_name(d.totals.n) for d in deltas]


def test_v3_with_fewer_outcomes(tmp_path):
    """A file written before an outcome existed: it reads as 0."""
    p = tmp_path / "r.data"
    _, expect = synth(p, n=4)
    head, objs = split(p.read_bytes())
    fewer = [o for o in ORDER if o not in ("xen_pv", "int80",
                                           "compat_guard")]
    small = tmp_path / "small.data"
    small.write_bytes(join(head, reorder(objs, fewer)))
    assert_same_by_name(record.read(str(small)).cumulative(), expect)


def test_enum_reordered_after_recording(tmp_path, monkeypatch):
    """The enum is reordered after files were written: version-3 files
    follow their names, version-2 files their frozen order; counts land
    on the same outcome names either way."""
    p = tmp_path / "r.data"
    deltas, expect = synth(p, n=5, checkpoint_every=2, complete=False)
    head, objs = split(p.read_bytes())
    v2 = tmp_path / "v2.data"
    v2_objs = reorder(objs, record.V2_OUTCOMES)
    del v2_objs[0]["outcomes"]
    v2.write_bytes(join(dict(head, version=2), v2_objs))
    new = ORDER[::-1]
    monkeypatch.setattr(abi, "OUTCOMES", new)
    for path, version in ((p, 4), (v2, 2)):
        rec = record.read(str(path))
        assert rec.version == version
        assert_same_by_name(rec.cumulative(), expect, new, ORDER)
        assert [by_name(c.n, new) for _, _, c in rec.series.rows()] == \
            [by_name(d.totals.n, ORDER) for d in deltas]


def test_v2_reads(tmp_path):
    """A version-2 file: no outcome list; the lists in V2_OUTCOMES order."""
    p = tmp_path / "r.data"
    deltas, expect = synth(p, n=5, checkpoint_every=2)
    head, objs = split(p.read_bytes())
    objs = reorder(objs, record.V2_OUTCOMES)
    del objs[0]["outcomes"]
    v2 = tmp_path / "v2.data"
    v2.write_bytes(join(dict(head, version=2), objs))
    rec = record.read(str(v2))
    assert (rec.version, rec.intervals, rec.complete) == (2, 5, True)
    snap = rec.cumulative()
    assert snap.meta["recording"]["format_version"] == 2
    assert_same_by_name(snap, expect)


def test_unknown_outcome_is_one_line(tmp_path, run_cli):
    p = tmp_path / "r.data"
    synth(p, n=2)
    head, objs = split(p.read_bytes())
    names = list(ORDER)
    names[names.index("xen_pv")] = "warp_drive"
    objs[0]["outcomes"] = names
    bad = tmp_path / "new.data"
    bad.write_bytes(join(head, objs))
    with pytest.raises(RecordFileError) as e:
        record.read(str(bad))
    msg = str(e.value)
    assert msg.startswith("%s: " % bad) and "'warp_drive'" in msg
    assert "\n" not in msg
    for args in (["report", bad], ["diff", bad, p]):
        r = run_cli(*args)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr == "sysretstat: error: %s\n" % msg


@pytest.mark.parametrize("change,words", [
    (lambda m, i: m.pop("outcomes"), "bad outcome list: not a list"),
    (lambda m, i: m.update(outcomes="sysret"), "bad outcome list"),
    (lambda m, i: m.update(outcomes=[1, 2]), "bad outcome list"),
    (lambda m, i: m.update(outcomes=["sysret", "sysret"]), "appears twice"),
    (lambda m, i: i["n"].append(0), "bad interval totals: 18 outcomes"),
])
def test_bad_outcome_lists_are_corruption(tmp_path, change, words):
    p = tmp_path / "r.data"
    synth(p, n=2)
    head, objs = split(p.read_bytes())
    change(objs[0], next(o for o in objs if o["t"] == "i"))
    bad = tmp_path / "bad.data"
    bad.write_bytes(join(head, objs))
    with pytest.raises(RecordFileError) as e:
        record.read(str(bad)).cumulative()
    assert str(e.value).startswith("%s: corrupt record file at byte" % bad)
    assert words in str(e.value)


def test_counts_longer_than_the_outcome_list(tmp_path):
    p = tmp_path / "r.data"
    synth(p, n=3, checkpoint_every=100, complete=False)
    head, objs = split(p.read_bytes())
    fewer = [o for o in ORDER if o != "int80"]
    objs = reorder(objs, fewer)
    d = next(o for o in objs if o["t"] == "d")
    d["tot"][0] = d["tot"][0] + [0] * (len(ORDER) - len(d["tot"][0]))
    bad = tmp_path / "bad.data"
    bad.write_bytes(join(head, objs))
    rec = record.read(str(bad))
    with pytest.raises(RecordFileError, match="bad interval: counts of 17"):
        rec.cumulative()


def test_other_versions_are_refused(tmp_path):
    p = tmp_path / "r.data"
    synth(p, n=1)
    head, objs = split(p.read_bytes())
    for v in (1, 5, "3", True, 3.0, None):
        p.write_bytes(join(dict(head, version=v), objs))
        with pytest.raises(RecordFileError) as e:
            record.read(str(p))
        assert "record format version %r; this sysretstat reads versions " \
            "2, 3 and 4" % v in str(e.value)
