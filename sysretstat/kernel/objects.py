"""Find the compiled BPF objects, compiling them on first use if needed.

`pip install .` compiles bpf/*.bpf.c into the package (setup.py); a
source checkout, or a wheel built without clang, compiles into a cache
keyed by the sources, the compiler and the flags.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

from sysretstat.errors import SysretstatError

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGED = os.path.join(HERE, "bpf")
# A source checkout's bpf/ wins over the copy installed beside the
# objects: it is the one a developer edits.
SOURCE_DIRS = (os.path.join(os.path.dirname(HERE), "bpf"), PACKAGED)
CFLAGS = ["-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86",
          "-Wall", "-Werror"]
HEADERS = ("vmlinux.h", "sysret.h")


class BuildError(SysretstatError):
    pass


def source_dir():
    for d in SOURCE_DIRS:
        if os.path.exists(os.path.join(d, "sysret.bpf.c")):
            return d
    return None


def clang():
    for name in ("clang", "clang-16", "clang-15", "clang-14"):
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_object(src, out, cc=None):
    """Compile one bpf/*.bpf.c into `out` (atomically)."""
    cc = cc or clang()
    if not cc:
        raise BuildError("clang not found: install it (apt-get install "
                         "clang libbpf-dev) or reinstall sysretstat")
    inc = os.path.dirname(src)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), suffix=".o")
    os.close(fd)
    try:
        proc = subprocess.run([cc] + CFLAGS + ["-I", inc, "-c", src, "-o",
                                               tmp],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["?"])[0]
            if "bpf/bpf_helpers.h" in proc.stderr:
                first = "libbpf headers missing (apt-get install libbpf-dev)"
            raise BuildError("compiling %s failed: %s"
                             % (os.path.basename(src), first))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cache_dir():
    if os.geteuid() == 0:
        base = "/var/cache/sysretstat"
    else:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                            os.path.expanduser("~/.cache"), "sysretstat")
    os.makedirs(base, exist_ok=True)
    return base


def _source_key(src_dir, name, cc):
    h = hashlib.sha256()
    for f in (name + ".bpf.c",) + HEADERS:
        p = os.path.join(src_dir, f)
        if os.path.exists(p):
            with open(p, "rb") as fh:
                h.update(fh.read())
    h.update(" ".join(CFLAGS).encode())
    try:
        h.update(subprocess.run([cc, "--version"], capture_output=True)
                 .stdout)
    except OSError:
        pass
    return h.hexdigest()[:16]


def object_bytes(name="sysret"):
    """The ELF bytes of bpf/<name>.bpf.c, compiled if not packaged."""
    packaged = os.path.join(PACKAGED, name + ".bpf.o")
    src_dir = source_dir()
    # A packaged object is used when no newer source sits beside it.
    if os.path.exists(packaged) and (
            src_dir is None or src_dir == PACKAGED or
            os.path.getmtime(packaged) >= _newest(src_dir, name)):
        with open(packaged, "rb") as f:
            return f.read()
    if src_dir is None:
        raise BuildError("BPF object %s.bpf.o is missing and no source to "
                         "build it from: reinstall sysretstat" % name)
    cc = clang()
    if not cc:
        raise BuildError("clang not found: install it (apt-get install "
                         "clang libbpf-dev) or reinstall sysretstat")
    out = os.path.join(_cache_dir(), "%s-%s.bpf.o"
                       % (name, _source_key(src_dir, name, cc)))
    if not os.path.exists(out):
        compile_object(os.path.join(src_dir, name + ".bpf.c"), out, cc)
    with open(out, "rb") as f:
        return f.read()


def _newest(src_dir, name):
    paths = [os.path.join(src_dir, f) for f in (name + ".bpf.c",) + HEADERS]
    return max(os.path.getmtime(p) for p in paths if os.path.exists(p))
