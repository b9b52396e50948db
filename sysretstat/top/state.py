"""What the user of `sysretstat top` chose, and how each key changes it.

ViewState is everything a frame needs besides data; handle_key() is the
only place a key press changes it.
"""

from dataclasses import dataclass, field

from sysretstat.model.fields import TABLE_OF_VIEW

# Every view in the order of its number key (1 process ... 7 cgroup).
# A view keeps its number whether or not the others are there (host
# only with --per-host), so that a key, the help and the status line
# always agree; cgroup came after host, hence 7.  comm (processes
# summed by command name, model/fields.py GROUPED) sits next to process:
# a build's hundreds of cc1 processes read as one row there.
VIEW_KEYS = tuple(TABLE_OF_VIEW)[:1] + ("comm",) + \
    tuple(TABLE_OF_VIEW)[1:] + ("host", "cgroup")
# The views of a local top (host needs --per-host).
VIEWS = tuple(v for v in VIEW_KEYS if v != "host")

# Sort keys, in the order `s` steps through them, with their titles.
SORT_KEYS = ("returns", "iret", "iret_share", "reason", "cost", "p50", "p99",
             "iret_p50", "iret_p99", "id", "name")

SORT_TITLES = {"returns": "RET/s", "iret": "IRET/s", "iret_share": "IRET%",
               "reason": "REASON", "cost": "COST/s", "p50": "p50",
               "p99": "p99", "iret_p50": "IRET p50", "iret_p99": "IRET p99",
               "id": "id", "name": "name"}

# Keys whose natural order is ascending (names and ids read A..Z, 1..N).
ASCENDING = ("id", "name", "reason")


@dataclass
class ViewState:
    """What the user chose; everything render() needs besides data."""
    view: str = "process"
    sort: str = "iret"
    reverse: bool = False          # flip the key's natural order
    filter: str = ""
    editing: str = None            # filter text being typed, or None
    paused: bool = False
    help: bool = False
    detail: bool = False
    sel: int = 0                   # index of the selected row
    sel_key: object = None         # its key, to follow it across frames
    sel_away: bool = False         # its row is not in this frame
    top: int = 0                   # first table row on screen
    views: tuple = VIEWS           # + ("host",) with --per-host, any order
    ascii: bool = False            # no Unicode block characters
    interval: float = 1.0
    message: str = ""
    hidden: set = field(default_factory=set)  # columns left out


def handle_key(state, key, rows, page=10):
    """Apply one key (a character, or a name: up, down, pgup, pgdn, home,
    end, enter, esc, tab, btab, backspace) to the state.

    Returns "quit" for q, else None.  `rows` is what build_rows gave.
    """
    state.message = ""
    if state.editing is not None:
        if key == "enter":
            state.filter, state.editing = state.editing.strip(), None
            state.sel, state.sel_key, state.top = 0, None, 0
        elif key == "esc":
            state.editing = None
        elif key == "backspace":
            state.editing = state.editing[:-1]
        elif isinstance(key, str) and len(key) == 1 and key.isprintable():
            state.editing += key
        return None
    if state.help:
        state.help = False
        return "quit" if key == "q" else None
    n = len(rows)
    if key == "q":
        return "quit"
    if key in ("h", "?"):
        state.help = True
    elif key == "esc":
        if state.detail:
            state.detail = False
        elif state.filter:
            state.filter = ""
    elif key == "enter":
        state.detail = not state.detail and n > 0
    elif key in ("tab", "btab"):
        views = ordered(state.views)
        i = views.index(state.view) if state.view in views else 0
        _switch(state, views[(i + (1 if key == "tab" else -1)) % len(views)])
    elif isinstance(key, str) and len(key) == 1 and key.isdigit():
        i = int(key) - 1
        if 0 <= i < len(VIEW_KEYS) and VIEW_KEYS[i] in state.views:
            _switch(state, VIEW_KEYS[i])
    elif key in ("s", ">", "S", "<"):
        i = SORT_KEYS.index(state.sort) if state.sort in SORT_KEYS else 0
        step = 1 if key in ("s", ">") else -1
        state.sort = SORT_KEYS[(i + step) % len(SORT_KEYS)]
        state.reverse = False
    elif key == "r":
        state.reverse = not state.reverse
    elif key == "/":
        state.editing = state.filter
    elif key in ("p", " "):
        state.paused = not state.paused
    elif key in ("down", "j", "up", "k", "pgdn", "pgup", "home", "end", "g",
                 "G"):
        move = {"down": 1, "j": 1, "up": -1, "k": -1, "pgdn": page,
                "pgup": -page, "home": -n, "g": -n, "end": n, "G": n}[key]
        state.sel = max(0, min(n - 1, state.sel + move))
        state.sel_key = rows[state.sel].key if n else None
    return None


def view_number(view):
    """The digit key of a view (VIEW_KEYS), or None for one without."""
    return VIEW_KEYS.index(view) + 1 if view in VIEW_KEYS else None


def ordered(views):
    """Views in the order of their keys (Tab's order), keyless last."""
    return sorted(views, key=lambda v: (view_number(v) or len(VIEW_KEYS) + 1,
                                        v))


def _switch(state, view):
    if view != state.view:
        state.view = view
        state.sel, state.sel_key, state.top = 0, None, 0
        state.detail = False
