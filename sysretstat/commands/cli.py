"""Command-line entry point: `sysretstat COMMAND ...`.

Each command lives in its own module, sysretstat/commands/<name>.py, which
defines `command` (a click command).  Errors become one line on stderr,
"sysretstat: error: ...", with exit status 1 (runtime) or 2 (usage).
"""

import importlib
import logging
import os
import sys

import click

from sysretstat import __version__
from sysretstat.errors import OutputError, SysretstatError
from sysretstat.render.safe import safe

COMMANDS = ("doctor", "record", "report", "diff", "top", "daemon", "bench",
            "completion")


class Group(click.Group):
    def parse_args(self, ctx, args):
        # A bare `sysretstat` asks what it can do: the help, on stdout.
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx):
        return [c for c in COMMANDS if self.get_command(ctx, c)]

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        try:
            mod = importlib.import_module("sysretstat.commands." + name)
        except ModuleNotFoundError as e:
            if e.name == "sysretstat.commands." + name:
                return None
            raise
        return mod.command


@click.command(cls=Group, context_settings={"help_option_names":
                                            ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _, v: _print_version(ctx) if v else None,
              help="Show the version, libbpf's, the kernel's and the build, "
                   "and exit.")
@click.option("-v", "--verbose", count=True,
              help="Log libbpf and verifier messages to stderr (-vv: debug).")
def cli(verbose):
    """Which syscall returns take SYSRET, which fall back to IRET, why,
    and what each path costs.  See sysretstat(8)."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if os.environ.get("SYSRETSTAT_DEBUG"):
        level = logging.DEBUG
    logging.basicConfig(level=level, format="sysretstat: %(message)s")


def version_lines():
    """What a bug report needs besides the version: libbpf (loaded only
    here, never by importing cli), the kernel, and the build."""
    try:
        from sysretstat.kernel import libbpf
        lb = "%d.%d" % libbpf.version()
    except Exception as e:   # any failure to load is itself the answer
        lb = "unavailable (%s)" % e
    return ["sysretstat, version %s" % __version__,
            "libbpf %s" % lb,
            "kernel %s" % os.uname().release,
            "build %s" % build_info()]


def build_info():
    """`git describe` where run from a checkout, else "release"."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return "release"
    try:
        r = subprocess.run(["git", "-C", root, "describe", "--always",
                            "--tags", "--dirty"], capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "checkout %s (git not run)" % root
    out = r.stdout.strip()
    return "checkout %s" % out if r.returncode == 0 and out else \
        "checkout %s (git describe failed)" % root


def _print_version(ctx):
    if ctx.resilient_parsing:
        return
    click.echo("\n".join(safe(x) for x in version_lines()))
    ctx.exit(0)


def error(msg, code=1):
    # One line, and nothing from a name or a file reaches the terminal raw.
    sys.stderr.write("sysretstat: error: %s\n" % safe(msg))
    return code


class _Stdout:
    """sys.stdout, with a write error other than EPIPE turned into one
    OutputError (so that `report > /dev/full` is one line, not a
    traceback)."""

    def __init__(self, f):
        self._f = f

    def _do(self, fn, *args):
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError("writing standard output: %s"
                              % (e.strerror or e)) from None

    def write(self, s):
        return self._do(self._f.write, s)

    def flush(self):
        return self._do(self._f.flush)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _silence_stdout():
    """Whatever is still buffered for stdout goes nowhere, so the
    interpreter's last flush cannot fail again on the way out."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.__stdout__.fileno())
        os.close(fd)
    except (OSError, AttributeError, ValueError):
        pass


def main(argv=None):
    wrapped = not isinstance(sys.stdout, _Stdout)
    if wrapped:
        sys.stdout = _Stdout(sys.stdout)
    try:
        return _main(argv)
    finally:
        if wrapped:
            sys.stdout = sys.stdout._f


def _main(argv):
    try:
        rv = cli.main(args=argv, prog_name="sysretstat",
                      standalone_mode=False)
        sys.stdout.flush()
        return rv if isinstance(rv, int) else 0
    except click.exceptions.NoSuchOption as e:
        return error(e.format_message(), 2)
    except click.exceptions.UsageError as e:
        return error(e.format_message().replace("\n", " "), 2)
    except click.exceptions.Abort:
        return 130
    except click.exceptions.Exit as e:
        return e.exit_code
    except OutputError as e:
        _silence_stdout()
        return error(str(e), e.exit_code)
    except SysretstatError as e:
        return error(str(e), e.exit_code)
    except BrokenPipeError:
        # Output closed early (e.g. piped into head): not an error.
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        # A bug, or an input no check foresaw: still one line.  The
        # traceback is for SYSRETSTAT_DEBUG=1.
        if os.environ.get("SYSRETSTAT_DEBUG"):
            raise
        return error("internal error: %s: %s (SYSRETSTAT_DEBUG=1 shows "
                     "where)" % (type(e).__name__, e), 1)


if __name__ == "__main__":
    sys.exit(main())
