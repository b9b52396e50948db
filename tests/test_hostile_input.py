"""Bad input of every kind gives one error line and a non-zero exit:
never a traceback, never a hang (each case runs under a timeout)."""

import json
import os

import pytest

from test_recordfile import synth


def one_line(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("sysretstat: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return r.stderr


@pytest.mark.parametrize("cmd", [["top", "-b", "-n", "1"],
                                 ["daemon", "--listen", "127.0.0.1:0"],
                                 ["record", "-d", "1"]])
@pytest.mark.parametrize("value,words", [
    ("inf", "between 0.01 and 86400"), ("1e300", "between 0.01 and 86400"),
    ("0.000001", "between 0.01 and 86400"), ("nan", "positive"),
    ("-1", "positive"), ("0", "positive")])
def test_interval_ranges(run_cli, tmp_path, cmd, value, words):
    extra = ["-o", tmp_path / "x.data"] if cmd[0] == "record" else []
    err = one_line(run_cli(*cmd, *extra, "-i", value, timeout=30), 2)
    assert words in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "-1"])
def test_duration_range(run_cli, tmp_path, value):
    one_line(run_cli("record", "-o", tmp_path / "x.data", "-d", value,
                     timeout=30), 2)
    assert os.listdir(tmp_path) == []


def test_top_n_and_counts(run_cli, tmp_path):
    p = tmp_path / "r.data"
    synth(p, n=2)
    r = run_cli("report", p, "--top", str(10 ** 30))
    assert r.returncode == 0, r.stderr
    one_line(run_cli("report", p, "--top", "9" * 5000), 2)
    one_line(run_cli("report", p, "--top", "0"), 2)
    one_line(run_cli("daemon", "--top", "-1"), 2)
    one_line(run_cli("daemon", "--listen", "127.0.0.1:\u00b2"), 2)


def test_fifo_and_devices_are_refused_without_blocking(run_cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Nobody ever opens the other end: open(2) without O_NONBLOCK would
    # wait forever (the run's timeout would fail the test).
    for args in (["report", fifo], ["report", fifo, "--json"],
                 ["diff", fifo, fifo], ["report", "/dev/zero"],
                 ["diff", "/dev/zero", "/dev/null"]):
        err = one_line(run_cli(*args, timeout=20), 1)
        assert "not a regular file" in err, err


def test_deep_nesting_and_bad_types(run_cli, tmp_path):
    deep = tmp_path / "deep"
    deep.write_text("[" * 3000 + "\n")
    one_line(run_cli("report", deep), 1)
    one_line(run_cli("diff", deep, deep), 1)
    deep.write_text('{"schema": "sysretstat/1", "meta": ' + "[" * 3000)
    one_line(run_cli("diff", deep, deep), 1)
    good = tmp_path / "r.data"
    synth(good, n=2)
    doc = json.loads(run_cli("report", good, "--json").stdout)
    bad = tmp_path / "bad.json"
    for change in ({"meta": []}, {"meta": dict(doc["meta"], lost=[])},
                   {"meta": dict(doc["meta"], guard="x")},
                   {"meta": dict(doc["meta"], duration_s="x")},
                   {"meta": dict(doc["meta"], command=["rm"])},
                   {"totals": dict(doc["totals"], paths={"sysret": 2 ** 64})},
                   {"totals": dict(doc["totals"],
                                   paths={"sysret": 10 ** 400})},
                   {"processes": [{"pid": "x"}]}, {"threads": 5}):
        bad.write_text(json.dumps(dict(doc, **change)))
        err = one_line(run_cli("diff", good, bad), 1)
        assert "malformed report" in err, (change, err)


def test_stdout_full(run_cli, tmp_path):
    p = tmp_path / "r.data"
    synth(p, n=3)
    for args in (["report", p], ["report", p, "--json"],
                 ["report", p, "--format", "csv"], ["diff", p, p]):
        with open("/dev/full", "w") as full:
            import subprocess
            import sys
            from conftest import ROOT
            r = subprocess.run([sys.executable, "-m", "sysretstat"] +
                               [str(a) for a in args], stdout=full,
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=ROOT),
                               timeout=60)
        assert r.returncode == 1, r.stderr
        assert r.stderr == "sysretstat: error: writing standard output: " \
            "No space left on device\n", r.stderr


def test_stdout_closed_early(tmp_path):
    """`report | head -1`: quiet, exit 0, no 'Exception ignored'."""
    import subprocess
    import sys
    from conftest import ROOT
    p = tmp_path / "r.data"
    synth(p, n=3)
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "sysretstat", "report",
                             str(p)], stdout=w, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        fh.read(10)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0 and err == b"", err


@pytest.mark.bpf
def test_top_batch_stdout_full(run_cli):
    import subprocess
    import sys
    from conftest import ROOT
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "sysretstat", "top", "-b",
                            "-n", "2", "-i", "0.1"], stdout=full,
                           stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert r.returncode == 1
    assert r.stderr == "sysretstat: error: writing standard output: " \
        "No space left on device\n", r.stderr




def test_btf_must_be_a_small_regular_file(run_cli, tmp_path):
    """SYSRETSTAT_BTF=/dev/zero grew memory by ~380 MB/s; a FIFO would
    block.  Both are refused before anything is read."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.btf"
    with open(big, "wb") as f:
        f.truncate(65 << 20)            # sparse: costs no disk
    for path, words in (("/dev/zero", "not a regular file"),
                        (fifo, "not a regular file"),
                        (tmp_path, "not a regular file"),
                        (tmp_path / "none", "No such file"),
                        (big, "more than a BTF file")):
        for args in (["top", "-b", "-n", "1"], ["doctor"]):
            err = one_line(run_cli(*args, env={"SYSRETSTAT_BTF": str(path)},
                                   timeout=30), 1)
            assert err.startswith("sysretstat: error: SYSRETSTAT_BTF=%s: "
                                  % path) and words in err, err
