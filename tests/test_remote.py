"""RemoteSource: daemons' snapshots read over HTTP, merged or per host.

The daemons here are the real HTTP server serving synthetic snapshots,
so nothing needs the kernel.
"""

import socket
import threading

import pytest

from sysretstat.serve import server as daemon
from sysretstat.source import remote
from sysretstat.errors import SysretstatError, UsageError
from sysretstat.model.snapshot import Row

from test_prometheus import counts, snapshot


class FakeDaemon:
    def __init__(self, hostname, procs):
        self.state = daemon.State(expose_processes=True)
        snap = snapshot(procs)
        snap.meta["hostname"] = hostname
        snap.cpus[0] = Row(0, {"cpu": 0}, snap.totals.copy())
        self.state.publish(snap, snap)
        self.srv = daemon.bind("127.0.0.1", 0, self.state, stale_after=60)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def fleet():
    a = FakeDaemon("alpha", [(1, "init", counts(sysret=100, signal=5)),
                             (42, "app", counts(sysret=10, rcx_ne_rip=3))])
    b = FakeDaemon("beta", [(1, "init", counts(sysret=7, signal=1)),
                            (50, "db", counts(sysret=20, fork_child=2))])
    yield a, b
    a.close()
    b.close()


def test_merged_and_per_host(fleet):
    a, b = fleet
    with remote.RemoteSource([a.url, b.url + "/api/v1/snapshot"]) as src:
        per = src.snapshots()
        merged = src.snapshot()
    assert set(per) == {"alpha", "beta"}
    assert per["alpha"].totals.returns == 118
    assert merged.totals.returns == 118 + 30
    assert merged.totals.reasons() == {"signal": 6, "rcx_ne_rip": 3,
                                       "fork_child": 2}
    # pid 1 of each host stays its own row.
    init = [r for r in merged.processes.values() if r.fields["pid"] == 1]
    assert sorted((r.fields["host"], r.counts.returns) for r in init) == [
        ("alpha", 105), ("beta", 8)]
    assert len(merged.cpus) == 2
    assert merged.meta["hostname"] == "alpha,beta"
    assert set(merged.meta["hosts"]) == {"alpha", "beta"}


def test_same_hostname_twice_falls_back_to_host_port(fleet):
    a, b = fleet
    b.state.cumulative.meta["hostname"] = "alpha"
    b.state.publish(b.state.cumulative, b.state.interval)
    with remote.RemoteSource([a.url, b.url]) as src:
        per = src.snapshots()
    assert set(per) == {"alpha", b.url.split("//")[1]}


def test_top_is_passed_to_the_daemon(fleet):
    a, _ = fleet
    with remote.RemoteSource([a.url], top=1) as src:
        assert len(src.snapshot().processes) == 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_daemon_is_one_clear_error(fleet):
    a, _ = fleet
    dead = "127.0.0.1:%d" % free_port()
    with remote.RemoteSource([a.url, dead], timeout=2) as src:
        with pytest.raises(SysretstatError) as e:
            src.snapshot()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("cannot reach sysretstat daemon at http://%s:"
                          % dead)
    assert "refused" in msg
    # Tolerant: the live one is shown, the dead one reported.
    with remote.RemoteSource([a.url, dead], timeout=2,
                             tolerate=True) as src:
        assert set(src.snapshots()) == {"alpha"}
        assert list(src.errors) == ["http://" + dead]


def test_not_a_daemon(fleet):
    a, _ = fleet
    # An HTTP server without the API (the daemon's 404 page).
    with remote.RemoteSource([a.url + "/elsewhere"], timeout=2) as src:
        with pytest.raises(SysretstatError, match="HTTP 404"):
            src.snapshot()


def test_base_url():
    assert remote.base_url("h:1") == "http://h:1"
    assert remote.base_url("http://h:1/api/v1/snapshot") == "http://h:1"
    assert remote.base_url("https://h/x/metrics") == "https://h/x"
    for bad in ("ftp://h:1", "http://"):
        with pytest.raises(UsageError):
            remote.base_url(bad)
    with pytest.raises(UsageError):
        remote.RemoteSource([])
