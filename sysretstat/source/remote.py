"""Snapshots of remote daemons, for `sysretstat top --connect URL`.

Each daemon's /api/v1/snapshot is read into a Snapshot (the report
schema round-trips); the merged view sums them, with process, thread
and CPU rows keyed by host so that pid 1 of two hosts stays two rows.
Syscall rows are keyed by syscall alone: summing getpid across a fleet
is the point of merging.
"""

import http.client
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait as wait_futures
from urllib.parse import urlsplit, urlunsplit

from sysretstat import __version__
from sysretstat.errors import RemoteError, UsageError
from sysretstat.model.reasons import REASONS, time_lost_ns
from sysretstat.model.snapshot import Snapshot

SNAPSHOT_PATH = "/api/v1/snapshot"
AGE_HEADER = "X-Sysretstat-Age"    # serve/server.py sets it
INTERVAL_PATH = "/api/v1/interval"
# Rows of a table that are keyed per host in a merged snapshot.
PER_HOST = ("processes", "threads", "cpus")


def base_url(url):
    """http://HOST:PORT of what a user typed (host:port, a full URL)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("--connect: not a daemon URL: %r" % url)
    path = parts.path.rstrip("/")
    for suffix in (SNAPSHOT_PATH, INTERVAL_PATH, "/metrics"):
        if path.endswith(suffix):
            path = path[:-len(suffix)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class RemoteSource:
    """Cumulative snapshots of one or more daemons.

    snapshot() -> the merged Snapshot; snapshots() -> {host: Snapshot}.
    A daemon that cannot be read raises RemoteError (one line), unless
    `tolerate` is set: then it is left out and its error kept in
    `.errors` ({url: message}) until the next read.
    """

    def __init__(self, urls, timeout=5.0, top=None, tolerate=False):
        if not urls:
            raise UsageError("--connect: no daemon URL given")
        self.urls = []
        for u in urls:
            b = base_url(u)
            if b not in self.urls:
                self.urls.append(b)
        self.timeout = timeout
        self.top = top
        self.tolerate = tolerate
        self.errors = {}
        self._names = {}            # url -> host label, stable once seen
        self._pool = ThreadPoolExecutor(max_workers=min(16, len(self.urls)),
                                        thread_name_prefix="remote")

    # Reading ------------------------------------------------------------
    def _fetch(self, url):
        return self._get(url)[0]

    def _get(self, url):
        """(Snapshot, seconds since the daemon took it or None)."""
        q = "?top=%d" % self.top if self.top else ""
        req = urllib.request.Request(
            url + SNAPSHOT_PATH + q,
            headers={"Accept": "application/json",
                     "User-Agent": "sysretstat/" + __version__})
        where = url
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                age = _seconds(resp.headers.get(AGE_HEADER))
                doc = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise RemoteError("daemon at %s answered HTTP %d %s"
                              % (where, e.code, e.reason))
        except urllib.error.URLError as e:
            reason = getattr(e.reason, "strerror", None) or str(e.reason)
            raise RemoteError("cannot reach sysretstat daemon at %s: %s"
                              % (where, str(reason).lower()))
        except (OSError, TimeoutError) as e:
            raise RemoteError("cannot read from sysretstat daemon at %s: %s"
                              % (where, e.strerror or e or "timed out"))
        except http.client.HTTPException as e:
            # Something that is not HTTP at all answered (BadStatusLine,
            # a body cut short).
            raise RemoteError("%s did not answer with HTTP (is it a "
                              "sysretstat daemon?): %s"
                              % (where, type(e).__name__))
        except (ValueError, RecursionError) as e:
            raise RemoteError("%s did not answer with JSON (is it a "
                              "sysretstat daemon?): %s"
                              % (where, str(e)[:200]))
        try:
            # meta.iret_penalty is the report's calibration object; it
            # is checked here, not by the report schema's number check.
            meta = doc.get("meta") if isinstance(doc, dict) else None
            pen = meta.pop("iret_penalty", None) if isinstance(
                meta, dict) else None
            snap = Snapshot.from_report(doc)
            if pen is not None:
                snap.meta["iret_penalty"] = pen
                if Penalty.of(snap.meta) is None:
                    raise ValueError("meta.iret_penalty is not a "
                                     "calibration")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RemoteError("%s: not a sysretstat report: %s"
                              % (where, str(e)[:200]))
        return snap, age

    def _read_all(self):
        futures = [(u, self._pool.submit(self._fetch, u)) for u in self.urls]
        out, errors = [], {}
        for url, fut in futures:
            try:
                out.append((url, fut.result()))
            except RemoteError as e:
                errors[url] = str(e)
        self.errors = errors
        if errors and (not self.tolerate or not out):
            first = next(iter(errors.values()))
            more = len(errors) - 1
            raise RemoteError(first + (" (and %d more daemon%s)" % (
                more, "s" if more > 1 else "") if more else ""))
        return out

    def _label(self, url, snap):
        """The host label of a daemon: its hostname, or HOST:PORT where
        two daemons report the same hostname.  Fixed once given, so
        that rows keep their keys from one read to the next."""
        name = self._names.get(url)
        if name is None:
            name = snap.meta.get("hostname") or urlsplit(url).netloc
            if name in self._names.values():
                name = urlsplit(url).netloc
            self._names[url] = name
        return name

    def snapshots(self):
        """{host: cumulative Snapshot} of every daemon read."""
        return {self._label(url, snap): snap
                for url, snap in self._read_all()}

    def snapshot(self):
        """The daemons' snapshots merged into one cumulative Snapshot."""
        return merge(self.snapshots())

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def keyed_by_host(host, snap):
    """A copy of `snap` whose per-host rows are keyed (host, key) and
    carry a "host" field."""
    out = Snapshot(dict(snap.meta), snap.totals.copy())
    for t in PER_HOST:
        dst = out.table(t)
        for k, row in snap.table(t).items():
            r = row.copy()
            r.key = (host, k)
            r.fields["host"] = host
            dst[r.key] = r
    out.syscalls = {k: r.copy() for k, r in snap.syscalls.items()}
    return out


def merge(by_host):
    """One Snapshot of several hosts' snapshots ({host: Snapshot})."""
    hosts = list(by_host)
    merged = Snapshot(_merged_meta(by_host))
    for h in hosts:
        merged.merge(keyed_by_host(h, by_host[h]))
    return merged


def merge_intervals(by_host, title=None):
    """One interval Snapshot of several hosts' intervals.

    Each host's interval is its own daemon's (two of its snapshots), so
    they differ by the daemons' jitter, or by their -i where the fleet
    is configured unevenly: the merged interval is their mean, and each
    host's own is in meta.hosts.  title: the hostname shown (with the
    hosts that are down marked)."""
    m = merge(by_host)
    dts = [float(s.meta["interval_s"]) for s in by_host.values()
           if _number(s.meta.get("interval_s")) and s.meta["interval_s"]]
    if dts:
        dt = round(sum(dts) / len(dts), 6)
        m.meta["interval_s"] = m.meta["duration_s"] = dt
    for h, s in by_host.items():
        m.meta["hosts"][h]["interval_s"] = s.meta.get("interval_s")
    if title is not None:
        m.meta["hostname"] = title
    return m


def _merged_meta(by_host):
    metas = [s.meta for s in by_host.values()]
    if not metas:
        return {"hosts": {}, "lost": {}}

    def same(key):
        vals = {str(m.get(key)) for m in metas}
        return metas[0].get(key) if len(vals) == 1 else "mixed"

    starts = [m.get("started_at") for m in metas if m.get("started_at")]
    return {
        "version": same("version"),
        "kernel": same("kernel"),
        "cpu_model": same("cpu_model"),
        "hostname": ",".join(by_host),
        "started_at": min(starts) if starts else None,
        "duration_s": max(float(m.get("duration_s") or 0) for m in metas),
        "interval_s": None,
        "command": None,
        "filters": metas[0].get("filters", {}),
        # The fast path's name follows FRED; a mixed fleet is shown as
        # the first host's (sysret and eretu are both the fast path).
        "guard": dict(metas[0].get("guard", {})),
        "lost": {},
        "hosts": {h: {"kernel": s.meta.get("kernel"),
                      "version": s.meta.get("version"),
                      "started_at": s.meta.get("started_at"),
                      "duration_s": s.meta.get("duration_s"),
                      "returns": s.totals.returns,
                      "iret": s.totals.iret}
                  for h, s in by_host.items()},
    }


def _seconds(text):
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if 0 <= v < 1e7 else None


class Penalty:
    """One host's calibration as its daemon serves it (meta.iret_penalty,
    Calibration.to_json()): penalty_ns(reason) and mean_penalty_ns, the
    two things top's cost needs."""

    def __init__(self, mean_ns, reasons):
        self.mean_penalty_ns = mean_ns
        self.reasons = reasons

    @classmethod
    def of(cls, meta):
        d = meta.get("iret_penalty")
        if not isinstance(d, dict):
            return None
        mean, reasons = d.get("mean_penalty_ns"), d.get("reasons") or {}
        if not _number(mean) or not isinstance(reasons, dict) or \
                not all(_number(v) for v in reasons.values()):
            return None
        return cls(float(mean), {str(k): float(v)
                                 for k, v in reasons.items()})

    def penalty_ns(self, reason):
        if reason not in REASONS:
            return None
        return self.reasons.get(reason, self.mean_penalty_ns)


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and \
        v == v and 0 <= v < 1e12


class FleetPenalty:
    """The calibration top is given for a fleet, with each host's own.

    for_host(host) is that host's Penalty (None when it has none).
    penalty_ns(reason) is the reason's penalty averaged over the hosts,
    weighted by how many such returns each had this interval, so that
    summed counts times it are exactly the sum of each host's counts
    times its own penalty (the header's IRET cost).  A host without a
    calibration is costed at the others' penalty.
    """

    def __init__(self, penalties, deltas):
        self.hosts = dict(penalties)
        known = [p for p in self.hosts.values() if p is not None]
        self.mean_penalty_ns = sum(p.mean_penalty_ns for p in known) / \
            len(known) if known else None
        self._weighted = {}
        weight = {}
        for host, snap in deltas.items():
            p = self.hosts.get(host)
            if p is None:
                continue
            for reason, n in snap.totals.reasons().items():
                pr = p.penalty_ns(reason)
                if pr is not None and n:
                    self._weighted[reason] = self._weighted.get(
                        reason, 0.0) + n * pr
                    weight[reason] = weight.get(reason, 0) + n
        self._weighted = {r: v / weight[r]
                          for r, v in self._weighted.items()}
        self._plain = {}
        for r in REASONS:
            vals = [p.penalty_ns(r) for p in known]
            if vals:
                self._plain[r] = sum(vals) / len(vals)

    def for_host(self, host):
        return self.hosts.get(host)

    def penalty_ns(self, reason):
        if reason not in REASONS:
            return None
        if reason in self._weighted:
            return self._weighted[reason]
        return self._plain.get(reason, self.mean_penalty_ns)

    def cost_ns(self, counts, host=None):
        """ns lost to IRET in `counts`: with its host's own penalty where
        the host is known and calibrated."""
        cal = self.hosts.get(host) if host is not None else None
        return time_lost_ns(counts.reasons(), cal or self)


# The fleet view ------------------------------------------------------------
# Seconds after a daemon's announced next snapshot before asking for it:
# it publishes once the kernel has been read, a little after its tick.
DUE_SLACK = 0.05
BACKOFF = (1.0, 30.0)       # first and longest wait before a retry


class Host:
    """One daemon as the fleet view follows it.

    prev and cur are the last two *distinct* snapshots it published
    (by generation): a frame's rates are cur - prev, however many
    frames fall within the daemon's interval.  down_since (time.time())
    is set while it cannot be read; error says why.
    """

    def __init__(self, url):
        self.url = url
        self.label = urlsplit(url).netloc
        self.named = False
        self.prev = self.cur = None
        self.penalty = None
        self.due = 0.0              # monotonic: when cur is superseded
        self.down_since = None
        self.error = None           # why, short (the row names the host)
        self.message = None         # why, in full
        self.retry_at = 0.0
        self.backoff = 0.0
        self.future = None
        self.sent = 0.0

    @property
    def up(self):
        return self.down_since is None and self.cur is not None

    def status(self, now_mono=None):
        """One line on a host that is down, else None."""
        if self.down_since is None:
            return None
        now_mono = time.monotonic() if now_mono is None else now_mono
        retry = max(0.0, self.retry_at - now_mono)
        return "%s unreachable since %s (%s); retry in %.0fs" % (
            self.label, time.strftime("%H:%M:%S",
                                      time.localtime(self.down_since)),
            self.error, retry)


def _ident(snap):
    m = snap.meta
    d = m.get("daemon") if isinstance(m.get("daemon"), dict) else {}
    gen = d.get("generation")
    return (m.get("started_at"),
            gen if isinstance(gen, int) else m.get("duration_s"))


def _daemon_interval(snap):
    d = snap.meta.get("daemon")
    v = d.get("interval_s") if isinstance(d, dict) else None
    return float(v) if _number(v) and v > 0 else None


class Fleet(RemoteSource):
    """Daemons read at their own pace, for `top --connect`.

    poll() asks each daemon for its snapshot only once the next one is
    due (its meta.daemon.interval_s and the X-Sysretstat-Age header say
    when), and never waits longer than it is told to: a daemon that is
    slow or gone is marked down (Host.down_since) and retried with
    back-off while the others go on.
    """

    def __init__(self, urls, timeout=5.0, top=None, backoff=BACKOFF):
        super().__init__(urls, timeout=timeout, top=top, tolerate=True)
        self.hosts = [Host(u) for u in self.urls]
        self.backoff = backoff

    def poll(self, wait):
        """Start the reads that are due, wait at most `wait` seconds for
        those in flight, and take what came."""
        now = time.monotonic()
        for h in self.hosts:
            if h.future is None and now >= (
                    h.retry_at if h.down_since is not None else h.due):
                h.future = self._pool.submit(self._get, h.url)
                h.sent = now
        flying = [h.future for h in self.hosts if h.future is not None]
        if flying and wait > 0:
            wait_futures(flying, timeout=wait)
        now = time.monotonic()
        for h in self.hosts:
            f = h.future
            if f is None:
                continue
            if f.done():
                h.future = None
                try:
                    snap, age = f.result()
                except RemoteError as e:
                    self._down(h, str(e), now)
                except Exception as e:     # a bug must not end the view
                    self._down(h, "%s: %s" % (type(e).__name__, e), now)
                else:
                    self._got(h, snap, age, now)
            elif now - h.sent > self.timeout and h.down_since is None:
                # Still in flight: taken when it ends, if it does.
                self._down(h, "no answer in %gs" % self.timeout, now)

    def _down(self, h, message, now):
        if h.down_since is None:
            h.down_since = time.time()
            h.backoff = 0.0
        first, most = self.backoff
        h.backoff = min(most, max(first, h.backoff * 2))
        h.retry_at = now + h.backoff
        h.message = message
        # The row already names the host.
        h.error = message.replace(" at " + h.url, "").replace(
            h.url + ": ", "").replace(h.url + " ", "")

    def _got(self, h, snap, age, now):
        if not h.named:
            h.label = self._label(h.url, snap)
            h.named = True
        h.down_since = h.error = h.message = None
        h.backoff = 0.0
        h.penalty = Penalty.of(snap.meta)
        cur = h.cur
        if cur is None or _ident(snap) != _ident(cur):
            restarted = cur is not None and (
                snap.meta.get("started_at") != cur.meta.get("started_at")
                or (snap.meta.get("duration_s") or 0) <
                (cur.meta.get("duration_s") or 0))
            h.prev, h.cur = (None if restarted else cur), snap
        period = _daemon_interval(snap)
        if period is None or age is None:
            h.due = now             # an older daemon: ask every frame
        else:
            h.due = now - age + period + DUE_SLACK
            if h.due <= now:
                # The next one is late (a busy host): ask next frame.
                h.due = now

    def pending(self):
        """Whether any daemon has never been read, or is being read."""
        return any(h.cur is None and h.down_since is None
                   for h in self.hosts)

    def failure(self):
        """The one-line error when no daemon could be read at all."""
        errors = [h for h in self.hosts if h.down_since is not None]
        if not errors or any(h.cur is not None for h in self.hosts):
            return None
        first = errors[0].message
        more = len(errors) - 1
        return first + (" (and %d more daemon%s)" % (
            more, "s" if more > 1 else "") if more else "")
