"""The record file: a versioned stream that survives being cut anywhere.

Format version 2.  The first line names the format:

    {"format": "sysretstat-record", "version": 2, "schema": "sysretstat/1"}

Every later line is one *frame*, a JSON object whose first two members
have a fixed width, so a reader can step from frame to frame without
reading what it does not need:

    {"len":      1234,"crc": 987654321,"t":"d", ...}\\n

`len` is the frame's length in bytes including the newline; `crc` is
the CRC-32 of the bytes from `"t"` to the closing brace.  Frame types,
in the order they are written:

    m   collection metadata, once, first
    d   interval N's rows (processes, threads, syscalls, CPUs) as deltas
    i   interval N's totals: duration, returns per outcome, lost counts;
        it commits interval N (a "d" without its "i" was cut off)
    c   checkpoint: the cumulative snapshot after interval N, every
        CHECKPOINT_EVERY intervals (or CHECKPOINT_BYTES of deltas) and
        at the end
    e   end of a clean stop, with the final metadata

A report decodes the last checkpoint plus the deltas after it and the
small "i" frames (the time series); other frames are skipped by length.
Each frame is written with one write(2), so after SIGKILL or a full
disk the file holds every committed interval.  A frame whose checksum,
length or grammar is wrong is reported as corruption with its byte
offset; a frame that is merely unfinished at the end of the file is
the mark of a cut, read up to the last committed interval with a warning.
"""

import errno
import json
import math
import os
import stat
import zlib

from sysretstat.kernel import abi
from sysretstat.errors import RecordFileError
from sysretstat.model.snapshot import (SCHEMA, Counts, Hist, Row, Snapshot,
                                       bucket, check_fields, check_meta, count)

MAGIC = "sysretstat-record"
VERSION = 2
CHECKPOINT_EVERY = 60
CHECKPOINT_BYTES = 4 << 20
SERIES_MAX_POINTS = 4096

_PREFIX = '{"len":%10d,"crc":%10d,'
_PREFIX_LEN = 35
_TYPE_AT = _PREFIX_LEN + len('"t":"')
HEADER_LEN = _TYPE_AT + 1
FRAME_TYPES = "mdice"
# What a damaged frame's content can raise while it is decoded.
_DATA_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError,
                OverflowError)
# The first line is short; more than this is not a record file.
_MAGIC_MAX = 4096


# Counts: [n without trailing zeros] or [n, sum_fast, flat_fast,
# sum_iret, flat_iret] where flat is [bucket, count, bucket, count...].
def _enc_counts(c):
    n = c.n
    last = len(n)
    while last and not n[last - 1]:
        last -= 1
    if c.lat is None:
        return [n[:last]]
    out = [n[:last]]
    for h in c.lat:
        flat = []
        for b in sorted(h.buckets):
            flat.append(b)
            flat.append(h.buckets[b])
        out.append(h.sum_ns)
        out.append(flat)
    return out


def _dec_counts(v):
    n = v[0]
    if len(n) > abi.NR_OUTCOMES:
        raise ValueError("counts of %d outcomes" % len(n))
    n = [count(x) for x in n] + [0] * (abi.NR_OUTCOMES - len(n))
    if len(v) == 1:
        return Counts(n)
    if len(v) != 5:
        raise ValueError("malformed counts")
    return Counts(n, [_dec_hist(v[1], v[2]), _dec_hist(v[3], v[4])])


def _dec_hist(sum_ns, flat):
    if len(flat) % 2:
        raise ValueError("malformed histogram")
    return Hist({bucket(b): count(c) for b, c in zip(flat[0::2], flat[1::2])},
                count(sum_ns))


def encode_rows(s):
    """The tables of a snapshot, compactly (lists, not objects)."""
    return {
        "tot": _enc_counts(s.totals),
        "proc": [[r.fields["pid"], r.key[1], r.fields.get("comm", ""),
                  _enc_counts(r.counts)] for r in s.processes.values()],
        "thr": [[r.fields["tid"], r.key[1], r.fields["pid"],
                 r.fields.get("comm", ""), _enc_counts(r.counts)]
                for r in s.threads.values()],
        "sys": [[r.fields["abi"], r.fields["nr"], r.fields.get("name", ""),
                 _enc_counts(r.counts)] for r in s.syscalls.values()],
        "cpu": [[r.fields["cpu"], _enc_counts(r.counts)]
                for r in s.cpus.values()],
    }


def decode_rows(e, meta):
    s = Snapshot(meta, _dec_counts(e["tot"]))
    for pid, start, comm, c in e["proc"]:
        f = check_fields({"pid": pid, "start_ns": start, "comm": comm})
        del f["start_ns"]
        s.processes[(pid, start)] = Row((pid, start), f, _dec_counts(c))
    for tid, start, pid, comm, c in e["thr"]:
        f = check_fields({"pid": pid, "tid": tid, "start_ns": start,
                          "comm": comm})
        del f["start_ns"]
        s.threads[(tid, start)] = Row((tid, start), f, _dec_counts(c))
    for abi_name, nr, name, c in e["sys"]:
        f = check_fields({"nr": nr, "name": name, "abi": abi_name})
        s.syscalls[(abi_name, nr)] = Row((abi_name, nr), f, _dec_counts(c))
    for cpu, c in e["cpu"]:
        s.cpus[cpu] = Row(cpu, check_fields({"cpu": cpu}), _dec_counts(c))
    return s


def frame(obj):
    """One frame's bytes; obj's first key must be "t"."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    rest = body[1:]
    total = _PREFIX_LEN + len(rest) + 1
    return (_PREFIX % (total, zlib.crc32(rest))).encode() + rest + b"\n"


def magic_line():
    return (json.dumps({"format": MAGIC, "version": VERSION,
                        "schema": SCHEMA}, separators=(",", ":"))
            + "\n").encode()


def rotate(path, notify=None):
    """Never overwrite silently: an existing FILE becomes FILE.old.

    FILE stays in place throughout (it is hard-linked to FILE.old first,
    where the file system allows), so a kill at any point leaves the
    previous recording under one of the two names.  Replacing an older
    FILE.old is said through notify(message, True).  Returns True when a file
    was moved aside.
    """
    old = path + ".old"
    if not os.path.lexists(path):
        return False
    if os.path.lexists(old) and not os.path.isfile(old):
        raise RecordFileError("cannot rename %s to %s: %s exists and is not "
                              "a regular file" % (path, old, old))
    replaced = os.path.lexists(old)
    if replaced and notify is not None:
        notify("replacing the older %s (it is deleted)" % old, True)
    tmp = "%s.%d.lnk" % (path, os.getpid())
    try:
        try:
            os.link(path, tmp)
        except OSError:
            # No hard links here (vfat, some network file systems).
            os.replace(path, old)
        else:
            os.replace(tmp, old)
    except OSError as e:
        _unlink_quietly(tmp)
        raise RecordFileError("cannot rename %s to %s: %s"
                              % (path, old, e.strerror))
    return True


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def check_writable(path):
    """Fail before tracing starts if FILE cannot be written."""
    if "\0" in path:
        raise RecordFileError("a file name cannot hold a NUL byte")
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise RecordFileError("%s is a directory" % path)
    if os.path.exists(path) and not os.path.isfile(path):
        raise RecordFileError("%s exists and is not a regular file" % path)
    old = path + ".old"
    if os.path.lexists(path) and os.path.lexists(old) and \
            not os.path.isfile(old):
        raise RecordFileError("%s exists and is not a regular file (%s "
                              "would be moved there)" % (old, path))
    if not os.path.isdir(d):
        raise RecordFileError("cannot create %s: no such directory" % path)
    if not os.access(d, os.W_OK | os.X_OK):
        raise RecordFileError("cannot create %s: permission denied" % path)


def _nonzero_lost(lost):
    return {k: v for k, v in (lost or {}).items()
            if not isinstance(v, (int, float)) or v}


class Writer:
    """Writes a recording frame by frame; each frame is one write(2).

    The file has no name (O_TMPFILE; or a temporary name in the same
    directory where the file system cannot do that) until it holds a
    complete interval: only then does an existing FILE become FILE.old
    and the new recording become FILE.  A recording that fails or is
    killed before that leaves the existing files as they were.
    """

    def __init__(self, path, fsync=False, checkpoint_every=CHECKPOINT_EVERY,
                 checkpoint_bytes=CHECKPOINT_BYTES, notify=None):
        self.path = path
        self.fsync = fsync
        self.checkpoint_every = checkpoint_every
        self.checkpoint_bytes = checkpoint_bytes
        check_writable(path)
        self.notify = notify
        self.rotated = False
        self.published = False
        self.tmp = None             # the temporary name, where one is used
        self.fd = _open_unnamed(path)
        if self.fd is None:
            self.tmp = "%s.%d.tmp" % (path, os.getpid())
            try:
                self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT
                                  | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise RecordFileError("cannot create %s: %s"
                                      % (path, e.strerror))
        self.n = 0
        self.since_ckpt = 0         # delta bytes since the last checkpoint
        self.ckpt_at = 0            # interval of the last checkpoint
        self.end_s = 0.0
        self.bytes = 0
        try:
            # Owner-only, as perf does: it holds command lines.
            os.fchmod(self.fd, 0o600)
            self._write(magic_line())
        except BaseException:
            self._discard()
            raise

    def _publish(self):
        """The recording holds a complete interval: give it its name,
        moving an existing FILE to FILE.old first.  If that fails, the
        new recording is dropped and the existing files stay."""
        try:
            self._link_and_rotate()
        except BaseException:
            self._discard()
            raise
        self.published = True

    def _link_and_rotate(self):
        if self.tmp is None:
            self.tmp = "%s.%d.tmp" % (self.path, os.getpid())
            try:
                proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY
                               | os.O_CLOEXEC)
                try:
                    os.link(str(self.fd), self.tmp, src_dir_fd=proc,
                            follow_symlinks=True)
                finally:
                    os.close(proc)
            except OSError as e:
                self.tmp = None
                raise RecordFileError("cannot create %s: %s"
                                      % (self.path, e.strerror))
        if os.path.lexists(self.path) and not os.path.isfile(self.path):
            raise RecordFileError("%s exists and is not a regular file"
                                  % self.path)
        self.rotated = rotate(self.path, self.notify)
        if self.rotated and self.notify is not None:
            self.notify("moved the existing %s to %s.old"
                        % (self.path, self.path), False)
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise RecordFileError("cannot create %s: %s"
                                  % (self.path, e.strerror))
        self.tmp = None

    def _discard(self):
        """Drop an unpublished recording; existing files stay as they
        were."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            _unlink_quietly(self.tmp)
            self.tmp = None

    def _write(self, data):
        try:
            done = os.write(self.fd, data)
            if done != len(data):
                # A short write to a regular file means the disk is full.
                raise OSError(28, os.strerror(28))
            if self.fsync:
                os.fsync(self.fd)
        except OSError as e:
            raise RecordFileError("writing %s: %s" % (self.path, e.strerror))
        self.bytes += len(data)
        return len(data)

    def begin(self, meta):
        self._write(frame({"t": "m", "meta": meta}))

    def interval(self, delta, cumulative=None):
        """Write one interval (a delta Snapshot).  `cumulative` is the
        snapshot after it, or a function returning it, stored as a
        checkpoint when one is due."""
        self.n += 1
        dur = delta.meta.get("duration_s") or 0.0
        self.end_s = round(self.end_s + dur, 6)
        d = {"t": "d", "i": self.n}
        d.update(encode_rows(delta))
        self.since_ckpt += self._write(frame(d))
        self._write(frame({"t": "i", "i": self.n, "dur": dur,
                           "end": self.end_s, "n": delta.totals.n,
                           "lost": _nonzero_lost(delta.meta.get("lost"))}))
        if not self.published:
            self._publish()
        if cumulative is not None and (
                self.n - self.ckpt_at >= self.checkpoint_every
                or self.since_ckpt >= self.checkpoint_bytes):
            self.checkpoint(cumulative() if callable(cumulative)
                            else cumulative)

    def checkpoint(self, cumulative):
        c = {"t": "c", "i": self.n,
             "dur": cumulative.meta.get("duration_s"),
             "lost": cumulative.meta.get("lost", {})}
        c.update(encode_rows(cumulative))
        self._write(frame(c))
        self.ckpt_at = self.n
        self.since_ckpt = 0

    def close(self, final_meta=None, final=None):
        """Finish: a last checkpoint (if `final` is new) and the end frame.

        Without final_meta the file is left as a cut one would be; one
        that never held a complete interval is dropped.
        """
        if self.fd is None:
            return
        if not self.published:
            if final_meta is None or self.n == 0:
                self._discard()
                return
        try:
            if final is not None and self.ckpt_at != self.n:
                self.checkpoint(final() if callable(final) else final)
            if final_meta is not None:
                self._write(frame({"t": "e", "i": self.n,
                                   "meta": final_meta}))
        finally:
            os.close(self.fd)
            self.fd = None


def _open_unnamed(path):
    """An unnamed file in FILE's directory (O_TMPFILE), or None where the
    file system or kernel cannot make one.  It vanishes if we are killed
    before it is linked."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag:
        return None
    d = os.path.dirname(os.path.abspath(path))
    try:
        return os.open(d, flag | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL,
                       errno.ENOENT):
            return None
        raise RecordFileError("cannot create %s: %s" % (path, e.strerror))


class Series:
    """Per-interval totals, for the time series; at most max_points
    points (older neighbours are merged pairwise when full), so memory
    stays bounded however long the recording."""

    def __init__(self, max_points=SERIES_MAX_POINTS):
        self.max_points = max_points
        self.points = []    # [start_s, dur_s, n list, intervals merged]
        self.step = 1       # intervals per point

    def add(self, start, dur, n):
        pts = self.points
        if pts and pts[-1][3] < self.step:
            last = pts[-1]
            last[1] += dur
            last[2] = [a + b for a, b in zip(last[2], n)]
            last[3] += 1
            return
        if len(pts) >= self.max_points:
            merged = []
            for k in range(0, len(pts), 2):
                a = pts[k]
                if k + 1 < len(pts):
                    b = pts[k + 1]
                    a = [a[0], a[1] + b[1],
                         [x + y for x, y in zip(a[2], b[2])], a[3] + b[3]]
                merged.append(a)
            self.points = pts = merged
            self.step *= 2
            return self.add(start, dur, n)
        pts.append([start, dur, list(n), 1])

    def __len__(self):
        return len(self.points)

    def rows(self, max_rows=None):
        """(start_s, dur_s, Counts) per point, merged down to max_rows."""
        pts = self.points
        group = 1
        if max_rows and len(pts) > max_rows:
            group = -(-len(pts) // max_rows)
        out = []
        for k in range(0, len(pts), group):
            chunk = pts[k:k + group]
            n = [sum(col) for col in zip(*(p[2] for p in chunk))]
            out.append((chunk[0][0], sum(p[1] for p in chunk), Counts(n)))
        return out


class Recording:
    """A record file, indexed: meta, the time series, and where the
    rows are; the cumulative snapshot is decoded on demand."""

    def __init__(self, path):
        self.path = path
        self.meta = None
        self.final_meta = None
        self.complete = False
        self.warning = None
        self.intervals = 0
        self.series = Series()
        self.lost = {}              # summed from the "i" frames
        self.end_s = 0.0
        self.schema = None
        self._ckpt = None           # (offset, length, interval)
        self._deltas = []           # (offset, length) after the checkpoint
        self._fd = None

    # Reading ---------------------------------------------------------
    def _err(self, offset, what):
        return RecordFileError("%s: corrupt record file at byte %d (%s)"
                               % (self.path, offset, what))

    def _read_frame(self, off, length):
        data = os.pread(self._fd, length, off)
        if len(data) != length or data[-1:] != b"\n":
            raise self._err(off, "frame cut short")
        body = data[_PREFIX_LEN:-1]
        if zlib.crc32(body) != int(data[24:34]):
            raise self._err(off, "checksum mismatch")
        try:
            obj = json.loads(b"{" + body)
        except (ValueError, RecursionError) as e:
            raise self._err(off, "bad JSON: %s" % e)
        if not isinstance(obj, dict):
            raise self._err(off, "not an object")
        return obj

    def _scan(self, size):
        off = self._magic()
        pending = None            # a "d" frame waiting for its "i"
        expect = "m"
        while off < size:
            left = size - off
            head = os.pread(self._fd, HEADER_LEN, off)
            if len(head) < HEADER_LEN:
                return self._cut(off, size, "an unfinished frame")
            try:
                if not (head.startswith(b'{"len":') and
                        head[17:24] == b',"crc":' and
                        head[34:_TYPE_AT] == b',"t":"'):
                    raise ValueError
                length = int(head[7:17])
                int(head[24:34])
            except ValueError:
                raise self._err(off, "not a frame")
            kind = chr(head[-1])
            if kind not in FRAME_TYPES or length < HEADER_LEN + 2:
                raise self._err(off, "unknown frame %r" % kind)
            if length > left:
                return self._cut(off, size, "an unfinished %r frame" % kind)
            if expect == "m" and kind != "m":
                raise self._err(off, "no metadata frame")
            if expect == "":
                raise self._err(off, "data after the end frame")
            if kind == "m":
                if expect != "m":
                    raise self._err(off, "second metadata frame")
                obj = self._read_frame(off, length)
                try:
                    self.meta = check_meta(obj.get("meta"))
                except ValueError as e:
                    raise self._err(off, "bad metadata: %s" % e)
                expect = "d"
            elif kind == "d":
                if pending is not None:
                    raise self._err(off, "interval without totals")
                if os.pread(self._fd, 1, off + length - 1) != b"\n":
                    raise self._err(off, "frame length wrong")
                pending = (off, length)
            elif kind == "i":
                if pending is None:
                    raise self._err(off, "totals without an interval")
                obj = self._read_frame(off, length)
                try:
                    self._tick(obj)
                except _DATA_ERRORS as e:
                    raise self._err(off, "bad interval totals: %s" % e)
                self._deltas.append(pending)
                pending = None
            elif kind == "c":
                if pending is not None:
                    raise self._err(off, "checkpoint inside an interval")
                if os.pread(self._fd, 1, off + length - 1) != b"\n":
                    raise self._err(off, "frame length wrong")
                self._ckpt = (off, length, self.intervals)
                self._deltas = []
            elif kind == "e":
                if pending is not None:
                    raise self._err(off, "end inside an interval")
                obj = self._read_frame(off, length)
                try:
                    self.final_meta = check_meta(obj.get("meta"))
                except ValueError as e:
                    raise self._err(off, "bad final metadata: %s" % e)
                self.complete = True
                expect = ""
            off += length
        if expect == "m":
            raise RecordFileError("%s: cut short before its metadata; "
                                  "nothing to read" % self.path)
        if not self.complete:
            self.warning = ("no end record (recording was interrupted); "
                            "read %d complete intervals" % self.intervals)
        elif pending is not None:
            raise self._err(off, "interval without totals")

    def _cut(self, off, size, what):
        """The file ends inside a frame: a cut, unless it is damage."""
        tail = os.pread(self._fd, min(size - off, CHECKPOINT_BYTES * 4), off)
        # A cut frame has no newline; more data after one is corruption.
        if b"\n" in tail:
            raise self._err(off, "frame length does not match its content")
        if self.meta is None:
            raise RecordFileError("%s: cut short before its metadata; "
                                  "nothing to read" % self.path)
        self.warning = ("file is cut short at byte %d (%s); read %d "
                        "complete intervals" % (size, what, self.intervals))

    def _magic(self):
        first = os.pread(self._fd, _MAGIC_MAX, 0)
        if not first:
            raise RecordFileError("%s: empty file, not a sysretstat "
                                  "recording" % self.path)
        nl = first.find(b"\n")
        head = None
        if nl > 0:
            try:
                head = json.loads(first[:nl])
            except (ValueError, RecursionError):
                head = None
        if not isinstance(head, dict) or head.get("format") != MAGIC:
            tag = b'{"format":"%s"' % MAGIC.encode()
            if nl < 0 and (tag.startswith(first) or first.startswith(tag)):
                raise RecordFileError("%s: cut short inside its header; "
                                      "nothing to read" % self.path)
            raise RecordFileError("%s: not a sysretstat recording"
                                  % self.path)
        if head.get("version") != VERSION:
            raise RecordFileError(
                "%s: record format version %r; this sysretstat reads "
                "version %d (record it again, or report it with the "
                "sysretstat that wrote it)" % (self.path, head.get("version"),
                                               VERSION))
        if head.get("schema") != SCHEMA:
            raise RecordFileError("%s: data schema %r; this sysretstat "
                                  "reads %s" % (self.path, head.get("schema"),
                                                SCHEMA))
        self.schema = head["schema"]
        return nl + 1

    def _tick(self, obj):
        if obj["i"] != self.intervals + 1:
            raise ValueError("interval %r after %d" % (obj["i"],
                                                       self.intervals))
        n = [count(x) for x in obj["n"]]
        if len(n) != abi.NR_OUTCOMES:
            raise ValueError("%d outcomes" % len(n))
        dur = float(obj["dur"])
        end = float(obj["end"])
        if not (math.isfinite(dur) and math.isfinite(end) and dur >= 0):
            raise ValueError("duration %r, end %r" % (dur, end))
        self.series.add(end - dur, dur, n)
        lost = obj.get("lost", {})
        if not isinstance(lost, dict):
            raise ValueError("lost is not an object")
        for k, v in lost.items():
            if isinstance(v, (int, float)):
                self.lost[k] = self.lost.get(k, 0) + v
        self.intervals += 1
        self.end_s = end

    # Results -----------------------------------------------------------
    def cumulative(self):
        """The snapshot of the whole recording (up to its last complete
        interval): the last checkpoint plus the deltas after it."""
        try:
            fd = open_regular(self.path)
        except OSError as e:
            raise file_error(self.path, e) from None
        self._fd = fd
        try:
            return self._cumulative()
        finally:
            os.close(fd)
            self._fd = None

    def _cumulative(self):
        meta = dict(self.meta)
        if self._ckpt is not None:
            off, length, _ = self._ckpt
            c = self._read_frame(off, length)
            try:
                total = decode_rows(c, meta)
            except _DATA_ERRORS as e:
                raise self._err(off, "bad checkpoint: %s" % e)
        else:
            total = Snapshot(meta, Counts.zero(meta.get("filters", {}).get(
                "latency", True)))
        for off, length in self._deltas:
            d = self._read_frame(off, length)
            try:
                _accumulate(total, d)
            except _DATA_ERRORS as e:
                raise self._err(off, "bad interval: %s" % e)
        if self.complete:
            total.meta.update(self.final_meta)
        else:
            # The "i" frames carry each interval's lost counts; their sum
            # is the cumulative count.
            lost = {k: 0 for k in self.meta.get("lost", {})}
            lost.update(self.lost)
            total.meta["lost"] = lost
            total.meta["duration_s"] = round(self.end_s, 6)
        total.meta["interval_s"] = self.meta.get("interval_s")
        total.meta["recording"] = {"format_version": VERSION,
                                   "intervals": self.intervals,
                                   "complete": self.complete}
        return total


def _add_raw(c, v):
    """Add an encoded Counts to a Counts, in place (no decoding)."""
    n = v[0]
    if len(n) > abi.NR_OUTCOMES:
        raise ValueError("counts of %d outcomes" % len(n))
    cn = c.n
    for i, x in enumerate(n):
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


def _accumulate(total, e):
    """Add one encoded delta to a snapshot.  Recovering a cut file adds
    up to CHECKPOINT_EVERY of them, so this avoids building Rows that
    would be thrown away."""
    _add_raw(total.totals, e["tot"])
    tables = (
        (total.processes, e["proc"], lambda r: (r[0], r[1]),
         lambda r: {"pid": r[0], "comm": r[2]}, 2),
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
                # The name can change (exec); the latest one wins.
                row.fields["comm"] = check_fields({"comm": r[comm_at]})[
                    "comm"]
            _add_raw(row.counts, r[-1])


def open_regular(path):
    """A read-only fd on `path`, which must be a regular file: a FIFO, a
    device or a socket is refused without blocking in open(2) (hence
    O_NONBLOCK) and without reading from it."""
    if "\0" in str(path):
        raise OSError(errno.EINVAL, "a file name cannot hold a NUL byte")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_error(path, e):
    """The one-line RecordFileError for an OSError on `path`."""
    if isinstance(e, FileNotFoundError):
        return RecordFileError("%s: no such file" % path)
    if isinstance(e, IsADirectoryError):
        return RecordFileError("%s: is a directory" % path)
    return RecordFileError("%s: %s" % (path, e.strerror))


def read(path):
    """Index a record file; RecordFileError if it is not a readable one.

    The returned Recording has meta, series, complete, warning; call
    .cumulative() for the snapshot.
    """
    rec = Recording(path)
    try:
        fd = open_regular(path)
    except OSError as e:
        raise file_error(path, e) from None
    rec._fd = fd
    try:
        size = os.fstat(fd).st_size
        rec._scan(size)
    except OSError as e:
        raise file_error(path, e) from None
    finally:
        os.close(fd)
        rec._fd = None
    return rec
