"""The model of `sysretstat top`: rows, keys and screen, without a terminal.

`render()` turns an interval Snapshot and a `ViewState` into a list of
lines, each a list of (text, style) segments that together are at most
`width` characters; `handle_key()` applies one key to the state.  The
curses painter (top_curses.py) only paints what render() returns, so
everything a user sees can be tested here on plain data.

Styles: None (plain), "title", "head" (table header), "sel" (selected
row), "hot" (IRET-heavy figures), "dim", "bar0"/"bar1" (histogram bars
of the fast and IRET path), "key", "warn", "input".
"""

import time
from dataclasses import dataclass, field

from sysretstat.model.reasons import EXPLAIN
from sysretstat.model.snapshot import counts_sort_value
from sysretstat.render.safe import safe

VIEWS = ("process", "thread", "syscall", "cpu")
TABLE_OF = {"process": "processes", "thread": "threads",
            "syscall": "syscalls", "cpu": "cpus"}

# Sort keys, in the order `s` steps through them, with their titles.
SORT_KEYS = ("returns", "iret", "iret_share", "reason", "cost", "p50", "p99",
             "iret_p50", "iret_p99", "id", "name")
SORT_TITLES = {"returns": "RET/s", "iret": "IRET/s", "iret_share": "IRET%",
               "reason": "REASON", "cost": "COST/s", "p50": "p50",
               "p99": "p99", "iret_p50": "IRET p50", "iret_p99": "IRET p99",
               "id": "id", "name": "name"}
# Keys whose natural order is ascending (names and ids read A..Z, 1..N).
ASCENDING = ("id", "name", "reason")

# Lines above the table: 4 of summary, 1 of view/sort/filter status.
HEADER_LINES = 5

HELP = [
    ("Tab, 1-4", "view: 1 process, 2 thread, 3 syscall, 4 cpu"
                 " (5 host with --per-host)"),
    ("s / S, > / <", "sort by the next / previous column"),
    ("r", "reverse the sort order"),
    ("/", "filter by name, or by id when all digits (Enter sets,"
          " Esc clears)"),
    ("p, space", "pause / resume the display (collection goes on)"),
    ("Up/Down, j/k", "move the selection (PgUp/PgDn, Home/End, g/G)"),
    ("Enter", "open / close the detail pane of the selected row"),
    ("Esc", "close the detail pane, help, or filter"),
    ("h, ?", "this help"),
    ("q", "quit"),
]


@dataclass
class ViewState:
    """What the user chose; everything render() needs besides data."""
    view: str = "process"
    sort: str = "iret"
    reverse: bool = False          # flip the key's natural order
    filter: str = ""
    editing: str = None            # filter text being typed, or None
    paused: bool = False
    help: bool = False
    detail: bool = False
    sel: int = 0                   # index of the selected row
    sel_key: object = None         # its key, to follow it across frames
    top: int = 0                   # first table row on screen
    views: tuple = VIEWS           # + ("host",) with --per-host
    ascii: bool = False            # no Unicode block characters
    interval: float = 1.0
    message: str = ""
    hidden: set = field(default_factory=set)  # columns left out


class RowView:
    """One table row as top shows it: identity, counts, rates."""

    __slots__ = ("key", "ident", "name", "counts", "dt", "cost_ns")

    def __init__(self, key, ident, name, counts, dt, cost_ns=None):
        self.key = key
        self.ident = ident      # tuple of identity cells (pid, tid, ...)
        self.name = name
        self.counts = counts
        self.dt = dt
        self.cost_ns = cost_ns  # estimated ns lost to IRET, or None

    def rate(self, n):
        return n / self.dt if self.dt > 0 else 0.0


# Formatting ---------------------------------------------------------
def _scaled(v, units):
    # The first unit in which the figure has at most 3 integer digits;
    # rounding decides, so that 99.99k reads 100k rather than 100.0k.
    for div, unit in units:
        x = v / div
        if round(x, 1) < 100:
            return "%.1f%s" % (x, unit)
        if round(x) < 1000 or unit == units[-1][1]:
            return "%.0f%s" % (x, unit)
    return "%.0f" % v


def fmt_rate(v):
    """A per-second figure in at most 6 characters."""
    if v is None:
        return "-"
    if v < 10 and v != int(v):
        return "%.1f" % v
    if round(v) < 10000:
        return "%.0f" % v
    return _scaled(v, ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")))


def fmt_ns(v):
    """A duration in at most 6 characters (None: "-")."""
    if v is None:
        return "-"
    if round(v) < 1000:
        return "%.0fns" % v
    return _scaled(v, ((1e3, "us"), (1e6, "ms"), (1e9, "s")))


def fmt_pct(share):
    p = 100.0 * share
    if p == 0:
        return "0%"
    if p < 0.1:
        return "<0.1%"
    return "%.1f%%" % p if p < 99.95 else "100%"


def fit(text, width, right=False):
    text = str(text)
    if len(text) > width:
        return text[:width]
    return text.rjust(width) if right else text.ljust(width)


# Data -----------------------------------------------------------------
def interval_of(snap, default=1.0):
    m = snap.meta if snap is not None else {}
    dt = m.get("interval_s") or m.get("duration_s") or 0
    return dt if dt and dt > 0 else default


def iret_cost_ns(counts, calibration):
    """Estimated ns lost to IRET: each reason's count times its penalty."""
    if calibration is None:
        return None
    mean = calibration.mean_penalty_ns
    total = 0.0
    for reason, n in counts.reasons().items():
        p = calibration.penalty_ns(reason)
        total += n * (p if p is not None else (mean or 0.0))
    return total


def _ident(view, f, key):
    if f.get("host"):
        # A row of one daemon among several (--connect).
        ident, name = _ident(view, dict(f, host=None), key)
        host = safe(f["host"])
        return ident, "%s@%s" % (name, host) if name else host
    if view == "process":
        return (f.get("pid"),), safe(f.get("comm", ""))
    if view == "thread":
        return (f.get("tid"), f.get("pid")), safe(f.get("comm", ""))
    if view == "syscall":
        return (f.get("nr"), safe(f.get("abi", ""))), safe(f.get("name", ""))
    if view == "cpu":
        return (f.get("cpu"),), ""
    return (), str(key)


def build_rows(delta, state, calibration=None, hosts=None):
    """The rows of the current view, filtered and sorted."""
    dt = interval_of(delta, state.interval)
    rows = []
    if state.view == "host":
        for host, snap in sorted((hosts or {}).items()):
            c = snap.totals
            rows.append(RowView(host, (), safe(host), c,
                                interval_of(snap, dt),
                                iret_cost_ns(c, calibration)))
    elif delta is not None:
        for key, r in delta.table(TABLE_OF[state.view]).items():
            ident, name = _ident(state.view, r.fields, key)
            rows.append(RowView(key, ident, name, r.counts, dt,
                                iret_cost_ns(r.counts, calibration)
                                if calibration is not None else None))
    if state.filter:
        rows = [r for r in rows if matches(r, state.filter)]
    sort_rows(rows, state.sort, state.reverse)
    return rows


def matches(row, text):
    if text.isdigit() and any(str(i) == text for i in row.ident):
        return True
    return text.lower() in str(row.name).lower()


def sort_value(row, key):
    if key == "cost":
        return row.cost_ns or 0.0
    if key == "name":
        return str(row.name).lower()
    if key == "id":
        return row.ident
    v = counts_sort_value(row.counts, key)
    return row.counts.returns if v is None else v


def sort_rows(rows, key, reverse=False):
    # Figures sort largest first, names and ids in reading order; ties
    # by id, so that rows do not jump between frames.
    desc = key not in ASCENDING
    if reverse:
        desc = not desc
    rows.sort(key=lambda r: r.ident if r.ident else (str(r.key),))
    rows.sort(key=lambda r: sort_value(r, key), reverse=desc)
    return rows


# Columns ----------------------------------------------------------------
class Col:
    __slots__ = ("name", "title", "width", "right", "flex", "maxw", "prio",
                 "sort")

    def __init__(self, name, title, width, right=True, flex=False, maxw=0,
                 prio=0, sort=None):
        self.name, self.title, self.width, self.right = name, title, width, \
            right
        self.flex, self.maxw, self.prio, self.sort = flex, maxw, prio, sort


def columns(view, fast_label, with_cost, with_latency, rows):
    """The columns of a view, before fitting to a width.

    prio: lower is dropped first when the screen is too narrow.
    """
    def idw(i, title):
        w = max([len(title)] + [len(str(r.ident[i])) for r in rows
                                if len(r.ident) > i])
        return w

    cols = []
    if view == "process":
        cols += [Col("id0", "PID", idw(0, "PID"), prio=100, sort="id"),
                 Col("name", "COMM", 8, False, True, 15, 90, "name")]
    elif view == "thread":
        cols += [Col("id0", "TID", idw(0, "TID"), prio=100, sort="id"),
                 Col("id1", "PID", idw(1, "PID"), prio=40),
                 Col("name", "COMM", 8, False, True, 15, 90, "name")]
    elif view == "syscall":
        cols += [Col("id0", "NR", idw(0, "NR"), prio=100, sort="id"),
                 Col("id1", "ABI", idw(1, "ABI"), False, prio=35),
                 Col("name", "SYSCALL", 8, False, True, 20, 90, "name")]
    elif view == "cpu":
        cols += [Col("id0", "CPU", idw(0, "CPU"), prio=100, sort="id")]
    else:
        cols += [Col("name", "HOST", 12, False, True, 30, 100, "name")]
    cols += [Col("returns", "RET/s", 6, prio=95, sort="returns"),
             Col("iret", "IRET/s", 6, prio=96, sort="iret"),
             Col("iret_share", "IRET%", 5, prio=94, sort="iret_share"),
             Col("reason", "REASON", 8, False, True, 16, 92, "reason")]
    if with_cost:
        cols.append(Col("cost", "COST/s", 6, prio=50, sort="cost"))
    if with_latency:
        fl = fast_label
        cols += [Col("p50", fl + "p50", 6, prio=60, sort="p50"),
                 Col("p99", fl + "p99", 6, prio=70, sort="p99"),
                 Col("iret_p50", "IRp50", 6, prio=61, sort="iret_p50"),
                 Col("iret_p99", "IRp99", 6, prio=71, sort="iret_p99")]
    return cols


def fit_columns(cols, width):
    """Drop the lowest-priority columns until the rest fit; widen flex."""
    cols = list(cols)

    def need(cs):
        return sum(c.width for c in cs) + max(0, len(cs) - 1)
    while cols and need(cols) > width:
        victim = min(cols, key=lambda c: c.prio)
        if victim.prio >= 100 and len(cols) == 1:
            break
        cols.remove(victim)
    spare = width - need(cols)
    for c in cols:
        if c.flex and spare > 0:
            grow = min(spare, c.maxw - c.width)
            if grow > 0:
                c.width += grow
                spare -= grow
    return cols


def cell(row, name):
    c = row.counts
    if name.startswith("id"):
        i = int(name[2:])
        return row.ident[i] if i < len(row.ident) else ""
    if name == "name":
        return row.name
    if name == "returns":
        return fmt_rate(row.rate(c.returns))
    if name == "iret":
        return fmt_rate(row.rate(c.iret))
    if name == "iret_share":
        return fmt_pct(c.iret_share) if c.returns else "-"
    if name == "reason":
        return c.top_reason() or "-"
    if name == "cost":
        return fmt_ns(row.rate(row.cost_ns)) if row.cost_ns else "-"
    if not c.lat:
        return "-"
    if name in ("p50", "p99"):
        return fmt_ns(c.lat[0].percentile(.5 if name == "p50" else .99))
    if name in ("iret_p50", "iret_p99"):
        return fmt_ns(c.lat[1].percentile(.5 if name == "iret_p50"
                                          else .99))
    return ""


def format_row(row, cols):
    parts = [fit(cell(row, c.name), c.width, c.right) for c in cols]
    return " ".join(parts)


# Header -----------------------------------------------------------------
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
    return sum(v for k, v in (meta.get("lost") or {}).items()
               if isinstance(v, (int, float))
               and not k.startswith("unattributed_"))


def header(delta, state, width, calibration=None, hosts=None, now=None):
    m = delta.meta if delta is not None else {}
    dt = interval_of(delta, state.interval)
    t = delta.totals if delta is not None else None
    hostname = safe(m.get("hostname", "?"))
    if hosts:
        hostname = "%d hosts" % len(hosts)
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
    fast = "ERETU" if m.get("guard", {}).get("fred") else "SYSRET"
    fast_n = t.eretu if fast == "ERETU" else t.sysret
    s = "returns %s/s  %s %s  IRET %s/s (%s)" % (
        fmt_rate(t.returns / dt), fast,
        fmt_pct(fast_n / t.returns) if t.returns else "-",
        fmt_rate(t.iret / dt), fmt_pct(t.iret_share) if t.returns else "-")
    if calibration is not None:
        cost = iret_cost_ns(t, calibration) or 0.0
        s += "  IRET cost ~%s/s" % fmt_ns(cost / dt)
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
    lines.append([(tool, "warn" if lost else "dim")])
    return lines


def status_line(state, nrows, total):
    views = " ".join(("[%d %s]" if v == state.view else "%d %s")
                     % (i + 1, v) for i, v in enumerate(state.views))
    order = "asc" if (state.sort in ASCENDING) != state.reverse else "desc"
    s = "%s  sort %s %s" % (views, SORT_TITLES.get(state.sort, state.sort),
                            order)
    if state.filter:
        s += "  filter '%s'" % state.filter
    s += "  %d/%d rows" % (nrows, total)
    return s


# Screens ----------------------------------------------------------------
def render(delta, state, width, height, cumulative=None, calibration=None,
           hosts=None, now=None):
    """The whole screen as lines of (text, style) segments.

    delta: the interval Snapshot shown (None before the first one);
    cumulative: the Snapshot since start, for the detail pane of a row
    idle this interval; hosts: {host: interval Snapshot} (host view).
    """
    width = max(1, width)
    height = max(1, height)
    if state.help:
        return _pad(render_help(width), width, height)
    lines = header(delta, state, width, calibration, hosts, now)
    rows = build_rows(delta, state, calibration, hosts) \
        if delta is not None else []
    total = len(delta.table(TABLE_OF[state.view])) if (
        delta is not None and state.view in TABLE_OF) else len(hosts or {})
    gone = state.sel_key if state.detail else None
    if _follow_selection(state, rows):
        gone = None
    lines.append([(status_line(state, len(rows), total), "dim")])
    body_h = max(0, height - len(lines) - 1)
    idle = _idle_row(gone, delta, state, cumulative)
    if idle is not None:
        # The row in the detail pane was idle this interval: keep it.
        state.sel_key = gone
        body = render_detail(idle, delta, state, width, body_h,
                             cumulative, calibration)
    elif state.detail and rows:
        body = render_detail(rows[state.sel], delta, state, width, body_h,
                             cumulative, calibration)
    else:
        state.detail = state.detail and bool(rows)
        body = render_table(rows, delta, state, width, body_h, calibration)
    lines += body[:body_h]
    while len(lines) < height - 1:
        lines.append([])
    lines.append(footer(state, width))
    return _pad(lines[:height], width, height)


def _follow_selection(state, rows):
    """Keep the same row selected while the order changes under it;
    True when the selected row is still there."""
    found = False
    if state.sel_key is not None:
        for i, r in enumerate(rows):
            if r.key == state.sel_key:
                state.sel = i
                found = True
                break
    state.sel = max(0, min(state.sel, len(rows) - 1))
    state.sel_key = rows[state.sel].key if rows else None
    return found


def _idle_row(key, delta, state, cumulative):
    if key is None or cumulative is None or state.view not in TABLE_OF:
        return None
    r = cumulative.table(TABLE_OF[state.view]).get(key)
    if r is None:
        return None
    from sysretstat.model.snapshot import Counts
    ident, name = _ident(state.view, r.fields, key)
    return RowView(key, ident, name, Counts.zero(r.counts.lat is not None),
                   interval_of(delta, state.interval))


def footer(state, width):
    if state.editing is not None:
        return [(fit("filter (name or id): " + state.editing + "_", width),
                 "input")]
    if state.message:
        return [(fit(state.message, width), "warn")]
    keys = ("q quit  h help  Tab view  s sort  r reverse  / filter  "
            "p pause  Enter detail")
    return [(fit(keys, width), "key")]


def render_table(rows, delta, state, width, height, calibration=None):
    if height <= 0:
        return []
    m = delta.meta if delta is not None else {}
    fred = m.get("guard", {}).get("fred")
    with_lat = rows[0].counts.lat is not None if rows else (
        (m.get("filters") or {}).get("latency", True) and
        state.view != "thread")
    n = height - 1
    if state.sel < state.top:
        state.top = state.sel
    elif state.sel >= state.top + n:
        state.top = state.sel - n + 1
    state.top = max(0, min(state.top, max(0, len(rows) - n)))
    visible = rows[state.top:state.top + n]
    # Widths from the rows on screen: a frame's cost stays with them.
    cols = fit_columns(columns(state.view, "ER" if fred else "SR",
                               calibration is not None, with_lat, visible),
                       width)
    head = []
    for c in cols:
        title = c.title
        if c.sort == state.sort:
            title = title + ("v" if (state.sort in ASCENDING) == state.reverse
                             else "^")
        head.append(fit(title, c.width, c.right))
    out = [[(fit(" ".join(head), width), "head")]]
    if not rows:
        if delta is not None:
            out.append([("  (no returns in this interval%s)" % (
                " match the filter" if state.filter else ""), "dim")])
        return out
    for i, r in enumerate(visible, state.top):
        text = fit(format_row(r, cols), width)
        style = "sel" if i == state.sel else (
            "hot" if r.counts.iret and r.counts.iret_share >= 0.5 else None)
        out.append([(text, style)])
    return out


def render_help(width):
    lines = [[(fit("sysretstat top: keys", width), "title")], []]
    for k, what in HELP:
        lines.append([(fit("  %-14s" % k, 16), "key"),
                      (fit(what, max(0, width - 16)), None)])
    lines += [[], [(fit("Columns: RET/s returns per second, IRET/s IRET "
                        "returns per second, IRET% their share,", width),
                    None)],
              [(fit("REASON the top IRET reason, COST/s estimated time lost"
                    " to IRET (with a", width), None)],
              [(fit("`sysretstat bench` calibration), SRp50..IRp99 latency "
                    "percentiles of the", width), None)],
              [(fit("SYSRET (ERETU: ER) and IRET paths.   "
                    "Any key closes this help.", width), None)]]
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


# Detail pane ------------------------------------------------------------
def render_detail(row, delta, state, width, height, cumulative=None,
                  calibration=None):
    c = row.counts
    ident = " ".join(str(i) for i in row.ident)
    title = "%s %s %s" % (state.view, ident, row.name)
    lines = [[(fit(title.strip() + "   (Esc or Enter: back)", width),
               "head")]]
    fast = "ERETU" if (delta and delta.meta.get("guard", {}).get("fred")) \
        else "SYSRET"
    fast_n = c.eretu if fast == "ERETU" else c.sysret
    s = "returns %s/s  %s %s/s  IRET %s/s (%s)" % (
        fmt_rate(row.rate(c.returns)), fast, fmt_rate(row.rate(fast_n)),
        fmt_rate(row.rate(c.iret)), fmt_pct(c.iret_share))
    if row.cost_ns is not None:
        s += "  cost ~%s/s" % fmt_ns(row.rate(row.cost_ns))
    lines.append([(fit(s, width), None)])
    rs = c.reasons()
    lines.append([(fit("%-16s %7s %6s  %s" % ("reason", "IRET/s", "share",
                                               "typical cause"), width),
                   "dim")])
    if not rs:
        lines.append([("  no IRET returns", "dim")])
    for name, n in rs.items():
        lines.append([(fit("%-16s %7s %6s  %s" % (
            name, fmt_rate(row.rate(n)), fmt_pct(n / c.iret),
            EXPLAIN.get(name, "")), width), None)])
    lines.append([])
    room = height - len(lines)
    lines += render_hists(c, cumulative_counts(row, state, cumulative),
                          fast, width, room, state.ascii)
    return lines


def cumulative_counts(row, state, cumulative):
    if cumulative is None or state.view not in TABLE_OF:
        return None
    r = cumulative.table(TABLE_OF[state.view]).get(row.key)
    return r.counts if r is not None else None


def render_hists(counts, since_start, fast, width, height, ascii=False):
    """The two paths' latency histograms side by side, with percentiles."""
    if height <= 0:
        return []
    lat = counts.lat
    label = "this interval"
    if lat is not None and not any(h.count for h in lat) and since_start \
            is not None and since_start.lat is not None:
        lat, label = since_start.lat, "since start"
    if lat is None:
        return [[("  no latency: kept per process, per syscall and per CPU "
                  "(and not with --no-latency)", "dim")]]
    half = (width - 1) // 2
    names = (fast, "IRET")
    lines = [[(fit("%s latency (n=%d, %s)" % (names[0], lat[0].count, label),
                   half), "dim"), (" ", None),
              (fit("IRET latency (n=%d)" % lat[1].count, half), "dim")]]
    for q in ((("p50", .5), ("p90", .9)), (("p99", .99), ("p999", .999))):
        segs = []
        for i, h in enumerate(lat):
            txt = "  ".join("%s %s" % (n, fmt_ns(h.percentile(v)))
                            for n, v in q)
            segs += [(fit(txt, half), "bar%d" % i)] + ([(" ", None)]
                                                       if i == 0 else [])
        lines.append(segs)
    room = height - len(lines)
    if room <= 0:
        return lines[:height]
    bins = hist_bins(lat, room)
    if not bins:
        lines.append([("  no latency samples", "dim")])
        return lines
    tops = [max(b[1 + i] for b in bins) or 1 for i in range(2)]
    totals = [sum(b[1 + i] for b in bins) or 1 for i in range(2)]
    lw = 7
    barw = max(1, half - lw - 7)
    full = "#" if ascii else "\u2588"
    for lo, *ns in bins:
        segs = []
        for i in range(2):
            n = ns[i]
            blen = int(round(barw * n / tops[i])) if n else 0
            if n and blen == 0:
                blen = 1
            share = "%5.1f%%" % (100.0 * n / totals[i]) if n else ""
            segs += [(fit(fmt_ns(lo), lw - 1, True) + " ", "dim"),
                     (full * blen, "bar%d" % i),
                     (" " * (barw - blen) + fit(share, 6, True), None)]
            if i == 0:
                used = lw + barw + 6
                segs.append((" " * max(1, half - used + 1), None))
        lines.append(segs)
    return lines


def hist_bins(lat, rows):
    """[(lower_ns, fast count, iret count)] by power of two, merged
    pairwise until they fit in `rows` lines."""
    from sysretstat.kernel import abi
    acc = {}
    for i, h in enumerate(lat):
        for b, n in h.buckets.items():
            if n <= 0:
                continue
            lo = abi.bucket_bounds(b)[0]
            p = max(0, int(lo).bit_length() - 1)
            acc.setdefault(p, [0, 0])[i] += n
    if not acc:
        return []
    lo_p, hi_p = min(acc), max(acc)
    step = 1
    while (hi_p - lo_p) // step + 1 > max(1, rows):
        step += 1
    out = []
    for p in range(lo_p, hi_p + 1, step):
        ns = [0, 0]
        for q in range(p, min(p + step, hi_p + 1)):
            for i in range(2):
                ns[i] += acc.get(q, (0, 0))[i]
        out.append((1 << p if p else 0, ns[0], ns[1]))
    return out


# Keys -------------------------------------------------------------------
def handle_key(state, key, rows, page=10):
    """Apply one key (a character, or a name: up, down, pgup, pgdn, home,
    end, enter, esc, tab, btab, backspace) to the state.

    Returns "quit" for q, else None.  `rows` is what build_rows gave.
    """
    state.message = ""
    if state.editing is not None:
        if key == "enter":
            state.filter, state.editing = state.editing.strip(), None
            state.sel, state.sel_key, state.top = 0, None, 0
        elif key == "esc":
            state.editing = None
        elif key == "backspace":
            state.editing = state.editing[:-1]
        elif isinstance(key, str) and len(key) == 1 and key.isprintable():
            state.editing += key
        return None
    if state.help:
        state.help = False
        return "quit" if key == "q" else None
    n = len(rows)
    if key == "q":
        return "quit"
    if key in ("h", "?"):
        state.help = True
    elif key == "esc":
        if state.detail:
            state.detail = False
        elif state.filter:
            state.filter = ""
    elif key == "enter":
        state.detail = not state.detail and n > 0
    elif key in ("tab", "btab"):
        i = state.views.index(state.view) if state.view in state.views else 0
        _switch(state, state.views[(i + (1 if key == "tab" else -1))
                                   % len(state.views)])
    elif isinstance(key, str) and len(key) == 1 and key.isdigit():
        i = int(key) - 1
        if 0 <= i < len(state.views):
            _switch(state, state.views[i])
    elif key in ("s", ">", "S", "<"):
        i = SORT_KEYS.index(state.sort) if state.sort in SORT_KEYS else 0
        step = 1 if key in ("s", ">") else -1
        state.sort = SORT_KEYS[(i + step) % len(SORT_KEYS)]
        state.reverse = False
    elif key == "r":
        state.reverse = not state.reverse
    elif key == "/":
        state.editing = state.filter
    elif key in ("p", " "):
        state.paused = not state.paused
    elif key in ("down", "j", "up", "k", "pgdn", "pgup", "home", "end", "g",
                 "G"):
        move = {"down": 1, "j": 1, "up": -1, "k": -1, "pgdn": page,
                "pgup": -page, "home": -n, "g": -n, "end": n, "G": n}[key]
        state.sel = max(0, min(n - 1, state.sel + move))
        state.sel_key = rows[state.sel].key if n else None
    return None


def _switch(state, view):
    if view != state.view:
        state.view = view
        state.sel, state.sel_key, state.top = 0, None, 0
        state.detail = False
