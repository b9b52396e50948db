"""Reading a recording: read() indexes a file into a Recording (meta,
the time series, where the rows are), refusing damage with one line and
reading a cut file up to its last complete interval."""

import errno
import json
import math
import os
import stat
import zlib

from sysretstat.errors import RecordFileError
from sysretstat.model.snapshot import (SCHEMA_MAJOR, Counts, Snapshot,
                                       check_meta, schema_readable)
from sysretstat.record.format import (CHECKPOINT_BYTES, DATA_ERRORS,
                                      FRAME_TYPES, HEADER_LEN, MAGIC,
                                      MAGIC_MAX, PREFIX_LEN, READ_VERSIONS,
                                      TYPE_AT, V2_OUTCOMES, OutcomeOrder,
                                      UnknownOutcome, accumulate,
                                      decode_rows)
from sysretstat.record.series import Series


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
        self.version = None
        self.order = None           # the file's OutcomeOrder
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
        body = data[PREFIX_LEN:-1]
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
                        head[34:TYPE_AT] == b',"t":"'):
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
                if self.version >= 3:
                    self.order = self._outcome_order(off,
                                                     obj.get("outcomes"))
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
                except DATA_ERRORS as e:
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
        first = os.pread(self._fd, MAGIC_MAX, 0)
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
        version = head.get("version")
        if type(version) is not int or version not in READ_VERSIONS:
            raise RecordFileError(
                "%s: record format version %.40r; this sysretstat reads "
                "versions %s (record it again, or report it with the "
                "sysretstat that wrote it)"
                % (self.path, version,
                   ", ".join(str(v) for v in READ_VERSIONS[:-1]) + " and "
                   + str(READ_VERSIONS[-1])))
        if not schema_readable(head.get("schema")):
            raise RecordFileError("%s: data schema %r; this sysretstat "
                                  "reads %s.x" % (self.path,
                                                  head.get("schema"),
                                                  SCHEMA_MAJOR))
        self.schema = head["schema"]
        self.version = version
        if version == 2:
            self.order = self._outcome_order(0, list(V2_OUTCOMES))
        return nl + 1

    def _outcome_order(self, off, names):
        try:
            return OutcomeOrder(names)
        except UnknownOutcome as e:
            raise RecordFileError("%s: %s" % (self.path, e))
        except ValueError as e:
            raise self._err(off, "bad outcome list: %s" % e)

    def _tick(self, obj):
        if obj["i"] != self.intervals + 1:
            raise ValueError("interval %r after %d" % (obj["i"],
                                                       self.intervals))
        n = self.order.counts(obj["n"])
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
                total = decode_rows(c, meta, self.order)
            except DATA_ERRORS as e:
                raise self._err(off, "bad checkpoint: %s" % e)
        else:
            total = Snapshot(meta, Counts.zero(meta.get("filters", {}).get(
                "latency", True)))
        for off, length in self._deltas:
            d = self._read_frame(off, length)
            try:
                accumulate(total, d, self.order)
            except DATA_ERRORS as e:
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
        total.meta["recording"] = {"format_version": self.version,
                                   "intervals": self.intervals,
                                   "complete": self.complete}
        return total


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


# A report of a busy host is a few MB; more than this is not one.
JSON_MAX_BYTES = 256 << 20


def read_run(path):
    """A run to compare (`diff`): (Recording or None, Snapshot, schema)
    from a record file or a `report --json` document."""
    try:
        fd = open_regular(path)
        with os.fdopen(fd, "rb") as f:
            head = f.read(64)
            size = os.fstat(fd).st_size
            if not head.startswith(b'{"format"') and \
                    head.lstrip().startswith(b"{"):
                if size > JSON_MAX_BYTES:
                    raise RecordFileError(
                        "%s: a JSON document of %d bytes; the limit is %d"
                        % (path, size, JSON_MAX_BYTES))
                f.seek(0)
                data = f.read(JSON_MAX_BYTES + 1)
    except OSError as e:
        raise file_error(path, e) from None
    if head.startswith(b'{"format"'):
        rec = read(path)
        return rec, rec.cumulative(), rec.schema
    if head.lstrip().startswith(b"{"):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise RecordFileError("%s: not a sysretstat recording or JSON "
                                  "report (%s)" % (path, e))
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if not isinstance(schema, str) or not schema.startswith("sysretstat/"):
            raise RecordFileError("%s: JSON without a sysretstat report "
                                  "schema" % path)
        if not schema_readable(schema):
            raise RecordFileError("%s: report schema %s; this sysretstat "
                                  "compares %s.x" % (path, schema,
                                                     SCHEMA_MAJOR))
        try:
            snap = Snapshot.from_report(doc)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                OverflowError, RecursionError) as e:
            raise RecordFileError("%s: malformed report (%s: %s)"
                                  % (path, type(e).__name__, e))
        return None, snap, schema
    # Neither: let the record reader give its precise message.
    rec = read(path)
    return rec, rec.cumulative(), rec.schema
