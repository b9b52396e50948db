"""How every text output writes a duration, a rate or a share.

Two widths of duration: `fmt_ns` for reports and diffs (one decimal,
any length), `fmt_ns_short` for top's fixed columns (at most 6
characters); `fmt_time` for a time lost, in seconds, to three figures.
"""


def fmt_ns(v):
    """A duration in ns as reports write it: 850ns, 12.3us, 4.6ms, 1.23s."""
    if v is None:
        return "-"
    if v < 1e3:
        return "%.0fns" % v
    if v < 1e6:
        return "%.1fus" % (v / 1e3)
    if v < 1e9:
        return "%.1fms" % (v / 1e6)
    return "%.2fs" % (v / 1e9)


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


def fmt_ns_short(v):
    """A duration in ns in at most 6 characters (None: "-")."""
    if v is None:
        return "-"
    if round(v) < 1000:
        return "%.0fns" % v
    return _scaled(v, ((1e3, "us"), (1e6, "ms"), (1e9, "s")))


def fmt_rate(v):
    """A per-second figure in at most 6 characters."""
    if v is None:
        return "-"
    if v < 10 and v != int(v):
        return "%.1f" % v
    if round(v) < 10000:
        return "%.0f" % v
    return _scaled(v, ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")))


def fmt_pct(share):
    """A share (0..1) as a percentage in at most 6 characters."""
    p = 100.0 * share
    if p == 0:
        return "0%"
    if p < 0.1:
        return "<0.1%"
    return "%.1f%%" % p if p < 99.95 else "100%"


def fmt_time(seconds):
    """A time lost, compactly: 850ns, 12.3us, 4.56ms, 1.23s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return "%.3g%s" % (seconds / scale, unit)
    return "%.0fns" % (seconds * 1e9)
