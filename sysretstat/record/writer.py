"""Writing a recording: the Writer, and the checks and renames that keep
an existing FILE (and FILE.old) safe until the new one holds a complete
interval."""

import errno
import os

from sysretstat.errors import RecordFileError
from sysretstat.record.format import (CHECKPOINT_BYTES, CHECKPOINT_EVERY,
                                      encode_rows, frame, magic_line,
                                      meta_frame)


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
        self._write(meta_frame(meta))

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
