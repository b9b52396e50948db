"""The Python mirror (abi.py) must match bpf/sysret.h and the object's BTF."""

import ctypes
import os
import re
import struct

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


# BTF kinds and INT encoding bits (include/uapi/linux/btf.h).
BTF_INT, BTF_ARRAY, BTF_STRUCT, BTF_UNION, BTF_ENUM = 1, 3, 4, 5, 6
BTF_TYPEDEF, BTF_VOLATILE, BTF_CONST, BTF_RESTRICT = 8, 9, 10, 11
BTF_INT_SIGNED = 1
# Bytes each kind's record carries after struct btf_type: fixed, or per
# member (vlen).
BTF_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8),
             13: (0, 8), 14: (4, 0), 15: (0, 12), 17: (4, 0), 19: (0, 12)}


def elf_section(elf, wanted):
    """The bytes of section `wanted` of a little-endian ELF64 file."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3a)

    def header(i):
        name, _, _, _, off, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = header(shstrndx)
    for i in range(shnum):
        name, off, size = header(i)
        end = elf.index(b"\0", stroff + name)
        if elf[stroff + name:end].decode() == wanted:
            return elf[off:off + size]
    raise LookupError("no %s section" % wanted)


class Btf:
    """The types of a raw BTF blob, enough to describe structures: read
    here from the ELF, independently of abi.py and of libbpf."""

    def __init__(self, blob):
        magic, _, _, hdr_len, type_off, type_len, str_off, _ = \
            struct.unpack_from("<HBBIIIII", blob, 0)
        assert magic == 0xeb9f
        self.strs = blob[hdr_len + str_off:]
        self.types = [None]   # ids start at 1
        off, end = hdr_len + type_off, hdr_len + type_off + type_len
        while off < end:
            name_off, info, size_type = struct.unpack_from("<III", blob, off)
            kind, vlen = (info >> 24) & 0x1f, info & 0xffff
            fixed, each = BTF_EXTRA.get(kind, (0, 0))
            extra = blob[off + 12:off + 12 + fixed + each * vlen]
            self.types.append((kind, self.name(name_off), size_type,
                               info >> 31, vlen, extra))
            off += 12 + fixed + each * vlen

    def name(self, off):
        return self.strs[off:self.strs.index(b"\0", off)].decode()

    def struct_id(self, name):
        for tid, t in enumerate(self.types):
            if t and t[0] == BTF_STRUCT and t[1] == name:
                return tid
        return None

    def resolve(self, tid):
        while self.types[tid][0] in (BTF_TYPEDEF, BTF_VOLATILE, BTF_CONST,
                                     BTF_RESTRICT):
            tid = self.types[tid][2]
        return tid

    def size(self, tid):
        kind, _, size_type, _, _, extra = self.types[self.resolve(tid)]
        if kind == BTF_ARRAY:
            elem, _, nelems = struct.unpack_from("<III", extra)
            return nelems * self.size(elem)
        return size_type

    def shape(self, tid):
        """What a member holds, comparable with ctype_shape()."""
        kind, name, size, _, _, extra = self.types[self.resolve(tid)]
        if kind == BTF_INT:
            if name == "char":
                return ("char",)
            enc = struct.unpack_from("<I", extra)[0] >> 24
            return ("int", size, bool(enc & BTF_INT_SIGNED))
        if kind == BTF_ARRAY:
            elem, _, nelems = struct.unpack_from("<III", extra)
            return ("array", nelems, self.shape(elem))
        if kind in (BTF_STRUCT, BTF_UNION):
            return ("struct", name)
        return ("kind", kind, size)

    def members(self, tid):
        """(name, byte offset, size, shape) of each member, in order."""
        kind, _, _, kflag, vlen, extra = self.types[tid]
        out = []
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from("<III", extra, i * 12)
            bits = moff & 0xffffff if kflag else moff
            assert not (kflag and moff >> 24), "bit field"
            assert bits % 8 == 0
            out.append((self.name(name_off), bits // 8, self.size(mtype),
                        self.shape(mtype)))
        return out


def ctype_shape(t):
    names = {v: k for k, v in abi.MIRRORS.items()}
    if t is ctypes.c_char:
        return ("char",)
    if issubclass(t, ctypes.Array):
        return ("array", t._length_, ctype_shape(t._type_))
    if issubclass(t, ctypes.Structure):
        return ("struct", names.get(t, t.__name__))
    return ("int", ctypes.sizeof(t), t(-1).value < 0)


def mirror_members(cls):
    return [(name, getattr(cls, name).offset, getattr(cls, name).size,
             ctype_shape(t)) for name, t in cls._fields_]


@pytest.fixture(scope="module")
def object_btf():
    # The ELF's own .BTF, read without libbpf or privilege.
    return Btf(elf_section(objects.object_bytes("sysret"), ".BTF"))


@pytest.mark.parametrize("cname", sorted(abi.MIRRORS))
def test_struct_sizes_match_btf(cname):
    # Through libbpf, as the tracer sees the object.
    obj = bpf.BpfObject.open(objects.object_bytes("sysret"))
    try:
        size = obj.btf_struct_size(cname)
    finally:
        obj.close()
    assert size is not None, "struct %s not in the object's BTF" % cname
    assert size == ctypes.sizeof(abi.MIRRORS[cname])


@pytest.mark.parametrize("cname", sorted(abi.MIRRORS))
def test_struct_members_match_btf(cname, object_btf):
    # Names, offsets, sizes and types, member by member: two fields of
    # one size swapped in the mirror keep every size, not these.
    tid = object_btf.struct_id(cname)
    assert tid is not None, "struct %s not in the object's BTF" % cname
    assert mirror_members(abi.MIRRORS[cname]) == object_btf.members(tid)


def test_member_check_sees_a_swap_sizes_miss():
    # Two u64 counters of sr_lost swapped: every size stays, the members
    # compared above do not.
    f = list(abi.Lost._fields_)
    i, j = [n for n, _ in f].index("storage"), [n for n, _ in f].index(
        "entries")
    f[i], f[j] = f[j], f[i]
    swapped = type("Swapped", (ctypes.Structure,), {"_fields_": f})
    assert ctypes.sizeof(swapped) == ctypes.sizeof(abi.Lost)
    assert mirror_members(swapped) != mirror_members(abi.Lost)


def test_every_record_starts_with_its_kind():
    # tracer._parse_dump reads abi.RecHead before it knows the record.
    for cls in (abi.ThreadRec, abi.ProcDump, abi.ProcRec):
        assert mirror_members(cls)[0] == mirror_members(abi.RecHead)[0]


@pytest.mark.parametrize("cls", sorted(abi.MIRRORS.values(),
                                       key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_layout_decodes_every_field_where_ctypes_puts_it(cls):
    # Each byte is set to a distinct pattern through ctypes, then read
    # back through the generated struct format.
    raw = bytes((i * 7 + 3) & 0xff for i in range(ctypes.sizeof(cls)))
    ref = cls.from_buffer_copy(raw)
    lay = abi.Layout(cls)
    vals = lay.unpack_from(raw)
    for name, t in cls._fields_:
        got = vals[lay.at(name)]
        f = getattr(cls, name)
        if issubclass(t, ctypes.Array) and t._type_ is ctypes.c_char:
            # ctypes reads a char array up to its NUL: compare bytes.
            want = raw[f.offset:f.offset + f.size]
        else:
            want = getattr(ref, name)
        assert flatten(got) == flatten(want), name


def flatten(v):
    if isinstance(v, (bytes, int)):
        return [v]
    if isinstance(v, ctypes.Structure):
        return [x for n, _ in v._fields_ for x in flatten(getattr(v, n))]
    if isinstance(v, ctypes.Array) and v._type_ is ctypes.c_char:
        return [v.raw]
    return [x for e in v for x in flatten(e)]


def test_layout_skip_and_raw():
    lay = abi.Layout(abi.ProcDump, skip=("pad", "comm"), raw=("nz",))
    assert lay.size == ctypes.sizeof(abi.ProcDump)
    h = abi.ProcDump(kind=abi.REC_PROC, tgid=7)
    h.nz[1][0] = 5
    v = lay.unpack_from(bytes(h))
    with pytest.raises(KeyError):
        lay.at("comm")
    assert v[lay.at("tgid")] == 7
    nz = v[lay.at("nz")]
    assert len(nz) == abi.NR_LAT and nz[1] == bytes(h.nz[1])
    assert abi.set_bits(nz[1]) == [0, 2]


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
