"""Help and man pages: a bare `sysretstat` is help on stdout; the man
pages share one header (date, version) and format without warnings."""

import glob
import importlib
import os
import re
import shutil
import subprocess

import pytest

from sysretstat import __version__
from sysretstat.commands.cli import COMMANDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob(os.path.join(ROOT, "man", "*.8")))


def test_bare_command_prints_help_and_exits_0(run_cli):
    p = run_cli()
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.startswith("Usage: sysretstat [OPTIONS] COMMAND")
    for c in COMMANDS:
        assert re.search(r"^  %s\s" % c, p.stdout, re.M), c


def test_help_is_the_same(run_cli):
    assert run_cli().stdout == run_cli("--help").stdout


def read(page):
    with open(page) as f:
        return f.read()


def test_man_headers_agree():
    heads = []
    for page in PAGES:
        m = re.search(r'^\.TH (\S+) 8 "([^"]*)" "([^"]*)" "([^"]*)"$',
                      read(page), re.M)
        assert m, page
        name = os.path.basename(page)[:-2]
        assert m.group(1) == name.upper()
        heads.append(m.groups()[1:])
    assert len(set(heads)) == 1, heads
    date, source, manual = heads[0]
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", date)
    assert source == "sysretstat %s" % __version__
    assert manual == "System Administration"


@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_tables_declare_tbl(page):
    text = read(page)
    if "\n.TS" in text:
        assert text.startswith("'\\\" t\n"), page


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff missing")
@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_man_pages_format_without_warnings(page):
    p = subprocess.run(["groff", "-t", "-ww", "-z", "-man", page],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    if shutil.which("man"):
        # man(1) runs the preprocessors the page's first line asks for.
        p = subprocess.run(["man", "--warnings", "-l", page],
                           capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="80",
                                    LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING=""))
        assert p.returncode == 0 and p.stderr == "", p.stderr


@pytest.mark.parametrize("name", ["report", "top", "diff"])
def test_man_pages_name_every_view(name):
    """The entry of `--by` in a command's man page names each of its
    choices: a view added to the CLI and not to the page fails here."""
    cmd = importlib.import_module("sysretstat.commands." + name).command
    by = next(p for p in cmd.params if p.name == "by")
    text = re.sub(r"\\f[BIRP]|\\", "", read(os.path.join(
        ROOT, "man", "sysretstat-%s.8" % name)))
    entry = re.search(r"^\.B[IR]? --by .*?(?=^\.(?:TP|SH))", text,
                      re.M | re.S)
    assert entry, name
    for choice in by.type.choices:
        if choice in ("processes", "threads", "syscalls", "cpus"):
            continue        # report's plural spellings, kept quiet
        assert re.search(r"\b%s\b" % choice, entry.group(0)), (name, choice)
