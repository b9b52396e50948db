"""Compile-and-cache of the native artifacts (BPF objects, the bench
helper), with a stand-in compiler: no clang, gcc or root needed."""

import os
import stat

import pytest

from sysretstat import native
from sysretstat.errors import BenchError, BuildError
from sysretstat.kernel import objects
from sysretstat.penalty import measure

# A "compiler" that concatenates its inputs into -o, logs each run, and
# fails on a source that says FAIL.
FAKE_CC = """#!/bin/sh
case "$1" in --version) echo "fakecc 1.0"; exit 0;; esac
echo run >> "$(dirname "$0")/runs"
out=; srcs=
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift;;
    -I|-target) shift;;
    -*) ;;
    *) srcs="$srcs $1";;
  esac
  shift
done
if grep -q FAIL $srcs; then echo "x.c:1: error: FAIL here" >&2; exit 1; fi
cat $srcs > "$out"
"""


@pytest.fixture
def cc(tmp_path, monkeypatch):
    d = tmp_path / "cc"
    d.mkdir()
    path = d / "fakecc"
    path.write_text(FAKE_CC)
    path.chmod(0o755)
    monkeypatch.setattr(native, "cache_dir", lambda: str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    runs = d / "runs"
    return str(path), (lambda: len(runs.read_text().splitlines())
                       if runs.exists() else 0)


@pytest.fixture
def bpf_src(tmp_path, monkeypatch, cc):
    src = tmp_path / "bpf"
    src.mkdir()
    (src / "sysret.bpf.c").write_text("prog\n")
    (src / "sysret.h").write_text("h1\n")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    monkeypatch.setattr(objects, "SOURCE_DIRS", (str(src), str(pkg)))
    monkeypatch.setattr(objects, "PACKAGED", str(pkg))
    monkeypatch.setattr(objects, "clang", lambda: cc[0])
    return src


def test_source_key_covers_every_header(tmp_path, cc):
    a = tmp_path / "a.c"
    h = tmp_path / "h.h"
    a.write_text("x")
    h.write_text("y")
    k0 = native.source_key([str(a), str(h)], ["-O2"], cc[0])
    assert native.source_key([str(a), str(h)], ["-O2"], cc[0]) == k0
    h.write_text("z")
    k1 = native.source_key([str(a), str(h)], ["-O2"], cc[0])
    assert k1 != k0
    # Moving text from one file to another is another build.
    a.write_text("xz")
    h.write_text("")
    assert native.source_key([str(a), str(h)], ["-O2"], cc[0]) != k1
    assert native.source_key([str(a), str(h)], ["-O3"], cc[0]) != \
        native.source_key([str(a), str(h)], ["-O2"], cc[0])


def test_bpf_object_compiled_once_and_rebuilt_for_a_new_header(bpf_src,
                                                               cc):
    _, runs = cc
    assert objects.object_bytes("sysret") == b"prog\n"
    assert objects.object_bytes("sysret") == b"prog\n"
    assert runs() == 1
    # A header split out of the source after the first build is part of
    # the key (a glob, not a fixed list).
    (bpf_src / "maps.h").write_text("new\n")
    objects.object_bytes("sysret")
    assert runs() == 2
    (bpf_src / "maps.h").write_text("changed\n")
    objects.object_bytes("sysret")
    assert runs() == 3
    names = os.listdir(native.cache_dir())
    assert len(names) == 3 and all(n.startswith("sysret-") and
                                   n.endswith(".bpf.o") for n in names)


def test_packaged_object_wins_unless_a_source_is_newer(bpf_src, cc,
                                                       tmp_path):
    _, runs = cc
    packaged = tmp_path / "pkg" / "sysret.bpf.o"
    packaged.write_bytes(b"packaged")
    old = os.path.getmtime(bpf_src / "sysret.h") - 10
    for f in bpf_src.iterdir():
        os.utime(f, (old, old))
    assert objects.object_bytes("sysret") == b"packaged"
    (bpf_src / "guard.h").write_text("edited\n")     # newer than it
    assert objects.object_bytes("sysret") != b"packaged"
    assert runs() == 1


def test_compile_failure_is_one_line_and_leaves_nothing(bpf_src, cc):
    (bpf_src / "sysret.bpf.c").write_text("FAIL\n")
    with pytest.raises(BuildError, match="^compiling sysret.bpf.c failed: "
                                         "x.c:1: error: FAIL here$"):
        objects.object_bytes("sysret")
    assert os.listdir(native.cache_dir()) == []


def test_no_clang_is_a_build_error(bpf_src, monkeypatch):
    monkeypatch.setattr(objects, "clang", lambda: None)
    with pytest.raises(BuildError, match="clang not found"):
        objects.object_bytes("sysret")


def test_bench_helper_built_once_executable(tmp_path, cc, monkeypatch):
    path, runs = cc
    src = tmp_path / "sysretbench.c"
    src.write_text("int main;\n")
    monkeypatch.setattr(measure, "PACKAGED", str(tmp_path / "none"))
    monkeypatch.setattr(measure, "SOURCE", str(src))
    monkeypatch.setattr(measure, "_gcc", lambda: path)
    out = measure.helper_path()
    assert measure.helper_path() == out
    assert runs() == 1
    assert os.path.basename(out).startswith("sysretbench-")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
    src.write_text("FAIL\n")
    with pytest.raises(BenchError, match="building the bench helper "
                                         "failed: x.c:1: error: FAIL"):
        measure.helper_path()


def test_cache_dir_for_a_user(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.cache_dir() == str(tmp_path / "sysretstat")
    assert os.path.isdir(tmp_path / "sysretstat")
