"""Measure the price of an IRET return on this machine (`sysretstat bench`).

The timing is done by a small C helper (csrc/sysretbench.c) that issues
the syscalls; this module finds or builds it, runs it, and turns its
per-round batch timings into the result document (schema
"sysretstat-bench/1", see man/sysretstat-bench.8):

  variants   per variant: round-trip time p50/p90/p99, mean, stdev, cv
             (over the per-round batch means), and for IRET variants the
             penalty against the passing-frame "sysret" variant
  iret_penalty_ns
             the penalty of IRET itself, pooled over the variants that do
             nothing but fail the guard (the calibration value)

Penalties are medians of paired differences (each round times every
variant back to back, so slow drifts cancel), with a distribution-free
95% confidence interval for the median from order statistics.
"""

import math
import os
import platform
import shutil
import statistics
import subprocess
import time

from sysretstat import __version__, native
from sysretstat.kernel import hostinfo
from sysretstat.errors import BenchError, UsageError

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = "sysretbench"
PACKAGED = os.path.join(HERE, "bin", HELPER)
SOURCE = os.path.join(os.path.dirname(HERE), "csrc", HELPER + ".c")
CFLAGS = ["-O2", "-Wall"]

SCHEMA = "sysretstat-bench/1"
REFERENCE = "sysret"        # the passing frame every penalty is paired with
DEFAULT_ITERATIONS = 100000
MIN_ITERATIONS = 10
WARMUP_BATCHES = 3
# Above this coefficient of variation of a reference variant's batch
# means the run is called noisy.
NOISY_CV = 0.10

SYSCALL_NAMES = {15: "rt_sigreturn", 39: "getpid"}


# ---------------------------------------------------------------- helper

def _gcc():
    for name in ("gcc", "cc"):
        path = shutil.which(name)
        if path:
            return path
    return None


def helper_path():
    """The sysretbench executable: packaged, else built once into the
    cache from csrc/ (keyed by the source, flags and compiler)."""
    if native.packaged_is_current(PACKAGED, [SOURCE], executable=True):
        return PACKAGED
    if not os.path.exists(SOURCE):
        raise BenchError("the bench helper %s is missing and there is no "
                         "source to build it from: reinstall sysretstat"
                         % HELPER)
    cc = _gcc()
    if not cc:
        raise BenchError("gcc not found: install it (apt-get install gcc) "
                         "or reinstall sysretstat")
    out = native.cached_path(HELPER, "", [SOURCE], CFLAGS, cc)
    if os.access(out, os.X_OK):
        return out
    return native.compile_into(
        out, lambda tmp: [cc] + CFLAGS + ["-o", tmp, SOURCE],
        lambda stderr: BenchError("building the bench helper failed: %s"
                                  % native.first_line(stderr)),
        mode=0o755)


def layout(iterations):
    """(rounds, batch) for a number of measured round trips per variant.

    Enough rounds for percentiles and a confidence interval, batches long
    enough that the two clock reads around each are noise (~30 ns each).
    """
    if iterations < MIN_ITERATIONS:
        raise UsageError("ITERATIONS must be at least %d" % MIN_ITERATIONS)
    rounds = max(MIN_ITERATIONS, min(200, iterations // 500))
    return rounds, max(1, iterations // rounds)


def default_cpu():
    """The highest-numbered CPU this process may run on (CPU 0 usually
    takes more of the machine's interrupts)."""
    return max(os.sched_getaffinity(0))


def run_helper(rounds, batch, cpu, warmup=WARMUP_BATCHES, variants=None,
               helper=None, timeout=None):
    """Run the helper; return its parsed output (see parse_output)."""
    cmd = [helper or helper_path(), "-c", str(cpu), "-r", str(rounds),
           "-b", str(batch), "-w", str(warmup)]
    if variants:
        cmd += ["-V", ",".join(variants)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("the bench helper did not finish in %ds" % timeout)
    except OSError as e:
        raise BenchError("cannot run the bench helper: %s" % e.strerror)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        why = lines[-1] if lines else "exit status %d" % proc.returncode
        if proc.returncode < 0:
            why = "killed by signal %d" % -proc.returncode
        raise BenchError("the bench helper failed: %s" % why)
    return parse_output(proc.stdout)


def parse_output(text):
    """The helper's line records as {"cpu", "rounds", "batch", "variants":
    [dict in helper order], "samples": {name: [CPU-time ns per call, one
    per round]}, "wall": {same in wall-clock ns}, "counts": {name:
    (calls, handler_runs)}}."""
    out = {"variants": [], "samples": {}, "wall": {}, "counts": {}}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "sysretbench":
            kv = dict(zip(f[2::2], f[3::2]))
            out.update(cpu=int(kv["cpu"]), rounds=int(kv["rounds"]),
                       batch=int(kv["batch"]))
        elif f[0] == "variant":
            out["variants"].append({
                "name": f[1], "nr": int(f[2]), "path": f[3],
                "reason": None if f[4] == "-" else f[4],
                "extra": None if f[5] == "-" else f[5]})
            out["samples"][f[1]] = []
            out["wall"][f[1]] = []
        elif f[0] == "sample":
            out["samples"][f[2]].append(float(f[3]))
            out["wall"][f[2]].append(float(f[4]) if len(f) > 4
                                     else float(f[3]))
        elif f[0] == "count":
            out["counts"][f[1]] = (int(f[2]), int(f[3]))
    if "rounds" not in out or not out["variants"]:
        raise BenchError("the bench helper printed no results")
    for name, s in out["samples"].items():
        if len(s) != out["rounds"]:
            raise BenchError("the bench helper printed %d samples for %s, "
                             "expected %d" % (len(s), name, out["rounds"]))
    return out


# ---------------------------------------------------------------- stats

def percentile(values, q):
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def median_ci(values, level=0.95):
    """Distribution-free confidence interval for the median.

    [x_(k), x_(n-k+1)] covers the median with probability
    1 - 2 P(Binomial(n, 1/2) < k); k is the largest that keeps this at
    least `level`.  Returns (lo, hi, achieved level); with too few values
    for `level` it returns the full range and the level it has.
    """
    v = sorted(values)
    n = len(v)
    total = 2 ** n
    # Exact integers: 2**n overflows a float from n = 1024.
    acc, cdf = 0, []
    for i in range(n // 2 + 1):
        acc += math.comb(n, i)
        cdf.append(acc)

    def coverage(k):
        # P(x_(k) <= median <= x_(n-k+1)) = 1 - 2 P(B <= k-1)
        return (total - 2 * cdf[k - 1]) / total

    k = 0
    for cand in range(1, n // 2 + 1):
        if coverage(cand) < level:
            break
        k = cand
    if k == 0:
        return v[0], v[-1], coverage(1) if n > 1 else 0.0
    return v[k - 1], v[n - k], coverage(k)


def describe(samples):
    """Summary of one variant's per-round batch means (ns per call)."""
    mean = statistics.fmean(samples)
    sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return {"p50": percentile(samples, 50), "p90": percentile(samples, 90),
            "p99": percentile(samples, 99), "mean": mean, "stdev": sd,
            "cv": sd / mean if mean else 0.0, "min": min(samples),
            "max": max(samples)}


def paired_penalty(samples, reference):
    diffs = [a - b for a, b in zip(samples, reference)]
    lo, hi, level = median_ci(diffs)
    return {"ns": statistics.median(diffs), "ci95_ns": [lo, hi],
            "ci_level": level, "mean_ns": statistics.fmean(diffs)}


# ---------------------------------------------------------------- result

def analyse(raw, iterations, meta_extra=None):
    """The result document from parsed helper output."""
    samples = raw["samples"]
    if REFERENCE not in samples:
        raise BenchError("the bench needs the %s variant" % REFERENCE)
    ref = samples[REFERENCE]
    variants, pure = [], []
    for v in raw["variants"]:
        s = samples[v["name"]]
        calls, handler = raw["counts"].get(v["name"], (None, None))
        entry = {"name": v["name"], "syscall": SYSCALL_NAMES.get(
                     v["nr"], str(v["nr"])), "nr": v["nr"],
                 "path": v["path"], "reason": v["reason"],
                 "extra": v["extra"], "calls": calls,
                 "handler_runs": handler, "ns": describe(s),
                 "wall_ns_p50": percentile(raw["wall"][v["name"]], 50)
                 if raw.get("wall") else None,
                 "iret_penalty_ns": None, "iret_penalty_ci95_ns": None}
        if v["path"] == "iret":
            p = paired_penalty(s, ref)
            entry["iret_penalty_ns"] = p["ns"]
            entry["iret_penalty_ci95_ns"] = p["ci95_ns"]
            entry["iret_penalty_mean_ns"] = p["mean_ns"]
            if v["extra"] is None:
                pure.append(v["name"])
        variants.append(entry)

    pooled = None
    if pure:
        # Every round's difference of every guard-only variant against
        # the same round's reference, pooled: a median over rounds of a
        # per-round average would let one preempted batch spoil a round.
        diffs = [samples[n][r] - ref[r] for n in pure
                 for r in range(raw["rounds"])]
        lo, hi, level = median_ci(diffs)
        pooled = {"ns": statistics.median(diffs), "ci95_ns": [lo, hi],
                  "ci_level": level, "from": pure,
                  "reasons": {e["reason"]: e["iret_penalty_ns"]
                              for e in variants
                              if e["name"] in pure}}

    by_name = {e["name"]: e for e in variants}
    result = {
        "schema": SCHEMA,
        "meta": dict({
            "version": __version__,
            "kernel": hostinfo.kernel_release(),
            "cpu_model": hostinfo.cpu_model(),
            "hostname": hostinfo.hostname(),
            "mitigations": hostinfo.mitigations(),
            "fred": hostinfo.fred(),
            "xen_pv": hostinfo.xen_pv(),
            "cpu": raw["cpu"],
            "iterations": iterations,
            "rounds": raw["rounds"],
            "batch": raw["batch"],
            "warmup_batches": WARMUP_BATCHES,
            "clock": "CLOCK_THREAD_CPUTIME_ID",
        }, **(meta_extra or {})),
        "variants": variants,
        "iret_penalty_ns": pooled,
        "getpid_ns": by_name["getpid"]["ns"]["p50"]
        if "getpid" in by_name else None,
        "warnings": [],
    }
    result["warnings"] = warnings_for(result)
    return result


def warnings_for(result):
    out = []
    meta = result["meta"]
    if meta.get("fred"):
        out.append("FRED is active: every return uses ERETU, so the "
                   "SYSRET/IRET difference measured here does not occur "
                   "in traced programs")
    if meta.get("xen_pv"):
        out.append("Xen PV guest: every return takes IRET whatever the "
                   "frame; the variants cannot differ")
    for e in result["variants"]:
        if e["name"] in (REFERENCE, "getpid") and e["ns"]["cv"] > NOISY_CV:
            out.append("noisy run: %s varied by %.0f%% between rounds "
                       "(other load on CPU %d?); penalties may be off"
                       % (e["name"], 100 * e["ns"]["cv"], meta["cpu"]))
        wall = e.get("wall_ns_p50")
        if e["name"] == REFERENCE and wall and \
                wall > (1 + NOISY_CV) * e["ns"]["p50"]:
            out.append("the benchmark was often preempted on CPU %d "
                       "(wall-clock time %.0f%% above CPU time)"
                       % (meta["cpu"], 100 * (wall / e["ns"]["p50"] - 1)))
    pooled = result["iret_penalty_ns"]
    if pooled and pooled["ci95_ns"][0] <= 0:
        out.append("the IRET penalty is not distinguishable from zero in "
                   "this run (95%% CI %.0f..%.0f ns): run longer (-n) on a "
                   "quieter machine" % tuple(pooled["ci95_ns"]))
    load = meta.get("loadavg")
    if load is not None and load > 0.5 * (os.cpu_count() or 1):
        out.append("load average %.2f before the run: other work shares "
                   "the CPUs" % load)
    return out


def loadavg():
    text = hostinfo._read("/proc/loadavg")
    try:
        return float(text.split()[0])
    except (AttributeError, IndexError, ValueError):
        return None


def run(iterations=DEFAULT_ITERATIONS, cpu=None, variants=None):
    """Measure; return the result document (nothing is saved)."""
    if platform.machine() != "x86_64":
        raise BenchError("bench measures x86-64 return paths; this is %s"
                         % platform.machine())
    rounds, batch = layout(iterations)
    if cpu is None:
        cpu = default_cpu()
    elif cpu not in os.sched_getaffinity(0):
        raise UsageError("CPU %d is not available to this process" % cpu)
    helper = helper_path()
    meta = {"loadavg": loadavg(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    t0 = time.monotonic()
    raw = run_helper(rounds, batch, cpu, variants=variants, helper=helper)
    meta["duration_s"] = round(time.monotonic() - t0, 3)
    return analyse(raw, rounds * batch, meta)
