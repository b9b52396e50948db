"""The curses painter of `sysretstat top`: paints what top/view.py renders.

It knows nothing about snapshots.  It maps styles to attributes (colour
only when the terminal has it and NO_COLOR is unset), turns curses key
codes into the names top/state.py's handle_key takes, and draws each frame
with erase + noutrefresh + doupdate, so that curses sends only the
difference and the screen does not flicker.
"""

import curses
import os
import sys

from sysretstat.errors import SysretstatError

# Style -> (colour, extra attributes); colour None keeps the default.
STYLES = {
    "title": (curses.COLOR_CYAN, curses.A_BOLD),
    "head": (None, curses.A_REVERSE),
    "sel": (None, curses.A_REVERSE | curses.A_BOLD),
    "hot": (curses.COLOR_RED, 0),
    "warn": (curses.COLOR_YELLOW, curses.A_BOLD),
    "dim": (None, curses.A_DIM),
    "bar0": (curses.COLOR_GREEN, 0),
    "bar1": (curses.COLOR_RED, 0),
    "key": (None, curses.A_DIM),
    "input": (None, curses.A_BOLD),
}
# Without colour, styles that only had a colour need another mark.
MONO = {"hot": curses.A_BOLD, "bar0": 0, "bar1": curses.A_BOLD}

KEYS = {
    curses.KEY_UP: "up", curses.KEY_DOWN: "down", curses.KEY_PPAGE: "pgup",
    curses.KEY_NPAGE: "pgdn", curses.KEY_HOME: "home", curses.KEY_END: "end",
    curses.KEY_ENTER: "enter", 10: "enter", 13: "enter", 27: "esc",
    9: "tab", curses.KEY_BTAB: "btab", curses.KEY_BACKSPACE: "backspace",
    127: "backspace", 8: "backspace", curses.KEY_RESIZE: "resize",
}


def use_colour(environ=None):
    env = os.environ if environ is None else environ
    # https://no-color.org: present and not empty disables colour.
    return not env.get("NO_COLOR")


class Painter:
    def __init__(self, scr, colour=True):
        self.scr = scr
        self.attrs = {}
        colour = colour and curses.has_colors()
        if colour:
            curses.start_color()
            try:
                curses.use_default_colors()
                bg = -1
            except curses.error:
                bg = curses.COLOR_BLACK
        pair = 0
        for style, (fg, extra) in STYLES.items():
            attr = extra
            if fg is not None:
                if colour:
                    pair += 1
                    curses.init_pair(pair, fg, bg)
                    attr |= curses.color_pair(pair)
                else:
                    attr |= MONO.get(style, 0)
            self.attrs[style] = attr
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        scr.keypad(True)
        # Esc alone should not wait a second for a sequence to follow.
        try:
            curses.set_escdelay(25)
        except (AttributeError, curses.error):
            pass

    def size(self):
        return self.scr.getmaxyx()[::-1]

    def resized(self):
        """Whether the terminal's size differs from the screen's; then
        adopt it.  SIGWINCH can be missed (a blocked or ignored signal
        inherited from the parent), so the size is also polled."""
        try:
            w, h = os.get_terminal_size(sys.__stdout__.fileno())
        except (OSError, AttributeError, ValueError):
            return False
        if (h, w) == self.scr.getmaxyx():
            return False
        curses.resizeterm(h, w)
        return True

    def paint(self, lines):
        scr = self.scr
        h, w = scr.getmaxyx()
        scr.erase()
        for y, line in enumerate(lines[:h]):
            x = 0
            for text, style in line:
                if x >= w:
                    break
                text = text[:w - x]
                try:
                    scr.addstr(y, x, text, self.attrs.get(style, 0))
                except curses.error:
                    # Writing the bottom-right cell moves the cursor off
                    # the screen, which curses reports after drawing.
                    pass
                x += len(text)
        scr.noutrefresh()
        curses.doupdate()

    def key(self, timeout_ms):
        """The next key as handle_key names it, or None after timeout."""
        self.scr.timeout(max(0, int(timeout_ms)))
        try:
            k = self.scr.get_wch()
        except curses.error:
            return None
        except KeyboardInterrupt:
            return "q"
        if isinstance(k, str):
            code = ord(k) if len(k) == 1 else -1
            return KEYS.get(code, k) if code in (9, 10, 13, 27, 127, 8) \
                else k
        if k == curses.KEY_RESIZE:
            curses.update_lines_cols()
        return KEYS.get(k)


def session(fn, *args):
    """Run fn(screen, *args) in curses mode and always restore the
    terminal.  Unlike curses.wrapper, colours are left to Painter, so
    that NO_COLOR leaves no colour sequence at all."""
    try:
        scr = curses.initscr()
    except curses.error:
        # No terminfo for $TERM (unset, or a terminal this host lacks).
        raise SysretstatError(
            "cannot start the full-screen view: unknown terminal type "
            "TERM=%r (set TERM, or use -b for batch output)"
            % os.environ.get("TERM", ""))
    try:
        curses.noecho()
        curses.cbreak()
        return fn(scr, *args)
    finally:
        scr.keypad(False)
        curses.nocbreak()
        curses.echo()
        curses.endwin()
