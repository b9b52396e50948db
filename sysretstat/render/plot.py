"""`report --plot`: one image with the latency distributions of both
paths overlaid, the IRET reasons as bars and the IRET rate over time.

matplotlib is an optional extra (`pip install 'sysretstat[plot]'`); it
is imported only here, and only when a plot is asked for.
"""

import os

from sysretstat.model.histogram import bucket_bounds
from sysretstat.errors import SysretstatError, UsageError

FORMATS = {".png": "png", ".svg": "svg"}
INSTALL = ("--plot needs matplotlib: pip install 'sysretstat[plot]' "
           "(or: apt install python3-matplotlib)")


def check_target(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise UsageError("--plot FILE must end in .png or .svg: %s" % path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise UsageError("--plot %s: no such directory" % path)
    return FORMATS[ext]


def require():
    try:
        import matplotlib
        matplotlib.use("Agg")   # no display needed, and none wanted
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        raise SysretstatError(INSTALL)


def _density(hist):
    """(x, y): bucket middles and the share of samples per bucket."""
    n = hist.count
    xs, ys = [], []
    for b in sorted(hist.buckets):
        c = hist.buckets[b]
        if c <= 0:
            continue
        lo, hi = bucket_bounds(b)
        xs.append(max(lo, 0.5) if hi is None else max((lo + hi) / 2.0, 0.5))
        ys.append(c / n)
    return xs, ys


def plot(snap, series, path):
    fmt = check_target(path)
    require()
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_rs, ax_t) = plt.subplots(3, 1, figsize=(9, 11))
    m = snap.meta
    fig.suptitle("sysretstat: %s, kernel %s, %.1fs%s" % (
        m.get("hostname", "?"), m.get("kernel", "?"),
        m.get("duration_s") or 0,
        ", " + m["command"] if m.get("command") else ""), fontsize=10)

    lat = snap.totals.lat
    drew = False
    if lat is not None:
        for name, h, color in ((snap.fast_path, lat[0], "tab:blue"),
                               ("iret", lat[1], "tab:red")):
            if h.count == 0:
                continue
            xs, ys = _density(h)
            ax_lat.step(xs, ys, where="mid", color=color,
                        label="%s (n=%d, p50 %.0f ns, p99 %.0f ns)"
                        % (name, h.count, h.percentile(.5),
                           h.percentile(.99)))
            ax_lat.axvline(h.percentile(.5), color=color, ls="--", lw=.8)
            drew = True
    if drew:
        ax_lat.set_xscale("log")
        ax_lat.legend(fontsize=8)
    else:
        ax_lat.text(.5, .5, "no latency samples", ha="center",
                    transform=ax_lat.transAxes)
    ax_lat.set_title("Syscall latency by return path (sys_enter to "
                     "sys_exit)", fontsize=10)
    ax_lat.set_xlabel("ns (log)")
    ax_lat.set_ylabel("share of returns per bucket")

    reasons = snap.totals.reasons()
    if reasons:
        names = list(reasons)[::-1]
        vals = [reasons[r] for r in names]
        ax_rs.barh(names, vals, color="tab:red")
        for y, v in enumerate(vals):
            ax_rs.annotate(" %d" % v, (v, y), va="center", fontsize=8)
        # Rare reasons matter as much as common ones: keep them visible.
        if max(vals) > 50 * min(vals):
            ax_rs.set_xscale("log")
            ax_rs.set_xlim(right=max(vals) * 4)
        else:
            ax_rs.set_xlim(right=max(vals) * 1.15)
        ax_rs.set_xlabel("IRET returns")
    else:
        ax_rs.text(.5, .5, "no IRET returns", ha="center",
                   transform=ax_rs.transAxes)
    ax_rs.set_title("IRET reasons (total %d of %d returns, %.2f%%)"
                    % (snap.totals.iret, snap.totals.returns,
                       100 * snap.totals.iret_share), fontsize=10)

    rows = series.rows(2000) if series is not None else []
    if rows:
        ts = [start + dur for start, dur, _ in rows]
        rate = [c.iret / dur if dur > 0 else 0 for _, dur, c in rows]
        share = [100 * c.iret_share for _, _, c in rows]
        ax_t.plot(ts, rate, color="tab:red", marker="." if len(ts) < 60
                  else None, label="IRET/s")
        ax_t.set_ylabel("IRET returns/s")
        ax2 = ax_t.twinx()
        ax2.plot(ts, share, color="tab:gray", lw=.8, label="IRET %")
        ax2.set_ylabel("IRET % of returns")
        ax2.set_ylim(0, min(100, max(share) * 1.2) or 1)
        ax_t.set_ylim(0, max(rate) * 1.2 or 1)
        ax_t.legend(handles=ax_t.lines + ax2.lines, fontsize=8,
                    loc="lower right")
    else:
        ax_t.text(.5, .5, "no intervals", ha="center",
                  transform=ax_t.transAxes)
    ax_t.set_title("IRET rate per interval", fontsize=10)
    ax_t.set_xlabel("seconds since start")

    fig.tight_layout()
    try:
        fig.savefig(path, format=fmt, dpi=100)
    except OSError as e:
        raise SysretstatError("cannot write %s: %s" % (path, e.strerror))
    finally:
        plt.close(fig)
