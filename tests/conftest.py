"""Shared test set-up.

Markers:
  bpf      the test loads BPF programs: needs root, kernel BTF, clang.
           Skipped where missing, except with CI=true, where a missing
           capability fails the run (the brief: BPF tests run for real).
  slow     takes more than a few seconds.
  guest    boots another kernel under qemu (tools/vmtest.py).
  matrix   a full column of the kernel matrix: `make test-kernels` only.
Fixtures:
  workloads  directory with the compiled test workloads (retpaths,
             compat32), built once per session.
  run_cli    run `python -m sysretstat ARGS` and return CompletedProcess,
             with no saved calibration (a test passes its own).
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_CI = os.environ.get("CI") == "true"


def bpf_missing():
    """Why BPF tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "no kernel BTF"
    if shutil.which("clang") is None:
        return "clang missing"
    if not os.path.exists("/usr/include/bpf/bpf_helpers.h"):
        return "libbpf-dev missing"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "bpf: loads BPF programs (root)")
    config.addinivalue_line("markers", "slow: slower than a few seconds")
    config.addinivalue_line("markers", "guest: boots a kernel under qemu")
    config.addinivalue_line("markers",
                            "matrix: full kernel matrix (make test-kernels)")


def pytest_collection_modifyitems(config, items):
    why = bpf_missing()
    if why is None:
        return
    for item in items:
        if "bpf" in item.keywords:
            if IN_CI:
                item.add_marker(pytest.mark.xfail(
                    reason="CI=true and BPF unavailable: " + why,
                    strict=True, run=False))
            else:
                item.add_marker(pytest.mark.skip(reason=why))


def pytest_sessionfinish(session, exitstatus):
    # With CI=true a missing BPF capability must fail the run.
    if IN_CI and bpf_missing() is not None:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def workloads(tmp_path_factory):
    out = tmp_path_factory.mktemp("workloads")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tests",
                                                      "workloads"),
                    "O=%s" % out], check=True)
    return str(out)


@pytest.fixture
def run_cli(tmp_path_factory):
    # Hermetic: no saved calibration of this machine (/var/lib, the
    # user's state) leaks into what a command prints; a test that wants
    # one passes SYSRETSTAT_CALIBRATION.
    state = str(tmp_path_factory.mktemp("state"))

    def run(*args, timeout=120, input=None, env=None, check=False):
        e = dict(os.environ, PYTHONPATH=ROOT, XDG_STATE_HOME=state,
                 SYSRETSTAT_CALIBRATION=os.path.join(state, "none.json"))
        e.pop("COLUMNS", None)     # output widths: set per test
        if env:
            e.update(env)
        return subprocess.run([sys.executable, "-m", "sysretstat"] +
                              [str(a) for a in args], capture_output=True,
                              text=True, timeout=timeout, input=input,
                              env=e, check=check, cwd=ROOT)
    return run
