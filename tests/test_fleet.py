"""`top --connect` against fleets: daemons that snapshot more slowly than
top draws, daemons that go away and come back, and each host's own
calibration.

The daemons are the real HTTP server (serve/server.py) serving synthetic
snapshots that a thread publishes at the daemon's interval, so nothing
needs the kernel.
"""

import socket
import threading
import time

import pytest

from sysretstat.commands.top import FleetFeed
from sysretstat.errors import RemoteError
from sysretstat.model.snapshot import Row
from sysretstat.penalty.calibration import Calibration
from sysretstat.serve import server as daemon
from sysretstat.source import remote
from sysretstat.ticker import Ticker
from sysretstat.top.rows import iret_cost_ns

from test_prometheus import counts, snapshot

# Each publish adds these to the one process: its rates are exact.
SYSRET, SIGNAL = 100, 10


class CountingState(daemon.State):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.reads = 0

    def cached(self, what, top=None, gz=False):
        if what == "snapshot":
            self.reads += 1
        return super().cached(what, top, gz)


class PacedDaemon:
    """A daemon publishing a growing snapshot every `period` seconds."""

    def __init__(self, hostname, period, penalty_ns=None, port=0):
        pen = None if penalty_ns is None else Calibration(
            {"cpu_model": "test", "kernel": "test",
             "mean_penalty_ns": penalty_ns,
             "reasons": {"signal": penalty_ns}}, path="/secret/path")
        self.state = CountingState(expose_processes=True, penalty=pen,
                                   interval_s=period)
        self.hostname, self.period, self.n = hostname, period, 0
        self._publish()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.listen(port)

    def listen(self, port=0):
        self.srv = daemon.bind("127.0.0.1", port, self.state,
                               stale_after=60)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def down(self):
        self.srv.shutdown()
        self.srv.server_close()

    def _publish(self):
        self.n += 1
        c = counts(sysret=SYSRET * self.n, signal=SIGNAL * self.n)
        snap = snapshot([(7, "app", c)])
        snap.meta["hostname"] = self.hostname
        snap.meta["duration_s"] = self.period * self.n
        snap.cpus[0] = Row(0, {"cpu": 0}, c.copy())
        self.state.publish(snap, snap)

    def _run(self):
        while not self.stop.wait(self.period):
            self._publish()

    def close(self):
        self.stop.set()
        self.down()


@pytest.fixture
def daemons():
    made = []

    def make(*a, **kw):
        d = PacedDaemon(*a, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop.set()
        try:
            d.down()
        except OSError:
            pass


def frames(feed, interval, until, timeout=20):
    """Tick `feed` every `interval` until until(feed) holds; every frame's
    (delta, hosts, warnings)."""
    out = []
    deadline = time.monotonic() + timeout
    for _ in Ticker(interval):
        feed.tick()
        out.append((feed.delta, feed.hosts, list(feed.warnings)))
        if until(feed):
            return out
        assert time.monotonic() < deadline, out[-1]


def rate(snap):
    return snap.totals.returns / snap.meta["interval_s"]


def test_daemon_publishes_its_pace_and_penalty(daemons):
    d = daemons("alpha", 0.5, penalty_ns=120)
    with remote.Fleet([d.url]) as f:
        snap, age = f._get(d.url)
    assert snap.meta["daemon"]["interval_s"] == 0.5
    assert snap.meta["daemon"]["generation"] >= 1
    assert 0 <= age < 5
    pen = snap.meta["iret_penalty"]
    assert pen["mean_penalty_ns"] == 120 and "path" not in pen
    assert remote.Penalty.of(snap.meta).penalty_ns("signal") == 120


def test_no_zero_frame_when_the_daemon_is_5x_slower(daemons):
    d = daemons("alpha", 0.5)
    fleet = remote.Fleet([d.url])
    try:
        feed = FleetFeed(fleet, per_host=True, interval=0.1)
        first = d.state.generation
        out = frames(feed, 0.1, lambda f: d.state.generation >= first + 5)
    finally:
        fleet.close()
    shown = [delta for delta, _, _ in out if delta is not None]
    assert len(shown) >= 10
    # Every frame, whichever phase it fell on: the daemon's own rate.
    for delta in shown:
        assert rate(delta) == pytest.approx((SYSRET + SIGNAL) / 0.5)
        assert delta.processes and all(
            r.fields["host"] == "alpha" for r in delta.processes.values())
    # It is read about once per snapshot, not once per frame.
    assert d.state.reads < len(out) / 2


def test_host_down_is_marked_others_go_on_and_it_comes_back(daemons):
    a = daemons("alpha", 0.3)
    b = daemons("beta", 0.3)
    fleet = remote.Fleet([a.url, b.url], timeout=1, backoff=(0.1, 0.3))
    try:
        feed = FleetFeed(fleet, per_host=True, interval=0.1)
        frames(feed, 0.1, lambda f: f.hosts and set(f.hosts) ==
               {"alpha", "beta"})
        b.down()
        gen = a.state.generation
        out = frames(feed, 0.1, lambda f: f.warnings and
                     a.state.generation >= gen + 3)
        delta, hosts, warnings = out[-1]
        down = [h for h in hosts if h.startswith("beta (unreachable "
                                                 "since ")]
        assert down and hosts[down[0]].totals.returns == 0
        assert "alpha" in hosts and rate(hosts["alpha"]) > 0
        assert len(warnings) == 1 and warnings[0].startswith(
            "beta unreachable since ") and "retry in" in warnings[0]
        assert "refused" in warnings[0] and "\n" not in warnings[0]
        assert "beta (unreachable since" in delta.meta["hostname"]
        # The view kept going on alpha alone, at alpha's rate.
        assert rate(delta) == pytest.approx((SYSRET + SIGNAL) / 0.3)
        assert {r.fields["host"] for r in delta.processes.values()} == \
            {"alpha"}
        # beta is back on its port: its row is back, unmarked.
        b.listen(b.port)
        frames(feed, 0.1, lambda f: not f.warnings and "beta" in f.hosts)
        assert rate(feed.hosts["beta"]) == pytest.approx(
            (SYSRET + SIGNAL) / 0.3, rel=0.01)
        assert feed.delta.meta["hostname"] == "alpha,beta"
    finally:
        fleet.close()


def test_slow_host_does_not_hold_frames(daemons):
    a = daemons("alpha", 0.3)
    # Accepts connections (the kernel's backlog) and never answers.
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    fleet = remote.Fleet([a.url, "127.0.0.1:%d" % mute.getsockname()[1]],
                         timeout=0.5, backoff=(0.2, 0.4))
    try:
        feed = FleetFeed(fleet, per_host=True, interval=0.1)
        assert any("no answer in 0.5s" in w or "timed out" in w
                   for w in feed.warnings), feed.warnings
        gen = a.state.generation
        spent = []

        def done(f):
            return a.state.generation >= gen + 3 and f.delta is not None
        t0 = time.monotonic()
        for _ in Ticker(0.1):
            s = time.monotonic()
            feed.tick()
            spent.append(time.monotonic() - s)
            if done(feed):
                break
            assert time.monotonic() - t0 < 20
        # A frame waits half its interval at most for a daemon.
        assert max(spent) < 0.05 + 0.3
        assert feed.warnings and rate(feed.delta) > 0
    finally:
        fleet.close()
        mute.close()


def test_cost_uses_each_hosts_penalty(daemons):
    a = daemons("alpha", 0.3, penalty_ns=100)
    b = daemons("beta", 0.3, penalty_ns=300)
    c = daemons("gamma", 0.3)           # no calibration on this host
    fleet = remote.Fleet([a.url, b.url])
    try:
        feed = FleetFeed(fleet, per_host=True, interval=0.1)
        frames(feed, 0.1, lambda f: f.hosts and set(f.hosts) ==
               {"alpha", "beta"})
        cal = feed.calibration
        assert cal.for_host("alpha").penalty_ns("signal") == 100
        assert cal.for_host("beta").penalty_ns("signal") == 300
        ha, hb = feed.hosts["alpha"], feed.hosts["beta"]
        assert cal.cost_ns(ha.totals, "alpha") == SIGNAL * 100
        assert cal.cost_ns(hb.totals, "beta") == SIGNAL * 300
        # The header's IRET cost (summed counts): each host's own.
        assert iret_cost_ns(feed.delta.totals, cal) == pytest.approx(
            SIGNAL * 100 + SIGNAL * 300)
    finally:
        fleet.close()
    fleet = remote.Fleet([c.url])
    try:
        assert FleetFeed(fleet, interval=0.1).calibration is None
    finally:
        fleet.close()


def test_nothing_reachable_is_one_line(daemons):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    fleet = remote.Fleet(["127.0.0.1:%d" % port], timeout=1)
    try:
        with pytest.raises(RemoteError) as e:
            FleetFeed(fleet, interval=0.1)
    finally:
        fleet.close()
    msg = str(e.value)
    assert "\n" not in msg and "refused" in msg and str(port) in msg


class Garbage:
    """A server answering every connection with `data`, then closing."""

    def __init__(self, data):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.data = data
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.data)


@pytest.mark.parametrize("data, says", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "did not answer with HTTP"),
    (b"HTTP/1.0 200 OK\r\n\r\n{not json", "did not answer with JSON"),
    (b"HTTP/1.0 200 OK\r\n\r\n[1, 2]", "not a sysretstat report"),
    (b'HTTP/1.0 200 OK\r\n\r\n{"schema": "sysretstat/1", "totals": {},'
     b'"meta": {"iret_penalty": {"mean_penalty_ns": "x"}}}',
     "not a sysretstat report"),
])
def test_garbage_is_one_line_and_marked(daemons, data, says):
    a = daemons("alpha", 0.3)
    g = Garbage(data)
    fleet = remote.Fleet([g.url], timeout=2)
    try:
        with pytest.raises(RemoteError, match=says) as e:
            FleetFeed(fleet, interval=0.1)
        assert "\n" not in str(e.value)
    finally:
        fleet.close()
    # Next to a daemon, it is a marked host, not the end of the view.
    fleet = remote.Fleet([a.url, g.url], timeout=2)
    try:
        feed = FleetFeed(fleet, per_host=True, interval=0.1)
        assert len(feed.warnings) == 1 and says in feed.warnings[0]
    finally:
        fleet.close()
        g.sock.close()


def test_batch_cli_marks_a_dead_host(daemons, run_cli):
    a = daemons("alpha", 0.3)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    r = run_cli("top", "--connect", a.url, "--connect",
                "127.0.0.1:%d" % port, "--per-host", "--by", "host", "-b",
                "-i", "0.1", "-n", "8", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    warn = [l for l in r.stdout.splitlines() if l.startswith("warning:")]
    assert warn and all("127.0.0.1:%d unreachable since" % port in l
                        for l in warn)
    summaries = [l for l in r.stdout.splitlines() if " returns " in l]
    assert len(summaries) == 8
    assert all(" returns 0/s" not in l for l in summaries), summaries


# Rows of a fleet: each host's own penalty, CPUs told apart by host.

def two_host_interval():
    """alpha and beta (100 and 300 ns per IRET), the same process and CPU
    on each, merged as top --connect merges them."""
    from sysretstat.model.snapshot import Snapshot
    by_host = {}
    for host, n in (("alpha", 1), ("beta", 2)):
        c = counts(sysret=SYSRET * n, signal=SIGNAL * n)
        s = snapshot([(7, "app", c)])
        s.meta.update(hostname=host, interval_s=1.0)
        s.cpus[0] = Row(0, {"cpu": 0}, c.copy())
        by_host[host] = s
    pens = {"alpha": remote.Penalty(100.0, {}),
            "beta": remote.Penalty(300.0, {})}
    cal = remote.FleetPenalty(pens, by_host)
    down = Snapshot({"hostname": "gamma", "interval_s": 1.0,
                     "unreachable_since": "2026-01-01T00:00:00+0000",
                     "error": "connection refused"})
    hosts = dict(by_host, **{"gamma (unreachable since 00:00:00)": down})
    return remote.merge_intervals(by_host, "alpha,beta"), hosts, cal


@pytest.mark.parametrize("view", ["process", "thread", "cpu", "host"])
def test_each_row_costs_its_own_hosts_penalty(view):
    from sysretstat.top import rows as tr, state as ts
    delta, hosts, cal = two_host_interval()
    if view == "thread":
        for k, r in delta.processes.items():
            delta.threads[k] = Row(k, dict(r.fields, tid=7), r.counts)
    st = ts.ViewState(view=view, views=ts.VIEWS + ("host",))
    cost = {r.host or r.name: r.cost_ns
            for r in tr.build_rows(delta, st, cal, hosts) if not r.down}
    # beta had twice alpha's signals, each three times as dear.
    assert cost == {"alpha": SIGNAL * 100, "beta": SIGNAL * 2 * 300}
    # The header's figure (summed counts) is still both hosts' own.
    assert iret_cost_ns(delta.totals, cal) == pytest.approx(
        SIGNAL * 100 + SIGNAL * 2 * 300)


def test_cpu_rows_of_a_fleet_name_their_host():
    from sysretstat.top import state as ts, view as tv
    from sysretstat.top import batch as top_batch
    delta, hosts, cal = two_host_interval()
    st = ts.ViewState(view="cpu")
    screen = tv.screen_text(tv.render(delta, st, 80, 24, calibration=cal))
    lines = screen.split("\n")
    head = lines[tv.HEADER_LINES].split()
    assert head[:3] == ["CPU", "HOST", "RET/s"], screen
    body = [l.split()[:2] for l in lines[tv.HEADER_LINES + 1:]
            if l.strip() and not l.startswith("q quit")]
    assert body == [["0", "beta"], ["0", "alpha"]], screen
    out = top_batch.text_frame(delta, st, cal)
    assert out.split("\n")[1].split()[:2] == ["CPU", "HOST"]
    # One host's CPUs: no HOST column.
    one = hosts["alpha"]
    screen = tv.screen_text(tv.render(one, st, 80, 24))
    assert "HOST" not in screen.split("\n")[tv.HEADER_LINES]


def test_host_view_shows_an_unreachable_host_as_dashes():
    from sysretstat.top import state as ts, view as tv
    delta, hosts, cal = two_host_interval()
    st = ts.ViewState(view="host", views=ts.VIEWS + ("host",))
    screen = tv.screen_text(tv.render(delta, st, 120, 24, calibration=cal,
                                      hosts=hosts))
    lines = screen.split("\n")
    row = next(l for l in lines if l.startswith("gamma (unreachable"))
    cells = row.split(")", 1)[1].split()
    assert cells and set(cells) == {"-"}, screen
    beta = next(l for l in lines if l.startswith("beta "))
    # 200 SYSRET and 20 signal IRETs at 300 ns each, in 1 s.
    assert beta.split()[1:4] + beta.split()[5:6] == [
        "220", "20", "9.1%", "6.0us"], screen


def test_batch_by_comm_against_a_daemon(daemons, run_cli):
    a = daemons("alpha", 0.3)
    r = run_cli("top", "--connect", a.url, "-b", "--by", "comm", "-i",
                "0.1", "-n", "6", timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    titles = [l.split()[:2] for l in lines if "REASON" in l]
    assert titles and all(t == ["COMM", "PROCS"] for t in titles)
    rows = [l.split() for l in lines if l.startswith("app ")]
    assert rows and all(row[1] == "1" and row[5] == "signal"
                        for row in rows), r.stdout
