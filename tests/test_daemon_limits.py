"""The daemon's HTTP layer under hostile clients (issue 12): bounded
heads, timeouts, a connection cap, renders outside the publish lock,
/healthz never behind a render, malformed ?top= answered, per-process
detail opt-in, and no *_total series going down.  Synthetic snapshots
on loopback: no BPF."""

import json
import socket
import threading
import time

import pytest

from sysretstat.serve import server as daemon
from sysretstat.render import prometheus
from test_daemon import get, raw
from test_prometheus import counts, parse_metrics, snapshot


class Fast(daemon.Limits):
    head_timeout = 0.5
    idle_timeout = 0.5
    write_timeout = 0.5
    max_connections = 20


def serve(state, limits=None):
    srv = daemon.bind("127.0.0.1", 0, state, stale_after=3600,
                      limits=limits)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d" % srv.server_address[1]


@pytest.fixture
def state():
    st = daemon.State(top=3)
    s = snapshot([(10, "a", counts(sysret=100, signal=7)),
                  (11, "b", counts(sysret=5, rcx_ne_rip=2))])
    st.publish(s, s)
    return st


@pytest.fixture
def fast(state):
    srv, url = serve(state, Fast())
    yield state, srv, url
    srv.shutdown()
    srv.server_close()


def test_listen_backlog_is_real(fast):
    _, srv, _ = fast
    # ss would show it; the socket option is what listen(2) was given.
    assert srv.limits.backlog >= 1024


def test_malformed_top_gets_400(fast):
    _, srv, url = fast
    for q in ("%C2%B2", "\u00b2".encode().decode("latin-1"), "9" * 5000,
              "0", "-1", "1e3", "%00", "1%20"):
        code = get(url + "/api/v1/snapshot?top=" + q)[0] \
            if q.isascii() else None
        if code is None:
            resp = raw(srv.server_address[1],
                       b"GET /api/v1/snapshot?top=\xc2\xb2 HTTP/1.1\r\n\r\n")
            code = int(resp.split(b" ")[1])
        assert code == 400, q


def test_slowloris_and_oversized_heads_are_cut_off(fast):
    _, srv, url = fast
    port = srv.server_address[1]
    # Many header lines, each large, no blank line: cut at the limits.
    big = b"GET /metrics HTTP/1.1\r\n" + b"X-A: " + b"a" * 65000 + b"\r\n"
    assert raw(port, big).split(b" ")[1] == b"431"
    many = b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 5000
    assert raw(port, many).split(b" ")[1] == b"431"
    # A client that sends a byte at a time is closed at head_timeout.
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    s.settimeout(10)
    closed = False
    try:
        for ch in b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 100:
            s.sendall(bytes([ch]))
            time.sleep(0.05)
            if time.monotonic() - t0 > 5:
                break
    except OSError:
        closed = True
    if not closed:
        closed = s.recv(100) == b""
    s.close()
    assert closed and time.monotonic() - t0 < 5
    assert srv.counts["timeouts"] >= 1
    assert get(url + "/healthz")[0] == 200


def test_connection_cap_answers_503(fast):
    _, srv, url = fast
    port = srv.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port))
            for _ in range(srv.max_connections)]
    try:
        deadline = time.monotonic() + 5
        while srv.active < srv.max_connections and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        resp = raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert resp.startswith(b"HTTP/1.1 503"), resp
        assert srv.counts["refused"] >= 1
    finally:
        for s in idle:
            s.close()
    # Once the idle ones time out or close, service resumes.
    deadline = time.monotonic() + 5
    while srv.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert get(url + "/healthz")[0] == 200


def test_keep_alive_serves_several_requests(fast):
    _, srv, _ = fast
    s = socket.create_connection(("127.0.0.1", srv.server_address[1]))
    s.settimeout(5)
    s.sendall(b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n"
              b"Connection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_healthz_does_not_wait_behind_a_render(state, monkeypatch):
    """A rendering that takes long (here: blocked on purpose) delays
    neither /healthz nor publish()."""
    gate = threading.Event()
    real = prometheus.render

    def slow(*a, **k):
        gate.wait(30)
        return real(*a, **k)
    monkeypatch.setattr(prometheus, "render", slow)
    srv, url = serve(state)
    try:
        box = []
        t = threading.Thread(target=lambda: box.append(
            get(url + "/metrics", timeout=30)))
        t.start()
        deadline = time.monotonic() + 5
        while not state._flights and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state._flights          # the render is in progress
        t0 = time.monotonic()
        assert get(url + "/healthz", timeout=5)[0] == 200
        s2 = snapshot([(10, "a", counts(sysret=200, signal=9))])
        state.publish(s2, s2)
        assert time.monotonic() - t0 < 1.0
        gate.set()
        t.join(30)
        assert box and box[0][0] == 200
    finally:
        gate.set()
        srv.shutdown()
        srv.server_close()


def test_processes_are_opt_in(state):
    srv, url = serve(state)
    try:
        doc = json.loads(get(url + "/api/v1/snapshot")[2])
        assert doc["processes"] == [] and doc["threads"] == []
        assert doc["meta"]["hidden"] == ["processes", "threads"]
        assert doc["totals"]["returns"] == 114
    finally:
        srv.shutdown()
        srv.server_close()
    state.expose_processes = True
    state.publish(state.cumulative, state.interval, count_interval=False)
    srv, url = serve(state)
    try:
        doc = json.loads(get(url + "/api/v1/snapshot")[2])
        assert {p["pid"] for p in doc["processes"]} == {10, 11}
    finally:
        srv.shutdown()
        srv.server_close()


def test_exposure_warning():
    assert daemon.exposure_warning("127.0.0.1", 1, False) is None
    assert daemon.exposure_warning("::1", 1, True) is None
    assert daemon.exposure_warning("127.5.0.1", 1, True) is None
    w = daemon.exposure_warning("0.0.0.0", 9717, False)
    assert "0.0.0.0:9717" in w and "not loopback" in w
    assert "per-command-name" in w and "process and thread" not in w
    w = daemon.exposure_warning("::", 9717, True)
    assert "[::]:9717" in w and "every process and thread" in w


def scrape_never_lower(st, last, step):
    """The families of a scrape of `st`, after checking that no *_total
    sample is lower than its value in `last` (the last seen of each,
    updated here), also after an absence."""
    fams = parse_metrics(st.render("metrics")[0].decode())
    for fam, f in fams.items():
        if not fam.endswith("_total"):
            continue
        for name, labels, v in f["samples"]:
            key = (name, tuple(sorted(labels.items())))
            assert v >= last.get(key, 0), (step, key, last[key], v)
            last[key] = v
    return fams


def test_no_total_goes_down_across_publishes():
    """Every sysretstat_*_total sample over 300 publishes where commands
    enter and leave the top-N, rendered as scrapes see them."""
    import random
    rng = random.Random(3)
    st = daemon.State(top=2)
    names = ["c%d" % i for i in range(8)]
    cum = {n: [0, 0] for n in names}
    last = {}
    for step in range(300):
        busy = set(rng.sample(names, 2))
        delta = []
        for k, n in enumerate(names):
            s, i = (rng.randint(100, 900), rng.randint(0, 20)) if n in busy \
                else (rng.randint(0, 2), 0)
            cum[n][0] += s
            cum[n][1] += i
            delta.append((k + 1, n, counts(sysret=s, signal=i)))
        st.publish(snapshot([(k + 1, n, counts(sysret=v[0], signal=v[1]))
                             for k, (n, v) in enumerate(cum.items())]),
                   snapshot(delta))
        scrape_never_lower(st, last, step)
    assert len([k for k in last if k[0] ==
                "sysretstat_comm_returns_total"]) > 2 * 3
