"""Fuzz targets shared by tests/test_fuzz.py (bounded, hypothesis) and
benchmarks/fuzz.py (a long run with a case count).

Each target starts from real inputs (a recording written by the real
Writer, a `report --json` document, argument lists the docs show) and
applies mutations chosen by a random.Random.  A target returns nothing
when the input was handled (accepted, or refused with a
SysretstatError: one line); anything else escapes as a bug.
"""

import contextlib
import copy
import io
import json
import os
import random
import socket
import zlib

from sysretstat.model import diff
from sysretstat import record
from sysretstat.record.format import PREFIX, PREFIX_LEN
from sysretstat.errors import SysretstatError
from sysretstat.render.csv import render_csv
from sysretstat.render.text import render_report

# Values that break assumptions about types and ranges.
NASTY = [None, True, -1, 0, 2 ** 31, 2 ** 64, 10 ** 400, -10 ** 30, 1e308,
         -0.0, "", "x", "\x1b[2J", [], [1], [[]], {}, {"a": 1}, [0] * 40,
         "9" * 5000, [None, None, None, None, None]]


def _random_value(rng, depth=0):
    if depth < 3 and rng.random() < 0.2:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return copy.deepcopy(rng.choice(NASTY))


def mutate_json(obj, rng, n=None):
    """Replace, drop or retype a few members anywhere in obj."""
    obj = json.loads(json.dumps(obj))
    for _ in range(n or rng.randint(1, 3)):
        # Walk to a random container.
        node, parents = obj, []
        for _ in range(rng.randrange(6)):
            kids = list(node.items()) if isinstance(node, dict) else \
                list(enumerate(node)) if isinstance(node, list) else []
            kids = [(k, v) for k, v in kids if isinstance(v, (dict, list))]
            if not kids:
                break
            k, v = rng.choice(kids)
            parents.append(node)
            node = v
        if isinstance(node, dict) and node:
            k = rng.choice(list(node))
            op = rng.random()
            if op < 0.15:
                del node[k]
            else:
                node[k] = _random_value(rng)
        elif isinstance(node, list) and node:
            i = rng.randrange(len(node))
            op = rng.random()
            if op < 0.15:
                del node[i]
            elif op < 0.25:
                node.append(_random_value(rng))
            else:
                node[i] = _random_value(rng)
    return obj


def mutate_bytes(data, rng):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if not data:
            break
        i = rng.randrange(len(data))
        if op < 0.4:
            data[i] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            del data[i:i + rng.randint(1, 64)]
        elif op < 0.8:
            data[i:i] = bytes(rng.randrange(256)
                              for _ in range(rng.randint(1, 16)))
        else:
            j = rng.randrange(len(data))
            data[i:i] = data[j:j + rng.randint(1, 200)]
    return bytes(data)


# Record files -------------------------------------------------------------
def frames(data):
    """[magic line, frame bytes...] of a record file."""
    nl = data.index(b"\n") + 1
    out, off = [data[:nl]], nl
    while off < len(data):
        n = int(data[off + 7:off + 17])
        out.append(data[off:off + n])
        off += n
    return out


def reframe(obj):
    """A frame with a valid length and CRC, whatever it holds."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    rest = body[1:]
    total = PREFIX_LEN + len(rest) + 1
    return (PREFIX % (total, zlib.crc32(rest))).encode() + \
        rest + b"\n"


def mutate_record(data, rng):
    """Half raw byte damage, half CRC-valid frames with wrong content."""
    if rng.random() < 0.4:
        return mutate_bytes(data, rng)
    parts = frames(data)
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(1, len(parts))
        obj = json.loads(b"{" + parts[i][PREFIX_LEN:-1])
        t = obj.pop("t")
        obj = mutate_json(obj, rng)
        if not isinstance(obj, dict):
            obj = {}
        parts[i] = reframe(dict({"t": t}, **obj))
    if rng.random() < 0.2:
        i = rng.randrange(1, len(parts))
        parts.insert(rng.randrange(1, len(parts) + 1), parts[i])
    return b"".join(parts)


def read_and_render(path):
    """What report and diff do with a file, in-process."""
    _, snap, _ = record.read_run(path)
    render_report(snap)
    render_report(snap, markdown=True, by="thread")
    render_csv(snap, view="process")
    render_csv(snap, view="syscall")
    json.dumps(snap.to_report())
    return snap


def record_target(seed_data, rng, path):
    with open(path, "wb") as f:
        f.write(mutate_record(seed_data, rng))
    try:
        snap = read_and_render(path)
        doc = diff.compare(snap, snap)
        from sysretstat.commands.diff import render
        doc["before"] = doc["after"] = diff.describe(path, snap, "s")
        render(doc, 15)
    except SysretstatError:
        pass


def report_doc_target(seed_doc, rng, path, other):
    """A mutated `report --json` document given to diff."""
    doc = mutate_json(seed_doc, rng) if rng.random() < 0.85 else None
    with open(path, "wb") as f:
        if doc is None:
            f.write(mutate_bytes(json.dumps(seed_doc).encode(), rng))
        else:
            f.write(json.dumps(doc).encode())
    try:
        from sysretstat.commands.diff import render
        _, a, _ = record.read_run(path)
        _, b, _ = record.read_run(other)
        for x, y in ((a, b), (b, a)):
            d = diff.compare(x, y)
            d["before"] = diff.describe(path, x, "s")
            d["after"] = diff.describe(other, y, "s")
            render(d, 15)
            render(d, 15, markdown=True)
            json.dumps(d)
        read_and_render(path)
    except SysretstatError:
        pass


# Command lines --------------------------------------------------------------
SEED_ARGS = [
    ["report", "FILE"], ["report", "FILE", "--json"],
    ["report", "FILE", "--by", "thread", "--top", "5"],
    ["report", "FILE", "--format", "csv", "--by", "syscall"],
    ["report", "FILE", "--format", "markdown", "--sort", "iret"],
    ["diff", "FILE", "FILE"], ["diff", "FILE", "FILE", "--json"],
    ["diff", "FILE", "FILE", "--format", "markdown", "--top", "3"],
    ["top", "-b", "-i", "1", "-n", "1"], ["top", "-p", "1", "--top", "3"],
    ["record", "-o", "OUT", "-d", "1", "-i", "0.5"],
    ["record", "-o", "OUT", "-p", "1", "--", "true"],
    ["daemon", "--listen", "127.0.0.1:0", "-i", "5", "--top", "3"],
]
ARG_WORDS = ["-i", "-p", "-d", "-n", "--top", "--by", "--sort", "--format",
             "--json", "-o", "--", "inf", "-inf", "nan", "1e300", "0",
             "-1", "2147483648", "9" * 5000, "0x10", "1_000", "", " ",
             "\x00", "\x1b[2J", "--listen", "[::1]:99999", "0.0.0.0:1",
             "thread", "csv", "FIFO", "/dev/zero", "/", "--cgroup", "..",
             "--no-latency", "-q", "--help", "²", "١٢"]


def mutate_args(args, rng):
    args = list(args)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(args) + 1)
        if op < 0.4 and len(args) > 1:
            args[rng.randrange(1, len(args))] = rng.choice(ARG_WORDS)
        elif op < 0.7:
            args.insert(max(1, i), rng.choice(ARG_WORDS))
        elif len(args) > 1:
            del args[rng.randrange(1, len(args))]
    return args


class WouldRun(BaseException):
    """Raised where a command would start tracing: the arguments were
    accepted."""


@contextlib.contextmanager
def no_tracing():
    """Stop every command just before it loads BPF or binds a port."""
    from sysretstat.commands import (daemon as cmd_daemon, record as
                                     cmd_record, top as cmd_top)

    def refuse(*a, **k):
        raise WouldRun()
    saved = [(cmd_record, "_record", cmd_record._record),
             (cmd_top, "open_source", cmd_top.open_source),
             (cmd_daemon.daemon, "bind", cmd_daemon.daemon.bind)]
    for mod, name, _ in saved:
        setattr(mod, name, refuse)
    try:
        yield
    finally:
        for mod, name, f in saved:
            setattr(mod, name, f)


def cli_target(args, files):
    """Run the CLI in-process; only exit 0/1/2, at most one error line,
    and no "internal error" are acceptable."""
    import sys
    from sysretstat.commands.cli import main
    args = [files.get(a, a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        rc = main(args)
    except WouldRun:
        rc = 0
    finally:
        sys.stdout, sys.stderr = old
    errors = [ln for ln in err.getvalue().splitlines()
              if ln.startswith("sysretstat: error:")]
    assert rc in (0, 1, 2), (args, rc, err.getvalue())
    assert len(errors) <= 1, (args, err.getvalue())
    assert not any("internal error" in ln for ln in errors), \
        (args, err.getvalue())
    assert "Traceback" not in err.getvalue(), (args, err.getvalue())


# HTTP ---------------------------------------------------------------------------
SEED_REQUESTS = [
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/snapshot?top=3 HTTP/1.1\r\nHost: x\r\n"
    b"Accept-Encoding: gzip\r\n\r\n",
    b"GET /api/v1/interval HTTP/1.0\r\n\r\n",
    b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /api/v1/snapshot?top=%C2%B2 HTTP/1.1\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
]


def http_exchange(addr, request, timeout=5.0):
    """Send one request; the response bytes (b"" if closed silently)."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        try:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        s.close()


def http_target(addr, request):
    """Any request gets a status line (or, for bytes that are not a
    request line at all, at least no 5xx), and the daemon stays up."""
    resp = http_exchange(addr, request)
    if resp:
        assert resp.startswith(b"HTTP/1."), (request, resp[:80])
        code = int(resp[9:12])
        assert code < 500 or code in (501, 503, 505), (request, resp[:200])
    health = http_exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert health.startswith(b"HTTP/1.0 200") or \
        health.startswith(b"HTTP/1.1 200"), health[:80]


def seed_files(tmpdir, rng=None):
    """A real recording and a real report document, in tmpdir."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_recordfile import make_delta, write_recording
    rng = rng or random.Random(7)
    rec = os.path.join(tmpdir, "seed.data")
    deltas = [make_delta(rng, procs=(("alpha", 101), ("beta", 202),
                                     ("gamma", 303))) for _ in range(5)]
    write_recording(rec, deltas, checkpoint_every=2)
    with open(rec, "rb") as f:
        data = f.read()
    doc = record.read(rec).cumulative().to_report()
    js = os.path.join(tmpdir, "seed.json")
    with open(js, "w") as f:
        json.dump(doc, f)
    return rec, data, js, doc
