"""`sysretstat doctor`: can this host run sysretstat, and how does its
kernel return from syscalls?"""

import json
import sys

import click

from sysretstat.kernel import (libbpf as _libbpf, hostinfo, tested as kernels,
                               objects, tracer)
from sysretstat.errors import SysretstatError
from sysretstat.render.safe import safe


def _check(name, ok, detail, required=True):
    return {"check": name, "ok": bool(ok), "detail": detail,
            "required": required}


def run_checks(try_attach=True):
    checks = []
    rel = hostinfo.kernel_release()
    oldest = tuple(int(x) for x in kernels.OLDEST.split("."))
    checks.append(_check("kernel", hostinfo.kernel_version(rel) >= oldest,
                         kernels.describe(rel)))
    checks.append(_check("btf", hostinfo.has_btf(), hostinfo.btf_path()
                         if hostinfo.has_btf() else "%s missing: kernel "
                         "needs CONFIG_DEBUG_INFO_BTF=y" % hostinfo.btf_path()))
    caps = hostinfo.capabilities()
    checks.append(_check("privileges", hostinfo.can_trace(),
                         "root" if hostinfo.is_root() else
                         ("capabilities: " + (", ".join(sorted(caps))
                                              or "none")
                          + "; need CAP_BPF and CAP_PERFMON")))
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
            mark = "ok" if c["ok"] else ("FAIL" if c["required"] else "warn")
            w("%-4s  %-26s %s\n" % (mark, c["check"], safe(c["detail"])))
        w("\n%s\n" % ("sysretstat can run here." if ok else
                      "sysretstat cannot run here: see FAIL above."))
    return 0 if ok else 1
