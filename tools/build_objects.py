#!/usr/bin/env python3
"""Compile bpf/*.bpf.c (clang) and csrc/*.c (cc) into a package dir.

Usage: tools/build_objects.py [PACKAGE_DIR]   (default: sysretstat)
Writes PACKAGE_DIR/bpf/NAME.bpf.o (plus the BPF sources, so an installed
package can rebuild them) and PACKAGE_DIR/bin/NAME.  Used by setup.py
and the Makefile.  A missing compiler is one clear line and exit 1.
"""
import glob
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPF_CFLAGS = ["-g", "-O2", "-target", "bpf", "-mcpu=v3",
              "-D__TARGET_ARCH_x86", "-Wall", "-Werror"]
C_CFLAGS = ["-O2", "-Wall"]


def fail(msg):
    sys.stderr.write("sysretstat build: error: %s\n" % msg)
    raise SystemExit(1)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        if "bpf/bpf_helpers.h" in p.stderr:
            fail("libbpf headers missing: apt-get install libbpf-dev")
        fail("%s failed:\n%s" % (" ".join(cmd), p.stderr.strip()))


def build(pkg):
    clang = shutil.which("clang")
    if not clang:
        fail("clang not found: apt-get install clang libbpf-dev")
    cc = shutil.which("cc") or shutil.which("gcc")
    bpf_out = os.path.join(pkg, "bpf")
    bin_out = os.path.join(pkg, "bin")
    os.makedirs(bpf_out, exist_ok=True)
    src = os.path.join(HERE, "bpf")
    for f in glob.glob(os.path.join(src, "*.h")) + \
            glob.glob(os.path.join(src, "*.bpf.c")):
        if os.path.abspath(os.path.dirname(f)) != os.path.abspath(bpf_out):
            shutil.copy(f, bpf_out)
    for c in sorted(glob.glob(os.path.join(src, "*.bpf.c"))):
        name = os.path.basename(c)[:-len(".c")]
        out = os.path.join(bpf_out, name + ".o")
        run([clang] + BPF_CFLAGS + ["-I", src, "-c", c, "-o", out + ".tmp"])
        os.replace(out + ".tmp", out)
    csrcs = sorted(glob.glob(os.path.join(HERE, "csrc", "*.c")))
    if csrcs:
        if not cc:
            fail("no C compiler: apt-get install gcc")
        os.makedirs(bin_out, exist_ok=True)
        for c in csrcs:
            out = os.path.join(bin_out, os.path.basename(c)[:-2])
            run([cc] + C_CFLAGS + ["-o", out + ".tmp", c])
            os.replace(out + ".tmp", out)


if __name__ == "__main__":
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and
                             sys.argv[1].startswith("-")):
        # An option is not a package directory to create.
        sys.stdout.write(__doc__)
        raise SystemExit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    build(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE,
                                                             "sysretstat"))
