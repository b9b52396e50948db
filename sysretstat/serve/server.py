"""The daemon: one collection, served over HTTP to Prometheus and fleets.

The main thread owns the Collector: every interval it takes a
cumulative snapshot, makes the interval's delta and publishes both.
The HTTP layer (an asyncio loop in one thread, see Server) only
renders the latest published snapshots, each rendering done once per
generation and parameters, outside the publish lock, and cached, so a
scrape never reads a BPF map and a thousand scrapes cost what one does.
"""

import asyncio
import gzip
import ipaddress
import json
import logging
import os
import resource
import socket
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

from sysretstat import __version__
from sysretstat.render import prometheus
from sysretstat.errors import SysretstatError, UsageError
from sysretstat.model.fields import TABLES
from sysretstat.model.quietgc import FrameGC
from sysretstat.ticker import AT_ONCE, Ticker

DEFAULT_PORT = 9717
DEFAULT_LISTEN = "127.0.0.1:%d" % DEFAULT_PORT

log = logging.getLogger("sysretstat.serve.server")


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
class _Flight:
    """One rendering in progress; others wanting it wait on `done`."""

    __slots__ = ("done", "result")

    def __init__(self):
        self.done = threading.Event()
        self.result = None


class _Series:
    """Series as they were at publish time (what prometheus.render asks
    a CommCounters, CgroupCounters or DetailCounters for)."""

    def __init__(self, rows):
        self.rows = rows

    def series(self):
        return self.rows


class State:
    """The latest snapshots and what has been rendered from them.

    The lock guards only the references and the cache, never a
    rendering: a rendering is built outside it (once per generation and
    kind; concurrent requests for the same one wait for the first), so
    publish() and /healthz never wait behind one.
    """

    CACHE_MAX = 32

    def __init__(self, top=10, penalty=None, report_top=None,
                 expose_processes=False, interval_s=None, top_cgroups=10):
        self.lock = threading.Lock()
        self.interval_s = interval_s    # the collection's period
        self.top = top
        self.top_cgroups = top_cgroups
        self.penalty = penalty
        self.report_top = report_top
        self.expose_processes = expose_processes
        self.cumulative = None
        self.interval = None
        self.comms = prometheus.CommCounters(top)
        self.cgroups = prometheus.CgroupCounters(top_cgroups)
        # A tracer's name is a command name: --top bounds both, and
        # --top 0 exports no command name at all.
        self.details = prometheus.DetailCounters(tracers=top)
        self.series = {}
        self.generation = 0
        self.published_at = None    # time.monotonic() of the last publish
        self.published_wall = None  # time.time() of it, for clients
        self.process_lines = []
        self._cache = {}
        self._flights = {}

    def publish(self, cumulative, interval, count_interval=True):
        """Make these the snapshots served (the daemon's thread only)."""
        if count_interval:
            for counters in (self.comms, self.cgroups, self.details):
                counters.update(interval)
        series = {"comms": _Series(self.comms.series()),
                  "cgroups": _Series(self.cgroups.series()),
                  "details": _Series(self.details.series())}
        # Read here, once per interval, so that a scrape reads nothing.
        extra = prometheus.process_lines()
        with self.lock:
            self.cumulative, self.interval = cumulative, interval
            self.series = series
            self.process_lines = extra
            self.generation += 1
            self.published_at = time.monotonic()
            self.published_wall = time.time()
            self._cache = {}
            self._flights = {}

    def cached(self, what, top=None, gz=False):
        """The rendering if it is ready, else None (never waits)."""
        with self.lock:
            return self._cache.get((what, top, gz))

    def render(self, what, top=None, gz=False):
        """(bytes, content type) of one endpoint for the latest snapshot,
        or None before the first one."""
        key = (what, top, gz)
        with self.lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            if self.cumulative is None:
                return None
            gen = self.generation
            flight = self._flights.get(key)
            owner = flight is None
            if owner:
                flight = self._flights[key] = _Flight()
            inputs = (self.cumulative, self.interval, self.series,
                      self.process_lines, self._publication(gen))
        if not owner:
            flight.done.wait()
            if flight.result is not None:
                return flight.result
            return self._build(what, top, gz, *inputs)
        try:
            out = self._build(what, top, gz, *inputs)
            flight.result = out
        finally:
            flight.done.set()
        with self.lock:
            if self.generation == gen:
                # `top` comes from the client: bound what is kept.
                if len(self._cache) >= self.CACHE_MAX:
                    self._cache.clear()
                self._cache[key] = out
            if self._flights.get(key) is flight:
                del self._flights[key]
        return out

    def _publication(self, gen):
        """meta.daemon: what a fleet view needs to read each snapshot
        once, whatever its own refresh rate (see remote.Fleet)."""
        return {"interval_s": self.interval_s, "generation": gen,
                "published_at": round(self.published_wall, 3)
                if self.published_wall is not None else None}

    def _build(self, what, top, gz, cumulative, interval, series, extra,
               publication):
        if gz:
            body, ctype = self.render(what, top)
            return gzip.compress(body, 5), ctype
        if what == "metrics":
            body = prometheus.render(
                cumulative, penalty=self.penalty, extra=extra,
                **series).encode()
            return body, prometheus.CONTENT_TYPE
        snap = cumulative if what == "snapshot" else interval
        # The stored tables only, named rather than left to a default
        # that may grow: a grouped one (comms, cgroups) holds every name
        # the process table has, past --top's bound, whether or not
        # --expose-processes serves that table.
        doc = snap.to_report(top=top if top is not None
                             else self.report_top, tables=TABLES)
        doc["meta"] = dict(doc["meta"], daemon=publication)
        if self.penalty is not None:
            # This host's calibration: a fleet's COST/s is each host's
            # counts times its own penalty.  (Where the file lies on
            # this host is no client's business.)
            cal = dict(self.penalty.to_json())
            cal.pop("path", None)
            doc["meta"]["iret_penalty"] = cal
        if not self.expose_processes:
            # Who runs what, and when, is not for every local user to
            # read (it would get around hidepid): opt-in.
            doc["processes"] = []
            doc["threads"] = []
            doc["meta"] = dict(doc["meta"], hidden=["processes",
                                                    "threads"])
        return (json.dumps(doc, separators=(",", ":")).encode() + b"\n",
                "application/json")

    def gzipped(self, what, top=None):
        return self.render(what, top, gz=True)

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
(?top=N on the /api/v1 endpoints keeps the N busiest rows per table;
per-process and per-thread rows only with --expose-processes)
"""

AGE_HEADER = "X-Sysretstat-Age"
ROUTES = {"/metrics": "metrics", "/api/v1/snapshot": "snapshot",
          "/api/v1/interval": "interval", "/healthz": None, "/": None}
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout",
           414: "URI Too Long", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 503: "Service Unavailable",
           505: "HTTP Version Not Supported"}
OTHER_METHODS = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
                 "TRACE")


class Limits:
    """What one client may cost the daemon."""

    backlog = 1024              # listen(2) queue
    max_connections = 1024      # open at once; more get a 503 and close
    request_line = 8192         # bytes
    header_line = 8192
    header_bytes = 32768        # the whole head
    headers = 100
    head_timeout = 10.0         # s: a request head must arrive in this
    idle_timeout = 30.0         # s: between requests on one connection
    write_timeout = 10.0        # s: a response must be taken in this
    requests_per_connection = 10000
    top_max = 10 ** 6           # ?top= larger than any table is "all"


if hasattr(asyncio, "timeout"):
    async def _within(aw, seconds):
        # Python >= 3.11: a deadline without a task per call.
        async with asyncio.timeout(seconds):
            return await aw
else:
    _within = asyncio.wait_for


class _Refuse(Exception):
    def __init__(self, code, text=None):
        super().__init__(code)
        self.code = code
        self.text = text or "%d %s\n" % (code, REASONS[code])


def _response(code, body, ctype, close, extra=None, head=False):
    lines = ["HTTP/1.1 %d %s" % (code, REASONS.get(code, "")),
             "Server: sysretstat/%s" % __version__,
             "Content-Type: %s" % ctype,
             "Content-Length: %d" % len(body),
             "Cache-Control: no-store"]
    for k, v in (extra or {}).items():
        lines.append("%s: %s" % (k, v))
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data if head else data + body


class Server:
    """The HTTP layer: one asyncio event loop in the "http" thread.

    Why asyncio (standard library) rather than a thread per connection:
    a slow or idle client then costs a coroutine and its buffers, not a
    thread, so hundreds of them cannot starve scrapers, and every limit
    (head size, header count, per-request and write timeouts, a cap on
    connections, the listen backlog) is explicit here.  Renderings run
    in a small thread pool, outside the loop and outside the publish
    lock; /healthz is answered on the loop at once.
    """

    def __init__(self, address, state, stale_after, limits=None):
        host, port = address[:2]
        self.state = state
        self.stale_after = stale_after
        self.limits = limits or Limits()
        self.max_connections = _fd_room(self.limits.max_connections)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(self.limits.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.socket = sock
        self.server_address = sock.getsockname()
        self.active = 0
        self.counts = {"refused": 0, "timeouts": 0, "too_large": 0,
                       "bad": 0}
        self._pool = None
        self._loop = None
        self._stop = None
        self._want_stop = False
        self._entered = threading.Event()
        self._stopped = threading.Event()

    # Life cycle (the ThreadingHTTPServer names, which callers know) --------
    def serve_forever(self, poll_interval=None):
        from concurrent.futures import ThreadPoolExecutor
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="render")
        # The loop shares the interpreter with the collector and the
        # renderers: hand it the lock more often than every 5 ms, so that
        # a snapshot or a rendering in progress delays /healthz little.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._entered.set()
        try:
            loop.run_until_complete(self._serve())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._pool.shutdown(wait=False)
                self._stopped.set()

    def shutdown(self):
        """Stop serve_forever() (from another thread) and wait for it."""
        self._want_stop = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass                # the loop has already ended
        if self._entered.is_set():
            self._stopped.wait(30)

    def server_close(self):
        try:
            self.socket.close()
        except OSError:
            pass

    async def _serve(self):
        self._stop = asyncio.Event()
        if self._want_stop:
            return
        lim = self.limits
        srv = await asyncio.start_server(
            self._client, sock=self.socket, backlog=lim.backlog,
            limit=max(lim.request_line, lim.header_line) + 2)
        try:
            await self._stop.wait()
        finally:
            srv.close()
            tasks = [t for t in asyncio.all_tasks()
                     if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # One connection ------------------------------------------------------
    async def _client(self, reader, writer):
        # Read requests in small pieces (the default is 256 KiB a read):
        # a client that sends megabytes of header is cut off after the
        # first few KiB, at a few KiB of memory.  (An attribute of the
        # selector transport; where it is missing nothing changes.)
        if hasattr(writer.transport, "max_size"):
            writer.transport.max_size = 16384
        if self.active >= self.max_connections:
            self.counts["refused"] += 1
            # An answer, not a reset: the client knows to come back.
            if await self._send(writer, _response(
                    503, b"too many connections\n", "text/plain",
                    close=True)):
                await self._linger(reader, writer)
            writer.transport.abort()
            return
        self.active += 1
        try:
            await self._requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.active -= 1
            writer.transport.abort() if writer.transport.is_closing() \
                else writer.close()

    async def _requests(self, reader, writer):
        lim = self.limits
        wait = lim.head_timeout
        for _ in range(lim.requests_per_connection):
            try:
                req = await _within(self._read_head(reader), wait)
            except asyncio.TimeoutError:
                self.counts["timeouts"] += 1
                return
            except _Refuse as r:
                self.counts["too_large" if r.code in (414, 431) else
                            "bad"] += 1
                if await self._send(writer, _response(
                        r.code, r.text.encode(), "text/plain; charset=utf-8",
                        close=True)):
                    await self._linger(reader, writer)
                return
            if req is None:
                return              # the client closed between requests
            data, close = await self._answer(*req)
            if not await self._send(writer, data):
                return
            if close:
                h = req[3]
                if h.get("content-length", "0") != "0" or \
                        "transfer-encoding" in h:
                    # A body we did not read is still coming.
                    await self._linger(reader, writer)
                return
            # Keep-alive: the next head may come after a pause.
            wait = lim.idle_timeout + lim.head_timeout

    async def _linger(self, reader, writer):
        """Close after a response without destroying it: closing with
        unread input (the rest of an oversized head, a body) makes the
        kernel send a reset that can overtake the response.  So: end our
        side, then read and drop what comes, for at most 0.5 s and
        256 KiB (a client sending more is cut off regardless)."""
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.5
        left = 256 << 10
        while left > 0:
            wait = deadline - loop.time()
            if wait <= 0:
                break
            try:
                b = await _within(reader.read(16384), wait)
            except (asyncio.TimeoutError, OSError):
                break
            if not b:
                break
            left -= len(b)

    async def _read_head(self, reader):
        lim = self.limits
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _Refuse(414)
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise _Refuse(400)
            return None
        if len(line) > lim.request_line + 2:
            raise _Refuse(414)
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            raise _Refuse(400)
        method, target, version = parts
        if not version.startswith("HTTP/") or not method.isalpha():
            raise _Refuse(400)
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise _Refuse(505)
        headers = {}
        total, n = len(line), 0
        while True:
            try:
                h = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _Refuse(431)
            total += len(h)
            if h in (b"\r\n", b"\n"):
                break
            n += 1
            if n > lim.headers or total > lim.header_bytes or \
                    len(h) > lim.header_line + 2:
                raise _Refuse(431)
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                raise _Refuse(400)
            headers[name.lower()] = value.strip()
        return method, target, version, headers

    async def _answer(self, method, target, version, headers):
        """(response bytes, close after it)."""
        conn = headers.get("connection", "").lower()
        close = ("close" in conn or (version == "HTTP/1.0" and
                                     "keep-alive" not in conn)
                 # A body we do not read would be taken for a request.
                 or headers.get("content-length", "0") != "0"
                 or "transfer-encoding" in headers)
        head = method == "HEAD"
        if method in OTHER_METHODS:
            return _response(405, b"read-only: GET and HEAD only\n",
                             "text/plain", True,
                             {"Allow": "GET, HEAD"}), True
        if method not in ("GET", "HEAD"):
            return _response(501, b"501 Not Implemented\n", "text/plain",
                             True), True
        try:
            url = urlsplit(target)
            q = parse_qs(url.query, max_num_fields=20)
        except ValueError:
            return _response(400, b"bad request target\n", "text/plain",
                             True), True
        path = url.path.rstrip("/") or "/"
        if path not in ROUTES:
            return _response(404, b"not found: see /\n", "text/plain",
                             close, head=head), close
        if path == "/":
            return _response(200, (INDEX % __version__).encode(),
                             "text/plain; charset=utf-8", close,
                             head=head), close
        if path == "/healthz":
            code, text = self._health()
            return _response(code, text, "text/plain", close,
                             head=head), close
        top = None
        if path.startswith("/api/") and "top" in q:
            v = q["top"][-1]
            # ASCII digits only (isdigit() alone passes "²"), and short.
            if not (v.isascii() and v.isdigit()) or len(v) > 12 or \
                    int(v) < 1:
                return _response(400, b"top: a positive integer\n",
                                 "text/plain", close, head=head), close
            top = min(int(v), self.limits.top_max)
        what = ROUTES[path]
        gz = "gzip" in headers.get("accept-encoding", "")
        out = self.state.cached(what, top, gz)
        if out is None:
            out = await asyncio.get_running_loop().run_in_executor(
                self._pool, self.state.render, what, top, gz)
        if out is None:
            return _response(503, b"no snapshot yet\n", "text/plain",
                             close, head=head), close
        body, ctype = out
        extra = {"Content-Encoding": "gzip"} if gz else {}
        age = self.state.age() if what != "metrics" else None
        if age is not None:
            # Seconds since the snapshot was taken, on the daemon's own
            # clock: a client learns when the next one is due without
            # trusting that the two hosts' clocks agree.
            extra[AGE_HEADER] = "%.3f" % age
        return _response(200, body, ctype, close, extra or None,
                         head=head), close

    def _health(self):
        age = self.state.age()
        if age is None:
            return 503, b"starting\n"
        if age > self.stale_after:
            return 503, ("stale: last snapshot %.0fs ago\n"
                         % age).encode()
        return 200, b"ok\n"

    async def _send(self, writer, data):
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                await _within(writer.drain(), self.limits.write_timeout)
            return True
        except asyncio.TimeoutError:
            self.counts["timeouts"] += 1
        except (ConnectionError, OSError):
            pass
        writer.transport.abort()
        return False


def _fd_room(want):
    """Connections the fd limit allows (raising the soft limit toward
    the hard one, as many servers do)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = want + 256
        if soft != resource.RLIM_INFINITY and soft < need:
            new = need if hard == resource.RLIM_INFINITY else min(hard, need)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    except (OSError, ValueError):
        return want
    if soft == resource.RLIM_INFINITY:
        return want
    return max(16, min(want, soft - 128))


def bind(host, port, state, stale_after, limits=None):
    """The listening server, or a one-line error (busy port, bad host)."""
    try:
        return Server((host, port), state, stale_after, limits)
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


def is_loopback(host):
    """Whether an address given to --listen reaches this host only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def exposure_warning(host, port, expose_processes):
    """The warning for a --listen address others can reach, or None."""
    if is_loopback(host):
        return None
    what = ("per-syscall, per-reason, per-command-name and per-cgroup "
            "counts and latency")
    if expose_processes:
        what += (", and every process and thread (pid, comm, counts, "
                 "latency; --expose-processes)")
    return ("listening on %s, which is not loopback: anyone who can reach "
            "it reads this host's %s, without authentication"
            % (format_addr(host, port), what))


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
    if state.interval_s is None:
        state.interval_s = interval
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
        gcf = FrameGC()
        # After missed ticks (a suspended host) one at once, not a burst:
        # /healthz is fresh again as soon as possible.
        for _ in Ticker(interval, stop, overrun=AT_ONCE):
            with gcf.frame():
                try:
                    snap = collector.snapshot()
                except OSError as e:
                    raise SysretstatError("reading the kernel's counters: "
                                          "%s" % (e.strerror or e))
                state.publish(snap, snap.delta(prev))
            prev = snap
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
