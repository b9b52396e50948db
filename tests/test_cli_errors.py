"""Bad input and missing capabilities: one line, `sysretstat: error:`,
exit status 1 (runtime) or 2 (usage), never a traceback."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_error_line(p, code):
    assert p.returncode == code, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("sysretstat: error: ")
    assert "Traceback" not in p.stderr
    return lines[0]


def test_unknown_pid(run_cli):
    line = one_error_line(run_cli("record", "-p", "4194303", "-d", "1",
                                  "-o", "/tmp/sysretstat-none.data"), 2)
    assert "no such process: 4194303" in line
    # Beyond PID_MAX_LIMIT, or beyond what a pid_t holds: a usage error.
    for pid in ("999999999", str(2 ** 31), str(2 ** 64), "0", "-5"):
        line = one_error_line(run_cli("top", "-b", "-p", pid), 2)
        assert "is not in the range 1<=x<=4194304" in line, line


def test_unknown_command(run_cli, tmp_path):
    line = one_error_line(run_cli("record", "-o", tmp_path / "x.data", "--",
                                  "/no/such/program"), 2)
    assert "command not found" in line
    assert not (tmp_path / "x.data").exists()


def test_unknown_option(run_cli):
    one_error_line(run_cli("record", "--frobnicate"), 2)


def test_unknown_subcommand(run_cli):
    one_error_line(run_cli("frobnicate"), 2)


@pytest.mark.parametrize("args", [["-i", "0"], ["-i", "-1"], ["-d", "0"],
                                  ["-i", "abc"], ["--latency-sample", "3"],
                                  ["--latency-sample", "0"],
                                  ["--latency-sample", "131072"]])
def test_bad_numbers(run_cli, args):
    one_error_line(run_cli("record", *args), 2)


def test_missing_btf(run_cli, tmp_path):
    line = one_error_line(run_cli("record", "-d", "1", "-o",
                                  tmp_path / "x.data",
                                  env={"SYSRETSTAT_BTF": "/nonexistent"}), 1)
    assert "BTF" in line


def test_missing_record_file(run_cli, tmp_path):
    line = one_error_line(run_cli("report", tmp_path / "nope.data"), 1)
    assert "nope.data" in line


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop caps")
def test_missing_privilege(tmp_path):
    # Root with every capability dropped: what an unprivileged user gets.
    p = subprocess.run(["setpriv", "--bounding-set", "-all", "--inh-caps",
                        "-all", "--", sys.executable, "-m", "sysretstat",
                        "record", "-d", "1", "-o", str(tmp_path / "x.data")],
                       capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    line = one_error_line(p, 1)
    assert "CAP_BPF" in line


def test_help_needs_no_privilege_or_libbpf(run_cli):
    p = run_cli("--help")
    assert p.returncode == 0
    for cmd in ("doctor", "record", "report"):
        assert cmd in p.stdout


def test_import_touches_nothing():
    # Importing the package must not load libbpf or read /sys.
    code = ("import sys, sysretstat, sysretstat.commands.cli, sysretstat.model.snapshot;"
            "import sysretstat.kernel.libbpf as l; assert l._lib is None")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.bpf
def test_doctor_json(run_cli):
    import json
    p = run_cli("doctor", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.loads(p.stdout)
    assert d["ok"] is True
    names = {c["check"] for c in d["checks"]}
    assert {"btf", "privileges", "attach", "tracepoint sys_exit"} <= names
    assert d["host"]["task_size_max"] in (0x7ffffffff000, 0xfffffffffff000)


def test_version_names_libbpf_kernel_and_build(run_cli):
    p = run_cli("--version")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("sysretstat, version ")
    assert lines[1].startswith("libbpf ")
    assert lines[2] == "kernel " + os.uname().release
    # Run from a git checkout: git's description, not "release" (an
    # unpacked sdist has no .git and is a release).
    in_git = os.path.exists(os.path.join(ROOT, ".git"))
    assert lines[3].startswith("build checkout " if in_git
                               else "build release")
    assert len(lines) == 4


def test_version_of_an_installed_copy_is_a_release(tmp_path):
    import shutil
    shutil.copytree(os.path.join(ROOT, "sysretstat"),
                    tmp_path / "sysretstat",
                    ignore=shutil.ignore_patterns("__pycache__", "*.o"))
    code = ("from sysretstat.commands import cli; "
            "print(cli.build_info())")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                       capture_output=True, text=True, check=True)
    assert r.stdout == "release\n"
