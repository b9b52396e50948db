#!/usr/bin/env python3
"""Does the daemon hold up under hostile clients?  (issue 12)

  python3 benchmarks/daemon_load.py [--seconds 60] [--scrapers 500]
                                    [--slowloris 300] [--oversized 40]
                                    [--pause 0.05] [--json FILE]

Needs root (BPF).  Starts `sysretstat daemon -i 1` on a free loopback
port, then for --seconds, all at once and each in its own process:

  scrapers    N concurrent clients, each a loop of GET /metrics on a new
              connection (then a pause of up to --pause s); every reply
              must be a complete 200: a reset, a timeout, a short body
              or another status is an error;
  slowloris   N connections sending a request head one byte a second,
              reconnecting when cut: counts how many were cut;
  oversized   N connections sending 65 KB header lines with no end,
              reconnecting --again s after being cut: counts 431s and
              cuts;
  probe       GET /healthz every 20 ms: p50, p99, max latency;

and samples the daemon's RSS (VmRSS) every 0.5 s and its CPU time
(daemon_cpu_share: 1.0 is one core busy the whole run).  All traffic goes to
127.0.0.1; every loop ends at the deadline.  Prints one JSON document;
exit status 1 unless scrapers saw 0 errors, /healthz p99 <= 100 ms and
RSS stayed <= 150 MB (the issue's bar).
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"


def start_daemon():
    err = tempfile.NamedTemporaryFile("w+", prefix="sysretstat-load-")
    p = subprocess.Popen([sys.executable, "-m", "sysretstat", "daemon",
                          "--listen", HOST + ":0", "-i", "1"],
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        err.seek(0)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", err.read())
        if m:
            return p, int(m.group(1)), err
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    err.seek(0)
    sys.exit("daemon did not start: %s" % err.read())


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return status, body


# Each load runs in its own process and returns a dict of counts.
def scrapers(port, n, until, pause, out):
    async def one(k, st):
        import random
        rng = random.Random(k)
        while time.monotonic() < until:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(HOST, port), 10)
                w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
                code, body = await asyncio.wait_for(_read_response(r), 30)
                w.close()
                if code == 200 and body.endswith(b"\n"):
                    st["ok"] += 1
                else:
                    st["bad_status_%d" % code] = \
                        st.get("bad_status_%d" % code, 0) + 1
            except ConnectionResetError:
                st["resets"] += 1
            except (asyncio.TimeoutError, asyncio.IncompleteReadError,
                    OSError) as e:
                k2 = "error_" + type(e).__name__
                st[k2] = st.get(k2, 0) + 1
            await asyncio.sleep(rng.random() * pause)

    async def main():
        st = {"ok": 0, "resets": 0}
        await asyncio.gather(*(one(k, st) for k in range(n)))
        return st
    out.put(("scrapers", asyncio.run(main())))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def abuse(port, slow, big, until, out, again=1.0):
    async def slowloris(st):
        while time.monotonic() < until:
            try:
                r, w = await asyncio.open_connection(HOST, port)
            except OSError:
                st["connect_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            try:
                for ch in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"z" * 10000:
                    if time.monotonic() >= until:
                        break
                    w.write(bytes([ch]))
                    await w.drain()
                    try:
                        if await asyncio.wait_for(r.read(1), 1.0) == b"":
                            st["slowloris_cut"] += 1
                            break
                    except asyncio.TimeoutError:
                        pass
            except OSError:
                st["slowloris_cut"] += 1
            w.close()

    async def oversized(st):
        line = b"X-Big: " + b"b" * 65000 + b"\r\n"
        while time.monotonic() < until:
            try:
                r, w = await asyncio.open_connection(HOST, port)
                w.write(b"GET /metrics HTTP/1.1\r\n")
                for _ in range(99):
                    w.write(line)
                    await asyncio.wait_for(w.drain(), 5)
                resp = await asyncio.wait_for(r.read(64), 5)
                if b" 431 " in resp or b" 414 " in resp:
                    st["oversized_431"] += 1
                else:
                    st["oversized_other"] += 1
            except (OSError, asyncio.TimeoutError):
                st["oversized_cut"] += 1
            try:
                w.close()
            except Exception:
                pass
            await asyncio.sleep(again)

    async def main():
        st = {"slowloris_cut": 0, "connect_errors": 0, "oversized_431": 0,
              "oversized_other": 0, "oversized_cut": 0}
        await asyncio.gather(*([slowloris(st) for _ in range(slow)] +
                               [oversized(st) for _ in range(big)]))
        return st
    out.put(("abuse", asyncio.run(main())))


def probe(port, until, out):
    import socket
    lat, errors = [], 0
    while time.monotonic() < until:
        t0 = time.monotonic()
        try:
            with socket.create_connection((HOST, port), timeout=5) as s:
                s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                data = b""
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    data += b
            if not data.startswith(b"HTTP/1.1 200"):
                errors += 1
        except OSError:
            errors += 1
        lat.append(time.monotonic() - t0)
        time.sleep(0.02)
    lat.sort()

    def q(p):
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2)
    out.put(("healthz", {"requests": len(lat), "errors": errors,
                         "p50_ms": q(.5), "p99_ms": q(.99),
                         "max_ms": round(1000 * lat[-1], 2)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--scrapers", type=int, default=500)
    ap.add_argument("--slowloris", type=int, default=300)
    ap.add_argument("--oversized", type=int, default=40)
    ap.add_argument("--pause", type=float, default=0.05,
                    help="each scraper waits up to this long between "
                         "scrapes (default 0.05)")
    ap.add_argument("--again", type=float, default=1.0,
                    help="an oversized client reconnects this long after "
                         "being cut off (default 1)")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    if not 0 < a.seconds <= 3600:
        sys.exit("--seconds: 0 < s <= 3600")
    d, port, err = start_daemon()
    try:
        # Let the first snapshot publish.
        time.sleep(1.5)
        rss0 = rss_mb(d.pid)
        cpu0 = cpu_seconds(d.pid)
        until = time.monotonic() + a.seconds
        out = mp.Queue()
        procs = [mp.Process(target=scrapers, args=(port, a.scrapers, until,
                                                   a.pause, out)),
                 mp.Process(target=abuse, args=(port, a.slowloris,
                                                a.oversized, until, out,
                                                a.again)),
                 mp.Process(target=probe, args=(port, until, out))]
        for p in procs:
            p.start()
        rss_max = rss0
        while time.monotonic() < until:
            rss_max = max(rss_max, rss_mb(d.pid))
            time.sleep(0.5)
        results = {}
        for _ in procs:
            k, v = out.get(timeout=120)
            results[k] = v
        for p in procs:
            p.join(30)
        rss_end = rss_mb(d.pid)
        cpu = cpu_seconds(d.pid) - cpu0
        alive = d.poll() is None
    finally:
        if d.poll() is None:
            d.send_signal(signal.SIGTERM)
            d.wait(30)
    s = results["scrapers"]
    scrape_errors = sum(v for k, v in s.items() if k != "ok")
    doc = {"seconds": a.seconds, "scrapers": a.scrapers,
           "slowloris": a.slowloris, "oversized": a.oversized,
           "results": results, "scrape_errors": scrape_errors,
           "rss_mb": {"start": round(rss0, 1), "max": round(rss_max, 1),
                      "end": round(rss_end, 1)},
           "daemon_cpu_share": round(cpu / a.seconds, 2),
           "scrapes_per_s": round(s["ok"] / a.seconds),
           "daemon_alive": alive}
    print(json.dumps(doc, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    ok = (alive and scrape_errors == 0 and s["ok"] > 0
          and results["healthz"]["p99_ms"] <= 100
          and results["healthz"]["errors"] == 0 and rss_max <= 150)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
