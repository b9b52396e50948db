"""`report --json`: the report schema document, written out.

The document itself is built by the model (`Snapshot.to_report`), the
one implementation every JSON output uses (report, top's batch lines,
the daemon's API); this module only chooses its tables and writes it.
"""

import json
import sys

from sysretstat.model.fields import GROUPED, REPORT_VIEWS, TABLES


def tables_for(by):
    """Which tables `--by` keeps: all, one, or none (reason, latency and
    interval views are in totals and series)."""
    if by is None:
        return TABLES + tuple(GROUPED)
    return (REPORT_VIEWS[by],) if by in REPORT_VIEWS else ()


def dump(doc, stream=sys.stdout):
    # Indented for a person at a terminal; compact into a pipe or file,
    # where json.dumps's C encoder is several times faster (json.dump
    # and indent use the pure-Python one).
    if stream.isatty():
        stream.write(json.dumps(doc, indent=1))
    else:
        stream.write(json.dumps(doc, separators=(",", ":")))
    stream.write("\n")
