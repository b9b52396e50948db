"""`sysretstat daemon`: HTTP endpoints, robustness, shutdown.

The first half serves synthetic snapshots (no kernel needed); the
`bpf` half runs the real daemon on this kernel with workloads whose
returns are known by construction (tests/workloads/README.md).
"""

import ctypes
import errno
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from sysretstat.serve import server as daemon
from sysretstat.errors import UsageError
from sysretstat.source.remote import RemoteSource
from sysretstat.model.snapshot import SCHEMA, Snapshot, check_invariants

from test_prometheus import counts, parse_metrics, snapshot, value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "contrib", "grafana-dashboard.json")


def get(url, timeout=10, headers=None, method="GET"):
    """(status, headers, body) of one request; HTTP errors included."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw(port, data, timeout=5):
    """Send bytes on a fresh connection; what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        return out


# Synthetic snapshots ----------------------------------------------------
@pytest.fixture
def served():
    state = daemon.State(top=3, expose_processes=True)
    s = snapshot([(10, "a", counts(sysret=100, signal=7)),
                  (11, "b", counts(sysret=5, rcx_ne_rip=2))])
    state.publish(s, s)
    srv = daemon.bind("127.0.0.1", 0, state, stale_after=60)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield state, srv, "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_routes_methods_and_query(served):
    state, srv, url = served
    code, h, body = get(url + "/metrics")
    assert code == 200 and h["Content-Type"].startswith("text/plain")
    fams = parse_metrics(body.decode())
    assert value(fams, "sysretstat_returns_total", path="iret",
                 reason="signal") == 7
    # The bounded families are there from the first scrape.
    assert value(fams, "sysretstat_cgroup_returns_total", cgroup="other",
                 path="sysret") == 105
    assert fams["sysretstat_reason_detail_total"]["type"] == "counter"
    code, h, body = get(url + "/api/v1/snapshot?top=1")
    doc = json.loads(body)
    assert code == 200 and h["Content-Type"] == "application/json"
    assert [p["pid"] for p in doc["processes"]] == [10]
    assert get(url + "/api/v1/snapshot?top=0")[0] == 400
    assert get(url + "/api/v1/snapshot?top=x")[0] == 400
    assert get(url + "/nope")[0] == 404
    code, h, _ = get(url + "/metrics", method="POST")
    assert code == 405 and h["Allow"] == "GET, HEAD"
    assert get(url + "/metrics", method="DELETE")[0] == 405
    code, h, body = get(url + "/metrics", method="HEAD")
    assert code == 200 and body == b"" and int(h["Content-Length"]) > 100
    code, h, body = get(url + "/metrics", headers={"Accept-Encoding":
                                                  "gzip"})
    assert h["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == get(url + "/metrics")[2]
    assert b"/api/v1/interval" in get(url + "/")[2]


def until(pred, timeout=10, what="the condition"):
    """Poll `pred` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.01)


def test_healthz_turns_503_when_the_collector_stalls(served):
    state, srv, url = served
    assert get(url + "/healthz")[:3:2] == (200, b"ok\n")
    srv.stale_after = 0.05
    # Nothing publishes here: the last snapshot only ages.
    until(lambda: state.age() > srv.stale_after, what="a stale snapshot")
    code, _, body = get(url + "/healthz")
    assert code == 503 and body.startswith(b"stale")


def test_malformed_requests_get_an_answer_and_harm_nothing(served):
    state, srv, url = served
    port = srv.server_address[1]
    assert raw(port, b"\x00\x01\x02garbage\r\n\r\n").startswith(
        b"HTTP/1.1 400")
    assert raw(port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"
               ).split(b" ")[1] == b"414"
    assert raw(port, b"GET /metrics HTTP/9.9\r\n\r\n").split(b" ")[1] in (
        b"400", b"505")
    assert raw(port, b"BREW /metrics HTTP/1.1\r\n\r\n").split(b" ")[1] \
        == b"501"
    hdrs = b"".join(b"X-%d: y\r\n" % i for i in range(200))
    assert raw(port, b"GET /metrics HTTP/1.1\r\n" + hdrs + b"\r\n"
               ).split(b" ")[1] == b"431"
    raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n", timeout=0.2)
    assert get(url + "/healthz")[0] == 200


def test_slow_clients_and_100_concurrent_scrapes(served):
    state, srv, url = served
    port = srv.server_address[1]
    # Clients that send half a request and then nothing.
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    for s in slow:
        s.sendall(b"GET /metr")
    try:
        with ThreadPoolExecutor(100) as pool:
            results = list(pool.map(lambda _: get(url + "/metrics"),
                                    range(100)))
        assert all(code == 200 for code, _, _ in results)
        # One generation: all rendered once, all identical.
        assert len({body for _, _, body in results}) == 1
    finally:
        for s in slow:
            s.close()


def test_parse_listen():
    assert daemon.parse_listen("127.0.0.1:9717") == ("127.0.0.1", 9717)
    assert daemon.parse_listen("9000") == ("127.0.0.1", 9000)
    assert daemon.parse_listen("[::1]:80") == ("::1", 80)
    assert daemon.parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in (":9717", "host", "host:99999", "host:x", "[::1]"):
        with pytest.raises(UsageError):
            daemon.parse_listen(bad)


def test_busy_port_is_one_error_line(run_cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("daemon", "--listen", "127.0.0.1:%d" % port,
                    timeout=30)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("sysretstat: error: cannot listen on "
                               "127.0.0.1:%d: address already in use"
                               % port)


def test_bad_listen_is_a_usage_error(run_cli):
    r = run_cli("daemon", "--listen", ":9717", timeout=30)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("sysretstat: error: --listen:")


# The real daemon ----------------------------------------------------------
def start_daemon(*args, env=None, stderr=None):
    """Popen of the daemon on a free loopback port, and its base URL."""
    e = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    err = stderr or subprocess.PIPE
    p = subprocess.Popen([sys.executable, "-m", "sysretstat", "daemon",
                          "--listen", "127.0.0.1:0"] + list(args),
                         stderr=err, stdout=subprocess.DEVNULL, env=e,
                         cwd=ROOT, text=True)
    deadline = time.monotonic() + 60
    if stderr is None:
        line = p.stderr.readline()
    else:
        line = ""
        while time.monotonic() < deadline and "listening" not in line:
            time.sleep(0.1)
            with open(stderr.name) as f:
                line = f.read()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        p.kill()
        pytest.fail("daemon did not start: %r" % line)
    return p, "http://127.0.0.1:%s" % m.group(1)


def stop_daemon(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    try:
        out = p.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    return p.returncode, out


@pytest.fixture(scope="module")
def live():
    p, url = start_daemon("-i", "0.5", "--bpf-stats", "--expose-processes")
    try:
        yield p, url
    finally:
        if p.poll() is None:
            stop_daemon(p)


def wait_generation(url, after, timeout=10):
    """The /api/v1/snapshot document of a snapshot taken after `after`
    (a time.time())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = json.loads(get(url + "/api/v1/snapshot")[2])
        started = Snapshot.from_report(doc).meta
        end = _epoch(started["started_at"]) + started["duration_s"]
        if end > after:
            return doc
        time.sleep(0.1)
    pytest.fail("no new snapshot within %ss" % timeout)


def _epoch(iso):
    import datetime
    return datetime.datetime.fromisoformat(iso).timestamp()


META_KEYS = {"version", "kernel", "cpu_model", "hostname", "started_at",
             "duration_s", "interval_s", "command", "filters", "guard",
             "lost"}
COUNTS_KEYS = {"returns", "paths", "reasons"}
HIST_KEYS = {"count", "sum", "min", "max", "p50", "p90", "p99", "p999",
             "untimed", "buckets"}


def check_report(doc):
    assert doc["schema"] == SCHEMA
    assert META_KEYS <= set(doc["meta"])
    assert set(doc["meta"]["guard"]) >= {"task_size_max", "xen_pv", "fred",
                                         "la57"}
    for table, fields in (("processes", {"pid", "comm"}),
                          ("threads", {"pid", "tid", "comm"}),
                          ("syscalls", {"nr", "name", "abi"}),
                          ("cpus", {"cpu"})):
        for row in doc[table]:
            assert fields | COUNTS_KEYS <= set(row), (table, row)
    for row in [doc["totals"]] + doc["processes"] + doc["syscalls"] + \
            doc["cpus"]:
        assert row["returns"] == sum(row["paths"].values())
        assert row["paths"]["iret"] == sum(row["reasons"].values())
        for path, h in row["latency_ns"].items():
            assert set(h) == HIST_KEYS
            assert h["count"] == sum(b[2] for b in h["buckets"])
            # Every return of the path is timed or untimed (schema 1.1).
            assert h["count"] + h["untimed"] >= row["paths"][
                "iret" if path == "iret" else path]
    assert check_invariants(Snapshot.from_report(doc)) == []


@pytest.mark.bpf
def test_json_endpoints_follow_the_spec(live):
    p, url = live
    a = json.loads(get(url + "/api/v1/snapshot")[2])
    check_report(a)
    # Two generations on: a may be the first (taken at attach, nothing
    # counted yet), and the interval served with b must not cover all
    # of b's returns.
    b = a
    for _ in range(2):
        b = wait_generation(url, _epoch(b["meta"]["started_at"]) +
                            b["meta"]["duration_s"])
    iv = json.loads(get(url + "/api/v1/interval")[2])
    check_report(b)
    check_report(iv)
    # Cumulative since start: same start, more time, more returns.
    assert b["meta"]["started_at"] == a["meta"]["started_at"]
    assert b["meta"]["duration_s"] > a["meta"]["duration_s"]
    assert b["totals"]["returns"] >= a["totals"]["returns"]
    assert iv["meta"]["interval_s"] == pytest.approx(0.5, abs=0.4)
    assert iv["totals"]["returns"] < b["totals"]["returns"]
    assert get(url + "/healthz")[:3:2] == (200, b"ok\n")


@pytest.mark.bpf
def test_counts_survive_abuse(live, workloads):
    """Known IRETs while 100 concurrent scrapes, slow clients and junk
    hit the daemon: the workload's process row is exact."""
    p, url = live
    port = int(url.rsplit(":", 1)[1])
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    for s in slow:
        s.sendall(b"GET /api/v1/snap")
    stop = threading.Event()
    junk = [b"\x00\xffjunk\r\n\r\n", b"GET /" + b"x" * 70000 + b"\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"]

    def hammer():
        codes = []
        while not stop.is_set():
            for j in junk:
                raw(port, j, timeout=2)
            with ThreadPoolExecutor(100) as pool:
                codes += [c for c, _, _ in pool.map(
                    lambda _: get(url + "/metrics", timeout=30), range(100))]
        return codes

    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(hammer)
        try:
            wl = subprocess.run([os.path.join(workloads, "retpaths"),
                                 "signal", "300"], capture_output=True,
                                text=True, timeout=60)
            done = time.time()
            # Scrapes go on until the workload's counts are published.
            wait_generation(url, done)
        finally:
            stop.set()
        codes = fut.result(timeout=120)
    for s in slow:
        s.close()
    assert wl.returncode == 0, wl.stderr
    assert codes and all(c == 200 for c in codes), set(codes)
    assert p.poll() is None
    doc = wait_generation(url, done + 0.2)
    # The workload's pid is not known to us (subprocess.run), but its
    # comm and exact signal count are.
    rows = [r for r in doc["processes"] if r["comm"] == "retpaths" and
            r["reasons"].get("signal") == 300]
    assert len(rows) >= 1, [(r["comm"], r["reasons"]) for r in
                            doc["processes"] if r["comm"] == "retpaths"]
    fams = parse_metrics(get(url + "/metrics")[2].decode())
    assert value(fams, "sysretstat_returns_total", path="iret",
                 reason="signal") >= 300
    assert get(url + "/healthz")[0] == 200


@pytest.mark.bpf
def test_remote_source_reads_the_live_daemon(live, workloads):
    p, url = live
    wl = subprocess.Popen([os.path.join(workloads, "retpaths"), "signal",
                           "50"], stdout=subprocess.DEVNULL)
    assert wl.wait(60) == 0
    done = time.time()
    wait_generation(url, done + 0.2)
    with RemoteSource([url.replace("http://", "")]) as src:
        by_host = src.snapshots()
        merged = src.snapshot()
    (host, snap), = by_host.items()
    # Rows are keyed (pid, start_ns): find the workload's by its pid.
    rows = [r for r in merged.processes.values()
            if r.fields["pid"] == wl.pid]
    assert len(rows) == 1 and rows[0].counts.reason("signal") == 50
    row = rows[0]
    assert row.key[0] == host and row.fields["host"] == host
    mine = [r for r in snap.processes.values() if r.fields["pid"] == wl.pid]
    assert len(mine) == 1 and mine[0].counts.reason("signal") == 50


@pytest.mark.bpf
def test_every_dashboard_metric_is_exported(live):
    p, url = live
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t["expr"] for panel in dash["panels"]
             for t in panel.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\b((?:sysretstat|process)_[a-z0-9_]+)\b",
                               e))
    assert len(used) >= 8
    body = get(url + "/metrics")[2].decode()
    exported = {line.split("{")[0].split(" ")[0] for line in
                body.splitlines() if line and not line.startswith("#")}
    assert used <= exported, used - exported


# Shutdown ------------------------------------------------------------------
libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF = 321
BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID, BPF_LINK_GET_FD_BY_ID = \
    13, 14, 30


def bpf_object_exists(cmd, obj_id):
    attr = (ctypes.c_uint32 * 4)(obj_id, 0, 0, 0)
    fd = libc.syscall(SYS_BPF, cmd, attr, ctypes.sizeof(attr))
    if fd >= 0:
        os.close(fd)
        return True
    return ctypes.get_errno() != errno.ENOENT


def bpf_ids(pid):
    """{"prog_id": {...}, "link_id": {...}, "map_id": {...}} held by pid."""
    out = {"prog_id": set(), "link_id": set(), "map_id": set()}
    d = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(d):
        try:
            with open(os.path.join(d, fd)) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in out:
                        out[k].add(int(v))
        except OSError:
            pass
    return out


CMD = {"prog_id": BPF_PROG_GET_FD_BY_ID, "map_id": BPF_MAP_GET_FD_BY_ID,
       "link_id": BPF_LINK_GET_FD_BY_ID}


@pytest.mark.bpf
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_detaches_everything(tmp_path, sig):
    err = open(tmp_path / "stderr", "w+")
    # Pretend stderr is the journal, as systemd would say.
    st = os.fstat(err.fileno())
    p, url = start_daemon("-i", "0.5", stderr=err,
                          env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev,
                                                            st.st_ino)})
    assert get(url + "/healthz")[0] == 200
    ids = bpf_ids(p.pid)
    assert ids["prog_id"] and ids["link_id"]
    assert all(bpf_object_exists(CMD[k], i) for k, v in ids.items()
               for i in v)
    rc, _ = stop_daemon(p, sig)
    assert rc == 0
    deadline = time.monotonic() + 10
    left = ids
    while time.monotonic() < deadline:
        left = {k: {i for i in v if bpf_object_exists(CMD[k], i)}
                for k, v in ids.items()}
        if not any(left.values()):
            break
        time.sleep(0.1)
    assert not any(left.values()), left
    with open(err.name) as f:
        lines = f.read().splitlines()
    # journald form: one line per message, sd-daemon priority prefix.
    assert lines[0].startswith("<6>listening on ")
    assert lines[-1].startswith("<6>stopping after ")
    assert lines[-1].endswith("everything detached")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])),
                                 timeout=1)
