#!/usr/bin/env python3
"""The long differential run: N seeds of tests/workloads/diffgen recorded
by sysretstat, each compared exactly with the generator's own counts.

  sudo .venv/bin/python benchmarks/differential.py [--seeds 1000]
       [--first 1] [--steps 250] [--kinds all-but-known-bugs]
       [--churn 0] [--keep DIR] [--json FILE]

Seeds --first .. --first+--seeds-1 run one after the other, each as
`sysretstat record -o F -- diffgen SEED STEPS OUT.json KINDS` and
`report F --json`; the comparison is tests/test_differential.py's
(per syscall and outcome, totals, CPUs, latency samples, invariants, no
negative number, nothing lost), against the launcher's returns measured
by a 0-step run first.  --kinds defaults to every kind but those of
known tool bugs (KNOWN_BUGS there); "all" includes them.  --churn N runs
N `retpaths churn` processes alongside (CPUs busy, tasks switched all
the time).  Prints seeds run, returns checked, mismatches and elapsed
time; each failing seed with its differences (and, with --keep, its
files in DIR).  Exit status 1 on any mismatch or failed run.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import test_differential as D  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--kinds", default=D.GOOD_KINDS)
    ap.add_argument("--churn", type=int, default=0)
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the files of failing seeds here")
    ap.add_argument("--json", metavar="FILE", help="write the summary here")
    ap.add_argument("--max-fail-print", type=int, default=10)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("differential.py: needs root (BPF)")

    tmp = tempfile.mkdtemp(prefix="sysretstat-diff-")
    churn = []
    try:
        work = D.build_workloads(os.path.join(tmp, "w"))
        doc, exp = D.record_seed(D.run_sysretstat, work, tmp, 0, 0)
        prefix = D.launcher_prefix(doc, exp)
        for _ in range(a.churn):
            churn.append(subprocess.Popen(
                [os.path.join(work, "retpaths"), "churn", "100000000"],
                stdout=subprocess.DEVNULL))
        t0 = time.monotonic()
        runs = returns = 0
        failed = []
        for seed in range(a.first, a.first + a.seeds):
            try:
                doc, exp = D.record_seed(D.run_sysretstat, work, tmp, seed,
                                         a.steps, a.kinds)
                bad = D.compare(doc, exp, prefix)
                returns += doc["totals"]["returns"]
            except (AssertionError, ValueError, KeyError,
                    subprocess.TimeoutExpired) as e:
                bad, exp = ["run failed: %s" % e], {"seed": seed,
                                                    "returns": 0,
                                                    "kinds": {}}
            runs += 1
            if bad:
                failed.append((seed, bad))
                if len(failed) <= a.max_fail_print:
                    print("MISMATCH " + D.summary(exp), flush=True)
                    for line in bad[:20]:
                        print("  " + line, flush=True)
                if a.keep:
                    os.makedirs(a.keep, exist_ok=True)
                    for ext in ("data", "json"):
                        f = os.path.join(tmp, "s%d.%s" % (seed, ext))
                        if os.path.exists(f):
                            shutil.copy(f, a.keep)
            if runs % 50 == 0:
                print("... %d seeds, %d returns, %d mismatching, %.0f s"
                      % (runs, returns, len(failed),
                         time.monotonic() - t0), flush=True)
        elapsed = time.monotonic() - t0
    finally:
        for p in churn:
            p.kill()
        for p in churn:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print("seeds run:        %d (%d..%d, %d steps, kinds %s)"
          % (runs, a.first, a.first + a.seeds - 1, a.steps, a.kinds))
    print("returns checked:  %d" % returns)
    print("mismatches:       %d seeds%s" % (
        len(failed), (": " + " ".join(str(s) for s, _ in failed[:50]))
        if failed else ""))
    print("elapsed:          %.1f s (%.2f s/seed)"
          % (elapsed, elapsed / max(runs, 1)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"seeds": runs, "first": a.first, "steps": a.steps,
                       "kinds": a.kinds, "churn": a.churn,
                       "returns": returns, "elapsed_s": elapsed,
                       "prefix": {"%s/%d" % k: dict(v)
                                  for k, v in prefix.items()},
                       "mismatches": [{"seed": s, "diff": b}
                                      for s, b in failed]}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
