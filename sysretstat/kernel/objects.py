"""Find the compiled BPF objects, compiling them on first use if needed.

`pip install .` compiles bpf/*.bpf.c into the package (setup.py); a
source checkout, or a wheel built without clang, compiles into a cache
keyed by the sources, the compiler and the flags.
"""

import glob
import os
import shutil

from sysretstat import native
from sysretstat.errors import BuildError

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGED = os.path.join(HERE, "bpf")
# A source checkout's bpf/ wins over the copy installed beside the
# objects: it is the one a developer edits.
SOURCE_DIRS = (os.path.join(os.path.dirname(HERE), "bpf"), PACKAGED)
CFLAGS = ["-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86",
          "-Wall", "-Werror"]


def source_dir():
    for d in SOURCE_DIRS:
        if os.path.exists(os.path.join(d, "sysret.bpf.c")):
            return d
    return None


def headers(src_dir):
    """Every header of the BPF sources: any of them may be included, so
    any of them changes the object."""
    return sorted(glob.glob(os.path.join(src_dir, "*.h")))


def sources(src_dir, name):
    return [os.path.join(src_dir, name + ".bpf.c")] + headers(src_dir)


def clang():
    for name in ("clang", "clang-16", "clang-15", "clang-14"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _no_clang():
    return BuildError("clang not found: install it (apt-get install "
                      "clang libbpf-dev) or reinstall sysretstat")


def compile_object(src, out, cc=None):
    """Compile one bpf/*.bpf.c into `out` (atomically)."""
    cc = cc or clang()
    if not cc:
        raise _no_clang()
    inc = os.path.dirname(src)

    def fail(stderr):
        first = native.first_line(stderr)
        if "bpf/bpf_helpers.h" in stderr:
            first = "libbpf headers missing (apt-get install libbpf-dev)"
        return BuildError("compiling %s failed: %s"
                          % (os.path.basename(src), first))

    native.compile_into(out, lambda tmp: [cc] + CFLAGS + [
        "-I", inc, "-c", src, "-o", tmp], fail)


def object_bytes(name="sysret"):
    """The ELF bytes of bpf/<name>.bpf.c, compiled if not packaged."""
    packaged = os.path.join(PACKAGED, name + ".bpf.o")
    src_dir = source_dir()
    # Installed, the sources sit beside the objects as copies (newer than
    # the objects, and no edit of a developer's): the objects win.
    srcs = [] if src_dir in (None, PACKAGED) else sources(src_dir, name)
    if native.packaged_is_current(packaged, srcs):
        with open(packaged, "rb") as f:
            return f.read()
    if src_dir is None:
        raise BuildError("BPF object %s.bpf.o is missing and no source to "
                         "build it from: reinstall sysretstat" % name)
    cc = clang()
    if not cc:
        raise _no_clang()
    out = native.cached_path(name, ".bpf.o", sources(src_dir, name), CFLAGS,
                             cc)
    if not os.path.exists(out):
        compile_object(os.path.join(src_dir, name + ".bpf.c"), out, cc)
    with open(out, "rb") as f:
        return f.read()
