"""The daemon: one collection, served over HTTP to Prometheus and fleets.

The main thread owns the Collector: every interval it takes a
cumulative snapshot, makes the interval's delta and publishes both.
HTTP handlers (one thread per connection) only render the latest
published snapshots, each rendering done once per generation and
cached, so a scrape never reads a BPF map and a thousand scrapes cost
what one does.
"""

import gzip
import json
import logging
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import __version__, prometheus
from .errors import SysretstatError, UsageError
from .quietgc import FrameGC

DEFAULT_PORT = 9717
DEFAULT_LISTEN = "127.0.0.1:%d" % DEFAULT_PORT

log = logging.getLogger("sysretstat.daemon")


# Logging -----------------------------------------------------------------
def _on_journal():
    """Whether stderr is a journald stream (systemd sets JOURNAL_STREAM)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == "%d:%d" % (st.st_dev, st.st_ino)


class _JournalFormatter(logging.Formatter):
    # sd-daemon(3) priority prefixes: journald strips them and sets the
    # entry's priority, so `journalctl -p warning` works.
    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record):
        msg = record.getMessage().replace("\n", " ")
        return "<%d>%s" % (self.PRIORITY.get(record.levelno, 6), msg)


def setup_logging(verbose=False):
    """One line per message on stderr; journald priorities under systemd."""
    handler = logging.StreamHandler(sys.stderr)
    if _on_journal():
        handler.setFormatter(_JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("sysretstat: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


# Listening address ---------------------------------------------------------
def parse_listen(text):
    """(host, port) of HOST:PORT, [V6ADDR]:PORT or a bare PORT."""
    text = (text or "").strip()
    if _decimal(text):
        host, port = "127.0.0.1", text
    elif text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise UsageError("--listen: expected [ADDRESS]:PORT, got %r"
                             % text)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise UsageError("--listen: expected HOST:PORT (e.g. %s, or "
                             "0.0.0.0:%d for every interface), got %r"
                             % (DEFAULT_LISTEN, DEFAULT_PORT, text))
    if not _decimal(port) or len(port) > 5 or not 0 <= int(port) <= 65535:
        raise UsageError("--listen: bad port %r" % port[:20])
    return host, int(port)


def _decimal(text):
    """ASCII digits only: str.isdigit() also passes "²" and "١٢", which
    int() then refuses."""
    return text.isascii() and text.isdigit()


# Published state -------------------------------------------------------------
class State:
    """The latest snapshots and what has been rendered from them."""

    def __init__(self, top=10, penalty=None, report_top=None):
        self.lock = threading.Lock()
        self.top = top
        self.penalty = penalty
        self.report_top = report_top
        self.cumulative = None
        self.interval = None
        self.comms = prometheus.CommCounters(top)
        self.generation = 0
        self.published_at = None    # time.monotonic() of the last publish
        self.process_lines = []
        self._cache = {}

    def publish(self, cumulative, interval, count_interval=True):
        """Make these the snapshots served (the daemon's thread only)."""
        if count_interval:
            self.comms.update(interval)
        # Read here, once per interval, so that a scrape reads nothing.
        extra = prometheus.process_lines()
        with self.lock:
            self.cumulative, self.interval = cumulative, interval
            self.process_lines = extra
            self.generation += 1
            self.published_at = time.monotonic()
            self._cache = {}

    def render(self, what, top=None):
        """(bytes, content type) of one endpoint for the latest snapshot.

        Rendered at most once per generation and kind: concurrent
        scrapes wait for the first and share its result.
        """
        key = (what, top)
        with self.lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            if self.cumulative is None:
                return None
            if what == "metrics":
                body = prometheus.render(
                    self.cumulative, comms=self.comms, penalty=self.penalty,
                    extra=self.process_lines).encode()
                out = (body, prometheus.CONTENT_TYPE)
            else:
                snap = self.cumulative if what == "snapshot" \
                    else self.interval
                doc = snap.to_report(top=top if top is not None
                                     else self.report_top)
                out = (json.dumps(doc, separators=(",", ":")).encode()
                       + b"\n", "application/json")
            # The cache holds this generation's renderings only; bound
            # it anyway, since `top` comes from the client.
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[key] = out
            return out

    def gzipped(self, what, top=None):
        key = ("gz", what, top)
        with self.lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        plain = self.render(what, top)
        if plain is None:
            return None
        out = (gzip.compress(plain[0], 5), plain[1])
        with self.lock:
            self._cache[key] = out
        return out

    def age(self):
        with self.lock:
            if self.published_at is None:
                return None
            return time.monotonic() - self.published_at


# HTTP ----------------------------------------------------------------------
INDEX = """sysretstat daemon %s

GET /metrics           Prometheus text exposition
GET /api/v1/snapshot   report schema sysretstat/1, cumulative since start
GET /api/v1/interval   report schema sysretstat/1, the last interval
GET /healthz           ok, or 503 when the collector has stalled
(?top=N on the /api/v1 endpoints keeps the N busiest rows per table)
"""


class Handler(BaseHTTPRequestHandler):
    server_version = "sysretstat/" + __version__
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Answer even garbage with a status line (the default, HTTP/0.9,
    # would send a bare body).
    default_request_version = "HTTP/1.0"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"
    # Socket timeout: a client that stops sending or reading frees its
    # thread after this long instead of holding it forever.
    timeout = 30

    ROUTES = ("/metrics", "/api/v1/snapshot", "/api/v1/interval",
              "/healthz", "/")

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _refuse(self):
        self._send(405, b"read-only: GET and HEAD only\n", "text/plain",
                   extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _serve(self, head):
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        state = self.server.state
        if path not in self.ROUTES:
            return self._send(404, b"not found: see /\n", "text/plain",
                              head=head)
        if path == "/":
            return self._send(200, (INDEX % __version__).encode(),
                              "text/plain; charset=utf-8", head=head)
        if path == "/healthz":
            return self._health(head)
        top = None
        if path.startswith("/api/"):
            q = parse_qs(url.query)
            if "top" in q:
                v = q["top"][-1]
                if not v.isdigit() or int(v) < 1:
                    return self._send(400, b"top: a positive integer\n",
                                      "text/plain", head=head)
                top = int(v)
        what = {"/metrics": "metrics", "/api/v1/snapshot": "snapshot",
                "/api/v1/interval": "interval"}[path]
        gz = "gzip" in self.headers.get("Accept-Encoding", "")
        out = state.gzipped(what, top) if gz else state.render(what, top)
        if out is None:
            return self._send(503, b"no snapshot yet\n", "text/plain",
                              head=head)
        body, ctype = out
        self._send(200, body, ctype, head=head,
                   extra={"Content-Encoding": "gzip"} if gz else None)

    def _health(self, head):
        age = self.server.state.age()
        limit = self.server.stale_after
        if age is None:
            return self._send(503, b"starting\n", "text/plain", head=head)
        if age > limit:
            return self._send(503, ("stale: last snapshot %.0fs ago\n"
                                    % age).encode(), "text/plain",
                              head=head)
        self._send(200, b"ok\n", "text/plain", head=head)

    def _send(self, code, body, ctype, head=False, extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        # One line per request would flood the journal at every scrape.
        log.debug("%s %s", self.address_string(), fmt % args)

    def log_error(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Connections served at once; more are closed at once rather than
    # given a thread each (a flood must not exhaust the daemon).
    max_connections = 256

    def __init__(self, address, state, stale_after):
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host \
            else socket.AF_INET
        self.state = state
        self.stale_after = stale_after
        self._active = 0
        self._active_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        with self._active_lock:
            if self._active >= self.max_connections:
                full = True
            else:
                full = False
                self._active += 1
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1

    def handle_error(self, request, client_address):
        # A client that vanished mid-response is not the daemon's fault
        # and not worth a traceback on stderr.
        exc = sys.exc_info()[1]
        log.debug("%s: %s", client_address[0] if client_address else "?",
                  exc)


def bind(host, port, state, stale_after):
    """The listening server, or a one-line error (busy port, bad host)."""
    try:
        return Server((host, port), state, stale_after)
    except socket.gaierror as e:
        raise UsageError("--listen: cannot resolve %r: %s"
                         % (host, e.strerror or e))
    except OSError as e:
        what = e.strerror or str(e)
        hint = ""
        if e.errno == 98:   # EADDRINUSE
            hint = (" (another sysretstat daemon, or another exporter? "
                    "choose another port with --listen)")
        raise SysretstatError("cannot listen on %s: %s%s"
                              % (format_addr(host, port), what.lower(),
                                 hint))


def format_addr(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (
        host, port)


# The daemon loop ----------------------------------------------------------
def run(collector, server, state, interval, stop):
    """Collect and publish every `interval` seconds until `stop` is set.

    `collector` is started here and always stopped and closed here, so
    that nothing stays attached however the loop ends.
    """
    thread = None
    try:
        collector.start()
        if getattr(collector.options, "bpf_stats", False) and \
                getattr(collector, "_stats_fd", -1) < 0:
            log.warning("--bpf-stats: the kernel refused to enable BPF "
                        "run-time stats (needs CAP_SYS_ADMIN, or sysctl "
                        "kernel.bpf_stats_enabled=1)")
        prev = collector.snapshot()
        # The first interval is the time since attach.
        state.publish(prev, prev, count_interval=True)
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": 0.25},
                                  name="http", daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        log.info("listening on http://%s/ (interval %gs, pid %d)",
                 format_addr(host, port), interval, os.getpid())
        next_tick = time.monotonic() + interval
        gcf = FrameGC()
        while not stop.is_set():
            stop.wait(max(0.0, next_tick - time.monotonic()))
            if stop.is_set():
                break
            with gcf.frame():
                try:
                    snap = collector.snapshot()
                except OSError as e:
                    raise SysretstatError("reading the kernel's counters: "
                                          "%s" % (e.strerror or e))
                state.publish(snap, snap.delta(prev))
            prev = snap
            # Skip ticks missed (a suspended host) instead of bursting.
            next_tick = max(next_tick + interval, time.monotonic())
        final = collector.stop()
        if final is not None:
            state.publish(final, final.delta(prev))
            t = final.totals
            log.info("stopping after %.0fs: %d returns, %.2f%% IRET; "
                     "everything detached", final.meta.get("duration_s", 0),
                     t.returns, 100 * t.iret_share)
    finally:
        try:
            if thread is not None:
                server.shutdown()
            server.server_close()
        finally:
            collector.close()
