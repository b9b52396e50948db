"""`sysretstat bench`: the price of an IRET return on this machine."""

import json
import sys

import click

from sysretstat.penalty import measure as bench, calibration
from sysretstat.commands.common import other_syscall_tracers
from sysretstat.errors import UsageError


def _fmt(x):
    return "%.0f" % x if x is not None else "-"


def _mitigation_summary(mit):
    if not mit:
        return "unknown"
    vuln = sorted(k for k, v in mit.items() if v.startswith("Vulnerable"))
    active = [k for k, v in mit.items() if v.startswith("Mitigation")]
    s = "%d mitigated, %d not affected" % (
        len(active), sum(v == "Not affected" for v in mit.values()))
    if vuln:
        s += ", vulnerable: " + ", ".join(vuln)
    return s


EXTRA = {"far_jump": "a far jump back from compat mode",
         "fault_signal": "the #GP fault and a SIGSEGV delivery",
         "trap_signal": "the single-step trap and a SIGTRAP delivery"}


def render_text(result, saved=None, out=sys.stdout):
    m = result["meta"]
    w = out.write
    w("sysretstat bench: %d round trips per variant on CPU %d "
      "(%d interleaved rounds of %d)\n"
      % (m["iterations"], m["cpu"], m["rounds"], m["batch"]))
    w("cpu: %s   kernel: %s\n" % (m["cpu_model"], m["kernel"]))
    w("mitigations: %s\n\n" % _mitigation_summary(m["mitigations"]))
    w("%-16s %-12s %-6s %5s %5s %5s %5s %4s  %s\n"
      % ("VARIANT", "SYSCALL", "PATH", "P50", "P90", "P99", "MEAN", "CV%",
         "IRET +ns [95% CI]"))
    notes = []
    for e in result["variants"]:
        ns = e["ns"]
        pen = ""
        if e["iret_penalty_ns"] is not None:
            lo, hi = e["iret_penalty_ci95_ns"]
            pen = "%+.0f [%.0f, %.0f]" % (e["iret_penalty_ns"], lo, hi)
            if e["extra"]:
                notes.append(e)
                pen += " " + "*" * len(notes)
        w("%-16s %-12s %-6s %5s %5s %5s %5s %4.0f  %s\n"
          % (e["name"], e["syscall"], e["path"], _fmt(ns["p50"]),
             _fmt(ns["p90"]), _fmt(ns["p99"]), _fmt(ns["mean"]),
             100 * ns["cv"], pen))
    for i, e in enumerate(notes):
        w("%s includes %s\n" % ("*" * (i + 1),
                                 EXTRA.get(e["extra"], e["extra"])))
    pooled = result["iret_penalty_ns"]
    if pooled:
        w("\nIRET penalty: %.0f ns per return [95%% CI %.0f, %.0f]\n"
          "  (pooled over the guard-only variants: %s)\n"
          % (pooled["ns"], pooled["ci95_ns"][0], pooled["ci95_ns"][1],
             ", ".join(pooled["from"])))
    if result.get("getpid_ns") is not None:
        w("getpid: %.0f ns per call (compare: perf bench syscall basic)\n"
          % result["getpid_ns"])
    if saved:
        w("calibration saved to %s\n" % saved)
    for msg in result["warnings"]:
        sys.stderr.write("sysretstat: warning: %s\n" % msg)


@click.command("bench")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON document.")
@click.option("-n", "--iterations", type=int,
              default=bench.DEFAULT_ITERATIONS, show_default=True,
              metavar="ITERATIONS",
              help="Measured round trips per variant.")
@click.option("--cpu", type=int, default=None, metavar="CPU",
              help="Pin to this CPU (default: the highest allowed).")
@click.option("--no-save", is_flag=True,
              help="Do not store the result as this machine's "
                   "calibration.")
def command(as_json, iterations, cpu, no_save):
    """Measure what an IRET return costs on this machine compared with
    SYSRET, and store it so that top, report and the daemon can show the
    time lost to IRET.  See sysretstat-bench(8)."""
    if iterations < bench.MIN_ITERATIONS:
        raise UsageError("ITERATIONS must be at least %d"
                         % bench.MIN_ITERATIONS)
    busy, _ = other_syscall_tracers()
    result = bench.run(iterations=iterations, cpu=cpu)
    if busy:
        result["warnings"].append(busy)
    saved = None
    if not no_save:
        saved = calibration.save(result)
    result["calibration"] = {"saved": saved is not None, "path": saved}
    if as_json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
        for msg in result["warnings"]:
            sys.stderr.write("sysretstat: warning: %s\n" % msg)
    else:
        render_text(result, saved)
    return 0
