"""`sysretstat top` on a terminal it cannot drive: one error line, exit
status 1, no traceback (found by `make top` with TERM unset)."""

import os
import pty
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.bpf
@pytest.mark.parametrize("term", [None, "sysretstat-no-such-terminal"])
def test_unknown_terminal_is_one_error_line(term, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TERM"}
    env["PYTHONPATH"] = ROOT
    # No saved calibration (a bad one is a warning line) outside tmp_path.
    env.update(SYSRETSTAT_CALIBRATION=str(tmp_path / "none.json"),
               XDG_STATE_HOME=str(tmp_path), HOME=str(tmp_path))
    if term:
        env["TERM"] = term
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "sysretstat", "top"],
                         stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                         env=env, cwd=ROOT, text=True)
    os.close(slave)
    try:
        err = p.stderr.read()
        assert p.wait(timeout=60) == 1
    finally:
        p.stderr.close()
        os.close(master)
    assert err.splitlines() == [
        "sysretstat: error: cannot start the full-screen view: unknown "
        "terminal type TERM=%r (set TERM, or use -b for batch output)"
        % (term or "")]
