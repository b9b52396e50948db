"""`record` never loses a file: the previous FILE and FILE.old survive,
byte for byte, a kill at any moment and every failure that can be
provoked before the new recording holds a complete interval."""

import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT
from sysretstat import record
from sysretstat.record import writer
from sysretstat.errors import RecordFileError
from test_recordfile import META, make_delta

ENV = dict(os.environ, PYTHONPATH=ROOT)
OLD_A = b"previous FILE: not even a recording, kept as it is\n"
OLD_B = b"previous FILE.old\n"


def prepare(d):
    f = d / "r.data"
    f.write_bytes(OLD_A)
    (d / "r.data.old").write_bytes(OLD_B)
    return f


def untouched(d):
    return (sorted(os.listdir(d)) == ["r.data", "r.data.old"]
            and (d / "r.data").read_bytes() == OLD_A
            and (d / "r.data.old").read_bytes() == OLD_B)


def rotated(d):
    """The new recording is FILE, the previous FILE is FILE.old."""
    if sorted(os.listdir(d)) != ["r.data", "r.data.old"]:
        return False
    if (d / "r.data.old").read_bytes() != OLD_A:
        return False
    rec = record.read(str(d / "r.data"))
    return rec.intervals >= 1 and (
        os.stat(d / "r.data").st_mode & 0o777) == 0o600


# The Writer, without BPF ------------------------------------------------

def write_some(path, n, notes=None):
    rng = random.Random(n)
    w = record.Writer(str(path), notify=lambda m, a=False:
                          notes.append(m) if notes is not None else None)
    w.begin(META)
    for _ in range(n):
        w.interval(make_delta(rng))
    return w


@pytest.mark.parametrize("unnamed", [True, False])
def test_nothing_moves_before_a_complete_interval(tmp_path, monkeypatch,
                                                  unnamed):
    if not unnamed:
        # The file system cannot make unnamed files: a temporary name.
        monkeypatch.setattr(writer, "_open_unnamed", lambda p: None)
    f = prepare(tmp_path)
    w = write_some(f, 0)
    assert untouched(tmp_path) if unnamed else \
        (tmp_path / ("r.data.%d.tmp" % os.getpid())).exists()
    w.close()                   # a failure path: no final metadata
    assert untouched(tmp_path)
    # A clean stop with no interval at all moves nothing either.
    w = write_some(f, 0)
    w.close(META)
    assert untouched(tmp_path)
    notes = []
    w = write_some(f, 1, notes)
    assert rotated(tmp_path)
    assert notes == ["replacing the older %s.old (it is deleted)" % f,
                     "moved the existing %s to %s.old" % (f, f)]
    w.close(META)
    assert rotated(tmp_path)


def test_no_existing_file_no_notice(tmp_path):
    notes = []
    write_some(tmp_path / "r.data", 2, notes).close(META)
    assert notes == []
    assert os.listdir(tmp_path) == ["r.data"]
    assert record.read(str(tmp_path / "r.data")).intervals == 2


def test_old_is_not_a_file(tmp_path):
    f = prepare(tmp_path)
    (tmp_path / "r.data.old").unlink()
    (tmp_path / "r.data.old").mkdir()
    with pytest.raises(RecordFileError, match="not a regular file"):
        write_some(f, 1)
    assert (tmp_path / "r.data").read_bytes() == OLD_A
    assert sorted(os.listdir(tmp_path)) == ["r.data", "r.data.old"]


FULL_DISK = r"""
import random, resource, signal, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/tests")
from test_record_safety import write_some
from sysretstat.errors import RecordFileError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]),) * 2)
try:
    write_some(sys.argv[2], 3).close()
except RecordFileError as e:
    print(e)
"""


def test_full_disk_before_the_first_interval(tmp_path):
    f = prepare(tmp_path)
    out = subprocess.run([sys.executable, "-c", FULL_DISK, ROOT, str(f),
                          "900"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("writing %s:" % f)
    assert untouched(tmp_path)


# The command ------------------------------------------------------------

def run_record(d, *args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "sysretstat", "record", "-o",
         str(d / "r.data")] + [str(a) for a in args], env=ENV, cwd=str(d),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture
def open_tmp():
    """A directory any user can reach (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="sysretstat-test-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d)


def test_unwritable_directory_as_another_user(open_tmp):
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user")
    d = open_tmp
    f = prepare(d)
    # The CLI in a forked child that is no longer root (the interpreter
    # itself may live where that user cannot read).
    from sysretstat.commands.cli import main
    import logging  # noqa: F401  (the child cannot read the stdlib)
    import sysretstat.commands.record  # noqa: F401
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sys.stderr = os.fdopen(w, "w")
            os.setgid(65534)
            os.setuid(65534)
            rc = main(["record", "-o", str(f), "-d", "1"])
            sys.stderr.flush()
            os._exit(rc)
        except BaseException as e:
            os.write(2, repr(e).encode())
        finally:
            os._exit(99)
    os.close(w)
    with os.fdopen(r) as fh:
        err = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert err == "sysretstat: error: cannot create %s: permission " \
        "denied\n" % f
    assert untouched(d)


@pytest.mark.bpf
@pytest.mark.parametrize("argv,err", [
    (["--", "./missing"], "command not found: ./missing"),
    (["--", "./noexec"], "cannot run ./noexec: Exec format error"),
    (["-i", "-1"], "interval must be a positive number of seconds"),
])
def test_failures_keep_both_files(tmp_path, argv, err):
    f = prepare(tmp_path)
    noexec = tmp_path / "noexec"
    noexec.write_bytes(b"\x7fELF garbage")
    os.chmod(noexec, 0o755)
    p = run_record(tmp_path, *argv)
    _, stderr = p.communicate(timeout=60)
    noexec.unlink()
    assert p.returncode == 2, stderr
    assert stderr == "sysretstat: error: %s\n" % err
    assert untouched(tmp_path), f


def in_transition(d, pid):
    names = sorted(os.listdir(d))
    tmp = "r.data.%d.tmp" % pid
    return (names == sorted(["r.data", "r.data.old", tmp])
            and (d / "r.data").read_bytes() == OLD_A
            and (d / "r.data.old").read_bytes() in (OLD_A, OLD_B)
            and record.read(str(d / tmp)).intervals >= 1)


def published(d):
    """Observable: the new recording has taken FILE's name."""
    try:
        return (d / "r.data.old").read_bytes() == OLD_A
    except OSError:
        return False


@pytest.mark.bpf
def test_kill_sweep(tmp_path):
    """SIGKILL from 0 to 1 s after start, a 0.2 s interval, and once more
    just after the new file is published (polled): before the first
    interval both files are as they were; after it the new recording is
    FILE and the previous FILE is FILE.old.  Nothing else is ever left
    in the directory."""
    seen = set()
    for k, delay in enumerate([0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
                               0.8, 1.0, "published"]):
        d = tmp_path / str(k)
        d.mkdir()
        prepare(d)
        p = run_record(d, "-q", "-i", "0.2")
        if delay == "published":
            deadline = time.monotonic() + 60
            while not published(d) and p.poll() is None and \
                    time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            time.sleep(delay)       # the sweep itself is a time sweep
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        if untouched(d):
            seen.add("untouched")
        elif rotated(d):
            seen.add("rotated")
        else:
            # Killed inside the few microseconds of the rename itself:
            # still nothing lost, the new file under its temporary name.
            assert in_transition(d, p.pid), (delay, os.listdir(d))
    # Both sides of the first interval were seen (0 s is always before
    # it; "published" always after).
    assert seen == {"untouched", "rotated"}
