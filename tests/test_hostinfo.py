"""Detection of the guard model, with /proc and /sys substituted."""

import os

import pytest

from sysretstat.kernel import hostinfo, btf as kernelbtf
from sysretstat.errors import KernelFeatureMissing


@pytest.fixture
def files(monkeypatch):
    fake = {}
    monkeypatch.setattr(hostinfo, "_read", lambda p: fake.get(p))
    monkeypatch.setattr(kernelbtf, "sysret_guard_in_c", lambda: True)
    return fake


CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: "
           "Test CPU @ 3GHz\nflags\t\t: fpu syscall nx lm %s\n\n")


def test_plain_4_level(files):
    files["/proc/cpuinfo"] = CPUINFO % ""
    g = hostinfo.guard_model()
    assert g["task_size_max"] == 0x7ffffffff000
    assert not g["fred"] and not g["la57"] and not g["xen_pv"]
    assert hostinfo.cpu_vendor() == "intel"
    assert hostinfo.cpu_model() == "Test CPU @ 3GHz"


def test_la57_raises_task_size_max(files):
    files["/proc/cpuinfo"] = CPUINFO % "la57"
    g = hostinfo.guard_model()
    assert g["la57"] and g["task_size_max"] == 0x00fffffffffff000


def test_fred_flag(files):
    files["/proc/cpuinfo"] = CPUINFO % "fred lkgs"
    assert hostinfo.guard_model()["fred"]


@pytest.mark.parametrize("kind,guest,expected", [
    ("xen", "PV", True), ("xen", "HVM", False), ("xen", "PVH", False),
    ("kvm", "", False), (None, None, False)])
def test_xen_pv(files, kind, guest, expected):
    files["/proc/cpuinfo"] = CPUINFO % "hypervisor"
    if kind is not None:
        files["/sys/hypervisor/type"] = kind + "\n"
    if guest:
        files["/sys/hypervisor/guest_type"] = guest + "\n"
    assert hostinfo.xen_pv() is expected


def test_assume_overrides(files):
    files["/proc/cpuinfo"] = CPUINFO % ""
    g = hostinfo.guard_model({"xen_pv": True, "la57": True})
    assert g["xen_pv"] and g["task_size_max"] == 0x00fffffffffff000


def test_kernel_version_parse():
    assert hostinfo.kernel_version("6.18.44-fc-v595") == (6, 18)
    assert hostinfo.kernel_version("4.19.0") == (4, 19)
    assert hostinfo.kernel_version("weird") == (0, 0)


def test_capabilities(files):
    files["/proc/self/status"] = "Name:\tx\nCapEff:\t000000c000000000\n"
    assert hostinfo.capabilities() == {"CAP_BPF", "CAP_PERFMON"}
    assert hostinfo.can_trace()
    files["/proc/self/status"] = "CapEff:\t0000000000000000\n"
    assert not hostinfo.can_trace()


@pytest.mark.parametrize("in_c,release,pre_6_7,source", [
    (True, "6.1.0-57-amd64", False, "btf"),     # a backport: BTF wins
    (False, "6.18.44", True, "btf"),
    (None, "6.1.0", True, "version"),         # BTF silent: the version
    (None, "6.7.0", False, "version")])
def test_guard_model_probed_from_btf(files, monkeypatch, in_c, release,
                                     pre_6_7, source):
    files["/proc/cpuinfo"] = CPUINFO % ""
    monkeypatch.setattr(kernelbtf, "sysret_guard_in_c", lambda: in_c)
    monkeypatch.setattr(hostinfo, "kernel_release", lambda: release)
    g = hostinfo.guard_model()
    assert g["pre_6_7"] is pre_6_7 and g["guard_source"] == source


@pytest.mark.bpf
def test_btf_probe_matches_this_kernel():
    # do_syscall_64 returns bool from 6.7 on, void before (the two
    # kernels the harness boots: 6.18 here, 6.1 in guests).
    expect = hostinfo.kernel_version() >= (6, 7)
    assert kernelbtf.sysret_guard_in_c() is expect
    assert kernelbtf.tracepoint_exists("sys_exit")
    assert not kernelbtf.tracepoint_exists("no_such_tracepoint")


def test_btf_must_be_a_regular_file(monkeypatch):
    monkeypatch.setenv("SYSRETSTAT_BTF", "/dev/zero")
    with pytest.raises(KernelFeatureMissing, match="not a regular file"):
        kernelbtf.tracepoint_exists("sys_exit")


def test_readme_kernel_table_is_the_tested_table():
    from sysretstat.kernel import tested as kernels
    with open(os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))), "README.md")) as f:
        assert kernels.markdown() in f.read()


@pytest.mark.parametrize("release,part", [
    ("6.1.0-57-amd64", "tested on guest A"),
    ("6.18.44-fc", "tested on host"),
    ("5.15.0-91-generic", "untested series (tested: 6.1, 6.18; the programs "
                          "need 5.17 or newer)")])
def test_doctor_kernel_row(release, part):
    from sysretstat.kernel import tested as kernels
    assert part in kernels.describe(release)
