"""End to end: a real Prometheus server scrapes a real daemon.

Needs the `prometheus` binary (Debian package prometheus, installed by
the project's set-up): skipped without it, a failure with CI=true.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from test_daemon import get, start_daemon, stop_daemon, wait_generation

PROMETHEUS = shutil.which("prometheus")
IN_CI = os.environ.get("CI") == "true"

pytestmark = [pytest.mark.bpf, pytest.mark.slow]
if PROMETHEUS is None and not IN_CI:
    pytestmark.append(pytest.mark.skip(
        reason="prometheus binary missing (Debian package prometheus)"))

# Workload runs and the IRET returns each gives by construction
# (tests/workloads/README.md), reason by reason.
RUNS = [("signal", 500), ("rcx_ne_rip", 200), ("rflags_rf", 100),
        ("fork", 100)]
EXPECT = {"signal": 500 + 200 + 100, "rcx_ne_rip": 200, "rflags_rf": 100,
          "fork_child": 100}
# rt_sigreturn after each plain signal is a SYSRET.
EXPECT_SYSRET = 500


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base, expr, at=None):
    q = {"query": expr}
    if at is not None:
        q["time"] = "%.3f" % at
    code, _, body = get(base + "/api/v1/query?" + urllib.parse.urlencode(q))
    doc = json.loads(body)
    assert code == 200 and doc["status"] == "success", doc
    return doc["data"]["result"]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    pytest.fail("timed out waiting for " + what)


@pytest.fixture
def prometheus_server(tmp_path):
    if PROMETHEUS is None:
        pytest.fail("CI=true but the prometheus binary is missing (the "
                    "project's set-up installs Debian's prometheus)")
    d, url = start_daemon("-i", "0.5")
    target = url.split("//")[1]
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n"
                   "scrape_configs:\n  - job_name: sysretstat\n"
                   "    static_configs:\n      - targets: ['%s']\n" % target)
    log = open(tmp_path / "prometheus.log", "w")
    p = subprocess.Popen([PROMETHEUS, "--config.file=%s" % cfg,
                          "--storage.tsdb.path=%s" % (tmp_path / "data"),
                          "--web.listen-address=127.0.0.1:%d" % port,
                          "--log.level=warn"],
                         stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    try:
        def ready():
            try:
                return get(base + "/-/ready", timeout=2)[0] == 200
            except OSError:
                return p.poll() is not None
        wait_for(ready, 60, "prometheus to start")
        assert p.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield base, url
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        stop_daemon(d)


def test_prometheus_sees_the_workload_returns(prometheus_server, workloads):
    base, daemon_url = prometheus_server
    wait_for(lambda: any(r["value"][1] == "1" for r in query(
        base, 'up{job="sysretstat"}')), 30, "the first scrape")
    t0 = time.time()
    # Prometheus holds a scrape taken after t0's snapshot.
    wait_for(lambda: query(base, "timestamp(sysretstat_build_info) > %f"
                           % (t0 + 0.6)), 20, "a scrape after t0")
    for scenario, n in RUNS:
        r = subprocess.run([os.path.join(workloads, "retpaths"), scenario,
                            str(n)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
    done = time.time()
    wait_generation(daemon_url, done + 0.1)
    published = time.time()
    wait_for(lambda: query(base, "timestamp(sysretstat_build_info) > %f"
                           % published), 20, "a scrape after the workload")

    growth = {}
    for r in query(base, "sysretstat_returns_total - "
                         "sysretstat_returns_total @ %.3f" % t0):
        m = r["metric"]
        # Prometheus drops empty labels: the fast path has no "reason".
        growth[(m["path"], m.get("reason", ""))] = float(r["value"][1])
    for reason, n in EXPECT.items():
        assert growth[("iret", reason)] >= n, (reason, growth)
    assert growth[("sysret", "")] >= EXPECT_SYSRET
