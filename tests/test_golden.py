"""Kept recordings, reported in every view and format, byte for byte.

The recordings in tests/fixtures/records were made by earlier versions of
sysretstat; their reports are kept in tests/fixtures/golden.  A change
that alters one byte of a report, or stops reading an old file, fails
here.  Set SYSRETSTAT_REGEN_GOLDEN=1 to rewrite the goldens when an
output change is intended (and say so in the commit).
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = os.path.join(ROOT, "tests", "fixtures", "records")
GOLDEN = os.path.join(ROOT, "tests", "fixtures", "golden")
REGEN = os.environ.get("SYSRETSTAT_REGEN_GOLDEN") == "1"
VIEWS = ("process", "comm", "thread", "syscall", "cpu", "reason", "latency",
         "interval")
CUT_AT = 180000

CASES = []
for rec in ("cmd", "sys", "nolat", "cut"):
    CASES.append((rec, "json", ["--json"], True))
    for view in VIEWS:
        CASES.append((rec, "json-" + view, ["--json", "--by", view], True))
    CASES.append((rec, "csv", ["--format", "csv"], True))
    CASES.append((rec, "text", [], True))
    CASES.append((rec, "text-80", [], True))
    CASES.append((rec, "markdown", ["--format", "markdown"], True))
    CASES.append((rec, "text-nocal", [], False))
CASES.append(("cmd", "json-sort-p99", ["--json", "--sort", "p99"], True))
CASES.append(("cmd", "text-thread-iret", ["--by", "thread", "--sort",
                                          "iret"], True))
CASES.append(("sys", "csv-comm", ["--format", "csv", "--by", "comm"], True))
CASES.append(("sys", "text-comm-name", ["--by", "comm", "--sort", "name"],
              True))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    d = tmp_path_factory.mktemp("records")
    for name in ("cmd", "sys", "nolat"):
        shutil.copy(os.path.join(RECORDS, name + ".data"), str(d))
    shutil.copy(os.path.join(RECORDS, "calibration.json"), str(d))
    with open(os.path.join(RECORDS, "cmd.data"), "rb") as f:
        (d / "cut.data").write_bytes(f.read(CUT_AT))
    return d


def report(args, cwd, calibrated, columns):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "PYTHONPATH": ROOT, "TZ": "UTC", "LANG": "C.UTF-8",
           "COLUMNS": str(columns), "HOME": str(cwd),
           "XDG_STATE_HOME": str(cwd / "state"),
           "SYSRETSTAT_CALIBRATION":
               str(cwd / "calibration.json") if calibrated
               else str(cwd / "no-calibration.json")}
    p = subprocess.run([sys.executable, "-m", "sysretstat", "report"] + args,
                       cwd=str(cwd), env=env, capture_output=True,
                       timeout=120)
    # report --json names the calibration file it used: where the test
    # put it is not part of the output under test.
    out = p.stdout.replace(str(cwd / "calibration.json").encode(),
                           b"CALIBRATION")
    return p.returncode, out, p.stderr


@pytest.mark.parametrize("rec,name,args,calibrated", CASES,
                         ids=["%s-%s" % (c[0], c[1]) for c in CASES])
def test_report_is_unchanged(records, rec, name, args, calibrated):
    columns = 80 if name == "text-80" else 200
    rc, out, err = report(args + [rec + ".data"], records, calibrated,
                          columns)
    assert rc == 0, err.decode()
    path = os.path.join(GOLDEN, "%s.%s" % (rec, name))
    if REGEN:
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "wb") as f:
            f.write(out)
    with open(path, "rb") as f:
        want = f.read()
    assert out == want, "report %s %s differs from %s" % (
        " ".join(args), rec, path)
    if rec == "cut":
        assert b"cut short" in err
