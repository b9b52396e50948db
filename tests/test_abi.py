"""The Python mirror (abi.py) must match bpf/sysret.h and the object's BTF."""

import ctypes
import os
import re

import pytest

from sysretstat.kernel import abi, bpf, objects

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def header():
    with open(os.path.join(ROOT, "bpf", "sysret.h")) as f:
        return f.read()


def enum_members(text, name):
    body = re.search(r"enum %s \{(.*?)\};" % name, text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return [m.strip().split("=")[0].strip()
            for m in body.split(",") if m.strip()]


def test_outcome_enum_matches_mirror():
    names = enum_members(header(), "sr_outcome")
    assert names[-1] == "SR_NR_OUTCOMES"
    assert [n[len("SR_O_"):].lower() for n in names[:-1]] == \
        list(abi.OUTCOMES)


def test_header_constants_match_mirror():
    text = header()

    def define(name):
        return re.search(r"#define %s (\d+)" % name, text).group(1)

    assert int(define("SR_SLOTS_X64")) == abi.SLOTS_X64
    assert int(define("SR_SLOTS_I386")) == abi.SLOTS_I386
    assert int(define("SR_SLOTS_X32")) == abi.SLOTS_X32
    assert int(define("SR_HIST_MAX_POW")) == abi.HIST_MAX_POW
    assert int(define("SR_COMM_LEN")) == abi.COMM_LEN


@pytest.mark.parametrize("cname", sorted(abi.MIRRORS))
def test_struct_sizes_match_btf(cname):
    # Opening needs no privilege: BTF is read from the ELF object.
    obj = bpf.BpfObject.open(objects.object_bytes("sysret"))
    try:
        size = obj.btf_struct_size(cname)
    finally:
        obj.close()
    assert size is not None, "struct %s not in the object's BTF" % cname
    assert size == ctypes.sizeof(abi.MIRRORS[cname])


def test_bucket_math_is_log_linear():
    # Every bucket above 8 ns is at most 1/8 of its lower bound wide, and
    # bucket_of inverts bucket_bounds.
    for i in range(abi.HIST_BUCKETS - 1):
        lo, hi = abi.bucket_bounds(i)
        assert abi.bucket_of(lo) == i
        assert abi.bucket_of(hi - 1) == i
        if lo >= 8:
            assert (hi - lo) * 8 <= lo
    lo, hi = abi.bucket_bounds(abi.HIST_BUCKETS - 1)
    assert hi is None and abi.bucket_of(lo * 1000) == abi.HIST_BUCKETS - 1


def test_slot_mapping_round_trips():
    for a in abi.ABI_NAMES:
        for nr in (0, 1, 15, 59, 334, 449):
            assert abi.slot_to_syscall(abi.syscall_to_slot(a, nr)) == (a, nr)
        assert abi.slot_to_syscall(abi.syscall_to_slot(a, -1)) == (a, -1)


def test_live_counts_follow_the_head():
    # bpf/sysret.bpf.c asserts run_cache starts like struct sr_live; the
    # head's size is checked against BTF above.
    assert abi.Live.counts.offset == ctypes.sizeof(abi.LiveHead)


def test_set_bits_reads_little_endian_u64_words():
    import struct
    raw = struct.pack("<3Q", 1 | 1 << 63, 0, 1 << 5)
    assert abi.set_bits(raw) == [0, 63, 133]
    assert abi.set_bits(bytes(48)) == []
