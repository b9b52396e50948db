"""`top --connect` in tmux against two real daemons, one of which is
stopped halfway: top follows the daemons' 5x slower interval without
0/s frames, marks the stopped one and goes on with the other."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from test_top_tmux import ROOT, Tmux, pytestmark  # noqa: F401

DAEMON_INTERVAL = 2.0
TOP_INTERVAL = DAEMON_INTERVAL / 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(port):
    return subprocess.Popen(
        [sys.executable, "-m", "sysretstat", "daemon", "--listen",
         "127.0.0.1:%d" % port, "-i", str(DAEMON_INTERVAL),
         "--expose-processes"], cwd=ROOT, env=dict(os.environ,
                                                   PYTHONPATH=ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def generation(port):
    """The daemon's snapshot generation, or None while it is not up."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/snapshot"
                                    "?top=1" % port, timeout=5) as r:
            return json.load(r)["meta"]["daemon"]["generation"]
    except (OSError, ValueError, KeyError):
        return None


def wait(pred, what, timeout=60):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < end, "never: " + what
        time.sleep(0.1)


RATE = re.compile(r"^returns (\S+)/s")


def watch(t, until, timeout=60):
    """Every distinct screen until until(screen); none may show a fleet
    rate of 0/s (the workload of this test host never stops)."""
    seen = []
    end = time.monotonic() + timeout
    while True:
        s = t.screen()
        if not seen or s != seen[-1]:
            seen.append(s)
            line = s.split("\n")[1]
            m = RATE.match(line)
            if m:
                assert m.group(1) != "0", s
        if until(s):
            return seen
        assert time.monotonic() < end, s
        time.sleep(0.05)


@pytest.fixture
def two_daemons():
    ports = [free_port(), free_port()]
    procs = [start_daemon(p) for p in ports]
    try:
        for p, proc in zip(ports, procs):
            wait(lambda: generation(p) or proc.poll() is not None,
                 "daemon on %d up" % p)
            assert proc.poll() is None, proc.stderr.read()
        yield ports, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


def test_fleet_view_survives_a_stopped_daemon(two_daemons):
    (pa, pb), (_, db) = two_daemons
    t = Tmux("top -i %g --per-host --connect 127.0.0.1:%d "
             "--connect 127.0.0.1:%d" % (TOP_INTERVAL, pa, pb), w=120, h=30)
    try:
        # Both daemons run on this host with the same hostname: the
        # second one is named by its address.
        b_name = "127.0.0.1:%d" % pb
        t.wait_for(lambda s: "[6 host]" in s and b_name in s
                   and RATE.search(s.split("\n")[1] if s.count("\n") else
                                   "") is not None, timeout=30)
        g0 = generation(pa)
        # Several daemon snapshots, at 5 frames each: never 0/s.
        seen = watch(t, lambda s: generation(pa) >= g0 + 3)
        assert len(seen) >= 6
        # Stop b: its row stays, marked; top goes on with a.
        db.send_signal(signal.SIGTERM)
        db.wait(30)
        s = watch(t, lambda s: "%s (unreachable since" % b_name in s)[-1]
        assert "unreachable since" in s.split("\n")[-1] or \
            "unreachable since" in s
        g1 = generation(pa)
        seen = watch(t, lambda s: generation(pa) >= g1 + 2)
        last = seen[-1]
        assert "%s (unreachable since" % b_name in last
        assert "EXITED" not in last
        t.keys("q")
        t.wait_for(lambda s: "EXITED 0" in s)
    finally:
        t.kill()
