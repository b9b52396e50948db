"""top's detail pane: one row's rates, its IRET reasons with what
typically causes each, and its two latency histograms side by side.
"""

from sysretstat.model.fields import PERCENTILES, fast_path
from sysretstat.model.histogram import bucket_bounds
from sysretstat.model.reasons import EXPLAIN
from sysretstat.render.units import fmt_ns_short as fmt_ns
from sysretstat.render.units import fmt_pct, fmt_rate
from sysretstat.render.safe import safe
from sysretstat.render.width import elide_left
from sysretstat.top.columns import NAME_MIN, fit
from sysretstat.top.rows import cumulative_counts


# Detail pane ------------------------------------------------------------
def render_detail(row, delta, state, width, height, cumulative=None,
                  calibration=None):
    c = row.counts
    ident = " ".join(str(i) for i in row.ident)
    title = "%s %s %s" % (state.view, ident, row.name)
    back = "   (Esc or Enter: back)"
    if state.view in ("comm", "cgroup"):
        # Its ident is how many processes it sums, not an id.
        sums = " (%s process%s)" % (ident, "" if ident == "1" else "es")
        name = row.name
        if state.view == "cgroup":
            # A long path keeps its leaf, as in the table.
            name = elide_left(name, max(NAME_MIN, width - len(
                "cgroup " + sums + back)), state.ascii)
        title = "%s %s%s" % (state.view, name, sums)
    lines = [[(fit(title.strip() + back, width), "head")]]
    fast = fast_path(delta.meta if delta else {}).upper()
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
    detail = c.reason_detail() if c.detail else {}
    for name, n in rs.items():
        lines.append([(fit("%-16s %7s %6s  %s" % (
            name, fmt_rate(row.rate(n)), fmt_pct(n / c.iret),
            EXPLAIN.get(name, "")), width), None)])
        if detail.get(name):
            lines.append([(fit(detail_text(name, detail[name], n), width),
                           "dim")])
    lines.append([])
    room = height - len(lines)
    lines += render_hists(c, cumulative_counts(row, state, cumulative),
                          fast, width, room, state.ascii)
    return lines


def detail_text(reason, by, total):
    """What a reason's returns were, under its row, as shares of its
    `total`: "  signal: SIGURG 98.0%  SIGALRM 2.0%", largest first (the
    line is cut at the width).  Names are the kernel's or a tracer's
    comm: made safe to print."""
    return "  %s: %s" % (reason, "  ".join(
        "%s %s" % (safe(d), fmt_pct(v / total)) for d, v in by.items()))


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
    for q in (PERCENTILES[:2], PERCENTILES[2:]):
        segs = []
        for i, h in enumerate(lat):
            txt = "  ".join("%s %s" % (p.key, fmt_ns(h.percentile(p.q)))
                            for p in q)
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
    acc = {}
    for i, h in enumerate(lat):
        for b, n in h.buckets.items():
            if n <= 0:
                continue
            lo = bucket_bounds(b)[0]
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
