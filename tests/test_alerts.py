"""The example alert rules (contrib/prometheus-alerts.yml): promtool
accepts them, and each fires on the series it is meant for and stays
quiet otherwise (promtool test rules)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "contrib", "prometheus-alerts.yml")
CONFIG = os.path.join(ROOT, "contrib", "prometheus.yml")

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool (Debian package prometheus) missing")

# Two hosts, 1-minute samples for 40 minutes: host "bad" is down, loses
# evicted processes and has 10% IRET; host "good" is up, loses nothing
# and has 1% IRET.
UNIT_TESTS = """
rule_files:
  - %(rules)s
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="sysretstat", instance="bad"}'
        values: '0x40'
      - series: 'up{job="sysretstat", instance="good"}'
        values: '1x40'
      - series: 'sysretstat_lost_total{instance="bad", what="evicted_processes"}'
        values: '0+5x40'
      - series: 'sysretstat_lost_total{instance="good", what="evicted_processes"}'
        values: '0x40'
      - series: 'sysretstat_returns_total{instance="bad", path="iret", reason="signal"}'
        values: '0+600x40'
      - series: 'sysretstat_returns_total{instance="bad", path="sysret", reason=""}'
        values: '0+5400x40'
      - series: 'sysretstat_returns_total{instance="good", path="iret", reason="signal"}'
        values: '0+60x40'
      - series: 'sysretstat_returns_total{instance="good", path="sysret", reason=""}'
        values: '0+5940x40'
    alert_rule_test:
      - eval_time: 3m
        alertname: SysretstatDown
        exp_alerts: []
      - eval_time: 10m
        alertname: SysretstatDown
        exp_alerts:
          - exp_labels: {severity: warning, job: sysretstat, instance: bad}
            exp_annotations:
              summary: "sysretstat daemon on bad is down"
              description: "Prometheus could not scrape bad for 5 minutes.  Check `systemctl status sysretstat` and `journalctl -u sysretstat` there."
      - eval_time: 35m
        alertname: SysretstatLostEntriesRising
        exp_alerts:
          - exp_labels: {severity: info, instance: bad, what: evicted_processes}
            exp_annotations:
              summary: "sysretstat on bad is losing evicted_processes"
              description: "sysretstat_lost_total{what=\\"evicted_processes\\"} rose by 75 in 15 minutes.  Evicted entries: raise --max-processes / --max-threads; see sysretstat-daemon(8), METRICS."
      - eval_time: 35m
        alertname: SysretstatHighIretShare
        exp_alerts:
          - exp_labels: {severity: info, instance: bad}
            exp_annotations:
              summary: "bad: 10%% of syscall returns take IRET"
              description: "More than 5%% of syscall returns on bad fell back to IRET for 15 minutes.  `sysretstat top` there shows which processes and reasons."
"""


def promtool(*args):
    return subprocess.run(["promtool"] + list(args), capture_output=True,
                          text=True)


def test_promtool_check_rules():
    p = promtool("check", "rules", RULES)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: 3 rules found" in p.stdout


def test_example_config_loads_the_rules():
    p = promtool("check", "config", CONFIG)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: 3 rules found" in p.stdout


def test_alerts_fire_on_their_series_only(tmp_path):
    t = tmp_path / "alerts_test.yml"
    t.write_text(UNIT_TESTS % {"rules": RULES})
    p = promtool("test", "rules", str(t))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout
