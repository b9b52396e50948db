#!/usr/bin/env python3
"""Boot other kernels with this machine's root filesystem shared and run
the BPF tests inside them (issue 15: the kernel matrix).

Usage: tools/vmtest.py [--column A|B|C|all] [--quick] [--keep DIR]
                       [-- PYTEST-ARGS]

Each column is a real boot under qemu through virtme-ng (`vng`): the
guest sees this machine's files (copy-on-write), so it runs the same
Python, the same built BPF objects and the same test suite.  Results
come back through a read-write shared directory.  /dev/kvm is probed
with a short boot and TCG is the fallback (on some hosts a KVM guest
hangs); columns that need a CPU model of their own always use TCG.

Exit status: 0 when every column booted and passed, 1 when a column
failed, 2 when a column could not boot (no qemu, no kernel, a hang).
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What runs in every guest: every classification workload with exact
# counts, the verifier-error test, and the BTF feature probes.
GUEST_TESTS = ["tests/test_classify.py", "tests/test_verifier_errors.py",
               "tests/test_hostinfo.py"]
# `make test`'s share of them (-k): one workload per kind of event, the
# guard-model edge, both compat entries and the probes.  A test in the
# guest costs 10-20 s under TCG, mostly Python starting up over 9p.
QUICK = ("(test_retpaths_exact and (signal or restart or fork or exec or "
         "rip_noncanonical or ptrace_sigstop or ptrace_eintr)) or "
         "task_size_max or fast_syscall or int80 or compat_entry or "
         "kernel_rejection or btf_probe or exit_group or exec_from")
# Left out of the guests: 30 processes switching every 100 us starve a
# TCG guest (emulated ten times slower) until the column times out.  What
# they test, the per-CPU cache under preemption, does not depend on the
# kernel version; the host runs them.
FULL = "not under_load"

# column: (description, kernel glob, kernel command line, qemu -cpu or
# None for vng's default, needs TCG)
COLUMNS = {
    "A": ("6.1, 4-level paging, compat SYSCALL (AMD model)",
          "/boot/vmlinuz-6.1.*", "no5lvl", "max,vendor=AuthenticAMD", False),
    "B": ("6.1, 5-level paging (TCG -cpu max has la57)",
          "/boot/vmlinuz-6.1.*", "", "max", True),
    "C": ("6.1, 4-level paging, compat SYSENTER (Intel model)",
          "/boot/vmlinuz-6.1.*", "no5lvl", "max,vendor=GenuineIntel", True),
}

BOOT_TIMEOUT = 20      # seconds for the KVM probe's whole boot
COLUMN_TIMEOUT = 1500  # seconds for one column's boot and tests


class CannotBoot(Exception):
    pass


def vng():
    """The vng launcher installed beside this Python, or on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "vng")
    path = here if os.access(here, os.X_OK) else shutil.which("vng")
    if not path:
        raise CannotBoot("virtme-ng (vng) is not installed "
                         "(pip install virtme-ng)")
    if not shutil.which("qemu-system-x86_64"):
        raise CannotBoot("qemu-system-x86_64 is missing "
                         "(apt-get install qemu-system-x86)")
    if not (shutil.which("busybox") or os.path.exists("/bin/busybox")):
        raise CannotBoot("busybox is missing (apt-get install "
                         "busybox-static): virtme-ng builds its "
                         "initramfs with it")
    return path


def _env():
    """vng runs its own helpers (virtme-run) by name: put the directory
    it was installed in first on PATH, as a venv's activate would."""
    d = os.path.dirname(vng())
    return dict(os.environ, PATH=d + os.pathsep + os.environ.get("PATH", ""))


def kernel(pattern):
    found = sorted(glob.glob(pattern), key=_version_key)
    if not found:
        raise CannotBoot("no kernel matches %s (apt-get install "
                         "linux-image-amd64)" % pattern)
    if not os.access(found[-1], os.R_OK):
        raise CannotBoot("%s is not readable" % found[-1])
    return found[-1]


def _version_key(path):
    return [int(x) for x in re.findall(r"\d+", os.path.basename(path))]


def _boot_cmd(kpath, rwdir, append, cpu, use_kvm, script):
    cmd = [vng(), "--run", kpath, "--force-9p", "--rwdir", rwdir,
           "--memory", "2G", "--cpus", "2", "--cwd", ROOT]
    if not use_kvm:
        cmd.append("--disable-kvm")
    if append:
        cmd += ["--append", append]
    # A second export of / for the guest to mount with caching (see
    # GUEST_SCRIPT); vng's own root mount reads every file anew.
    qemu = ("-fsdev local,id=%s,path=/,security_model=none,readonly=on,"
            "multidevs=remap -device virtio-9p-pci,fsdev=%s,mount_tag=%s"
            % (CACHED_TAG, CACHED_TAG, CACHED_TAG))
    if cpu and not use_kvm:
        qemu += " -cpu %s" % cpu
    cmd += ["--qemu-opts=" + qemu]
    cmd += ["--exec", "bash %s" % shlex.quote(script)]
    return cmd


_kvm_ok = None


def _run_session(cmd, timeout):
    """Run cmd in a session of its own; returns (rc, output) or None when
    it ran past timeout.  On a timeout the whole session is killed: vng
    starts qemu in the same session, and killing vng alone left qemu
    running."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=_env(), start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        return None
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def kvm_works(kpath):
    """Whether a KVM guest boots here within BOOT_TIMEOUT (once a run)."""
    global _kvm_ok
    if _kvm_ok is None:
        _kvm_ok = False
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            with tempfile.TemporaryDirectory(prefix="vmtest-kvm-") as d:
                script = os.path.join(d, "probe.sh")
                with open(script, "w") as f:
                    f.write("echo ok > %s/ok\n" % shlex.quote(d))
                _run_session(_boot_cmd(kpath, d, "", None, True, script),
                             BOOT_TIMEOUT)
                _kvm_ok = os.path.exists(os.path.join(d, "ok"))
    return _kvm_ok


CACHED_TAG = "vmtestroot"

# The tests run in a chroot of this machine's root exported a second time
# and mounted with cache=loose: Python imports the same few hundred files
# in every process a test starts, and vng's uncached root mount made each
# start cost seconds under TCG (0.5 s with the cache).  The host's files
# do not change during a run.  /proc, /sys, /dev and the guest's
# writable /tmp (which holds the results directory) are bound in.
# The start of every guest script (benchmarks/cpu_scaling.py's too):
# output to {log}, then this script again in the cached chroot.
CACHED_ROOT = """\
exec >{log} 2>&1
if [ -z "$VMTEST_CHROOTED" ]; then
  r=/run/vmtest-root
  mkdir -p $r
  if mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=512000,ro \\
      {tag} $r; then
    for d in proc sys dev tmp; do mount --rbind /$d $r/$d || exit 1; done
    VMTEST_CHROOTED=1 exec chroot $r bash {script}
  fi
  echo "guest: cached root mount failed: running uncached"
fi
cd {root}
"""
GUEST_SCRIPT = CACHED_ROOT.replace("{log}", "{res}/guest.log") + """\
export CI={ci} PYTHONDONTWRITEBYTECODE=1
uname -r >{res}/uname
grep -m1 '^flags' /proc/cpuinfo >{res}/cpuflags
grep -m1 '^vendor_id' /proc/cpuinfo >{res}/vendor
{py} -m sysretstat doctor --json >{res}/doctor.json
echo $? >{res}/doctor.rc
{py} -m pytest -v -o faulthandler_timeout=240 -p no:cacheprovider --junitxml={res}/junit.xml {tests}
echo $? >{res}/pytest.rc
"""


def run_column(name, pytest_args=(), keep=None, quick=False,
               log=sys.stderr):
    """Boot one column, run the guest tests; returns a result dict."""
    desc, pattern, append, cpu, needs_tcg = COLUMNS[name]
    kpath = kernel(pattern)
    use_kvm = not needs_tcg and kvm_works(kpath)
    res = tempfile.mkdtemp(prefix="vmtest-%s-" % name, dir=keep)
    script = os.path.join(res, "guest.sh")
    tests = list(pytest_args) or (GUEST_TESTS + ["-k", QUICK if quick
                                                 else FULL])
    with open(script, "w") as f:
        f.write(GUEST_SCRIPT.format(
            tag=CACHED_TAG, script=shlex.quote(script),
            root=shlex.quote(ROOT), res=shlex.quote(res),
            ci=shlex.quote(os.environ.get("CI", "")),
            py=shlex.quote(sys.executable),
            tests=" ".join(shlex.quote(t) for t in tests)))
    print("vmtest: column %s: %s: booting %s (%s)" % (
        name, desc, os.path.basename(kpath), "KVM" if use_kvm else "TCG"),
        file=log, flush=True)
    t0 = time.monotonic()
    done = _run_session(_boot_cmd(kpath, res, append, cpu, use_kvm, script),
                        COLUMN_TIMEOUT)
    if done is None:
        # Keep what the guest wrote: the log's tail names the test it was in.
        log_tail = (_read(os.path.join(res, "guest.log")) or "").splitlines()
        raise CannotBoot("column %s: no result within %d s (guest's files "
                         "kept in %s); the guest log ends: %s" % (
                             name, COLUMN_TIMEOUT, res,
                             " | ".join(log_tail[-3:]) or "(empty)"))
    boot_out = done[1]
    secs = time.monotonic() - t0
    r = _collect(name, res, secs)
    if r["uname"] is None:
        tail = "\n".join(boot_out.strip().splitlines()[-5:])
        raise CannotBoot("column %s: the guest did not run its script: %s"
                         % (name, tail or "no output"))
    if not keep:
        shutil.rmtree(res, ignore_errors=True)
    return r


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _collect(name, res, secs):
    doctor = _read(os.path.join(res, "doctor.json"))
    try:
        doctor = json.loads(doctor) if doctor else None
    except ValueError:
        doctor = None
    log = _read(os.path.join(res, "guest.log")) or ""
    summary = ([l for l in log.splitlines()
                if re.search(r"\b(passed|failed|error)", l)] or [""])[-1]
    flags = (_read(os.path.join(res, "cpuflags")) or "").split()
    return {
        "column": name,
        "uname": (_read(os.path.join(res, "uname")) or "").strip() or None,
        "vendor": (_read(os.path.join(res, "vendor")) or "").split(":")[-1]
        .strip(),
        "la57": "la57" in flags,
        "doctor_ok": bool(doctor and doctor.get("ok")),
        "doctor": doctor,
        "pytest_rc": _int(_read(os.path.join(res, "pytest.rc"))),
        "summary": summary.strip("= "),
        "log": log,
        "seconds": round(secs, 1),
    }


def _int(s):
    try:
        return int(s.strip())
    except (AttributeError, ValueError):
        return None


def passed(r):
    return r["doctor_ok"] and r["pytest_rc"] == 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--column", default="A",
                    help="A, B, C or all (default A)")
    ap.add_argument("--quick", action="store_true",
                    help="only make test's subset of the guest tests")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each column's results under DIR")
    ap.add_argument("pytest_args", nargs="*",
                    help="tests to run in the guest instead of the "
                    "classification set")
    a = ap.parse_args(argv)
    cols = sorted(COLUMNS) if a.column == "all" else [a.column.upper()]
    for c in cols:
        if c not in COLUMNS:
            ap.error("unknown column %s (A, B, C or all)" % c)
    status = 0
    for c in cols:
        try:
            r = run_column(c, a.pytest_args, a.keep, a.quick)
        except CannotBoot as e:
            print("vmtest: %s" % e, file=sys.stderr)
            status = max(status, 2)
            continue
        ok = passed(r)
        print("vmtest: column %s: %s, %s, %s paging: doctor %s, tests: "
              "%s (%.0f s)" % (c, r["uname"], r["vendor"],
                               "5-level" if r["la57"] else "4-level",
                               "ok" if r["doctor_ok"] else "FAILED",
                               r["summary"] or "no result", r["seconds"]))
        if not ok:
            print(r["log"][-6000:], file=sys.stderr)
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
