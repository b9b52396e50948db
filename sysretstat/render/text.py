"""Text and Markdown rendering of a snapshot (and a recording's series).

Views: summary, reasons (with what typically causes each, and what
their returns were: which signal, restart code, tracer, kind of fork),
latency histograms, the time series, and the tables (the four stored,
and processes summed by command name and by cgroup).  Markdown is the
same content with "##" headings, GitHub tables and fenced bars.
`fmt_ns` and `render_table` are used by other commands too.
"""

import textwrap

from sysretstat.model.fields import (IDENTITY, REPORT_VIEWS, TABLE_TITLES,
                                     ident_headers)
from sysretstat.model.reasons import EXPLAIN
from sysretstat.render.hist import bar, render_hist
from sysretstat.render.safe import safe
from sysretstat.render.units import fmt_ns, fmt_time
from sysretstat.render.width import (MIN_WRAP, fit_lines, fit_table,
                                     fit_table_elided, text_width)

BY = REPORT_VIEWS
# Every view of `report --by`, in the order of a full report.
VIEWS = ("reason", "latency", "interval", "process", "comm", "cgroup",
         "syscall", "thread", "cpu")
SERIES_ROWS = 40
# A reason's details shown in text before the rest are summed: a
# tracer's comm or a realtime signal can make many.
DETAIL_SHOWN = 8
# Identity columns (table: index) of paths that lose their start at a
# narrow width (render/width.py fit_table_elided).
ELIDED = {"cgroups": 0}
# What --by cgroup says of a recording whose processes have no cgroup.
NO_CGROUPS = ("no cgroups in this recording (recorded before sysretstat "
              "kept them)")

__all__ = ["fmt_ns", "render_table", "render_report", "summary",
           "reasons_table", "table_rows", "table_headers"]


def summary(snap, cal=None):
    t = snap.totals
    m = snap.meta
    g = m.get("guard", {})
    mode = "FRED (every return is ERETU)" if g.get("fred") else (
        "Xen PV (every return is IRET)" if g.get("xen_pv") else
        "%s-level paging, TASK_SIZE_MAX %#x"
        % ("5" if g.get("la57") else "4", g.get("task_size_max", 0)))
    f = m.get("filters") or {}
    scope = []
    if m.get("command"):
        scope.append("command: %s" % safe(m["command"]))
    if f.get("pids") and not f.get("command_tree"):
        scope.append("pids %s" % ",".join(str(p) for p in f["pids"]))
    if f.get("comm"):
        scope.append("comm %s" % safe(f["comm"]))
    if f.get("cgroup"):
        scope.append("cgroup %s" % safe(f["cgroup"]))
    rec = m.get("recording") or {}
    when = m.get("started_at") or "?"
    lines = [
        "host %s  kernel %s  %s" % (safe(m.get("hostname", "?")),
                                    safe(m.get("kernel", "?")),
                                    safe(m.get("cpu_model", "?"))),
        "guard: %s" % mode,
        "started %s  duration %.1fs%s%s" % (
            safe(when), m.get("duration_s") or 0,
            "  %d interval%s of %gs" % (rec["intervals"], "s" * (
                rec["intervals"] != 1), m["interval_s"])
            if rec.get("intervals") and m.get("interval_s") else "",
            "  (cut short)" if rec and not rec.get("complete", True) else ""),
        "scope: %s" % ("; ".join(scope) if scope else "system-wide"),
        "returns %d  sysret %d  iret %d (%.2f%%)%s" % (
            t.returns, t.sysret, t.iret, 100 * t.iret_share,
            "  eretu %d" % t.eretu if t.eretu else ""),
    ]
    if t.iret:
        lines.append(time_lost_line(t, cal))
    return "\n".join(lines) + "\n"


def time_lost_line(counts, cal):
    """Estimated time lost to IRET: count x the penalty `sysretstat
    bench` measured on this CPU and kernel."""
    if cal is None:
        return "time lost to IRET: run 'sysretstat bench' on this machine " \
               "to estimate it"
    return "time lost to IRET: ~%s at %s" % (
        fmt_time(cal.time_lost_s(counts.reasons())), cal.describe())


def reasons_data(counts):
    iret = counts.iret
    return [[name, n, 100.0 * n / iret if iret else 0.0,
             EXPLAIN.get(name, "")] for name, n in counts.reasons().items()]


def reasons_table(counts, tablefmt="simple", cal=None, width=None):
    """The reasons; at `width`, "typical cause" is wrapped or dropped
    first, then the estimated time lost."""
    rows = reasons_data(counts)
    if not rows:
        return "no IRET returns\n"
    detail = reason_detail_lines(counts, tablefmt == "github", width)
    if cal is None:
        rows = [[name, n, "%.1f%%" % share, why]
                for name, n, share, why in rows]
        return fit_table(rows, ["reason", "returns", "share",
                                "typical cause"], width, wrap=3,
                         tablefmt=tablefmt, disable_numparse=True,
                         colalign=("left", "right", "right", "left")) + \
            "\n" + detail
    rows = [[name, n, "%.1f%%" % share,
             fmt_time(n * (cal.penalty_ns(name) or 0) / 1e9), why]
            for name, n, share, why in rows]
    return fit_table(rows, ["reason", "returns", "share", "est. lost",
                            "typical cause"], width, wrap=4, drop=(3,),
                     tablefmt=tablefmt, disable_numparse=True,
                     colalign=("left", "right", "right", "right",
                               "left")) + "\n" + detail


def reason_detail_lines(counts, markdown=False, width=None):
    """What each reason's returns were, one line a reason ("signal:
    SIGURG 1200, SIGALRM 34"), under a "reason detail:" title; "" when
    no reason has any.  Names are the kernel's or a tracer's comm: made
    safe to print.  At most DETAIL_SHOWN a reason, the rest summed."""
    if not counts.detail:
        return ""
    lines = []
    detail = counts.reason_detail()
    # In the table's order, the most frequent reason first.
    for reason in [r for r in counts.reasons() if r in detail] + sorted(
            r for r in detail if r not in counts.reasons()):
        items = list(detail[reason].items())
        parts = ["%s %d" % (safe(d), n) for d, n in items[:DETAIL_SHOWN]]
        rest = items[DETAIL_SHOWN:]
        if rest:
            parts.append("%d others %d" % (len(rest),
                                           sum(n for _, n in rest)))
        line = "%s: %s" % (reason, ", ".join(parts))
        if markdown:
            lines.append("- " + line)
        elif width is None:
            lines.append("  " + line)
        else:
            lines += textwrap.wrap(line, max(MIN_WRAP, width),
                                   initial_indent="  ",
                                   subsequent_indent="      ",
                                   break_on_hyphens=False) or [line]
    return "\nreason detail:\n%s%s\n" % ("\n" if markdown else "",
                                          "\n".join(lines))


def ident_cells(table, fields):
    """A row's identity columns (model/fields.py's IDENTITY): numbers as
    they are, names made safe to print, a missing name empty (a cgroup
    the collector could not read: "?")."""
    return [(safe(fields.get(i.name, "")) or ("?" if i.name == "cgroup"
                                              else ""))
            if i.type is str else fields[i.name]
            for i in IDENTITY[table]]


def lacks_cgroups(snap):
    """Whether the recording's processes have no cgroup at all (made
    before sysretstat kept them): its cgroup view is empty for that
    reason, not for want of processes."""
    return bool(snap.processes) and not any(
        "cgroup" in r.fields for r in snap.processes.values())


def table_rows(snap, table, top, sort="returns", with_latency=None):
    """The rows of a table as text cells; with_latency: whether the
    latency columns are there (a row without latency shows "-")."""
    rows = []
    for r in snap.sorted_rows(table, sort)[:top]:
        c = r.counts
        lat = c.lat
        row = ident_cells(table, r.fields) + [
            c.returns, c.sysret + c.eretu, c.iret,
            "%.1f%%" % (100 * c.iret_share), c.top_reason() or "-"]
        if lat is not None:
            row += [fmt_ns(lat[0].percentile(.5)),
                    fmt_ns(lat[0].percentile(.99)),
                    fmt_ns(lat[1].percentile(.5)),
                    fmt_ns(lat[1].percentile(.99))]
        elif with_latency:
            row += ["-"] * 4
        rows.append(row)
    return rows


def table_headers(table, with_latency, fast="sysret"):
    h = ident_headers(table) + [
        "returns", fast, "iret", "iret%", "top reason"]
    if with_latency:
        h += ["%s p50" % fast, "%s p99" % fast, "iret p50", "iret p99"]
    return h


def drop_order(table, with_latency):
    """Columns of table_headers() to drop at a narrow width, first to
    last, as top drops them: latency p50s, p99s, the thread's pid, the
    fast-path count, the top reason."""
    n = len(IDENTITY[table])
    order = [n + 5, n + 7, n + 6, n + 8] if with_latency else []
    if table == "threads":
        order.append(0)
    return order + [n + 1, n + 4]


def render_table(snap, table, top, sort="returns", tablefmt="simple",
                 title=True, width=None):
    with_lat = any(r.counts.lat is not None
                   for r in snap.table(table).values())
    rows = table_rows(snap, table, top, sort, with_lat)
    n = len(snap.table(table))
    out = ("%s (top %d of %d)\n" % (TABLE_TITLES[table], min(top, n), n)
           if title else "")
    if not rows:
        return out + "  (none)\n"
    headers = table_headers(table, with_lat, snap.fast_path)
    drop = drop_order(table, with_lat)
    if table in ELIDED:
        # A long cgroup path gives up its start, not its leaf.
        return out + fit_table_elided(rows, headers, width, ELIDED[table],
                                      drop=drop, tablefmt=tablefmt) + "\n"
    return out + fit_table(rows, headers, width, drop=drop,
                           tablefmt=tablefmt) + "\n"


# What the latency figures measure: the syscall's own duration, not the
# return instruction (whose price is the bench's penalty and COST/s).
DURATION_TITLE = ("Syscall duration (sys_enter to sys_exit), by the path "
                  "its return took")
SAME_SYSCALL_ROWS = 10


def untimed_line(counts, meta=None):
    """How many returns have no duration, and why ("" when all do)."""
    why = counts.untimed_why((meta or {}).get("untimed_sampled"))
    untimed = sum(why.values())
    if untimed <= 0:
        return ""
    parts = []
    if why.get("sampled"):
        parts.append("%d not sampled (1 in %s calls of hot syscalls "
                     "timed)" % (why["sampled"],
                                 (meta or {}).get("latency_sample", "N")))
    if why["fork_child"]:
        parts.append("%d fork children's first returns (no sys_enter)"
                     % why["fork_child"])
    if why["no_sys_enter"]:
        parts.append("%d whose sys_enter was not seen (entered before "
                     "tracing began, or the entry was skipped: seccomp, "
                     "PTRACE_SYSEMU)" % why["no_sys_enter"])
    return "untimed: %d of %d returns: %s\n" % (untimed, counts.returns,
                                                "; ".join(parts))


def sampling_line(meta):
    """Which syscalls' durations are a sample ("" when every call was
    timed): their histograms hold 1 in N calls, not their returns."""
    sampled = meta.get("latency_sampled") or []
    if not sampled or (meta.get("latency_sample") or 1) <= 1:
        return ""
    names = [safe(s) for s in sampled[:8]]
    if len(sampled) > 8:
        names.append("%d others" % (len(sampled) - 8))
    return ("sampled: durations of 1 in %d calls of %s (hot, almost never "
            "IRET; every call of the rest timed)\n"
            % (meta["latency_sample"], ", ".join(names)))


def same_syscall_table(snap, tablefmt="simple", width=None,
                       top=SAME_SYSCALL_ROWS):
    """The headline comparison: one syscall's duration by each path, for
    the syscalls whose returns took both (most IRET samples first).  A
    comparison across syscalls would mostly show which syscalls take
    IRET (execve, interrupted waits), not what the path costs."""
    fast = snap.fast_path
    both = [r for r in snap.syscalls.values() if r.counts.lat is not None
            and r.counts.lat[0].count and r.counts.lat[1].count]
    if not both:
        return "no syscall's returns took both paths\n"
    both.sort(key=lambda r: (-r.counts.lat[1].count, r.fields["abi"],
                             r.fields["nr"]))
    body = []
    for r in both[:top]:
        f, i = r.counts.lat
        pf, pi = f.percentile(.5), i.percentile(.5)
        body.append([safe(r.fields.get("name") or r.fields["nr"]),
                     safe(r.fields["abi"]), f.count, fmt_ns(pf), i.count,
                     fmt_ns(pi), "x%.1f" % (pi / pf) if pf else "-"])
    heads = ["syscall", "abi", "%s n" % fast, "%s p50" % fast, "iret n",
             "iret p50", "iret/%s" % fast]
    # Narrow: the sample counts go first, then the ratio, then the ABI.
    return fit_table(body, heads, width, drop=(2, 4, 6, 1),
                     tablefmt=tablefmt, disable_numparse=True,
                     colalign=("left", "left") + ("right",) * 5) + "\n"


def latency_text(snap, width=None, tablefmt="simple"):
    lat = snap.totals.lat
    if lat is None:
        return "no latency (recorded with --no-latency)\n"
    return (hists_text(snap, width) + "\n" +
            fit_lines(sampling_line(snap.meta), width) +
            fit_lines(untimed_line(snap.totals, snap.meta), width) +
            "\n" + fit_lines("Same syscall by each path, where both occur "
                            "(p50 of its duration):", width) + "\n" +
            same_syscall_table(snap, tablefmt, width))


def hists_text(snap, width=None):
    lat = snap.totals.lat
    hists = ((snap.fast_path, lat[0]), ("iret", lat[1]))
    text = "\n".join(render_hist(name, h) for name, h in hists)
    if width is not None and text_width(text) > width:
        # The bars (40 wide) shrink first, to 10; then the stats wrap.
        rows = "\n".join(render_hist(name, h).split("\n", 1)[-1]
                         for name, h in hists)
        bars = min(40, max(10, 40 - (text_width(rows) - width)))
        text = "\n".join(fit_lines(render_hist(name, h, width=bars), width)
                         for name, h in hists)
    return text


def series_rows(series, max_rows=SERIES_ROWS):
    """[start, dur, returns/s, iret/s, iret%, top reason] per row."""
    out = []
    for start, dur, c in series.rows(max_rows):
        rate = (lambda v: v / dur if dur > 0 else 0.0)
        out.append([start, dur, rate(c.returns), rate(c.iret),
                    100.0 * c.iret_share, c.top_reason() or "-"])
    return out


def series_text(series, tablefmt="simple", max_rows=SERIES_ROWS,
                width=None):
    """One row per interval, narrowed to `width` (below)."""
    if series is None or not len(series):
        return "no intervals\n"
    rows = series_rows(series, max_rows)
    peak = max(r[3] for r in rows)
    per = -(-len(series) // max_rows) if len(series) > max_rows else 1
    step = series.step * per
    note = ("" if step == 1 else
            "(each row sums %d intervals)\n" % step)
    heads = ["t (s)", "dur (s)", "returns/s", "IRET/s", "IRET%",
             "top reason", "IRET rate"]

    def table(bar_width, drop=()):
        body = [["%.1f" % r[0], "%.2f" % r[1], "%.0f" % r[2], "%.0f" % r[3],
                 "%.2f%%" % r[4], r[5], bar(r[3], peak, bar_width)]
                for r in rows]
        return fit_table(body, heads, width, drop=drop,
                         tablefmt=tablefmt, disable_numparse=True,
                         colalign=("right",) * 6 + ("left",))
    out = table(30)
    if width is not None and text_width(out) > width:
        # Too wide: the duration goes, then the bars shrink to fit (down
        # to 10), then they go, then the top reason.
        short = table(30, drop=(1,))
        bars = 30 - (text_width(short) - width)
        out = table(bars, drop=(1,)) if bars >= 10 else \
            table(30, drop=(1, 6, 5))
    return note + out + "\n"


def _lost_line(snap):
    lost = {k: v for k, v in snap.meta.get("lost", {}).items() if v}
    if not lost:
        return ""
    return "lost: " + ", ".join("%s %s" % (safe(k), safe(v))
                                for k, v in sorted(lost.items())) \
        + "\n"


def render_report(snap, by=None, top=20, series=None, sort="returns",
                  markdown=False, cal=None, width=None):
    """The whole report (by=None) or one view: a table name or word of
    VIEWS.  `series` is a record.Series (or None: no time view).
    `width`: the columns text fits (None: no limit; Markdown has none)."""
    fmt = "github" if markdown else "simple"
    if markdown:
        width = None

    def section(title, body, fence=False):
        if markdown:
            if fence:
                body = "```\n" + body + "```\n"
            return "\n## %s\n\n%s" % (title, body)
        return "\n%s\n%s" % (fit_lines(title, width), body)

    no_cgroups = lacks_cgroups(snap)
    # A full report leaves out what the recording cannot have: a time
    # series of one interval, cgroups of processes recorded without.
    views = [by] if by else [
        v for v in VIEWS if (v != "interval" or (series and len(series) >
                                                  1))
        and (v != "cgroup" or (snap.processes and not no_cgroups))]
    if markdown:
        parts = ["# sysretstat report\n\n```\n" + summary(snap, cal) +
                 "```\n"]
    else:
        parts = [fit_lines(summary(snap, cal), width)]
    for v in views:
        v = {"processes": "process", "threads": "thread",
             "syscalls": "syscall", "cpus": "cpu"}.get(v, v)
        if v == "reason":
            parts.append(section("IRET reasons",
                                 reasons_table(snap.totals, fmt, cal,
                                               width)))
        elif v == "latency":
            parts.append(section(DURATION_TITLE,
                                 latency_text(snap, width), True))
        elif v == "interval":
            parts.append(section("Over time", series_text(
                series, fmt, width=width)))
        elif v == "cgroup" and no_cgroups:
            parts.append("\n" + fit_lines(NO_CGROUPS, width) + "\n")
        else:
            t = BY[v]
            if markdown:
                n = len(snap.table(t))
                parts.append(section("%s (top %d of %d)" % (
                    TABLE_TITLES[t], min(top, n), n),
                    render_table(snap, t, top, sort, fmt, title=False)))
            else:
                parts.append("\n" + render_table(snap, t, top, sort, fmt,
                                                  width=width))
    lost = fit_lines(_lost_line(snap), width)
    if lost:
        parts.append(("\n" + lost) if not markdown else "\n" + lost)
    return "".join(parts)
