"""Text that is safe to print on a terminal.

Names and command lines come from other users (a comm is whatever a
process wrote to /proc/self/comm) or from files.  Every text output
passes them through safe() so that no escape sequence reaches the
terminal: control characters (C0, DEL, C1), line and paragraph
separators and bidirectional overrides become visible escapes, and a
backslash is doubled so that the escaped form is unambiguous.  JSON
escapes control characters by construction and does not use this.
"""

import unicodedata

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e",
          "\\": "\\\\"}


def _esc(ch):
    if ch in _NAMED:
        return _NAMED[ch]
    o = ord(ch)
    if o <= 0xff:
        return "\\x%02x" % o
    return "\\u%04x" % o if o <= 0xffff else "\\U%08x" % o


def _unsafe(ch):
    return ch == "\\" or (not ch.isprintable() and ch != " ") or \
        unicodedata.category(ch) == "Cf"


def safe(value):
    """`value` as printable text: str() of it, with every character that
    could move the cursor, change the terminal's state or reorder the
    line written as an escape (ESC as \\e, others as \\xNN or \\uNNNN)."""
    s = value if isinstance(value, str) else str(value)
    if s.isascii() and s.isprintable() and "\\" not in s:
        return s
    return "".join(_esc(c) if _unsafe(c) else c for c in s)
