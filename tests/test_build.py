"""Packaging: `pip install .` puts the compiled BPF objects in the
package; a missing libbpf is one clear error."""

import ctypes
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from sysretstat.kernel import libbpf as _libbpf
from sysretstat.errors import KernelFeatureMissing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang") is None,
                    reason="clang missing: the wheel would carry no objects")
def test_wheel_contains_bpf_objects(tmp_path):
    from test_install import clean_tree
    # From a copy: pip builds in the source tree, which may not be ours
    # to write (make test-unit as another user).
    src = clean_tree(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q",
                    "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), src], check=True, capture_output=True)
    wheel = next(tmp_path.glob("sysretstat-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sysretstat/bpf/sysret.bpf.o" in names
    assert "sysretstat/bpf/floor.bpf.o" in names
    # The sources travel too, for a rebuild against another clang.
    assert "sysretstat/bpf/sysret.bpf.c" in names


def test_missing_libbpf_is_one_clear_error(monkeypatch):
    def no_lib(*a, **kw):
        raise OSError("not found")
    monkeypatch.setattr(_libbpf, "_lib", None)
    monkeypatch.setattr(ctypes, "CDLL", no_lib)
    monkeypatch.setattr(_libbpf.ctypes.util, "find_library", lambda n: None)
    with pytest.raises(KernelFeatureMissing, match="libbpf.so.1 not found"):
        _libbpf.lib()


def test_build_without_clang_says_so(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))   # no clang on PATH
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools",
                                                     "build_objects.py"),
                        str(tmp_path / "pkg")], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        "sysretstat build: error: clang not found: apt-get install clang "
        "libbpf-dev"]
