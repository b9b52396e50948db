"""`sysretstat daemon`: serve the counters to Prometheus and fleet views."""

import logging

import click

from sysretstat.serve import server as daemon
from sysretstat.penalty import calibration
from sysretstat.commands.common import (StopFlag, cgroup_option,
                                        check_interval, interval_option,
                                        latency_option, latency_options)
from sysretstat.source.collector import Collector
from sysretstat.errors import UsageError
from sysretstat.kernel.tracer import Options


@click.command("daemon")
@click.option("--listen", default=daemon.DEFAULT_LISTEN, show_default=True,
              metavar="HOST:PORT",
              help="Address to serve on ([ADDR]:PORT for IPv6).  Use "
                   "0.0.0.0:PORT to serve every interface.")
@interval_option(5.0)
@click.option("--top", "top", type=click.IntRange(0, 10000), default=10,
              show_default=True,
              metavar="N",
              help="Command names exported as their own comm label (and "
                   "tracers' as their own ptrace detail); the rest are "
                   "\"other\".")
@click.option("--top-cgroups", type=click.IntRange(0, 10000), default=10,
              show_default=True, metavar="N",
              help="Cgroups exported as their own cgroup label; the rest "
                   "are cgroup=\"other\".")
@click.option("--max-processes", type=click.IntRange(1, 1 << 24),
              default=1024, show_default=True,
              metavar="N",
              help="Exited processes remembered for the per-process "
                   "table; older ones are evicted (counted in lost).")
@click.option("--max-threads", type=click.IntRange(1, 1 << 24),
              default=2048, show_default=True,
              metavar="N", help="Exited threads remembered, likewise.")
@cgroup_option
@latency_option
@click.option("--expose-processes", is_flag=True,
              help="Serve per-process and per-thread rows (pid, comm, "
                   "counts, latency) on /api/v1; without it those tables "
                   "are empty, aggregates only.")
@click.option("--bpf-stats", is_flag=True,
              help="Enable kernel BPF run-time stats to export the BPF "
                   "programs' own CPU time (costs two clock reads per BPF "
                   "program run, host-wide, while on).")
def command(listen, interval, top, top_cgroups, max_processes, max_threads,
            cgroup, no_latency, latency_sample, sample_every,
            expose_processes, bpf_stats):
    """Trace the whole host and serve the counters over HTTP until
    SIGTERM/SIGINT: /metrics (Prometheus), /api/v1/snapshot and
    /api/v1/interval (report schema), /healthz.

    Listens on 127.0.0.1 unless --listen says otherwise (with a warning
    naming what is exposed when that is not loopback); serves read-only
    GET endpoints only.  Per-process and per-thread detail only with
    --expose-processes.  See sysretstat-daemon(8).
    """
    check_interval(interval)
    latency = latency_options(no_latency, latency_sample, sample_every)
    if top < 0:
        raise UsageError("--top must be 0 or more")
    if max_processes < 1 or max_threads < 1:
        raise UsageError("--max-processes and --max-threads must be "
                         "at least 1")
    host, port = daemon.parse_listen(listen)
    daemon.setup_logging(verbose=logging.getLogger().level <= logging.DEBUG)
    warning = daemon.exposure_warning(host, port, expose_processes)
    if warning:
        daemon.log.warning("warning: %s", warning)
    state = daemon.State(top=top, top_cgroups=top_cgroups,
                         penalty=calibration.load(),
                         expose_processes=expose_processes,
                         interval_s=interval)
    # Bind before loading anything: a busy port is reported at once and
    # costs no BPF load.
    server = daemon.bind(host, port, state,
                         stale_after=max(3 * interval + 5, 15.0))
    opts = Options(cgroup=cgroup, bpf_stats=bpf_stats, **latency)
    stop = StopFlag()
    try:
        col = Collector(opts, max_threads=max_threads,
                        max_processes=max_processes)
        daemon.run(col, server, state, interval, stop)
    except BaseException:
        server.server_close()
        raise
    finally:
        stop.restore()
    return 0
