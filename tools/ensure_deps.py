#!/usr/bin/env python3
"""Install the Debian and Python packages that are missing, and only them.

Usage: tools/ensure_deps.py [--apt PKG...] [--venv DIR --py DIST...]

Debian packages are checked with dpkg-query and installed with apt-get
(`apt-get update` runs only when something must be installed).  PKG may
name alternatives, `a|b` (Debian's and Ubuntu's name for one thing): any
one installed will do, else the first the archive has is installed.  Python
packages go into the virtual environment DIR, created with the running
interpreter (`python3 -m venv`) when it is not there: pip never runs
against the system Python, which Debian 12 and Ubuntu 23.04+ mark as
externally managed (PEP 668).  DIST names are pip requirement names
(`virtme-ng`, `pytest`), checked by distribution metadata in DIR.

Every failure is one line on stderr and exit status 1.
"""
import argparse
import os
import shutil
import subprocess
import sys

PROG = "sysretstat deps"


def fail(msg):
    sys.stderr.write("%s: error: %s\n" % (PROG, msg))
    raise SystemExit(1)


def last_line(text):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run(cmd, what, env=None):
    """Run cmd quietly; on failure one line naming `what` and why."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    except OSError as e:
        fail("%s: %s: %s" % (what, cmd[0], e.strerror or e))
    if p.returncode != 0:
        fail("%s failed (exit %d): %s" % (what, p.returncode,
                                         last_line(p.stderr or p.stdout)))
    return p


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                       capture_output=True, text=True)
    return "install ok installed" in r.stdout


def missing_debs(pkgs):
    """The PKG arguments (alternatives `a|b` kept whole) not installed."""
    if not pkgs:
        return []
    if shutil.which("dpkg-query") is None:
        fail("dpkg-query not found: install %s with your distribution's "
             "package manager" % " ".join(pkgs))
    return [p for p in pkgs if not any(installed(a) for a in p.split("|"))]


def available(pkg):
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", pkg],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() != ""


def choose(pkg):
    """The package to install for PKG: the first alternative the archive
    has (after apt-get update), else the first."""
    alts = pkg.split("|")
    return next((a for a in alts if available(a)), alts[0]) \
        if len(alts) > 1 else pkg


def ensure_debs(pkgs):
    debs = missing_debs(pkgs)
    if not debs:
        return
    if os.geteuid() != 0:
        names = " ".join(d.split("|")[0] for d in debs)
        fail("missing packages %s; install them as root (apt-get install "
             "%s)" % (names, names))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], "apt-get update", env)
    debs = [choose(d) for d in debs]
    print("installing: %s" % " ".join(debs), flush=True)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + debs,
        "apt-get install %s" % " ".join(debs), env)


def venv_python(venv):
    return os.path.join(venv, "bin", "python")


def venv_works(venv):
    py = venv_python(venv)
    if not os.access(py, os.X_OK):
        return False
    r = subprocess.run([py, "-c", "import pip"], capture_output=True)
    return r.returncode == 0


def ensure_venv(venv):
    """DIR/bin/python with pip, created with this interpreter if needed
    (a venv whose interpreter has gone is made again)."""
    if venv_works(venv):
        return venv_python(venv)
    print("creating virtual environment %s" % venv, flush=True)
    p = subprocess.run([sys.executable, "-m", "venv", "--clear", venv],
                       capture_output=True, text=True)
    if p.returncode != 0:
        why = last_line(p.stderr or p.stdout)
        if "ensurepip" in (p.stderr + p.stdout):
            why = "no ensurepip in %s: apt-get install python3-venv" \
                % sys.executable
        fail("cannot create virtual environment %s: %s" % (venv, why))
    return venv_python(venv)


# Run inside the venv: which of the named distributions are not installed.
_CHECK = """
import sys
from importlib import metadata
for name in sys.argv[1:]:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        print(name)
"""


def ensure_py(venv, dists):
    py = ensure_venv(venv)
    if not dists:
        return
    names = [d.split(";")[0].split("[")[0].split("=")[0].split(">")[0]
             .split("<")[0].strip() for d in dists]
    r = run([py, "-c", _CHECK] + names, "checking Python packages in %s"
            % venv)
    missing = set(r.stdout.split())
    todo = [d for d, n in zip(dists, names) if n in missing]
    if not todo:
        return
    print("installing into %s: %s" % (venv, " ".join(todo)), flush=True)
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + todo, "pip install %s" % " ".join(todo))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="ensure_deps.py",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--apt", nargs="*", default=[], metavar="PKG")
    ap.add_argument("--venv", metavar="DIR",
                    help="virtual environment for --py (created if missing)")
    ap.add_argument("--py", nargs="*", default=[], metavar="DIST")
    a = ap.parse_args(argv)
    if a.py and not a.venv:
        fail("--py needs --venv DIR: pip never installs into the system "
             "Python")
    try:
        ensure_debs(a.apt)
        if a.venv:
            ensure_py(os.path.abspath(a.venv), a.py)
    except KeyboardInterrupt:
        fail("interrupted")


if __name__ == "__main__":
    main()
