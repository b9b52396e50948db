"""`sysretstat diff BEFORE AFTER`: what changed between two runs."""

import json
import sys

import click
from sysretstat import record
from sysretstat.model import diff
from sysretstat.errors import RecordFileError
from sysretstat.render.units import fmt_ns
from sysretstat.render.width import fit_lines, fit_table, output_width
from sysretstat.render.safe import safe


@click.command("diff")
@click.argument("before", metavar="BEFORE")
@click.argument("after", metavar="AFTER")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document (schema sysretstat-diff/1).")
@click.option("--format", "fmt", type=click.Choice(["text", "json",
                                                    "markdown"]),
              default=None, help="Output format (default: text).")
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="N",
              help="Rows per table (default 15 in text, all in json).")
def command(before, after, as_json, fmt, top):
    """Compare two recordings (or `report --json` documents): per IRET
    reason, process name and syscall, the change in counts, in IRET share
    and in per-path latency percentiles, largest change first.  Text fits
    $COLUMNS or the terminal's width (latency columns go first)."""
    if as_json:
        if fmt not in (None, "json"):
            raise click.UsageError("--json conflicts with --format %s" % fmt)
        fmt = "json"
    fmt = fmt or "text"
    sides = []
    for path in (before, after):
        rec, snap, schema = record.read_run(path)
        if rec is not None and rec.warning:
            sys.stderr.write("sysretstat: warning: %s: %s\n"
                             % (safe(path), safe(rec.warning)))
        sides.append((path, snap, schema))
    (pb, sb, kb), (pa, sa, ka) = sides
    if kb != ka:
        raise RecordFileError("cannot compare %s (schema %s) with %s "
                              "(schema %s)" % (pb, kb, pa, ka))
    doc = diff.compare(sb, sa, top=top if fmt == "json" else None)
    doc["before"] = diff.describe(pb, sb, kb)
    doc["after"] = diff.describe(pa, sa, ka)
    if fmt == "json":
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(doc, top or 15, fmt == "markdown",
                                width=output_width()))
    return 0


def _n(v):
    return "%+d" % v if v else "0"


def _pct(v):
    return "%.2f%%" % (100 * v)


def _lat(row, path, name):
    b = row["before"].get("latency_ns", {}).get(path, {}).get(name)
    a = row["after"].get("latency_ns", {}).get(path, {}).get(name)
    if b is None and a is None:
        return "-"
    s = ("%s->%s" if a is not None and b is not None else "%s -> %s") % (
        fmt_ns(b), fmt_ns(a))
    if a is not None and b:
        s += " (%+.0f%%)" % (100.0 * (a - b) / b)
    return s


def _fast(doc):
    fb, fa = doc["before"]["fast_path"], doc["after"]["fast_path"]
    return fa if fa == fb else "fast"


def _row_cells(row, fast):
    b, a = row["before"], row["after"]
    return ["%d->%d" % (b["returns"], a["returns"]),
            _n(row["delta"]["returns"]),
            "%d->%d" % (b["iret"], a["iret"]), _n(row["delta"]["iret"]),
            "%s->%s" % (_pct(b["iret_share"]), _pct(a["iret_share"])),
            _lat(row, fast, "p50"), _lat(row, fast, "p99"),
            _lat(row, "iret", "p50"), _lat(row, "iret", "p99")]


# At a narrow width, _row_cells() columns go in this order, as top drops
# its columns: latency p50s, then p99s, then the deltas (the before->after
# columns keep them readable).
DROP = (5, 7, 6, 8, 1, 3)


def render(doc, top, markdown=False, width=None):
    """The diff as text (or Markdown, which has no width)."""
    fmt = "github" if markdown else "simple"
    if markdown:
        width = None
    fast = _fast(doc)
    heads = ["returns", "delta", "IRET", "d IRET", "IRET%",
             "%s p50" % fast, "%s p99" % fast, "iret p50", "iret p99"]
    out = []

    def cells_table(rows, idh):
        return fit_table(rows, idh + heads, width,
                         drop=[len(idh) + i for i in DROP], tablefmt=fmt,
                         disable_numparse=True)

    def section(title, body):
        out.append(("\n## %s\n\n" if markdown else "\n%s\n") % title + body)

    for which in ("before", "after"):
        d = doc[which]
        out.append(fit_lines("%-7s %s  kernel %s  %.1fs%s" % (
            which + ":", safe(d["file"]), safe(d["kernel"]),
            d["duration_s"] or 0,
            "  command: %s" % safe(d["command"]) if d["command"] else ""),
            width) + "\n")
    if markdown:
        out = ["# sysretstat diff\n\n```\n"] + out + ["```\n"]
    t = doc["totals"]
    section("Totals", cells_table([_row_cells(t, fast)], []) + "\n")

    rs = doc["reasons"]
    if rs:
        rows = [[safe(r["reason"]), r["before"], r["after"], _n(r["delta"]),
                 "%s->%s" % (_pct(r["share_before"]), _pct(r["share_after"]))]
                for r in rs]
        body = fit_table(rows, ["reason", "before", "after", "delta",
                                "share of returns"], width, drop=(3,),
                         tablefmt=fmt, disable_numparse=True,
                         colalign=("left", "right", "right", "right",
                                   "right")) + "\n"
    else:
        body = "no IRET returns in either run\n"
    section("IRET reasons", body)

    for table, title, ident in (
            ("processes", "By process name", lambda r: [safe(r["comm"])]),
            ("syscalls", "By syscall",
             lambda r: [safe(r["abi"]), safe(r["name"])])):
        rows = doc[table][:top]
        n = doc[table + "_total"]
        idh = ["comm"] if table == "processes" else ["abi", "syscall"]
        body = cells_table([ident(r) + _row_cells(r, fast) for r in rows],
                           idh) + "\n" if rows else "  (none)\n"
        section("%s (top %d of %d, largest change first)"
                % (title, min(top, n), n), body)
    return "".join(out)
