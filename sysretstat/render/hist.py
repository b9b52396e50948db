"""Latency histograms as text bars, one row per power of two.

The kernel's buckets split each power of two into 8; a terminal row per
bucket would be hundreds of lines, so rows merge the 8 sub-buckets and
the percentiles (read from the fine buckets) carry the precision.
"""

from sysretstat.model.histogram import HIST_MAX_POW, bucket_bounds
from sysretstat.model.fields import PERCENTILES
from sysretstat.render.units import fmt_ns


def _short(v):
    """A bucket bound as bpftrace prints it: 512, 1K, 2M."""
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if v >= div and v % div == 0:
            return "%d%s" % (v // div, unit)
    return "%d" % v


def power_rows(hist):
    """[(lower_ns, upper_ns or None, count)] per power of two, from the
    lowest to the highest non-empty one (empty ones in between kept)."""
    by_pow = {}
    for b, c in hist.buckets.items():
        if c <= 0:
            continue
        lo, hi = bucket_bounds(b)
        p = lo.bit_length() - 1 if lo > 0 else -1
        by_pow[p] = by_pow.get(p, 0) + c
    if not by_pow:
        return []
    rows = []
    top_pow = HIST_MAX_POW
    for p in range(min(by_pow), max(by_pow) + 1):
        lo = 0 if p < 0 else 1 << p
        hi = None if p >= top_pow else (1 if p < 0 else 1 << (p + 1))
        rows.append((lo, hi, by_pow.get(p, 0)))
    return rows


def percentiles(hist):
    return [(p.label, hist.percentile(p.q)) for p in PERCENTILES]


def stats_line(name, hist):
    if hist.count == 0:
        return "%s: no samples" % name
    return "%s: %d samples  mean %s  %s  max %s" % (
        name, hist.count, fmt_ns(hist.mean),
        "  ".join("%s %s" % (n, fmt_ns(v)) for n, v in percentiles(hist)),
        fmt_ns(hist.max))


def render_hist(name, hist, width=40):
    """A stats line, then `[lo, hi)  count |@@@@   |` rows."""
    out = [stats_line(name, hist)]
    rows = power_rows(hist)
    if not rows:
        return "\n".join(out) + "\n"
    peak = max(c for _, _, c in rows) or 1
    total = sum(c for _, _, c in rows) or 1
    labels = ["[%s, %s)" % (_short(lo), _short(hi) if hi else "inf")
              for lo, hi, _ in rows]
    lw = max(len(x) for x in labels)
    cw = max(len(str(c)) for _, _, c in rows)
    for label, (_, _, c) in zip(labels, rows):
        bar = "@" * int(round(width * c / peak)) if c else ""
        out.append("  %-*s %*d %5.1f%% |%-*s|" % (lw, label, cw, c,
                                                  100.0 * c / total,
                                                  width, bar))
    return "\n".join(out) + "\n"


def bar(value, peak, width=30, char="#"):
    if not peak or value <= 0:
        return ""
    return char * max(1, int(round(width * value / peak)))
