"""Install and packaging, checked with the real tools: `make install` on
the system Python, the platform wheel and what it installs, the sdist,
the systemd unit, the shell completions and the licence story."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

from conftest import ROOT, bpf_missing

# A stock Debian or Ubuntu: only the system directories, no pyenv.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_PYTHON = "/usr/bin/python3"


def clean_tree(dest):
    """What a clean clone holds: the tracked files of this checkout (as
    they are now), or, outside git (an sdist), the tree minus outputs."""
    # safe.directory: a user other than the checkout's owner (make
    # test-unit as non-root) still gets the tracked list.
    p = subprocess.run(["git", "-c", "safe.directory=" + ROOT, "-C", ROOT,
                        "ls-files", "-z"], capture_output=True)
    if p.returncode == 0 and p.stdout:
        files = [f for f in p.stdout.decode().split("\0") if f]
    else:
        skip = {".venv", "build", "dist", ".pytest_cache", "__pycache__",
                ".git", ".hypothesis"}
        files = []
        for d, dirs, names in os.walk(ROOT):
            dirs[:] = [x for x in dirs if x not in skip and
                       not x.endswith(".egg-info") and
                       os.path.relpath(os.path.join(d, x), ROOT) not in
                       ("sysretstat/bpf", "sysretstat/bin")]
            files += [os.path.relpath(os.path.join(d, n), ROOT)
                      for n in names]
    for f in files:
        src = os.path.join(ROOT, f)
        if not os.path.lexists(src):      # deleted, not yet committed
            continue
        os.makedirs(os.path.join(dest, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, f), follow_symlinks=False)
    return str(dest)


def makefile_var(name):
    with open(os.path.join(ROOT, "Makefile")) as f:
        m = re.search(r"^%s \?= (\S+)$" % name, f.read(), re.M)
    assert m, "Makefile has no default for %s" % name
    return m.group(1)


def system_python_managed():
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    p = subprocess.run([SYSTEM_PYTHON, "-c",
                        "import sysconfig; print(sysconfig.get_path("
                        "'stdlib'))"], capture_output=True, text=True)
    return os.path.exists(os.path.join(p.stdout.strip(),
                                       "EXTERNALLY-MANAGED"))


# make install ---------------------------------------------------------
@pytest.mark.slow
def test_make_install_on_the_system_python(tmp_path):
    """A clean clone, PATH of system directories, PYTHON=/usr/bin/python3:
    `make install` works and the installed `sysretstat doctor` runs."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no %s" % SYSTEM_PYTHON)
    if os.geteuid() != 0:
        pytest.skip("make install checks apt packages as root")
    src = clean_tree(tmp_path / "clone")
    inst = tmp_path / "inst"
    env = {"PATH": SYSTEM_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    for k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
              "PIP_CONFIG_FILE", "http_proxy", "https_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        if k in os.environ:
            env[k] = os.environ[k]
    def make_install():
        return subprocess.run(["make", "-C", src, "install",
                               "PYTHON=" + SYSTEM_PYTHON,
                               "PREFIX=%s" % (inst / "opt"),
                               "BINDIR=%s" % (inst / "bin"),
                               "SHAREDIR=%s" % (inst / "share")],
                              capture_output=True, text=True, env=env,
                              timeout=900)

    p = make_install()
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    exe = inst / "bin" / "sysretstat"
    assert os.path.realpath(exe) == str(inst / "opt" / "venv" / "bin" /
                                        "sysretstat")
    # Nothing went into the system Python.
    if system_python_managed():
        q = subprocess.run([SYSTEM_PYTHON, "-c", "import sysretstat"],
                           capture_output=True, env=env, cwd=str(tmp_path))
        assert q.returncode != 0
    for page in glob.glob(os.path.join(ROOT, "man", "*.8")):
        assert (inst / "share" / "man" / "man8" /
                os.path.basename(page)).is_file()
    for c in ("bash-completion/completions/sysretstat",
              "zsh/site-functions/_sysretstat",
              "fish/vendor_completions.d/sysretstat.fish"):
        assert (inst / "share" / c).is_file(), c
    d = subprocess.run([str(exe), "doctor"], capture_output=True,
                       text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert "Traceback" not in d.stderr
    if bpf_missing() is None:
        assert d.returncode == 0, d.stdout + d.stderr
        assert "sysretstat can run here." in d.stdout
        # `make top`'s view reaches its first frame (batch: one frame).
        t = subprocess.run([str(exe), "top", "-b", "-n", "1", "-i", "0.2"],
                           capture_output=True, text=True, env=env,
                           cwd=str(tmp_path), timeout=120)
        assert t.returncode == 0, t.stderr
        assert "returns" in t.stdout
        if shutil.which("tmux"):
            make_top_first_frame(src, inst, env)
    else:
        assert d.returncode == 1 and d.stdout, d.stderr
    # Installing again changes nothing and still works (idempotent).
    p = make_install()
    assert p.returncode == 0, p.stderr[-2000:]
    assert "creating virtual environment" not in p.stdout


def make_top_first_frame(src, inst, env):
    """`make top` in a terminal (tmux) reaches its first frame; q quits
    with status 0."""
    sock = "sysretstat-make-top-%d" % os.getpid()
    # The pane's own TERM (tmux sets it), the rest as `make install` had.
    cmd = ("env -i TERM=\"$TERM\" %s make -s -C %s top PYTHON=%s PREFIX=%s "
           "BINDIR=%s "
           "SHAREDIR=%s; echo EXITED $?; sleep 600"
           % (" ".join("%s=%s" % kv for kv in sorted(env.items())), src,
              SYSTEM_PYTHON, inst / "opt", inst / "bin", inst / "share"))

    def tmux(*args):
        return subprocess.run(["tmux", "-L", sock] + list(args),
                              capture_output=True, text=True,
                              check=True).stdout

    def wait_for(text, timeout=120):
        end = time.monotonic() + timeout
        while True:
            screen = tmux("capture-pane", "-p")
            if text in screen:
                return screen
            assert "EXITED" not in screen, screen     # it ended early
            assert time.monotonic() < end, screen
            time.sleep(0.2)

    tmux("new-session", "-d", "-x", "100", "-y", "30", cmd)
    try:
        screen = wait_for("REASON")
        assert "RET/s" in screen
        tmux("send-keys", "q")
        assert "EXITED 0" in wait_for("EXITED")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"],
                       capture_output=True)


def test_ensure_deps_refuses_pip_without_a_venv():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools",
                                                     "ensure_deps.py"),
                        "--py", "click"], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        "sysretstat deps: error: --py needs --venv DIR: pip never installs "
        "into the system Python"]


def test_ensure_deps_errors_are_one_line(tmp_path):
    # A venv that cannot be created (its parent is a file): one line.
    (tmp_path / "file").write_text("")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools",
                                                     "ensure_deps.py"),
                        "--venv", str(tmp_path / "file" / "venv"),
                        "--py", "click"], capture_output=True, text=True)
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "sysretstat deps: error: cannot create virtual environment "), \
        p.stderr


def test_ensure_deps_missing_apt_package_as_user_is_one_line(tmp_path):
    # Without root, a missing package is named with the command to run.
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("no setpriv to drop root")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "ensure_deps.py"),
           "--apt", "sysretstat-no-such-package"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "--"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        "sysretstat deps: error: missing packages "
        "sysretstat-no-such-package; install them as root (apt-get install "
        "sysretstat-no-such-package)"]


def test_ensure_deps_alternatives(tmp_path):
    # One installed alternative satisfies the group: nothing to install
    # (so this needs neither root nor apt).
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools",
                                                     "ensure_deps.py"),
                        "--apt", "sysretstat-no-such-package|dpkg"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""


def test_ensure_deps_installs_the_alternative_the_archive_has(monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "ensure_deps", os.path.join(ROOT, "tools", "ensure_deps.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "available", lambda p: p == "linux-image-generic")
    assert mod.choose("linux-image-amd64|linux-image-generic") == \
        "linux-image-generic"
    monkeypatch.setattr(mod, "available", lambda p: False)
    assert mod.choose("a|b") == "a"      # apt-get then names what is missing
    assert mod.choose("c") == "c"


# The wheel ------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    src = clean_tree(out / "src")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q",
                        "--no-deps", "--no-build-isolation", "-w",
                        str(out), src], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return next(out.glob("sysretstat-*.whl"))


@pytest.mark.slow
def test_wheel_is_tagged_for_its_platform(wheel):
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl"), wheel.name
    z = zipfile.ZipFile(wheel)
    meta = z.read("sysretstat-%s.dist-info/WHEEL" % wheel.name.split("-")[1]
                  ).decode()
    assert "Root-Is-Purelib: false" in meta
    names = z.namelist()
    assert "sysretstat/bin/sysretbench" in names
    # (setuptools >= 69 puts licence files under dist-info/licenses/.)
    assert any(re.search(r"\.dist-info/(licenses/)?LICENSE$", n)
               for n in names)
    assert any(n.endswith("BSD-3-Clause") for n in names)


@pytest.mark.slow
def test_wheel_installs_command_man_pages_and_completions(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    p = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-index", str(wheel)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    share = venv / "share"
    pages = sorted(os.path.basename(f) for f in
                   glob.glob(os.path.join(ROOT, "man", "*.8")))
    assert sorted(os.listdir(share / "man" / "man8")) == pages
    for c in ("bash-completion/completions/sysretstat",
              "zsh/site-functions/_sysretstat",
              "fish/vendor_completions.d/sysretstat.fish"):
        assert (share / c).is_file(), c
    # The command runs (its dependencies from this test environment).
    import click
    deps = os.path.dirname(os.path.dirname(click.__file__))
    env = dict(os.environ, PYTHONPATH=deps)
    r = subprocess.run([str(venv / "bin" / "sysretstat"), "--version"],
                       capture_output=True, text=True, env=env,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sysretstat, version ")
    # man finds the pages next to the bin/ on PATH.
    if shutil.which("man"):
        m = subprocess.run(["man", "-w", "sysretstat-top"],
                           capture_output=True, text=True,
                           env={"PATH": "%s:%s" % (venv / "bin",
                                                   SYSTEM_PATH)})
        assert m.stdout.strip() == str(share / "man" / "man8" /
                                       "sysretstat-top.8"), m.stderr


# The sdist ------------------------------------------------------------
@pytest.mark.slow
def test_sdist_is_complete_and_its_tests_run(tmp_path):
    src = clean_tree(tmp_path / "src")
    out = tmp_path / "dist"
    p = subprocess.run([sys.executable, "-c",
                        "import sys; from setuptools import build_meta as b;"
                        " print(b.build_sdist(sys.argv[1]))", str(out)],
                       capture_output=True, text=True, cwd=src)
    assert p.returncode == 0, p.stderr
    sdist = out / p.stdout.strip().splitlines()[-1]
    top = sdist.name[:-len(".tar.gz")]
    with tarfile.open(sdist) as t:
        names = {n[len(top) + 1:] for n in t.getnames()}
        t.extractall(tmp_path / "x")
    for need in ("LICENSE", "LICENSES/BSD-3-Clause", "Makefile",
                 "setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in",
                 "tests/conftest.py", "tests/workloads/Makefile",
                 "tests/workloads/retpaths.c", "tools/ensure_deps.py",
                 "tools/build_objects.py", "bpf/sysret.bpf.c",
                 "csrc/sysretbench.c", "man/sysretstat.8",
                 "contrib/sysretstat.service",
                 "contrib/completions/zsh/_sysretstat"):
        assert need in names, need
    assert not [n for n in names if n.endswith((".pyc", ".o"))]
    tests = {os.path.basename(f) for f in
             glob.glob(os.path.join(ROOT, "tests", "test_*.py"))}
    assert tests <= {os.path.basename(n) for n in names}
    # Its tests run from the unpacked tree.
    x = str(tmp_path / "x" / top)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                        "no:cacheprovider", "tests/test_snapshot.py",
                        "tests/test_cli_errors.py", "-m", "not bpf"],
                       capture_output=True, text=True, cwd=x,
                       env=dict(os.environ, PYTHONPATH=x))
    assert r.returncode == 0, r.stdout[-3000:]
    assert " passed" in r.stdout


# The systemd unit ------------------------------------------------------
UNIT = os.path.join(ROOT, "contrib", "sysretstat.service")


def unit_exec_start():
    with open(UNIT) as f:
        m = re.search(r"^ExecStart=(\S+)", f.read(), re.M)
    return m.group(1)


def test_unit_runs_what_make_install_creates():
    assert unit_exec_start() == makefile_var("BINDIR") + "/sysretstat"


def test_systemd_analyze_verify(tmp_path):
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("systemd-analyze missing (apt-get install systemd)")
    # The installed command, at a path this test can create.
    exe = tmp_path / "sysretstat"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    with open(UNIT) as f:
        text = f.read()
    unit = tmp_path / "sysretstat.service"
    unit.write_text(text.replace("ExecStart=%s " % unit_exec_start(),
                                 "ExecStart=%s " % exe))
    p = subprocess.run([sa, "verify", "--man=no", str(unit)],
                       capture_output=True, text=True,
                       env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "", p.stderr
    for want in ("Type=exec", "PrivateMounts=yes"):
        assert re.search("^%s$" % want, text, re.M), want


# Completions and licences -------------------------------------------------
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_a_script(run_cli, shell):
    p = run_cli("completion", shell)
    assert p.returncode == 0, p.stderr
    assert "_SYSRETSTAT_COMPLETE" in p.stdout


def test_completion_rejects_other_shells(run_cli):
    p = run_cli("completion", "tcsh")
    assert p.returncode == 2
    assert p.stderr.startswith("sysretstat: error: ")
    assert len(p.stderr.splitlines()) == 1


def test_bash_completion_completes_commands_and_options(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    shim = tmp_path / "sysretstat"
    shim.write_text("#!/bin/sh\nPYTHONPATH=%s exec %s -m sysretstat \"$@\"\n"
                    % (ROOT, sys.executable))
    shim.chmod(0o755)
    script = (". %s\n"
              "COMP_WORDS=(sysretstat rep); COMP_CWORD=1\n"
              "_sysretstat_completion sysretstat\n"
              "echo \"${COMPREPLY[*]}\"\n"
              "COMPREPLY=()\n"
              "COMP_WORDS=(sysretstat report --b); COMP_CWORD=2\n"
              "_sysretstat_completion sysretstat\n"
              "echo \"${COMPREPLY[*]}\"\n"
              % os.path.join(ROOT, "contrib", "completions", "bash",
                             "sysretstat"))
    p = subprocess.run([bash, "--norc", "-c", script], capture_output=True,
                       text=True, env=dict(os.environ, PATH="%s:%s" % (
                           tmp_path, os.environ["PATH"])))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["report", "--by"]


def test_one_licence_story():
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 2, June 1991" \
        in text
    with open(os.path.join(ROOT, "setup.cfg")) as f:
        assert re.search(r"^license = GPL-2.0-only$", f.read(), re.M)
    # Each BPF program's SPDX line and its kernel licence string agree,
    # and the kernel takes the string as GPL-compatible.
    for src in glob.glob(os.path.join(ROOT, "bpf", "*.bpf.c")):
        with open(src) as f:
            body = f.read()
        assert "SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause" in body
        assert 'SEC("license") = "Dual BSD/GPL"' in body
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "## Licence" in readme and "BSD-3-Clause" in readme
