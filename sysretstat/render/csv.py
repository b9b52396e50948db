"""CSV rendering: one view, one table, raw numbers (ns, counts, ratios).

Columns are stable (every reason has a column even when zero) so that
spreadsheets and scripts can rely on them; latency cells are empty
where there are no samples.
"""

import csv
import io

from sysretstat.kernel import abi
from sysretstat.model.reasons import EXPLAIN
from sysretstat.render.hist import PCTS
from sysretstat.render.text import IDENT_HEADERS
from sysretstat.model.snapshot import BY_TO_TABLE
from sysretstat.render.safe import safe

PCT_NAMES = [n.replace(".", "") for n, _ in PCTS]   # p50 p90 p99 p999


def _num(v):
    return "" if v is None else (round(v, 3) if isinstance(v, float) else v)


def _counts_cols(c):
    return [c.returns, c.sysret, c.iret, c.eretu, round(c.iret_share, 6)] + \
        [c.reason(r) for r in abi.REASONS]


COUNTS_HEADERS = ["returns", "sysret", "iret", "eretu", "iret_share"] + \
    list(abi.REASONS)


def _lat_headers(fast):
    return ["%s_%s" % (path, h) for path in (fast, "iret")
            for h in ["count", "mean"] + PCT_NAMES]


def _lat_cols(c):
    if c.lat is None:
        return [""] * (2 * (2 + len(PCTS)))
    out = []
    for h in c.lat:
        out += [h.count, _num(h.mean)] + [_num(h.percentile(q))
                                           for _, q in PCTS]
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
                    lo, hi = abi.bucket_bounds(b)
                    w.writerow([path, lo, "" if hi is None else hi,
                                h.buckets[b]])
    elif view == "interval":
        w.writerow(["start_s", "duration_s"] + COUNTS_HEADERS)
        for start, dur, c in (series.rows() if series is not None else []):
            w.writerow([round(start, 6), round(dur, 6)] + _counts_cols(c))
    else:
        table = BY_TO_TABLE[view]
        w.writerow(IDENT_HEADERS[table] + COUNTS_HEADERS + _lat_headers(fast))
        rows = snap.sorted_rows(table, sort)
        for r in rows[:top] if top else rows:
            f = r.fields
            ident = {"processes": lambda: [f["pid"],
                                           safe(f.get("comm", ""))],
                     "threads": lambda: [f["pid"], f["tid"],
                                         safe(f.get("comm", ""))],
                     "syscalls": lambda: [safe(f["abi"]), f["nr"],
                                          safe(f.get("name", ""))],
                     "cpus": lambda: [f["cpu"]]}[table]()
            w.writerow(ident + _counts_cols(r.counts) + _lat_cols(r.counts))
    return buf.getvalue()

