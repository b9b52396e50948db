"""The report schema document, built fast enough for big recordings.

`Counts.to_json` sorts a histogram's buckets once per statistic; with
thousands of rows that dominates `report --json`.  `counts_json` gives
the identical document (tests/test_report.py checks it against
`Counts.to_json`) with one sort per histogram.
"""

import json
import sys

from sysretstat.kernel import abi
from sysretstat.model.snapshot import SCHEMA, TABLES, BY_TO_TABLE

_PCTS = (("p50", .5), ("p90", .9), ("p99", .99), ("p999", .999))


def hist_json(h):
    bs = sorted(b for b, c in h.buckets.items() if c > 0)
    cs = [h.buckets[b] for b in bs]
    n = sum(h.buckets.values())
    bounds = [abi.bucket_bounds(b) for b in bs]
    mids = [lo if hi is None else (lo + hi) / 2.0 for lo, hi in bounds]
    out = {"count": n, "sum": h.sum_ns,
           "min": bounds[0][0] if bs else None,
           "max": (bounds[-1][1] if bounds[-1][1] is not None
                   else bounds[-1][0]) if bs else None}
    for name, q in _PCTS:
        v = None
        if n > 0 and bs:
            rank = q * n
            seen = 0
            v = mids[-1]
            for m, c in zip(mids, cs):
                seen += c
                if seen >= rank:
                    v = m
                    break
        out[name] = v
    out["buckets"] = [[lo, hi, c] for (lo, hi), c in zip(bounds, cs)]
    return out


def counts_json(c, fast_path="sysret"):
    iret = sum(c.n[abi.FIRST_IRET:])
    rs = sorted(((name, c.n[i]) for i, name in enumerate(abi.OUTCOMES)
                 if i >= abi.FIRST_IRET and c.n[i]),
                key=lambda kv: (-kv[1], kv[0]))
    d = {"returns": sum(c.n),
         "paths": {"sysret": c.n[abi.O_SYSRET], "iret": iret,
                   "eretu": c.n[abi.O_ERETU]},
         "reasons": dict(rs)}
    if c.lat is not None:
        d["latency_ns"] = {fast_path: hist_json(c.lat[0]),
                           "iret": hist_json(c.lat[1])}
    return d


def series_json(series):
    return [dict(counts_json(c), start_s=round(start, 6),
                 duration_s=round(dur, 6))
            for start, dur, c in series.rows()]


def report_doc(snap, series=None, tables=TABLES, top=None, sort="returns"):
    """The report schema document; only `tables` get rows (the others
    are empty lists), plus "series" (an extension) when given."""
    fp = snap.fast_path
    doc = {"schema": SCHEMA, "meta": snap.meta,
           "totals": counts_json(snap.totals, fp)}
    for t in TABLES:
        rows = snap.sorted_rows(t, sort) if t in tables else []
        if top is not None:
            rows = rows[:top]
        doc[t] = [dict(r.fields, **counts_json(r.counts, fp)) for r in rows]
    if series is not None:
        doc["series"] = series_json(series)
    return doc


def tables_for(by):
    """Which tables `--by` keeps: all, one, or none (reason, latency and
    interval views are in totals and series)."""
    if by is None:
        return TABLES
    return (BY_TO_TABLE[by],) if by in BY_TO_TABLE else ()


def dump(doc, stream=sys.stdout):
    # Indented for a person at a terminal; compact into a pipe or file,
    # where json.dumps's C encoder is several times faster (json.dump
    # and indent use the pure-Python one).
    if stream.isatty():
        stream.write(json.dumps(doc, indent=1))
    else:
        stream.write(json.dumps(doc, separators=(",", ":")))
    stream.write("\n")
