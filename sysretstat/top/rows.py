"""The rows of top's current view: one RowView per row of the interval
snapshot, filtered and sorted, and the selection kept on its row as the
order changes under it.
"""

from sysretstat.model.fields import GROUPED, REPORT_VIEWS as TABLE_OF
from sysretstat.model.reasons import FIRST_IRET, time_lost_ns
from sysretstat.model.snapshot import Counts, counts_sort_value
from sysretstat.render.safe import safe
from sysretstat.top.state import ASCENDING


class RowView:
    """One table row as top shows it: identity, counts, rates."""

    __slots__ = ("key", "ident", "name", "counts", "dt", "cost_ns", "host",
                 "down")

    def __init__(self, key, ident, name, counts, dt, cost_ns=None,
                 host=None, down=False):
        self.key = key
        self.ident = ident      # tuple of identity cells (pid, tid, ...)
        self.name = name
        self.counts = counts
        self.dt = dt
        self.cost_ns = cost_ns  # estimated ns lost to IRET, or None
        self.host = host        # its daemon's label (--connect), or None
        # A host whose daemon was not read (down, or no second snapshot
        # yet): its zeros are no measurement.
        self.down = down

    def rate(self, n):
        return n / self.dt if self.dt > 0 else 0.0


def interval_of(snap, default=1.0):
    m = snap.meta if snap is not None else {}
    dt = m.get("interval_s") or m.get("duration_s") or 0
    return dt if dt and dt > 0 else default


def iret_cost_ns(counts, calibration):
    """Estimated ns lost to IRET: each reason's count times its penalty."""
    if calibration is None:
        return None
    return time_lost_ns(counts.reasons(), calibration)


def row_cost_ns(counts, calibration, host=None):
    """iret_cost_ns(), with the row's own host's penalty where the
    calibration is a fleet's (source/remote.py FleetPenalty): the
    fleet's penalty is weighted by the whole interval's reasons, so one
    host's row costed with it would take the others' penalties."""
    if calibration is None:
        return None
    if host is not None and hasattr(calibration, "for_host") and \
            hasattr(calibration, "cost_ns"):
        return calibration.cost_ns(counts, host)
    return iret_cost_ns(counts, calibration)


def _host_of(key, snap, calibration):
    """The calibration's name for a host view row: its key, or for a
    host marked down (key "label (unreachable ...)"), its hostname."""
    if calibration is not None and hasattr(calibration, "for_host") and \
            calibration.for_host(key) is not None:
        return key
    return snap.meta.get("hostname") or key


def _ident(view, f, key):
    if f.get("host"):
        # A row of one daemon among several (--connect).
        ident, name = _ident(view, dict(f, host=None), key)
        host = safe(f["host"])
        return ident, "%s@%s" % (name, host) if name else host
    if view == "process":
        return (f.get("pid"),), safe(f.get("comm", ""))
    if view == "thread":
        return (f.get("tid"), f.get("pid")), safe(f.get("comm", ""))
    if view == "syscall":
        return (f.get("nr"), safe(f.get("abi", ""))), safe(f.get("name", ""))
    if view == "cpu":
        return (f.get("cpu"),), ""
    if view == "comm":
        return (f.get("processes"),), safe(f.get("comm", ""))
    if view == "cgroup":
        # "" is a process whose cgroup the collector could not read.
        return (f.get("processes"),), safe(f.get("cgroup") or "?")
    return (), str(key)


class ViewRows:
    """A view's rows, in order, each RowView made when first read: a
    frame sorts thousands of rows and shows a screenful.  Reads as a
    list of RowViews (index, slice, len, iteration)."""

    __slots__ = ("keys", "_made", "_make")

    def __init__(self, keys, make):
        # The rows' keys in order; make(i) makes the RowView of the i-th.
        self.keys = keys
        self._made = [None] * len(keys)
        self._make = make

    def __len__(self):
        return len(self.keys)

    def __bool__(self):
        return bool(self.keys)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self.keys)))]
        r = self._made[i]
        if r is None:
            r = self._made[i] = self._make(i)
        return r

    def __iter__(self):
        for i in range(len(self.keys)):
            yield self[i]

    def index(self, key):
        """The position of the row of `key` (ValueError if none)."""
        return self.keys.index(key)


# Sort values read straight from a row's Counts, for the figures most
# views sort by (see counts_sort_value): no RowView needed to sort.
_FIGURES = {
    "returns": lambda c: sum(c.n),
    "iret": lambda c: c.iret,
    "sysret": lambda c: c.sysret,
}

# A view's identity cells of a row's fields, by the fields dict:
# {view: {id(fields): (fields, ident, name, host, tie)}}.  Rows of
# successive snapshots and their deltas share a fields dict while the
# row's identity is unchanged, and never change it, so a frame of
# thousands of rows mostly finds theirs here; the dict is held, so its
# id cannot be another's.
_IDENTS = {}


def _ident_cache(view, rows):
    cache = _IDENTS.get(view)
    # Bounded: emptied once it holds many more than the table (rows
    # gone since, or a source whose rows are new every frame).
    if cache is None or len(cache) > 2 * rows + 1024:
        cache = _IDENTS[view] = {}
    return cache


def build_rows(delta, state, calibration=None, hosts=None):
    """The rows of the current view, filtered and sorted."""
    dt = interval_of(delta, state.interval)
    if state.view == "host":
        rows = []
        for host, snap in sorted((hosts or {}).items()):
            c = snap.totals
            down = "unreachable_since" in snap.meta
            rows.append(RowView(host, (), safe(host), c,
                                interval_of(snap, dt), None if down else
                                row_cost_ns(c, calibration,
                                            _host_of(host, snap,
                                                     calibration)),
                                down=down))
        if state.filter:
            rows = [r for r in rows if matches(r, state.filter)]
        sort_rows(rows, state.sort, state.reverse)
        return rows
    if delta is None:
        return []
    view, key = state.view, state.sort
    by_cost = key == "cost"
    table = delta.table(TABLE_OF[view])
    keys, rows = list(table), list(table.values())
    # Each row's (fields, ident, name, host, tie), mostly from the cache.
    cache = _ident_cache(view, len(rows))
    idents = [cache.get(id(r.fields)) for r in rows]
    for i, e in enumerate(idents):
        if e is None:
            k, f = keys[i], rows[i].fields
            ident, name = _ident(view, f, k)
            # As sort_rows, ties go by identity, then by name.  Flat
            # (the identity's cells, then the name), which orders as
            # (ident, name) does (a view's identities are all as long)
            # and sorts several times faster: its first cells are ints.
            e = idents[i] = (f, ident, name, f.get("host"),
                             ident + (str(name),) if ident else (str(k),))
            if ident:
                # Without identity cells the name is the row's key.
                cache[id(f)] = e
    if state.filter:
        text = state.filter
        keep = [i for i, e in enumerate(idents)
                if _matches(e[1], e[2], text)]
        keys = [keys[i] for i in keep]
        rows = [rows[i] for i in keep]
        idents = [idents[i] for i in keep]
    counts = [r.counts for r in rows]
    costs = [row_cost_ns(c, calibration, e[3])
             for c, e in zip(counts, idents)] if by_cost else None
    # On indexes, so that neither sort calls Python per comparison:
    # by identity, then (stably) by the key.
    order = sorted(range(len(idents)),
                   key=[e[4] for e in idents].__getitem__)
    if key == "iret":
        # The default sort, inlined (Counts.iret).
        first = FIRST_IRET
        vals = [sum(c.n[first:]) for c in counts]
    elif key in _FIGURES:
        vals = list(map(_FIGURES[key], counts))
    elif by_cost:
        vals = [v or 0.0 for v in costs]
    elif key == "name":
        vals = [str(e[2]).lower() for e in idents]
    elif key == "id":
        vals = [e[1] for e in idents]
    else:
        vals = []
        for c in counts:
            v = counts_sort_value(c, key)
            vals.append(c.returns if v is None else v)
    desc = key not in ASCENDING
    if state.reverse:
        desc = not desc
    order.sort(key=vals.__getitem__, reverse=desc)

    def make(i):
        j = order[i]
        _, ident, name, host, _ = idents[j]
        c = counts[j]
        return RowView(keys[j], ident, name, c, dt,
                       costs[j] if by_cost else
                       row_cost_ns(c, calibration, host), host)
    return ViewRows([keys[i] for i in order], make)


def _matches(ident, name, text):
    if text.isdigit() and any(str(i) == text for i in ident):
        return True
    return text.lower() in str(name).lower()


def matches(row, text):
    return _matches(row.ident, row.name, text)


def sort_value(row, key):
    if key == "cost":
        return row.cost_ns or 0.0
    if key == "name":
        return str(row.name).lower()
    if key == "id":
        return row.ident
    v = counts_sort_value(row.counts, key)
    return row.counts.returns if v is None else v


def sort_rows(rows, key, reverse=False):
    # Figures sort largest first, names and ids in reading order; ties
    # by id, so that rows do not jump between frames.
    desc = key not in ASCENDING
    if reverse:
        desc = not desc
    # Idents can tie (CPU 0 of two hosts, two comms of as many
    # processes): the name settles them, or such rows swap between frames.
    rows.sort(key=lambda r: (r.ident, str(r.name)) if r.ident
              else ((), str(r.key)))
    rows.sort(key=lambda r: sort_value(r, key), reverse=desc)
    return rows


def follow_selection(state, rows, alive=None):
    """Keep the same row selected while the order changes under it;
    True when the selected row is in `rows`.

    A row with no returns this interval is missing from `rows` but may
    be back in the next: unless `alive(key)` says it is gone for good
    (it left the cumulative table), its key stays selected, with
    state.sel_away set (nothing highlighted), and it is highlighted
    again when it reappears.  Moving the selection to whichever row
    took its place would lose it for good."""
    state.sel_away = False
    if state.sel_key is not None:
        if isinstance(rows, ViewRows):
            # Found among the keys: no row made for it.
            try:
                state.sel = rows.index(state.sel_key)
                return True
            except ValueError:
                pass
        else:
            for i, r in enumerate(rows):
                if r.key == state.sel_key:
                    state.sel = i
                    return True
        if alive is None or alive(state.sel_key):
            state.sel_away = True
            state.sel = max(0, min(state.sel, len(rows) - 1))
            return False
    state.sel = max(0, min(state.sel, len(rows) - 1))
    state.sel_key = rows[state.sel].key if rows else None
    return False


def view_keys(snap, view):
    """The keys of a view's table in `snap`: for a grouped one (comm),
    its group values, without summing every row's counts (the
    cumulative snapshot holds every process seen since start)."""
    table = TABLE_OF[view]
    if table in GROUPED:
        src, field = GROUPED[table]
        rows = snap.table(src).values()
        # As model/snapshot.py grouped(): processes of a recording or
        # source without cgroups make no cgroup row, not one of "".
        if field != "comm" and not any(field in r.fields for r in rows):
            return set()
        return {r.fields.get(field) or "" for r in rows}
    return snap.table(table)


def lacks_groups(snap, view):
    """Whether `view` is a grouped one with nothing to group by: the
    source's processes carry no such field (a daemon or recording from
    before sysretstat kept cgroups)."""
    table = TABLE_OF.get(view)
    if snap is None or table not in GROUPED:
        return False
    return bool(snap.table(GROUPED[table][0])) and not view_keys(snap, view)


def idle_row(key, delta, state, cumulative):
    if key is None or cumulative is None or state.view not in TABLE_OF:
        return None
    r = cumulative.table(TABLE_OF[state.view]).get(key)
    if r is None:
        return None
    ident, name = _ident(state.view, r.fields, key)
    return RowView(key, ident, name, Counts.zero(r.counts.lat is not None),
                   interval_of(delta, state.interval),
                   host=r.fields.get("host"))


def cumulative_counts(row, state, cumulative):
    if cumulative is None or state.view not in TABLE_OF:
        return None
    r = cumulative.table(TABLE_OF[state.view]).get(row.key)
    return r.counts if r is not None else None
