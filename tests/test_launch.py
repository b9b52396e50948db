"""`record -- CMD` counts the command from its execve: none of the
launcher's own syscalls (the gate it waits at) are the command's."""

import json
import subprocess

import pytest

# Two syscalls and no libc: getppid, then exit_group (which never
# returns), so its exact counts are known: execve once, getppid once.
TINY = r"""
void _start(void)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(110) : "rcx", "r11", "memory");
	__asm__ volatile("syscall" :: "a"(231), "D"(0) : "rcx", "r11", "memory");
	for (;;)
		;
}
"""


@pytest.fixture
def tiny(tmp_path):
    src = tmp_path / "tiny.c"
    src.write_text(TINY)
    out = tmp_path / "tiny"
    subprocess.run(["cc", "-static", "-nostdlib", "-O2", "-o", str(out),
                    str(src)], check=True)
    return str(out)


@pytest.mark.bpf
def test_command_counts_start_at_its_execve(run_cli, tiny, tmp_path):
    f = tmp_path / "r.data"
    r = run_cli("record", "-q", "-o", f, "--", tiny)
    assert r.returncode == 0, r.stderr
    r = run_cli("report", f, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    returns = {s["name"]: s["returns"] for s in doc["syscalls"]}
    assert returns == {"execve": 1, "getppid": 1}
