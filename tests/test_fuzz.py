"""Bounded fuzzing: mutated record files, report documents given to
diff, command lines and HTTP requests, each from real ones (see
tests/fuzzing.py).  Any exception other than a one-line
SysretstatError, any traceback, a hang or a 5xx fails.  The long run
is benchmarks/fuzz.py."""

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing as fz

CASES = int(os.environ.get("SYSRETSTAT_FUZZ_CASES", "150"))
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
