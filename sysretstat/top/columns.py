"""top's table columns: which a view has, how wide each is, which go
first when the terminal is narrow, and each cell's text.
"""

from sysretstat.render.units import fmt_ns_short as fmt_ns
from sysretstat.render.units import fmt_pct, fmt_rate

def fit(text, width, right=False):
    text = str(text)
    if len(text) > width:
        return text[:width]
    return text.rjust(width) if right else text.ljust(width)

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
