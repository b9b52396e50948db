"""Text tables that follow the terminal width.

`output_width()` is the width text output should fit: $COLUMNS, else the
terminal's, else None (a pipe or file: no limit, every column).
`fit_table()` is tabulate() narrowed to a width the way `top` narrows its
screen: the long explanatory column is wrapped first (or dropped when
too little room is left for it), then the least important columns go, in
the order given, until the table fits.  `elide_left()` shortens a path
that is told apart by its end (a cgroup's leaf), for text and top alike.
"""

import os
import sys
import textwrap

from tabulate import tabulate

MIN_WRAP = 20   # narrower than this, an explanation is dropped, not wrapped
# A path that does not fit loses its start: first to ELIDE_ROOM (a long
# name's room), then as far as ELIDE_MIN.
ELIDE_ROOM = 40
ELIDE_MIN = 12


def output_width(stream=None):
    """Columns to fit: $COLUMNS if a positive integer, else the width of
    the terminal `stream` (default stdout) is, else None (no limit)."""
    v = os.environ.get("COLUMNS", "").strip()
    if v.isdigit() and int(v) > 0:
        return int(v)
    stream = sys.stdout if stream is None else stream
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):
        pass
    return None


def text_width(text):
    return max((len(line) for line in text.splitlines()), default=0)


def fit_lines(text, width):
    """Long single lines (summaries) wrapped at `width`, continuation
    lines indented; tables are fitted with fit_table instead."""
    if width is None:
        return text
    out = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
        else:
            out += textwrap.wrap(line, width, subsequent_indent="  ",
                                 break_on_hyphens=False) or [line]
    return "\n".join(out)


def fit_table(rows, headers, width=None, wrap=None, drop=(),
              colalign=None, **kw):
    """tabulate(rows, headers, colalign=colalign, **kw), no wider than
    `width` where it can be: the column index `wrap` is wrapped to the
    room left (or dropped under MIN_WRAP columns), then the column
    indexes in `drop` are removed in order until the table fits."""
    keep = list(range(len(headers)))

    def render(cols, wrap_at=None):
        body = []
        for r in rows:
            cells = []
            for i in cols:
                c = r[i]
                if i == wrap and wrap_at:
                    c = "\n".join(textwrap.wrap(str(c), wrap_at)) or ""
                cells.append(c)
            body.append(cells)
        args = dict(kw)
        if colalign:
            args["colalign"] = [colalign[i] for i in cols]
        return tabulate(body, headers=[headers[i] for i in cols], **args)

    out = render(keep)
    if width is None or text_width(out) <= width:
        return out
    for victim in ([wrap] if wrap is not None else []) + list(drop):
        if victim not in keep:
            continue
        if victim == wrap:
            natural = max([len(str(headers[wrap]))] +
                          [len(str(r[wrap])) for r in rows])
            room = width - (text_width(out) - natural)
            if room >= max(MIN_WRAP, len(str(headers[wrap]))):
                wrapped = render(keep, room)
                if text_width(wrapped) <= width:
                    return wrapped
        keep.remove(victim)
        out = render(keep)
        if text_width(out) <= width:
            return out
    return out


def elide_left(text, width, ascii=False):
    """`text` in at most `width` characters, its start given up for its
    end: a cgroup path is told apart by its leaf, so "/system.slice/
    docker-abc.scope" becomes "…/docker-abc.scope" (from a "/" on where
    the leaf fits, else the leaf's end).  ascii: "..." for the mark."""
    text = str(text)
    if len(text) <= width:
        return text
    mark = "..." if ascii else "\u2026"
    room = width - len(mark)
    if room <= 0:
        return text[len(text) - width:] if width > 0 else ""
    tail = text[len(text) - room:]
    cut = tail.find("/")
    if cut > 0:
        # Whole components after the mark, not the end of one.
        tail = tail[cut:]
    return mark + tail


def fit_table_elided(rows, headers, width, col, **kw):
    """fit_table(rows, headers, width, **kw), where column `col` holds
    paths told apart by their end (cgroups): too wide, they give up
    their start (elide_left, "...") before other columns go, to
    ELIDE_ROOM, and then as far as ELIDE_MIN if the table still does
    not fit."""
    out = fit_table(rows, headers, width, **kw)
    if width is None or text_width(out) <= width or not rows:
        return out

    def short(room):
        return [list(r[:col]) + [elide_left(r[col], room, True)] +
                list(r[col + 1:]) for r in rows]
    room = min(max(len(str(r[col])) for r in rows), ELIDE_ROOM)
    out = fit_table(short(room), headers, width, **kw)
    if text_width(out) > width:
        out = fit_table(short(max(ELIDE_MIN, room - (text_width(out) -
                                                     width))),
                        headers, width, **kw)
    return out
