#!/usr/bin/env python3
"""The long fuzz run: N cases per target, no BPF, no root.

  python3 benchmarks/fuzz.py [--cases 100000] [--targets record,doc,cli,http]
                             [--seed S] [--timeout 10] [--json FILE]

The targets are those of tests/test_fuzz.py (tests/fuzzing.py): mutated
record files (raw damage and CRC-valid frames with wrong content),
report documents given to diff, command lines (stopped before anything
is loaded) and HTTP requests to the real server on 127.0.0.1 serving a
synthetic snapshot.  Each case runs under an alarm of --timeout seconds:
a case that takes longer is a hang.  Anything but a one-line refusal is
a failure; the first few of each kind are printed with their seed, so
`--seed S --cases 1` replays one.  Exit status 1 on any failure.
"""

import argparse
import collections
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import fuzzing as fz  # noqa: E402
from sysretstat import daemon  # noqa: E402


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100000)
    ap.add_argument("--targets", default="record,doc,cli,http")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    if a.cases < 1:
        sys.exit("--cases: at least 1")
    targets = a.targets.split(",")
    d = tempfile.mkdtemp(prefix="sysretstat-fuzz-")
    srv = None
    try:
        rec, data, js, doc = fz.seed_files(d)
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        files = {"FILE": rec, "OUT": os.path.join(d, "out.data"),
                 "FIFO": fifo}
        if "http" in targets:
            from test_daemon import counts, snapshot
            state = daemon.State(top=3)
            s = snapshot([(10, "a", counts(sysret=100, signal=7)),
                          (11, "b", counts(sysret=5, rcx_ne_rip=2))])
            state.publish(s, s)
            srv = daemon.bind("127.0.0.1", 0, state, stale_after=10 ** 6)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            addr = srv.server_address[:2]

        def case(target, rng):
            if target == "record":
                fz.record_target(data, rng, os.path.join(d, "m.data"))
            elif target == "doc":
                fz.report_doc_target(doc, rng, os.path.join(d, "m.json"), js)
            elif target == "cli":
                with fz.no_tracing():
                    fz.cli_target(fz.mutate_args(
                        rng.choice(fz.SEED_ARGS), rng), files)
            elif target == "http":
                base = rng.choice(fz.SEED_REQUESTS)
                fz.http_target(addr, fz.mutate_bytes(base, rng)
                               if rng.random() < 0.9 else base)
            else:
                sys.exit("unknown target %r" % target)

        signal.signal(signal.SIGALRM, _alarm)
        summary = {}
        failed = False
        for target in targets:
            kinds = collections.Counter()
            shown = collections.Counter()
            t0 = time.monotonic()
            for i in range(a.cases):
                seed = a.seed + i
                signal.setitimer(signal.ITIMER_REAL, a.timeout)
                try:
                    case(target, random.Random(seed))
                except Hang:
                    kinds["hang"] += 1
                    if shown["hang"] < 3:
                        shown["hang"] += 1
                        print("%s seed %d: hang" % (target, seed))
                except BaseException as e:
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    tb = traceback.extract_tb(e.__traceback__)[-1]
                    k = "%s at %s:%d" % (type(e).__name__,
                                         os.path.basename(tb.filename),
                                         tb.lineno)
                    kinds[k] += 1
                    if shown[k] < 3:
                        shown[k] += 1
                        print("%s seed %d: %s: %s" % (target, seed, k,
                                                      str(e)[:300]))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            el = time.monotonic() - t0
            summary[target] = {"cases": a.cases,
                               "failures": sum(kinds.values()),
                               "kinds": dict(kinds),
                               "seconds": round(el, 1)}
            failed |= bool(kinds)
            print("%-7s %d cases in %.0fs: %d failures %s"
                  % (target, a.cases, el, sum(kinds.values()),
                     dict(kinds) if kinds else ""), flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(summary, f, indent=1)
        return 1 if failed else 0
    finally:
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
