"""The IRET penalty measured by `sysretstat bench`, kept per machine.

bench saves its result here; top, report and the daemon load it to turn
IRET counts into time: count x penalty.  The file holds one entry per
machine, keyed by CPU model and kernel release (a kernel update changes
entry code and mitigations, so an old entry is not used):

  /var/lib/sysretstat/calibration.json            when run as root
  $XDG_STATE_HOME/sysretstat/calibration.json     otherwise
                                                  (~/.local/state/...)

SYSRETSTAT_CALIBRATION=FILE overrides both.  The penalty of a reason is
its own measurement where bench produced that reason with nothing but the
guard failing, otherwise the pooled mean (the cost of the IRET itself
does not depend on why it was taken).
"""

import json
import logging
import os
import tempfile

from sysretstat.kernel import abi, hostinfo
from sysretstat.errors import CalibrationError
from sysretstat.model.reasons import time_lost_ns

SCHEMA = "sysretstat-calibration/1"
SYSTEM_PATH = "/var/lib/sysretstat/calibration.json"
ENV = "SYSRETSTAT_CALIBRATION"

log = logging.getLogger(__name__)
# What has been warned about: a file is read by more than one caller (and
# again by bench's save), and one problem is worth one line.
_warned = set()


def user_path():
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser(
        "~/.local/state")
    return os.path.join(base, "sysretstat", "calibration.json")


def save_path():
    """Where bench writes."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    return SYSTEM_PATH if os.geteuid() == 0 else user_path()


def search_path():
    """Where load() looks, first match wins: a user's own measurement
    before the machine-wide one."""
    if os.environ.get(ENV):
        return [os.environ[ENV]]
    if os.geteuid() == 0:
        return [SYSTEM_PATH]
    return [user_path(), SYSTEM_PATH]


def machine_key(cpu_model=None, kernel=None):
    return "%s|%s" % (cpu_model or hostinfo.cpu_model(),
                      kernel or hostinfo.kernel_release())


class Calibration:
    """One machine's penalties, in nanoseconds."""

    def __init__(self, entry, path=None):
        self.cpu_model = entry["cpu_model"]
        self.kernel = entry["kernel"]
        self.measured_at = entry.get("measured_at")
        self.mean_penalty_ns = float(entry["mean_penalty_ns"])
        self.mean_ci95_ns = entry.get("mean_ci95_ns")
        self.reasons = {r: float(v) for r, v in
                        (entry.get("reasons") or {}).items()}
        self.path = path

    def penalty_ns(self, reason):
        """Penalty of one IRET return with this reason; None for a name
        that is not an IRET reason (sysret, eretu, '')."""
        if reason not in abi.REASONS:
            return None
        return self.reasons.get(reason, self.mean_penalty_ns)

    def time_lost_ns(self, reasons):
        """Estimated time lost to IRET for {reason: count}."""
        return time_lost_ns(reasons, self)

    def time_lost_s(self, reasons):
        return self.time_lost_ns(reasons) / 1e9

    def describe(self):
        """One line for report headers."""
        return "%.0f ns per IRET return (sysretstat bench%s)" % (
            self.mean_penalty_ns,
            ", " + self.measured_at[:10] if self.measured_at else "")

    def to_json(self):
        return {"cpu_model": self.cpu_model, "kernel": self.kernel,
                "measured_at": self.measured_at,
                "mean_penalty_ns": self.mean_penalty_ns,
                "mean_ci95_ns": self.mean_ci95_ns,
                "reasons": dict(self.reasons), "path": self.path}

    def __repr__(self):
        return "Calibration(%s, mean %.1f ns)" % (self.kernel,
                                                 self.mean_penalty_ns)


def entry_from_result(result):
    """The calibration entry for one bench result, or None if the run has
    no usable penalty (FRED, Xen PV, no guard-only variant)."""
    pooled = result.get("iret_penalty_ns")
    meta = result["meta"]
    if not pooled or meta.get("fred") or meta.get("xen_pv"):
        return None
    return {"cpu_model": meta["cpu_model"], "kernel": meta["kernel"],
            "measured_at": meta.get("started_at"),
            "iterations": meta.get("iterations"),
            "mean_penalty_ns": round(pooled["ns"], 2),
            "mean_ci95_ns": [round(x, 2) for x in pooled["ci95_ns"]],
            "reasons": {r: round(v, 2)
                        for r, v in pooled["reasons"].items()},
            "getpid_ns": result.get("getpid_ns"),
            "warnings": list(result.get("warnings") or ())}


def _warn_once(fmt, *args):
    text = fmt % args
    if text not in _warned:
        _warned.add(text)
        log.warning("%s", text)


def _read(path):
    """The document in `path`, or None (with a warning unless the file
    is simply not there)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    # OSError: unreadable (a directory, no permission); ValueError: not
    # JSON or not UTF-8; RecursionError: nested past the parser's depth.
    except (OSError, ValueError, RecursionError) as e:
        _warn_once("ignoring calibration file %s: %s", path, e)
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or \
            not isinstance(doc.get("machines"), dict):
        _warn_once("ignoring calibration file %s: not %s", path, SCHEMA)
        return None
    return doc


def _check_entry(entry):
    """Raise ValueError where Calibration would fail other than with
    KeyError, TypeError or ValueError (an entry or reasons that is not
    an object: AttributeError)."""
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    if not isinstance(entry.get("reasons") or {}, dict):
        raise ValueError("reasons: not an object")


def save(result, path=None):
    """Store a bench result's penalties for this machine; returns the
    path written, or None when the result has nothing to store."""
    entry = entry_from_result(result)
    if entry is None:
        return None
    path = path or save_path()
    doc = _read(path) or {"schema": SCHEMA, "machines": {}}
    doc["machines"][machine_key(entry["cpu_model"], entry["kernel"])] = entry
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".calibration")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        # Readable by everyone: top and report run as other users.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise CalibrationError("cannot save the calibration to %s: %s"
                               % (path, e.strerror or e))
    return path


def load(cpu_model=None, kernel=None):
    """This machine's calibration (or that of `cpu_model` and `kernel`),
    or None if bench has not been run on it.

    The one loader top, report and the daemon use: a missing, unreadable
    or malformed file, or a bad entry, is None and a warning (once per
    problem), never an exception; the estimate is an extra, and its
    absence only leaves the cost out."""
    key = machine_key(cpu_model, kernel)
    for path in search_path():
        doc = _read(path)
        if doc is None:
            continue
        entry = doc["machines"].get(key)
        if entry is None:
            continue
        try:
            _check_entry(entry)
            return Calibration(entry, path)
        except (KeyError, TypeError, ValueError) as e:
            _warn_once("ignoring calibration entry in %s: %s", path, e)
    return None
