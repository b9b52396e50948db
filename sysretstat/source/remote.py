"""Snapshots of remote daemons, for `sysretstat top --connect URL`.

Each daemon's /api/v1/snapshot is read into a Snapshot (the report
schema round-trips); the merged view sums them, with process, thread
and CPU rows keyed by host so that pid 1 of two hosts stays two rows.
Syscall rows are keyed by syscall alone: summing getpid across a fleet
is the point of merging.
"""

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

from sysretstat import __version__
from sysretstat.errors import RemoteError, UsageError
from sysretstat.model.snapshot import Snapshot

SNAPSHOT_PATH = "/api/v1/snapshot"
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
        q = "?top=%d" % self.top if self.top else ""
        req = urllib.request.Request(
            url + SNAPSHOT_PATH + q,
            headers={"Accept": "application/json",
                     "User-Agent": "sysretstat/" + __version__})
        where = url
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
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
        except ValueError as e:
            raise RemoteError("%s did not answer with JSON (is it a "
                              "sysretstat daemon?): %s" % (where, e))
        try:
            return Snapshot.from_report(doc)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RemoteError("%s: not a sysretstat report: %s" % (where, e))

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
