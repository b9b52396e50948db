"""Native artifacts (the BPF objects, the bench helper): the packaged
build, else the source compiled once into a cache.

A package built with its compilers carries the artifacts; a source
checkout, or a wheel built without them, compiles on first use.  The
cached file's name holds a hash of everything that went into it (every
source file by name and content, the flags, the compiler), so an edited
header or another compiler gets a new file and a stale one is never
picked up; old ones are left for the user to clear.
"""

import hashlib
import os
import subprocess
import tempfile


def cache_dir():
    """Where compiled artifacts are kept: machine-wide for root (the
    daemon, a root top), else the user's XDG cache."""
    if os.geteuid() == 0:
        base = "/var/cache/sysretstat"
    else:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                            os.path.expanduser("~/.cache"), "sysretstat")
    os.makedirs(base, exist_ok=True)
    return base


def packaged_is_current(packaged, sources, executable=False):
    """Whether the packaged artifact exists (executable, if asked) and no
    source beside it is newer: a developer's edit must win over it."""
    if not (os.access(packaged, os.X_OK) if executable
            else os.path.exists(packaged)):
        return False
    newest = newest_mtime(sources)
    return newest is None or os.path.getmtime(packaged) >= newest


def newest_mtime(paths):
    times = [os.path.getmtime(p) for p in paths if os.path.exists(p)]
    return max(times) if times else None


def compiler_identity(cc):
    """What distinguishes one compiler from another: its path and its
    --version banner (an upgrade in place keeps the path)."""
    ident = cc.encode()
    try:
        ident += subprocess.run([cc, "--version"], capture_output=True,
                                timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    return ident


def source_key(sources, flags, cc):
    """A short hash of the sources (names and contents), flags and
    compiler, for naming the cached artifact."""
    h = hashlib.sha256()
    for p in sources:
        if not os.path.exists(p):
            continue
        with open(p, "rb") as f:
            data = f.read()
        # Name and length framed: moving code between two files changes
        # the key.
        name = os.path.basename(p).encode()
        h.update(b"%d:%s%d:" % (len(name), name, len(data)))
        h.update(data)
    h.update(b"\0".join(f.encode() for f in flags))
    h.update(b"\0" + compiler_identity(cc))
    return h.hexdigest()[:16]


def cached_path(stem, suffix, sources, flags, cc):
    return os.path.join(cache_dir(), "%s-%s%s" % (
        stem, source_key(sources, flags, cc), suffix))


def compile_into(out, argv, fail, mode=None):
    """Run the compiler `argv(tmp)`, which writes a temporary file beside
    `out`, and rename it to `out`: a reader never sees a partial file,
    and two processes compiling at once both end with a whole one.

    On a non-zero exit, raises `fail(stderr)` (an exception)."""
    d = os.path.dirname(out)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(out))
    os.close(fd)
    try:
        proc = subprocess.run(argv(tmp), capture_output=True, text=True)
        if proc.returncode != 0:
            raise fail(proc.stderr)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def first_line(text):
    return (text.strip().splitlines() or ["?"])[0]
