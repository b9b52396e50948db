"""`sysretstat report`: read a record file and render it."""

import os
import sys

import click

from sysretstat import record
from sysretstat.render import json as render_json
from sysretstat.errors import UsageError
from sysretstat.render.csv import render_csv
from sysretstat.render.text import (NO_CGROUPS, VIEWS, lacks_cgroups,
                                    render_report)
from sysretstat.render.width import output_width
from sysretstat.model.fields import TABLES
from sysretstat.model.snapshot import LATENCY_SORTS, SORT_KEYS
from sysretstat.penalty import calibration
from sysretstat.render.safe import safe

FORMATS = ("text", "json", "csv", "markdown")


def load(path):
    """(Recording, cumulative Snapshot), warning about a cut file."""
    if path == "sysretstat.data" and not os.path.exists(path):
        raise record.RecordFileError(
            "sysretstat.data: no such file (record one with `sysretstat "
            "record`, or name the file)")
    rec = record.read(path)
    if rec.warning:
        sys.stderr.write("sysretstat: warning: %s: %s\n"
                         % (safe(path), safe(rec.warning)))
    return rec, rec.cumulative()


@click.command("report")
@click.argument("file", default="sysretstat.data", metavar="[FILE]")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: text).")
@click.option("--json", "as_json", is_flag=True,
              help="Same as --format json: one JSON document in the report "
                   "schema.")
@click.option("--by", type=click.Choice(VIEWS + ("processes", "threads",
                                                 "syscalls", "cpus")),
              default=None, metavar="VIEW",
              help="Only this view: process, comm (processes summed by "
                   "command name), cgroup (by cgroup v2 path), thread, "
                   "syscall, cpu, reason, latency or interval (default: "
                   "all; csv: process).")
@click.option("--top", type=click.IntRange(min=1), default=None,
              metavar="N", help="Rows per table (default 20 in text and "
                                "markdown, all in json and csv).")
@click.option("--sort", type=click.Choice(SORT_KEYS), default=None,
              help="Order of table rows: figures biggest first; name, id "
                   "and reason A to Z.  [default: returns]")
@click.option("--plot", metavar="FILE.png|FILE.svg", default=None,
              help="Also draw latency distributions, IRET reasons and the "
                   "IRET rate over time into an image (needs matplotlib). "
                   "Without --format, nothing else is printed.")
def command(file, fmt, as_json, by, top, sort, plot):
    """Report a recording made by `sysretstat record` (default FILE:
    sysretstat.data).  Text fits $COLUMNS or the terminal's width: long
    explanations wrap or go first, then latency columns."""
    if as_json:
        if fmt not in (None, "json"):
            raise UsageError("--json conflicts with --format %s" % fmt)
        fmt = "json"
    if by in ("processes", "threads", "syscalls", "cpus"):
        by = by[:-1] if by != "processes" else "process"
    check_sort(by, sort, fmt)
    sort = sort or "returns"
    if plot is not None:
        from sysretstat.render import plot as plotmod
        plotmod.check_target(plot)
        plotmod.require()
    rec, snap = load(file)
    if plot is not None:
        plotmod.plot(snap, rec.series, plot)
        sys.stderr.write("sysretstat: wrote %s\n" % plot)
        if fmt is None:
            return 0
    fmt = fmt or "text"
    if by == "cgroup" and fmt in ("json", "csv") and lacks_cgroups(snap):
        # Text says so in place of the table; a document stays one.
        sys.stderr.write("sysretstat: note: %s: %s\n"
                         % (safe(file), NO_CGROUPS))
    cal = machine_calibration(snap)
    if fmt == "json":
        doc = snap.to_report(top, render_json.tables_for(by), sort,
                             rec.series)
        if cal is not None:
            # Extensions: the penalty used, and time lost per row.
            doc["meta"] = dict(doc["meta"], iret_penalty=cal.to_json())
            for row in [doc["totals"]] + [r for t in TABLES
                                          for r in doc[t]]:
                row["iret_time_lost_s"] = cal.time_lost_s(row["reasons"])
        render_json.dump(doc)
    elif fmt == "csv":
        sys.stdout.write(render_csv(snap, by or "process", top, sort,
                                    rec.series))
    else:
        sys.stdout.write(render_report(snap, by=by, top=top or 20,
                                       series=rec.series, sort=sort,
                                       markdown=fmt == "markdown", cal=cal,
                                       width=output_width()))
    return 0


def check_sort(by, sort, fmt):
    """A sort the view cannot have is a usage error, not a silent
    ignore."""
    if sort is None:
        return
    view = by or ("process" if fmt == "csv" else None)
    if view == "thread" and sort in LATENCY_SORTS:
        raise UsageError("--sort %s: threads have no latency histograms "
                         "(the kernel keeps latency per process, syscall "
                         "and CPU)" % sort)
    if view in ("reason", "latency", "interval"):
        raise UsageError("--sort %s: the %s view has no table rows to sort"
                         % (sort, view))


def machine_calibration(snap):
    """The IRET penalty measured by `sysretstat bench` on the machine the
    recording comes from (same CPU model and kernel), or None."""
    return calibration.load(snap.meta.get("cpu_model"),
                            snap.meta.get("kernel"))
