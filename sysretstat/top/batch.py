"""Batch output of `sysretstat top`: a table or a JSON line per interval."""

import json
import time

from sysretstat.top import view as tv
from sysretstat.render.width import fit_lines, fit_table
from sysretstat.render.safe import safe


def summary_line(delta, state, calibration=None, hosts=None):
    """One line: time, host, rates, shares and the top reasons."""
    m = delta.meta
    t = delta.totals
    dt = tv.interval_of(delta, state.interval)
    host = "%d hosts" % len(hosts) if hosts else safe(m.get("hostname", "?"))
    fast = "ERETU" if m.get("guard", {}).get("fred") else "SYSRET"
    fast_n = t.eretu if fast == "ERETU" else t.sysret
    s = "%s  %s  returns %s/s  %s %s  IRET %s/s (%s)" % (
        time.strftime("%H:%M:%S"), host, tv.fmt_rate(t.returns / dt), fast,
        tv.fmt_pct(fast_n / t.returns) if t.returns else "-",
        tv.fmt_rate(t.iret / dt), tv.fmt_pct(t.iret_share)
        if t.returns else "-")
    if calibration is not None:
        s += "  IRET cost ~%s/s" % tv.fmt_ns(
            (tv.iret_cost_ns(t, calibration) or 0) / dt)
    rs = t.reasons()
    if rs:
        s += "  reasons: " + ", ".join(
            "%s %s" % (k, tv.fmt_pct(v / t.iret)) for k, v in rs.items())
    bpf = m.get("bpf") or {}
    if bpf.get("stats"):
        s += "  bpf %s/s" % tv.fmt_ns(bpf.get("run_time_ns", 0) / dt)
    lost = tv.lost_count(m)
    if lost:
        s += "  lost %d" % lost
    return s


def table(delta, state, calibration=None, hosts=None, top=None, width=None):
    """The rows of the view; at `width`, columns go in the order the
    screen drops them (lowest priority first)."""
    rows = tv.build_rows(delta, state, calibration, hosts)
    shown = rows if top is None else rows[:top]
    fred = delta.meta.get("guard", {}).get("fred")
    with_lat = any(r.counts.lat is not None for r in rows)
    cols = tv.columns(state.view, "ER" if fred else "SR",
                      calibration is not None, with_lat, shown)
    if not shown:
        return "  (no returns in this interval)\n"
    body = [[tv.cell(r, c.name) for c in cols] for r in shown]
    drop = [i for _, i in sorted((c.prio, i) for i, c in enumerate(cols)
                                 if c.prio < 100)]
    out = fit_table(body, [c.title for c in cols], width, drop=drop,
                    tablefmt="plain", disable_numparse=True,
                    colalign=["right" if c.right else "left" for c in cols])
    if top is not None and len(rows) > top:
        out += "\n  (%d more rows)" % (len(rows) - top)
    return out + "\n"


def text_frame(delta, state, calibration=None, hosts=None, top=None,
               width=None):
    """Summary line and table, fitted to `width` columns (None: any)."""
    return "%s\n%s\n" % (
        fit_lines(summary_line(delta, state, calibration, hosts), width),
        table(delta, state, calibration, hosts, top, width))


def json_lines(delta, top=None, hosts=None):
    """One report-schema document per line: the interval, or with
    --per-host one per host."""
    docs = [s.to_report(top=top) for _, s in sorted(hosts.items())] \
        if hosts else [delta.to_report(top=top)]
    return "".join(json.dumps(d, separators=(",", ":")) + "\n"
                   for d in docs)
