"""Plain-text rendering of a snapshot: summary, reasons, tables."""

from tabulate import tabulate

from .reasons import EXPLAIN

TABLE_TITLES = {"processes": "By process", "threads": "By thread",
                "syscalls": "By syscall", "cpus": "By CPU"}
BY = {"process": "processes", "thread": "threads", "syscall": "syscalls",
      "cpu": "cpus"}


def fmt_ns(v):
    if v is None:
        return "-"
    if v < 1e3:
        return "%.0fns" % v
    if v < 1e6:
        return "%.1fus" % (v / 1e3)
    if v < 1e9:
        return "%.1fms" % (v / 1e6)
    return "%.2fs" % (v / 1e9)


def summary(snap):
    t = snap.totals
    m = snap.meta
    g = m.get("guard", {})
    mode = "FRED (every return is ERETU)" if g.get("fred") else (
        "Xen PV (every return is IRET)" if g.get("xen_pv") else
        "%s-level paging, TASK_SIZE_MAX %#x"
        % ("5" if g.get("la57") else "4", g.get("task_size_max", 0)))
    lines = [
        "host %s  kernel %s  %s" % (m.get("hostname", "?"),
                                    m.get("kernel", "?"),
                                    m.get("cpu_model", "?")),
        "guard: %s" % mode,
        "duration %.1fs%s" % (m.get("duration_s") or 0,
                              "  command: %s" % m["command"]
                              if m.get("command") else ""),
        "returns %d  sysret %d  iret %d (%.2f%%)%s" % (
            t.returns, t.sysret, t.iret, 100 * t.iret_share,
            "  eretu %d" % t.eretu if t.eretu else ""),
    ]
    return "\n".join(lines) + "\n"


def reasons_table(counts):
    rs = counts.reasons()
    if not rs:
        return "no IRET returns\n"
    iret = counts.iret
    rows = [[name, n, "%.1f%%" % (100.0 * n / iret), EXPLAIN.get(name, "")]
            for name, n in rs.items()]
    return tabulate(rows, headers=["reason", "returns", "share", "cause"],
                    tablefmt="simple") + "\n"


def table_rows(snap, table, top):
    rows = []
    for r in snap.sorted_rows(table)[:top]:
        c = r.counts
        f = r.fields
        ident = {"processes": lambda: [f["pid"], f.get("comm", "")],
                 "threads": lambda: [f["pid"], f["tid"], f.get("comm", "")],
                 "syscalls": lambda: [f["abi"], f["nr"], f["name"]],
                 "cpus": lambda: [f["cpu"]]}[table]()
        lat = c.lat
        row = ident + [c.returns, c.sysret + c.eretu, c.iret,
                       "%.1f%%" % (100 * c.iret_share), c.top_reason() or "-"]
        if lat is not None:
            row += [fmt_ns(lat[0].percentile(.5)), fmt_ns(lat[0].percentile(.99)),
                    fmt_ns(lat[1].percentile(.5)), fmt_ns(lat[1].percentile(.99))]
        rows.append(row)
    return rows


def table_headers(table, with_latency):
    ident = {"processes": ["pid", "comm"], "threads": ["pid", "tid", "comm"],
             "syscalls": ["abi", "nr", "syscall"], "cpus": ["cpu"]}[table]
    h = ident + ["returns", "sysret", "iret", "iret%", "top reason"]
    if with_latency:
        h += ["sysret p50", "sysret p99", "iret p50", "iret p99"]
    return h


def render_table(snap, table, top):
    rows = table_rows(snap, table, top)
    with_lat = any(r.counts.lat is not None
                   for r in snap.table(table).values())
    out = "%s (top %d of %d)\n" % (TABLE_TITLES[table], min(top, len(
        snap.table(table))), len(snap.table(table)))
    if not rows:
        return out + "  (none)\n"
    return out + tabulate(rows, headers=table_headers(table, with_lat),
                          tablefmt="simple") + "\n"


def render_report(snap, by=None, top=20):
    parts = [summary(snap), "\nIRET reasons\n" + reasons_table(snap.totals)]
    tables = [BY[by]] if by else ["processes", "syscalls", "threads", "cpus"]
    for t in tables:
        parts.append("\n" + render_table(snap, t, top))
    lost = {k: v for k, v in snap.meta.get("lost", {}).items() if v}
    if lost:
        parts.append("\nlost: " + ", ".join("%s %s" % kv
                                           for kv in sorted(lost.items()))
                     + "\n")
    return "".join(parts)
