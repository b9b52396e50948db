"""CSV rendering: one view, one table, raw numbers (ns, counts, ratios).

Columns are stable (every reason has a column even when zero) so that
spreadsheets and scripts can rely on them; latency cells are empty
where there are no samples.
"""

import csv
import io

from sysretstat.model.fields import PERCENTILES, REPORT_VIEWS, ident_headers
from sysretstat.model.histogram import bucket_bounds
from sysretstat.model.reasons import EXPLAIN, REASONS
from sysretstat.render.text import ident_cells


def _num(v):
    return "" if v is None else (round(v, 3) if isinstance(v, float) else v)


def _counts_cols(c):
    return [c.returns, c.sysret, c.iret, c.eretu, round(c.iret_share, 6)] + \
        [c.reason(r) for r in REASONS]


COUNTS_HEADERS = ["returns", "sysret", "iret", "eretu", "iret_share"] + \
    list(REASONS)


def _lat_headers(fast):
    return ["%s_%s" % (path, h) for path in (fast, "iret")
            for h in ["count", "mean"] + [p.key for p in PERCENTILES]]


def _lat_cols(c):
    if c.lat is None:
        return [""] * (2 * (2 + len(PERCENTILES)))
    out = []
    for h in c.lat:
        out += [h.count, _num(h.mean)] + [_num(h.percentile(p.q))
                                           for p in PERCENTILES]
    return out


def render_csv(snap, view="process", top=None, sort="returns", series=None):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fast = snap.fast_path
    if view == "reason":
        w.writerow(["reason", "returns", "share", "typical_cause"])
        iret = snap.totals.iret
        for name, n in snap.totals.reasons().items():
            w.writerow([name, n, round(n / iret, 6), EXPLAIN.get(name, "")])
    elif view == "latency":
        w.writerow(["path", "lower_ns", "upper_ns", "count"])
        if snap.totals.lat is not None:
            for path, h in ((fast, snap.totals.lat[0]),
                            ("iret", snap.totals.lat[1])):
                # The fine buckets: CSV is for tools, not for eyes.
                for b in sorted(h.buckets):
                    lo, hi = bucket_bounds(b)
                    w.writerow([path, lo, "" if hi is None else hi,
                                h.buckets[b]])
    elif view == "interval":
        w.writerow(["start_s", "duration_s"] + COUNTS_HEADERS)
        for start, dur, c in (series.rows() if series is not None else []):
            w.writerow([round(start, 6), round(dur, 6)] + _counts_cols(c))
    else:
        table = REPORT_VIEWS[view]
        w.writerow(ident_headers(table) + COUNTS_HEADERS + _lat_headers(fast))
        rows = snap.sorted_rows(table, sort)
        for r in rows[:top] if top else rows:
            ident = ident_cells(table, r.fields)
            w.writerow(ident + _counts_cols(r.counts) + _lat_cols(r.counts))
    return buf.getvalue()

