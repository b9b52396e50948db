"""`sysretstat diff BEFORE AFTER`: what changed between two runs."""

import json
import sys

import click
from sysretstat import record
from sysretstat.model import diff
from sysretstat.errors import RecordFileError
from sysretstat.penalty import calibration
from sysretstat.render.units import fmt_ns, fmt_rate, fmt_time
from sysretstat.render.width import (fit_lines, fit_table,
                                     fit_table_elided, output_width)
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
@click.option("--by", type=click.Choice(diff.VIEWS), default=None,
              metavar="VIEW",
              help="Only this table of rows: comm (processes matched by "
                   "name), cgroup (by cgroup v2 path) or syscall (default: "
                   "comm, syscall, and cgroup where both runs have "
                   "cgroups).")
def command(before, after, as_json, fmt, top, by):
    """Compare two recordings (or `report --json` documents): per IRET
    reason, process name, cgroup and syscall, the change in counts, in
    IRET share
    and in per-path latency percentiles (with their sample counts; ~ marks
    a change within noise), largest change first.  Runs of different
    durations are also compared per second and per 1,000 returns; the
    time lost to IRET is shown where `sysretstat bench` measured the
    machines.  Text fits $COLUMNS or the terminal's width (latency columns
    go first)."""
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
    if kb.split(".")[0] != ka.split(".")[0]:
        raise RecordFileError("cannot compare %s (schema %s) with %s "
                              "(schema %s)" % (pb, kb, pa, ka))
    views = (by,) if by else None
    note = None
    if by == "cgroup":
        old = [p for p, s in ((pb, sb), (pa, sa)) if diff.lacks_cgroups(s)]
        if old:
            note = "no cgroups in %s (recorded before sysretstat kept " \
                "them): nothing to compare by cgroup" % " or ".join(
                    safe(p) for p in old)
            views = ()
    doc = diff.compare(sb, sa, top=top if fmt == "json" else None,
                       calibrations=[machine_calibration(s)
                                     for s in (sb, sa)], views=views)
    doc["before"] = diff.describe(pb, sb, kb)
    doc["after"] = diff.describe(pa, sa, ka)
    if fmt == "json":
        if note:
            # The document stays one; the note is for the person.
            sys.stderr.write("sysretstat: note: %s\n" % note)
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(doc, top or 15, fmt == "markdown",
                                width=output_width(), note=note))
    return 0


def machine_calibration(snap):
    """The calibration of the machine a run was recorded on, or None.
    Unlike report's, never this host's when the run does not name its
    machine: a diff usually compares runs made elsewhere."""
    cpu, kernel = snap.meta.get("cpu_model"), snap.meta.get("kernel")
    if not (isinstance(cpu, str) and cpu and isinstance(kernel, str)
            and kernel):
        return None
    return calibration.load(cpu, kernel)


def _n(v):
    return "%+d" % v if v else "0"


def _pct(v):
    return "%.2f%%" % (100 * v)


def _signed(v, f):
    if v is None:
        return "-"
    return ("+" if v > 0 else "-") + f(abs(v)) if v else "0"


def _pair(b, a, f):
    return "%s->%s" % (f(b) if b is not None else "-",
                       f(a) if a is not None else "-")


NOISE_MARK = "~"


def _lat(row, path, name, marked):
    b = row["before"].get("latency_ns", {}).get(path, {}).get(name)
    a = row["after"].get("latency_ns", {}).get(path, {}).get(name)
    if b is None and a is None:
        return "-"
    s = ("%s->%s" if a is not None and b is not None else "%s -> %s") % (
        fmt_ns(b), fmt_ns(a))
    if a is not None and b:
        s += " (%+.0f%%)" % (100.0 * (a - b) / b)
        d = row["delta"].get("latency_ns", {}).get(path, {})
        if d.get("noise", {}).get(name):
            s += NOISE_MARK
            marked.append(True)
    return s


def _samples(row, path):
    b = row["before"].get("latency_ns", {}).get(path, {}).get("count")
    a = row["after"].get("latency_ns", {}).get(path, {}).get("count")
    return "-" if b is None and a is None else _pair(b, a, str)


def _fast(doc):
    fb, fa = doc["before"]["fast_path"], doc["after"]["fast_path"]
    return fa if fa == fb else "fast"


def _row_cells(row, fast, rates, marked):
    b, a = row["before"], row["after"]
    cells = ["%d->%d" % (b["returns"], a["returns"]),
             _n(row["delta"]["returns"]),
             "%d->%d" % (b["iret"], a["iret"]), _n(row["delta"]["iret"]),
             "%s->%s" % (_pct(b["iret_share"]), _pct(a["iret_share"]))]
    if rates:
        ps = row.get("per_s") or {"before": {}, "after": {}}
        cells += [_pair(ps["before"].get(k), ps["after"].get(k), fmt_rate)
                  for k in ("returns", "iret")]
    return cells + [_samples(row, fast), _lat(row, fast, "p50", marked),
                    _lat(row, fast, "p99", marked), _samples(row, "iret"),
                    _lat(row, "iret", "p50", marked),
                    _lat(row, "iret", "p99", marked)]


# At a narrow width, _row_cells() columns go in this order, as top drops
# its columns: latency p50s, then p99s, then the sample counts they
# stand on, then the deltas (the before->after columns keep them
# readable).  When the runs' lengths differ, the raw counts go next: the
# per-second columns are the ones that compare.
def _drop(rates):
    if not rates:
        return (6, 9, 7, 10, 5, 8, 1, 3)
    return (8, 11, 9, 12, 7, 10, 1, 3, 0, 2)


def _normalisation_line(doc):
    n = doc.get("normalisation") or {}
    d = n.get("duration_s") or {}
    db, da = d.get("before"), d.get("after")
    if n.get("applied"):
        return ("counts: raw, per second and per 1,000 returns (the runs "
                "last %.1fs and %.1fs); largest change per second first"
                % (db, da))
    if db is None or da is None:
        return ("counts: raw (a run's duration is unknown); compare runs "
                "of the same workload or length")
    return "counts: raw (the runs last %.1fs and %.1fs)" % (db, da)


def _legend(doc):
    r = doc["noise_rule"]
    return ("%s: noise, not a measured change: within %.1f%% (a percentile "
            "is the middle of a histogram bucket 1/8 of a power of two "
            "wide), or under %d samples (n) on a side, or under %d beyond "
            "the percentile (a p99 needs %d)"
            % (NOISE_MARK, 100 * r["bucket_error"], r["min_samples"],
               r["min_tail_samples"],
               round(r["min_tail_samples"] / (1 - .99))))


def _totals_normalised(doc, fmt, width):
    """Totals per second, per 1,000 returns and in time lost to IRET."""
    t = doc["totals"]
    rows = []
    if doc["normalisation"]["applied"]:
        for key, label in (("returns", "returns per second"),
                           ("iret", "IRET per second")):
            ps = t.get("per_s")
            if ps:
                rows.append([label, fmt_rate(ps["before"][key]),
                             fmt_rate(ps["after"][key]),
                             _signed(ps["delta"][key], fmt_rate)])
        pk = t.get("per_1k_returns")
        if pk:
            rows.append(["IRET per 1,000 returns",
                         "%.1f" % pk["before"]["iret"],
                         "%.1f" % pk["after"]["iret"],
                         _signed(round(pk["delta"]["iret"], 1),
                                 lambda v: "%.1f" % v)])
    tl = doc.get("time_lost")
    if tl:
        def f(v):
            return "-" if v is None else fmt_time(v)
        rows.append(["time lost to IRET", f(tl["before"]), f(tl["after"]),
                     _signed(tl["delta"], fmt_time)])
        if doc["normalisation"]["applied"] and tl.get("per_s"):
            p = tl["per_s"]
            rows.append(["time lost per second", f(p["before"]),
                         f(p["after"]), _signed(p["delta"], fmt_time)])
    if not rows:
        return ""
    return "\n" + fit_table(rows, ["", "before", "after", "delta"], width,
                            tablefmt=fmt, disable_numparse=True,
                            colalign=("left", "right", "right",
                                      "right")) + "\n"


def _calibration_line(doc):
    tl = doc.get("time_lost")
    if not tl:
        return None
    cals = tl["calibration"]
    parts = []
    for which in ("before", "after"):
        c = cals[which]
        parts.append("%s %s" % (which, "no calibration (run `sysretstat "
                                "bench` there)" if c is None else
                                "%.0f ns per IRET return (%s, %s)" % (
                                    c["mean_penalty_ns"],
                                    safe(c["cpu_model"]),
                                    safe(c["kernel"]))))
    return "time lost: count x penalty; " + "; ".join(parts)


# The row tables of a diff document, in the order text shows them: the
# member, its title, its identity cells and their headers.
ROW_TABLES = (
    ("processes", "By process name", lambda r: [safe(r["comm"])], ["comm"]),
    ("cgroups", "By cgroup", lambda r: [safe(r["cgroup"]) or "?"],
     ["cgroup"]),
    ("syscalls", "By syscall", lambda r: [safe(r["abi"]), safe(r["name"])],
     ["abi", "syscall"]))


def render(doc, top, markdown=False, width=None, note=None):
    """The diff as text (or Markdown, which has no width); `note`, a line
    in place of the row tables (a run without cgroups, by cgroup)."""
    fmt = "github" if markdown else "simple"
    if markdown:
        width = None
    fast = _fast(doc)
    rates = bool(doc["normalisation"]["applied"])
    heads = (["returns", "delta", "IRET", "d IRET", "IRET%"]
             + (["returns/s", "IRET/s"] if rates else [])
             + ["%s n" % fast, "%s p50" % fast, "%s p99" % fast,
                "iret n", "iret p50", "iret p99"])
    marked = []
    out = []

    def cells_table(rows, idh):
        drop = [len(idh) + i for i in _drop(rates)]
        if idh == ["cgroup"]:
            # A long cgroup path gives up its start, not its leaf.
            return fit_table_elided(rows, idh + heads, width, 0, drop=drop,
                                    tablefmt=fmt, disable_numparse=True)
        return fit_table(rows, idh + heads, width, drop=drop, tablefmt=fmt,
                         disable_numparse=True)

    def section(title, body):
        out.append(("\n## %s\n\n" if markdown else "\n%s\n")
                   % fit_lines(title, width) + body)

    for which in ("before", "after"):
        d = doc[which]
        out.append(fit_lines("%-7s %s  kernel %s  %.1fs%s" % (
            which + ":", safe(d["file"]), safe(d["kernel"]),
            d["duration_s"] or 0,
            "  command: %s" % safe(d["command"]) if d["command"] else ""),
            width) + "\n")
    for line in (_normalisation_line(doc), _calibration_line(doc)):
        if line:
            out.append(fit_lines(line, width) + "\n")
    if markdown:
        out = ["# sysretstat diff\n\n```\n"] + out + ["```\n"]
    t = doc["totals"]
    section("Totals", cells_table([_row_cells(t, fast, rates, marked)], [])
            + "\n" + _totals_normalised(doc, fmt, width))

    rs = doc["reasons"]
    if rs:
        lost = "time_lost_delta_s" in rs[0]
        heads_r = (["reason", "before", "after", "delta"]
                   + (["per second", "d/s"] if rates else [])
                   + ["share of returns"]
                   + (["time lost", "d time"] if lost else []))
        rows = []
        for r in rs:
            row = [safe(r["reason"]), r["before"], r["after"], _n(r["delta"])]
            if rates:
                row += [_pair(r.get("per_s_before"), r.get("per_s_after"),
                              fmt_rate),
                        _signed(r.get("per_s_delta"), fmt_rate)]
            row.append("%s->%s" % (_pct(r["share_before"]),
                                   _pct(r["share_after"])))
            if lost:
                row += [_pair(r["time_lost_before_s"],
                              r["time_lost_after_s"], fmt_time),
                        _signed(r["time_lost_delta_s"], fmt_time)]
            rows.append(row)
        share = heads_r.index("share of returns")
        drop = ([3] + ([5] if rates else [])
                + ([share + 2, share + 1] if lost else []) + [share])
        body = fit_table(rows, heads_r, width, drop=drop, tablefmt=fmt,
                         disable_numparse=True,
                         colalign=("left",) + ("right",) * (
                             len(heads_r) - 1)) + "\n"
    else:
        body = "no IRET returns in either run\n"
    section("IRET reasons", body)

    if note:
        out.append("\n" + fit_lines(note, width) + "\n")
    compared = doc.get("tables", ("processes", "syscalls"))
    for table, title, ident, idh in ROW_TABLES:
        if table not in compared:
            continue
        rows = doc[table][:top]
        n = doc[table + "_total"]
        body = cells_table([ident(r) + _row_cells(r, fast, rates, marked)
                            for r in rows], idh) + "\n" if rows \
            else "  (none)\n"
        section("%s (top %d of %d, %s first)"
                % (title, min(top, n), n,
                   "largest change per second" if rates
                   else "largest change"), body)
    # Only where a marked latency column survived the width.
    if marked and "%)" + NOISE_MARK in "".join(out):
        out.append("\n" + fit_lines(_legend(doc), width) + "\n")
    return "".join(out)
