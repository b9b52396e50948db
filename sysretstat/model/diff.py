"""Compare two runs: per IRET reason, per process name and per syscall,
the change in counts, in IRET share and in per-path latency percentiles.

Processes are matched by name (pids differ between runs), syscalls by
(abi, name).  Rows are ordered by impact: the absolute change in IRET
returns, then in returns, then the relative change of the fast path's
median latency.  Counts are raw: compare runs of the same workload
(`record -- COMMAND`) or of the same duration (`record -d`).
"""

from sysretstat.model.fields import PERCENTILES
from sysretstat.model.snapshot import Counts

DIFF_SCHEMA = "sysretstat-diff/1"
def _grouped(rows, key):
    """Counts of `rows` summed by key(row)."""
    out = {}
    for r in rows:
        k = key(r)
        c = out.get(k)
        if c is None:
            out[k] = r.counts.copy()
        else:
            c.add(r.counts)
    return out


def by_comm(snap):
    return _grouped(snap.processes.values(),
                    lambda r: r.fields.get("comm", ""))


def by_syscall(snap):
    return _grouped(snap.syscalls.values(),
                    lambda r: (r.fields["abi"],
                               r.fields.get("name") or str(r.fields["nr"])))


def side(c, fast):
    d = {"returns": c.returns, "sysret": c.sysret, "iret": c.iret,
         "eretu": c.eretu, "iret_share": round(c.iret_share, 6)}
    if c.lat is not None:
        d["latency_ns"] = {
            path: dict({"count": h.count},
                       **{p.key: h.percentile(p.q) for p in PERCENTILES})
            for path, h in ((fast, c.lat[0]), ("iret", c.lat[1]))}
    return d


def _rel(a, b):
    if a is None or b is None or a == 0:
        return None
    return round((b - a) / a, 4)


def compare_counts(b, a, fast_b, fast_a):
    """One row: before, after and delta of two Counts."""
    fast = fast_a if fast_a == fast_b else "fast"
    sb, sa = side(b, fast), side(a, fast)
    delta = {"returns": a.returns - b.returns, "iret": a.iret - b.iret,
             "iret_share": round(a.iret_share - b.iret_share, 6)}
    if "latency_ns" in sb and "latency_ns" in sa:
        delta["latency_ns"] = {}
        for path in (fast, "iret"):
            pb, pa = sb["latency_ns"][path], sa["latency_ns"][path]
            delta["latency_ns"][path] = {
                n: (None if pb[n] is None or pa[n] is None
                    else pa[n] - pb[n]) for n in (p.key for p in PERCENTILES)}
            delta["latency_ns"][path]["p50_rel"] = _rel(pb["p50"], pa["p50"])
    rel = (delta.get("latency_ns", {}).get(fast, {}).get("p50_rel") or 0.0)
    impact = [abs(delta["iret"]), abs(delta["returns"]), abs(rel)]
    return {"before": sb, "after": sa, "delta": delta, "impact": impact}


def compare(before, after, top=None):
    """The diff document (schema sysretstat-diff/1) of two Snapshots."""
    fb, fa = before.fast_path, after.fast_path
    lat = before.totals.lat is not None and after.totals.lat is not None

    def zero():
        return Counts.zero(lat)

    def strip(c):
        # A side without latency makes the comparison counts-only.
        return c if lat else Counts(c.n)

    doc = {"schema": DIFF_SCHEMA, "totals": compare_counts(
        strip(before.totals), strip(after.totals), fb, fa)}
    reasons = []
    rb, ra = before.totals, after.totals
    for name in sorted(set(rb.reasons()) | set(ra.reasons())):
        nb, na = rb.reason(name), ra.reason(name)
        sb = nb / rb.returns if rb.returns else 0.0
        sa = na / ra.returns if ra.returns else 0.0
        reasons.append({"reason": name, "before": nb, "after": na,
                        "delta": na - nb,
                        "share_before": round(sb, 6),
                        "share_after": round(sa, 6),
                        "impact": [abs(na - nb)]})
    reasons.sort(key=lambda r: (-r["impact"][0], r["reason"]))
    doc["reasons"] = reasons

    for table, group, ident in (
            ("processes", by_comm, lambda k: {"comm": k}),
            ("syscalls", by_syscall, lambda k: {"abi": k[0],
                                                "name": k[1]})):
        gb, ga = group(before), group(after)
        rows = []
        for k in set(gb) | set(ga):
            row = compare_counts(strip(gb.get(k) or zero()),
                                 strip(ga.get(k) or zero()), fb, fa)
            rows.append(dict(ident(k), **row))
        rows.sort(key=lambda r: ([-x for x in r["impact"]],
                                 str(r.get("comm", r.get("name")))))
        doc[table] = rows[:top] if top else rows
        doc[table + "_total"] = len(rows)
    return doc


def describe(path, snap, schema):
    m = snap.meta
    return {"file": path, "schema": schema, "kernel": m.get("kernel"),
            "hostname": m.get("hostname"), "started_at": m.get("started_at"),
            "duration_s": m.get("duration_s"), "command": m.get("command"),
            "fast_path": snap.fast_path}
