"""Batch output of `sysretstat top`: a table or a JSON line per interval."""

import json
import time

from sysretstat.model.fields import PATH_ABBREV, fast_path
from sysretstat.top import rows as tr, columns as tc
from sysretstat.render import units
from sysretstat.top import view as tv
from sysretstat.render.width import fit_lines, fit_table, text_width
from sysretstat.render.safe import safe


def summary_line(delta, state, calibration=None, hosts=None):
    """One line: time, host, rates, shares and the top reasons."""
    m = delta.meta
    t = delta.totals
    dt = tr.interval_of(delta, state.interval)
    host = tv.hosts_text(hosts) if hosts else safe(m.get("hostname", "?"))
    s = "%s  %s  %s" % (time.strftime("%H:%M:%S"), host,
                        tv.rates_text(t, m, dt, calibration))
    rs = t.reasons()
    if rs:
        s += "  reasons: " + ", ".join(
            "%s %s" % (k, units.fmt_pct(v / t.iret)) for k, v in rs.items())
    bpf = m.get("bpf") or {}
    if bpf.get("stats"):
        s += "  bpf %s/s" % units.fmt_ns_short(bpf.get("run_time_ns", 0) / dt)
    lost = tv.lost_count(m)
    if lost:
        s += "  lost %d" % lost
    evicted = tv.evicted_count(m)
    if evicted:
        s += "  evicted %d" % evicted
    return s


def table(delta, state, calibration=None, hosts=None, top=None, width=None):
    """The rows of the view; at `width`, columns go in the order the
    screen drops them (lowest priority first)."""
    rows = tr.build_rows(delta, state, calibration, hosts)
    shown = rows if top is None else rows[:top]
    with_lat = any(r.counts.lat is not None for r in rows)
    cols = tc.columns(state.view, PATH_ABBREV[fast_path(delta.meta)],
                      calibration is not None, with_lat, shown)
    if not shown:
        if tr.lacks_groups(delta, state.view):
            return "  (%s)\n" % tv.NO_GROUPS.get(state.view, "")
        return "  (no returns in this interval)\n"
    body = [[tc.cell(r, c.name) for c in cols] for r in shown]
    drop = [i for _, i in sorted((c.prio, i) for i, c in enumerate(cols)
                                 if c.prio < 100)]

    def fitted(body, drop=drop):
        return fit_table(body, [c.title for c in cols], width, drop=drop,
                         tablefmt="plain", disable_numparse=True,
                         colalign=["right" if c.right else "left"
                                   for c in cols])
    elide = [i for i, c in enumerate(cols) if c.elide]
    if elide and width is not None:
        # As on the screen: once the optional columns are gone, a long
        # cgroup path gives up its start (down to NAME_MIN) before an
        # essential column goes.
        i = elide[0]
        over = text_width(fitted(body, [d for d in drop if cols[d].prio <
                                        tc.ESSENTIAL])) - width
        if over > 0:
            room = max(tc.NAME_MIN, max(len(str(b[i])) for b in body) -
                       over)
            body = [b[:i] + [tc.elide_left(b[i], room, True)] + b[i + 1:]
                    for b in body]
    out = fitted(body)
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
