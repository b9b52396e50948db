#!/usr/bin/env python3
"""Install the Debian and Python packages that are missing, and only them.

Usage: tools/ensure_deps.py --apt PKG... --py MODULE...
Debian packages are checked with dpkg-query; `apt-get update` runs only
when something must be installed.  Python packages are checked by
importing them and installed with pip into the running interpreter.
"""
import argparse
import importlib.util
import os
import subprocess
import sys


def missing_debs(pkgs):
    out = []
    for p in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                           capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--apt", nargs="*", default=[])
    ap.add_argument("--py", nargs="*", default=[])
    a = ap.parse_args()
    debs = missing_debs(a.apt)
    if debs:
        if os.geteuid() != 0:
            sys.exit("sysretstat: error: missing packages %s; install them "
                     "as root (apt-get install %s)" % (" ".join(debs),
                                                        " ".join(debs)))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print("installing: %s" % " ".join(debs), flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq",
                        "--no-install-recommends"] + debs, check=True,
                       env=env, stdout=subprocess.DEVNULL)
    mods = [m for m in a.py if importlib.util.find_spec(m) is None]
    if mods:
        print("installing: %s" % " ".join(mods), flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check"] + mods, check=True)


if __name__ == "__main__":
    main()
