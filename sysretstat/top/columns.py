"""top's table columns: which a view has, how wide each is, which go
first when the terminal is narrow, and each cell's text.
"""

from sysretstat.render.units import fmt_ns_short as fmt_ns
from sysretstat.render.units import fmt_pct, fmt_rate
from sysretstat.render.width import elide_left
from sysretstat.model.reasons import REASONS


def fit(text, width, right=False):
    text = str(text)
    if len(text) > width:
        return text[:width]
    return text.rjust(width) if right else text.ljust(width)

# A column at or above this priority is the row's identity, its counts,
# IRET share or reason: the screen drops every column below it (COST/s,
# the percentiles) before it cuts a name, and cuts names before it drops
# one of these.
ESSENTIAL = 90

# The reason column holds any reason in full, so that its width does not
# depend on which reasons this frame's rows happen to have.
REASON_WIDTH = max(len(r) for r in REASONS)

# A name (COMM, SYSCALL, HOST) is never cut to less than this, and a
# hostile one (a remote comm@host) never claims more than NAME_CAP.
NAME_MIN = 8
NAME_CAP = 40
# A cgroup path claims NAME_CAP like any name (it displaces percentiles
# no more than a long comm does), but room to spare widens it up to this:
# a container's path is routinely longer than 40, a kubepods one near 200.
CGROUP_CAP = 256


class Col:
    __slots__ = ("name", "title", "width", "right", "flex", "maxw", "prio",
                 "sort", "minw", "elide")

    def __init__(self, name, title, width, right=True, flex=False, maxw=0,
                 prio=0, sort=None, minw=None, elide=False):
        self.name, self.title, self.width, self.right = name, title, width, \
            right
        self.flex, self.maxw, self.prio, self.sort = flex, maxw, prio, sort
        self.minw = width if minw is None else minw
        # Too long, its cells lose their start (elide_left), not their
        # end.
        self.elide = elide


def columns(view, fast_label, with_cost, with_latency, rows):
    """The columns of a view, before fitting to a width.

    prio: lower is dropped first when the screen is too narrow; see
    ESSENTIAL.  A name column starts as wide as the longest name in
    `rows`, so that fit_columns() cuts one only as a last resort.
    """
    def idw(i, title):
        w = max([len(title)] + [len(str(r.ident[i])) for r in rows
                                if len(r.ident) > i])
        return w

    def name_col(title, roomy, prio=ESSENTIAL, cap=NAME_CAP, elide=False):
        longest = max([len(title)] + [len(str(r.name)) for r in rows])
        want = min(NAME_CAP, longest)
        # roomy: the width spare room widens it to, for a steady layout;
        # cap: how far spare room may widen it for a longer name.
        return Col("name", title, want, False, True,
                   max(want, roomy, min(cap, longest)), prio, "name",
                   min(want, NAME_MIN), elide)

    cols = []
    if view == "process":
        cols += [Col("id0", "PID", idw(0, "PID"), prio=100, sort="id"),
                 name_col("COMM", 15)]
    elif view == "thread":
        cols += [Col("id0", "TID", idw(0, "TID"), prio=100, sort="id"),
                 Col("id1", "PID", idw(1, "PID"), prio=ESSENTIAL),
                 name_col("COMM", 15)]
    elif view == "syscall":
        cols += [Col("id0", "NR", idw(0, "NR"), prio=100, sort="id"),
                 Col("id1", "ABI", idw(1, "ABI"), False, prio=ESSENTIAL),
                 name_col("SYSCALL", 20, 99)]
    elif view == "comm":
        cols += [name_col("COMM", 15, 100),
                 Col("id0", "PROCS", idw(0, "PROCS"), prio=ESSENTIAL,
                     sort="id")]
    elif view == "cgroup":
        cols += [name_col("CGROUP", 30, 100, CGROUP_CAP, elide=True),
                 Col("id0", "PROCS", idw(0, "PROCS"), prio=ESSENTIAL,
                     sort="id")]
    elif view == "cpu":
        cols += [Col("id0", "CPU", idw(0, "CPU"), prio=100, sort="id")]
        if any(r.host for r in rows):
            # --connect: CPU 0 of every host, told apart only by this.
            cols.append(name_col("HOST", 30, 99))
    else:
        cols += [name_col("HOST", 30, 100)]
    cols += [Col("returns", "RET/s", 6, prio=95, sort="returns"),
             Col("iret", "IRET/s", 6, prio=96, sort="iret"),
             Col("iret_share", "IRET%", 5, prio=94, sort="iret_share"),
             Col("reason", "REASON", REASON_WIDTH, False, prio=97,
                 sort="reason")]
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
    """The columns that fit `width`, and the titles of those left out
    (in the order they went).

    First the columns under ESSENTIAL go, lowest priority first; then
    names are cut down to NAME_MIN; then essential columns go.  Room
    left over widens the name column up to its maxw.
    """
    cols = [c for c in cols]
    hidden = []

    def need(cs):
        return sum(c.width for c in cs) + max(0, len(cs) - 1)

    def drop(below):
        while len(cols) > 1 and need(cols) > width:
            victim = min(cols, key=lambda c: c.prio)
            if victim.prio >= below:
                return
            cols.remove(victim)
            hidden.append(victim.title)
    drop(ESSENTIAL)
    for c in cols:
        over = need(cols) - width
        if c.flex and over > 0:
            c.width = max(c.minw, c.width - over)
    drop(float("inf"))
    spare = width - need(cols)
    for c in cols:
        if c.flex and spare > 0:
            grow = min(spare, c.maxw - c.width)
            if grow > 0:
                c.width += grow
                spare -= grow
    return cols, hidden


def cell(row, name):
    c = row.counts
    if name.startswith("id"):
        i = int(name[2:])
        return row.ident[i] if i < len(row.ident) else ""
    if name == "name":
        return row.name
    if row.down:
        return "-"
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


def format_row(row, cols, ascii=False):
    parts = [fit(elide_left(cell(row, c.name), c.width, ascii) if c.elide
                 else cell(row, c.name), c.width, c.right) for c in cols]
    return " ".join(parts)
