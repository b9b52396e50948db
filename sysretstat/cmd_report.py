"""`sysretstat report`: read a record file and render it."""

import json
import sys

import click

from . import recordfile
from .render_text import render_report


@click.command("report")
@click.argument("file", default="sysretstat.data", metavar="[FILE]")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document in the report schema.")
@click.option("--by", type=click.Choice(["process", "thread", "syscall",
                                         "cpu"]),
              default=None, help="Only this table (default: all).")
@click.option("--top", type=click.IntRange(min=1), default=None,
              metavar="N", help="Rows per table.")
def command(file, as_json, by, top):
    """Report a recording made by `sysretstat record` (default FILE:
    sysretstat.data)."""
    rec = recordfile.read(file)
    if rec.warning:
        sys.stderr.write("sysretstat: warning: %s: %s\n" % (file, rec.warning))
    snap = rec.cumulative()
    if as_json:
        doc = snap.to_report(top=top)
        if by:
            keep = {"process": "processes", "thread": "threads",
                    "syscall": "syscalls", "cpu": "cpus"}[by]
            for t in ("processes", "threads", "syscalls", "cpus"):
                if t != keep:
                    doc[t] = []
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_report(snap, by=by, top=top or 20))
    return 0
