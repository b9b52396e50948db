"""sysretstat bench: statistics, output shape, and that every variant
takes the return path it claims (checked by tracing the helper)."""

import json
import os
import random
import statistics

import pytest

from sysretstat.penalty import measure as bench
from sysretstat.errors import UsageError

# What the helper claims for each variant: (syscall nr, path, reason).
EXPECTED = {
    "getpid": (39, "sysret", None),
    "sysret": (15, "sysret", None),
    "rcx_ne_rip": (15, "iret", "rcx_ne_rip"),
    "r11_ne_rflags": (15, "iret", "r11_ne_rflags"),
    "cs_not_user": (15, "iret", "cs_not_user"),
    "ss_not_user": (15, "iret", "ss_not_user"),
    "rip_noncanonical": (15, "iret", "rip_noncanonical"),
    "rflags_rf": (15, "iret", "rflags_rf"),
    "rflags_tf": (15, "iret", "rflags_tf"),
}
WITH_HANDLER = {"rip_noncanonical", "rflags_tf"}


# ------------------------------------------------------------ statistics

def test_median_ci_order_statistics():
    # n=10: P(B<=1) = 11/1024 gives k=2, coverage 1 - 22/1024.
    lo, hi, level = bench.median_ci(list(range(10, 0, -1)))
    assert (lo, hi) == (2, 9)
    assert level == pytest.approx(1 - 22 / 1024)


def test_median_ci_too_few_values_gives_range_and_level():
    lo, hi, level = bench.median_ci([5, 1, 3, 2, 4])
    assert (lo, hi) == (1, 5)
    assert level == pytest.approx(1 - 2 / 32)


def test_median_ci_many_values_no_overflow():
    rnd = random.Random(7)
    vals = [rnd.gauss(100, 10) for _ in range(3000)]
    lo, hi, level = bench.median_ci(vals)
    med = statistics.median(vals)
    assert lo < med < hi
    assert hi - lo < 2          # ~2 * 1.96 * 1.25 * 10 / sqrt(3000)
    assert 0.95 <= level < 0.97


def test_percentile_interpolates():
    assert bench.percentile([1, 2, 3, 4], 50) == 2.5
    assert bench.percentile([10], 99) == 10
    assert bench.percentile(list(range(101)), 90) == 90


def test_layout():
    assert bench.layout(100000) == (200, 500)
    assert bench.layout(10) == (10, 1)
    r, b = bench.layout(2000)
    assert r >= 10 and r * b == 2000
    with pytest.raises(UsageError):
        bench.layout(9)


def _raw(ref, others, extra=()):
    rounds = len(ref)
    variants = [{"name": "sysret", "nr": 15, "path": "sysret",
                 "reason": None, "extra": None}]
    samples = {"sysret": ref}
    for name, s in others.items():
        variants.append({"name": name, "nr": 15, "path": "iret",
                         "reason": name,
                         "extra": "fault_signal" if name in extra else None})
        samples[name] = s
    return {"cpu": 0, "rounds": rounds, "batch": 10, "variants": variants,
            "samples": samples,
            "counts": {n: (10 * (rounds + 3), 0) for n in samples}}


def test_analyse_pairs_rounds_and_pools_guard_only_variants():
    rnd = random.Random(1)
    # A drifting reference: pairing within rounds must cancel the drift.
    ref = [1000 + 30 * r + rnd.uniform(-5, 5) for r in range(40)]
    raw = _raw(ref, {"rcx_ne_rip": [x + 80 for x in ref],
                     "rflags_rf": [x + 60 for x in ref],
                     "rip_noncanonical": [x + 5000 for x in ref]},
               extra={"rip_noncanonical"})
    res = bench.analyse(raw, 400)
    by = {v["name"]: v for v in res["variants"]}
    assert by["rcx_ne_rip"]["iret_penalty_ns"] == pytest.approx(80)
    assert by["rcx_ne_rip"]["iret_penalty_ci95_ns"] == \
        pytest.approx([80, 80])
    assert by["sysret"]["iret_penalty_ns"] is None
    pooled = res["iret_penalty_ns"]
    # The variant with extra work is reported but not pooled.
    assert pooled["from"] == ["rcx_ne_rip", "rflags_rf"]
    assert 60 <= pooled["ns"] <= 80
    assert pooled["reasons"] == {"rcx_ne_rip": pytest.approx(80),
                                 "rflags_rf": pytest.approx(60)}
    # The drift makes the reference vary by >10% between rounds.
    assert any("noisy run" in w for w in res["warnings"])


def test_analyse_quiet_run_has_no_noise_warning():
    ref = [1000.0 + (r % 3) for r in range(20)]
    res = bench.analyse(_raw(ref, {"rcx_ne_rip": [x + 70 for x in ref]}),
                        200)
    assert not [w for w in res["warnings"] if "noisy" in w]
    assert res["iret_penalty_ns"]["ci95_ns"][0] > 0


def test_parse_output_rejects_short_output():
    text = ("sysretbench 1 cpu 0 rounds 2 batch 5\n"
            "variant sysret 15 sysret - -\n"
            "sample 0 sysret 100.0\n")
    with pytest.raises(bench.BenchError):
        bench.parse_output(text)


def test_helper_missing_gcc_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "PACKAGED", str(tmp_path / "nope"))
    monkeypatch.setattr(bench, "_gcc", lambda: None)
    with pytest.raises(bench.BenchError, match="gcc not found"):
        bench.helper_path()


# ------------------------------------------------------------ the CLI

def test_cli_rejects_tiny_iteration_count(run_cli):
    p = run_cli("bench", "-n", "5", "--no-save")
    assert p.returncode == 2
    assert p.stderr.startswith("sysretstat: error:")
    assert "Traceback" not in p.stderr


def test_cli_json_shape(run_cli, tmp_path):
    cal = tmp_path / "cal.json"
    p = run_cli("bench", "--json", "-n", "2000",
                env={"SYSRETSTAT_CALIBRATION": str(cal)})
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["schema"] == "sysretstat-bench/1"
    meta = doc["meta"]
    for k in ("version", "kernel", "cpu_model", "hostname", "mitigations",
              "fred", "xen_pv", "cpu", "iterations", "rounds", "batch",
              "warmup_batches", "clock", "started_at", "duration_s",
              "loadavg"):
        assert k in meta, k
    assert meta["iterations"] == meta["rounds"] * meta["batch"] == 2000
    assert meta["cpu"] in os.sched_getaffinity(0)
    assert {v["name"] for v in doc["variants"]} == set(EXPECTED)
    calls = (meta["rounds"] + meta["warmup_batches"]) * meta["batch"]
    for v in doc["variants"]:
        nr, path, reason = EXPECTED[v["name"]]
        assert (v["nr"], v["path"], v["reason"]) == (nr, path, reason)
        assert v["calls"] == calls
        assert v["handler_runs"] == (calls if v["name"] in WITH_HANDLER
                                     else 0)
        ns = v["ns"]
        assert 0 < ns["min"] <= ns["p50"] <= ns["p90"] <= ns["p99"] \
            <= ns["max"]
        if path == "iret":
            lo, hi = v["iret_penalty_ci95_ns"]
            assert lo <= v["iret_penalty_ns"] <= hi
        else:
            assert v["iret_penalty_ns"] is None
        # Fault + signal delivery costs microseconds: clearly positive
        # even in a short run.
        if v["name"] in WITH_HANDLER:
            assert v["iret_penalty_ns"] > 0
    pooled = doc["iret_penalty_ns"]
    assert pooled["from"] == ["rcx_ne_rip", "r11_ne_rflags", "ss_not_user",
                              "rflags_rf"]
    assert doc["getpid_ns"] > 0
    assert isinstance(doc["warnings"], list)
    assert doc["calibration"] == {"saved": True, "path": str(cal)}
    stored = json.loads(cal.read_text())["machines"]
    (entry,) = stored.values()
    assert entry["mean_penalty_ns"] == pytest.approx(pooled["ns"], abs=0.01)


def test_cli_text(run_cli):
    p = run_cli("bench", "-n", "1000", "--no-save")
    assert p.returncode == 0, p.stderr
    for name in EXPECTED:
        assert "\n" + name + " " in p.stdout
    assert "IRET penalty:" in p.stdout
    assert "calibration saved" not in p.stdout


@pytest.mark.slow
def test_iret_penalty_positive_for_every_variant(run_cli):
    p = run_cli("bench", "--json", "-n", "20000", "--no-save")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    for v in doc["variants"]:
        if v["path"] == "iret":
            assert v["iret_penalty_ns"] > 0, v
    assert doc["iret_penalty_ns"]["ns"] > 0


# ------------------------------------------------------------ real paths

@pytest.mark.bpf
def test_each_variant_takes_its_path_under_the_collector(run_cli, tmp_path):
    """Trace the helper and compare what sysretstat saw with what the
    helper says it issued."""
    helper = bench.helper_path()
    data = tmp_path / "b.data"
    p = run_cli("record", "-o", data, "--", helper, "-r", "3", "-b", "20",
                "-w", "1")
    assert p.returncode == 0, p.stderr
    raw = bench.parse_output(p.stdout)
    rep = run_cli("report", data, "--json")
    assert rep.returncode == 0, rep.stderr
    doc = json.loads(rep.stdout)
    sc = {(r["nr"], r["abi"]): r for r in doc["syscalls"]}

    getpid = sc[(39, "x64")]
    assert getpid["paths"]["sysret"] == raw["counts"]["getpid"][0]
    assert getpid["paths"]["iret"] == 0

    sigret = sc[(15, "x64")]
    want = {EXPECTED[n][2]: c for n, (c, h) in raw["counts"].items()
            if EXPECTED[n][1] == "iret"}
    assert sigret["reasons"] == want
    # SYSRET: the passing frame, each signal handler's own return, and
    # the one handler that captured the template frame.
    handlers = sum(h for c, h in raw["counts"].values())
    assert sigret["paths"]["sysret"] == \
        raw["counts"]["sysret"][0] + handlers + 1


def test_cli_warns_of_another_syscall_tracer(monkeypatch):
    from click.testing import CliRunner
    from sysretstat.commands import bench as cmd
    from sysretstat.kernel import progs
    fake = {"warnings": [], "calibration": None}
    monkeypatch.setattr(cmd.bench, "run", lambda **kw: dict(fake))
    monkeypatch.setattr(cmd, "render_text", lambda result, saved: None)
    monkeypatch.setattr(progs, "syscall_tracers",
                        lambda: [(3, 99, "sys_enter")])
    r = CliRunner().invoke(
        cmd.command, ["--json", "--no-save", "-n", "1000"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["warnings"] == [
        "another tracer is attached to the syscall tracepoints: sys_enter "
        "(prog 99); it adds to every syscall measured"]
    assert r.stderr.startswith("sysretstat: warning: another tracer ")
