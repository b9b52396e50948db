"""A verifier rejection is reported as one: one line naming the program
and the verifier's verdict, the whole log in a file whose path is given,
never as missing privilege."""

import os
import subprocess

import pytest

from sysretstat.kernel import bpf, objects
from sysretstat.errors import PermissionDenied, VerifierRejected

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The end of a real log: 6.1 rejecting sr_signal_deliver before the fix
# that bounded its histogram index (issue 15).
LOG_6_1 = """\
369: (0f) r2 += r3
370: R2_w=map_value(off=0,ks=4,vs=5264,umax=8184,var_off=(0x0; 0x1ff8))
370: (79) r3 = *(u64 *)(r2 +16)
invalid access to map value, value_size=5264 off=8200 size=8
R2 max value is outside of the allowed memory range
verification time 12255 usec
stack depth 64+0
processed 290 insns (limit 1000000) max_states_per_insn 1 total_states 22
"""


def test_final_message_is_the_verdict():
    assert bpf.verifier_final_message(LOG_6_1) == (
        "invalid access to map value, value_size=5264 off=8200 size=8; "
        "R2 max value is outside of the allowed memory range")


def test_rejection_message_names_program_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    e = bpf.verifier_rejected(LOG_6_1, "sr_signal_deliver", 13)
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith("the kernel's verifier rejected sr_signal_deliver: "
                          "invalid access to map value")
    assert e.log_path and os.path.dirname(e.log_path) == str(tmp_path)
    assert msg.endswith("(whole log: %s)" % e.log_path)
    assert open(e.log_path).read() == LOG_6_1
    assert oct(os.stat(e.log_path).st_mode & 0o777) == "0o600"


@pytest.mark.bpf
def test_kernel_rejection_is_not_permission_denied(tmp_path, monkeypatch):
    obj_path = tmp_path / "reject.bpf.o"
    subprocess.run([objects.clang()] + objects.CFLAGS + [
        "-I", os.path.join(ROOT, "bpf"), "-c",
        os.path.join(ROOT, "tests", "bpf", "reject.bpf.c"),
        "-o", str(obj_path)], check=True)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    obj = bpf.BpfObject.open(obj_path.read_bytes(), name="reject")
    try:
        with pytest.raises(VerifierRejected) as ei:
            obj.load()
    finally:
        obj.close()
    e = ei.value
    assert not isinstance(e, PermissionDenied)
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith("the kernel's verifier rejected sr_reject: ")
    # The verdict is the log's, and the whole log is in the named file.
    log = open(e.log_path).read()
    assert "R0 max value is outside" in log or "invalid access" in log
    assert bpf.verifier_final_message(log) in msg
    assert log.rstrip().splitlines()[-1].startswith("processed ")
