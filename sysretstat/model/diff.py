"""Compare two runs: per IRET reason, per process name, per cgroup and
per syscall, the change in counts, in IRET share, in per-path latency
percentiles and, given each machine's calibration, in time lost to IRET.

Processes are matched by name (pids differ between runs), cgroups by
path (where both runs have them), syscalls by (abi, name).  Rows are
ordered by impact: the absolute change in IRET returns, then in
returns, then the relative change of the fast path's median latency (0
when that change is noise).  When the runs' durations differ (by more
than DURATION_TOLERANCE) counts are also given per second and per 1,000
of the run's returns, and the order uses the per-second figures;
otherwise counts are raw, as they are when a duration is unknown.

A latency change is flagged as noise (README.md, sysretstat-diff(8))
when it is within BUCKET_ERROR, or when a side has fewer than
MIN_SAMPLES samples, or fewer than MIN_TAIL beyond the percentile.
"""

import math

from sysretstat.model.fields import PERCENTILES
from sysretstat.model.snapshot import Counts

DIFF_SCHEMA = "sysretstat-diff/1"

# A percentile is the middle of a log-linear bucket 1/8 of a power of two
# wide (model/histogram.py): two readings of one latency can differ by
# this much, and neighbouring buckets' middles always do by less.
BUCKET_ERROR = 0.125
# Under this many samples on a side, a median moves with a few returns.
MIN_SAMPLES = 100
# A tail percentile rests on the samples beyond it: the p99 of 198
# samples is their second largest.  So p99 needs 1,000, p99.9 10,000.
MIN_TAIL = 10
# `record -d 10` runs last 10.00x s: within this share they are the same
# length, and raw counts compare.
DURATION_TOLERANCE = 0.01


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
    # The report's comm view: one grouping of processes by name.
    return {comm: r.counts for comm, r in snap.table("comms").items()}


def by_cgroup(snap):
    # The report's cgroup view, as by_comm: cgroups are matched by path.
    return {path: r.counts for path, r in snap.table("cgroups").items()}


def by_syscall(snap):
    return _grouped(snap.syscalls.values(),
                    lambda r: (r.fields["abi"],
                               r.fields.get("name") or str(r.fields["nr"])))


# The tables a diff compares, by `diff --by` view: the document's
# member, how rows are matched, and a row's identity fields.
BY = {"comm": ("processes", by_comm, lambda k: {"comm": k}),
      "cgroup": ("cgroups", by_cgroup, lambda k: {"cgroup": k}),
      "syscall": ("syscalls", by_syscall, lambda k: {"abi": k[0],
                                                     "name": k[1]})}
VIEWS = ("comm", "cgroup", "syscall")


def lacks_cgroups(snap):
    """A run whose processes have no cgroup (recorded before sysretstat
    kept them): comparing it by cgroup would show every cgroup as new."""
    return bool(snap.processes) and not any(
        "cgroup" in r.fields for r in snap.processes.values())


def default_views(before, after):
    """What a diff compares unless told: process names and syscalls, and
    cgroups where both runs have them."""
    both = not lacks_cgroups(before) and not lacks_cgroups(after) and \
        bool(before.processes or after.processes)
    return ("comm",) + (("cgroup",) if both else ()) + ("syscall",)


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


def is_noise(rel, nb, na, q):
    """Whether a relative change `rel` of the q-quantile, read from nb and
    na samples, is within what the histograms can tell apart (None: no
    change to judge)."""
    if rel is None:
        return None
    n = min(nb, na)
    return (abs(rel) <= BUCKET_ERROR or n < MIN_SAMPLES
            or n * (1 - q) < MIN_TAIL)


def _duration(snap):
    v = snap.meta.get("duration_s")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and v > 0 else None


def normalisation(before, after):
    """Which counts compare: raw, or per second and per 1,000 returns
    (`applied`) when the runs' durations differ."""
    db, da = _duration(before), _duration(after)
    applied = (db is not None and da is not None
               and abs(da - db) > DURATION_TOLERANCE * max(da, db))
    return {"applied": applied, "order": "per_s" if applied else "raw",
            "duration_s": {"before": db, "after": da},
            "returns": {"before": before.totals.returns,
                        "after": after.totals.returns}}


def _scaled(b, a, fb, fa):
    """before, after and delta of {returns, iret} scaled by fb and fa."""
    sb = {"returns": round(b.returns * fb, 6), "iret": round(b.iret * fb, 6)}
    sa = {"returns": round(a.returns * fa, 6), "iret": round(a.iret * fa, 6)}
    return {"before": sb, "after": sa,
            "delta": {k: round(sa[k] - sb[k], 6) for k in sb}}


def _factors(norm):
    """(per second, per 1,000 returns) scale factors of each side, or
    None where the run has no duration or no returns."""
    d, r = norm["duration_s"], norm["returns"]
    per_s = ((1 / d["before"], 1 / d["after"])
             if d["before"] and d["after"] else None)
    per_1k = ((1000 / r["before"], 1000 / r["after"])
              if r["before"] and r["after"] else None)
    return per_s, per_1k


def _lost(cal, c):
    return None if cal is None else round(cal.time_lost_s(c.reasons()), 9)


def _lost_change(cals, b, a):
    lb, la = _lost(cals[0], b), _lost(cals[1], a)
    return {"before": lb, "after": la,
            "delta": None if lb is None or la is None else round(la - lb, 9)}


def compare_counts(b, a, fast_b, fast_a, norm=None, cals=(None, None)):
    """One row: before, after and delta of two Counts."""
    fast = fast_a if fast_a == fast_b else "fast"
    sb, sa = side(b, fast), side(a, fast)
    delta = {"returns": a.returns - b.returns, "iret": a.iret - b.iret,
             "iret_share": round(a.iret_share - b.iret_share, 6)}
    if "latency_ns" in sb and "latency_ns" in sa:
        delta["latency_ns"] = {}
        for path in (fast, "iret"):
            pb, pa = sb["latency_ns"][path], sa["latency_ns"][path]
            d = delta["latency_ns"][path] = {
                n: (None if pb[n] is None or pa[n] is None
                    else pa[n] - pb[n]) for n in (p.key for p in PERCENTILES)}
            d["p50_rel"] = _rel(pb["p50"], pa["p50"])
            d["rel"] = {p.key: _rel(pb[p.key], pa[p.key])
                        for p in PERCENTILES}
            d["noise"] = {p.key: is_noise(d["rel"][p.key], pb["count"],
                                          pa["count"], p.q)
                          for p in PERCENTILES}
            d["samples"] = {"before": pb["count"], "after": pa["count"]}
    lat = delta.get("latency_ns", {}).get(fast, {})
    rel = 0.0 if lat.get("noise", {}).get("p50") else (
        lat.get("p50_rel") or 0.0)
    row = {"before": sb, "after": sa, "delta": delta}
    per_s, per_1k = _factors(norm) if norm else (None, None)
    if per_s:
        row["per_s"] = _scaled(b, a, *per_s)
    if per_1k:
        row["per_1k_returns"] = _scaled(b, a, *per_1k)
    if cals[0] is not None or cals[1] is not None:
        row["time_lost_s"] = _lost_change(cals, b, a)
    if norm and norm["applied"]:
        d = row["per_s"]["delta"]
        row["impact"] = [abs(d["iret"]), abs(d["returns"]), abs(rel)]
    else:
        row["impact"] = [abs(delta["iret"]), abs(delta["returns"]), abs(rel)]
    return row


def _calibration(cal):
    if cal is None:
        return None
    return {"cpu_model": cal.cpu_model, "kernel": cal.kernel,
            "measured_at": cal.measured_at,
            "mean_penalty_ns": cal.mean_penalty_ns, "path": cal.path}


def compare(before, after, top=None, calibrations=(None, None), views=None):
    """The diff document (schema sysretstat-diff/1) of two Snapshots.

    calibrations: each run's machine's IRET penalties (penalty/
    calibration.py's Calibration, or None), for the time lost.
    views: the row tables compared (VIEWS; default_views() if None),
    named by their members in "tables"; "processes" and "syscalls" not
    among them are empty lists (and "cgroups" absent)."""
    if views is None:
        views = default_views(before, after)
    fb, fa = before.fast_path, after.fast_path
    lat = before.totals.lat is not None and after.totals.lat is not None
    cals = tuple(calibrations)
    norm = normalisation(before, after)
    per_s, per_1k = _factors(norm)

    def zero():
        return Counts.zero(lat)

    def strip(c):
        # A side without latency makes the comparison counts-only.
        return c if lat else Counts(c.n)

    doc = {"schema": DIFF_SCHEMA,
           "noise_rule": {"bucket_error": BUCKET_ERROR,
                          "min_samples": MIN_SAMPLES,
                          "min_tail_samples": MIN_TAIL},
           "normalisation": norm,
           "totals": compare_counts(strip(before.totals),
                                    strip(after.totals), fb, fa, norm, cals)}
    if cals[0] is not None or cals[1] is not None:
        t = doc["time_lost"] = dict(
            doc["totals"]["time_lost_s"],
            calibration={"before": _calibration(cals[0]),
                         "after": _calibration(cals[1])})
        if per_s:
            b = None if t["before"] is None else round(
                t["before"] * per_s[0], 9)
            a = None if t["after"] is None else round(
                t["after"] * per_s[1], 9)
            t["per_s"] = {"before": b, "after": a,
                          "delta": None if a is None or b is None
                          else round(a - b, 9)}
    reasons = []
    rb, ra = before.totals, after.totals
    for name in sorted(set(rb.reasons()) | set(ra.reasons())):
        nb, na = rb.reason(name), ra.reason(name)
        sb = nb / rb.returns if rb.returns else 0.0
        sa = na / ra.returns if ra.returns else 0.0
        r = {"reason": name, "before": nb, "after": na, "delta": na - nb,
             "share_before": round(sb, 6), "share_after": round(sa, 6),
             "impact": [abs(na - nb)]}
        if per_s:
            r["per_s_before"] = round(nb * per_s[0], 6)
            r["per_s_after"] = round(na * per_s[1], 6)
            r["per_s_delta"] = round(r["per_s_after"] - r["per_s_before"], 6)
        if per_1k:
            r["per_1k_before"] = round(nb * per_1k[0], 6)
            r["per_1k_after"] = round(na * per_1k[1], 6)
            r["per_1k_delta"] = round(r["per_1k_after"] - r["per_1k_before"],
                                      6)
        if norm["applied"]:
            r["impact"] = [abs(r["per_s_delta"])]
        for s, cal, n in (("before", cals[0], nb), ("after", cals[1], na)):
            if cal is not None:
                r["time_lost_%s_s" % s] = round(cal.time_lost_s({name: n}),
                                                9)
        if cals[0] is not None and cals[1] is not None:
            r["time_lost_delta_s"] = round(
                r["time_lost_after_s"] - r["time_lost_before_s"], 9)
        reasons.append(r)
    reasons.sort(key=lambda r: (-r["impact"][0], r["reason"]))
    doc["reasons"] = reasons

    doc["tables"] = [BY[v][0] for v in VIEWS if v in views]
    for view in VIEWS:
        table, group, ident = BY[view]
        if view not in views:
            if table != "cgroups":
                # Readers of the first version find both members.
                doc[table], doc[table + "_total"] = [], 0
            continue
        gb, ga = group(before), group(after)
        rows = []
        for k in set(gb) | set(ga):
            row = compare_counts(strip(gb.get(k) or zero()),
                                 strip(ga.get(k) or zero()), fb, fa, norm,
                                 cals)
            rows.append(dict(ident(k), **row))
        rows.sort(key=lambda r: ([-x for x in r["impact"]],
                                 str(r.get("comm", r.get("cgroup",
                                                         r.get("name"))))))
        doc[table] = rows[:top] if top else rows
        doc[table + "_total"] = len(rows)
    return doc


def describe(path, snap, schema):
    m = snap.meta
    return {"file": path, "schema": schema, "kernel": m.get("kernel"),
            "cpu_model": m.get("cpu_model"),
            "hostname": m.get("hostname"), "started_at": m.get("started_at"),
            "duration_s": m.get("duration_s"), "command": m.get("command"),
            "fast_path": snap.fast_path}
