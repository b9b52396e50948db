"""Kernel BTF probes: exact lookups by name and kind, answers cached,
the parsed BTF not kept."""

import os
import time

import pytest

from sysretstat.kernel import btf as kernelbtf


class FakeLib:
    """libbpf's btf__ calls over a dict of (name, kind) -> type id."""

    def __init__(self, types):
        self.types = types
        self.parsed = self.freed = 0

    def btf__parse(self, path, ext):
        self.parsed += 1
        return 0xb7f

    def btf__free(self, btf):
        assert btf == 0xb7f
        self.freed += 1

    def btf__find_by_name_kind(self, btf, name, kind):
        assert btf == 0xb7f
        return self.types.get((name.decode(), kind), -2)


@pytest.fixture
def fake(monkeypatch):
    lib = FakeLib({("btf_trace_sys_exit", kernelbtf.KIND_TYPEDEF): 7})
    monkeypatch.setattr(kernelbtf, "_lib", lambda: lib)
    monkeypatch.setattr(kernelbtf, "_answers", {})
    monkeypatch.setattr(kernelbtf, "_held", None)
    monkeypatch.delenv("SYSRETSTAT_BTF", raising=False)
    yield lib
    kernelbtf.release()


def test_answers_are_cached_and_the_btf_freed(fake, monkeypatch):
    monkeypatch.setattr(kernelbtf, "HOLD_S", 0)
    assert kernelbtf.tracepoint_exists("sys_exit")
    assert not kernelbtf.tracepoint_exists("sys_exi")   # no substring
    assert not kernelbtf.tracepoint_exists("sys_exit2")
    assert kernelbtf.tracepoint_exists("sys_exit")
    assert fake.parsed == 3 and fake.freed == 3
    assert kernelbtf._held is None


def test_a_burst_of_questions_parses_once(fake, monkeypatch):
    monkeypatch.setattr(kernelbtf, "HOLD_S", 0.05)
    for name in ("sys_exit", "sys_enter", "sched_switch"):
        kernelbtf.tracepoint_exists(name)
    assert fake.parsed == 1 and fake.freed == 0
    deadline = time.monotonic() + 10
    while kernelbtf._held is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.freed == 1
    assert kernelbtf.tracepoint_exists("sys_exit")      # from the cache
    assert fake.parsed == 1


def test_unreadable_btf_answers_no(fake, monkeypatch):
    monkeypatch.setattr(kernelbtf, "HOLD_S", 0)
    monkeypatch.setattr(fake, "btf__parse", lambda path, ext: None)
    assert kernelbtf.tracepoint_exists("sys_exit") is False
    assert kernelbtf.tracepoint_args("sys_exit") is None
    assert kernelbtf.sysret_guard_in_c() is None
    assert fake.freed == 0


@pytest.mark.skipif(not os.access("/sys/kernel/btf/vmlinux", os.R_OK),
                    reason="no readable kernel BTF")
def test_this_kernels_btf(monkeypatch):
    from sysretstat.kernel import libbpf
    from sysretstat.errors import KernelFeatureMissing
    try:
        libbpf.lib()
    except KernelFeatureMissing as e:
        pytest.skip(str(e))
    monkeypatch.delenv("SYSRETSTAT_BTF", raising=False)
    monkeypatch.setattr(kernelbtf, "_answers", {})
    monkeypatch.setattr(kernelbtf, "HOLD_S", 0)
    assert kernelbtf.tracepoint_exists("sys_exit")
    assert not kernelbtf.tracepoint_exists("sys_exi")
    assert kernelbtf.tracepoint_args("sys_exit") == 2   # regs, ret
    assert kernelbtf._held is None
