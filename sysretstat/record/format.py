"""The record file format: a versioned stream that survives being cut
anywhere, and the encoding of the snapshots it holds.

Format version 3.  The first line names the format:

    {"format": "sysretstat-record", "version": 3, "schema": "sysretstat/1"}

Every later line is one *frame*, a JSON object whose first two members
have a fixed width, so a reader can step from frame to frame without
reading what it does not need:

    {"len":      1234,"crc": 987654321,"t":"d", ...}\\n

`len` is the frame's length in bytes including the newline; `crc` is
the CRC-32 of the bytes from `"t"` to the closing brace.  Frame types,
in the order they are written:

    m   once, first: the outcome names and the collection metadata,
        {"t":"m","outcomes":["sysret","eretu",...],"meta":{...}}
    d   interval N's rows (processes, threads, syscalls, CPUs) as deltas
    i   interval N's totals: duration, returns per outcome, lost counts;
        it commits interval N (a "d" without its "i" was cut off)
    c   checkpoint: the cumulative snapshot after interval N, every
        CHECKPOINT_EVERY intervals (or CHECKPOINT_BYTES of deltas) and
        at the end
    e   end of a clean stop, with the final metadata

Counts are lists with one number per outcome (a row's trailing zeros are
left out).  Position j of every such list is the outcome named
outcomes[j] in the "m" frame, and the reader maps each one by name onto
this sysretstat's outcomes (abi.OUTCOMES, the kernel's sr_outcome
enum).  So a file stays right when that enum is reordered, grows (a new
outcome reads as 0) or shrinks; an outcome the file names and this
sysretstat does not know is refused, with one line, rather than guessed.
The names sit in a frame so that the CRC covers them.

Version 2 is version 3 without "outcomes": its lists are in V2_OUTCOMES
order, the enum as it stood while version 2 was written.  Version 4 is
version 3 with two optional trailing members: a counts list may end
with its reason detail, {"signal": {"SIGURG": n}, ...}, and a process
row with its cgroup v2 path.  Version 4 is written; 2, 3 and 4 are
read.

A report decodes the last checkpoint plus the deltas after it and the
small "i" frames (the time series); other frames are skipped by length.
Each frame is written with one write(2), so after SIGKILL or a full
disk the file holds every committed interval.  A frame whose checksum,
length or grammar is wrong is reported as corruption with its byte
offset; a frame that is merely unfinished at the end of the file is
the mark of a cut, read up to the last committed interval with a warning.
"""

import json
import struct
import zlib

from sysretstat.kernel import abi
from sysretstat.model.counts import (KernelLatency, _detail_sum,
                                     _Difference, parse_detail)
from sysretstat.model.snapshot import (SCHEMA, Counts, Hist, Row, Snapshot,
                                       bucket, check_fields, count)

MAGIC = "sysretstat-record"
VERSION = 4
READ_VERSIONS = (2, 3, 4)
# Every version-2 file has its lists in this order and does not say so:
# never change it, whatever happens to abi.OUTCOMES.
V2_OUTCOMES = (
    "sysret", "eretu",
    "xen_pv", "rcx_ne_rip", "r11_ne_rflags", "cs_not_user", "ss_not_user",
    "rip_noncanonical", "rflags_rf", "rflags_tf",
    "fork_child", "signal", "restart", "ptrace", "rseq",
    "int80", "compat_guard",
)
CHECKPOINT_EVERY = 60
CHECKPOINT_BYTES = 4 << 20

PREFIX = '{"len":%10d,"crc":%10d,'
PREFIX_LEN = 35
TYPE_AT = PREFIX_LEN + len('"t":"')
HEADER_LEN = TYPE_AT + 1
FRAME_TYPES = "mdice"
# What a damaged frame's content can raise while it is decoded.
DATA_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError,
               OverflowError)
# The first line is short; more than this is not a record file.
MAGIC_MAX = 4096


class UnknownOutcome(ValueError):
    """A file counts an outcome this sysretstat has no slot for."""


class OutcomeOrder:
    """Where a file's count lists put each outcome: position j of a list
    is abi.OUTCOMES[slots[j]].  abi.OUTCOMES is read when the order is
    made, not at import, so the mapping is always against the running
    enum."""

    def __init__(self, names):
        if not isinstance(names, list) or not all(
                isinstance(x, str) for x in names):
            raise ValueError("not a list of names")
        if len(set(names)) != len(names):
            raise ValueError("a name appears twice")
        index = {name: i for i, name in enumerate(abi.OUTCOMES)}
        for name in names:
            if name not in index:
                raise UnknownOutcome(
                    "counts outcome %.40r, which this sysretstat does not "
                    "know (report it with the sysretstat that wrote it)"
                    % name)
        self.names = tuple(names)
        self.slots = tuple(index[name] for name in names)

    @classmethod
    def current(cls):
        return cls(list(abi.OUTCOMES))

    def counts(self, n):
        """A file's full list of counts, in abi.OUTCOMES order."""
        if len(n) != len(self.slots):
            raise ValueError("%d outcomes" % len(n))
        out = [0] * abi.NR_OUTCOMES
        for i, x in zip(self.slots, n):
            out[i] = count(x)
        return out


# Counts: [n without trailing zeros] or [n, sum_fast, flat_fast,
# sum_iret, flat_iret] where flat is [bucket, count, bucket, count...],
# either followed by the reason detail (an object) where there is one.
def _enc_counts(c):
    n = c.n
    last = len(n)
    if last > 2 and not any(n[2:]):
        # No IRET reason, as for most rows: skip their zeros at once.
        last = 2
    while last and not n[last - 1]:
        last -= 1
    out = [n[:last]]
    if c._lat is not None:
        enc = _enc_pending(c._lat)
        if enc is not None:
            out += enc
        else:
            out += _enc_hists(c.lat)
    if c.detail:
        out.append(c.reason_detail())
    return out


def _enc_hists(lat):
    """Made Hists (Counts.lat, or None) as written: per path its sum and
    its non-zero buckets, sorted, flat."""
    out = []
    for h in lat or ():
        flat = []
        for b in sorted(h.buckets):
            flat.append(b)
            flat.append(h.buckets[b])
        out.append(h.sum_ns)
        out.append(flat)
    return out


# Encoding a row's latency straight from what the kernel wrote.  Each
# interval record writes every active process's latency: made Hists
# (Counts.lat), a delta's is the copy of one histogram's pending runs
# with the other's added and both expanded into dicts, then sorted.
# From the runs themselves it is one pass over the two arrays of int64
# counts, whose buckets are already in increasing order.  What this
# writes is what Counts.lat gives (its non-zero buckets, sorted, and
# its sums); anything but pending kernel runs takes that way.

# Bucket indexes of a bitmap (abi.set_bits), by the bitmap: thousands
# of processes' histograms share a few.
_POSITIONS = {}
_POSITIONS_MAX = 4096


def _positions(where, n):
    """The first n bucket indexes a kernel run counts (Hist.from_kernel):
    from bucket `where` on (an int), or a bitmap's bits."""
    if isinstance(where, int):
        return range(where, where + n)
    if type(where) is not bytes:
        # Not a key (a memoryview): worked out each time.
        return abi.set_bits(where)
    pos = _POSITIONS.get(where)
    if pos is None:
        if len(_POSITIONS) >= _POSITIONS_MAX:
            _POSITIONS.clear()
        pos = _POSITIONS[where] = tuple(abi.set_bits(where))
    return pos


def _kernel_runs(lat):
    """A Counts' latency as the kernel's (where, raw, sum_ns) runs, one
    per path; None when it is not that (no latency, or latency already
    made Hists, which are then what is written)."""
    if type(lat) is KernelLatency and lat._hists is None:
        return lat.runs
    return None


def _enc_pending(lat):
    """[sum, flat] per path of a pending latency (see above), or None
    where Counts.lat must be made."""
    if type(lat) is _Difference:
        new = lat.new._lat
        older = lat.older._lat
        if new is None or older is None:
            return None
        new = _kernel_runs(new)
        if new is None:
            return None
        older = _kernel_runs(older)
        if older is None:
            return None
        out = []
        # zip(): as _Difference.compute subtracts.
        for (w, raw, s), (ow, oraw, os_) in zip(new, older):
            out.append(int(s) - int(os_))
            out.append(_flat_diff(w, raw, ow, oraw))
        for w, raw, s in new[len(older):]:
            out.append(int(s))
            out.append(_flat_one(w, raw))
        return out
    runs = _kernel_runs(lat)
    if runs is None:
        return None
    out = []
    for w, raw, s in runs:
        out.append(int(s))
        out.append(_flat_one(w, raw))
    return out


# Unpacks n int64s in native order, as memoryview(raw).cast("q") reads
# them (Hist), by n: one call gives the tuple.
_UNPACK = {}


def _ints(raw):
    n = len(raw) >> 3
    unpack = _UNPACK.get(n)
    if unpack is None:
        if len(raw) & 7:
            # As memoryview.cast would: refuse it.
            memoryview(raw).cast("q")
        unpack = _UNPACK[n] = struct.Struct("=%dq" % n).unpack
    return unpack(raw)


def _flat_one(where, raw):
    if not raw:
        return []
    vals = _ints(raw)
    flat = []
    for i, c in zip(_positions(where, len(vals)), vals):
        if c:
            flat.append(i)
            flat.append(c)
    return flat


def _flat_diff(where, raw, owhere, oraw):
    if where == owhere:
        if raw == oraw:
            # Nothing on this path since (most processes' IRET path).
            return []
        if len(raw) == len(oraw):
            vals = _ints(raw)
            flat = []
            for i, a, b in zip(_positions(where, len(vals)), vals,
                               _ints(oraw)):
                if a != b:
                    flat.append(i)
                    flat.append(a - b)
            return flat
    if not oraw:
        return _flat_one(where, raw)
    # Different buckets: as the Hists would add them.
    b = {}
    if raw:
        vals = _ints(raw)
        for i, c in zip(_positions(where, len(vals)), vals):
            if c:
                b[i] = c
    ovals = _ints(oraw)
    for i, c in zip(_positions(owhere, len(ovals)), ovals):
        if c:
            b[i] = b.get(i, 0) - c
    flat = []
    for i in sorted(b):
        c = b[i]
        if c:
            flat.append(i)
            flat.append(c)
    return flat


def _split_detail(v):
    """An encoded counts list and its reason detail (or None)."""
    if len(v) in (2, 6) and isinstance(v[-1], dict):
        return v[:-1], parse_detail(v[-1])
    return v, None


def _dec_counts(v, slots):
    v, detail = _split_detail(v)
    n = v[0]
    if len(n) > len(slots):
        raise ValueError("counts of %d outcomes" % len(n))
    out = [0] * abi.NR_OUTCOMES
    for i, x in zip(slots, n):
        out[i] = count(x)
    if len(v) == 1:
        return Counts(out, None, detail)
    if len(v) != 5:
        raise ValueError("malformed counts")
    return Counts(out, [_dec_hist(v[1], v[2]), _dec_hist(v[3], v[4])],
                  detail)


def _dec_hist(sum_ns, flat):
    if len(flat) % 2:
        raise ValueError("malformed histogram")
    return Hist({bucket(b): count(c) for b, c in zip(flat[0::2], flat[1::2])},
                count(sum_ns))


def encode_rows(s):
    """The tables of a snapshot, compactly (lists, not objects), with
    counts in abi.OUTCOMES order."""
    return {
        "tot": _enc_counts(s.totals),
        "proc": [[r.fields["pid"], r.key[1], r.fields.get("comm", ""),
                  _enc_counts(r.counts)] + ([r.fields["cgroup"]]
                                            if r.fields.get("cgroup") else [])
                 for r in s.processes.values()],
        "thr": [[r.fields["tid"], r.key[1], r.fields["pid"],
                 r.fields.get("comm", ""), _enc_counts(r.counts)]
                for r in s.threads.values()],
        "sys": [[r.fields["abi"], r.fields["nr"], r.fields.get("name", ""),
                 _enc_counts(r.counts)] for r in s.syscalls.values()],
        "cpu": [[r.fields["cpu"], _enc_counts(r.counts)]
                for r in s.cpus.values()],
    }


def decode_rows(e, meta, order=None):
    """The Snapshot that encode_rows gave `e`; `order` is the file's
    OutcomeOrder (default: this sysretstat's own)."""
    slots = (order or OutcomeOrder.current()).slots
    s = Snapshot(meta, _dec_counts(e["tot"], slots))
    for r in e["proc"]:
        pid, start, comm, c = r[:4]
        f = check_fields(_proc_fields(r))
        f.pop("start_ns", None)
        s.processes[(pid, start)] = Row((pid, start), f,
                                        _dec_counts(c, slots))
    for tid, start, pid, comm, c in e["thr"]:
        f = check_fields({"pid": pid, "tid": tid, "start_ns": start,
                          "comm": comm})
        del f["start_ns"]
        s.threads[(tid, start)] = Row((tid, start), f, _dec_counts(c, slots))
    for abi_name, nr, name, c in e["sys"]:
        f = check_fields({"nr": nr, "name": name, "abi": abi_name})
        s.syscalls[(abi_name, nr)] = Row((abi_name, nr), f,
                                         _dec_counts(c, slots))
    for cpu, c in e["cpu"]:
        s.cpus[cpu] = Row(cpu, check_fields({"cpu": cpu}),
                          _dec_counts(c, slots))
    return s


def _proc_fields(r):
    """A process row's fields: [pid, start, comm, counts(, cgroup)]."""
    if len(r) not in (4, 5):
        raise ValueError("process row of %d members" % len(r))
    f = {"pid": r[0], "start_ns": r[1], "comm": r[2]}
    if len(r) == 5:
        f["cgroup"] = r[4]
    return f


def _add_raw(c, v, slots):
    """Add an encoded Counts to a Counts, in place (no decoding)."""
    v, detail = _split_detail(v)
    if detail:
        c.detail = _detail_sum(c.detail, detail)
    n = v[0]
    if len(n) > len(slots):
        raise ValueError("counts of %d outcomes" % len(n))
    cn = c.n
    for i, x in zip(slots, n):
        cn[i] += count(x)
    if len(v) == 1:
        return
    if len(v) != 5:
        raise ValueError("malformed counts")
    if c.lat is None:
        c.lat = [Hist(), Hist()]
    for h, s, flat in ((c.lat[0], v[1], v[2]), (c.lat[1], v[3], v[4])):
        h.sum_ns += count(s)
        b = h.buckets
        for k in range(0, len(flat) - 1, 2):
            key = bucket(flat[k])
            b[key] = b.get(key, 0) + count(flat[k + 1])


def accumulate(total, e, order):
    """Add one encoded delta to a snapshot.  Recovering a cut file adds
    up to CHECKPOINT_EVERY of them, so this avoids building Rows that
    would be thrown away."""
    slots = order.slots
    _add_raw(total.totals, e["tot"], slots)
    tables = (
        (total.processes, e["proc"], lambda r: (r[0], r[1]),
         lambda r: {k: v for k, v in _proc_fields(r).items()
                    if k != "start_ns"}, 2),
        (total.threads, e["thr"], lambda r: (r[0], r[1]),
         lambda r: {"pid": r[2], "tid": r[0], "comm": r[3]}, 3),
        (total.syscalls, e["sys"], lambda r: (r[0], r[1]),
         lambda r: {"nr": r[1], "name": r[2], "abi": r[0]}, None),
        (total.cpus, e["cpu"], lambda r: r[0], lambda r: {"cpu": r[0]},
         None),
    )
    for dst, rows, key, fields, comm_at in tables:
        for r in rows:
            k = key(r)
            row = dst.get(k)
            if row is None:
                f = check_fields(fields(r))
                if isinstance(k, tuple) and not isinstance(k[1], (int, str)):
                    raise ValueError("bad row key %.40r" % (k,))
                row = dst[k] = Row(k, f, Counts())
            elif comm_at is not None:
                # The name can change (exec); the latest one wins, and
                # so does the cgroup (a process can be moved).
                row.fields["comm"] = check_fields({"comm": r[comm_at]})[
                    "comm"]
                if comm_at == 2 and len(r) == 5:
                    row.fields["cgroup"] = check_fields(
                        {"cgroup": r[4]})["cgroup"]
            # Counts follow the name; a process row may end with its
            # cgroup.
            _add_raw(row.counts, r[comm_at + 1] if comm_at is not None
                     else r[-1], slots)


def frame(obj):
    """One frame's bytes; obj's first key must be "t"."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    rest = body[1:]
    total = PREFIX_LEN + len(rest) + 1
    return (PREFIX % (total, zlib.crc32(rest))).encode() + rest + b"\n"


def magic_line():
    return (json.dumps({"format": MAGIC, "version": VERSION,
                        "schema": SCHEMA}, separators=(",", ":"))
            + "\n").encode()


def meta_frame(meta):
    """The "m" frame: the order this sysretstat writes counts in, by
    name, and the collection metadata."""
    return frame({"t": "m", "outcomes": list(abi.OUTCOMES), "meta": meta})
