"""`sysretstat doctor`: can this host run sysretstat, and how does its
kernel return from syscalls?"""

import importlib.util
import json
import os
import sys

import click

from sysretstat.kernel import (libbpf as _libbpf, hostinfo, tested as kernels,
                               objects, tracer)
from sysretstat.commands.common import other_syscall_tracers
from sysretstat.errors import SysretstatError
from sysretstat.penalty import calibration
from sysretstat.render.safe import safe


def _check(name, ok, detail, required=True, warn=False):
    """`ok` false: something sysretstat needs (FAIL) or uses (WARN) is
    missing; `warn` with ok: advice, where an option or an extra is
    unavailable or figures are disturbed (WARN), which leaves "ok" in
    JSON true so that a host's fitness is still all its checks' "ok"."""
    return {"check": name, "ok": bool(ok), "detail": detail,
            "required": required, "warn": bool(warn) or not ok}


def mark(c):
    if c["ok"] and not c["warn"]:
        return "ok"
    return "FAIL" if not c["ok"] and c["required"] else "WARN"


# Either CAP_SYS_ADMIN, or both of these (Linux >= 5.8).
SPLIT_CAPS = ("CAP_BPF", "CAP_PERFMON")


def privileges_check(caps=None, uid=None):
    """Which capability is missing, by name: a root without CAP_BPF (a
    container) is no more able than any user."""
    caps = hostinfo.capabilities() if caps is None else caps
    uid = os.geteuid() if uid is None else uid
    who = "uid %d" % uid
    if "CAP_SYS_ADMIN" in caps:
        return _check("privileges", True, who + ", CAP_SYS_ADMIN")
    missing = [c for c in SPLIT_CAPS if c not in caps]
    if not missing:
        return _check("privileges", True, who + ", CAP_BPF and CAP_PERFMON")
    return _check("privileges", False, "%s: missing %s (effective: %s); "
                  "needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN"
                  % (who, " and ".join(missing),
                     ", ".join(sorted(caps)) or "none"))


def cgroup_check():
    where = tracer.cgroup2_mount()
    # Advisory (ok either way): only --cgroup needs it.
    return _check("cgroup v2", True, "mounted at %s" % where if where else
                  "not mounted: --cgroup cannot filter", warn=not where)


def calibration_check():
    key = calibration.machine_key()
    cal = calibration.load()
    if cal is not None:
        return _check("calibration", True, "%s in %s" % (key, cal.path))
    return _check("calibration", True, "none for %s in %s: reports leave "
                  "out the time lost to IRET (run `sysretstat bench`)"
                  % (key, " or ".join(calibration.search_path())),
                  warn=True)


def matplotlib_check():
    if importlib.util.find_spec("matplotlib") is not None:
        return _check("matplotlib", True, "installed (report --plot)")
    return _check("matplotlib", True, "not installed: report --plot "
                  "needs it (optional)", warn=True)


def tracers_check():
    busy, detail = other_syscall_tracers()
    return _check("other syscall tracers", True, busy or detail,
                  warn=busy is not None or detail.startswith("cannot"))


def run_checks(try_attach=True):
    checks = []
    rel = hostinfo.kernel_release()
    oldest = tuple(int(x) for x in kernels.OLDEST.split("."))
    checks.append(_check("kernel", hostinfo.kernel_version(rel) >= oldest,
                         kernels.describe(rel)))
    checks.append(_check("btf", hostinfo.has_btf(), hostinfo.btf_path()
                         if hostinfo.has_btf() else "%s missing: kernel "
                         "needs CONFIG_DEBUG_INFO_BTF=y" % hostinfo.btf_path()))
    checks.append(privileges_check())
    try:
        ver = "%d.%d" % _libbpf.version()
        ok = _libbpf.version() >= (1, 1)
    except SysretstatError as e:
        ver, ok = str(e), False
    checks.append(_check("libbpf", ok, ver))
    try:
        objects.object_bytes("sysret")
        checks.append(_check("bpf object", True, "built"))
    except SysretstatError as e:
        checks.append(_check("bpf object", False, str(e)))
    # One line per tracepoint (two programs share sched_process_exit).
    seen = set()
    for prog, tp in sorted(tracer.TRACEPOINTS.items()):
        if tp in seen:
            continue
        seen.add(tp)
        req = prog not in tracer.OPTIONAL_PROGS
        checks.append(_check("tracepoint " + tp, tracer.tracepoint_exists(tp),
                             "in kernel BTF" if tracer.tracepoint_exists(tp)
                             else "missing" + ("" if req else " (%s)" %
                                               tracer.OPTIONAL_LOSS[prog]),
                             required=req))
    checks.append(cgroup_check())
    # Before our own attach, which would be listed too.
    checks.append(tracers_check())
    checks.append(calibration_check())
    checks.append(matplotlib_check())
    if try_attach:
        checks.append(_attach_check(all(c["ok"] for c in checks
                                        if c["required"])))
    return checks


def _attach_check(prereqs_ok):
    if not prereqs_ok:
        return _check("attach", False, "skipped: fix the checks above")
    t = tracer.Tracer(tracer.Options())
    try:
        t.open()
        t.attach()
        return _check("attach", True, "attached: " + ", ".join(
            tracer.TRACEPOINTS[p] for p in t.attached))
    except SysretstatError as e:
        return _check("attach", False, str(e))
    finally:
        t.close()


def host_facts():
    g = hostinfo.guard_model()
    return {
        "kernel": hostinfo.kernel_release(),
        "cpu_vendor": hostinfo.cpu_vendor(),
        "cpu_model": hostinfo.cpu_model(),
        "paging": "5-level" if g["la57"] else "4-level",
        "task_size_max": g["task_size_max"],
        "fred": g["fred"],
        "xen_pv": g["xen_pv"],
        "guard": ("every return is ERETU (FRED)" if g["fred"] else
                  "every return is IRET (Xen PV)" if g["xen_pv"] else
                  "SYSRET guard of %s, %s" % (
                      "Linux <= 6.6 (entry_64.S)" if g["pre_6_7"] else
                      "Linux >= 6.7 (do_syscall_64)",
                      "from BTF: do_syscall_64 returns %s" % (
                          "void" if g["pre_6_7"] else "bool")
                      if g["guard_source"] == "btf" else
                      "from the version (do_syscall_64 not in BTF)")),
    }


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(as_json):
    """Check that this host can run sysretstat, and describe how its
    kernel returns from syscalls.  Exit status 1 if a required check
    fails."""
    checks = run_checks()
    facts = host_facts()
    ok = all(c["ok"] for c in checks if c["required"])
    if as_json:
        json.dump({"ok": ok, "host": facts, "checks": checks}, sys.stdout,
                  indent=1)
        sys.stdout.write("\n")
    else:
        w = sys.stdout.write
        for k, v in facts.items():
            w("%-14s %s\n" % (k, "%#x" % v if k == "task_size_max"
                               else safe(v)))
        w("\n")
        for c in checks:
            w("%-4s  %-26s %s\n" % (mark(c), c["check"],
                                     safe(c["detail"])))
        w("\n%s\n" % ("sysretstat can run here." if ok else
                      "sysretstat cannot run here: see FAIL above."))
    return 0 if ok else 1
