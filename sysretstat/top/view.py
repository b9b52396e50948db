"""The screen of `sysretstat top`, without a terminal.

`render()` turns an interval Snapshot and a `ViewState` (top/state.py)
into a list of lines, each a list of (text, style) segments that
together are at most `width` characters.  The curses painter
(top/painter.py) only paints what render() returns, so everything a
user sees can be tested here on plain data.  The parts: top/rows.py
(the rows of a view), top/columns.py (the table's columns),
top/detail.py (one row's pane); top/batch.py writes the same rows as
plain text or JSON lines.

Styles: None (plain), "title", "head" (table header), "sel" (selected
row), "hot" (IRET-heavy figures), "dim", "bar0"/"bar1" (histogram bars
of the fast and IRET path), "key", "warn", "input".
"""

import textwrap
import time

from sysretstat.model.fields import (PATH_ABBREV, REPORT_VIEWS as TABLE_OF,
                                     fast_path)
from sysretstat.render.safe import safe
from sysretstat.render.units import fmt_ns_short as fmt_ns
from sysretstat.render.units import fmt_pct, fmt_rate
from sysretstat.top.columns import columns, fit, fit_columns, format_row
from sysretstat.top.detail import render_detail
from sysretstat.top.rows import (build_rows, follow_selection, idle_row,
                                 interval_of, iret_cost_ns, lacks_groups,
                                 view_keys)
from sysretstat.top.state import (ASCENDING, SORT_TITLES, ordered,
                                  view_number)

# Lines above the table: 4 of summary, 1 of view/sort/filter status.
HEADER_LINES = 5

# What an empty grouped view says when its source's processes lack the
# field it groups by (rather than "no returns", which would be wrong).
NO_GROUPS = {"cgroup": "no cgroups: this source's processes carry none "
                       "(a sysretstat from before cgroups were kept)"}

HELP = [
    ("Tab, 1-7", "view: 1 process, 2 comm (processes of one command name"
                 " summed), 3 thread, 4 syscall, 5 cpu (6 host:"
                 " --per-host), 7 cgroup (processes of one cgroup summed)"),
    ("s / S, > / <", "sort by the next / previous column"),
    ("r", "reverse the sort order"),
    ("/", "filter by name, or id when all digits (Enter sets, Esc"
          " clears)"),
    ("p, space", "pause / resume the display (collection goes on)"),
    ("Up/Down, j/k", "move the selection (PgUp/PgDn, Home/End, g/G)"),
    ("Enter", "open / close the detail pane of the selected row (its"
              " reasons, what each one's returns were, its latency)"),
    ("Esc", "close the detail pane, help, or filter"),
    ("h, ?", "this help"),
    ("q", "quit"),
]

HELP_COLUMNS = (
    "Columns: RET/s returns per second, IRET/s IRET returns per second, "
    "IRET% their share, REASON the top IRET reason, COST/s estimated time "
    "lost to IRET (with a `sysretstat bench` calibration), SRp50..IRp99 "
    "latency percentiles of the SYSRET (ERETU: ER) and IRET paths.  Where "
    "the screen is too narrow, COST/s and then the percentiles are hidden "
    "(the status line names them) before a name is cut.")


def guard_text(meta):
    g = meta.get("guard", {}) or {}
    if g.get("fred"):
        return "FRED: every return is ERETU"
    if g.get("xen_pv"):
        return "Xen PV: every return is IRET"
    return "%s-level paging" % ("5" if g.get("la57") else "4")


def lost_count(meta):
    """Entries the collection dropped this interval (not the unattributed
    returns, which the tables cannot show by construction)."""
    # evicted_* count rows of exited tasks dropped to bound memory, not
    # entries lost: their returns stay in the totals (unattributed_*).
    return sum(v for k, v in (meta.get("lost") or {}).items()
               if isinstance(v, (int, float))
               and not k.startswith(("unattributed_", "evicted_")))


def evicted_count(meta):
    """Rows of exited processes and threads the collector dropped to make
    room (source/collector.py)."""
    return sum(v for k, v in (meta.get("lost") or {}).items()
               if isinstance(v, (int, float)) and k.startswith("evicted_"))


def rates_text(t, meta, dt, calibration=None):
    """The interval's totals in one line: rates, the fast path's share,
    IRET's, and with a calibration the time IRET cost."""
    fast = fast_path(meta).upper()
    fast_n = t.eretu if fast == "ERETU" else t.sysret
    s = "returns %s/s  %s %s  IRET %s/s (%s)" % (
        fmt_rate(t.returns / dt), fast,
        fmt_pct(fast_n / t.returns) if t.returns else "-",
        fmt_rate(t.iret / dt), fmt_pct(t.iret_share) if t.returns else "-")
    if calibration is not None:
        cost = iret_cost_ns(t, calibration) or 0.0
        s += "  IRET cost ~%s/s" % fmt_ns(cost / dt)
    return s


def header(delta, state, width, calibration=None, hosts=None, now=None):
    m = delta.meta if delta is not None else {}
    dt = interval_of(delta, state.interval)
    t = delta.totals if delta is not None else None
    hostname = safe(m.get("hostname", "?"))
    if hosts:
        hostname = hosts_text(hosts)
    clock = time.strftime("%H:%M:%S", time.localtime(now)) if now else ""
    right = ("PAUSED " if state.paused else "") + clock
    left = "sysretstat top  %s  kernel %s  %s" % (
        hostname, safe(m.get("kernel", "?")), guard_text(m))
    lines = [[(fit(left, max(0, width - len(right) - 1)) + " " + right
               if width > len(right) + 10 else fit(left, width), "title")]]
    if t is None:
        lines.append([("collecting the first interval (%gs)..."
                       % state.interval, None)])
        lines += [[], []]
        return lines
    s = rates_text(t, m, dt, calibration)
    lines.append([(s, "hot" if t.iret_share >= 0.01 else None)])
    rs = t.reasons()
    if rs:
        parts, used = [], len("IRET reasons:")
        for name, n in rs.items():
            p = " %s %s" % (name, fmt_pct(n / t.iret))
            if used + len(p) > width:
                break
            parts.append(p)
            used += len(p)
        lines.append([("IRET reasons:" + "".join(parts), None)])
    else:
        lines.append([("IRET reasons: none this interval", "dim")])
    bpf = m.get("bpf") or {}
    lost = lost_count(m)
    if bpf.get("stats") and bpf.get("run_time_ns") is not None:
        ns = bpf.get("run_time_ns", 0) / dt
        tool = "tool: BPF %s/s (%s of a CPU), %s runs/s" % (
            fmt_ns(ns), fmt_pct(ns / 1e9), fmt_rate(
                bpf.get("run_count", 0) / dt))
    else:
        tool = "tool: BPF run time not measured (--bpf-stats)"
    tool += "  lost %d" % lost
    evicted = evicted_count(m)
    if evicted:
        tool += "  evicted %d" % evicted
    # Latency columns of sampled syscalls hold 1 in N of their calls.
    sampled = m.get("latency_sampled") or ()
    if sampled and (m.get("latency_sample") or 1) > 1:
        more = "  latency 1/%d of %s" % (m["latency_sample"],
                                         safe(sampled[0].split(":")[-1]))
        if len(sampled) > 1:
            more += " +%d" % (len(sampled) - 1)
        if len(tool) + len(more) <= width:
            tool += more
    lines.append([(tool, "warn" if lost > 0 else "dim")])
    return lines


def hosts_text(hosts):
    return "%d host%s" % (len(hosts), "" if len(hosts) == 1 else "s")


def status_line(state, nrows, total, hidden=(), width=None):
    """Views, sort, filter, rows shown and the columns the width left
    out.  Where that is too long, the views list shrinks to the current
    one (the footer says Tab switches), so that the rows count and the
    hidden columns stay in sight."""
    order = "asc" if (state.sort in ASCENDING) != state.reverse else "desc"
    rest = "  sort %s %s" % (SORT_TITLES.get(state.sort, state.sort), order)
    if state.filter:
        rest += "  filter '%s'" % state.filter
    rest += "  %d/%d rows" % (nrows, total)

    def name(v):
        n = view_number(v)
        return v if n is None else "%d %s" % (n, v)
    views = " ".join(("[%s]" if v == state.view else "%s") % name(v)
                     for v in ordered(state.views))
    full = rest + ("  hidden: " + " ".join(hidden) if hidden else "")
    if width is None or len(views) + len(full) <= width:
        return views + full
    if state.view in state.views:
        views = "[%s]" % name(state.view)
    if not hidden or len(views) + len(full) <= width:
        return views + full
    return views + rest + "  hidden: " + " ".join(pair_percentiles(hidden))


def pair_percentiles(titles):
    """SRp50 IRp50 as SR/IRp50: the hidden list in less room."""
    out = list(titles)
    for t in titles:
        if t[-3:] in ("p50", "p99") and not t.startswith("IR") \
                and "IR" + t[-3:] in out and t in out:
            out[out.index(t)] = t[:-3] + "/IR" + t[-3:]
            out.remove("IR" + t[-3:])
    return out


def render(delta, state, width, height, cumulative=None, calibration=None,
           hosts=None, now=None):
    """The whole screen as lines of (text, style) segments.

    delta: the interval Snapshot shown (None before the first one);
    cumulative: the Snapshot since start, for the detail pane of a row
    idle this interval; hosts: {host: interval Snapshot} (host view).
    The state is first settled to this frame's rows (settle(), the one
    change a frame makes to it); the drawing that follows reads it.
    """
    width = max(1, width)
    height = max(1, height)
    if state.help:
        return _pad(render_help(width), width, height)
    lines = header(delta, state, width, calibration, hosts, now)
    rows = build_rows(delta, state, calibration, hosts) \
        if delta is not None else []
    total = len(view_keys(delta, state.view)) if (
        delta is not None and state.view in TABLE_OF) else len(hosts or {})
    body_h = max(0, height - len(lines) - 2)
    idle = settle(state, rows, delta, cumulative, body_h)
    table = idle is None and not state.detail
    cols, hidden = table_columns(rows, delta, state, width, body_h,
                                 calibration) if table else ([], [])
    lines.append([(status_line(state, len(rows), total, hidden, width),
                   "dim")])
    if idle is not None:
        body = render_detail(idle, delta, state, width, body_h,
                             cumulative, calibration)
    elif state.detail:
        body = render_detail(rows[state.sel], delta, state, width, body_h,
                             cumulative, calibration)
    else:
        body = render_table(rows, delta, state, width, body_h, cols)
    lines += body[:body_h]
    while len(lines) < height - 1:
        lines.append([])
    lines.append(footer(state, width))
    return _pad(lines[:height], width, height)


def settle(state, rows, delta, cumulative, body_h):
    """Fit the state to this frame's rows: the selection stays on its
    row as the order changes, the detail pane keeps a row idle this
    interval (returned, as a RowView of zeros) or closes when there are
    no rows, and the table scrolls to keep the selection in view."""
    gone = state.sel_key if state.detail else None
    known = view_keys(cumulative, state.view) if (
        cumulative is not None and state.view in TABLE_OF) else None
    if follow_selection(state, rows, None if known is None else
                        known.__contains__):
        gone = None
    idle = idle_row(gone, delta, state, cumulative)
    if idle is not None:
        state.sel_key, state.sel_away = gone, False
        return idle
    # Without the row itself, the pane would show another's.
    state.detail = state.detail and bool(rows) and not state.sel_away
    n = body_h - 1
    if n > 0 and not state.detail:
        if state.sel < state.top:
            state.top = state.sel
        elif state.sel >= state.top + n:
            state.top = state.sel - n + 1
        state.top = max(0, min(state.top, max(0, len(rows) - n)))
    return None


def footer(state, width):
    if state.editing is not None:
        return [(fit("filter (name or id): " + state.editing + "_", width),
                 "input")]
    if state.message:
        return [(fit(state.message, width), "warn")]
    keys = ("q quit  h help  Tab view  s sort  r reverse  / filter  "
            "p pause  Enter detail")
    return [(fit(keys, width), "key")]


def visible_rows(rows, state, height):
    return rows[state.top:state.top + height - 1]


def table_columns(rows, delta, state, width, height, calibration=None):
    """The table's columns at this width, and the titles of those that
    did not fit (top/columns.py: fit_columns)."""
    m = delta.meta if delta is not None else {}
    with_lat = rows[0].counts.lat is not None if rows else (
        (m.get("filters") or {}).get("latency", True) and
        state.view != "thread")
    # Widths from the rows on screen: a frame's cost stays with them.
    return fit_columns(columns(state.view, PATH_ABBREV[fast_path(m)],
                               calibration is not None, with_lat,
                               visible_rows(rows, state, height)), width)


def render_table(rows, delta, state, width, height, cols):
    if height <= 0:
        return []
    visible = visible_rows(rows, state, height)
    head = []
    for c in cols:
        title = c.title
        if c.sort == state.sort:
            title = title + ("v" if (state.sort in ASCENDING) == state.reverse
                             else "^")
        head.append(fit(title, c.width, c.right))
    out = [[(fit(" ".join(head), width), "head")]]
    if not rows:
        if lacks_groups(delta, state.view):
            out.append([(fit("  (%s)" % NO_GROUPS.get(state.view, ""),
                             width), "dim")])
        elif delta is not None:
            out.append([("  (no returns in this interval%s)" % (
                " match the filter" if state.filter else ""), "dim")])
        return out
    for i, r in enumerate(visible, state.top):
        text = fit(format_row(r, cols, state.ascii), width)
        style = "sel" if i == state.sel and not state.sel_away else (
            "hot" if r.counts.iret and r.counts.iret_share >= 0.5 else None)
        out.append([(text, style)])
    return out


def render_help(width):
    # Wrapped, not cut: every line of it is meant to be read at 80x24.
    key_w = 16
    lines = [[(fit("sysretstat top: keys", width), "title")], []]
    for k, what in HELP:
        for i, part in enumerate(textwrap.wrap(what, max(
                10, width - key_w)) or [""]):
            lines.append([(fit("  %-14s" % k if i == 0 else "", key_w),
                           "key"), (part, None)])
    lines.append([])
    lines += [[(part, None)] for part in textwrap.wrap(HELP_COLUMNS,
                                                       max(10, width))]
    lines += [[], [("Any key closes this help.", "dim")]]
    return lines


def _pad(lines, width, height):
    """Every line exactly `width` wide, exactly `height` lines."""
    out = []
    for line in lines[:height]:
        segs, used = [], 0
        for text, style in line:
            if used >= width:
                break
            text = text[:width - used]
            segs.append((text, style))
            used += len(text)
        if used < width:
            segs.append((" " * (width - used), None))
        out.append(segs)
    while len(out) < height:
        out.append([(" " * width, None)])
    return out


def line_text(line):
    return "".join(t for t, _ in line)


def screen_text(lines):
    return "\n".join(line_text(l).rstrip() for l in lines)
