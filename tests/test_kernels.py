"""The kernel matrix: other kernels booted under qemu with this machine's
root filesystem shared (tools/vmtest.py), each running the
classification tests with exact counts, the verifier-error test and the
BTF probes inside.

`make test` runs guest A's quick subset; `make test-kernels` runs every
column in full (marker `matrix`).  With CI=true a guest that cannot boot
fails the run; elsewhere it is skipped with the reason.
"""

import os
import sys

import pytest

from conftest import IN_CI, ROOT, bpf_missing

sys.path.insert(0, os.path.join(ROOT, "tools"))
import vmtest  # noqa: E402

pytestmark = [pytest.mark.guest, pytest.mark.bpf, pytest.mark.slow]

# What each column's guest must show of itself, independently of the
# tool: the kernel, the paging mode, the CPU vendor (whose compat entry
# the guest's compat_entry test then checks in the vDSO's code).
EXPECT = {
    "A": {"kernel": "6.1.", "la57": False, "vendor": "AuthenticAMD"},
    "B": {"kernel": "6.1.", "la57": True},
    "C": {"kernel": "6.1.", "la57": False, "vendor": "GenuineIntel"},
}


def run(column, quick):
    why = bpf_missing()
    if why:
        pytest.skip(why)
    try:
        r = vmtest.run_column(column, quick=quick)
    except vmtest.CannotBoot as e:
        if IN_CI:
            pytest.fail("guest %s cannot boot: %s" % (column, e))
        pytest.skip("guest %s cannot boot: %s" % (column, e))
    want = EXPECT[column]
    assert r["uname"].startswith(want["kernel"]), r["uname"]
    assert r["la57"] is want["la57"]
    if "vendor" in want:
        assert r["vendor"] == want["vendor"]
    failed = [c for c in r["doctor"]["checks"] if not c["ok"]] \
        if r["doctor"] else "no doctor output"
    assert r["doctor_ok"] and not failed, failed
    assert r["pytest_rc"] == 0, r["log"][-6000:]
    assert " passed" in r["summary"] and "failed" not in r["summary"] \
        and "skipped" not in r["summary"], r["summary"]
    return r


def test_guest_a_quick():
    run("A", quick=True)


@pytest.mark.matrix
@pytest.mark.parametrize("column", sorted(EXPECT))
def test_kernel_matrix(column):
    run(column, quick=False)
