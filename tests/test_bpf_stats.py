"""Whether the kernel's BPF run-time stats are on: read by the collector
(sysctl kernel.bpf_stats_enabled, or its own BPF_ENABLE_STATS fd) and
exported as sysretstat_bpf_stats_enabled, which the dashboard's cost
panel shows."""

import json
import os

import pytest

from sysretstat.source import collector
from sysretstat.render import prometheus
from sysretstat.source.collector import Collector
from sysretstat.kernel.tracer import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("text, on", [("1\n", True), ("0\n", False),
                                      (None, False), ("junk", False)])
def test_sysctl_is_read(tmp_path, monkeypatch, text, on):
    path = tmp_path / "bpf_stats_enabled"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr(collector, "BPF_STATS_SYSCTL", str(path))
    assert collector.bpf_stats_sysctl() is on


@pytest.mark.bpf
def test_sysctl_on_is_exported(tmp_path, monkeypatch):
    path = tmp_path / "bpf_stats_enabled"
    path.write_text("1\n")
    monkeypatch.setattr(collector, "BPF_STATS_SYSCTL", str(path))
    col = Collector(Options(latency=False))
    col.start()
    try:
        snap = col.snapshot()
    finally:
        col.close()
    assert snap.meta["bpf"]["stats"] is True
    text = prometheus.render(snap)
    assert "\nsysretstat_bpf_stats_enabled 1\n" in text


def test_dashboard_cost_panel_says_when_stats_are_off():
    with open(os.path.join(ROOT, "contrib", "grafana-dashboard.json")) as f:
        dash = json.load(f)
    panels = [p for p in dash["panels"]
              if any("sysretstat_bpf_stats_enabled" in t.get("expr", "")
                     for t in p.get("targets", []))]
    assert panels, "no panel reads sysretstat_bpf_stats_enabled"
    words = json.dumps(panels)
    assert "BPF stats off" in words
