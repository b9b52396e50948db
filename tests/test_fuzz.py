"""Bounded fuzzing: mutated record files, report documents given to
diff, command lines and HTTP requests, each from real ones (see
tests/fuzzing.py).  Any exception other than a one-line
SysretstatError, any traceback, a hang or a 5xx fails.  The long run
is benchmarks/fuzz.py."""

import os
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing as fz
from sysretstat.serve import server as daemon

CASES = int(os.environ.get("SYSRETSTAT_FUZZ_CASES", "300"))
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck))
SEEDS = st.integers(min_value=0, max_value=2 ** 32 - 1)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("fuzz"))
    rec, data, js, doc = fz.seed_files(d)
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    return {"dir": d, "rec": rec, "data": data, "json": js, "doc": doc,
            "files": {"FILE": rec, "OUT": os.path.join(d, "out.data"),
                      "FIFO": fifo}}


def test_seeds_are_valid(seeds):
    """The starting points are real, readable inputs."""
    fz.read_and_render(seeds["rec"])
    fz.read_and_render(seeds["json"])


@FUZZ
@given(seed=SEEDS)
def test_record_files(seeds, seed):
    fz.record_target(seeds["data"], random.Random(seed),
                     os.path.join(seeds["dir"], "m.data"))


@FUZZ
@given(seed=SEEDS)
def test_report_documents(seeds, seed):
    fz.report_doc_target(seeds["doc"], random.Random(seed),
                         os.path.join(seeds["dir"], "m.json"),
                         seeds["json"])


@FUZZ
@given(seed=SEEDS, base=st.sampled_from(fz.SEED_ARGS))
def test_command_lines(seeds, seed, base):
    with fz.no_tracing():
        fz.cli_target(fz.mutate_args(base, random.Random(seed)),
                      seeds["files"])
@pytest.fixture(scope="module")
def server():
    from test_daemon import counts, snapshot
    state = daemon.State(top=3)
    s = snapshot([(10, "a", counts(sysret=100, signal=7)),
                  (11, "b", counts(sysret=5, rcx_ne_rip=2))])
    state.publish(s, s)
    srv = daemon.bind("127.0.0.1", 0, state, stale_after=3600)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[:2]
    srv.shutdown()
    srv.server_close()


@FUZZ
@given(seed=SEEDS, base=st.sampled_from(fz.SEED_REQUESTS))
def test_http_requests(server, seed, base):
    rng = random.Random(seed)
    fz.http_target(server, fz.mutate_bytes(base, rng)
                   if rng.random() < 0.9 else base)
