"""`sysretstat completion SHELL`: the shell completion script.

The script asks sysretstat itself for candidates (click's completion
protocol, environment variable _SYSRETSTAT_COMPLETE), so it never goes
stale when options change.  The files under contrib/completions/, which
the wheel and `make install` put where each shell looks, only run this.
"""

import sys

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def command(shell):
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(sysretstat completion bash)"      (in ~/.bashrc)
    zsh:   eval "$(sysretstat completion zsh)"       (in ~/.zshrc)
    fish:  sysretstat completion fish | source
    """
    from sysretstat.commands.cli import cli
    comp = get_completion_class(shell)(cli, {}, "sysretstat",
                                       "_SYSRETSTAT_COMPLETE")
    sys.stdout.write(comp.source())
    return 0
